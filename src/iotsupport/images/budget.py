"""What decoding an image will hold in memory, read from its header before any decoding.

The pixel count alone does not say it: libjpeg keeps every DCT coefficient of a
progressive or multi-scan JPEG at full resolution (2 bytes per sample, whatever
`draft` shrinks the output to), libwebp keeps two canvases and Pillow a copy of
the file and of the frame, a GIF's first frame may carry a disposal buffer, and
a PNG's compressed text chunks are inflated into memory. `sniff` reads the
header of each format the proxy opens (convert.FORMATS) and returns a `Header`
whose `peak` is the most one conversion holds at once, in bytes:

| format | the decoder holds besides the image | image, bytes/pixel |
|---|---|---|
| JPEG, one scan (baseline, arithmetic) | nothing that grows with it | 1 or 4, after draft |
| JPEG, progressive or multi-scan | 128 bytes per 8x8 block per component | same |
| PNG (interlaced too: row by row) | its inflated text chunks | 1, 2 or 4 |
| GIF, first frame only | its disposal buffer, 1 byte per pixel | 1 |
| WebP, first frame only | the file, 12 bytes per canvas pixel | 4 |
| BMP | RLE: 2 bytes per pixel | 1 or 4 |

After decoding, the conversion adds at most 4 bytes per decoded pixel (the
converted copy, see convert.py) while only the decoded image is kept. The limit
is 8 bytes per pixel of IMAGE_PROXY_MAX_PIXELS: what a plain RGB image at the
pixel limit needs. Lossless and hierarchical JPEG, which libjpeg decodes with
buffers of their own, are refused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

BYTES_PER_PIXEL_LIMIT = 8  # per pixel of IMAGE_PROXY_MAX_PIXELS
CONVERSION_BYTES_PER_PIXEL = 4  # the converted copy (RGB and RGBA are 4 bytes in Pillow)
# Pillow's PNG text limits (PngImagePlugin.MAX_TEXT_CHUNK, MAX_TEXT_MEMORY).
_TEXT_CHUNK = 1 << 20
_TEXT_MEMORY = 64 << 20
_DEFLATE_RATIO = 1032  # the most deflate can expand


class Unsupported(ValueError):
    """A variant of a known format that the proxy does not decode."""


@dataclass(frozen=True)
class Header:
    format: str  # as Pillow names it (an MPO is a JPEG here)
    width: int  # of what the decoder fills: a GIF's or WebP's whole canvas
    height: int
    held: int  # bytes the decoder holds besides the decoded image
    reducible: bool = False  # a JPEG: `draft` decodes it smaller

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def peak(self, decoded: tuple[int, int], mode: str) -> int:
        """Bytes at the worst moment, for the image as it will be decoded (after draft)."""
        pixels = decoded[0] * decoded[1]
        image = pixels * bytes_per_pixel(mode)
        return max(self.held + image, image + CONVERSION_BYTES_PER_PIXEL * pixels)


def bytes_per_pixel(mode: str) -> int:
    """What Pillow stores per pixel in `mode`."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def sniff(data: bytes | memoryview) -> Header | None:
    """The header of a format the proxy opens; None when the data is none of them.

    ValueError when the data starts like one of them but its header is damaged;
    Unsupported when it is a variant the proxy does not decode.
    """
    head = bytes(data[:16])
    try:
        if head.startswith(b"\xff\xd8\xff"):
            return _jpeg(data)
        if head.startswith(b"\x89PNG\r\n\x1a\n"):
            return _png(data)
        if head.startswith((b"GIF87a", b"GIF89a")):
            return _gif(data)
        if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
            return _webp(data)
        if head.startswith(b"BM"):
            return _bmp(data)
    except (struct.error, IndexError) as exc:
        raise ValueError("truncated header") from exc
    return None


# --- JPEG -----------------------------------------------------------------------------

_SEQUENTIAL = {0xC0, 0xC1, 0xC9}  # baseline, extended, arithmetic
_PROGRESSIVE = {0xC2, 0xCA}  # Huffman, arithmetic
_OTHER_FRAMES = {0xC3, 0xC5, 0xC6, 0xC7, 0xCB, 0xCD, 0xCE, 0xCF}  # lossless, hierarchical
_BLOCK_BYTES = 64 * 2  # an 8x8 block of 16-bit coefficients


def _jpeg(data: bytes | memoryview) -> Header:
    position = 2
    frame: tuple[int, int, int, list[tuple[int, int]]] | None = None
    while True:
        if data[position] != 0xFF:
            raise ValueError("no marker where one should be")
        while data[position] == 0xFF:  # fill bytes
            position += 1
        marker = data[position]
        position += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM, RSTn: no length
            continue
        if marker == 0xD9:
            raise ValueError("the image ends before its first scan")
        (length,) = struct.unpack_from(">H", data, position)
        segment = data[position + 2 : position + length]
        if length < 2 or len(segment) != length - 2:
            raise ValueError("truncated segment")
        position += length
        if marker in _OTHER_FRAMES:
            raise Unsupported("lossless or hierarchical JPEG")
        if marker in _SEQUENTIAL or marker in _PROGRESSIVE:
            _precision, height, width, count = struct.unpack_from(">BHHB", segment)
            sampling = [
                (segment[6 + 3 * n + 1] >> 4, segment[6 + 3 * n + 1] & 15) for n in range(count)
            ]
            frame = (marker, width, height, sampling)
        elif marker == 0xDA:  # start of the first scan: what libjpeg decides on
            if frame is None:
                raise ValueError("a scan before the frame header")
            return _jpeg_header(*frame, in_scan=segment[0])


def _jpeg_header(
    marker: int, width: int, height: int, sampling: list[tuple[int, int]], *, in_scan: int
) -> Header:
    if not (width and height and sampling) or any(
        not (1 <= h <= 4 and 1 <= v <= 4) for h, v in sampling
    ):
        raise ValueError("impossible frame header")
    held = 0
    # libjpeg keeps the whole image's coefficients when one scan does not hold it all.
    if marker in _PROGRESSIVE or in_scan < len(sampling):
        max_h = max(h for h, _ in sampling)
        max_v = max(v for _, v in sampling)
        for h, v in sampling:
            blocks_wide = _ceil(_ceil(width * h, max_h * 8), h) * h
            blocks_high = _ceil(_ceil(height * v, max_v * 8), v) * v
            held += blocks_wide * blocks_high * _BLOCK_BYTES
    return Header("JPEG", width, height, held, reducible=True)


def _ceil(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


# --- PNG ------------------------------------------------------------------------------


def _png(data: bytes | memoryview) -> Header:
    length, kind = struct.unpack_from(">I4s", data, 8)
    if kind != b"IHDR" or length < 13:
        raise ValueError("no IHDR")
    width, height = struct.unpack_from(">II", data, 16)
    if not (width and height):
        raise ValueError("an empty image")
    held = 0
    position = 8
    # Pillow inflates text chunks (before and after the image data) into memory.
    while position + 8 <= len(data) and held < _TEXT_MEMORY:
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind == b"tEXt":
            held += length
        elif kind in (b"zTXt", b"iTXt", b"iCCP"):
            held += min(_TEXT_CHUNK, length * _DEFLATE_RATIO)
        elif kind == b"IEND":
            break
        position += 12 + length
    return Header("PNG", width, height, min(held, _TEXT_MEMORY + _TEXT_CHUNK))


# --- GIF ------------------------------------------------------------------------------


def _gif(data: bytes | memoryview) -> Header:
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    position = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    disposal = 0
    while True:
        block = data[position]
        if block == 0x21:  # extension: its label, then sub-blocks
            if data[position + 1] == 0xF9 and data[position + 2] >= 1:
                disposal = (data[position + 3] >> 2) & 7
            position += 2
            while data[position]:
                position += data[position] + 1
            position += 1
        elif block == 0x2C:  # the first frame
            left, top, frame_width, frame_height = struct.unpack_from("<HHHH", data, position + 1)
            # Pillow grows the canvas to hold the frame.
            canvas = (max(width, left + frame_width), max(height, top + frame_height))
            if not (canvas[0] and canvas[1]):
                raise ValueError("an empty image")
            held = frame_width * frame_height if disposal >= 2 else 0
            return Header("GIF", canvas[0], canvas[1], held)
        else:
            raise ValueError("no frame")


# --- WebP -----------------------------------------------------------------------------

_WEBP_HELD_PER_PIXEL = 12  # libwebp's two canvases, the frame's copy (4 bytes each)


def _webp(data: bytes | memoryview) -> Header:
    kind = bytes(data[12:16])
    if kind == b"VP8X":
        width = 1 + int.from_bytes(data[24:27], "little")
        height = 1 + int.from_bytes(data[27:30], "little")
    elif kind == b"VP8L":
        (bits,) = struct.unpack_from("<I", data, 21)
        width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    elif kind == b"VP8 ":
        width, height = (value & 0x3FFF for value in struct.unpack_from("<HH", data, 26))
    else:
        raise ValueError("no WebP image chunk")
    if not (width and height):
        raise ValueError("an empty image")
    # Pillow also holds a copy of the whole file while the decoder lives.
    return Header("WEBP", width, height, len(data) + _WEBP_HELD_PER_PIXEL * width * height)


# --- BMP ------------------------------------------------------------------------------

_RLE = {1, 2}  # RLE8, RLE4: Pillow decodes them in Python into a buffer, then copies it


def _bmp(data: bytes | memoryview) -> Header:
    (size,) = struct.unpack_from("<I", data, 14)
    if size == 12:  # OS/2 v1
        width, height = struct.unpack_from("<HH", data, 18)
        compression = 0
    else:
        width, height = struct.unpack_from("<ii", data, 18)
        (compression,) = struct.unpack_from("<I", data, 30)
    width, height = abs(width), abs(height)
    if not (width and height):
        raise ValueError("an empty image")
    held = 2 * width * height if compression in _RLE else 0
    return Header("BMP", width, height, held)
