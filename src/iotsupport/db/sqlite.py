"""SQLite, the embedded default: its connections, and writers that wait their turn.

SQLite has one writer at a time. Left to itself, a writer that finds the lock taken
polls for it (sleeping up to 100 ms between tries) and gives up after its busy
timeout: under a long import, saves failed although the database was merely busy,
and whoever polled at the right moment won. Here each process queues its write
transactions in arrival order in memory (the `WriterQueue`), so waiting costs no
polling and a long import that commits in turns (`db.Turns`) lets every writer that
arrived meanwhile in before its next turn. Between processes (workers, a CLI
command) SQLite's busy timeout still decides, and it is as long as the queue's wait:
`DB_BUSY_TIMEOUT_SECONDS`. Only past it is a write refused: 503 `database_busy`.

Readers never wait on writers: WAL mode, and reads (GET, the device cache's journal
check) run without BEGIN (autocommit), so they take no lock.
"""

from __future__ import annotations

import collections
import sqlite3
import threading

from sqlalchemy import Connection
from sqlalchemy import Engine
from sqlalchemy import event

from iotsupport.errors import DatabaseBusy


class WriterQueue:
    """One write transaction at a time in this process, handed over in arrival order.

    Held from a connection's BEGIN to its COMMIT or ROLLBACK. A thread that holds it and
    begins on a second connection is let through (SQLite's own lock then decides, as it
    did before), so the queue can never wait on itself.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._mutex = threading.Lock()
        self._waiting: collections.deque[tuple[int, threading.Event]] = collections.deque()
        self._owner: int | None = None  # thread id
        self._holders: set[int] = set()  # id() of the connections in a transaction

    def acquire(self, connection: object) -> None:
        me = threading.get_ident()
        with self._mutex:
            if self._owner is None or self._owner == me:
                self._owner = me
                self._holders.add(id(connection))
                return
            turn = threading.Event()
            self._waiting.append((me, turn))
        if not turn.wait(self.timeout):
            with self._mutex:
                if not turn.is_set():  # not handed over meanwhile: leave the queue
                    self._waiting.remove((me, turn))
                    raise DatabaseBusy(self.timeout)
        with self._mutex:
            self._holders.add(id(connection))

    def waiting(self) -> bool:
        """Whether a writer waits for its turn."""
        return bool(self._waiting)

    def release(self, connection: object) -> None:
        with self._mutex:
            if id(connection) not in self._holders:
                return
            self._holders.discard(id(connection))
            if self._holders:
                return
            if self._waiting:
                self._owner, turn = self._waiting.popleft()
                turn.set()
            else:
                self._owner = None


def configure(engine: Engine, busy_timeout: float) -> WriterQueue:
    """Tune each new connection and queue the engine's write transactions."""
    queue = WriterQueue(busy_timeout)
    event.listen(engine, "connect", _tune)
    event.listen(engine, "checkout", _manual_transactions)

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        # Take the write lock up front, so a read-then-write transaction cannot be
        # overtaken by another writer (no lost updates, consecutive versions).
        if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return
        driver = connection.connection.dbapi_connection
        queue.acquire(driver)
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            queue.release(driver)
            raise

    def _end(connection: Connection) -> None:
        queue.release(connection.connection.dbapi_connection)

    event.listen(engine, "commit", _end)
    event.listen(engine, "rollback", _end)
    # A connection returned or thrown away in a transaction (an error) ends its turn too.
    event.listen(engine, "checkin", lambda driver, _record: queue.release(driver))
    event.listen(engine, "invalidate", lambda driver, _record, _exc: queue.release(driver))
    return queue


def _tune(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    # SQLite's own lower() knows only ASCII; the content search needs every alphabet.
    dbapi_connection.create_function("unicode_lower", 1, _unicode_lower, deterministic=True)


def _unicode_lower(text: str | None) -> str | None:
    return text.lower() if isinstance(text, str) else text


def _manual_transactions(dbapi_connection: sqlite3.Connection, *_: object) -> None:
    # Stop pysqlite from opening transactions itself; the "begin" listener does it.
    dbapi_connection.isolation_level = None
