"""Health reports and broker status as kinds of the one intake (device_reports/).

Health: every report is a sample (several per device may wait for one write). A report
whose uptime places it in a boot this worker has not seen is urgent when the reset was
unexpected (a crash moves a rollout: it is written before the device is answered).
Status: the newest wins.

Both keep `device_presence` up to date: last report, the broker status, and the current
boot (a new one is a `device_resets` row, with the release the device ran then).
"""

from __future__ import annotations

import json
import typing as t
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.orm import Session

from iotsupport.configs.tables import DeviceCheckin
from iotsupport.configs.tables import DeviceConfig
from iotsupport.health.reports import UNEXPECTED_RESETS
from iotsupport.health.reports import HealthReport
from iotsupport.health.tables import DevicePresence
from iotsupport.health.tables import DeviceReset
from iotsupport.health.tables import HealthSample

AfterCommit = t.Callable[[], None]  # as device_reports.intake (which imports this module)
# Two reports of one boot place it this far apart at most (clock and rounding jitter).
BOOT_JITTER = timedelta(seconds=30)
MAX_PENDING_SAMPLES = 20  # per device between two writes; older ones are dropped
_PRESENCE = DevicePresence.__table__.c
_CHECKINS = DeviceCheckin.__table__.c
_CONFIGS = DeviceConfig.__table__.c


@dataclass(frozen=True, slots=True)
class Status:
    connected: bool
    at: float  # epoch seconds
    verified: bool


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _boot(report: HealthReport) -> datetime | None:
    if report.uptime_s is None:
        return None
    return _at(report.reported_at - report.uptime_s)


class _Presence:
    """The presence rows of a batch, read locked in key order, written once."""

    def __init__(self, session: Session, keys: list[int]) -> None:
        self.session = session
        # A config deleted meanwhile: its reports go with it (never a batch that fails).
        self.existing = set(session.scalars(select(_CONFIGS.id).where(_CONFIGS.id.in_(keys))))
        self.rows = {
            row.config_id: dict(row._mapping)
            for row in session.execute(
                select(DevicePresence.__table__)
                .where(_PRESENCE.config_id.in_(keys))
                .order_by(_PRESENCE.config_id)
                .with_for_update()
            )
        }
        self.new: set[int] = set()

    def row(self, key: int) -> dict[str, t.Any]:
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = {
                "config_id": key,
                "last_report_at": None,
                "connected": None,
                "status_at": None,
                "boot_at": None,
                "reset_reason": None,
                "uptime_s": None,
            }
            self.new.add(key)
        return row

    def seen(self, key: int, at: datetime) -> dict[str, t.Any]:
        row = self.row(key)
        if row["last_report_at"] is None or row["last_report_at"] < at:
            row["last_report_at"] = at
        return row

    def write(self, keys: t.Iterable[int]) -> None:
        rows = [self.rows[key] for key in keys]
        inserts = [row for row in rows if row["config_id"] in self.new]
        updates = [
            {"key": row["config_id"], **{k: v for k, v in row.items() if k != "config_id"}}
            for row in rows
            if row["config_id"] not in self.new
        ]
        if inserts:
            self.session.execute(insert(DevicePresence), inserts)
        if updates:
            self.session.connection().execute(_UPDATE_PRESENCE, updates)


def _update_presence() -> t.Any:
    from sqlalchemy import bindparam

    names = ("last_report_at", "connected", "status_at", "boot_at", "reset_reason", "uptime_s")
    return (
        update(DevicePresence)
        .where(_PRESENCE.config_id == bindparam("key"))
        .values({name: bindparam(name) for name in names})
    )


_UPDATE_PRESENCE = _update_presence()


def _new_boot(row: dict[str, t.Any], report: HealthReport, boot: datetime) -> bool:
    """Does the report start a boot after the one stored? Its reset reason differs, its
    uptime went back, or it booted later than the jitter allows. A report of an earlier
    boot (written late) and a late-delivered one of the same boot are not new."""
    known = row["boot_at"]
    if known is None:
        return True
    if boot < known - BOOT_JITTER:
        return False
    if report.reset_reason is not None and report.reset_reason != row["reset_reason"]:
        return True
    uptime = row["uptime_s"]
    if uptime is not None and report.uptime_s is not None and report.uptime_s < uptime:
        return True
    return bool(boot - known > BOOT_JITTER)


def _nothing() -> None:
    return None


class HealthReports:
    """The health kind (a `ReportKind[list[HealthReport]]`)."""

    name = "health reports"

    def __init__(self) -> None:
        self._boots: dict[int, dict[str, t.Any]] = {}  # the last boot written, per device

    def merge(
        self, pending: list[HealthReport] | None, report: list[HealthReport]
    ) -> list[HealthReport]:
        if pending is None:
            return report
        return (pending + report)[-MAX_PENDING_SAMPLES:]

    def urgent(self, key: int, report: list[HealthReport]) -> bool:
        last = report[-1]
        boot = _boot(last)
        if boot is None or last.reset_reason not in UNEXPECTED_RESETS:
            return False
        known = self._boots.get(key)  # the boot this worker wrote last
        return known is None or _new_boot(known, last, boot)

    def write(self, session: Session, reports: list[tuple[int, list[HealthReport]]]) -> AfterCommit:
        presence = _Presence(session, [key for key, _ in reports])
        reports = [(key, batch) for key, batch in reports if key in presence.existing]
        keys = [key for key, _ in reports]
        firmware = _firmware(session, keys)
        samples: list[dict[str, t.Any]] = []
        resets: list[dict[str, t.Any]] = []
        for key, batch in reports:
            for report in sorted(batch, key=lambda item: item.reported_at):
                at = _at(report.reported_at)
                latest, proved = firmware.get(key, (None, None))
                version = report.firmware_version or (proved if report.verified else latest)
                samples.append(_sample(key, at, version, report))
                row = presence.seen(key, at)
                boot = _boot(report)
                if boot is None:
                    continue
                if not _new_boot(row, report, boot):
                    if report.uptime_s is not None and row["boot_at"] is not None:
                        row["uptime_s"] = max(row["uptime_s"] or 0, report.uptime_s)
                    continue
                row["boot_at"], row["reset_reason"] = boot, report.reset_reason
                row["uptime_s"] = report.uptime_s
                if report.reset_reason is not None:
                    resets.append(
                        {
                            "config_id": key,
                            "boot_at": boot,
                            "reported_at": at,
                            "reset_reason": report.reset_reason,
                            "unexpected": report.reset_reason in UNEXPECTED_RESETS,
                            "firmware_version": version,
                            "verified": report.verified,
                        }
                    )
        if samples:
            session.execute(insert(HealthSample), samples)
        if resets:
            session.execute(insert(DeviceReset), resets)
        presence.write(keys)
        boots = {
            key: {
                name: presence.rows[key][name] for name in ("boot_at", "reset_reason", "uptime_s")
            }
            for key in keys
            if presence.rows[key]["boot_at"] is not None
        }

        def after_commit() -> None:
            self._boots.update(boots)

        return after_commit


class Statuses:
    """The broker status kind (a `ReportKind[Status]`): online at connect, offline (will)."""

    name = "device status"

    def merge(self, pending: Status | None, report: Status) -> Status:
        return report if pending is None or pending.at <= report.at else pending

    def urgent(self, key: int, report: Status) -> bool:
        return False

    def write(self, session: Session, reports: list[tuple[int, Status]]) -> AfterCommit:
        presence = _Presence(session, [key for key, _ in reports])
        reports = [(key, status) for key, status in reports if key in presence.existing]
        keys = [key for key, _ in reports]
        for key, status in reports:
            at = _at(status.at)
            row = presence.seen(key, at)
            if row["status_at"] is None or row["status_at"] < at:
                row["connected"], row["status_at"] = status.connected, at
        presence.write(keys)
        return _nothing


class Contacts:
    """Any other contact that shows a device alive (a log line, ...): a `ReportKind[float]`
    of epoch seconds, the newest wins; it moves `last_seen_at` (and so `online`)."""

    name = "device contacts"

    def merge(self, pending: float | None, report: float) -> float:
        return report if pending is None else max(pending, report)

    def urgent(self, key: int, report: float) -> bool:
        return False

    def write(self, session: Session, reports: list[tuple[int, float]]) -> AfterCommit:
        presence = _Presence(session, [key for key, _ in reports])
        keys = [key for key, _ in reports if key in presence.existing]
        for key, at in reports:
            if key in presence.existing:
                presence.seen(key, _at(at))
        presence.write(keys)
        return _nothing


def _firmware(session: Session, keys: list[int]) -> dict[int, tuple[str | None, str | None]]:
    """What each device last reported running: (latest, latest a credential proved)."""
    query = select(
        _CHECKINS.config_id, _CHECKINS.firmware_version, _CHECKINS.verified_firmware_version
    ).where(_CHECKINS.config_id.in_(keys))
    return {row[0]: (row[1], row[2]) for row in session.execute(query)}


def _sample(key: int, at: datetime, version: str | None, report: HealthReport) -> dict[str, t.Any]:
    return {
        "config_id": key,
        "reported_at": at,
        "source": report.source,
        "verified": report.verified,
        "firmware_version": version,
        "reset_reason": report.reset_reason,
        "uptime_s": report.uptime_s,
        "free_heap": report.free_heap,
        "min_free_heap": report.min_free_heap,
        "wifi_rssi": report.wifi_rssi,
        "metrics": json.dumps(report.metrics, separators=(",", ":")) if report.metrics else None,
    }
