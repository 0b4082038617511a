"""Release health: per model and release, over a window, what its devices reported.

- devices: devices of the model that ran the release (a health sample, an hour, a reset
  or their last check-in names it);
- crash_free_devices_pct: the share of them with no crash on it (crashes.py: unexpected
  resets, and what other sources feed);
- unexpected_resets_per_device_day: unexpected resets over device-days (a device-day: a
  device that reported health on a UTC day while running the release);
- median_min_free_heap: the median over devices of each one's lowest min_free_heap.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from iotsupport.configs.tables import DeviceCheckin
from iotsupport.configs.tables import DeviceConfig
from iotsupport.health.crashes import CrashQuery
from iotsupport.health.crashes import crashes
from iotsupport.health.reports import UNEXPECTED_RESETS
from iotsupport.health.tables import DeviceReset
from iotsupport.health.tables import HealthHour
from iotsupport.health.tables import HealthSample
from iotsupport.releases.tables import Release

_CONFIGS = DeviceConfig.__table__.c


@dataclass(frozen=True)
class ReleaseHealth:
    version: str
    devices: int
    crashed_devices: int
    crash_free_devices_pct: float | None  # None: no device ran it
    unexpected_resets: int
    device_days: int
    unexpected_resets_per_device_day: float | None
    median_min_free_heap: float | None


def release_health(
    session: Session, model_id: int, version: str, since: datetime, *, verified_only: bool = False
) -> ReleaseHealth:
    devices: set[int] = set()
    days: set[tuple[int, str]] = set()
    heaps: dict[int, int] = {}
    for table, at, heap in (
        (HealthSample, HealthSample.reported_at, HealthSample.min_free_heap),
        (HealthHour, HealthHour.hour, HealthHour.min_free_heap),
    ):
        columns = table.__table__.c
        query = (
            select(columns.config_id, func.date(at), func.min(heap))
            .join(DeviceConfig.__table__, _CONFIGS.id == columns.config_id)
            .where(_CONFIGS.model_id == model_id, columns.firmware_version == version, at >= since)
            .group_by(columns.config_id, func.date(at))
        )
        if verified_only and table is HealthSample:
            query = query.where(HealthSample.verified)
        for config_id, day, lowest in session.execute(query):
            devices.add(config_id)
            days.add((config_id, str(day)))
            if lowest is not None:
                heaps[config_id] = min(lowest, heaps.get(config_id, lowest))
    checkins = DeviceCheckin.__table__.c
    devices.update(
        session.scalars(
            select(checkins.config_id)
            .join(DeviceConfig.__table__, _CONFIGS.id == checkins.config_id)
            .where(_CONFIGS.model_id == model_id, checkins.firmware_version == version)
        )
    )
    resets = DeviceReset.__table__.c
    devices.update(
        session.scalars(
            select(resets.config_id)
            .join(DeviceConfig.__table__, _CONFIGS.id == resets.config_id)
            .where(
                _CONFIGS.model_id == model_id,
                resets.firmware_version == version,
                resets.boot_at >= since,
            )
        )
    )
    found = crashes(
        session, CrashQuery(version, since, model_id=model_id, verified_only=verified_only)
    )
    crashed = {crash.config_id for crash in found}
    devices |= crashed
    unexpected = sum(1 for crash in found if crash.kind in UNEXPECTED_RESETS)
    return ReleaseHealth(
        version=version,
        devices=len(devices),
        crashed_devices=len(crashed),
        crash_free_devices_pct=(
            round(100.0 * (len(devices) - len(crashed)) / len(devices), 2) if devices else None
        ),
        unexpected_resets=unexpected,
        device_days=len(days),
        unexpected_resets_per_device_day=round(unexpected / len(days), 4) if days else None,
        median_min_free_heap=float(statistics.median(heaps.values())) if heaps else None,
    )


def previous_release(session: Session, model_id: int, version: str) -> Release | None:
    """The model's release created before this one (the one a new release replaces)."""
    current = session.scalar(
        select(Release).where(Release.model_id == model_id, Release.version == version)
    )
    if current is None:
        return None
    return session.scalar(
        select(Release)
        .where(
            Release.model_id == model_id,
            Release.id != current.id,
            (Release.created_at < current.created_at)
            | ((Release.created_at == current.created_at) & (Release.id < current.id)),
        )
        .order_by(Release.created_at.desc(), Release.id.desc())
        .limit(1)
    )
