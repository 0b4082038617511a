"""Engines, the per-request session, and the one unit of work per request."""

from __future__ import annotations

import logging
import select
import threading
import time
import typing as t
from collections.abc import Callable
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager

from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import request
from sqlalchemy import Engine
from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from iotsupport.db import sqlite
from iotsupport.errors import DatabaseBusy
from iotsupport.errors import error_response
from iotsupport.errors import is_busy
from iotsupport.settings import Settings

log = logging.getLogger(__name__)

T = t.TypeVar("T")
READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
AFTER_COMMIT_KEY = "after_commit"
READ_ONLY_KEY = "read_only"
BARRIER_KEY = "announcement_barrier"
# Set on a session that wrote what device fetches read (device_cache/store.py).
DEVICES_CHANGED_KEY = "devices_changed"
# On a writing session while announcements are on: what wakes the outbox relay after a
# commit that wrote announcements (outbox/__init__.py). Absent: MQTT is off, none are kept.
OUTBOX_KEY = "outbox_wake"
# Health and the config count give up after this long: a Kubernetes probe times out at 2 s.
PROBE_DEADLINE_SECONDS = 1.5
# How long a long unit of work (an import) holds the write lock before it commits and
# lets the writers that queued meanwhile in.
TURN_SECONDS = 0.2
# SQLite's busy handler polls every 100 ms at most: a pause near that lets another
# process's waiting writer in.
TURN_PAUSE_SECONDS = 0.05


def build_engine(settings: Settings) -> Engine:
    """One engine per process; pooled connections, no pre-ping round trip."""
    if settings.is_sqlite:
        wait = settings.db_busy_timeout_seconds
        engine = create_engine(
            settings.database_url,
            hide_parameters=True,  # config content must never reach a log line
            # Writers of other processes wait as long as this process's queue lets its own.
            connect_args={"timeout": wait, "check_same_thread": False},
        )
        return engine  # Database adds db/sqlite.py's writer queue
    engine = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size or settings.threads,
        max_overflow=4,
        pool_timeout=settings.db_connect_timeout_seconds,
        # No round trip per checkout: _replace_if_closed_by_server looks at the socket
        # instead. A connection that dies while in use still fails that one request.
        pool_pre_ping=False,
        hide_parameters=True,
        connect_args={
            "connect_timeout": max(1, round(settings.db_connect_timeout_seconds)),
            # A partitioned network fails a query within the timeout instead of hanging.
            "tcp_user_timeout": round(settings.db_connect_timeout_seconds * 1000),
            "keepalives_idle": 30,
            # Timestamps arrive in UTC, so reads need no conversion per value.
            "options": "-c TimeZone=UTC",
        },
    )
    event.listen(engine, "checkout", _replace_if_closed_by_server)
    return engine


def _replace_if_closed_by_server(dbapi_connection: t.Any, *_: object) -> None:
    """An idle connection has nothing to read; if it has, the server closed it (a restart
    sends a goodbye and a FIN), so the pool opens another before the request uses it."""
    try:
        readable = select.select([dbapi_connection.fileno()], [], [], 0)[0]
    except Exception as exc:  # closed already: fileno() itself refuses
        raise DisconnectionError(f"pooled connection unusable: {type(exc).__name__}") from None
    if readable:
        log.info("a pooled database connection was closed by the server; replacing it")
        raise DisconnectionError("the server closed this pooled connection")


def autocommit_engine(engine: Engine) -> Engine:
    """A view of the same pool whose reads send no BEGIN/COMMIT round trips."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run callback once the session's transaction has committed (never on rollback)."""
    session.info.setdefault(AFTER_COMMIT_KEY, []).append(callback)


@contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """A nested transaction: if the block raises, what it did is undone, the
    after-commit callbacks it queued included."""
    callbacks: list[Callable[[], None]] = session.info.setdefault(AFTER_COMMIT_KEY, [])
    queued = len(callbacks)
    nested = session.begin_nested()
    try:
        yield
    except BaseException:
        nested.rollback()
        del callbacks[queued:]
        raise
    nested.commit()


def discard(session: Session) -> None:
    """Undo the session's changes and forget its after-commit callbacks (a dry run)."""
    session.rollback()
    session.info.pop(AFTER_COMMIT_KEY, None)


def commit(session: Session) -> None:
    """Commit, then run the after-commit callbacks the services queued."""
    session.commit()
    callbacks: list[Callable[[], None]] = session.info.pop(AFTER_COMMIT_KEY, [])
    barrier: Callable[[], None] | None = session.info.get(BARRIER_KEY)
    if barrier is not None and (session.info.pop(DEVICES_CHANGED_KEY, False) or callbacks):
        # Answer and announce only once every worker serves what was committed
        # (device_cache settle): a revoked token is refused everywhere when this returns.
        barrier()
    for callback in callbacks:
        try:
            callback()
        except Exception:  # a notification must never undo a committed change
            log.exception("after-commit callback failed")


class Turns:
    """Commits a long unit of work now and then, so that other writers get their turn
    in between: every `seconds`, and on SQLite (one writer at a time, db/sqlite.py) as
    soon as a writer of this process waits. After a turn on SQLite it pauses a little,
    so that the writers of other processes, which poll for the lock, find it free."""

    def __init__(
        self, session: Session, writers: sqlite.WriterQueue | None, seconds: float = TURN_SECONDS
    ) -> None:
        self.session = session
        self.writers = writers
        self.seconds = seconds
        self._since = time.monotonic()

    def done_one(self) -> None:
        """Call after each step; commits when the turn is over."""
        waited_on = self.writers is not None and self.writers.waiting()
        if waited_on or time.monotonic() - self._since >= self.seconds:
            commit(self.session)
            if self.writers is not None:
                time.sleep(TURN_PAUSE_SECONDS)
            self._since = time.monotonic()


def busy_response(exc: DatabaseBusy) -> Response:
    response = error_response(exc.status_code, exc.message, exc.code, exc.details)
    response.headers.update(exc.response_headers())
    return response


class Database:
    """Holds the engines; hands each request one lazily opened session."""

    def __init__(self, settings: Settings) -> None:
        self.engine = build_engine(settings)
        # SQLite: this process's write transactions, in arrival order (db/sqlite.py).
        self.writers: sqlite.WriterQueue | None = None
        if settings.is_sqlite:
            self.writers = sqlite.configure(self.engine, settings.db_busy_timeout_seconds)
        self.read_engine = autocommit_engine(self.engine)
        # Probes run here, so a database that accepts but never answers cannot
        # hold a health check or a scrape past its deadline.
        self._probes: ThreadPoolExecutor | None = None
        self._probes_lock = threading.Lock()
        # Run after a commit, before its announcements (set by the device cache).
        self.announcement_barrier: Callable[[], None] | None = None
        # Wakes the outbox relay; None while announcements are off (set by create_app).
        self.outbox_wake: Callable[[], None] | None = None

    def call_with_deadline(
        self, probe: Callable[[Session], T], seconds: float = PROBE_DEADLINE_SECONDS
    ) -> T:
        """Run `probe` on a read-only session; TimeoutError when it takes longer."""

        def run() -> T:
            with self.session(read_only=True) as session:
                return probe(session)

        with self._probes_lock:
            if self._probes is None:
                self._probes = ThreadPoolExecutor(max_workers=2, thread_name_prefix="db-probe")
            future = self._probes.submit(run)
        try:
            return future.result(timeout=seconds)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"the database did not answer within {seconds:g} s") from None

    def session(self, *, read_only: bool = False) -> Session:
        session = Session(bind=self.read_engine if read_only else self.engine)
        session.info[READ_ONLY_KEY] = read_only
        if not read_only and self.announcement_barrier is not None:
            session.info[BARRIER_KEY] = self.announcement_barrier
        if not read_only and self.outbox_wake is not None:
            session.info[OUTBOX_KEY] = self.outbox_wake
        return session

    def dispose(self) -> None:
        """Close pooled connections and probe threads; both come back on next use."""
        with self._probes_lock:
            if self._probes is not None:
                self._probes.shutdown(wait=False, cancel_futures=True)
                self._probes = None
        self.engine.dispose()


def get_session() -> Session:
    """The request's session; reads in GET/HEAD run without a transaction."""
    session: Session | None = g.get("db_session")
    if session is None:
        database: Database = current_app.extensions["iotsupport"].database
        session = database.session(read_only=request.method in READ_ONLY_METHODS)
        g.db_session = session
    return session


def init_app(app: Flask) -> None:
    @app.after_request
    def _commit_unit_of_work(response: Response) -> Response:
        session: Session | None = g.get("db_session")
        if session is None or session.info[READ_ONLY_KEY] or response.status_code >= 400:
            return response  # nothing to commit; teardown closes (and rolls back)
        g.pop("db_session")
        try:
            commit(session)
        except IntegrityError:
            log.info("commit refused by a constraint")
            return error_response(409, "the change conflicts with existing data", "conflict")
        except OperationalError as exc:
            log.error("commit failed: %s", exc.orig)
            if is_busy(exc.orig):
                return busy_response(DatabaseBusy())
            return error_response(503, "the database is not reachable", "database_unavailable")
        finally:
            session.close()
        return response

    @app.teardown_request
    def _close_session(_exc: BaseException | None) -> None:
        session: Session | None = g.pop("db_session", None)
        if session is not None:
            session.close()  # rolls back anything left uncommitted
