"""Downsampling: raw samples for RAW_KEEP_HOURS, then one row per device and hour, kept
HOURLY_KEEP_DAYS (resets too).

Every process runs it every FOLD_SECONDS; it is cheap on both databases: samples older
than the cutoff are deleted a batch at a time with RETURNING (on PostgreSQL two processes
never get the same row; SQLite writes one at a time), folded in Python, and merged into
their hours in the same transaction, so a sample is counted once or, after a failure,
not yet.
"""

from __future__ import annotations

import json
import logging
import typing as t
from datetime import datetime
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import tuple_
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from iotsupport.background import Periodic
from iotsupport.db import Database
from iotsupport.db.base import utcnow
from iotsupport.health.tables import DeviceReset
from iotsupport.health.tables import HealthHour
from iotsupport.health.tables import HealthSample

log = logging.getLogger(__name__)

RAW_KEEP_HOURS = 48
HOURLY_KEEP_DAYS = 90
FOLD_SECONDS = 600.0
_BATCH = 5000
_SAMPLES = HealthSample.__table__.c
_HOURS = HealthHour.__table__.c
_FOLDED = (
    _SAMPLES.config_id,
    _SAMPLES.reported_at,
    _SAMPLES.firmware_version,
    _SAMPLES.uptime_s,
    _SAMPLES.free_heap,
    _SAMPLES.min_free_heap,
    _SAMPLES.wifi_rssi,
    _SAMPLES.metrics,
)


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


class _Hour:
    """What a device's samples of one hour add up to."""

    def __init__(self) -> None:
        self.samples = 0
        self.firmware: tuple[datetime, str | None] | None = None
        self.uptime: int | None = None
        self.min_free: int | None = None
        self.heap: list[int] = []
        self.rssi: list[int] = []
        self.metrics: dict[str, list[float]] = {}  # name -> [count, sum, min, max]

    def add(self, row: t.Any) -> None:
        self.samples += 1
        if self.firmware is None or self.firmware[0] <= row.reported_at:
            self.firmware = (row.reported_at, row.firmware_version)
        if row.uptime_s is not None:
            self.uptime = max(self.uptime or 0, row.uptime_s)
        for value in (row.min_free_heap, row.free_heap):
            if value is not None:
                self.min_free = value if self.min_free is None else min(self.min_free, value)
        if row.free_heap is not None:
            self.heap.append(row.free_heap)
        if row.wifi_rssi is not None:
            self.rssi.append(row.wifi_rssi)
        for name, value in json.loads(row.metrics or "{}").items():
            _fold_metric(self.metrics, name, [1, value, value, value])

    def values(self) -> dict[str, t.Any]:
        return {
            "samples": self.samples,
            "firmware_version": self.firmware[1] if self.firmware else None,
            "max_uptime_s": self.uptime,
            "min_free_heap": self.min_free,
            "avg_free_heap": sum(self.heap) / len(self.heap) if self.heap else None,
            "min_wifi_rssi": min(self.rssi) if self.rssi else None,
            "avg_wifi_rssi": sum(self.rssi) / len(self.rssi) if self.rssi else None,
            "metrics": json.dumps(self.metrics, separators=(",", ":")) if self.metrics else None,
        }


def _fold_metric(into: dict[str, list[float]], name: str, other: list[float]) -> None:
    mine = into.get(name)
    if mine is None:
        into[name] = list(other)
        return
    mine[0] += other[0]
    mine[1] += other[1]
    mine[2] = min(mine[2], other[2])
    mine[3] = max(mine[3], other[3])


def _merge(stored: t.Any, new: dict[str, t.Any]) -> dict[str, t.Any]:
    """An hour already stored (samples that came late) with more of its samples."""
    total: int = stored.samples + new["samples"]

    def mean(old: float | None, fresh: float | None) -> float | None:
        if old is None or fresh is None:
            return fresh if old is None else old
        return float(old * stored.samples + fresh * new["samples"]) / float(total)

    def least(old: int | None, fresh: int | None) -> int | None:
        return fresh if old is None else old if fresh is None else min(old, fresh)

    metrics: dict[str, list[float]] = json.loads(stored.metrics or "{}")
    for name, folded in json.loads(new["metrics"] or "{}").items():
        _fold_metric(metrics, name, folded)
    return {
        "samples": total,
        "firmware_version": new["firmware_version"] or stored.firmware_version,
        "max_uptime_s": max(stored.max_uptime_s or 0, new["max_uptime_s"] or 0) or None,
        "min_free_heap": least(stored.min_free_heap, new["min_free_heap"]),
        "avg_free_heap": mean(stored.avg_free_heap, new["avg_free_heap"]),
        "min_wifi_rssi": least(stored.min_wifi_rssi, new["min_wifi_rssi"]),
        "avg_wifi_rssi": mean(stored.avg_wifi_rssi, new["avg_wifi_rssi"]),
        "metrics": json.dumps(metrics, separators=(",", ":")) if metrics else None,
    }


def fold(session: Session, cutoff: datetime) -> int:
    """Fold up to a batch of samples older than `cutoff` into their hours; how many."""
    ids = select(_SAMPLES.id).where(_SAMPLES.reported_at < cutoff).order_by(_SAMPLES.id)
    taken = session.execute(
        delete(HealthSample)
        .where(_SAMPLES.id.in_(ids.limit(_BATCH).scalar_subquery()))
        .returning(*_FOLDED)
    ).all()
    if not taken:
        return 0
    hours: dict[tuple[int, datetime], _Hour] = {}
    for row in taken:
        hours.setdefault((row.config_id, hour_of(row.reported_at)), _Hour()).add(row)
    keys = sorted(hours)
    stored = {
        (row.config_id, row.hour): row
        for row in session.execute(
            select(HealthHour.__table__)
            .where(tuple_(_HOURS.config_id, _HOURS.hour).in_(keys))
            .order_by(_HOURS.config_id, _HOURS.hour)
            .with_for_update()
        )
    }
    inserts = []
    for key in keys:
        values = hours[key].values()
        if key in stored:
            session.execute(
                update(HealthHour)
                .where(_HOURS.config_id == key[0], _HOURS.hour == key[1])
                .values(_merge(stored[key], values))
            )
        else:
            inserts.append({"config_id": key[0], "hour": key[1], **values})
    if inserts:
        session.execute(insert(HealthHour), inserts)
    return len(taken)


def prune(session: Session, now: datetime) -> None:
    oldest = now - timedelta(days=HOURLY_KEEP_DAYS)
    session.execute(delete(HealthHour).where(_HOURS.hour < oldest))
    session.execute(delete(DeviceReset).where(DeviceReset.boot_at < oldest))


class Downsampler:
    """The periodic job (started by wsgi)."""

    def __init__(self, database: Database, interval: float = FOLD_SECONDS) -> None:
        self._database = database
        self._job = Periodic("health-downsampling", interval, self.run)

    def run(self, now: datetime | None = None) -> int:
        """Fold every sample past RAW_KEEP_HOURS, prune past HOURLY_KEEP_DAYS; how many folded."""
        now = now or utcnow()
        cutoff = hour_of(now - timedelta(hours=RAW_KEEP_HOURS))
        folded = 0
        try:
            while True:
                with self._database.session() as session, session.begin():
                    done = fold(session, cutoff)
                folded += done
                if done < _BATCH:
                    break
            with self._database.session() as session, session.begin():
                prune(session, now)
        except SQLAlchemyError as exc:
            log.warning("health downsampling: not now: %s", type(exc).__name__)
        return folded

    def start(self) -> None:
        self._job.start()

    def stop(self) -> None:
        self._job.stop(final=False)
