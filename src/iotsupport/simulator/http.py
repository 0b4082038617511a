"""A small HTTP/1.1 client for the devices' requests: keep-alive connections, asyncio.

The devices' requests are the simulator's hot path: httpx's async client spent about
2.5 ms of CPU per request here, this one about a tenth of that, which is what lets one
process drive a thousand devices next to the server on a small machine. It speaks just
what the device routes answer: Content-Length or chunked bodies, or a body to the end of
a closed connection. (The admin calls, a few per run, use httpx.)
"""

from __future__ import annotations

import asyncio
import ssl
import typing as t
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

READ_SIZE = 64 * 1024
MAX_HEAD_BYTES = 64 * 1024


class HttpError(Exception):
    """No answer: refused, reset, timed out, or not HTTP."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpPool:
    """At most `size` keep-alive connections to the server at `base_url`."""

    def __init__(self, base_url: str, size: int = 100, timeout: float = 60.0) -> None:
        parts = urlsplit(base_url)
        self.tls = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc
        self.timeout = timeout
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(size)

    async def request(
        self, method: str, target: str, headers: dict[str, str], body: bytes = b""
    ) -> Answer:
        """A whole answer (for small bodies)."""
        pieces: list[bytes] = []
        status, answer_headers = await self.stream(method, target, headers, pieces.append, body)
        return Answer(status, answer_headers, b"".join(pieces))

    async def stream(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        sink: Callable[[bytes], object],
        body: bytes = b"",
    ) -> tuple[int, dict[str, str]]:
        """Send the request (with `body`, if any); hand the answer's body to `sink` piece by
        piece. `target` is a path or a URL (only its path and query are used: the pool
        talks to its own server)."""
        parts = urlsplit(target)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        async with self._slots:
            try:
                return await asyncio.wait_for(
                    self._exchange(method, path, headers, sink, body), self.timeout
                )
            except (
                OSError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                ValueError,  # not HTTP: a status or chunk size that is no number
            ) as exc:
                raise HttpError(f"{type(exc).__name__}: {exc}") from None
            except TimeoutError:
                raise HttpError("timed out") from None

    async def close(self) -> None:
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()

    async def _exchange(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        sink: Callable[[bytes], object],
        body: bytes = b"",
    ) -> tuple[int, dict[str, str]]:
        reused = bool(self._idle)
        reader, writer = self._idle.pop() if reused else await self._open()
        keep = False
        try:
            head = [f"{method} {path} HTTP/1.1", f"Host: {self.host_header}"]
            head += [f"{name}: {value}" for name, value in headers.items()]
            if body:
                head.append(f"Content-Length: {len(body)}")
            request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
            writer.write(request)
            try:
                status, answer = await _read_head(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                if not reused:
                    raise
                writer.close()  # the server closed an idle connection: once more, fresh
                reader, writer = await self._open()
                writer.write(request)
                status, answer = await _read_head(reader)
            keep = await _read_body(reader, method, status, answer, sink)
            return status, answer
        finally:
            if keep:
                self._idle.append((reader, writer))
            else:
                writer.close()

    async def _open(self) -> _Connection:
        context = ssl.create_default_context() if self.tls else None
        return await asyncio.open_connection(self.host, self.port, ssl=context, limit=READ_SIZE)


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    if len(raw) > MAX_HEAD_BYTES:
        raise OSError("the answer's head is too long")
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1."):
        raise OSError("not an HTTP/1.1 answer")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(rest[:3]), headers


async def _read_body(
    reader: asyncio.StreamReader,
    method: str,
    status: int,
    headers: dict[str, str],
    sink: Callable[[bytes], object],
) -> bool:
    """Read the body into `sink`; whether the connection may be used again."""
    keep = headers.get("connection", "").lower() != "close"
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return keep
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers are sent to devices
                return keep
            await _copy(reader, size, sink)
            await reader.readexactly(2)
    if "content-length" in headers:
        await _copy(reader, int(headers["content-length"]), sink)
        return keep
    while piece := await reader.read(READ_SIZE):
        sink(piece)
    return False


async def _copy(reader: asyncio.StreamReader, size: int, sink: Callable[[bytes], t.Any]) -> None:
    left = size
    while left:
        piece = await reader.read(min(READ_SIZE, left))
        if not piece:
            raise asyncio.IncompleteReadError(b"", left)
        sink(piece)
        left -= len(piece)
