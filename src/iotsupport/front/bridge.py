"""A complete request handed to the WSGI app on a bounded pool's threads, its answer
sent by the event loop.

A thread runs the app and gathers the first PIECE_BYTES of the answer; the loop sends
them, and only once the client has taken them does a thread (any of the pool) gather
the next piece. So a large download (a firmware image, a Range) is never held whole,
and a client that reads slowly holds no thread, only its piece. Every step of one
answer runs in the same copied context, so the app's context variables (Flask's
request context) follow the answer from thread to thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import typing as t
from collections.abc import Iterable
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger(__name__)

PIECE_BYTES = 256 * 1024

Send = t.Callable[[dict[str, t.Any]], t.Awaitable[None]]
Headers = list[tuple[str, str]]


# Most answers repeat the same headers (security headers, types, Vary): encoded once.
_ENCODED: dict[tuple[str, str], tuple[bytes, bytes]] = {}
_ENCODED_MAX = 512
_VARYING = frozenset({b"x-request-id", b"etag", b"content-length", b"last-modified", b"location"})


def ascii_headers(headers: Headers) -> list[tuple[bytes, bytes]]:
    encoded = []
    for pair in headers:
        found = _ENCODED.get(pair)
        if found is None:
            found = (pair[0].lower().encode("latin-1"), pair[1].encode("latin-1"))
            if len(_ENCODED) < _ENCODED_MAX and found[0] not in _VARYING:
                _ENCODED[pair] = found
        encoded.append(found)
    return encoded


class _Answer:
    """One WSGI answer, stepped through on pool threads."""

    def __init__(self, app: WSGIApplication, environ: dict[str, t.Any]) -> None:
        self.app = app
        self.environ = environ
        self.status = 500
        self.headers: Headers = []
        self.body: Iterable[bytes] = ()
        self.chunks: Iterator[bytes] = iter(())
        self.closed = False

    def start(self) -> tuple[bytes, bool]:
        def start_response(status: str, headers: Headers, exc_info: t.Any = None) -> t.Any:
            self.status = int(status.split(" ", 1)[0])
            self.headers = list(headers)
            return _no_write

        self.body = self.app(self.environ, start_response)
        self.chunks = iter(self.body)
        return self.piece()

    def piece(self) -> tuple[bytes, bool]:
        """Up to PIECE_BYTES of the body (more when the app yields more at once), and
        whether the body ended."""
        parts: list[bytes] = []
        size = 0
        for chunk in self.chunks:
            if chunk:
                parts.append(chunk)
                size += len(chunk)
                if size >= PIECE_BYTES:
                    return b"".join(parts), False
        self.close()  # on this thread visit: no other one just to end
        return b"".join(parts), True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        close = getattr(self.body, "close", None)
        if close is not None:
            close()  # the app's own end: Flask's teardown, open files
        self.environ["wsgi.input"].close()


def _no_write(data: bytes) -> None:
    raise NotImplementedError("write() of WSGI is not supported; return an iterable")


async def serve_wsgi(
    app: WSGIApplication,
    pool: ThreadPoolExecutor,
    environ: dict[str, t.Any],
    send: Send,
    on_failure: t.Callable[[], t.Awaitable[None]],
) -> None:
    """Run `app` on `pool`, sending its answer piece by piece. `on_failure` answers when
    the app raised before its answer began; after that, the connection is cut."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    answer = _Answer(app, environ)

    async def step(call: t.Callable[[], tuple[bytes, bool]]) -> tuple[bytes, bool]:
        return await loop.run_in_executor(pool, context.run, call)

    try:
        try:
            piece, ended = await step(answer.start)
        except Exception:
            log.exception("the app failed on %s", environ.get("PATH_INFO", "")[:256])
            await on_failure()
            return
        head_only = environ["REQUEST_METHOD"] == "HEAD"
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": ascii_headers(answer.headers),
            }
        )
        while True:
            if not head_only:
                await send({"type": "http.response.body", "body": piece, "more_body": not ended})
            if ended:
                if head_only:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            try:
                piece, ended = await step(answer.piece)
            except Exception:
                log.exception("the answer to %s broke off", environ.get("PATH_INFO", "")[:256])
                raise
    finally:
        if not answer.closed:  # the app failed, or the client left: end it on a thread
            closing = loop.run_in_executor(pool, context.run, answer.close)
            closing.add_done_callback(_log_failure)


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("closing an answer failed", exc_info=future.exception())
