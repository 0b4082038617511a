"""Every table of the app on one metadata, for Alembic and the tests."""

from iotsupport.assets.tables import UsedUploadSignature
from iotsupport.change_sets.tables import ChangeSet
from iotsupport.change_sets.tables import ChangeSetItem
from iotsupport.configs.tables import ConfigDeletion
from iotsupport.configs.tables import ConfigHistory
from iotsupport.configs.tables import DeviceCheckin
from iotsupport.configs.tables import DeviceConfig
from iotsupport.credentials.tables import BrokerAccountChange
from iotsupport.credentials.tables import DeviceCredential
from iotsupport.credentials.tables import ServerSecret
from iotsupport.db.base import Base
from iotsupport.device_cache.tables import DeviceCacheWorker
from iotsupport.device_cache.tables import DeviceChange
from iotsupport.device_models.tables import DeviceModel
from iotsupport.health.tables import DevicePresence
from iotsupport.health.tables import DeviceReset
from iotsupport.health.tables import HealthHour
from iotsupport.health.tables import HealthSample
from iotsupport.outbox.tables import Announcement
from iotsupport.releases.tables import Release
from iotsupport.releases.tables import StoredFile
from iotsupport.releases.tables import StoredFileChunk
from iotsupport.rollouts.tables import FirmwareTarget
from iotsupport.rollouts.tables import Rollout
from iotsupport.rollouts.tables import RolloutDevice

__all__ = [
    "Announcement",
    "Base",
    "ChangeSet",
    "ChangeSetItem",
    "BrokerAccountChange",
    "ConfigDeletion",
    "ConfigHistory",
    "DeviceCacheWorker",
    "DeviceChange",
    "DeviceCheckin",
    "DeviceConfig",
    "DeviceModel",
    "DevicePresence",
    "DeviceReset",
    "HealthHour",
    "HealthSample",
    "FirmwareTarget",
    "Release",
    "Rollout",
    "RolloutDevice",
    "ServerSecret",
    "StoredFile",
    "StoredFileChunk",
    "DeviceCredential",
    "UsedUploadSignature",
]
