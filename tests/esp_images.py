"""Small but real ESP32 app images, built here from Espressif's documented format.

Written from the format description (esptool's "Firmware Image Format" and ESP-IDF's
esp_app_format.h / esp_app_desc.h), independently of the parser under test, so the
tests can hold the parser and Espressif's own esptool against the same bytes.
"""

from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import dataclass
from dataclasses import field

CHIP_IDS = {
    "esp32": 0x0000,
    "esp32s2": 0x0002,
    "esp32c3": 0x0005,
    "esp32s3": 0x0009,
    "esp32c2": 0x000C,
    "esp32c6": 0x000D,
    "esp32h2": 0x0010,
    "esp32p4": 0x0012,
}
# Where a typical app puts its segments: flash-mapped data (which starts with the app
# description), data RAM, instruction RAM and flash-mapped code. Mapped segments keep
# their file offset and address equal modulo the 64 KB MMU page, as the bootloader needs.
LAYOUTS = {
    "esp32": (0x3F400020, 0x3FFB0000, 0x40080000, 0x400D0020),
    "esp32s2": (0x3F000020, 0x3FFBE000, 0x40022000, 0x40080020),
    "esp32c3": (0x3C000020, 0x3FC8A000, 0x40380000, 0x42000020),
    "esp32s3": (0x3C000020, 0x3FC90000, 0x40374000, 0x42000020),
    "esp32c2": (0x3C000020, 0x3FCA0000, 0x40380000, 0x42000020),
    "esp32c6": (0x42800020, 0x40800000, 0x40810000, 0x42000020),
    "esp32h2": (0x42800020, 0x40800000, 0x40810000, 0x42000020),
    "esp32p4": (0x40000020, 0x4FF00000, 0x4FF10000, 0x40010020),
}
MMU_PAGE = 0x10000
APP_DESC_MAGIC = 0xABCD5432


@dataclass(frozen=True)
class AppInfo:
    """esp_app_desc_t; text fields may be bytes, to build broken ones."""

    version: str | bytes = "1.4.2"
    project_name: str | bytes = "thermostat"
    time: str | bytes = "12:34:56"
    date: str | bytes = "Nov 30 2026"
    idf_version: str | bytes = "v5.3.1"
    secure_version: int = 0
    elf_sha256: bytes = field(default_factory=lambda: hashlib.sha256(b"elf").digest())
    min_efuse_block_revision: int = 0
    max_efuse_block_revision: int = 99
    mmu_page_size_log2: int = 16
    magic: int = APP_DESC_MAGIC

    def pack(self) -> bytes:
        def text(value: str | bytes, size: int) -> bytes:
            raw = value.encode() if isinstance(value, str) else value
            return raw[:size].ljust(size, b"\0")

        return (
            struct.pack("<II", self.magic, self.secure_version)
            + bytes(8)
            + text(self.version, 32)
            + text(self.project_name, 32)
            + text(self.time, 16)
            + text(self.date, 16)
            + text(self.idf_version, 32)
            + self.elf_sha256
            + struct.pack(
                "<HHB",
                self.min_efuse_block_revision,
                self.max_efuse_block_revision,
                self.mmu_page_size_log2,
            )
            + bytes(3 + 80)
        )


def assemble(
    chip_id: int,
    segments: list[tuple[int, bytes]],
    *,
    hash_appended: bool = True,
    entry: int = 0x40080000,
    spi_mode: int = 2,
    spi_speed: int = 0xF,
    flash_size: int = 2,
    min_revision: int = 0,
    max_revision: int = 399,
) -> bytes:
    """Header, extended header, the segments as given, padding, checksum, digest."""
    image = bytearray(
        struct.pack("<BBBBI", 0xE9, len(segments), spi_mode, (flash_size << 4) | spi_speed, entry)
    )
    image += struct.pack(
        "<B3sHBHH4sB",
        0xEE,  # WP pin: disabled
        bytes(3),
        chip_id,
        min_revision // 100,
        min_revision,
        max_revision,
        bytes(4),
        int(hash_appended),
    )
    checksum = 0xEF
    for address, data in segments:
        image += struct.pack("<II", address, len(data)) + data
        for byte in data:
            checksum ^= byte
    image += bytes(15 - len(image) % 16)
    image.append(checksum)
    if hash_appended:
        image += hashlib.sha256(image).digest()
    return bytes(image)


def build_image(
    chip: str = "esp32",
    *,
    app: AppInfo | None = None,
    hash_appended: bool = True,
    code_bytes: int = 4096,
    seed: int = 1,
    **header: int,
) -> bytes:
    """A whole app image for `chip`: app description and rodata, DRAM, IRAM and flash code."""
    rng = random.Random(seed)
    drom, dram, iram, irom = LAYOUTS[chip]
    rodata = (app or AppInfo()).pack() + rng.randbytes(1024)
    segments = [(drom, rodata), (dram, rng.randbytes(512)), (iram, rng.randbytes(1024))]
    # Pad with an unmapped segment (address 0) so the code lands on its MMU page offset.
    offset = 24 + sum(8 + len(data) for _, data in segments)
    gap = (irom - (offset + 16)) % MMU_PAGE
    segments.append((0, bytes(gap)))
    segments.append((irom, rng.randbytes(code_bytes)))
    header.setdefault("entry", iram)
    return assemble(CHIP_IDS[chip], segments, hash_appended=hash_appended, **header)


def small_image(
    chip: str = "esp32", *, app: AppInfo | None = None, hash_appended: bool = True
) -> bytes:
    """A two-segment image of about 1 KB (app description and rodata, then IRAM)."""
    drom, _, iram, _ = LAYOUTS[chip]
    segments = [(drom, (app or AppInfo()).pack() + bytes(64)), (iram, bytes(range(256)))]
    return assemble(CHIP_IDS[chip], segments, hash_appended=hash_appended)
