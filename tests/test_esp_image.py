"""The ESP32 app image parser, held against Espressif's esptool on the same bytes."""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import struct
import typing as t
from pathlib import Path

import esptool.cmds
import pytest
from conftest import assert_error
from esp_images import CHIP_IDS
from esp_images import LAYOUTS
from esp_images import AppInfo
from esp_images import assemble
from esp_images import build_image
from esp_images import small_image
from esptool.targets import CHIP_DEFS
from flask import Flask
from flask import request

from iotsupport.errors import InvalidFirmwareImage
from iotsupport.releases.esp_image import parse_image
from iotsupport.releases.esp_image import require_chip
from iotsupport.releases.image_format import CHIPS
from iotsupport.releases.image_format import EspImage

HEAD = 24  # image header and extended header


def esptool_info(data: bytes, tmp_path: Path) -> dict[str, t.Any]:
    """What `esptool image-info` prints about `data`, as a dict."""
    path = tmp_path / "image.bin"
    path.write_bytes(data)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        esptool.cmds.image_info(str(path))
    text = out.getvalue()
    fields = dict(re.findall(r"^([A-Za-z][A-Za-z0-9 -]+): (.*)$", text, re.MULTILINE))
    rows = re.findall(r"^\s+\d+\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)", text, re.M)
    checksum = re.match(r"(0x[0-9a-f]+) \((valid|invalid)", fields["Checksum"])
    assert checksum is not None
    digest = re.match(r"([0-9a-f]{64}) \((valid|invalid)\)", fields.get("Validation hash", ""))
    return {
        "chip": fields["Chip ID"].split("(")[1].rstrip(")").lower().replace("-", ""),
        "chip_id": int(fields["Chip ID"].split()[0]),
        "entry": int(fields["Entry point"], 16),
        "segments": [(int(a, 16), int(o, 16) + 8, int(n, 16)) for n, a, o in rows],
        "flash_size": fields["Flash size"],
        "flash_mode": fields["Flash mode"],
        "min_revision": fields["Minimal chip revision"].split(",")[0],
        "max_revision": fields["Maximal chip revision"],
        "checksum": int(checksum.group(1), 16),
        "checksum_valid": checksum.group(2) == "valid",
        "digest": digest.group(1) if digest else None,
        "digest_valid": digest.group(2) == "valid" if digest else None,
        "project_name": fields["Project name"],
        "version": fields["App version"],
        "compiled": fields["Compile time"],
        "elf_sha256": fields["ELF file SHA256"],
        "idf_version": fields["ESP-IDF"],
        "secure_version": int(fields["Secure version"]),
        "mmu_page_size": fields.get("MMU page size"),
    }


def revision(value: int) -> str:
    return f"v{value // 100}.{value % 100}"


def as_esptool_sees_it(image: EspImage) -> dict[str, t.Any]:
    app = image.app
    return {
        "chip": image.chip,
        "chip_id": image.chip_id,
        "entry": image.entry_point,
        "segments": [(s.load_address, s.data_offset, s.length) for s in image.segments],
        "flash_size": image.flash_size_name,
        "flash_mode": image.spi_mode_name,
        "min_revision": revision(image.min_chip_revision),
        "max_revision": revision(image.max_chip_revision),
        "checksum": image.checksum,
        "checksum_valid": True,
        "digest": image.sha256,
        "digest_valid": True if image.sha256 else None,
        "project_name": app.project_name,
        "version": app.version,
        "compiled": f"{app.date} {app.time}",
        "elf_sha256": app.elf_sha256,
        "idf_version": app.idf_version,
        "secure_version": app.secure_version,
        "mmu_page_size": f"{app.mmu_page_size // 1024} KB" if app.mmu_page_size else None,
    }


def refusal(data: bytes) -> InvalidFirmwareImage:
    with pytest.raises(InvalidFirmwareImage) as caught:
        parse_image(io.BytesIO(data))
    return caught.value


@pytest.mark.parametrize("chip", sorted(CHIP_IDS))
@pytest.mark.parametrize("hashed", [True, False], ids=["hash", "no-hash"])
def test_parses_what_esptool_reads(chip: str, hashed: bool, tmp_path: Path) -> None:
    app = AppInfo(version=f"2.0.{len(chip)}-rc1", project_name=f"{chip}-sensor", secure_version=3)
    data = build_image(chip, app=app, hash_appended=hashed, min_revision=101, max_revision=299)
    image = parse_image(io.BytesIO(data))
    assert as_esptool_sees_it(image) == esptool_info(data, tmp_path)
    assert image.size == len(data)
    assert (image.sha256 is not None) == hashed
    assert image.app.version == f"2.0.{len(chip)}-rc1"
    assert image.app.min_efuse_block_revision == 0
    assert image.app.max_efuse_block_revision == 99


def test_every_chip_esptool_knows_has_the_same_name_here() -> None:
    known = {
        rom.IMAGE_CHIP_ID: name
        for name, rom in CHIP_DEFS.items()
        if getattr(rom, "IMAGE_CHIP_ID", None) is not None and name != "esp8266"
    }
    assert known == CHIPS


def test_a_corrupted_byte_fails_the_checksum_as_esptool_says(tmp_path: Path) -> None:
    data = bytearray(build_image("esp32s3", hash_appended=False))
    data[HEAD + 8 + 300] ^= 0x5A  # inside the first segment, past the app description
    assert esptool_info(bytes(data), tmp_path)["checksum_valid"] is False
    error = refusal(bytes(data))
    assert error.code == "image_checksum_mismatch"
    assert error.details["stored"] != error.details["computed"]


def test_a_corrupted_padding_byte_fails_only_the_hash_as_esptool_says(tmp_path: Path) -> None:
    image = build_image("esp32c3")
    padding_at = len(image) - 32 - 2  # before the checksum byte; not segment data
    data = bytearray(image)
    data[padding_at] ^= 0x01
    seen = esptool_info(bytes(data), tmp_path)
    assert seen["checksum_valid"] is True and seen["digest_valid"] is False
    error = refusal(bytes(data))
    assert error.code == "image_hash_mismatch"
    assert error.details["stored"] == image[-32:].hex()


def test_a_wrong_appended_digest_is_a_hash_mismatch() -> None:
    data = bytearray(small_image())
    data[-1] ^= 0xFF
    assert refusal(bytes(data)).code == "image_hash_mismatch"


def test_reads_a_path_a_file_object_and_a_pipe(tmp_path: Path) -> None:
    data = build_image("esp32c6")
    path = tmp_path / "firmware.bin"
    path.write_bytes(data)
    from_path = parse_image(path)
    assert parse_image(str(path)) == from_path
    with path.open("rb") as file:
        assert parse_image(file) == from_path
    # A file object is read from where it stands, and trailing bytes (a signature) are left.
    stream = io.BytesIO(b"prefix" + data + b"\xff" * 4096)
    stream.seek(6)
    assert parse_image(stream) == from_path
    assert parse_image(t.cast(t.BinaryIO, Unseekable(data))) == from_path
    assert from_path.sha256 == hashlib.sha256(data[:-32]).hexdigest()


class Unseekable(io.RawIOBase):
    """A pipe: no seek, no tell, and reads that come back short."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        raise OSError("not seekable")

    def seek(self, offset: int, whence: int = 0) -> int:
        raise OSError("not seekable")

    def read(self, size: int = -1) -> bytes:
        size = min(size, 1000)  # short reads
        piece = self.data[self.position : self.position + size]
        self.position += len(piece)
        return piece


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00" * 64, b"\x89PNG\r\n\x1a\n" + bytes(64), b"PK\x03\x04" + bytes(64)],
    ids=["empty", "zeros", "png", "zip"],
)
def test_what_is_not_an_image(data: bytes) -> None:
    error = refusal(data)
    assert error.code == "not_an_esp_image"
    assert "0xe9" in error.message


@pytest.mark.parametrize("keep", [1, 23, 24, 30, 40, 300, -40, -33, -32, -1])
def test_truncated_anywhere(keep: int) -> None:
    data = small_image()
    cut = data[:keep]
    error = refusal(cut)
    assert error.code == "image_truncated"
    assert error.details["size"] == len(cut)
    assert error.details["needed"] > len(cut)


def test_what_each_truncation_says() -> None:
    data = small_image()
    assert "image header" in refusal(data[:10]).message
    assert "header of segment 0" in refusal(data[:28]).message
    assert "application description" in refusal(data[:100]).message
    assert "data of segment 1" in refusal(data[: len(data) - 100]).message
    assert "checksum" in refusal(data[: len(data) - 33]).message
    assert "appended SHA-256" in refusal(data[:-1]).message


def test_header_checks() -> None:
    data = bytearray(small_image())
    data[1] = 17
    assert refusal(bytes(data)).details == {"segment_count": 17}
    data = bytearray(small_image())
    data[23] = 2
    error = refusal(bytes(data))
    assert (error.code, error.details) == ("image_bad_header", {"hash_appended": 2})
    data = bytearray(small_image())
    data[12:14] = struct.pack("<H", 0x77)
    error = refusal(bytes(data))
    assert (error.code, error.details) == ("image_unknown_chip", {"chip_id": 0x77})


@pytest.mark.parametrize(
    ("length", "reason"),
    [(1026, "not a multiple of 4"), (16 * 1024 * 1024, "16 MB or more"), (0xFFFFFFFC, "16 MB")],
)
def test_segment_lengths(length: int, reason: str) -> None:
    data = bytearray(small_image())
    data[HEAD + 4 : HEAD + 8] = struct.pack("<I", length)
    error = refusal(bytes(data))
    assert error.code == "image_bad_segment"
    assert error.details["segment"] == 0
    assert reason in error.details["reason"]


def test_without_an_app_description() -> None:
    drom, _, iram, _ = LAYOUTS["esp32"]
    short = assemble(0, [(drom, bytes(252)), (iram, bytes(1024))])
    assert refusal(short).code == "image_no_app_description"
    no_magic = small_image(app=AppInfo(magic=0x12345678))
    assert refusal(no_magic).details == {"magic": 0x12345678}
    assert refusal(assemble(0, [])).code == "image_no_app_description"


@pytest.mark.parametrize(
    "app",
    [AppInfo(version=b"\xff\xfe1.0"), AppInfo(project_name="a\nb"), AppInfo(date=b"Nov\x7f")],
    ids=["not-utf8", "newline", "delete"],
)
def test_app_description_text_must_be_printable(app: AppInfo) -> None:
    error = refusal(small_image(app=app))
    assert error.code == "image_bad_app_description"
    assert error.details["field"] in {"version", "project_name", "date"}


def test_app_description_strings_end_at_the_first_nul() -> None:
    image = parse_image(io.BytesIO(small_image(app=AppInfo(version=b"1.0\0junk\xff"))))
    assert image.app.version == "1.0"
    assert image.app.mmu_page_size == 65536
    unsaid = parse_image(io.BytesIO(small_image(app=AppInfo(mmu_page_size_log2=0))))
    assert unsaid.app.mmu_page_size is None


def test_require_chip() -> None:
    image = parse_image(io.BytesIO(small_image("esp32s3")))
    require_chip(image, "esp32s3")
    with pytest.raises(InvalidFirmwareImage) as caught:
        require_chip(image, "esp32c3")
    assert caught.value.code == "image_wrong_chip"
    assert caught.value.details == {"chip": "esp32s3", "expected": "esp32c3"}


def test_a_refusal_is_a_422_in_the_json_envelope(app: Flask) -> None:
    @app.post("/test/parse")
    def parse() -> dict[str, str]:
        return {"version": parse_image(io.BytesIO(request.get_data())).app.version}

    client = app.test_client()
    assert client.post("/test/parse", data=small_image()).get_json() == {"version": "1.4.2"}
    body = assert_error(client.post("/test/parse", data=small_image()[:-5]), 422)
    assert body["code"] == "image_truncated"
    assert body["details"]["size"] == len(small_image()) - 5
