"""Where the image proxy may connect: IMAGE_PROXY_ALLOWED_HOSTS and the public-only default.

The decision is made on the address the connection will really use, after DNS
(see transport.py), so every spelling of an address (`127.1`, `2130706433`,
`0x7f.1`, `::ffff:127.0.0.1`, a name that resolves to loopback) is judged by
what it is, and a name cannot resolve to one address for the check and to
another for the connection.

Entries (comma-separated in the setting):

| entry | admits |
|---|---|
| `ha.local`, `ha.local:8123` | that host name, whatever it resolves to |
| `192.168.1.0/24`, `10.0.0.7:8123` | addresses inside the network |
| `[fd00::/8]:8123`, `fd00::/8` | the same for IPv6 (brackets when a port follows) |
| `public`, `public:8443` | any public address, as with no list at all |

An entry without a port admits ports 80 and 443 only: a network entry would
otherwise open every service in the range (SSH, databases, admin panels) to
whoever can call the proxy.
"""

from __future__ import annotations

import ipaddress
import socket
import typing as t
from collections.abc import Iterable
from dataclasses import dataclass

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PORTS = frozenset({80, 443})
PUBLIC = "public"

# Everything that is not a public unicast address (IANA special-purpose registries,
# multicast and reserved ranges). IPv6 forms that embed an IPv4 address are judged
# by that address (see `_embedded_ipv4`).
_NOT_PUBLIC: tuple[IpNetwork, ...] = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",  # "this network", 0.0.0.0 included
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata services
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast included
        "::/96",  # unspecified, loopback, IPv4-compatible
        "100::/64",  # discard
        "2001::/23",  # IETF protocols, Teredo included
        "2001:db8::/32",  # documentation
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local
        "ff00::/8",  # multicast
        "64:ff9b:1::/48",  # local-use NAT64
    )
)
# IPv6 ranges whose last 32 bits are an IPv4 address (besides IPv4-mapped ::ffff:0:0/96,
# which `ipv4_mapped` reads, and 6to4 2002::/16, which `sixtofour` reads): NAT64's
# well-known prefix and SIIT's IPv4-translated range (RFC 6052, RFC 6145).
_EMBEDDING_LAST_32_BITS = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
)


class EntryError(ValueError):
    """An IMAGE_PROXY_ALLOWED_HOSTS entry that is neither a host, a network nor `public`."""


def _embedded_ipv4(address: IpAddress) -> IpAddress:
    """The IPv4 address inside an IPv4-mapped, IPv4-translated, 6to4 or NAT64 address;
    else the address. (The IPv4-compatible ::/96 is refused whole; Teredo is in 2001::/23.)"""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if any(address in network for network in _EMBEDDING_LAST_32_BITS):
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def is_public(address: IpAddress) -> bool:
    address = _embedded_ipv4(address)
    return not any(address in network for network in _NOT_PUBLIC)


def normal_host(host: str) -> str:
    """A host as URLs and entries are compared: lower case, no trailing dot."""
    return host.lower().rstrip(".")


@dataclass(frozen=True)
class Entry:
    name: str | None = None
    network: IpNetwork | None = None
    public: bool = False
    port: int | None = None  # None: the default ports, 80 and 443

    @classmethod
    def parse(cls, text: str) -> Entry:
        text = text.strip()
        host, port = _split_port(text)
        if host.lower() == PUBLIC:
            return cls(public=True, port=port)
        try:
            return cls(network=ipaddress.ip_network(host, strict=False), port=port)
        except ValueError:
            pass
        if not host or any(char in host for char in " \t/:@?#[]\\") or not host.isascii():
            raise EntryError(f"{text!r} is neither a host name, a network nor 'public'")
        return cls(name=normal_host(host), port=port)

    def admits(self, host: str, address: IpAddress, port: int) -> bool:
        allowed_ports = DEFAULT_PORTS if self.port is None else {self.port}
        if port not in allowed_ports:
            return False
        if self.name is not None:
            return normal_host(host) == self.name
        if self.network is not None:
            return _embedded_ipv4(address) in self.network or address in self.network
        return is_public(address)


def _split_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise EntryError(f"{text!r}: write an IPv6 entry as [address] or [address]:port")
        return inside, _port(text, rest[1:]) if rest else None
    if text.count(":") == 1:  # host:port; more colons: a bare IPv6 address or network
        host, _, port = text.partition(":")
        return host, _port(text, port)
    return text, None


def _port(entry: str, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise EntryError(f"{entry!r}: the port must be a number from 1 to 65535")
    return int(text)


Resolver = t.Callable[[str, int], list[IpAddress]]


def resolve(host: str, port: int) -> list[IpAddress]:
    """Every address `host` has (numeric spellings included), in the resolver's order."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IpAddress] = []
    for _family, _type, _proto, _name, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class DestinationPolicy:
    """Decides whether the proxy may connect to `host` at a resolved address and port."""

    def __init__(self, entries: Iterable[Entry], resolver: Resolver = resolve) -> None:
        self.entries = tuple(entries)
        self._resolve = resolver

    @classmethod
    def parse(cls, texts: Iterable[str]) -> DestinationPolicy:
        return cls(Entry.parse(text) for text in texts if text.strip())

    def admits(self, host: str, address: IpAddress, port: int) -> bool:
        if not self.entries:
            return is_public(address)
        return any(entry.admits(host, address, port) for entry in self.entries)

    def vetted_addresses(self, host: str, port: int) -> list[IpAddress] | None:
        """The addresses to connect to, or None when any of them is not allowed.

        A name that does not resolve is refused the same way, so that answers
        never tell an internal name that exists from one that does not.
        """
        try:
            addresses = self._resolve(host, port)
        except (OSError, UnicodeError, ValueError):
            return None
        if not addresses or not all(self.admits(host, address, port) for address in addresses):
            return None
        return addresses
