from __future__ import annotations

from pydantic import BaseModel
from pydantic import Field

from iotsupport.assets.names import FILENAME_DESCRIPTION
from iotsupport.configs.schemas import Timestamp

SHA256_DESCRIPTION = "SHA-256 of the file, hex."


class AssetUploadForm(BaseModel):
    """multipart/form-data fields of an upload, in this order: the file part comes last
    (documentation; the view checks the fields, then streams the file)."""

    timestamp: str = Field(
        description="ISO 8601, within TIMESTAMP_TOLERANCE_SECONDS of server time (no offset: UTC)."
    )
    sha256: str = Field(
        description="The file's SHA-256, 64 hex digits.",
        json_schema_extra={"pattern": "^[0-9a-fA-F]{64}$"},
    )
    signature: str = Field(
        description="base64 RSA PKCS#1 v1.5 SHA-256 signature of the five lines "
        "'iotsupport-upload-v2', 'asset', timestamp, file name, sha256 (lower case), "
        "joined by LF, UTF-8."
    )
    file: str = Field(
        description="The firmware image, as a file part; its filename names the asset. "
        + FILENAME_DESCRIPTION,
        json_schema_extra={"format": "binary"},
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
