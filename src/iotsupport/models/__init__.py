"""ORM models: one table a module, all on one metadata."""

from iotsupport.models.base import Base
from iotsupport.models.config_deletion import ConfigDeletion
from iotsupport.models.config_history import ConfigHistory
from iotsupport.models.device_checkin import DeviceCheckin
from iotsupport.models.device_config import DeviceConfig
from iotsupport.models.used_upload_signature import UsedUploadSignature

__all__ = [
    "Base",
    "ConfigDeletion",
    "ConfigHistory",
    "DeviceCheckin",
    "DeviceConfig",
    "UsedUploadSignature",
]
