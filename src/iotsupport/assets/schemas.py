from __future__ import annotations

from pydantic import BaseModel
from pydantic import Field

from iotsupport.configs.schemas import Timestamp

SHA256_DESCRIPTION = "SHA-256 of the file, hex."


class AssetUploadForm(BaseModel):
    """multipart/form-data fields of an upload (documentation; the view streams the file)."""

    file: str = Field(
        description="The firmware image, as a file part; its filename names the asset.",
        json_schema_extra={"format": "binary"},
    )
    timestamp: str = Field(
        description="ISO 8601, within TIMESTAMP_TOLERANCE_SECONDS of server time (no offset: UTC)."
    )
    signature: str = Field(
        description="base64 RSA PKCS#1 v1.5 SHA-256 signature of the timestamp text."
    )


class AssetUploadedSchema(BaseModel):
    """The stored asset."""

    filename: str
    size: int
    sha256: str = Field(description=SHA256_DESCRIPTION)
    uploaded_at: Timestamp


class AssetSchema(BaseModel):
    name: str
    size: int
    sha256: str = Field(description=SHA256_DESCRIPTION)
    uploaded_at: Timestamp


class AssetListSchema(BaseModel):
    """Every asset, sorted by name."""

    assets: list[AssetSchema]
    count: int
