"""Device check-ins as the device sees them: its address, and how many configs are in sync.

The check-ins themselves are written by the one intake of device reports
(device_reports/), which the device routes hand them to (configs/reports.py).
"""

from __future__ import annotations

from ipaddress import IPv4Network
from ipaddress import IPv6Network
from ipaddress import ip_address

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from iotsupport.configs.tables import DeviceCheckin
from iotsupport.configs.tables import DeviceConfig

Networks = tuple[IPv4Network | IPv6Network, ...]


def client_address(peer: str | None, forwarded_for: str | None, trusted: Networks) -> str | None:
    """The device's address: the peer, or, behind trusted proxies, the first hop they vouch for.

    X-Forwarded-For is read right to left and only while each hop is a trusted proxy;
    anything a client wrote further left is never believed.
    """
    if not trusted or not forwarded_for or not _is_trusted(peer, trusted):
        return peer
    address = peer
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        if not _is_ip(hop):
            return address  # garbage: keep the last hop that a trusted proxy named
        address = hop
        if not _is_trusted(hop, trusted):
            return hop
    return address


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def _is_trusted(address: str | None, trusted: Networks) -> bool:
    if not address:
        return False
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted)


def count_by_sync_state(session: Session) -> dict[str, int]:
    """How many configs are in_sync, pending and never fetched, in one statement."""
    fetched = DeviceCheckin.fetched_version
    query = select(
        func.count(),
        func.count().filter(fetched.is_(None)),
        func.count().filter(fetched >= DeviceConfig.version),
    ).select_from(
        DeviceConfig.__table__.outerjoin(
            DeviceCheckin.__table__, DeviceCheckin.config_id == DeviceConfig.id
        )
    )
    total, never, in_sync = session.execute(query).one()
    return {"in_sync": in_sync, "pending": total - never - in_sync, "never": never}
