"""An httpx transport that connects only to addresses the DestinationPolicy admits.

Names are resolved here, once per connection, and the socket is opened to the
very address that was checked: DNS cannot answer one address for the check
and another for the connection (rebinding). Redirects open their connections
through the same code, so every hop is checked.
"""

from __future__ import annotations

import typing as t

import httpcore
import httpx

from iotsupport.errors import HostNotAllowed
from iotsupport.images.destinations import DestinationPolicy
from iotsupport.images.destinations import normal_host


def not_allowed(host: str) -> HostNotAllowed:
    """The one refusal for any destination the proxy may not reach, whatever the reason."""
    host = normal_host(host)
    return HostNotAllowed(f"the image proxy may not fetch from {host}", {"host": host})


class VettingBackend(httpcore.SyncBackend):
    """httpcore's socket backend, resolving and checking every address before connecting."""

    def __init__(self, policy: DestinationPolicy) -> None:
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: t.Iterable[t.Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self.policy.vetted_addresses(host, port)
        if addresses is None:
            raise not_allowed(host)
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            try:
                return super().connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure


class VettedTransport(httpx.HTTPTransport):
    """httpx's own transport (TLS, HTTP/1.1, pooling) over the vetting backend."""

    def __init__(self, policy: DestinationPolicy) -> None:
        super().__init__(trust_env=False)
        # httpx offers no public way to choose httpcore's network backend, so the pool
        # it built is replaced by the same pool over ours. tests/test_image_ssrf.py
        # fails if a name that resolves to loopback ever gets through.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=VettingBackend(policy),
        )
