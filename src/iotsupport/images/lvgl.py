"""The LVGL v9 binary image format: a 12-byte header, then the pixel rows.

Header (little-endian): magic 0x19 (u8), color format (u8), flags (u16),
width (u16), height (u16), stride = bytes per row (u16), reserved (u16).
Rows are packed without padding (stride = width x bytes per pixel), colors
are not premultiplied (flags = 0):

- ARGB8888: B, G, R, A bytes per pixel.
- RGB888:   B, G, R bytes per pixel.
- RGB565:   one little-endian u16 per pixel, red in the top 5 bits.
- RGB565A8: the whole RGB565 plane, then a plane of one alpha byte per pixel
            (its stride is width, i.e. half the header's stride).
"""

from __future__ import annotations

import struct
from enum import StrEnum

from PIL import Image
from PIL import ImageChops

from iotsupport.images.convert import bands

MAGIC = 0x19
HEADER = struct.Struct("<BBHHHHH")
# Sides above this never fit an ESP32 display, and keep every stride within u16.
MAX_SIDE = 4096


class ColorFormat(StrEnum):
    ARGB8888 = "ARGB8888"
    RGB565 = "RGB565"
    RGB565A8 = "RGB565A8"
    RGB888 = "RGB888"

    @property
    def code(self) -> int:
        """The `lv_color_format_t` value written into the header."""
        return _CODES[self]

    @property
    def bytes_per_pixel(self) -> int:
        """Bytes of the first (color) plane per pixel; the stride is width times this."""
        return _BYTES_PER_PIXEL[self]


_CODES = {
    ColorFormat.RGB888: 0x0F,
    ColorFormat.ARGB8888: 0x10,
    ColorFormat.RGB565: 0x12,
    ColorFormat.RGB565A8: 0x14,
}
_BYTES_PER_PIXEL = {
    ColorFormat.RGB888: 3,
    ColorFormat.ARGB8888: 4,
    ColorFormat.RGB565: 2,
    ColorFormat.RGB565A8: 2,
}


def _rounded(levels: int) -> list[int]:
    """A lookup table from 8 bits to `levels` steps, rounded to the nearest step."""
    top = levels - 1
    return [(value * top + 127) // 255 for value in range(256)]


_FIVE_BITS = _rounded(32)
_SIX_BITS = _rounded(64)
# RGB565 as two byte planes built with per-channel lookup tables (all in Pillow's C
# code): low byte = green's low 3 bits << 5 | blue; high byte = red << 3 | green >> 3.
# The bit fields never overlap, so adding the partial bytes is the same as OR-ing them.
_LOW_FROM_GREEN = [(six & 0x07) << 5 for six in _SIX_BITS]
_LOW_FROM_BLUE = _FIVE_BITS
_HIGH_FROM_RED = [five << 3 for five in _FIVE_BITS]
_HIGH_FROM_GREEN = [six >> 3 for six in _SIX_BITS]


def rgb565_bytes(image: Image.Image) -> bytes:
    """The RGB565 plane of an RGB image: two bytes per pixel, little-endian."""
    red, green, blue = image.split()
    low = ImageChops.add(green.point(_LOW_FROM_GREEN), blue.point(_LOW_FROM_BLUE))
    high = ImageChops.add(red.point(_HIGH_FROM_RED), green.point(_HIGH_FROM_GREEN))
    return Image.merge("LA", (low, high)).tobytes()


def header(color_format: ColorFormat, width: int, height: int) -> bytes:
    stride = width * color_format.bytes_per_pixel
    return HEADER.pack(MAGIC, color_format.code, 0, width, height, stride, 0)


def _on_black(band: Image.Image) -> Image.Image:
    """Opaque: transparent parts composited onto black (the usual display background)."""
    if band.mode != "RGBA":
        return band
    background = Image.new("RGBA", band.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, band).convert("RGB")


def _color_plane(band: Image.Image, color_format: ColorFormat) -> bytes:
    if color_format is ColorFormat.ARGB8888:
        return band.convert("RGBA").tobytes("raw", "BGRA")
    if color_format is ColorFormat.RGB888:
        return _on_black(band).convert("RGB").tobytes("raw", "BGR")
    if color_format is ColorFormat.RGB565:
        return rgb565_bytes(_on_black(band).convert("RGB"))
    return rgb565_bytes(band.convert("RGB"))  # RGB565A8: the colors as they are


def encode_parts(image: Image.Image, color_format: ColorFormat) -> list[bytes]:
    """The LVGL v9 image file of `image` (mode RGB or RGBA), as consecutive chunks.

    Encoded a band of rows at a time, so the only full-size buffer it adds is the
    file itself. The opaque formats (RGB888, RGB565) composite transparent parts
    onto black.
    """
    width, height = image.size
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise ValueError(f"{width}x{height} does not fit an LVGL image")
    parts = [header(color_format, width, height)]
    for _top, band in bands(image):
        parts.append(_color_plane(band, color_format))
    if color_format is ColorFormat.RGB565A8:  # then the alpha plane, one byte per pixel
        if image.mode == "RGBA":
            parts.extend(band.getchannel("A").tobytes() for _top, band in bands(image))
        else:
            parts.append(b"\xff" * (width * height))
    return parts


def encode(image: Image.Image, color_format: ColorFormat) -> bytes:
    """The LVGL v9 image file of `image` (mode RGB or RGBA) in one piece."""
    return b"".join(encode_parts(image, color_format))
