"""Fetching an image over HTTP without letting the proxy be pointed anywhere else.

Only http and https, and only to destinations the DestinationPolicy admits
(public addresses by default; IMAGE_PROXY_ALLOWED_HOSTS), checked on the
resolved address of every connection, redirects included (we follow them
ourselves). The body is streamed and cut off at the size cap, and the whole
fetch has a deadline besides the connect timeout.

Failures before an HTTP answer arrives (refused, unreachable, not HTTP, TLS)
all get the same answer, so the proxy cannot be used to tell open, closed and
non-HTTP ports apart.
"""

from __future__ import annotations

import http.cookiejar
import io
import logging
import threading
import time
import typing as t
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from iotsupport.errors import InvalidInput
from iotsupport.errors import UpstreamFailed
from iotsupport.images.destinations import DestinationPolicy
from iotsupport.images.destinations import normal_host
from iotsupport.images.transport import VettedTransport

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
_REDIRECT_STATUSES = {301, 302, 303, 307, 308}


def host_of(url: httpx.URL) -> str:
    """The host as the connection will use it: IDNA-encoded, lower case, no trailing dot."""
    return normal_host(url.raw_host.decode("ascii"))


def parse_url(text: str) -> httpx.URL:
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL:
        raise InvalidInput("url is not a valid URL", {"field": "url"}) from None
    if url.scheme not in ("http", "https"):
        raise InvalidInput("url must start with http:// or https://", {"field": "url"})
    if not url.raw_host:
        raise InvalidInput("url has no host", {"field": "url"})
    return url


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, host_of(url), url.port


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Keeps no cookie and sends none: the client serves every caller, and what an
    upstream set for one caller (a session) must never reach the next one."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: t.Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: t.Any) -> bool:
        return False


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout: float
    total_timeout: float
    max_bytes: int


class Fetcher:
    """One long-lived httpx client per process (thread-safe, keeps connections)."""

    def __init__(self, limits: FetchLimits, policy: DestinationPolicy) -> None:
        self.limits = limits
        self.policy = policy
        self._lazy_client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    @property
    def _client(self) -> httpx.Client:
        # Made on first use: loading the CA bundle costs ~15 ms, which an app that never
        # proxies an image (tests, CLI commands) should not pay.
        with self._client_lock:
            if self._lazy_client is None:
                # trust_env=False: no proxy or .netrc picked up from the environment.
                self._lazy_client = httpx.Client(
                    transport=VettedTransport(self.policy),
                    follow_redirects=False,
                    trust_env=False,
                    cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
                )
            return self._lazy_client

    def close(self) -> None:
        with self._client_lock:
            if self._lazy_client is not None:
                self._lazy_client.close()
                self._lazy_client = None

    def fetch(self, url: httpx.URL, headers: Mapping[str, str]) -> io.BytesIO:
        """The body of `url`, following up to MAX_REDIRECTS redirects to allowed hosts."""
        deadline = time.monotonic() + self.limits.total_timeout
        origin = _origin(url)
        for hop in range(MAX_REDIRECTS + 1):
            if hop and url.scheme not in ("http", "https"):
                raise UpstreamFailed(
                    "the upstream server redirected to a URL that is not http or https",
                    {"reason": "redirect"},
                )
            # Forwarded headers (a device's token) never leave the origin it asked for.
            sent = headers if _origin(url) == origin else {}
            location = self._get(url, sent, deadline)
            if isinstance(location, io.BytesIO):
                return location
            url = location
        raise UpstreamFailed(
            f"the upstream server redirected more than {MAX_REDIRECTS} times",
            {"reason": "redirects"},
        )

    def _timeout(self, deadline: float) -> httpx.Timeout:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._timed_out()
        return httpx.Timeout(remaining, connect=min(self.limits.connect_timeout, remaining))

    def _timed_out(self) -> UpstreamFailed:
        return UpstreamFailed(
            f"the upstream server did not deliver the image within {self.limits.total_timeout:g} s",
            {"reason": "timeout"},
        )

    def _get(
        self, url: httpx.URL, headers: Mapping[str, str], deadline: float
    ) -> io.BytesIO | httpx.URL:
        """The body, or where a redirect points."""
        answered = False
        try:
            with self._client.stream(
                "GET", url, headers=dict(headers), timeout=self._timeout(deadline)
            ) as response:
                answered = True
                if response.status_code in _REDIRECT_STATUSES and "location" in response.headers:
                    try:
                        return url.join(response.headers["location"])
                    except httpx.InvalidURL:
                        raise UpstreamFailed(
                            "the upstream server redirected to an invalid URL",
                            {"reason": "redirect"},
                        ) from None
                if not response.is_success:
                    raise UpstreamFailed(
                        f"the upstream server answered {response.status_code}",
                        {"reason": "status", "status": response.status_code},
                    )
                return self._read_capped(response, deadline)
        except httpx.HTTPError as exc:
            # Refused, timed out, not HTTP, TLS: the operator's log says which, the
            # caller only that there was no usable answer.
            log.info("image fetch from %s failed: %s: %s", host_of(url), type(exc).__name__, exc)
            if answered and isinstance(exc, httpx.TimeoutException):
                raise self._timed_out() from None
            raise UpstreamFailed(
                f"no usable answer from {host_of(url)}", {"reason": "unreachable"}
            ) from None

    def _read_capped(self, response: httpx.Response, deadline: float) -> io.BytesIO:
        """The body in memory (once: the image is decoded from this very buffer)."""
        cap = self.limits.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise self._too_large()
        body = io.BytesIO()
        # Decoded bytes are counted, so a compressed body cannot expand past the cap.
        for chunk in response.iter_bytes():
            if body.tell() + len(chunk) > cap:
                raise self._too_large()
            body.write(chunk)
            if time.monotonic() > deadline:
                raise self._timed_out()
        body.seek(0)
        return body

    def _too_large(self) -> UpstreamFailed:
        return UpstreamFailed(
            f"the image is larger than {self.limits.max_bytes} bytes",
            {"reason": "too_large", "limit_bytes": self.limits.max_bytes},
        )
