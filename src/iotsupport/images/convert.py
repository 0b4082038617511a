"""From downloaded bytes to a fitted, upright RGB or RGBA image, with Pillow.

JPEG, PNG, GIF (first frame), WebP (first frame) and BMP are read. The image
is shrunk to fit the box with Lanczos (never enlarged) and turned upright by
its EXIF orientation. A JPEG is first decoded at a reduced scale (Pillow's
`draft`) that still leaves at least REDUCING_GAP times the final size, the
same two-step approach as Pillow's `thumbnail`, so a camera snapshot does not
pay for a full-size decode.

Memory: before Pillow sees the data, its header says what the decoder will
hold (budget.py: a progressive JPEG's coefficients, WebP's canvases, ...), and
more than 8 bytes per pixel of the pixel limit is refused; the pixel limit
itself counts the pixels that will really be decoded (a JPEG after `draft`).
Once decoded, only the pixels are kept (the decoder and its buffers go), the
mode conversion and the integer reduction that precede the Lanczos pass run a
band of rows at a time, with the same result as Pillow's `resize(...,
reducing_gap=3)` on the whole image, and the image is turned only once it is
small.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import math
import typing as t

from PIL import Image
from PIL import UnidentifiedImageError

from iotsupport.errors import UnprocessableImage
from iotsupport.images import budget

FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
REDUCING_GAP = 3.0  # Pillow: from 3.0 on, indistinguishable from a full-size resample
# EXIF orientation -> the turn that makes the image upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = {5, 6, 7, 8}  # the orientations that turn by 90 degrees
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_BAND_PIXELS = 1 << 20  # pixels per band of the banded conversion
_DAMAGED = (OSError, SyntaxError, ValueError, EOFError)


def fit(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The largest size within `box` with the aspect ratio of `size`, never larger."""
    width, height = size
    scale = min(box[0] / width, box[1] / height)
    if scale >= 1:
        return size
    return max(1, round(width * scale)), max(1, round(height * scale))


def _not_an_image() -> UnprocessableImage:
    return UnprocessableImage(
        f"the URL did not return an image in a supported format ({', '.join(FORMATS)})",
        {"reason": "not_an_image"},
    )


def _header(data: io.BytesIO, max_pixels: int) -> budget.Header:
    """The header, read before Pillow opens anything (opening a WebP already allocates
    its canvases); refused when the decoder alone would exceed the limit."""
    with data.getbuffer() as view:
        try:
            header = budget.sniff(view)
        except budget.Unsupported as exc:
            raise UnprocessableImage(
                f"this kind of image is not supported ({exc})", {"reason": "unsupported"}
            ) from None
        except ValueError:
            raise _damaged() from None
    if header is None:
        raise _not_an_image()
    if not header.reducible and header.pixels > max_pixels:
        raise _too_many_pixels(max_pixels)
    # Pillow reads some formats' extras at open (a PNG's text chunks, a WebP's canvases):
    # counted here at the largest image mode, since the mode is not known before opening.
    needed = header.held if header.reducible else header.peak(header.size, "RGBA")
    if needed > _byte_limit(max_pixels):
        raise _too_much_memory(needed, max_pixels)
    return header


def _open(data: io.BytesIO, header: budget.Header, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(data, formats=FORMATS)
    except UnidentifiedImageError:
        raise _not_an_image() from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_many_pixels(max_pixels) from None
    except _DAMAGED:
        raise _damaged() from None
    # What Pillow read must be what the header said (an MPO is a JPEG's first picture).
    kind = "JPEG" if image.format == "MPO" else image.format
    if kind != header.format or (not header.reducible and image.size != header.size):
        image.close()
        raise _damaged()
    return image


def _byte_limit(max_pixels: int) -> int:
    return budget.BYTES_PER_PIXEL_LIMIT * max_pixels


def _too_much_memory(needed: int, max_pixels: int) -> UnprocessableImage:
    limit = _byte_limit(max_pixels)
    return UnprocessableImage(
        f"decoding this image would take about {_mib(needed)} MiB, more than the "
        f"{_mib(limit)} MiB one conversion may use (8 bytes per pixel of "
        "IMAGE_PROXY_MAX_PIXELS)",
        {"reason": "too_much_memory", "needed_bytes": needed, "limit_bytes": limit},
    )


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f}"


def _too_many_pixels(max_pixels: int) -> UnprocessableImage:
    return UnprocessableImage(
        f"the image has more than {max_pixels} pixels (IMAGE_PROXY_MAX_PIXELS)",
        {"reason": "too_many_pixels", "max_pixels": max_pixels},
    )


def _damaged() -> UnprocessableImage:
    return UnprocessableImage("the image data is damaged or incomplete", {"reason": "damaged"})


def _orientation(image: Image.Image) -> int:
    value: t.Any = image.getexif().get(0x0112, 1)
    return value if isinstance(value, int) else 1


def fitted_image(data: io.BytesIO, box: tuple[int, int], max_pixels: int) -> Image.Image:
    """The image in `data`, upright, in mode RGBA (when it has transparency) or RGB.

    What the decoder holds is bounded from the header (budget.py); after decoding,
    at most two full-size buffers exist at any time (the decoded image and its
    converted copy, or that copy and the result): no more than 8 bytes per pixel
    of `max_pixels` in all.
    """
    header = _header(data, max_pixels)
    image = _open(data, header, max_pixels)
    try:
        # Only a JPEG can be decoded smaller than its header says; the others are checked
        # before the orientation, since reading a PNG's EXIF can decode the whole image.
        if not header.reducible:
            _check_peak(header, image, max_pixels)
        orientation = _orientation(image)
        swapped = orientation in _SWAPS_AXES
        upright = fit((image.height, image.width) if swapped else image.size, box)
        # The reader works in the stored orientation, so the target is turned too.
        target = (upright[1], upright[0]) if swapped else upright
        if image.format == "JPEG":
            wanted = (round(target[0] * REDUCING_GAP), round(target[1] * REDUCING_GAP))
            image.draft("RGB", wanted)
        _check_peak(header, image, max_pixels)
        image.load()
        mode = "RGBA" if image.mode in _ALPHA_MODES or "transparency" in image.info else "RGB"
        # Only the pixels from here on: the decoder (WebP's canvases, a GIF's disposal
        # buffer, the copy of the file) goes with the file object.
        owned = [image._new(image.im)]
        image.close()
        del image
        fitted = _shrunk(owned, target, mode)
    except _DAMAGED:  # broken data, or a mode Pillow cannot convert
        raise _damaged() from None
    turn = _UPRIGHT.get(orientation)
    return fitted.transpose(turn) if turn is not None else fitted


def _check_peak(header: budget.Header, image: Image.Image, max_pixels: int) -> None:
    """Refuse what decoding `image` as it stands (after any draft) would exceed."""
    if image.width * image.height > max_pixels:
        raise _too_many_pixels(max_pixels)
    peak = header.peak(image.size, image.mode)
    if peak > _byte_limit(max_pixels):
        raise _too_much_memory(peak, max_pixels)


def _shrunk(owned: list[Image.Image], size: tuple[int, int], mode: str) -> Image.Image:
    """The image in `owned` (which this empties, so the decoded pixels can be freed
    early) in `mode`, resized to `size` exactly as Pillow's resize with reducing_gap.

    RGBA is resampled premultiplied (RGBa), as Pillow does; the full-size mode
    conversion and the integer box reduction run one band of rows at a time.
    """
    image = owned.pop()
    if image.size == size:
        return _converted(image, mode)
    work_mode = "RGBa" if mode == "RGBA" else "RGB"
    width, height = image.size
    factor = (
        int(width / size[0] / REDUCING_GAP) or 1,
        int(height / size[1] / REDUCING_GAP) or 1,
    )
    if factor == (1, 1):
        work = _converted(image, work_mode)
        box = (0.0, 0.0, float(width), float(height))
    else:
        work = _reduced_in_bands(image, work_mode, factor)
        box = (0.0, 0.0, width / factor[0], height / factor[1])
    del image
    resized = work.resize(size, Image.Resampling.LANCZOS, box=box)
    del work
    return _converted(resized, mode)


def _in_mode(band: Image.Image, mode: str) -> Image.Image:
    if band.mode == mode:
        return band
    if mode == "RGBa" and band.mode != "RGBA":
        band = band.convert("RGBA")
    return band.convert(mode)


def _converted(image: Image.Image, mode: str) -> Image.Image:
    """`image.convert(mode)`, a band at a time (no second full-size intermediate)."""
    if image.mode == mode:
        return image
    result = Image.new(mode, image.size)
    for top, band in bands(image):
        result.paste(_in_mode(band, mode), (0, top))
    return result


def _reduced_in_bands(image: Image.Image, mode: str, factor: tuple[int, int]) -> Image.Image:
    """`image.convert(mode).reduce(factor)`, without a full-size converted copy."""
    width, height = image.size
    result = Image.new(mode, (math.ceil(width / factor[0]), math.ceil(height / factor[1])))
    for top, band in bands(image, factor[1]):
        result.paste(_in_mode(band, mode).reduce(factor), (0, top // factor[1]))
    return result


def bands(image: Image.Image, multiple: int = 1) -> t.Iterator[tuple[int, Image.Image]]:
    """Copies of bands of whole rows, top to bottom; each but the last a multiple of
    `multiple` rows high."""
    width, height = image.size
    rows = max(multiple, _BAND_PIXELS // max(width, 1) // multiple * multiple)
    for top in range(0, height, rows):
        yield top, image.crop((0, top, width, min(height, top + rows)))


def _malloc_trim() -> t.Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    return t.cast(t.Callable[[int], int], trim) if trim is not None else None


_TRIM = _malloc_trim()


def release_memory() -> None:
    """Hand the freed image buffers back to the system (glibc keeps them otherwise)."""
    if _TRIM is not None:
        _TRIM(0)
