"""The retained desired state of each device: `iotsupport/devices/<mac>/desired`.

After every committed change of a device's config, and whenever its firmware target
changes (a rollout's stage reaches it, or a cancel takes the offer back), its desired
state is published retained (QoS 1), so a device that was offline gets it the moment it
subscribes; deleting the config clears the retained message (an empty retained payload).
"""

from __future__ import annotations

import typing as t

from sqlalchemy.orm import Session

from iotsupport.db import after_commit
from iotsupport.notifications import Publisher
from iotsupport.rollouts.targets import FirmwareTarget
from iotsupport.rollouts.targets import firmware_target

if t.TYPE_CHECKING:
    from iotsupport.configs.tables import DeviceConfig

DEVICE_TOPIC_ROOT = "iotsupport/devices"


def desired_topic(mac_address: str) -> str:
    return f"{DEVICE_TOPIC_ROOT}/{mac_address}/desired"


def desired_payload(
    config_version: int, config_etag: str, firmware: FirmwareTarget | None
) -> dict[str, t.Any]:
    """`config_etag` is the ETag of the device's fetch, without the quotes; the firmware
    fields are null while the device has no target."""
    return {
        "config_version": config_version,
        "config_etag": config_etag,
        "firmware_version": firmware.version if firmware else None,
        "firmware_sha256": firmware.sha256 if firmware else None,
    }


def desired_state(config: DeviceConfig, firmware: FirmwareTarget | None = None) -> dict[str, t.Any]:
    return desired_payload(config.version, config.etag, firmware)


def announce_desired(session: Session, publisher: Publisher, config: DeviceConfig) -> None:
    firmware = firmware_target(session, config.id, config.model_id)
    publish_desired(session, publisher, config.mac_address, desired_state(config, firmware))


def publish_desired(
    session: Session, publisher: Publisher, mac_address: str, payload: dict[str, t.Any]
) -> None:
    """Publish `payload` retained on the device's topic once the session has committed."""
    topic = desired_topic(mac_address)
    after_commit(session, lambda: publisher.publish(topic, payload, retain=True))


def clear_desired(session: Session, publisher: Publisher, mac_address: str) -> None:
    topic = desired_topic(mac_address)
    after_commit(session, lambda: publisher.clear_retained(topic))
