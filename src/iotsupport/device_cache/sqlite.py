"""SQLite: a fetch first compares the journal's newest `seq` with the applied one.

SQLite has one writer at a time, so `seq` follows commit order: reading past the last
applied `seq` finds every change since, and a fetch after a commit always sees it. The
comparison is one indexed read on a connection this worker keeps open (no pool, no
transaction); catching up runs under a lock, once, for every waiting fetch.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from sqlalchemy import Connection
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from iotsupport.db import Database
from iotsupport.device_cache.documents import read_all
from iotsupport.device_cache.documents import read_some
from iotsupport.device_cache.store import DeviceCache
from iotsupport.device_cache.tables import DeviceChange

log = logging.getLogger(__name__)

_CHANGES = DeviceChange.__table__.c
_NEWEST = f"SELECT max(seq) FROM {DeviceChange.__tablename__}"
_SINCE = select(_CHANGES.seq, _CHANGES.mac_address).order_by(_CHANGES.seq)


class JournalFeed:
    def __init__(self, cache: DeviceCache, database: Database) -> None:
        self.cache = cache
        self.database = database
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._driver: sqlite3.Connection | None = None
        self._applied = 0
        self._started = False
        self._failing = False  # warned already

    def start(self) -> None:
        self._started = True

    def stop(self) -> None:
        with self._lock:
            self._started = False
            if self._connection is not None:
                self._connection.close()
                self._connection = None
            self.cache.lost()

    def database_away(self) -> bool:
        return False  # a file next to the server: never away while memory would help

    def current(self) -> bool:
        if not self._started:
            return False
        with self._lock:
            try:
                if self._connection is None:  # first use, or after a failure
                    self._connection = self.database.read_engine.connect()
                    self._driver = self._connection.connection.driver_connection
                    self._load_all(self._connection)
                newest = self._newest()
                if newest != self._applied:
                    self._catch_up(self._connection, newest)
                self._failing = False
            except (SQLAlchemyError, sqlite3.Error) as exc:
                # E.g. a database not migrated yet: read it directly, try again next time.
                if self._connection is not None or not self._failing:
                    log.warning("device cache: journal unreadable (%s)", type(exc).__name__)
                self._failing = True
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None
                self.cache.lost()
                return False
            return True

    def settle(self) -> None:
        """Nothing to wait for: every fetch catches up before it answers."""

    def _catch_up(self, connection: Connection, newest: int) -> None:
        rows = connection.execute(_SINCE.where(_CHANGES.seq > self._applied)).all()
        if not rows or rows[0].seq != self._applied + 1:
            # Pruned past what this worker applied (or the journal was reset).
            self._load_all(connection)
            return
        macs = {row.mac_address for row in rows}
        self.cache.apply(macs, read_some(connection, macs))
        self._applied = rows[-1].seq

    def _newest(self) -> int:
        """The journal's newest seq, on the driver's own connection: a fraction of
        SQLAlchemy's cost, on every fetch."""
        assert self._driver is not None
        row = self._driver.execute(_NEWEST).fetchone()
        return (row[0] if row is not None else None) or 0

    def _load_all(self, connection: Connection) -> None:
        # The newest seq first: whatever commits during the load is applied again after.
        newest = self._newest()
        self.cache.replace_all(dict(read_all(connection)))
        self._applied = newest
