"""Hostile ESP32 images: lying lengths and counts, random and damaged bytes, a big image.

Whatever the bytes, the parser returns an image or one of its refusals, never reads
past the end of the file, and holds no more than a read's worth of it in memory.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
from pathlib import Path

import pytest
from esp_images import build_image
from esp_images import small_image
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from iotsupport.errors import InvalidFirmwareImage
from iotsupport.releases.esp_image import parse_image
from iotsupport.releases.image_format import EspImage

HEAD = 24  # image header and extended header
SMALL = small_image()


class CountingFile(io.BytesIO):
    """Fails the test if the parser asks for bytes past the end of the file."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.size = len(data)
        self.largest_read = 0

    def read(self, size: int | None = -1) -> bytes:
        assert size is not None and 0 <= size <= self.size - self.tell(), (size, self.tell())
        self.largest_read = max(self.largest_read, size)
        return super().read(size)


def test_lying_lengths_never_read_past_the_file() -> None:
    data = bytearray(small_image())
    data[HEAD + 4 : HEAD + 8] = struct.pack("<I", 0xFFFFF0)  # 16 MB less a bit, in 1 KB
    file = CountingFile(bytes(data))
    assert pytest.raises(InvalidFirmwareImage, parse_image, file).value.code == "image_truncated"
    assert file.largest_read <= len(data)
    lying_count = bytearray(small_image())
    lying_count[1] = 16
    file = CountingFile(bytes(lying_count))
    # The third "segment header" is the padding, checksum and digest.
    assert pytest.raises(InvalidFirmwareImage, parse_image, file).value.code in {
        "image_truncated",
        "image_bad_segment",
    }


def parse_or_refuse(data: bytes) -> EspImage | InvalidFirmwareImage:
    """Anything but a result or a refusal (an IndexError, a struct.error, a read past the
    end, a MemoryError) fails the test."""
    try:
        return parse_image(CountingFile(data))
    except InvalidFirmwareImage as exc:
        return exc


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048).map(lambda tail: b"\xe9" + tail))
def test_any_bytes_after_the_magic_are_parsed_or_refused(data: bytes) -> None:
    parse_or_refuse(data)


@settings(max_examples=300, deadline=None)
@given(
    changes=st.lists(
        st.tuples(st.integers(0, len(SMALL) - 1), st.integers(0, 255)), min_size=1, max_size=6
    ),
    keep=st.integers(0, len(SMALL)),
)
def test_damaged_images_are_parsed_or_refused(changes: list[tuple[int, int]], keep: int) -> None:
    data = bytearray(SMALL)
    for position, value in changes:
        data[position] = value
    result = parse_or_refuse(bytes(data[:keep]))
    if isinstance(result, EspImage):  # only harmless changes: a field or the trailing bytes
        assert result.size <= keep


def test_a_4_mb_image_is_hashed_while_reading_not_loaded_whole(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(build_image("esp32s3", code_bytes=4 * 1024 * 1024))
    tracemalloc.start()
    try:
        image = parse_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert image.segments[-1].length == 4 * 1024 * 1024
    assert peak < 512 * 1024, peak
