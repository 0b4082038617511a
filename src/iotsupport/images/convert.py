"""From downloaded bytes to a fitted, upright RGB or RGBA image, with Pillow.

JPEG, PNG, GIF (first frame), WebP (first frame) and BMP are read. The image
is turned upright by its EXIF orientation and shrunk to fit the box with
Lanczos (never enlarged). A JPEG is first decoded at a reduced scale
(Pillow's `draft`) that still leaves at least REDUCING_GAP times the final
size, the same two-step approach as Pillow's `thumbnail`, so a camera
snapshot does not pay for a full-size decode.
"""

from __future__ import annotations

import io
import typing as t

from PIL import Image
from PIL import ImageOps
from PIL import UnidentifiedImageError

from iotsupport.errors import UnprocessableImage

FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
REDUCING_GAP = 3.0  # Pillow: from 3.0 on, indistinguishable from a full-size resample
_SWAPS_AXES = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def fit(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The largest size within `box` with the aspect ratio of `size`, never larger."""
    width, height = size
    scale = min(box[0] / width, box[1] / height)
    if scale >= 1:
        return size
    return max(1, round(width * scale)), max(1, round(height * scale))


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise UnprocessableImage(
            f"the URL did not return an image in a supported format ({', '.join(FORMATS)})",
            {"reason": "not_an_image"},
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(max_pixels) from None
    if image.width * image.height > max_pixels:
        raise _too_many_pixels(max_pixels)
    return image


def _too_many_pixels(max_pixels: int) -> UnprocessableImage:
    return UnprocessableImage(
        f"the image has more than {max_pixels} pixels (decompression bomb guard)",
        {"reason": "too_many_pixels", "max_pixels": max_pixels},
    )


def _orientation(image: Image.Image) -> int:
    value: t.Any = image.getexif().get(0x0112, 1)
    return value if isinstance(value, int) else 1


def fitted_image(data: bytes, box: tuple[int, int], max_pixels: int) -> Image.Image:
    """The image in `data`, upright, in mode RGBA (when it has transparency) or RGB."""
    image = _open(data, max_pixels)
    try:
        swapped = _orientation(image) in _SWAPS_AXES
        upright = (image.height, image.width) if swapped else image.size
        target = fit(upright, box)
        if image.format == "JPEG":
            # The reader works in the stored orientation, so the request is turned too.
            wanted = (round(target[0] * REDUCING_GAP), round(target[1] * REDUCING_GAP))
            image.draft("RGB", (wanted[1], wanted[0]) if swapped else wanted)
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError):
        raise UnprocessableImage(
            "the image data is damaged or incomplete", {"reason": "damaged"}
        ) from None
    ImageOps.exif_transpose(image, in_place=True)
    has_alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
    image = image.convert("RGBA" if has_alpha else "RGB")
    if image.size != target:
        image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    return image


def on_black(image: Image.Image) -> Image.Image:
    """An opaque copy: transparent parts composited onto black (the usual display background)."""
    if image.mode != "RGBA":
        return image
    background = Image.new("RGBA", image.size, (0, 0, 0, 255))
    return Image.alpha_composite(background, image).convert("RGB")
