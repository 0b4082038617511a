from __future__ import annotations

from urllib.parse import quote

from pydantic import BaseModel
from pydantic import Field

from iotsupport.assets.schemas import SHA256_DESCRIPTION
from iotsupport.configs.schemas import Timestamp
from iotsupport.device_models.tables import DeviceModel
from iotsupport.releases.tables import Release


class ReleaseUploadForm(BaseModel):
    """multipart/form-data of a release upload: the signed fields (an admin may leave them
    out), then the file part (documentation; the view checks the fields, then streams)."""

    timestamp: str | None = Field(
        default=None,
        description="ISO 8601, within TIMESTAMP_TOLERANCE_SECONDS of server time (no offset: UTC).",
    )
    sha256: str | None = Field(
        default=None,
        description="The file's SHA-256, 64 hex digits.",
        json_schema_extra={"pattern": "^[0-9a-fA-F]{64}$"},
    )
    signature: str | None = Field(
        default=None,
        description="base64 RSA PKCS#1 v1.5 SHA-256 signature of the five lines "
        "'iotsupport-upload-v2', 'release', timestamp, the model's code, sha256 (lower case), "
        "joined by LF, UTF-8. Needed unless the caller is an admin.",
    )
    model: str | None = Field(
        default=None,
        description="Optional; when sent (before the file), the model's code as in the URL.",
    )
    file: str = Field(
        description="The ESP32 app image, as a file part (its filename does not matter: the "
        "version comes from the image).",
        json_schema_extra={"format": "binary"},
    )


def image_path(code: str, version: str) -> str:
    return f"/api/models/{quote(code)}/releases/{quote(version, safe='')}/image"


class ReleaseSchema(BaseModel):
    """A release: the file, and what its image says about itself."""

    model: str = Field(description="The model's code.")
    version: str = Field(description="From the image's esp_app_desc_t.")
    size: int = Field(description="Bytes of the file.")
    sha256: str = Field(description=SHA256_DESCRIPTION + " Its ETag, too.")
    image_sha256: str | None = Field(
        description="The SHA-256 appended to the image (over the image before it; what "
        "esp_partition_get_sha256 reports on the device), hex; null when not appended."
    )
    chip: str = Field(description="As esptool names it, e.g. esp32s3.")
    project_name: str
    idf_version: str = Field(description="ESP-IDF version it was built with.")
    build_date: str = Field(description="__DATE__ at build, e.g. 'Nov 30 2026'.")
    build_time: str = Field(description="__TIME__ at build, e.g. '12:34:56'.")
    elf_sha256: str = Field(description="SHA-256 of the ELF file, hex.")
    secure_version: int
    min_chip_revision: int = Field(description="major * 100 + minor")
    max_chip_revision: int = Field(description="major * 100 + minor")
    flash_size: str | None = Field(description="From the header, e.g. 4MB.")
    spi_mode: str | None = Field(description="From the header, e.g. DIO.")
    entry_point: int
    segment_count: int
    signed: bool = Field(description="Uploaded with a valid signature (else by an admin).")
    symbols: bool = Field(
        default=False,
        description="Its app ELF was uploaded (POST .../elf): crashes on it are symbolized.",
    )
    created_at: Timestamp
    created_by: str
    running_count: int = Field(
        description="Devices of the model whose last fetch reported this version."
    )
    image_url: str = Field(description="Where devices (and admins) download it.")


class ReleaseListSchema(BaseModel):
    """A model's releases, newest first."""

    model: str
    chip: str | None = Field(description="The model's chip (null until its first release).")
    releases: list[ReleaseSchema]
    count: int


def release_schema(model: DeviceModel, release: Release, running: int = 0) -> ReleaseSchema:
    fields = {
        name: getattr(release, name)
        for name in ReleaseSchema.model_fields
        if name != "model" and hasattr(release, name)
    }
    return ReleaseSchema.model_validate(
        {
            **fields,
            "model": model.code,
            "running_count": running,
            "symbols": release.elf_file_sha256 is not None,
            "image_url": image_path(model.code, release.version),
        }
    )
