"""Which host names the server answers to, and which requests come from its own pages.

- Host (ALLOWED_HOSTS): a DNS-rebinding page reaches us under its own name, so a name
  we were not told about is refused before any route runs. IP literals cannot be
  rebound, hence the `ip` entry of the default (devices on a LAN reach a server bound
  to 0.0.0.0 by address). X-Forwarded-Host counts only from TRUSTED_PROXIES.
- Cross-site: a browser says where a request comes from (`Sec-Fetch-Site`, `Origin`);
  a state change from any page but ours is refused. A request with neither header
  (curl, CI, a device) cannot come from a page and passes.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from dataclasses import field
from ipaddress import IPv4Network
from ipaddress import IPv6Network
from ipaddress import ip_address
from urllib.parse import urlsplit

Networks = tuple[IPv4Network | IPv6Network, ...]

ANY_IP = "ip"  # ALLOWED_HOSTS entry: any IP literal (which DNS rebinding cannot use)
ANY_HOST = "*"  # ALLOWED_HOSTS entry: every name (turns the rebinding defence off)
MAX_JUDGED = 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sec-Fetch-Site values of a request that a browser made for one of our own pages or
# for the user (address bar, bookmark); `same-site` is another port or subdomain.
OWN_SITES = frozenset({"same-origin", "none"})


class HostEntryError(ValueError):
    pass


def parse_allowed_hosts(value: str) -> tuple[str, ...]:
    """ALLOWED_HOSTS: names, `.domain` (it and every subdomain), `ip`, `*`."""
    entries = tuple(part.strip().lower().rstrip(".") for part in value.split(",") if part.strip())
    for entry in entries:
        name = entry[1:] if entry.startswith(".") else entry
        if entry in (ANY_IP, ANY_HOST):
            continue
        if not name or any(char in name for char in "/:@[]* ") or ".." in name:
            raise HostEntryError(
                f"{entry!r} is not a host name, `.domain`, `ip` or `*` (no scheme, port or path)"
            )
    return entries


def host_name(host: str) -> str:
    """The name part of a Host header value (`[::1]:3201` -> `::1`), lowercased."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def is_ip_literal(name: str) -> bool:
    try:
        ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class HostRule:
    """ALLOWED_HOSTS with BASEURL's host, and who may say X-Forwarded-Host."""

    entries: tuple[str, ...]
    trusted: Networks
    # Host header values already judged: parsing an address costs more than a device
    # fetch from memory should pay. Bounded, so that made-up names cannot fill it.
    _judged: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, allowed_hosts: str, baseurl: str | None, trusted: Networks) -> HostRule:
        entries = parse_allowed_hosts(allowed_hosts)
        if baseurl:
            entries += (host_name(urlsplit(baseurl).netloc),)
        return cls(entries, trusted)

    def requested_host(self, environ: t.Mapping[str, t.Any]) -> str:
        """The Host the client asked for: a trusted proxy's X-Forwarded-Host, else Host."""
        forwarded = environ.get("HTTP_X_FORWARDED_HOST")
        if forwarded and self.trusted:
            peer = environ.get("REMOTE_ADDR")
            if self._is_trusted(peer):  # the proxy nearest to us wrote the last value
                return str(forwarded).rsplit(",", 1)[-1].strip()
        return str(environ.get("HTTP_HOST") or "")

    def _is_trusted(self, peer: str | None) -> bool:
        try:
            address = ip_address(peer or "")
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    def allows(self, host: str) -> bool:
        judged = self._judged.get(host)
        if judged is None:
            judged = self._judge(host)
            if len(self._judged) < MAX_JUDGED:
                self._judged[host] = judged
        return judged

    def _judge(self, host: str) -> bool:
        name = host_name(host)
        if not name or any(ord(char) < 0x21 or ord(char) == 0x7F for char in name):
            return False
        for entry in self.entries:
            if entry == ANY_HOST or entry == name:
                return True
            if entry == ANY_IP and is_ip_literal(name):
                return True
            if entry.startswith(".") and (name == entry[1:] or name.endswith(entry)):
                return True
        return False


def cross_site_reason(
    method: str, site: str | None, origin: str | None, host: str, baseurl: str | None
) -> str | None:
    """Why this state change (with these Sec-Fetch-Site and Origin headers) comes from
    another site's page; None when it does not."""
    if method in SAFE_METHODS:
        return None
    if site is not None and site.strip().lower() not in OWN_SITES:
        return f"Sec-Fetch-Site is {site.strip().lower()[:40]}"
    if origin is not None and not _own_origin(origin, host, baseurl):
        return "Origin is another site"
    return None


def _own_origin(origin: str, host: str, baseurl: str | None) -> bool:
    origin = origin.strip().lower()
    if origin == "null":  # a sandboxed frame, a data: URL, a redirect from elsewhere
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    if baseurl and origin == origin_of(baseurl):
        return True
    # The Host was checked against ALLOWED_HOSTS: the page was served under that name.
    return _netloc(parts.scheme, parts.netloc) == _netloc(parts.scheme, host.strip().lower())


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def _netloc(scheme: str, netloc: str) -> str:
    default = ":443" if scheme == "https" else ":80"
    return netloc[: -len(default)] if netloc.endswith(default) else netloc
