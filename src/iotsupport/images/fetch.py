"""Fetching an image over HTTP without letting the proxy be pointed anywhere else.

Only http and https; with an allowlist, only the hosts it names (or IP
addresses inside its CIDRs), checked again on every redirect hop, which we
follow ourselves. The body is streamed and cut off at the size cap, and the
whole fetch has a deadline besides the connect timeout.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from iotsupport.errors import HostNotAllowed
from iotsupport.errors import InvalidInput
from iotsupport.errors import UpstreamFailed

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
_REDIRECT_STATUSES = {301, 302, 303, 307, 308}
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def host_of(url: httpx.URL) -> str:
    """The host as the connection will use it: IDNA-encoded, lower case, no trailing dot."""
    return url.raw_host.decode("ascii").lower().rstrip(".")


@dataclass(frozen=True)
class HostAllowlist:
    """Host names (matched exactly) and CIDRs (matched against IP-address hosts).

    Names are never resolved here: a CIDR admits only URLs that spell an IP
    address, so DNS cannot be used to slip a name past the list.
    """

    names: frozenset[str]
    networks: tuple[IpNetwork, ...]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> HostAllowlist:
        names: set[str] = set()
        networks: list[IpNetwork] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(host_of(httpx.URL(f"http://{entry}/")))
        return cls(frozenset(names), tuple(networks))

    @property
    def is_open(self) -> bool:
        return not self.names and not self.networks

    def admits(self, host: str) -> bool:
        if self.is_open:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host in self.names
        return host in self.names or any(address in network for network in self.networks)


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


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout: float
    total_timeout: float
    max_bytes: int


class Fetcher:
    """One long-lived httpx client per process (thread-safe, keeps connections)."""

    def __init__(self, limits: FetchLimits, allowlist: HostAllowlist) -> None:
        self.limits = limits
        self.allowlist = allowlist
        self._lazy_client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    @property
    def _client(self) -> httpx.Client:
        # Made on first use: loading the CA bundle costs ~15 ms, which an app that never
        # proxies an image (tests, CLI commands) should not pay.
        with self._client_lock:
            if self._lazy_client is None:
                # trust_env=False: no proxy or .netrc picked up from the environment.
                self._lazy_client = httpx.Client(follow_redirects=False, trust_env=False)
            return self._lazy_client

    def close(self) -> None:
        with self._client_lock:
            if self._lazy_client is not None:
                self._lazy_client.close()
                self._lazy_client = None

    def check_allowed(self, url: httpx.URL) -> None:
        host = host_of(url)
        if not self.allowlist.admits(host):
            raise HostNotAllowed(f"the image proxy may not fetch from {host}", {"host": host})

    def fetch(self, url: httpx.URL, headers: Mapping[str, str]) -> bytes:
        """The body of `url`, following up to MAX_REDIRECTS redirects to allowed hosts."""
        deadline = time.monotonic() + self.limits.total_timeout
        origin = _origin(url)
        for hop in range(MAX_REDIRECTS + 1):
            if hop and url.scheme not in ("http", "https"):
                raise UpstreamFailed(
                    "the upstream server redirected to a URL that is not http or https",
                    {"reason": "redirect"},
                )
            self.check_allowed(url)
            # Forwarded headers (a device's token) never leave the origin it asked for.
            sent = headers if _origin(url) == origin else {}
            location = self._get(url, sent, deadline)
            if isinstance(location, bytes):
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
    ) -> bytes | httpx.URL:
        """The body, or where a redirect points."""
        try:
            with self._client.stream(
                "GET", url, headers=dict(headers), timeout=self._timeout(deadline)
            ) as response:
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
        except httpx.TimeoutException:
            raise self._timed_out() from None
        except httpx.ConnectError as exc:
            log.info("image fetch: cannot connect to %s: %s", host_of(url), exc)
            raise UpstreamFailed(
                f"could not connect to {host_of(url)}", {"reason": "connection"}
            ) from None
        except httpx.HTTPError as exc:
            log.info("image fetch from %s failed: %s", host_of(url), exc)
            raise UpstreamFailed(
                "the upstream server's answer could not be read", {"reason": "protocol"}
            ) from None

    def _read_capped(self, response: httpx.Response, deadline: float) -> bytes:
        cap = self.limits.max_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise self._too_large()
        body = bytearray()
        # Decoded bytes are counted, so a compressed body cannot expand past the cap.
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > cap:
                raise self._too_large()
            if time.monotonic() > deadline:
                raise self._timed_out()
        return bytes(body)

    def _too_large(self) -> UpstreamFailed:
        return UpstreamFailed(
            f"the image is larger than {self.limits.max_bytes} bytes",
            {"reason": "too_large", "limit_bytes": self.limits.max_bytes},
        )
