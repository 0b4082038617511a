"""What an ESP32 app image is (ESP-IDF "App Image Format"): layout, chip ids, what a parse
yields, and the refusals, one class and code per check (esp_image.py reads the image).

The layout, all integers little-endian:

=================  =========================================================================
image header       8 bytes: magic 0xE9, segment count, SPI mode, SPI speed (low nibble) and
                   flash size (high nibble), entry point (u32)
extended header    16 bytes: WP pin, 3 pin drive bytes, chip id (u16), legacy minimum
                   revision (u8), minimum and maximum chip revision (u16, major * 100 +
                   minor), 4 reserved bytes, hash_appended (0 or 1)
segments           each: load address (u32), data length (u32), data
checksum           zeros up to one byte short of a multiple of 16, then one byte:
                   0xEF XOR every byte of segment data
SHA-256            32 bytes, when hash_appended is 1: the digest of everything before it
=================  =========================================================================

The first segment begins with ``esp_app_desc_t`` (256 bytes): what ESP-IDF's own OTA code
reads at offset 0x20. Whatever follows the image (a secure boot signature block, padding) is
not part of it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from iotsupport.errors import InvalidFirmwareImage

MAGIC = 0xE9
APP_DESC_MAGIC = 0xABCD5432
MAX_SEGMENTS = 16
MAX_SEGMENT_LENGTH = 16 * 1024 * 1024  # the bootloader refuses 16 MB and more
CHECKSUM_SEED = 0xEF

HEADER = struct.Struct("<BBBBI")
EXTENDED_HEADER = struct.Struct("<B3sHBHH4sB")
SEGMENT_HEADER = struct.Struct("<II")
APP_DESC = struct.Struct("<II8s32s32s16s16s32s32sHHB3s72s")
DIGEST_SIZE = 32

# esp_chip_id_t, as ESP-IDF and esptool number the chips.
CHIPS: dict[int, str] = {
    0x0000: "esp32",
    0x0002: "esp32s2",
    0x0005: "esp32c3",
    0x0009: "esp32s3",
    0x000C: "esp32c2",
    0x000D: "esp32c6",
    0x0010: "esp32h2",
    0x0012: "esp32p4",
    0x0014: "esp32c61",
    0x0017: "esp32c5",
    0x0019: "esp32h21",
    0x001C: "esp32h4",
    0x001F: "esp32e22",
    0x0020: "esp32s31",
}
SPI_MODES = ("QIO", "QOUT", "DIO", "DOUT", "FAST_READ", "SLOW_READ")
FLASH_SIZES = ("1MB", "2MB", "4MB", "8MB", "16MB", "32MB", "64MB", "128MB")


class NotAnImage(InvalidFirmwareImage):
    code = "not_an_esp_image"


class ImageTruncated(InvalidFirmwareImage):
    code = "image_truncated"


class BadHeader(InvalidFirmwareImage):
    code = "image_bad_header"


class UnknownChip(InvalidFirmwareImage):
    code = "image_unknown_chip"


class BadSegment(InvalidFirmwareImage):
    code = "image_bad_segment"


class ChecksumMismatch(InvalidFirmwareImage):
    code = "image_checksum_mismatch"


class HashMismatch(InvalidFirmwareImage):
    code = "image_hash_mismatch"


class NoAppDescription(InvalidFirmwareImage):
    code = "image_no_app_description"


class BadAppDescription(InvalidFirmwareImage):
    code = "image_bad_app_description"


class WrongChip(InvalidFirmwareImage):
    code = "image_wrong_chip"


@dataclass(frozen=True)
class Segment:
    load_address: int
    data_offset: int  # where its data starts in the file
    length: int


@dataclass(frozen=True)
class AppDescription:
    """``esp_app_desc_t``: what the firmware says about itself."""

    secure_version: int
    version: str
    project_name: str
    time: str  # as the compiler wrote __TIME__, e.g. "12:34:56"
    date: str  # as the compiler wrote __DATE__, e.g. "Nov 30 2026"
    idf_version: str
    elf_sha256: str  # hex
    min_efuse_block_revision: int  # major * 100 + minor
    max_efuse_block_revision: int
    mmu_page_size: int | None  # bytes; None when the image does not say


@dataclass(frozen=True)
class EspImage:
    chip: str  # a value of CHIPS
    chip_id: int
    entry_point: int
    spi_mode: int  # index into SPI_MODES
    spi_speed: int  # the clock divider code; its MHz depend on the chip
    flash_size: int  # index into FLASH_SIZES
    wp_pin: int
    min_chip_revision: int  # major * 100 + minor
    max_chip_revision: int
    segments: tuple[Segment, ...]
    checksum: int
    sha256: str | None  # the appended digest (hex, verified), None when not appended
    size: int  # bytes from the header to the checksum or the digest
    app: AppDescription

    @property
    def spi_mode_name(self) -> str | None:
        return SPI_MODES[self.spi_mode] if self.spi_mode < len(SPI_MODES) else None

    @property
    def flash_size_name(self) -> str | None:
        return FLASH_SIZES[self.flash_size] if self.flash_size < len(FLASH_SIZES) else None
