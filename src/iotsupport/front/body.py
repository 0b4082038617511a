"""A request body read whole on the event loop, before any thread of the app sees it.

Held in memory up to SPOOL_MEMORY_BYTES, then in a temp file, so that a 64 MiB upload
costs disk, not memory. Refused when it is larger than the route's limit (as soon as
Content-Length says so, or as soon as a chunked body passes it) or when it has not
arrived whole within the deadline.
"""

from __future__ import annotations

import asyncio
import io
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


class BodyBudget:
    """The bytes of bodies this worker holds (memory and temp files) from their first
    byte until their request has been answered: a stranger's many large uploads, slow
    or not, cannot fill the disk. Only the event loop's thread uses it (no lock)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.held = 0

    def take(self, size: int) -> None:
        if self.held + size > self.max_bytes:
            raise Refused(
                503,
                "the server is receiving too many request bodies at once; try again shortly",
                "server_busy",
                {"max_bytes_in_flight": self.max_bytes},
            )
        self.held += size

    def give_back(self, size: int) -> None:
        self.held = max(0, self.held - size)


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
        # Four uploads of the largest size at once, per worker; ordinary bodies are small.
        self.budget = BodyBudget(4 * self.upload.max_bytes)

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


def declared_length(scope: t.Mapping[str, t.Any]) -> int | None:
    """The body's length as the head tells it (the HTTP server has checked its form):
    Content-Length, 0 for an HTTP/1 request with neither it nor Transfer-Encoding (it
    has no body), None when only the body's end will tell (chunked, HTTP/2)."""
    length: int | None = None
    framed = False
    for name, value in scope["headers"]:
        lowered = name.lower()
        if lowered == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None
        elif lowered == b"transfer-encoding":
            framed = True
    if length is None and not framed and str(scope.get("http_version", "")).startswith("1"):
        return 0
    return None if framed else length


async def read_body(
    receive: Receive, declared: int | None, limit: Limit, timeout: float, budget: BodyBudget
) -> t.BinaryIO:
    """The whole body, at position 0. The caller closes it and gives its size back to
    `budget` once its request has been answered."""
    if declared is not None and declared > limit.max_bytes:
        raise too_large(limit)
    if declared == 0:
        return io.BytesIO()  # nothing to wait for (a device fetch, most admin reads)
    body = t.cast(t.BinaryIO, tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES))
    try:
        async with asyncio.timeout(timeout):  # one timer for the whole body
            await _fill(body, receive, limit, budget)
    except TimeoutError:
        budget.give_back(body.seek(0, 2))
        body.close()
        raise Refused(
            408,
            f"the request body did not arrive within {timeout:g} seconds "
            "(REQUEST_BODY_TIMEOUT_SECONDS)",
            "request_timeout",
            {"timeout_seconds": timeout},
        ) from None
    except BaseException:
        budget.give_back(body.seek(0, 2))
        body.close()
        raise
    body.seek(0)
    return body


async def _fill(body: t.BinaryIO, receive: Receive, limit: Limit, budget: BodyBudget) -> None:
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk: bytes = message.get("body", b"")
        received += len(chunk)
        if received > limit.max_bytes:
            raise too_large(limit)
        if chunk:
            budget.take(len(chunk))
            body.write(chunk)
        if not message.get("more_body", False):
            return
