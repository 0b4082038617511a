"""Parse and verify an ESP32 app image, streaming (image_format.py describes the format).

A refusal is an :class:`InvalidFirmwareImage` subclass (422) whose ``code`` names the check
that failed. Lengths in the file are checked against what is left of it before anything is
read, and data is read in pieces of at most :data:`READ_SIZE` bytes, so a lying header can
neither read past the end nor make the parser allocate more than the file holds; the SHA-256
is computed while reading, so a 4 MB image is never in memory whole.
"""

from __future__ import annotations

import hashlib
import io
import os
import typing as t

from iotsupport.releases.image_format import APP_DESC
from iotsupport.releases.image_format import APP_DESC_MAGIC
from iotsupport.releases.image_format import CHECKSUM_SEED
from iotsupport.releases.image_format import CHIPS
from iotsupport.releases.image_format import DIGEST_SIZE
from iotsupport.releases.image_format import EXTENDED_HEADER
from iotsupport.releases.image_format import HEADER
from iotsupport.releases.image_format import MAGIC
from iotsupport.releases.image_format import MAX_SEGMENT_LENGTH
from iotsupport.releases.image_format import MAX_SEGMENTS
from iotsupport.releases.image_format import SEGMENT_HEADER
from iotsupport.releases.image_format import AppDescription
from iotsupport.releases.image_format import BadAppDescription
from iotsupport.releases.image_format import BadHeader
from iotsupport.releases.image_format import BadSegment
from iotsupport.releases.image_format import ChecksumMismatch
from iotsupport.releases.image_format import EspImage
from iotsupport.releases.image_format import HashMismatch
from iotsupport.releases.image_format import ImageTruncated
from iotsupport.releases.image_format import NoAppDescription
from iotsupport.releases.image_format import NotAnImage
from iotsupport.releases.image_format import Segment
from iotsupport.releases.image_format import UnknownChip
from iotsupport.releases.image_format import WrongChip

__all__ = ["EspImage", "parse_image", "require_chip"]

READ_SIZE = 64 * 1024


def parse_image(source: t.BinaryIO | str | os.PathLike[str]) -> EspImage:
    """Parse and verify the image in a file (by path) or a binary file object.

    A file object is read from its current position; it is not closed. Raises an
    :class:`InvalidFirmwareImage` subclass for every way the bytes can be wrong.
    """
    if isinstance(source, str | os.PathLike):
        with open(source, "rb") as file:
            return _parse(_Reader(file))
    return _parse(_Reader(source))


def require_chip(image: EspImage, chip: str) -> None:
    """Refuse an image built for another chip than `chip` (a value of CHIPS)."""
    if image.chip != chip:
        raise WrongChip(
            f"the image is for {image.chip}, not {chip}", {"chip": image.chip, "expected": chip}
        )


class _Reader:
    """Reads forward, hashing what it reads, refusing before it would pass the end."""

    def __init__(self, file: t.BinaryIO) -> None:
        self.file = file
        self.offset = 0
        self.digest = hashlib.sha256()
        self.limit = _remaining(file)

    def read(self, count: int, what: str, *, hashed: bool = True) -> bytes:
        """Exactly `count` bytes (a header-sized read), or ImageTruncated."""
        self._require(count, what)
        data = _read_fully(self.file, count)
        if len(data) < count:
            self.limit = self.offset + len(data)
            self._require(count, what)
        self.offset += count
        if hashed:
            self.digest.update(data)
        return data

    def pieces(self, count: int, what: str) -> t.Iterator[bytes]:
        """`count` bytes in pieces of at most READ_SIZE."""
        self._require(count, what)
        left = count
        while left:
            piece = self.read(min(left, READ_SIZE), what)
            left -= len(piece)
            yield piece

    def _require(self, count: int, what: str) -> None:
        if self.limit is not None and self.offset + count > self.limit:
            raise _truncated(self.limit, self.offset + count, what)


def _truncated(size: int, needed: int, what: str) -> ImageTruncated:
    return ImageTruncated(
        f"the image is truncated: the file ends at byte {size}, inside {what}",
        {"size": size, "needed": needed},
    )


def _parse(reader: _Reader) -> EspImage:
    head = _header(reader)
    _, count, spi_mode, speed_size, entry = HEADER.unpack_from(head)
    wp_pin, _, chip_id, _, min_rev, max_rev, _, hash_appended = EXTENDED_HEADER.unpack_from(
        head, HEADER.size
    )
    if count > MAX_SEGMENTS:
        raise BadHeader(
            f"the header says {count} segments; an image has at most {MAX_SEGMENTS}",
            {"segment_count": count},
        )
    if hash_appended not in (0, 1):
        raise BadHeader(
            f"hash_appended is {hash_appended:#04x}, not 0 or 1",
            {"hash_appended": hash_appended},
        )
    chip = CHIPS.get(chip_id)
    if chip is None:
        raise UnknownChip(f"unknown chip id {chip_id:#06x}", {"chip_id": chip_id})
    if count == 0:
        raise NoAppDescription("the image has no segments, so no application description")
    app, segments, xor = _segments(reader, count)
    checksum = _check_checksum(reader, CHECKSUM_SEED ^ xor)
    return EspImage(
        chip=chip,
        chip_id=chip_id,
        entry_point=entry,
        spi_mode=spi_mode,
        spi_speed=speed_size & 0x0F,
        flash_size=speed_size >> 4,
        wp_pin=wp_pin,
        min_chip_revision=min_rev,
        max_chip_revision=max_rev,
        segments=segments,
        checksum=checksum,
        sha256=_check_digest(reader) if hash_appended else None,
        size=reader.offset,
        app=app,
    )


def _header(reader: _Reader) -> bytes:
    """The image header and the extended header (24 bytes)."""
    size = HEADER.size + EXTENDED_HEADER.size
    head = _read_fully(reader.file, size if reader.limit is None else min(size, reader.limit))
    if not head or head[0] != MAGIC:
        raise NotAnImage(
            f"not an ESP32 app image: it does not start with the magic byte {MAGIC:#04x}"
        )
    if len(head) < size:
        raise _truncated(len(head), size, "the image header")
    reader.offset = size
    reader.digest.update(head)
    return head


def _segments(reader: _Reader, count: int) -> tuple[AppDescription, tuple[Segment, ...], int]:
    """Read every segment: the app description from the first, the XOR of all their data."""
    segments = []
    xor = 0
    for index in range(count):
        address, length = SEGMENT_HEADER.unpack(reader.read(8, f"the header of segment {index}"))
        segment = Segment(address, reader.offset, length)
        _check_segment(index, segment)
        left = length
        if index == 0:
            first = reader.read(APP_DESC.size, "the application description")
            app = _app_description(first)
            xor ^= _xor(first)
            left -= len(first)
        for piece in reader.pieces(left, f"the data of segment {index}"):
            xor ^= _xor(piece)
        segments.append(segment)
    return app, tuple(segments), xor


def _check_checksum(reader: _Reader, computed: int) -> int:
    padded = reader.read(16 - reader.offset % 16, "the checksum")
    if padded[-1] != computed:
        raise ChecksumMismatch(
            f"checksum mismatch: the image says {padded[-1]:#04x}, its data gives {computed:#04x}",
            {"stored": padded[-1], "computed": computed},
        )
    return computed


def _check_digest(reader: _Reader) -> str:
    computed = reader.digest.hexdigest()
    stored = reader.read(DIGEST_SIZE, "the appended SHA-256", hashed=False).hex()
    if stored != computed:
        raise HashMismatch(
            "the appended SHA-256 does not match the image",
            {"stored": stored, "computed": computed},
        )
    return stored


def _check_segment(index: int, segment: Segment) -> None:
    if segment.length % 4 or segment.length >= MAX_SEGMENT_LENGTH:
        reason = "not a multiple of 4" if segment.length % 4 else "16 MB or more"
        raise BadSegment(
            f"segment {index} has a length of {segment.length} bytes: {reason}",
            {"segment": index, "length": segment.length, "reason": reason},
        )
    if index == 0 and segment.length < APP_DESC.size:
        raise NoAppDescription(
            f"the first segment ({segment.length} bytes) is too short to hold the "
            f"application description ({APP_DESC.size} bytes)",
            {"length": segment.length},
        )


def _app_description(data: bytes) -> AppDescription:
    fields = APP_DESC.unpack(data)
    magic, secure_version, _, *texts, elf_sha256, min_efuse, max_efuse, mmu_page, _, _ = fields
    if magic != APP_DESC_MAGIC:
        raise NoAppDescription(
            "the first segment does not start with an application description "
            f"(esp_app_desc_t magic {APP_DESC_MAGIC:#010x})",
            {"magic": magic},
        )
    names = ("version", "project_name", "time", "date", "idf_version")
    version, project, time, date, idf = (
        _text(name, raw) for name, raw in zip(names, texts, strict=True)
    )
    return AppDescription(
        secure_version=secure_version,
        version=version,
        project_name=project,
        time=time,
        date=date,
        idf_version=idf,
        elf_sha256=elf_sha256.hex(),
        min_efuse_block_revision=min_efuse,
        max_efuse_block_revision=max_efuse,
        mmu_page_size=2**mmu_page if mmu_page else None,
    )


def _text(field: str, raw: bytes) -> str:
    """A NUL-terminated C string field; UTF-8 without control characters."""
    try:
        text = raw.split(b"\0", 1)[0].decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise BadAppDescription(
            f"the application description's {field} is not printable UTF-8 text",
            {"field": field},
        )
    return text


def _xor(data: bytes) -> int:
    """XOR of all bytes, folding one big integer in halves (fast for large pieces)."""
    number = int.from_bytes(data, "little")
    width = len(data)
    while width > 1:
        half = width // 2
        number = (number & ((1 << (8 * half)) - 1)) ^ (number >> (8 * half))
        width -= half
    return number


def _read_fully(file: t.BinaryIO, count: int) -> bytes:
    """Up to `count` bytes; fewer only at the end of the file (raw reads may come short)."""
    data = file.read(count)
    while len(data) < count:
        more = file.read(count - len(data))
        if not more:
            break
        data += more
    return data


def _remaining(file: t.BinaryIO) -> int | None:
    """Bytes left in the file, or None when it cannot tell (a pipe)."""
    try:
        here = file.tell()
        end = file.seek(0, io.SEEK_END)
        file.seek(here)
    except (OSError, ValueError):
        return None
    return end - here
