"""The device config fetch answered from memory before Flask (WSGI middleware).

Most of a fetch's time in Flask is Flask: its contexts, routing and hooks (about 220 µs
of 240 in-process). A fetch this worker can answer from memory, as it is, is answered
here in a few tens of µs, with what the Flask route would send: the same decision
(`DeviceGate.admit_fetch`), check-in, ETag/304, headers, access log line and metrics.
Everything else goes on to Flask unchanged: refusals (so that a wrong token and an
unknown MAC still take the one path, counted once), a first use that must write, an
oversized head, a malformed MAC, any other method or path, and every fetch while the
cache is not current.

Under `iotsupport serve` the ASGI front (iotsupport/front) calls `answer_only` on its
event loop, inside the same Compression, so a fetch from memory never waits for a
thread; this middleware still answers what reaches Flask's threads (and tests).
"""

from __future__ import annotations

import time
import typing as t
from collections.abc import Iterable

from werkzeug.http import parse_etags

from iotsupport.api.protections import DEFAULT_CSP
from iotsupport.api.protections import SECURITY_HEADERS
from iotsupport.api.protections import head_within_limits
from iotsupport.configs.content import normalize_mac
from iotsupport.configs.reports import DeviceReports
from iotsupport.credentials.device_auth import FETCH_ROUTE
from iotsupport.credentials.device_auth import Admission
from iotsupport.credentials.device_auth import AuthenticatedDevice
from iotsupport.credentials.device_auth import DeviceGate
from iotsupport.credentials.headers import presented_credential
from iotsupport.errors import InvalidInput
from iotsupport.observability import REQUEST_ID_HEADER
from iotsupport.observability import RequestMetrics
from iotsupport.observability import request_id

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse
    from _typeshed.wsgi import WSGIApplication
    from _typeshed.wsgi import WSGIEnvironment

_PREFIX = "/api/configs/"
_SUFFIX = ".json"
_COMMON_HEADERS = [
    ("Cache-Control", "no-cache"),
    *SECURITY_HEADERS.items(),
    ("Content-Security-Policy", DEFAULT_CSP),
]
_JSON_HEADERS = [("Content-Type", "application/json")]
# What `answer_only` returns when Flask must answer (compared by identity).
DECLINED: list[bytes] = []


class DeviceFetchFastPath:
    def __init__(
        self,
        app: WSGIApplication,
        gate: DeviceGate,
        reports: DeviceReports,
        metrics: RequestMetrics,
    ) -> None:
        self.app = app
        self.gate = gate
        self.cache = gate.cache
        self.reports = reports
        self.metrics = metrics

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        answered = self.answer(environ, start_response)
        return self.app(environ, start_response) if answered is None else answered

    def answer(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes] | None:
        """The answer from memory (after `start_response`), or None: Flask must answer.

        Also called by the ASGI front (iotsupport/front) on its event loop, through
        `answer_only`, so both serve the same bytes."""
        started = time.perf_counter()
        path: str = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD")
        if (
            (method == "GET" or method == "HEAD")
            and path.startswith(_PREFIX)
            and path.endswith(_SUFFIX)
            and head_within_limits(environ)
        ):
            try:
                mac = normalize_mac(path[len(_PREFIX) : -len(_SUFFIX)])
            except InvalidInput:
                return None  # Flask answers the 400
            return self._answer(environ, start_response, method, path, mac, started)
        return None

    def answer_only(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        """`answer` as a WSGI app: DECLINED (start_response not called) instead of None,
        so that it can sit inside the same middleware (Compression) as the Flask app."""
        answered = self.answer(environ, start_response)
        return DECLINED if answered is None else answered

    def _answer(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        method: str,
        path: str,
        mac: str,
        started: float,
    ) -> list[bytes] | None:
        current, document = self.cache.peek(mac)
        if not current or document is None or document.content is None:
            return None
        presented = presented_credential(environ.get("HTTP_AUTHORIZATION"))
        admission = self.gate.admit_fetch(environ, mac, document, presented, may_write=False)
        if not (isinstance(admission, AuthenticatedDevice) or admission is Admission.ANONYMOUS):
            return None  # Flask refuses (or writes), exactly as without this path
        self.cache.metrics.from_memory.inc()
        verified = isinstance(admission, AuthenticatedDevice)
        self.reports.fetched(document.config_id, document.version, environ, verified=verified)
        etag = f'"{document.etag}"'
        answered_id = request_id(environ.get("HTTP_X_REQUEST_ID"))
        headers = [("ETag", etag), *_COMMON_HEADERS, (REQUEST_ID_HEADER, answered_id)]
        known = environ.get("HTTP_IF_NONE_MATCH")
        if known is not None and parse_etags(known).contains_weak(document.etag):
            status, body = 304, b""
            start_response("304 NOT MODIFIED", headers)
        else:
            status, body = 200, document.content.encode()
            headers[0:0] = [*_JSON_HEADERS, ("Content-Length", str(len(body)))]
            start_response("200 OK", headers)
            if method == "HEAD":
                body = b""
        self.metrics.record(
            method, path, FETCH_ROUTE, status, time.perf_counter() - started, answered_id
        )
        return [body]
