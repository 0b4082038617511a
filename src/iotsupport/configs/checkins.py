"""Device check-ins: which version each device last fetched, and when.

A fetch is only noted in memory (a dict assignment under a lock); a background
thread writes the latest fetch per config every CHECKIN_FLUSH_SECONDS, so the
device endpoint never waits on a database write. Each worker process has its own
recorder; the write keeps whichever fetch is newest, so workers never undo each
other. Stopping the recorder writes what is left.
"""

from __future__ import annotations

import logging
import threading
import time
import typing as t
from dataclasses import dataclass
from dataclasses import replace
from datetime import UTC
from datetime import datetime
from ipaddress import IPv4Network
from ipaddress import IPv6Network
from ipaddress import ip_address

from prometheus_client import CollectorRegistry
from prometheus_client import Histogram
from sqlalchemy import Table
from sqlalchemy import bindparam
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import tuple_
from sqlalchemy import update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from iotsupport.background import Periodic
from iotsupport.configs.tables import ConfigHistory
from iotsupport.configs.tables import DeviceCheckin
from iotsupport.configs.tables import DeviceConfig

log = logging.getLogger(__name__)

Networks = tuple[IPv4Network | IPv6Network, ...]
# From a minute (device online, told over MQTT) to days (a device that was off).
DELIVERY_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
_BATCH = 500  # configs per write transaction


@dataclass(slots=True)  # not frozen: a frozen dataclass is slower to build per request
class PendingFetch:
    version: int
    first_fetched_at: float  # this process's first fetch of this version (epoch seconds)
    fetched_at: float
    peer: str | None
    forwarded_for: str | None
    user_agent: str | None
    firmware_version: str | None
    with_credential: bool
    firmware_sha256: str | None = None


def client_address(peer: str | None, forwarded_for: str | None, trusted: Networks) -> str | None:
    """The device's address: the peer, or, behind trusted proxies, the first hop they vouch for.

    X-Forwarded-For is read right to left and only while each hop is a trusted proxy;
    anything a client wrote further left is never believed.
    """
    if not trusted or not forwarded_for or not _is_trusted(peer, trusted):
        return peer
    address = peer
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        if not _is_ip(hop):
            return address  # garbage: keep the last hop that a trusted proxy named
        address = hop
        if not _is_trusted(hop, trusted):
            return hop
    return address


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def _is_trusted(address: str | None, trusted: Networks) -> bool:
    if not address:
        return False
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted)


class CheckinMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.delivery = Histogram(
            "iotsupport_config_delivery_seconds",
            "Time from saving a config version to its device's first fetch of it.",
            buckets=DELIVERY_BUCKETS,
            registry=registry,
        )


class CheckinRecorder:
    """Keeps the latest fetch per config in memory and writes it in the background."""

    def __init__(
        self,
        session_factory: t.Callable[[], Session],
        metrics: CheckinMetrics,
        *,
        interval: float = 2.0,
        trusted_proxies: Networks = (),
        on_written: t.Callable[[], None] | None = None,
    ) -> None:
        """`on_written` runs after a flush wrote fetches (rollouts then re-evaluate)."""
        self._session_factory = session_factory
        self.on_written = on_written
        self._metrics = metrics
        self._trusted = trusted_proxies
        self._pending: dict[int, PendingFetch] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._writer = Periodic("checkin-flush", interval, self.flush)

    def record_fetch(
        self, config_id: int, version: int, environ: t.Mapping[str, t.Any], with_credential: bool
    ) -> None:
        """Note a device's config fetch from its request (the WSGI environ)."""
        self.record(
            config_id,
            version,
            peer=environ.get("REMOTE_ADDR"),
            forwarded_for=environ.get("HTTP_X_FORWARDED_FOR"),
            user_agent=environ.get("HTTP_USER_AGENT"),
            firmware_version=environ.get("HTTP_X_FIRMWARE_VERSION"),
            with_credential=with_credential,
            firmware_sha256=environ.get("HTTP_X_FIRMWARE_SHA256"),
        )

    def record(
        self,
        config_id: int,
        version: int,
        *,
        peer: str | None,
        forwarded_for: str | None,
        user_agent: str | None,
        firmware_version: str | None,
        with_credential: bool = False,
        firmware_sha256: str | None = None,
    ) -> None:
        """Note a fetch; cheap enough for every device request."""
        now = time.time()
        with self._lock:
            previous = self._pending.get(config_id)
            first = previous.first_fetched_at if previous and previous.version == version else now
            self._pending[config_id] = PendingFetch(
                version,
                first,
                now,
                peer,
                forwarded_for,
                user_agent,
                firmware_version,
                with_credential,
                firmware_sha256,
            )

    def start(self) -> None:
        self._writer.start()

    def stop(self) -> None:
        """Stop the background thread and write what is still pending."""
        self._writer.stop()

    def flush(self) -> int:
        """Write the pending fetches now; returns how many configs were written."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            items = list(pending.items())
            written = 0
            for start in range(0, len(items), _BATCH):
                batch = dict(items[start : start + _BATCH])
                try:
                    delays = self._write(batch)
                except SQLAlchemyError as exc:
                    log.warning("check-ins not written, retrying later: %s", type(exc).__name__)
                    self._requeue(batch)
                    continue
                for delay in delays:
                    self._metrics.delivery.observe(delay)
                written += len(batch)
        if written and self.on_written is not None:
            self.on_written()
        return written

    def _write(self, batch: dict[int, PendingFetch]) -> list[float]:
        """Upsert, newest fetch wins; returns delivery delays of versions first seen here."""
        columns = DeviceCheckin.__table__.c
        with self._session_factory() as session, session.begin():
            # Row locks (PostgreSQL), so two workers cannot interleave on one config.
            stored = {
                row.config_id: row
                for row in session.execute(
                    select(columns.config_id, columns.fetched_at, columns.fetched_version)
                    .where(columns.config_id.in_(list(batch)))
                    .with_for_update()
                )
            }
            inserts: list[dict[str, t.Any]] = []
            updates: list[dict[str, t.Any]] = []
            delivered: dict[tuple[int, int], float] = {}  # (config, version) -> first fetch
            for config_id, fetch in batch.items():
                row = stored.get(config_id)
                values = self._row(config_id, fetch)
                if row is not None and row.fetched_at >= values["fetched_at"]:
                    continue  # another worker wrote a newer fetch
                (inserts if row is None else updates).append(values)
                if row is None or row.fetched_version < fetch.version:
                    delivered[(config_id, fetch.version)] = fetch.first_fetched_at
            if inserts:
                session.execute(insert(DeviceCheckin), inserts)
            if updates:
                # A Core executemany: the ORM's bulk update by key cost ten times the CPU,
                # held the GIL meanwhile and stretched the device fetches' tail.
                session.connection().execute(_UPDATE, [_by_key(values) for values in updates])
            return _delays(session, delivered)

    def _row(self, config_id: int, fetch: PendingFetch) -> dict[str, t.Any]:
        address = client_address(fetch.peer, fetch.forwarded_for, self._trusted)
        return {
            "config_id": config_id,
            "fetched_at": datetime.fromtimestamp(fetch.fetched_at, UTC),
            "fetched_version": fetch.version,
            "client_address": address[:64] if address else None,
            "user_agent": fetch.user_agent[:255] if fetch.user_agent else None,
            "firmware_version": fetch.firmware_version[:64] if fetch.firmware_version else None,
            "firmware_sha256": _sha256_header(fetch.firmware_sha256),
            "with_credential": fetch.with_credential,
        }

    def _requeue(self, batch: dict[int, PendingFetch]) -> None:
        with self._lock:
            for config_id, fetch in batch.items():
                newer = self._pending.get(config_id)
                if newer is None:
                    self._pending[config_id] = fetch
                elif newer.version == fetch.version:  # keep when this version was first seen
                    first = min(newer.first_fetched_at, fetch.first_fetched_at)
                    self._pending[config_id] = replace(newer, first_fetched_at=first)


_CHECKIN_TABLE = t.cast(Table, DeviceCheckin.__table__)
_CHECKINS = _CHECKIN_TABLE.c
_UPDATED_COLUMNS = (
    "fetched_at",
    "fetched_version",
    "client_address",
    "user_agent",
    "firmware_version",
    "firmware_sha256",
    "with_credential",
)
_UPDATE = (
    update(_CHECKIN_TABLE)
    .where(_CHECKINS.config_id == bindparam("key"))
    .values({name: bindparam(name) for name in _UPDATED_COLUMNS})
)


def _by_key(values: dict[str, t.Any]) -> dict[str, t.Any]:
    return {"key": values["config_id"], **{name: values[name] for name in _UPDATED_COLUMNS}}


def _sha256_header(value: str | None) -> str | None:
    """X-Firmware-SHA256 as 64 lowercase hex digits; anything else is not recorded."""
    if value is None or len(value) != 64:
        return None
    value = value.lower()
    return value if all(char in "0123456789abcdef" for char in value) else None


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


def count_by_sync_state(session: Session) -> dict[str, int]:
    """How many configs are in_sync, pending and never fetched, in one statement."""
    fetched = DeviceCheckin.fetched_version
    query = select(
        func.count(),
        func.count().filter(fetched.is_(None)),
        func.count().filter(fetched >= DeviceConfig.version),
    ).select_from(
        DeviceConfig.__table__.outerjoin(
            DeviceCheckin.__table__, DeviceCheckin.config_id == DeviceConfig.id
        )
    )
    total, never, in_sync = session.execute(query).one()
    return {"in_sync": in_sync, "pending": total - never - in_sync, "never": never}
