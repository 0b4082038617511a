"""Bodies of the credential and provisioning routes."""

from __future__ import annotations

import typing as t

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import SecretStr
from pydantic import field_validator

from iotsupport.api.schemas import RequestBody
from iotsupport.configs.schemas import Timestamp
from iotsupport.credentials.provisioning import DEFAULT_PARTITION_SIZE
from iotsupport.credentials.provisioning import MAX_PARTITION_SIZE
from iotsupport.credentials.provisioning import MIN_PARTITION_SIZE


class IssuedTokenSchema(BaseModel):
    """The new token: shown this once, stored only as a hash."""

    token: str
    issued_at: Timestamp


class OwnTokenSchema(BaseModel):
    """A fresh token for the calling device; the one it used stays valid until this is used."""

    token: str


class ProvisioningSchema(RequestBody):
    """What to put in the bundle. The Wi-Fi details are used for this download only."""

    model_config = ConfigDict(strict=True, extra="forbid")

    format: t.Literal["json", "nvs"]
    partition_size: int = Field(
        default=DEFAULT_PARTITION_SIZE,
        ge=MIN_PARTITION_SIZE,
        le=MAX_PARTITION_SIZE,
        description="NVS partition size in bytes, a multiple of 4096 (as in partitions.csv).",
        json_schema_extra={"multipleOf": 4096},
    )
    wifi_ssid: str | None = Field(default=None, min_length=1, max_length=32)
    wifi_password: SecretStr | None = Field(default=None, max_length=64)

    @field_validator("partition_size")
    @classmethod
    def _whole_pages(cls, size: int) -> int:
        if size % 4096:
            raise ValueError("must be a multiple of 4096 (an NVS page)")
        return size


class ProvisioningBundleSchema(BaseModel):
    """The JSON bundle (format=json); the NVS image holds the same values."""

    mac_address: str
    server_url: str
    config_url: str
    token: str
    mqtt_url: str | None
    mqtt_username: str | None = Field(description="The MAC, when the broker has device accounts.")
    desired_topic: str
    wifi_ssid: str | None = None
    wifi_password: str | None = None
    issued_at: Timestamp
