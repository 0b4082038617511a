"""A picture cannot take a worker's memory: what the decoder will hold is bounded
from the header, per format and mode, before anything is decoded (issue 20, item 1).

Hostile images are made with Pillow itself. The refusals are checked through the
route; the bound itself is checked in a fresh process, whose peak memory shows
what an admitted worst case really takes and that a refusal takes nothing.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ClientWith
from conftest import assert_error
from flask.testing import FlaskClient
from PIL import Image
from PIL import PngImagePlugin
from pytest_httpserver import HTTPServer

from iotsupport.images import budget

LVGL = "/api/images/lvgl"
MAX_PIXELS = 8_388_608  # the default IMAGE_PROXY_MAX_PIXELS
LIMIT = 8 * MAX_PIXELS  # bytes one conversion may hold: 64 MiB
MIB = 1 << 20


def encoded(image: Image.Image, kind: str, **options: t.Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def flat(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    return Image.new(mode, size, (200, 30, 90, 255)[: len(mode)] if mode != "L" else 77)


def claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """`jpeg` (a real one, from Pillow) with its frame header claiming another size."""
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = jpeg.find(marker)
        if at > 0:
            return jpeg[: at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9 :]
    raise AssertionError("no frame header")


def progressive_13000() -> bytes:
    """The issue's example: a progressive 13000x13000 JPEG of one colour, 4:4:4."""
    small = encoded(flat((64, 64)), "JPEG", progressive=True, subsampling=0)
    return claiming(small, 13000, 13000)


def text_heavy_png() -> bytes:
    """A 4000x1000 PNG with 60 compressed text chunks of 1,000,000 bytes each (~60 KB)."""
    info = PngImagePlugin.PngInfo()
    for number in range(60):
        info.add_text(f"note{number}", "a" * 1_000_000, zip=True)
    return encoded(flat((4000, 1000)), "PNG", pnginfo=info)


def animated_webp(size: tuple[int, int]) -> bytes:
    frames = [Image.new("RGBA", size, (50 * n, 0, 0, 255)) for n in range(3)]
    return encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)


HOSTILE: dict[str, t.Callable[[], bytes]] = {
    "progressive JPEG 13000x13000": progressive_13000,
    "progressive JPEG 4000x4000 4:4:4": lambda: encoded(
        flat((4000, 4000)), "JPEG", progressive=True, subsampling=0
    ),
    "progressive CMYK JPEG 3000x3000": lambda: encoded(
        flat((3000, 3000), "CMYK"), "JPEG", progressive=True
    ),
    "WebP 2500x2500": lambda: encoded(flat((2500, 2500)), "WEBP", lossless=True),
    "animated WebP 2200x2200": lambda: animated_webp((2200, 2200)),
    "PNG with 60 MB of compressed text": text_heavy_png,
}


@pytest.fixture
def upstream(httpserver_ipv4: HTTPServer) -> Iterator[HTTPServer]:
    yield httpserver_ipv4
    httpserver_ipv4.clear()


@pytest.fixture
def client(client_with: ClientWith, upstream: HTTPServer) -> FlaskClient:
    return client_with(image_proxy_allowed_hosts=f"127.0.0.1:{upstream.port}")


@pytest.mark.parametrize("name", list(HOSTILE))
def test_what_the_decoder_would_hold_is_refused_from_the_header(
    client: FlaskClient, upstream: HTTPServer, name: str
) -> None:
    data = HOSTILE[name]()
    assert len(data) < 2 * MIB  # small on the wire, huge in memory
    upstream.expect_request("/hostile").respond_with_data(data, content_type="image/jpeg")
    response = client.get(LVGL, query_string={"url": upstream.url_for("/hostile"), "width": 320})
    body = assert_error(response, 422, "unprocessable_image")
    details = body["details"]
    assert details["reason"] == "too_much_memory"
    assert details["limit_bytes"] == LIMIT
    assert details["needed_bytes"] > LIMIT
    assert "IMAGE_PROXY_MAX_PIXELS" in body["error"] and "MiB" in body["error"]


def test_the_issues_jpeg_needs_its_full_size_coefficients() -> None:
    header = budget.sniff(progressive_13000())
    assert header is not None and header.format == "JPEG"
    # 3 components at full resolution, 1625 x 1625 blocks of 64 two-byte coefficients.
    assert header.held == 3 * 1625 * 1625 * 128


# --- the JPEG kinds Pillow cannot write: headers made by hand ------------------------


def jpeg_header(frame: int, components: list[tuple[int, int]], in_scan: int) -> bytes:
    """SOI, a frame header of type `frame` (0xC0...) for 1000x800, and a first scan
    holding `in_scan` of the components (no tables, no data: the header is all that
    is read)."""
    sof = struct.pack(">BHHB", 8, 800, 1000, len(components))
    for number, (h, v) in enumerate(components, 1):
        sof += bytes((number, h << 4 | v, 0))
    sos = bytes((in_scan,)) + b"".join(bytes((n, 0)) for n in range(1, in_scan + 1)) + b"\0?\0"
    return (
        b"\xff\xd8"
        + b"\xff"
        + bytes((frame,))
        + struct.pack(">H", len(sof) + 2)
        + sof
        + b"\xff\xda"
        + struct.pack(">H", len(sos) + 2)
        + sos
    )


YCBCR_420 = [(2, 2), (1, 1), (1, 1)]
# 1000x800 4:2:0: luma 126x100 blocks rounded to 2x2 MCUs (126x100); chroma 63x50.
COEFFICIENTS_420 = (126 * 100 + 2 * 63 * 50) * 128


@pytest.mark.parametrize(
    ("frame", "in_scan", "held"),
    [
        (0xC0, 3, 0),  # baseline, interleaved: one scan, rows streamed
        (0xC1, 3, 0),  # extended sequential
        (0xC9, 3, 0),  # arithmetic sequential
        (0xC0, 1, COEFFICIENTS_420),  # baseline in one scan per component
        (0xC9, 1, COEFFICIENTS_420),  # the same, arithmetic-coded
        (0xC2, 1, COEFFICIENTS_420),  # progressive
        (0xCA, 1, COEFFICIENTS_420),  # progressive, arithmetic-coded
    ],
)
def test_jpeg_coefficient_buffers_by_kind(frame: int, in_scan: int, held: int) -> None:
    header = budget.sniff(jpeg_header(frame, YCBCR_420, in_scan))
    assert header is not None
    assert (header.width, header.height, header.held) == (1000, 800, held)


@pytest.mark.parametrize("frame", [0xC3, 0xC5, 0xC6, 0xC7, 0xCB, 0xCD, 0xCE, 0xCF])
def test_lossless_and_hierarchical_jpeg_are_refused(
    client: FlaskClient, upstream: HTTPServer, frame: int
) -> None:
    data = jpeg_header(frame, [(1, 1)], 1)
    upstream.expect_request("/odd.jpg").respond_with_data(data, content_type="image/jpeg")
    response = client.get(LVGL, query_string={"url": upstream.url_for("/odd.jpg")})
    body = assert_error(response, 422, "unprocessable_image")
    assert body["details"] == {"reason": "unsupported"}


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xd8\xff\xe0\x00\x10JFIF",  # cut inside a segment
        b"\x89PNG\r\n\x1a\n\x00\x00",
        b"GIF89a\x10\x00",
        b"RIFF\x00\x00\x00\x00WEBPVP8X",
        b"BM\x00\x00",
    ],
    ids=["jpeg", "png", "gif", "webp", "bmp"],
)
def test_a_truncated_header_is_damaged(
    client: FlaskClient, upstream: HTTPServer, data: bytes
) -> None:
    upstream.expect_request("/cut").respond_with_data(data, content_type="image/png")
    response = client.get(LVGL, query_string={"url": upstream.url_for("/cut")})
    body = assert_error(response, 422, "unprocessable_image")
    assert body["details"] == {"reason": "damaged"}


# --- the bound, measured in a fresh process ------------------------------------------

_MEASURE = """
import io, json, sys
from pathlib import Path
from PIL import Image
from iotsupport.errors import UnprocessableImage
from iotsupport.images.convert import fitted_image, release_memory

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

for kind in ("PNG", "JPEG", "GIF", "WEBP", "BMP"):  # load every plugin first
    warm = io.BytesIO()
    Image.new("RGB", (64, 64)).save(warm, kind)
    warm.seek(0)
    fitted_image(warm, (8, 8), 1 << 20)
body = io.BytesIO()
body.write(Path(sys.argv[1]).read_bytes())  # as the fetcher builds it
body.seek(0)
release_memory()
Path("/proc/self/clear_refs").write_text("5")  # the peak starts again from here
before = status("VmRSS")
try:
    outcome = "%dx%d" % fitted_image(body, (320, 240), int(sys.argv[2])).size
except UnprocessableImage as exc:
    outcome = exc.details["reason"]
peak = status("VmHWM")
print(json.dumps({"outcome": outcome, "growth": peak - before}))
"""


def interlaced_png(size: tuple[int, int]) -> bytes:
    """Pillow writes no interlaced PNG: an Adam7 one of one colour, by hand."""
    import zlib

    width, height = size
    raw = bytearray()
    for left, top, step_x, step_y in (
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ):
        columns = (width - left + step_x - 1) // step_x
        rows = (height - top + step_y - 1) // step_y
        if columns and rows:
            raw += (b"\0" + bytes((200, 30, 90)) * columns) * rows

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(raw), 9))
        + chunk(b"IEND", b"")
    )


def gif_with_disposal(size: tuple[int, int]) -> bytes:
    frames = [Image.new("P", size, number) for number in range(2)]
    return encoded(
        frames[0], "GIF", save_all=True, append_images=frames[1:], disposal=2, transparency=0
    )


# The largest of each kind the default limits admit, and the issue's refused JPEG.
ADMITTED: dict[str, t.Callable[[], bytes]] = {
    "progressive JPEG 4400x4400 4:2:0": lambda: encoded(
        flat((4400, 4400)), "JPEG", progressive=True, subsampling=2
    ),
    "RGBA PNG 4096x2048": lambda: encoded(flat((4096, 2048), "RGBA"), "PNG", compress_level=1),
    "interlaced PNG 4096x2048": lambda: interlaced_png((4096, 2048)),
    "GIF 4096x2048, disposal 2": lambda: gif_with_disposal((4096, 2048)),
    "WebP 2000x2000": lambda: encoded(flat((2000, 2000)), "WEBP", lossless=True),
}


def measured(path: Path) -> dict[str, t.Any]:
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), str(MAX_PIXELS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, t.Any] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("name", list(ADMITTED))
def test_an_admitted_worst_case_stays_within_the_bound(tmp_path: Path, name: str) -> None:
    path = tmp_path / "image"
    path.write_bytes(ADMITTED[name]())
    result = measured(path)
    assert result["outcome"] != "too_much_memory"
    # The bound, plus what does not grow with the image (row bands, libjpeg's tables).
    assert result["growth"] < LIMIT + 24 * MIB, result["growth"] / MIB


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_refusal_costs_nothing(tmp_path: Path, name: str) -> None:
    path = tmp_path / "image"
    path.write_bytes(HOSTILE[name]())
    result = measured(path)
    assert result["outcome"] == "too_much_memory"
    # Refused before Pillow allocates (the issue's JPEG took ~1 GB; the PNG's text, 60 MB).
    assert result["growth"] < 8 * MIB, result["growth"] / MIB
