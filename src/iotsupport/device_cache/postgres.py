"""PostgreSQL: LISTEN for the MACs that changed; settle before announcing a change.

Each worker keeps one connection that LISTENs on `iotsupport_devices` (the triggers of
migration 0008 notify it with the MAC, delivered at commit, in commit order). On
(re)connecting it LISTENs first and then loads everything, so nothing committed in
between is missed; while it is away the worker reads the database.

`settle` is the bound the MQTT announcements wait for: the committing process counts
the listening workers of every replica (by their connections' application_name), sends
a marker after its commit on the same channel, and waits until each has acknowledged it.
A listener acknowledges a marker only after applying what came before it.
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
from iotsupport.device_cache.store import DeviceCache
from iotsupport.settings import Settings

log = logging.getLogger(__name__)

CHANGES_CHANNEL = "iotsupport_devices"
ACKS_CHANNEL = "iotsupport_devices_applied"
LISTENER_NAME = "iotsupport device cache"
# A MAC never contains a space: this prefix marks a settle marker on the changes channel.
MARKER_PREFIX = "settle "
_COUNT_LISTENERS = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE datname = current_database() AND application_name = %s"
)
# Notifications that arrive together are applied together (a bulk change is one batch).
_BATCH_WINDOW_SECONDS = 0.002
_RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)


class NotificationFeed:
    def __init__(self, cache: DeviceCache, database: Database, settings: Settings) -> None:
        self.cache = cache
        self.database = database
        self.settle_timeout = settings.device_cache_settle_timeout_seconds
        listen_url = settings.database_listen_url or settings.database_url
        url = make_url(listen_url).set(drivername="postgresql")
        self._conninfo = url.render_as_string(hide_password=False)
        self._connect_timeout = max(1, round(settings.db_connect_timeout_seconds))
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()
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
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._settle_lock:
            if self._settler is not None:
                self._settler.close()
                self._settler = None
        self.cache.lost()

    def current(self) -> bool:
        return self._listening.is_set()

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
            try:
                # Its own reading connection, outside the pool the requests share.
                with (
                    self._connect(LISTENER_NAME) as connection,
                    self.database.engine.connect() as reader,
                ):
                    connection.execute(f"LISTEN {CHANGES_CHANNEL}")
                    with reader.begin():  # the rows stream through a server-side cursor
                        self.cache.replace_all(dict(read_all(reader)))
                    self._listening.set()
                    if failures:
                        log.info("device cache: caught up; fetches read memory again")
                    failures = 0
                    self._listen(connection, reader)
            except Exception as exc:  # noqa: BLE001 - any failure: read the database meanwhile
                if self._stopping.is_set():
                    break
                self._listening.clear()
                self.cache.lost()
                wait = _RETRY_SECONDS[min(failures, len(_RETRY_SECONDS) - 1)]
                failures += 1
                log.warning(
                    "device cache: change feed lost (%s); fetches read the database; "
                    "retrying in %.1f s",
                    type(exc).__name__,
                    wait,
                )
                self._stopping.wait(wait)
        self._listening.clear()

    def _listen(self, connection: psycopg.Connection, reader: Connection) -> None:
        while not self._stopping.is_set():
            batch = list(connection.notifies(timeout=1.0, stop_after=1))
            if not batch:
                continue
            batch.extend(connection.notifies(timeout=_BATCH_WINDOW_SECONDS))
            macs = {n.payload for n in batch if not n.payload.startswith(MARKER_PREFIX)}
            if macs:
                with reader.begin():
                    found = read_some(reader, macs)
                self.cache.apply(macs, found)
            for notification in batch:
                if notification.payload.startswith(MARKER_PREFIX):
                    connection.execute(
                        "SELECT pg_notify(%s, %s)", (ACKS_CHANNEL, notification.payload)
                    )

    # --- the committing side ----------------------------------------------------------

    def settle(self) -> None:
        """Wait (at most settle_timeout) until every listening worker has applied what
        this process committed. Never raises: the commit stands, announced late at worst."""
        started = time.monotonic()
        with self._settle_lock:
            if self._last_settle_started >= started:
                return  # one that began after this commit has finished: it covers it
            self._last_settle_started = time.monotonic()
            try:
                acknowledged, expected = self._settle_once(started + self.settle_timeout)
            except (psycopg.Error, SQLAlchemyError) as exc:
                log.warning("device cache: could not settle (%s)", type(exc).__name__)
                if self._settler is not None:
                    self._settler.close()
                    self._settler = None
                return
        if acknowledged < expected:
            log.warning(
                "device cache: %d of %d workers applied a change within %.1f s",
                acknowledged,
                expected,
                self.settle_timeout,
            )
        self.cache.metrics.settle.observe(time.monotonic() - started)

    def _settle_once(self, deadline: float) -> tuple[int, int]:
        with self.database.read_engine.connect() as reader:
            expected = int(reader.exec_driver_sql(_COUNT_LISTENERS, (LISTENER_NAME,)).scalar_one())
        if expected == 0:
            return 0, 0  # no server runs (a command line tool, a test): nobody to wait for
        if self._settler is None or self._settler.closed:
            self._settler = self._connect("iotsupport settle")
            self._settler.execute(f"LISTEN {ACKS_CHANNEL}")
        connection = self._settler
        marker = MARKER_PREFIX + secrets.token_hex(8)
        connection.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, marker))
        acknowledged = 0
        while acknowledged < expected:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for notification in connection.notifies(timeout=left, stop_after=1):
                if notification.payload == marker:
                    acknowledged += 1
        return acknowledged, expected
