"""The desired state of each device, as its retained `iotsupport/devices/<mac>/desired`
says it: the config's version and ETag, and the firmware target a rollout gave it.

It combines the config (the hub) with the rollouts' firmware target (a spoke), so it
lives above both. The outbox relay reads it at publish time: what a device gets is
always what the database holds then, never an older message that arrived late.
"""

from __future__ import annotations

import typing as t
from collections.abc import Collection

from sqlalchemy import and_
from sqlalchemy import select
from sqlalchemy.orm import Session

from iotsupport.configs.tables import DeviceConfig
from iotsupport.releases.tables import Release
from iotsupport.rollouts.tables import FirmwareTarget

_BATCH = 500


def desired_payload(
    config_version: int,
    config_etag: str,
    firmware_version: str | None,
    firmware_sha256: str | None,
) -> dict[str, t.Any]:
    """`config_etag` is the ETag of the device's fetch, without the quotes; the firmware
    fields are null while the device has no target (of its current model)."""
    return {
        "config_version": config_version,
        "config_etag": config_etag,
        "firmware_version": firmware_version,
        "firmware_sha256": firmware_sha256,
    }


def current_desired(
    session: Session, mac_addresses: Collection[str]
) -> dict[str, dict[str, t.Any]]:
    """MAC -> desired state now; a MAC without a config is missing (its topic is cleared)."""
    found: dict[str, dict[str, t.Any]] = {}
    macs = sorted(mac_addresses)
    release = and_(
        Release.id == FirmwareTarget.release_id, Release.model_id == DeviceConfig.model_id
    )
    for start in range(0, len(macs), _BATCH):
        query = (
            select(
                DeviceConfig.mac_address,
                DeviceConfig.version,
                DeviceConfig.etag,
                Release.version,
                Release.sha256,
            )
            .outerjoin(FirmwareTarget, FirmwareTarget.config_id == DeviceConfig.id)
            .outerjoin(Release, release)
            .where(DeviceConfig.mac_address.in_(macs[start : start + _BATCH]))
        )
        for mac, version, etag, firmware, sha256 in session.execute(query):
            found[mac] = desired_payload(version, etag, firmware, sha256)
    return found
