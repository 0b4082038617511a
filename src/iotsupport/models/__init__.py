"""ORM models: one table a module, all on one metadata."""

from iotsupport.models.base import Base
from iotsupport.models.device_config import DeviceConfig
from iotsupport.models.used_upload_signature import UsedUploadSignature

__all__ = ["Base", "DeviceConfig", "UsedUploadSignature"]
