"""Compressed answers for clients that accept them: the JSON, pages, scripts and styles.

A WSGI middleware around the whole app, so no route knows about it. It leaves
alone what compression would break or not pay for: answers other than 200,
byte ranges, firmware and images (not text), HEAD, `no-transform`, and bodies
under MIN_BYTES (a device's typical config fits in one packet either way).

A compressed answer is another representation, so its ETag gets a suffix
(`"abc"` becomes `"abc-br"`); the suffix is taken off the If-None-Match and
If-Match headers a client sends back, so 304s and If-Match keep working
whichever encoding the client got.
"""

from __future__ import annotations

import re
import typing as t
import zlib
from collections.abc import Iterable
from collections.abc import Iterator

import brotli

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

# Smaller answers fit in one TCP segment anyway; compressing them costs more than it saves.
MIN_BYTES = 1400
COMPRESSIBLE_TYPES = frozenset(
    {
        "application/json",
        "application/javascript",
        "text/javascript",
        "text/css",
        "text/html",
        "text/plain",
        "image/svg+xml",
    }
)
# Cheap settings: a 5 MB list compresses ~50x with Brotli in a few ms, ~30x with gzip in ~15 ms.
BROTLI_QUALITY = 1
GZIP_LEVEL = 1
_ETAG_SUFFIXES = {"br": "-br", "gzip": "-gz"}
_SUFFIXED_TAG = re.compile(r'-(?:br|gz)"')
_CONDITIONAL_HEADERS = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH")

Headers = list[tuple[str, str]]


def negotiate(accept_encoding: str) -> str | None:
    """`br` or `gzip` when the client accepts it (q > 0), Brotli first; else None."""
    accepted: dict[str, float] = {}
    for part in accept_encoding.lower().split(","):
        name, _, params = part.strip().partition(";")
        quality = 1.0
        key, _, value = params.strip().partition("=")
        if key.strip() == "q":
            try:
                quality = float(value)
            except ValueError:
                quality = 0.0
        accepted[name.strip()] = quality
    for encoding in ("br", "gzip"):
        if accepted.get(encoding, accepted.get("*", 0.0)) > 0:
            return encoding
    return None


def _header(headers: Headers, name: str) -> str | None:
    lowered = name.lower()
    return next((value for key, value in headers if key.lower() == lowered), None)


def _is_compressible_type(headers: Headers) -> bool:
    content_type = (_header(headers, "Content-Type") or "").split(";")[0].strip().lower()
    return content_type in COMPRESSIBLE_TYPES


def _worth_compressing(method: str, status: str, headers: Headers) -> bool:
    length = _header(headers, "Content-Length")
    return (
        method != "HEAD"
        and status.startswith("200")
        and _header(headers, "Content-Encoding") is None
        and _header(headers, "Content-Range") is None
        and "no-transform" not in (_header(headers, "Cache-Control") or "")
        and (length is None or not length.isdigit() or int(length) >= MIN_BYTES)
    )


def _compressed_headers(headers: Headers, encoding: str) -> Headers:
    kept: Headers = []
    for name, value in headers:
        lowered = name.lower()
        if lowered in ("content-length", "accept-ranges"):
            continue  # the length changes; ranges would apply to the identity bytes
        if lowered == "etag" and value.endswith('"'):
            value = value[:-1] + _ETAG_SUFFIXES[encoding] + '"'
        kept.append((name, value))
    kept.append(("Content-Encoding", encoding))
    return kept


def _add_vary(headers: Headers) -> None:
    for index, (name, value) in enumerate(headers):
        if name.lower() == "vary":
            if "accept-encoding" not in value.lower():
                headers[index] = (name, f"{value}, Accept-Encoding")
            return
    headers.append(("Vary", "Accept-Encoding"))


class _Compressor(t.Protocol):
    def compress(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class _Brotli:
    def __init__(self) -> None:
        self._compressor = brotli.Compressor(quality=BROTLI_QUALITY)

    def compress(self, data: bytes) -> bytes:
        return self._compressor.process(data)  # type: ignore[no-any-return]

    def flush(self) -> bytes:
        return self._compressor.finish()  # type: ignore[no-any-return]


def _compressor(encoding: str) -> _Compressor:
    if encoding == "br":
        return _Brotli()
    return zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing


class _CompressedBody:
    """The app's body, compressed chunk by chunk (a streamed list stays streamed)."""

    def __init__(self, body: Iterable[bytes], encoding: str) -> None:
        self._body = body
        self._compressor = _compressor(encoding)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._body:
            if out := self._compressor.compress(chunk):
                yield out
        yield self._compressor.flush()

    def close(self) -> None:
        # The app's own close (Flask's teardown, open files) must still run.
        close = getattr(self._body, "close", None)
        if close is not None:
            close()


class Compression:
    """WSGI middleware: compress compressible answers for clients that accept it."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        for key in _CONDITIONAL_HEADERS:
            if key in environ:
                environ[key] = _SUFFIXED_TAG.sub('"', environ[key])
        encoding = negotiate(environ.get("HTTP_ACCEPT_ENCODING", ""))
        chosen: list[str] = []

        def start(status: str, headers: Headers, exc_info: t.Any = None) -> t.Any:
            if _is_compressible_type(headers):
                _add_vary(headers)
                method = environ.get("REQUEST_METHOD", "GET")
                if encoding is not None and _worth_compressing(method, status, headers):
                    headers = _compressed_headers(headers, encoding)
                    chosen.append(encoding)
            return start_response(status, headers, exc_info)

        body = self.app(environ, start)
        return _CompressedBody(body, chosen[0]) if chosen else body
