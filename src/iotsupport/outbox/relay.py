"""The relay: publishes the outbox, one process at a time across every replica.

Every worker runs one. The one that holds the lock reads the outbox in commit order,
waits until every worker serves those changes (the device cache's settle), reads each
device's desired state as the database holds it now, publishes over this process's
MQTT connection (QoS 1) and deletes the rows once the broker has acknowledged them
all; only then does it read the next batch, or let the lock go. A message therefore
reaches the broker only after every earlier one has, whichever process sent each.

- PostgreSQL: a session advisory lock on a connection of its own, kept while the
  process lives (a killed process's connection ends, and with it the lock); the
  holder LISTENs on `iotsupport_outbox` (a trigger of migration 0010 notifies it at
  commit). The others try the lock every OUTBOX_POLL_SECONDS.
- SQLite: an exclusive `flock` on a file next to the database, taken for each pass by
  whichever worker committed (woken in process) or polls.

Without a running relay (tests, command line tools) a commit delivers on its own
thread, when the broker is connected (`deliver`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
import typing as t
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import psycopg
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import make_url
from sqlalchemy import select
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from iotsupport.db import Database
from iotsupport.db.base import utcnow
from iotsupport.desired import current_desired
from iotsupport.notifications import ASSETS_TOPIC
from iotsupport.notifications import CONFIGS_TOPIC
from iotsupport.notifications import Publisher
from iotsupport.notifications import desired_topic
from iotsupport.outbox.tables import Announcement
from iotsupport.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "iotsupport_outbox"
RELAY_NAME = "iotsupport outbox"
LOCK_KEY = 0x10751_0070_B0C5  # the advisory lock of the outbox, the same in every replica
BATCH = 200  # rows per pass: at most two messages each, far below paho's queue limit
INLINE_SECONDS = 5.0  # a delivery on a request's thread gives up after this
_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0)

Message = tuple[str, Mapping[str, t.Any] | None, bool]  # topic, payload (None: clear), retain


class Pending(t.NamedTuple):
    id: int
    kind: str
    subject: str


class RelayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "iotsupport_outbox_published",
            "Outbox rows whose messages the broker acknowledged (then deleted).",
            registry=registry,
        )
        self.failures = Counter(
            "iotsupport_outbox_failures",
            "Relay passes that failed (database or broker); their rows are sent again.",
            registry=registry,
        )


class Relay:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        publisher: Publisher,
        registry: CollectorRegistry,
    ) -> None:
        self.enabled = publisher.state != "disabled"
        self.database = database
        self.publisher = publisher
        self.metrics = RelayMetrics(registry)
        self.poll_seconds = settings.outbox_poll_seconds
        self._settings = settings
        self._stopping = threading.Event()
        self._woken = threading.Event()
        self._thread: threading.Thread | None = None
        self._file_lock = _file_lock(settings) if settings.is_sqlite else None
        if self.enabled:
            database.outbox_wake = self.wake

    def wake(self) -> None:
        """After a commit that wrote rows: the running relay, else this thread, sends them."""
        if self._thread is not None:
            self._woken.set()
        elif self.publisher.state == "connected":  # else they wait for a relay
            self.deliver(INLINE_SECONDS)

    def deliver(self, timeout: float) -> bool:
        """Send what is pending on this thread (no relay runs here); False when the broker
        or the lock was not to be had within `timeout`, or a step failed (rows stay)."""
        deadline = time.monotonic() + timeout
        while self.publisher.state != "connected":
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        lock = self._new_lock()
        try:
            if not lock.acquire(max(0.0, deadline - time.monotonic())):
                return False
            try:
                return self._drain(lock, ack_timeout=max(0.1, deadline - time.monotonic()))
            finally:
                lock.release()
        except (SQLAlchemyError, psycopg.Error, OSError, RuntimeError) as exc:
            self.metrics.failures.inc()
            log.warning("outbox: not delivered now (%s); left for the relay", type(exc).__name__)
            return False
        finally:
            lock.close()

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        if not self.enabled:
            self._prune()
            return
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="outbox-relay", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._woken.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self.poll_seconds + 1))
            self._thread = None

    def _run(self) -> None:
        lock = self._new_lock()
        failures = 0
        while not self._stopping.is_set():
            try:
                if lock.acquire(0.0 if lock.standing else 1.0):
                    self._woken.clear()
                    try:
                        self._drain(lock, ack_timeout=None)
                    finally:
                        if not lock.standing:
                            lock.release()
                failures = 0
                lock.wait(self._woken, self.poll_seconds)
            except Exception as exc:  # noqa: BLE001 - the relay must outlive any failure
                self.metrics.failures.inc()
                lock.close()  # PostgreSQL: leadership goes with the connection
                wait = _BACKOFF_SECONDS[min(failures, len(_BACKOFF_SECONDS) - 1)]
                failures += 1
                log.warning("outbox relay: %s; retrying in %.1f s", type(exc).__name__, wait)
                self._stopping.wait(wait)
        lock.close()

    def _new_lock(self) -> RelayLock:
        if self._file_lock is not None:
            return self._file_lock
        return AdvisoryLock(self._settings)

    # --- one pass -------------------------------------------------------------------

    def _drain(self, lock: RelayLock, *, ack_timeout: float | None) -> bool:
        """Publish batch after batch until the outbox is empty (True)."""
        while not self._stopping.is_set():
            with self.database.session(read_only=True) as session:
                query = select(Announcement.id, Announcement.kind, Announcement.subject)
                rows = [
                    Pending(*row)
                    for row in session.execute(query.order_by(Announcement.id).limit(BATCH))
                ]
                if not rows:
                    return True
                states = current_desired(session, {r.subject for r in rows if r.kind != "asset"})
            # The states were read before this: once every worker has applied what had
            # committed by now, none of them serves older data than is announced.
            barrier = self.database.announcement_barrier
            if barrier is not None:
                barrier()
            lock.check()
            for topic, payload, retain in messages(rows, states):
                if payload is None:
                    self.publisher.clear_retained(topic)
                else:
                    self.publisher.publish(topic, payload, retain=retain)
            if not self._acknowledged(ack_timeout):
                return False
            with self.database.session() as session:
                session.execute(
                    delete(Announcement).where(Announcement.id.in_([r.id for r in rows]))
                )
                session.commit()
            self.metrics.published.inc(len(rows))
        return False

    def _acknowledged(self, timeout: float | None) -> bool:
        if timeout is not None:
            return self.publisher.wait_acknowledged(timeout)
        # The broker may be away for long: paho resends when it is back, in order.
        while not self._stopping.is_set():
            if self.publisher.wait_acknowledged(1.0):
                return True
        return False

    def _prune(self) -> None:
        """Announcements are off: rows left from when they were on would wait forever."""
        try:
            with self.database.session() as session:
                result = session.execute(delete(Announcement))
                pruned = t.cast(CursorResult[t.Any], result).rowcount
                session.commit()
        except SQLAlchemyError as exc:
            log.warning("outbox: not pruned (%s)", type(exc).__name__)
            return
        if pruned:
            log.info("outbox: MQTT_URL is not set; %d pending announcements dropped", pruned)


def messages(rows: Sequence[Pending], states: Mapping[str, Mapping[str, t.Any]]) -> list[Message]:
    """The batch's messages in row order: each row's broadcast, and each device's desired
    state once (its current one)."""
    found: list[Message] = []
    desired: set[str] = set()
    for row in rows:
        subject = row.subject
        if row.kind == "asset":
            found.append((ASSETS_TOPIC, {"filename": subject}, False))
            continue
        if row.kind == "config":
            found.append((CONFIGS_TOPIC, {"filename": f"{subject}.json"}, False))
        if subject not in desired:
            desired.add(subject)
            found.append((desired_topic(subject), states.get(subject), True))
    return found


def backlog(session: Session) -> tuple[int, datetime | None]:
    """(pending rows, when the oldest was written)."""
    count, oldest = session.execute(select(func.count(), func.min(Announcement.created_at))).one()
    return int(count), oldest


class OutboxCollector(Collector):
    """`iotsupport_outbox_pending` and `iotsupport_outbox_oldest_seconds`, read at scrape."""

    def __init__(self, read: t.Callable[[], tuple[int, datetime | None]]) -> None:
        self._read = read

    def collect(self) -> t.Iterator[Metric]:
        try:
            count, oldest = self._read()
        except (SQLAlchemyError, TimeoutError):
            return
        yield GaugeMetricFamily(
            "iotsupport_outbox_pending",
            "Announcements committed and not yet acknowledged by the MQTT broker.",
            count,
        )
        age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "iotsupport_outbox_oldest_seconds",
            "Age of the oldest pending announcement (0 when none is pending).",
            max(0.0, age),
        )


# --- who may publish ----------------------------------------------------------------


class RelayLock(t.Protocol):
    standing: bool  # kept between passes (PostgreSQL) or taken for each (SQLite)

    def acquire(self, wait: float) -> bool: ...

    def release(self) -> None: ...

    def check(self) -> None:
        """Raise when the lock may have been lost (before publishing)."""
        ...

    def wait(self, woken: threading.Event, timeout: float) -> None:
        """Until there may be something to send, or `timeout`."""
        ...

    def close(self) -> None: ...


class AdvisoryLock:
    standing = True

    def __init__(self, settings: Settings) -> None:
        url = make_url(settings.database_listen_url or settings.database_url)
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._timeout = settings.db_connect_timeout_seconds
        self._connection: psycopg.Connection | None = None
        self._held = False

    def acquire(self, wait: float) -> bool:
        if self._held:
            return True
        deadline = time.monotonic() + wait
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(
                self._conninfo,
                autocommit=True,
                application_name=RELAY_NAME,
                connect_timeout=max(1, round(self._timeout)),
                keepalives_idle=10,
                tcp_user_timeout=round(self._timeout * 1000),
            )
        while True:
            row = self._connection.execute(
                "SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)
            ).fetchone()
            if row is not None and row[0]:
                break
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        self._held = True
        # Listening from now on; the pass that follows sends what came before.
        self._connection.execute(f"LISTEN {CHANNEL}")
        log.info("outbox relay: this process publishes the announcements now")
        return True

    def release(self) -> None:
        if self._held and self._connection is not None and not self._connection.closed:
            self._connection.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
            self._connection.execute(f"UNLISTEN {CHANNEL}")
        self._held = False

    def check(self) -> None:
        assert self._connection is not None
        self._connection.execute("SELECT 1")  # the lock lives as long as this connection

    def wait(self, woken: threading.Event, timeout: float) -> None:
        if not self._held or self._connection is None:
            woken.wait(timeout)
            return
        for _ in self._connection.notifies(timeout=timeout, stop_after=1):
            pass  # the trigger notifies once per inserting statement; the pass reads all

    def close(self) -> None:
        self._held = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class FileLock:
    """flock on `<database>.outbox-lock`; a thread lock first (flock is per process)."""

    standing = False

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._fd: int | None = None
        self._threads = threading.Lock()

    def acquire(self, wait: float) -> bool:
        deadline = time.monotonic() + wait
        if not self._threads.acquire(timeout=wait):
            return False
        if self._path is None:  # an in-memory database: one process only
            return True
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            while True:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        self._threads.release()
                        return False
                    time.sleep(0.02)
        except OSError:
            self._threads.release()
            raise

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    def check(self) -> None:
        pass

    def wait(self, woken: threading.Event, timeout: float) -> None:
        woken.wait(timeout)

    def close(self) -> None:
        pass  # shared by the relay and deliveries on request threads; lives with them


def _file_lock(settings: Settings) -> FileLock:
    database = make_url(settings.database_url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return FileLock(None)
    return FileLock(Path(f"{database}.outbox-lock"))
