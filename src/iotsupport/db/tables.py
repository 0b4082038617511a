"""Every table of the app on one metadata, for Alembic and the tests."""

from iotsupport.assets.tables import UsedUploadSignature
from iotsupport.configs.tables import ConfigDeletion
from iotsupport.configs.tables import ConfigHistory
from iotsupport.configs.tables import DeviceCheckin
from iotsupport.configs.tables import DeviceConfig
from iotsupport.credentials.tables import BrokerAccountChange
from iotsupport.credentials.tables import DeviceCredential
from iotsupport.db.base import Base

__all__ = [
    "Base",
    "BrokerAccountChange",
    "ConfigDeletion",
    "ConfigHistory",
    "DeviceCheckin",
    "DeviceConfig",
    "DeviceCredential",
    "UsedUploadSignature",
]
