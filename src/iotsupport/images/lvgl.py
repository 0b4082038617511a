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


def encode(image: Image.Image, color_format: ColorFormat) -> bytes:
    """The LVGL v9 image file of `image` (mode RGB or RGBA).

    The opaque formats (RGB888, RGB565) take the color channels as they are: a
    caller with a transparent image composites it onto a background first.
    """
    width, height = image.size
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise ValueError(f"{width}x{height} does not fit an LVGL image")
    if color_format is ColorFormat.ARGB8888:
        pixels = image.convert("RGBA").tobytes("raw", "BGRA")
    elif color_format is ColorFormat.RGB888:
        pixels = image.convert("RGB").tobytes("raw", "BGR")
    elif color_format is ColorFormat.RGB565:
        pixels = rgb565_bytes(image.convert("RGB"))
    else:
        alpha = image.getchannel("A") if image.mode == "RGBA" else None
        pixels = rgb565_bytes(image.convert("RGB"))
        pixels += alpha.tobytes() if alpha is not None else b"\xff" * (width * height)
    return header(color_format, width, height) + pixels
