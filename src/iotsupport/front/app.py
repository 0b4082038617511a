"""The ASGI app `iotsupport serve` runs: an event loop in front of the Flask app's threads.

Per request, on the loop: the body is read whole (front/body.py), so a client that
sends slowly costs a coroutine and its bytes, never a thread; a device fetch that
memory can answer is answered right there, by the same code and middleware as
under WSGI (device_cache/fast_path.py inside compression.py), so device fetches
never queue behind admin work; everything else goes whole to the WSGI app on a
pool of THREADS threads (front/bridge.py). Lifespan starts and stops the worker's
background threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor

from flask import Flask

from iotsupport.api.protections import DEFAULT_CSP
from iotsupport.api.protections import SECURITY_HEADERS
from iotsupport.compression import Compression
from iotsupport.device_cache.fast_path import DECLINED
from iotsupport.device_cache.fast_path import DeviceFetchFastPath
from iotsupport.front import WAITS
from iotsupport.front import Wait
from iotsupport.front.body import ClientGone
from iotsupport.front.body import Limits
from iotsupport.front.body import Refused
from iotsupport.front.body import declared_length
from iotsupport.front.body import read_body
from iotsupport.front.bridge import Headers
from iotsupport.front.bridge import Send
from iotsupport.front.bridge import ascii_headers
from iotsupport.front.bridge import serve_wsgi
from iotsupport.front.environ import head_environ
from iotsupport.front.environ import with_body
from iotsupport.observability import REQUEST_ID_HEADER
from iotsupport.observability import request_id

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger(__name__)

Receive = t.Callable[[], t.Awaitable[dict[str, t.Any]]]
Scope = t.MutableMapping[str, t.Any]
_FETCH_PREFIX = "/api/configs/"


class Front:
    """The ASGI callable around one worker's Flask app."""

    def __init__(
        self,
        app: Flask,
        threads: int,
        *,
        on_startup: t.Callable[[], None] = lambda: None,
        on_shutdown: t.Callable[[], None] = lambda: None,
    ) -> None:
        from iotsupport.extensions import state

        self.wsgi: WSGIApplication = app.wsgi_app
        compression = app.wsgi_app
        fast = getattr(compression, "app", None)
        if not isinstance(compression, Compression) or not isinstance(fast, DeviceFetchFastPath):
            raise TypeError("create_app must wrap Flask in DeviceFetchFastPath, then Compression")
        # The fast path alone, inside the same Compression: a declined fetch comes back
        # as DECLINED with nothing started, and goes to a thread.
        self.from_memory = Compression(fast.answer_only)
        self.metrics = fast.metrics
        self.limits = Limits(state(app).settings)
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wsgi")
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        self.waits: list[Wait] = list(app.extensions.get(WAITS, ()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await asyncio.to_thread(self.on_startup)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.pool.shutdown(wait=False)
                await asyncio.to_thread(self.on_shutdown)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        environ = head_environ(scope)
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        limit = self.limits.of(method, path)
        try:
            body = await read_body(
                receive, declared_length(scope), limit, self.limits.timeout, self.limits.budget
            )
        except ClientGone:
            return
        except Refused as refusal:
            await self._refuse(environ, send, refusal, started)
            return
        size = body.seek(0, 2)
        body.seek(0)
        try:
            if (method == "GET" or method == "HEAD") and path.startswith(_FETCH_PREFIX):
                if await self._from_memory(dict(environ), send):
                    return
            for wait in self.waits:  # e.g. a log follow, until newer lines exist
                await wait(environ)
            environ = with_body(environ, body, size)

            async def failed() -> None:
                refusal = Refused(500, "the server failed to answer", "internal_error", {})
                await self._refuse(environ, send, refusal, started)

            await serve_wsgi(self.wsgi, self.pool, environ, send, failed)
        finally:
            self.limits.budget.give_back(size)
            body.close()

    async def _from_memory(self, environ: dict[str, t.Any], send: Send) -> bool:
        answer: list[tuple[str, Headers]] = []

        def start_response(status: str, headers: Headers, exc_info: t.Any = None) -> t.Any:
            answer.append((status, headers))

        body = self.from_memory(environ, start_response)
        if body is DECLINED or not answer:
            return False
        status, headers = answer[0]
        data = b"".join(body)
        start = {"status": int(status.split(" ", 1)[0]), "headers": ascii_headers(headers)}
        await send({"type": "http.response.start", **start})
        await send({"type": "http.response.body", "body": data, "more_body": False})
        return True

    async def _refuse(
        self, environ: dict[str, t.Any], send: Send, refusal: Refused, started: float
    ) -> None:
        """A refusal before the app: the JSON envelope, the headers of every answer, the
        access log line and metrics (route `unmatched`: the app never routed it)."""
        answered_id = request_id(environ.get("HTTP_X_REQUEST_ID"))
        data = json.dumps(
            {"error": refusal.message, "code": refusal.code, "details": refusal.details}
        ).encode()
        headers: Headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            *SECURITY_HEADERS.items(),
            ("Content-Security-Policy", DEFAULT_CSP),
            ("Cache-Control", "no-store"),
            (REQUEST_ID_HEADER, answered_id),
        ]
        if refusal.status in (408, 413):
            headers.append(("Connection", "close"))  # the rest of the body is not read
        await send(
            {
                "type": "http.response.start",
                "status": refusal.status,
                "headers": ascii_headers(headers),
            }
        )
        await send({"type": "http.response.body", "body": data, "more_body": False})
        self.metrics.record(
            environ["REQUEST_METHOD"],
            environ["PATH_INFO"],
            "unmatched",
            refusal.status,
            time.perf_counter() - started,
            answered_id,
        )
