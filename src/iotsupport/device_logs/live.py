"""Following a log: `after=<latest>&wait=<seconds>` answers once newer lines exist.

Under `iotsupport serve` the wait happens on the event loop (the ASGI front calls
`front_wait` before it hands the request to a thread), so a browser tab following a
device costs a coroutine, never one of the worker's threads; Flask then answers at
once. Under plain WSGI the route waits on its thread instead (`wait_blocking`).

What "newer" means is read from the database by one thread per worker, only while
someone waits: each second, and at once when this worker has written lines, the newest
line id of each device waited on (and of the fleet). Lines that other workers or
replicas write are so seen within a second.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import typing as t
from urllib.parse import parse_qs

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from iotsupport.device_logs.tables import DEVICE_LOGS

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
MAX_WAITERS = 1000  # per worker; beyond, a follower is answered at once
WAITED = "iotsupport.logs.waited"  # environ: the front did the waiting (or declined to)
_PATH = re.compile(r"^/api/(?:configs/(\d{1,10})/)?logs$")
_L = DEVICE_LOGS.c
Scope = int | None  # a config id, or None for the whole fleet


class _Waiter:
    __slots__ = ("scope", "after", "wake")

    def __init__(self, scope: Scope, after: int, wake: t.Callable[[], None]) -> None:
        self.scope = scope
        self.after = after
        self.wake = wake


class LiveLogs:
    """Per worker: who waits for newer lines of what, and the thread that looks."""

    def __init__(self, session_factory: t.Callable[[], Session], max_wait: float) -> None:
        self._session_factory = session_factory
        self.max_wait = max_wait
        self._waiters: set[_Waiter] = set()
        self._lock = threading.Lock()
        self._woken = threading.Event()
        self._thread: threading.Thread | None = None

    def written(self) -> None:
        """This worker wrote lines: look now rather than at the next tick."""
        self._woken.set()

    async def wait(self, scope: Scope, after: int, seconds: float) -> None:
        """Return once a line newer than `after` exists in `scope`, or after `seconds`."""
        loop = asyncio.get_running_loop()
        arrived = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(arrived.set)

        waiter = _Waiter(scope, after, wake)
        if not self._add(waiter):
            return
        try:
            await asyncio.wait_for(arrived.wait(), timeout=min(seconds, self.max_wait))
        except TimeoutError:
            pass
        finally:
            self._remove(waiter)

    def wait_blocking(self, scope: Scope, after: int, seconds: float) -> None:
        arrived = threading.Event()
        waiter = _Waiter(scope, after, arrived.set)
        if not self._add(waiter):
            return
        try:
            arrived.wait(min(seconds, self.max_wait))
        finally:
            self._remove(waiter)

    async def front_wait(self, environ: dict[str, t.Any]) -> None:
        """The ASGI front's hook: a log follow waits here, on the loop."""
        if environ["REQUEST_METHOD"] != "GET":
            return
        match = _PATH.match(environ["PATH_INFO"])
        if match is None:
            return
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            after = int(query["after"][0])
            seconds = float(query["wait"][0])
        except (KeyError, ValueError, IndexError):
            return  # not a follow, or one the route refuses (400)
        environ[WAITED] = True
        if seconds > 0 and after >= 0:
            await self.wait(int(match.group(1)) if match.group(1) else None, after, seconds)

    def _add(self, waiter: _Waiter) -> bool:
        with self._lock:
            if len(self._waiters) >= MAX_WAITERS:
                return False
            self._waiters.add(waiter)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="log-follow", daemon=True)
                self._thread.start()
        self._woken.set()  # its first look at once
        return True

    def _remove(self, waiter: _Waiter) -> None:
        with self._lock:
            self._waiters.discard(waiter)

    def _run(self) -> None:
        while True:
            with self._lock:
                waiters = list(self._waiters)
                if not waiters:
                    self._thread = None
                    return
            try:
                newest = self._newest({waiter.scope for waiter in waiters})
            except Exception as exc:  # the database away: look again next tick
                log.warning("log follow: newest lines not read: %s", type(exc).__name__)
                newest = {}
            for waiter in waiters:
                if newest.get(waiter.scope, 0) > waiter.after:
                    self._remove(waiter)
                    waiter.wake()
            self._woken.wait(POLL_SECONDS)
            self._woken.clear()
            time.sleep(0.05)  # a burst of writes is one look

    def _newest(self, scopes: set[Scope]) -> dict[Scope, int]:
        newest: dict[Scope, int] = {}
        with self._session_factory() as session:
            for scope in scopes:
                query = select(func.max(_L.id))
                if scope is not None:
                    query = query.where(_L.config_id == scope)
                newest[scope] = session.execute(query).scalar() or 0
        return newest
