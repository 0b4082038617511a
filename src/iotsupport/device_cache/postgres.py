"""PostgreSQL: LISTEN for the MACs that changed; settle before announcing a change.

Each worker keeps one connection that LISTENs on `iotsupport_devices` (the triggers of
migration 0008 notify it with the MAC, delivered at commit, in commit order). On
(re)connecting it LISTENs first and then loads everything, so nothing committed in
between is missed.

A worker answers from memory only while it holds a lease (leases.py): it renews it
by notifying itself on the same channel, and the lease runs from the moment it sent
that notification until `DEVICE_CACHE_SETTLE_TIMEOUT_SECONDS` later, starting only
once it has applied everything committed before it (notifications arrive in commit
order). A worker whose listener was cut cannot renew, so it stops serving memory by
itself within that time, noticed or not.

`settle` is the bound the answers and MQTT announcements of a commit wait for: the
committing process reads which workers hold a lease, sends a marker after its commit on
the same channel, and waits until each has acknowledged it (after applying what came
before it) or its lease has run out. However the settle fails, it waits no longer than
one lease after the commit: by then every worker that missed the change has stopped
serving memory.

While this worker cannot reach the database at all, no change can commit through it:
the cache then answers from memory, marked (`database_away`), until it is back.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time

import psycopg
from sqlalchemy import Connection
from sqlalchemy import make_url
from sqlalchemy.exc import SQLAlchemyError

from iotsupport.db import Database
from iotsupport.device_cache.documents import read_all
from iotsupport.device_cache.documents import read_some
from iotsupport.device_cache.leases import ACKS_CHANNEL
from iotsupport.device_cache.leases import CHANGES_CHANNEL
from iotsupport.device_cache.leases import LEASE_PREFIX
from iotsupport.device_cache.leases import MARKER_PREFIX
from iotsupport.device_cache.leases import Lease
from iotsupport.device_cache.leases import live_leases
from iotsupport.device_cache.store import DeviceCache
from iotsupport.settings import Settings

log = logging.getLogger(__name__)

LISTENER_NAME = "iotsupport device cache"
# Notifications that arrive together are applied together (a bulk change is one batch).
_BATCH_WINDOW_SECONDS = 0.002
_RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
_SETTLE_RETRY_SECONDS = 0.1


class NotificationFeed:
    def __init__(self, cache: DeviceCache, database: Database, settings: Settings) -> None:
        self.cache = cache
        self.database = database
        self.lease_seconds = settings.device_cache_settle_timeout_seconds
        listen_url = settings.database_listen_url or settings.database_url
        url = make_url(listen_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._connect_timeout = max(1, round(settings.db_connect_timeout_seconds))
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()
        self._database_away = False
        self.lease = Lease(self.lease_seconds)
        self._settle_lock = threading.Lock()
        self._settler: psycopg.Connection | None = None
        self._last_settle_started = 0.0  # commits of several threads share one settle

    # --- the listener ---------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="device-cache", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._listening.clear()
        self.lease.end()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._settle_lock:
            if self._settler is not None:
                self._settler.close()
                self._settler = None
        self.cache.lost()

    def current(self) -> bool:
        return self._listening.is_set() and self.lease.valid()

    def database_away(self) -> bool:
        return self._database_away

    def _connect(self, application_name: str) -> psycopg.Connection:
        return psycopg.connect(
            self._conninfo,
            autocommit=True,
            application_name=application_name,
            connect_timeout=self._connect_timeout,
            keepalives_idle=10,
        )

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            connected = False
            try:
                # Its own reading connection, outside the pool the requests share.
                with (
                    self._connect(LISTENER_NAME) as connection,
                    self.database.engine.connect() as reader,
                ):
                    connected = True
                    self._database_away = False
                    connection.execute(f"LISTEN {CHANGES_CHANNEL}")
                    with reader.begin():  # the rows stream through a server-side cursor
                        self.cache.replace_all(dict(read_all(reader)))
                    self._listening.set()
                    if failures:
                        log.info("device cache: caught up; fetches read memory again")
                    failures = 0
                    self._listen(connection, reader)
                    self.lease.forget(connection)  # stopping: settles need not wait for it
            except Exception as exc:  # noqa: BLE001 - any failure: read the database meanwhile
                if self._stopping.is_set():
                    break
                self._listening.clear()
                self.lease.end()
                self.cache.lost()
                if not connected:  # the database itself is out of reach, not only the feed
                    self._database_away = True
                wait = _RETRY_SECONDS[min(failures, len(_RETRY_SECONDS) - 1)]
                failures += 1
                log.warning(
                    "device cache: change feed lost (%s); fetches read %s; retrying in %.1f s",
                    type(exc).__name__,
                    "memory, marked stale" if self._database_away else "the database",
                    wait,
                )
                self._stopping.wait(wait)
        self._listening.clear()

    def _listen(self, connection: psycopg.Connection, reader: Connection) -> None:
        next_renewal = 0.0
        while not self._stopping.is_set():
            if time.monotonic() >= next_renewal:
                self.lease.renew(connection)
                next_renewal = time.monotonic() + self.lease.renew_every
            wait = max(0.0, next_renewal - time.monotonic())
            batch = list(connection.notifies(timeout=wait, stop_after=1))
            if not batch:
                continue
            batch.extend(connection.notifies(timeout=_BATCH_WINDOW_SECONDS))
            macs = {n.payload for n in batch if " " not in n.payload}  # a MAC has no space
            if macs:
                with reader.begin():
                    found = read_some(reader, macs)
                self.cache.apply(macs, found)
            # Only now, with everything before them applied: acknowledge and extend.
            for notification in batch:
                payload = notification.payload
                if payload.startswith(MARKER_PREFIX):
                    acknowledgement = f"{payload} {self.lease.name}"
                    connection.execute("SELECT pg_notify(%s, %s)", (ACKS_CHANNEL, acknowledgement))
                elif payload.startswith(LEASE_PREFIX):
                    self.lease.arrived(payload)

    # --- the committing side ----------------------------------------------------------

    def settle(self) -> None:
        """Wait until every worker holding a lease has applied what this process
        committed, or its lease has run out; never longer than one lease. Never raises:
        the commit stands."""
        started = time.monotonic()
        deadline = started + self.lease_seconds
        with self._settle_lock:
            if self._last_settle_started >= started:
                return  # one that began after this commit has finished: it covers it
            self._last_settle_started = time.monotonic()
            failed: str | None = None
            while True:
                try:
                    waiting = self._settle_once(deadline)
                    break
                except (psycopg.Error, SQLAlchemyError) as exc:
                    failed = type(exc).__name__
                    self._drop_settler()
                    left = deadline - time.monotonic()
                    if left <= 0:
                        waiting = -1
                        break
                    # A restarted database: a fresh connection on the next try.
                    time.sleep(min(_SETTLE_RETRY_SECONDS, left))
        if waiting:
            # Every worker that has not applied the change has stopped serving memory by
            # now (its lease began before this commit); the answer goes out safe.
            log.warning(
                "device cache: %s within %.1f s%s",
                "no settle" if waiting < 0 else f"{waiting} worker(s) did not acknowledge",
                self.lease_seconds,
                f" ({failed})" if failed else "",
            )
        self.cache.metrics.settle.observe(time.monotonic() - started)

    def _drop_settler(self) -> None:
        if self._settler is not None:
            self._settler.close()
            self._settler = None

    def _settle_once(self, deadline: float) -> int:
        """How many leased workers neither acknowledged nor ran out of lease in time
        (after waiting out their leases, so the caller may answer anyway)."""
        with self.database.read_engine.connect() as reader:
            leases = live_leases(reader)
        if not leases:
            return 0  # no server runs (a command line tool, a test): nobody to wait for
        if self._settler is None or self._settler.closed:
            self._settler = self._connect("iotsupport settle")
            self._settler.execute(f"LISTEN {ACKS_CHANNEL}")
        connection = self._settler
        marker = MARKER_PREFIX + secrets.token_hex(8)
        connection.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, marker))
        prefix = marker + " "
        waiting = dict(leases)  # worker name -> when its lease runs out (monotonic)
        while waiting:
            now = time.monotonic()
            for name in [name for name, ends in waiting.items() if ends <= now]:
                del waiting[name]  # it cannot serve memory any more: nothing to wait for
            left = min([deadline, *waiting.values()]) - now
            if not waiting or left <= 0:
                break
            for notification in connection.notifies(timeout=left, stop_after=1):
                if notification.payload.startswith(prefix):
                    waiting.pop(notification.payload[len(prefix) :], None)
        return len(waiting)
