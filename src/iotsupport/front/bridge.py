"""A complete request handed to the WSGI app on one of a bounded pool's threads, its
answer streamed back to the event loop as the app produces it.

The thread gathers the body into pieces of about CHUNK_BYTES and waits when
IN_FLIGHT_CHUNKS of them are not sent yet: a large download (a firmware image, a
Range) streams without being held whole, and a client that stops reading holds its
thread only once that much is waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import typing as t
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

if t.TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
IN_FLIGHT_CHUNKS = 16

Send = t.Callable[[dict[str, t.Any]], t.Awaitable[None]]
Headers = list[tuple[str, str]]


class _Start(t.NamedTuple):
    status: int
    headers: Headers


class _End(t.NamedTuple):
    failed: bool


def ascii_headers(headers: Headers) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]


class _Channel:
    """Thread to loop: the answer's start, its body pieces, its end (in order)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[_Start | bytes | _End] = asyncio.Queue()
        self.room = threading.Semaphore(IN_FLIGHT_CHUNKS)
        self.gone = False  # the client left: the thread stops producing

    def put(self, item: _Start | bytes | _End) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def put_piece(self, piece: bytes) -> bool:
        """False once the client is gone (nothing more is wanted)."""
        while not self.room.acquire(timeout=1.0):
            if self.gone:
                return False
        if self.gone:
            return False
        self.put(piece)
        return True

    def leave(self) -> None:
        self.gone = True
        self.room.release()  # wake a waiting thread


def _run(app: WSGIApplication, environ: dict[str, t.Any], channel: _Channel) -> None:
    """On a pool thread: the whole WSGI exchange."""
    started: list[_Start] = []

    def start_response(status: str, headers: Headers, exc_info: t.Any = None) -> t.Any:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [_Start(int(status.split(" ", 1)[0]), list(headers))]
        return _no_write

    failed = False
    body: Iterable[bytes] | None = None
    try:
        body = app(environ, start_response)
        announced = False
        pending: list[bytes] = []
        size = 0
        for chunk in body:
            if not chunk:
                continue
            if not announced:
                channel.put(started[0])
                announced = True
            pending.append(chunk)
            size += len(chunk)
            if size >= CHUNK_BYTES:
                if not channel.put_piece(b"".join(pending)):
                    return
                pending, size = [], 0
        if not announced:
            channel.put(started[0])
        if pending and not channel.put_piece(b"".join(pending)):
            return
    except Exception:
        log.exception("the app failed while answering %s", environ.get("PATH_INFO", "")[:256])
        failed = True
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("closing an answer failed")
        channel.put(_End(failed))


def _no_write(data: bytes) -> None:
    raise NotImplementedError("write() of WSGI is not supported; return an iterable")


async def serve_wsgi(
    app: WSGIApplication,
    pool: ThreadPoolExecutor,
    environ: dict[str, t.Any],
    send: Send,
    on_failure: t.Callable[[], t.Awaitable[None]],
) -> None:
    """Run `app` on `pool`, sending its answer as it comes. `on_failure` answers when the
    app raised before its answer began; after that, the connection is cut. The body
    (`wsgi.input`) is closed once the thread is done with it."""
    loop = asyncio.get_running_loop()
    channel = _Channel(loop)
    done = loop.run_in_executor(pool, _run, app, environ, channel)
    done.add_done_callback(lambda _: environ["wsgi.input"].close())
    head_only = environ["REQUEST_METHOD"] == "HEAD"
    begun = False
    try:
        while True:
            item = await channel.queue.get()
            if isinstance(item, _Start):
                await send(
                    {
                        "type": "http.response.start",
                        "status": item.status,
                        "headers": ascii_headers(item.headers),
                    }
                )
                begun = True
            elif isinstance(item, _End):
                if item.failed and not begun:
                    await on_failure()
                elif item.failed:
                    raise ConnectionAbortedError("the answer broke off")  # the server cuts it
                else:
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                break
            else:
                if not head_only:
                    await send({"type": "http.response.body", "body": item, "more_body": True})
                channel.room.release()
    finally:
        channel.leave()  # a thread still producing stops at its next piece
