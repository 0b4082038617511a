"""The retained desired state of each device: `iotsupport/devices/<mac>/desired`.

After every committed change of a device's config, its desired state is published
retained (QoS 1), so a device that was offline gets it the moment it subscribes;
deleting the config clears the retained message (an empty retained payload).
Issue 15 adds the firmware the device should run.
"""

from __future__ import annotations

import typing as t

from sqlalchemy.orm import Session

from iotsupport.db import after_commit
from iotsupport.notifications import Publisher

if t.TYPE_CHECKING:
    from iotsupport.configs.tables import DeviceConfig

DEVICE_TOPIC_ROOT = "iotsupport/devices"


def desired_topic(mac_address: str) -> str:
    return f"{DEVICE_TOPIC_ROOT}/{mac_address}/desired"


def desired_state(config: DeviceConfig) -> dict[str, t.Any]:
    """`config_etag` is the ETag of the device's fetch, without the quotes."""
    return {"config_version": config.version, "config_etag": config.etag}


def announce_desired(session: Session, publisher: Publisher, config: DeviceConfig) -> None:
    topic, payload = desired_topic(config.mac_address), desired_state(config)
    after_commit(session, lambda: publisher.publish(topic, payload, retain=True))


def clear_desired(session: Session, publisher: Publisher, mac_address: str) -> None:
    topic = desired_topic(mac_address)
    after_commit(session, lambda: publisher.clear_retained(topic))
