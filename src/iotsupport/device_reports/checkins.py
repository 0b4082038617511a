"""Check-ins: which config version each device last fetched, when, from where, and the
firmware it reported (X-Firmware-Version, X-Firmware-SHA256).

One row per device (`device_checkins`), newest fetch wins, so workers never undo each
other. The latest fetch that a credential proved is kept apart (`verified_*`): a report
nobody proved never replaces it, and rollouts judge by it unless told otherwise.

Durability: a fetch whose firmware differs from what this worker knows is stored (the
latest report, or the latest verified one) is urgent, so a version change is written
before the device is answered; plain last-seen check-ins wait for the batch. What the
worker knows comes from its own writes, refreshed for every device it writes; a device
it has not seen since it started is read once.
"""

from __future__ import annotations

import logging
import time
import typing as t
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime

from prometheus_client import CollectorRegistry
from prometheus_client import Histogram
from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import tuple_
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from iotsupport.configs.checkins import Networks
from iotsupport.configs.checkins import client_address
from iotsupport.configs.tables import ConfigHistory
from iotsupport.configs.tables import DeviceCheckin
from iotsupport.device_reports.intake import AfterCommit

log = logging.getLogger(__name__)

# From a minute (device online, told over MQTT) to days (a device that was off).
DELIVERY_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
# (latest version, latest SHA-256, verified version, verified SHA-256)
Firmware = tuple[str | None, str | None, str | None, str | None]
_NOTHING: Firmware = (None, None, None, None)


@dataclass(slots=True)  # not frozen: a frozen dataclass is slower to build per request
class Fetch:
    version: int
    first_fetched_at: float  # this process's first fetch of this version (epoch seconds)
    fetched_at: float
    peer: str | None
    forwarded_for: str | None
    user_agent: str | None
    firmware_version: str | None  # as stored: cut to 64
    firmware_sha256: str | None  # as stored: 64 lowercase hex digits, or None
    verified: bool  # a device credential proved the request


def fetch_from(version: int, environ: t.Mapping[str, t.Any], *, verified: bool) -> Fetch:
    """A fetch from its request (the WSGI environ)."""
    now = time.time()
    firmware = environ.get("HTTP_X_FIRMWARE_VERSION")
    return Fetch(
        version,
        now,
        now,
        environ.get("REMOTE_ADDR"),
        environ.get("HTTP_X_FORWARDED_FOR"),
        environ.get("HTTP_USER_AGENT"),
        firmware[:64] if firmware else None,
        sha256_header(environ.get("HTTP_X_FIRMWARE_SHA256")),
        verified,
    )


def sha256_header(value: str | None) -> str | None:
    """X-Firmware-SHA256 as 64 lowercase hex digits; anything else is not recorded."""
    if value is None or len(value) != 64:
        return None
    value = value.lower()
    return value if all(char in "0123456789abcdef" for char in value) else None


class CheckinMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.delivery = Histogram(
            "iotsupport_config_delivery_seconds",
            "Time from saving a config version to its device's first fetch of it.",
            buckets=DELIVERY_BUCKETS,
            registry=registry,
        )


class Checkins:
    """The check-in kind of report (a `ReportKind[Fetch]`)."""

    name = "check-ins"

    def __init__(
        self,
        session_factory: t.Callable[[], Session],
        metrics: CheckinMetrics,
        *,
        trusted_proxies: Networks = (),
    ) -> None:
        self._session_factory = session_factory
        self._metrics = metrics
        self._trusted = trusted_proxies
        self._stored: dict[int, Firmware] = {}  # what this worker knows is stored

    def merge(self, pending: Fetch | None, report: Fetch) -> Fetch:
        if pending is not None and pending.version == report.version:
            report.first_fetched_at = min(pending.first_fetched_at, report.first_fetched_at)
        return report

    def urgent(self, key: int, report: Fetch) -> bool:
        stored = self._stored.get(key)
        if stored is None:
            try:
                stored = self._stored[key] = self._read(key)
            except SQLAlchemyError:
                return True  # the write says whether the database is there
        latest = (report.firmware_version, report.firmware_sha256)
        return latest != stored[:2] or (report.verified and latest != stored[2:])

    def _read(self, key: int) -> Firmware:
        columns = _CHECKINS
        with self._session_factory() as session:
            row = session.execute(
                select(*_FIRMWARE_COLUMNS).where(columns.config_id == key)
            ).one_or_none()
        return _NOTHING if row is None else (row[0], row[1], row[2], row[3])

    def write(self, session: Session, reports: list[tuple[int, Fetch]]) -> AfterCommit:
        """Upsert, newest fetch wins (the verified columns: newest verified fetch wins)."""
        columns = _CHECKINS
        # Row locks (PostgreSQL) in key order, so two workers cannot interleave on one
        # config nor wait on each other in a circle.
        stored = {
            row.config_id: row
            for row in session.execute(
                select(columns.config_id, columns.fetched_at, columns.fetched_version)
                .add_columns(columns.verified_at, *_FIRMWARE_COLUMNS)
                .where(columns.config_id.in_([key for key, _ in reports]))
                .order_by(columns.config_id)
                .with_for_update()
            )
        }
        inserts: list[dict[str, t.Any]] = []
        updates: dict[tuple[bool, bool], list[dict[str, t.Any]]] = {}
        delivered: dict[tuple[int, int], float] = {}  # (config, version) -> first fetch
        known: dict[int, Firmware] = {}
        for config_id, fetch in reports:
            row = stored.get(config_id)
            values = self._row(config_id, fetch)
            if row is None:
                inserts.append(values)
                delivered[(config_id, fetch.version)] = fetch.first_fetched_at
                known[config_id] = _firmware(values)
                continue
            at = values["fetched_at"]
            latest = row.fetched_at < at
            verified = fetch.verified and (row.verified_at is None or row.verified_at < at)
            firmware = [row.firmware_version, row.firmware_sha256]
            firmware += [row.verified_firmware_version, row.verified_firmware_sha256]
            if latest:
                firmware[0:2] = [values["firmware_version"], values["firmware_sha256"]]
                if row.fetched_version < fetch.version:
                    delivered[(config_id, fetch.version)] = fetch.first_fetched_at
            if verified:
                firmware[2:4] = [values["firmware_version"], values["firmware_sha256"]]
            known[config_id] = (firmware[0], firmware[1], firmware[2], firmware[3])
            if latest or verified:
                updates.setdefault((latest, verified), []).append(values)
        if inserts:
            session.execute(insert(DeviceCheckin), inserts)
        for (latest, verified), rows in updates.items():
            # A Core executemany: the ORM's bulk update by key cost ten times the CPU,
            # held the GIL meanwhile and stretched the device fetches' tail.
            names = (_LATEST if latest else ()) + (_VERIFIED if verified else ())
            session.connection().execute(_update(names), [_by_key(v, names) for v in rows])
        delays = _delays(session, delivered)

        def after_commit() -> None:
            self._stored.update(known)
            for delay in delays:
                self._metrics.delivery.observe(delay)

        return after_commit

    def _row(self, config_id: int, fetch: Fetch) -> dict[str, t.Any]:
        address = client_address(fetch.peer, fetch.forwarded_for, self._trusted)
        at = datetime.fromtimestamp(fetch.fetched_at, UTC)
        return {
            "config_id": config_id,
            "fetched_at": at,
            "fetched_version": fetch.version,
            "client_address": address[:64] if address else None,
            "user_agent": fetch.user_agent[:255] if fetch.user_agent else None,
            "firmware_version": fetch.firmware_version,
            "firmware_sha256": fetch.firmware_sha256,
            "with_credential": fetch.verified,
            "verified_at": at if fetch.verified else None,
            "verified_firmware_version": fetch.firmware_version if fetch.verified else None,
            "verified_firmware_sha256": fetch.firmware_sha256 if fetch.verified else None,
        }


_CHECKIN_TABLE = t.cast(Table, DeviceCheckin.__table__)
_CHECKINS = _CHECKIN_TABLE.c
_FIRMWARE_COLUMNS = (
    _CHECKINS.firmware_version,
    _CHECKINS.firmware_sha256,
    _CHECKINS.verified_firmware_version,
    _CHECKINS.verified_firmware_sha256,
)
_LATEST = (
    "fetched_at",
    "fetched_version",
    "client_address",
    "user_agent",
    "firmware_version",
    "firmware_sha256",
    "with_credential",
)
_VERIFIED = ("verified_at", "verified_firmware_version", "verified_firmware_sha256")
_UPDATES: dict[tuple[str, ...], t.Any] = {}


def _firmware(values: dict[str, t.Any]) -> Firmware:
    return (
        values["firmware_version"],
        values["firmware_sha256"],
        values["verified_firmware_version"],
        values["verified_firmware_sha256"],
    )


def _update(names: tuple[str, ...]) -> t.Any:
    statement = _UPDATES.get(names)
    if statement is None:
        statement = _UPDATES[names] = (
            update(_CHECKIN_TABLE)
            .where(_CHECKINS.config_id == bindparam("key"))
            .values({name: bindparam(name) for name in names})
        )
    return statement


def _by_key(values: dict[str, t.Any], names: tuple[str, ...]) -> dict[str, t.Any]:
    return {"key": values["config_id"], **{name: values[name] for name in names}}


def _delays(session: Session, delivered: dict[tuple[int, int], float]) -> list[float]:
    """Seconds from saving each version to its first fetch (the save time is in the history,
    which keeps the device endpoint from reading it on every request)."""
    if not delivered:
        return []
    history = ConfigHistory.__table__.c
    saved = session.execute(
        select(history.config_id, history.version, history.saved_at).where(
            tuple_(history.config_id, history.version).in_(list(delivered))
        )
    )
    return [
        max(0.0, delivered[(row.config_id, row.version)] - row.saved_at.timestamp())
        for row in saved
    ]
