"""An NVS partition reader written from ESP-IDF's documented format, to check the images
our server makes with Espressif's generator ("Non-Volatile Storage Library", Internals).

A partition is a row of 4096-byte pages. Each page: a 32-byte header (state, sequence
number, version, 19 unused bytes, CRC32 of bytes 4 to 28), a 32-byte bitmap with two bits
per entry (11 empty, 10 written, 00 erased), then 126 entries of 32 bytes. An entry:
namespace index, type, span, chunk index, CRC32 (of the entry without this field), a
16-byte NUL-padded key and 8 bytes of data. A string (type 0x21) keeps its size, two
reserved bytes and the CRC32 of its bytes in the data field, and its bytes (with the
terminating NUL) in the span - 1 entries after it. Namespaces are entries of
namespace 0 whose u8 value is the index the namespace's keys carry.
"""

from __future__ import annotations

import struct
import typing as t
import zlib

PAGE = 4096
ENTRY = 32
ENTRIES_PER_PAGE = 126
PAGE_STATES = {0xFFFFFFFF: "empty", 0xFFFFFFFE: "active", 0xFFFFFFFC: "full"}
VERSIONS = {0xFF: 1, 0xFE: 2}
INTEGERS = {
    0x01: "<B",
    0x11: "<b",
    0x02: "<H",
    0x12: "<h",
    0x04: "<I",
    0x14: "<i",
    0x08: "<Q",
    0x18: "<q",
}
STRING = 0x21


class NvsError(ValueError):
    pass


def crc32(data: bytes) -> int:
    """NVS's CRC32: the little-endian CRC32 started from 0xFFFFFFFF (esp_rom_crc32_le)."""
    return zlib.crc32(data, 0xFFFFFFFF) & 0xFFFFFFFF


def read_partition(image: bytes) -> dict[str, dict[str, tuple[str, t.Any]]]:
    """{namespace: {key: (type, value)}}; NvsError on any bad CRC or layout."""
    if len(image) % PAGE:
        raise NvsError("a partition is a whole number of pages")
    namespaces: dict[int, str] = {}
    items: list[tuple[int, str, str, t.Any]] = []
    for start in range(0, len(image), PAGE):
        page = image[start : start + PAGE]
        state = struct.unpack_from("<I", page, 0)[0]
        if PAGE_STATES.get(state) == "empty":
            if page != b"\xff" * PAGE:
                raise NvsError(f"page at {start:#x} is marked empty but is not")
            continue
        if state not in PAGE_STATES:
            raise NvsError(f"page at {start:#x} has state {state:#x}")
        if page[8] not in VERSIONS:
            raise NvsError(f"page at {start:#x} has an unknown version {page[8]:#x}")
        if struct.unpack_from("<I", page, 28)[0] != crc32(page[4:28]):
            raise NvsError(f"page header at {start:#x}: CRC mismatch")
        items += _page_items(page, start)
    for namespace, key, _kind, value in items:
        if namespace == 0:
            namespaces[value] = key
    result: dict[str, dict[str, tuple[str, t.Any]]] = {}
    for namespace, key, kind, value in items:
        if namespace != 0:
            if namespace not in namespaces:
                raise NvsError(f"{key!r} is in namespace {namespace}, which has no name")
            result.setdefault(namespaces[namespace], {})[key] = (kind, value)
    return result


def _entry_states(page: bytes) -> list[int]:
    bitmap = page[32:64]
    return [(bitmap[i // 4] >> ((i % 4) * 2)) & 0b11 for i in range(ENTRIES_PER_PAGE)]


def _page_items(page: bytes, start: int) -> list[tuple[int, str, str, t.Any]]:
    states = _entry_states(page)
    items = []
    index = 0
    while index < ENTRIES_PER_PAGE:
        if states[index] != 0b10:  # empty or erased
            index += 1
            continue
        entry = page[64 + index * ENTRY : 64 + (index + 1) * ENTRY]
        namespace, kind, span, _chunk = entry[0], entry[1], entry[2], entry[3]
        if struct.unpack_from("<I", entry, 4)[0] != crc32(entry[:4] + entry[8:]):
            raise NvsError(f"entry {index} of page {start:#x}: CRC mismatch")
        key = entry[8:24].split(b"\0", 1)[0].decode("ascii")
        data = entry[24:32]
        if kind in INTEGERS:
            value: t.Any = struct.unpack_from(INTEGERS[kind], data)[0]
            type_name = struct.calcsize(INTEGERS[kind]) * 8
            signed = INTEGERS[kind][1].islower()
            items.append((namespace, key, f"{'i' if signed else 'u'}{type_name}", value))
        elif kind == STRING:
            size, _reserved, data_crc = struct.unpack_from("<HHI", data)
            body = page[64 + (index + 1) * ENTRY : 64 + (index + span) * ENTRY][:size]
            if len(body) != size or crc32(body) != data_crc:
                raise NvsError(f"string {key!r}: size or CRC mismatch")
            if not body.endswith(b"\0"):
                raise NvsError(f"string {key!r} is not NUL-terminated")
            items.append((namespace, key, "string", body[:-1].decode("utf-8")))
        else:
            raise NvsError(f"entry {key!r} has a type this reader does not know: {kind:#x}")
        index += max(span, 1)
    return items
