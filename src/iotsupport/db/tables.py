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
from iotsupport.device_cache.tables import DeviceChange
from iotsupport.device_models.tables import DeviceModel
from iotsupport.releases.tables import Release
from iotsupport.releases.tables import StoredFile
from iotsupport.releases.tables import StoredFileChunk
from iotsupport.rollouts.tables import FirmwareTarget
from iotsupport.rollouts.tables import Rollout
from iotsupport.rollouts.tables import RolloutDevice

__all__ = [
    "Base",
    "ChangeSet",
    "ChangeSetItem",
    "BrokerAccountChange",
    "ConfigDeletion",
    "ConfigHistory",
    "DeviceChange",
    "DeviceCheckin",
    "DeviceConfig",
    "DeviceModel",
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
