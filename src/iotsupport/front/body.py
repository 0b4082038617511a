"""A request body read whole on the event loop, before any thread of the app sees it.

Held in memory up to SPOOL_MEMORY_BYTES, then in a temp file, so that a 64 MiB upload
costs disk, not memory. Refused when it is larger than the route's limit (as soon as
Content-Length says so, or as soon as a chunked body passes it) or when it has not
arrived whole within the deadline.
"""

from __future__ import annotations

import asyncio
import tempfile
import typing as t
from dataclasses import dataclass

from iotsupport.assets.upload import FORM_OVERHEAD_BYTES
from iotsupport.settings import Settings

# A device config and most admin bodies fit; beyond, the body goes to a temp file.
SPOOL_MEMORY_BYTES = 64 * 1024

Receive = t.Callable[[], t.Awaitable[dict[str, t.Any]]]


class Refused(Exception):
    """The body is not handed on: answer `status` in the JSON envelope."""

    def __init__(self, status: int, message: str, code: str, details: dict[str, t.Any]) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.details = details


class ClientGone(Exception):
    """The client went away before its body was complete: nobody to answer."""


@dataclass(frozen=True)
class Limit:
    max_bytes: int
    setting: str  # what a refusal names


class Limits:
    """The largest body each route may be sent, as the app's own checks allow it."""

    def __init__(self, settings: Settings) -> None:
        self.default = Limit(settings.max_request_bytes, "MAX_REQUEST_BYTES")
        # The file and the form around it (assets/upload.py reads no more either).
        self.upload = Limit(settings.asset_max_bytes + FORM_OVERHEAD_BYTES, "ASSET_MAX_BYTES")
        self.imports = Limit(
            max(settings.import_max_bytes, settings.max_request_bytes), "IMPORT_MAX_BYTES"
        )
        self.timeout = settings.request_body_timeout_seconds

    def of(self, method: str, path: str) -> Limit:
        if method == "POST":
            if path == "/api/assets" or (
                path.startswith("/api/models/") and path.endswith("/releases")
            ):
                return self.upload
            if path == "/api/configs/import":
                return self.imports
        return self.default


def too_large(limit: Limit) -> Refused:
    return Refused(
        413,
        f"the request body is larger than {limit.max_bytes} bytes ({limit.setting})",
        "payload_too_large",
        {"max_bytes": limit.max_bytes},
    )


def declared_length(headers: t.Iterable[tuple[bytes, bytes]]) -> int | None:
    """Content-Length, when the client sent one (the HTTP server has checked its form)."""
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_body(
    receive: Receive, declared: int | None, limit: Limit, timeout: float
) -> t.BinaryIO:
    """The whole body, at position 0 (the caller closes it)."""
    if declared is not None and declared > limit.max_bytes:
        raise too_large(limit)
    body = t.cast(t.BinaryIO, tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES))
    try:
        await _fill(body, receive, limit, asyncio.get_running_loop().time() + timeout, timeout)
    except BaseException:
        body.close()
        raise
    body.seek(0)
    return body


async def _fill(
    body: t.BinaryIO, receive: Receive, limit: Limit, deadline: float, timeout: float
) -> None:
    received = 0
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            raise Refused(
                408,
                f"the request body did not arrive within {timeout:g} seconds "
                "(REQUEST_BODY_TIMEOUT_SECONDS)",
                "request_timeout",
                {"timeout_seconds": timeout},
            ) from None
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk: bytes = message.get("body", b"")
        received += len(chunk)
        if received > limit.max_bytes:
            raise too_large(limit)
        if chunk:
            body.write(chunk)
        if not message.get("more_body", False):
            return
