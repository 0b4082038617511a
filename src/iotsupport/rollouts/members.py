"""The devices of a rollout as evaluation reads them: their rows with their last reports.

A rollout reads only reports that a device credential proved (the `verified_*` columns
of the check-in) unless the admin chose `unverified_reports` for it: with DEVICE_AUTH
optional or off, anyone can send a fetch with X-Firmware-Version for a device without a
credential, and such a report must move no rollout, in either direction.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy.orm import Session

from iotsupport.configs.tables import DeviceCheckin
from iotsupport.configs.tables import DeviceConfig
from iotsupport.rollouts.tables import Rollout
from iotsupport.rollouts.tables import RolloutDevice

_BATCH = 500


@dataclass(slots=True)
class Member:
    """A device of the rollout, with its last report (from its check-in)."""

    config_id: int
    mac_address: str
    model_id: int | None
    stage: int
    state: str
    reason: str | None
    from_version: str | None
    released_at: datetime | None
    download_started_at: datetime | None
    changed_at: datetime | None  # its state last changed (became updated, crashed, ...)
    reported_at: datetime | None
    reported_version: str | None
    reported_sha256: str | None


def reported(unverified: bool) -> tuple[ColumnElement[t.Any], ...]:
    """The check-in columns a rollout judges by: (when, version, SHA-256)."""
    checkins = DeviceCheckin.__table__.c
    if unverified:
        return (checkins.fetched_at, checkins.firmware_version, checkins.firmware_sha256)
    return (
        checkins.verified_at,
        checkins.verified_firmware_version,
        checkins.verified_firmware_sha256,
    )


def load_members(session: Session, rollout: Rollout) -> list[Member]:
    rows = RolloutDevice.__table__.c
    query = (
        select(
            rows.config_id,
            DeviceConfig.mac_address,
            DeviceConfig.model_id,
            rows.stage,
            rows.state,
            rows.reason,
            rows.from_version,
            rows.released_at,
            rows.download_started_at,
            rows.changed_at,
            *reported(rollout.unverified_reports),
        )
        .select_from(RolloutDevice.__table__)
        .join(DeviceConfig, DeviceConfig.id == rows.config_id)
        .outerjoin(DeviceCheckin, DeviceCheckin.config_id == rows.config_id)
        .where(rows.rollout_id == rollout.id)
        .order_by(rows.stage, DeviceConfig.mac_address)
    )
    return [Member(*row) for row in session.execute(query)]


def add_members(
    session: Session, rollout_id: int, stages: dict[int, tuple[int, str | None]]
) -> None:
    """Rows for devices joining the rollout: config id -> (stage, version it reports)."""
    rows = [
        {
            "rollout_id": rollout_id,
            "config_id": config_id,
            "stage": stage,
            "state": "pending",
            "from_version": version,
        }
        for config_id, (stage, version) in stages.items()
    ]
    for start in range(0, len(rows), _BATCH):
        session.execute(insert(RolloutDevice), rows[start : start + _BATCH])
