"""The LVGL image proxy, end to end: real images served over real HTTP, checked with lvglimg.

lvglimg (PyPI) is an independent decoder of LVGL .bin files. Its RGB565 expansion
to 8 bits (`v | v << (8 - bits)`, the same as LVGL's own LVGLImage.py) is not plain
bit replication, so RGB565 pixels are compared with the two levels nearest to the
reference value, expanded by lvglimg's own function.
"""

from __future__ import annotations

import io
import math
import struct
import threading
import time
import typing as t
import zlib
from collections.abc import Callable
from collections.abc import Iterator

import pytest
from conftest import ClientWith
from conftest import assert_error
from conftest import free_port
from conftest import make_settings
from flask.testing import FlaskClient
from lvglimg.decoder import _bit_extend
from lvglimg.decoder import decode
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFile
from PIL import ImageOps
from pytest_httpserver import HTTPServer
from werkzeug import Request
from werkzeug import Response
from werkzeug.test import TestResponse

from iotsupport.images import lvgl
from iotsupport.images.convert import fitted_image
from iotsupport.settings import Settings

LVGL = "/api/images/lvgl"
COLOR_CODES = {"ARGB8888": 0x10, "RGB565": 0x12, "RGB565A8": 0x14, "RGB888": 0x0F}
BYTES_PER_PIXEL = {"ARGB8888": 4, "RGB565": 2, "RGB565A8": 2, "RGB888": 3}


# --- images made here ------------------------------------------------------------


def picture(size: tuple[int, int]) -> Image.Image:
    """Gradients with sharp shapes, so that resampling differences would show."""
    width, height = size
    red = Image.linear_gradient("L").resize(size)
    green = Image.radial_gradient("L").resize(size)
    blue = Image.linear_gradient("L").rotate(90).resize(size)
    image = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(image)
    for step in range(12):
        x, y = width * step // 12, height * ((step * 5) % 12) // 12
        draw.ellipse((x, y, x + width // 10, y + height // 8), fill=(255, 255 - step * 20, 0))
        draw.line((0, y, width, height - y), fill=(0, 0, 255), width=3)
    return image


def encoded(image: Image.Image, kind: str, **options: t.Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def full_hd_jpeg() -> bytes:
    return encoded(picture((1920, 1080)), "JPEG", quality=90)


@pytest.fixture(scope="module")
def translucent_png() -> bytes:
    image = picture((300, 200)).convert("RGBA")
    alpha = Image.linear_gradient("L").rotate(90).resize((300, 200))
    ImageDraw.Draw(alpha).rectangle((0, 0, 60, 200), fill=0)  # a fully transparent band
    image.putalpha(alpha)
    return encoded(image, "PNG")


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge image (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# --- what Pillow itself makes of the same image ------------------------------------


def pillow_reference(data: bytes, size: tuple[int, int]) -> Image.Image:
    """Pillow's resize of `data` to `size`, as the proxy documents it.

    Like Pillow's own thumbnail(): a JPEG is decoded with draft() at no less than
    3x the final size, then Lanczos with reducing_gap=3.
    """
    opened = Image.open(io.BytesIO(data))
    if opened.format == "JPEG":
        opened.draft("RGB", (size[0] * 3, size[1] * 3))
    image = ImageOps.exif_transpose(opened)
    has_alpha = image.mode in ("RGBA", "LA", "P") and (
        image.mode != "P" or "transparency" in image.info
    )
    image = image.convert("RGBA" if has_alpha else "RGB")
    if image.size != size:
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return image


def on_black(image: Image.Image) -> Image.Image:
    black = Image.new("RGBA", image.size, (0, 0, 0, 255))
    return Image.alpha_composite(black, image.convert("RGBA")).convert("RGB")


def nearest_levels(value: int, bits: int) -> set[int]:
    """The two `bits`-bit levels around an 8-bit value, as lvglimg expands them."""
    exact = value * ((1 << bits) - 1) / 255
    return {_bit_extend(math.floor(exact), bits), _bit_extend(math.ceil(exact), bits)}


def assert_rgb565_close(decoded: Image.Image, reference: Image.Image) -> None:
    assert decoded.size == reference.size
    got = decoded.convert("RGB").tobytes()
    want = reference.convert("RGB").tobytes()
    bits = (5, 6, 5)
    misses = [
        index
        for index, (value, expected) in enumerate(zip(got, want, strict=True))
        if value not in nearest_levels(expected, bits[index % 3])
    ]
    assert misses == [], f"{len(misses)} channel values off by more than rounding"


def lvgl_header(data: bytes) -> dict[str, int]:
    magic, color, flags, width, height, stride, reserved = struct.unpack_from("<BBHHHHH", data)
    return {
        "magic": magic,
        "cf": color,
        "flags": flags,
        "w": width,
        "h": height,
        "stride": stride,
        "reserved": reserved,
    }


def assert_lvgl(response: TestResponse, color_format: str, size: tuple[int, int]) -> Image.Image:
    """The response is an LVGL v9 file of `size` in `color_format`; returns it decoded."""
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.mimetype == "application/octet-stream"
    assert response.headers["Cache-Control"] == "no-store"
    assert (int(response.headers["X-Image-Width"]), int(response.headers["X-Image-Height"])) == size
    data = response.get_data()
    width, height = size
    stride = width * BYTES_PER_PIXEL[color_format]
    assert lvgl_header(data) == {
        "magic": 0x19,
        "cf": COLOR_CODES[color_format],
        "flags": 0,
        "w": width,
        "h": height,
        "stride": stride,
        "reserved": 0,
    }
    alpha_plane = width * height if color_format == "RGB565A8" else 0
    assert len(data) == 12 + stride * height + alpha_plane
    image: Image.Image = decode(data)
    assert image.size == size
    return image


# --- fixtures: an upstream server and apps with chosen settings ----------------------


@pytest.fixture
def upstream(httpserver_ipv4: HTTPServer) -> Iterator[HTTPServer]:
    """A real HTTP server on 127.0.0.1 (pytest-httpserver), emptied after each test."""
    yield httpserver_ipv4
    httpserver_ipv4.clear()


def local_upstream(server: HTTPServer) -> str:
    """The allowlist entry for the test's upstream: loopback is refused unless named."""
    return f"127.0.0.1:{server.port}"


@pytest.fixture
def settings(database_url: str, httpserver_ipv4: HTTPServer) -> Settings:
    return make_settings(database_url, image_proxy_allowed_hosts=local_upstream(httpserver_ipv4))


AppFactory = Callable[..., FlaskClient]


@pytest.fixture
def proxy(client_with: ClientWith, httpserver_ipv4: HTTPServer) -> AppFactory:
    """Build a client for an app with some image proxy settings changed."""

    def build(**overrides: t.Any) -> FlaskClient:
        overrides.setdefault("image_proxy_allowed_hosts", local_upstream(httpserver_ipv4))
        return client_with(**overrides)

    return build


def serve(upstream: HTTPServer, path: str, data: bytes, content_type: str = "image/jpeg") -> str:
    upstream.expect_request(path).respond_with_data(data, content_type=content_type)
    return upstream.url_for(path)


def get(client: FlaskClient, url: str, **query: t.Any) -> TestResponse:
    return client.get(LVGL, query_string={"url": url, **query})


# --- output and quality ------------------------------------------------------------


def test_full_hd_jpeg_as_argb8888_is_pillows_resize_exactly(
    client: FlaskClient, upstream: HTTPServer, full_hd_jpeg: bytes
) -> None:
    url = serve(upstream, "/snapshot.jpg", full_hd_jpeg)
    response = get(client, url, width=320, height=240)
    image = assert_lvgl(response, "ARGB8888", (320, 180))
    reference = pillow_reference(full_hd_jpeg, (320, 180)).convert("RGBA")
    assert image.convert("RGBA").tobytes() == reference.tobytes()
    # ARGB8888 is B, G, R, A in memory.
    first = reference.getpixel((0, 0))
    assert isinstance(first, tuple)
    assert response.get_data()[12:16] == bytes((first[2], first[1], first[0], 255))


@pytest.mark.parametrize("color_format", ["RGB565", "rgb565"])
def test_full_hd_jpeg_as_rgb565_is_within_rounding(
    client: FlaskClient, upstream: HTTPServer, full_hd_jpeg: bytes, color_format: str
) -> None:
    url = serve(upstream, "/snapshot.jpg", full_hd_jpeg)
    response = get(client, url, width=320, height=240, format=color_format)
    image = assert_lvgl(response, "RGB565", (320, 180))
    assert_rgb565_close(image, pillow_reference(full_hd_jpeg, (320, 180)))


def test_rgb888_is_exact(client: FlaskClient, upstream: HTTPServer, full_hd_jpeg: bytes) -> None:
    url = serve(upstream, "/snapshot.jpg", full_hd_jpeg)
    image = assert_lvgl(get(client, url, width=160, format="RGB888"), "RGB888", (160, 90))
    assert image.tobytes() == pillow_reference(full_hd_jpeg, (160, 90)).tobytes()


def test_4000_by_3000_jpeg(client: FlaskClient, upstream: HTTPServer) -> None:
    photo = encoded(picture((4000, 3000)), "JPEG", quality=85)
    url = serve(upstream, "/photo.jpg", photo)
    image = assert_lvgl(get(client, url, width=320, height=240), "ARGB8888", (320, 240))
    reference = pillow_reference(photo, (320, 240)).convert("RGBA")
    assert image.convert("RGBA").tobytes() == reference.tobytes()


def test_png_with_alpha_keeps_its_transparency(
    client: FlaskClient, upstream: HTTPServer, translucent_png: bytes
) -> None:
    url = serve(upstream, "/icon.png", translucent_png, "image/png")
    reference = pillow_reference(translucent_png, (150, 100))
    assert reference.mode == "RGBA"

    argb = assert_lvgl(get(client, url, width=150), "ARGB8888", (150, 100))
    assert argb.tobytes() == reference.tobytes()
    assert argb.getchannel("A").getpixel((5, 50)) == 0

    response = get(client, url, width=150, format="RGB565A8")
    planes = assert_lvgl(response, "RGB565A8", (150, 100))
    # The A8 plane follows the whole RGB565 plane and carries the alpha unchanged.
    alpha_plane = response.get_data()[12 + 150 * 2 * 100 :]
    assert alpha_plane == reference.getchannel("A").tobytes()
    assert planes.getchannel("A").tobytes() == alpha_plane
    assert_rgb565_close(planes.convert("RGB"), reference.convert("RGB"))

    # The opaque formats composite onto black.
    opaque = assert_lvgl(get(client, url, width=150, format="RGB565"), "RGB565", (150, 100))
    assert_rgb565_close(opaque, on_black(reference))
    assert opaque.getpixel((5, 50)) == (0, 0, 0)


def test_a_1x1_image_is_never_enlarged(client: FlaskClient, upstream: HTTPServer) -> None:
    dot = encoded(Image.new("RGBA", (1, 1), (10, 20, 30, 40)), "PNG")
    url = serve(upstream, "/dot.png", dot, "image/png")
    image = assert_lvgl(get(client, url, width=320, height=240), "ARGB8888", (1, 1))
    assert image.getpixel((0, 0)) == (10, 20, 30, 40)
    assert_lvgl(get(client, url), "ARGB8888", (1, 1))


@pytest.mark.parametrize(
    ("query", "size"),
    [
        ({"width": 100}, (100, 50)),
        ({"height": 10}, (20, 10)),
        ({"width": 100, "height": 10}, (20, 10)),
        ({"width": 1, "height": 1}, (1, 1)),
        ({}, (400, 200)),
    ],
)
def test_fits_within_width_and_or_height(
    client: FlaskClient, upstream: HTTPServer, query: dict[str, int], size: tuple[int, int]
) -> None:
    url = serve(upstream, "/wide.png", encoded(picture((400, 200)), "PNG"), "image/png")
    assert_lvgl(get(client, url, **query), "ARGB8888", size)


def test_exif_orientation_is_honoured(client: FlaskClient, upstream: HTTPServer) -> None:
    # Large enough that the JPEG is decoded at a quarter scale before it is turned.
    stored = Image.new("RGB", (1600, 800), (255, 0, 0))
    ImageDraw.Draw(stored).rectangle((800, 0, 1600, 800), fill=(0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: left (red) goes to the top
    photo = encoded(stored, "JPEG", exif=exif, quality=95)
    url = serve(upstream, "/rotated.jpg", photo)
    image = assert_lvgl(get(client, url, width=100, height=100), "ARGB8888", (50, 100))
    top, bottom = image.getpixel((25, 10)), image.getpixel((25, 90))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 50
    assert bottom[2] > 200 and bottom[0] < 50


def test_gif_first_frame_with_transparency(client: FlaskClient, upstream: HTTPServer) -> None:
    first = Image.new("RGBA", (40, 40), (0, 200, 0, 255))
    ImageDraw.Draw(first).rectangle((0, 0, 19, 39), fill=(0, 0, 0, 0))
    second = Image.new("RGBA", (40, 40), (200, 0, 0, 255))
    animation = encoded(first, "GIF", save_all=True, append_images=[second], disposal=2)
    url = serve(upstream, "/anim.gif", animation, "image/gif")
    image = assert_lvgl(get(client, url), "ARGB8888", (40, 40))
    assert image.getchannel("A").getpixel((5, 5)) == 0
    assert image.getpixel((30, 5)) == (0, 200, 0, 255)


@pytest.mark.parametrize(("kind", "mode", "alpha"), [("WEBP", "RGBA", True), ("BMP", "RGB", False)])
def test_webp_and_bmp(
    client: FlaskClient, upstream: HTTPServer, kind: str, mode: str, alpha: bool
) -> None:
    source = Image.new(mode, (64, 32), (10, 100, 200, 128) if alpha else (10, 100, 200))
    options = {"lossless": True} if kind == "WEBP" else {}
    data = encoded(source, kind, **options)
    url = serve(upstream, f"/image.{kind.lower()}", data)
    image = assert_lvgl(get(client, url, width=32), "ARGB8888", (32, 16))
    assert image.tobytes() == pillow_reference(data, (32, 16)).convert("RGBA").tobytes()
    assert image.getchannel("A").getpixel((16, 8)) == (128 if alpha else 255)


# --- refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"url": "ftp://example.com/a.png"},
        {"url": "http://"},
        {"url": "not a url"},
        {"url": "http://127.0.0.1/a.png", "format": "BGR233"},
        {"url": "http://127.0.0.1/a.png", "width": "0"},
        {"url": "http://127.0.0.1/a.png", "height": "4097"},
        {"url": "http://127.0.0.1/a.png", "width": "wide"},
        {"url": "http://127.0.0.1/a.png", "headers": "Host"},
        {"url": "http://127.0.0.1/a.png", "headers": "Bad Name"},
        {"url": "http://127.0.0.1/a.png", "unknown": "1"},
    ],
)
def test_bad_queries_are_400(client: FlaskClient, query: dict[str, str]) -> None:
    assert_error(client.get(LVGL, query_string=query), 400)


def test_a_named_header_that_is_missing_is_400_naming_it(
    client: FlaskClient, upstream: HTTPServer
) -> None:
    url = serve(upstream, "/a.png", encoded(Image.new("RGB", (2, 2)), "PNG"))
    body = assert_error(get(client, url, headers="Authorization"), 400, "invalid_input")
    assert "Authorization" in body["error"]
    assert body["details"] == {"header": "Authorization"}
    assert upstream.log == []


def test_named_headers_are_forwarded(client: FlaskClient, upstream: HTTPServer) -> None:
    image = encoded(Image.new("RGB", (2, 2)), "PNG")
    upstream.expect_request(
        "/camera", headers={"Authorization": "Bearer ha-token", "Accept": "image/png"}
    ).respond_with_data(image)
    response = client.get(
        LVGL,
        query_string={"url": upstream.url_for("/camera"), "headers": "authorization, ACCEPT"},
        headers={"Authorization": "Bearer ha-token", "Accept": "image/png", "X-Private": "no"},
    )
    assert_lvgl(response, "ARGB8888", (2, 2))
    ((request, _),) = upstream.log
    assert request.headers["Authorization"] == "Bearer ha-token"
    assert request.headers["Accept"] == "image/png"
    assert "X-Private" not in request.headers


def test_upstream_non_2xx_is_502(client: FlaskClient, upstream: HTTPServer) -> None:
    upstream.expect_request("/gone.png").respond_with_data("no", status=404)
    body = assert_error(get(client, upstream.url_for("/gone.png")), 502, "upstream_failed")
    assert body["details"] == {"reason": "status", "status": 404}
    assert "404" in body["error"]


def test_unreachable_upstream_is_502(proxy: AppFactory) -> None:
    closed = free_port()
    client = proxy(image_proxy_allowed_hosts=f"127.0.0.1:{closed}")
    body = assert_error(get(client, f"http://127.0.0.1:{closed}/a.png"), 502)
    assert body["details"] == {"reason": "unreachable"}


def test_slow_upstream_is_502_after_the_total_timeout(
    proxy: AppFactory, upstream: HTTPServer
) -> None:
    def silent(request: Request) -> Response:
        time.sleep(1.0)
        return Response(b"late")

    def trickle(request: Request) -> Response:
        def body() -> Iterator[bytes]:
            for _ in range(10):
                time.sleep(0.1)
                yield b"x" * 100

        return Response(body())

    upstream.expect_request("/silent.png").respond_with_handler(silent)
    upstream.expect_request("/trickle.png").respond_with_handler(trickle)
    client = proxy(image_proxy_timeout_seconds=0.3)
    # An answer whose body is too slow: the deadline is named.
    body = assert_error(get(client, upstream.url_for("/trickle.png")), 502)
    assert body["details"] == {"reason": "timeout"}
    assert "0.3 s" in body["error"]
    # No answer in time: the same answer as a refused or non-HTTP port.
    body = assert_error(get(client, upstream.url_for("/silent.png")), 502)
    assert body["details"] == {"reason": "unreachable"}


def test_download_above_the_size_cap_is_502(proxy: AppFactory, upstream: HTTPServer) -> None:
    big = encoded(picture((200, 200)), "PNG")
    assert len(big) > 2000
    upstream.expect_request("/declared.png").respond_with_data(big)
    # Streamed without Content-Length: only counting the bytes can stop it.
    upstream.expect_request("/streamed.png").respond_with_handler(
        lambda request: Response(iter([big[:1000], big[1000:]]))
    )
    client = proxy(image_proxy_max_bytes=2000)
    for path in ("/declared.png", "/streamed.png"):
        body = assert_error(get(client, upstream.url_for(path)), 502)
        assert body["details"] == {"reason": "too_large", "limit_bytes": 2000}
    streamed = [request for request, _ in upstream.log if request.path == "/streamed.png"]
    assert streamed and "Content-Length" not in streamed[0].headers


def test_not_an_image_is_422(client: FlaskClient, upstream: HTTPServer) -> None:
    url = serve(upstream, "/page.html", b"<html>hello</html>", "text/html")
    body = assert_error(get(client, url), 422, "unprocessable_image")
    assert body["details"] == {"reason": "not_an_image"}


def test_a_damaged_image_is_422(client: FlaskClient, upstream: HTTPServer) -> None:
    photo = encoded(picture((300, 200)), "JPEG")
    url = serve(upstream, "/cut.jpg", photo[: len(photo) // 2])
    body = assert_error(get(client, url), 422, "unprocessable_image")
    assert body["details"] == {"reason": "damaged"}


def test_a_decompression_bomb_is_422(proxy: AppFactory, upstream: HTTPServer) -> None:
    url = serve(upstream, "/bomb.png", png_claiming(30000, 30000), "image/png")
    body = assert_error(get(proxy(), url), 422, "unprocessable_image")
    assert body["details"]["reason"] == "too_many_pixels"
    # The limit is a setting: a 20x20 image is too many pixels for a limit of 100.
    small = serve(upstream, "/small.png", encoded(Image.new("RGB", (20, 20)), "PNG"))
    body = assert_error(get(proxy(image_proxy_max_pixels=100), small), 422)
    assert body["details"] == {"reason": "too_many_pixels", "max_pixels": 100}


def test_other_conversion_failures_are_500_without_internals(
    client: FlaskClient, upstream: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> bytes:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(lvgl, "encode_parts", broken)
    url = serve(upstream, "/a.png", encoded(Image.new("RGB", (2, 2)), "PNG"))
    response = get(client, url)
    body = assert_error(response, 500, "internal_error")
    assert "secret" not in response.get_data(as_text=True)
    assert body["details"] == {}


# --- the allowlist ---------------------------------------------------------------------
# (address classes, spellings, DNS and ports: tests/test_image_ssrf.py)


@pytest.mark.parametrize(
    "allowed", ["127.0.0.1:{port}", "127.0.0.0/8:{port}", "localhost,10.0.0.0/8,127.0.0.1:{port}"]
)
def test_allowed_hosts_admit(proxy: AppFactory, upstream: HTTPServer, allowed: str) -> None:
    url = serve(upstream, "/a.png", encoded(Image.new("RGB", (2, 2)), "PNG"))
    client = proxy(image_proxy_allowed_hosts=allowed.format(port=upstream.port))
    assert_lvgl(get(client, url), "ARGB8888", (2, 2))


@pytest.mark.parametrize(
    "allowed",
    ["ha.example", "10.0.0.0/8", "::1/128,localhost", "127.0.0.1", "127.0.0.1:{other}", "public"],
)
def test_other_hosts_are_403_before_any_request(
    proxy: AppFactory, upstream: HTTPServer, allowed: str
) -> None:
    url = serve(upstream, "/a.png", encoded(Image.new("RGB", (2, 2)), "PNG"))
    client = proxy(image_proxy_allowed_hosts=allowed.format(other=upstream.port + 1))
    body = assert_error(get(client, url), 403, "host_not_allowed")
    assert body["details"] == {"host": "127.0.0.1"}
    assert body["error"] == "the image proxy may not fetch from 127.0.0.1"
    assert upstream.log == []


def redirect(upstream: HTTPServer, path: str, location: str) -> None:
    upstream.expect_request(path).respond_with_response(
        Response(status=302, headers={"Location": location})
    )


def test_redirects_are_followed_within_the_allowlist(
    client: FlaskClient, upstream: HTTPServer
) -> None:
    serve(upstream, "/final.png", encoded(Image.new("RGB", (4, 2)), "PNG"))
    redirect(upstream, "/start", "/middle")
    redirect(upstream, "/middle", upstream.url_for("/final.png"))
    assert_lvgl(get(client, upstream.url_for("/start")), "ARGB8888", (4, 2))
    assert [request.path for request, _ in upstream.log] == ["/start", "/middle", "/final.png"]


def test_a_redirect_to_a_disallowed_host_is_403(client: FlaskClient, upstream: HTTPServer) -> None:
    serve(upstream, "/final.png", encoded(Image.new("RGB", (4, 2)), "PNG"))
    # Loopback, but another address than the one the list names.
    redirect(upstream, "/start", f"http://127.0.0.2:{upstream.port}/final.png")
    body = assert_error(get(client, upstream.url_for("/start")), 403)
    assert body["details"] == {"host": "127.0.0.2"}
    assert [request.path for request, _ in upstream.log] == ["/start"]


def test_forwarded_headers_stay_with_the_origin(proxy: AppFactory, upstream: HTTPServer) -> None:
    serve(upstream, "/final.png", encoded(Image.new("RGB", (4, 2)), "PNG"))
    redirect(upstream, "/same", "/other")
    redirect(upstream, "/other", f"http://localhost:{upstream.port}/final.png")
    client = proxy(image_proxy_allowed_hosts=f"127.0.0.1:{upstream.port},localhost:{upstream.port}")
    response = client.get(
        LVGL,
        query_string={"url": upstream.url_for("/same"), "headers": "Authorization"},
        headers={"Authorization": "Bearer ha-token"},
    )
    assert_lvgl(response, "ARGB8888", (4, 2))
    sent = {request.path: request.headers.get("Authorization") for request, _ in upstream.log}
    assert sent == {"/same": "Bearer ha-token", "/other": "Bearer ha-token", "/final.png": None}


def test_too_many_redirects_is_502(client: FlaskClient, upstream: HTTPServer) -> None:
    redirect(upstream, "/loop", "/loop")
    body = assert_error(get(client, upstream.url_for("/loop")), 502)
    assert body["details"] == {"reason": "redirects"}


def test_a_redirect_to_another_scheme_is_502(client: FlaskClient, upstream: HTTPServer) -> None:
    redirect(upstream, "/ftp", "ftp://127.0.0.1/a.png")
    body = assert_error(get(client, upstream.url_for("/ftp")), 502)
    assert body["details"] == {"reason": "redirect"}


def test_allowed_hosts_setting_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IMAGE_PROXY_ALLOWED_HOSTS", " ha.local:8123, 192.168.1.0/24 ,,public")
    assert Settings(_env_file=None).image_proxy_allowed_hosts == [
        "ha.local:8123",
        "192.168.1.0/24",
        "public",
    ]
    for bad in ("http://ha.local/", "ha.local:0", "ha.local:99999", "[fd00::1", "a b"):
        monkeypatch.setenv("IMAGE_PROXY_ALLOWED_HOSTS", bad)
        with pytest.raises(ValueError, match="IMAGE_PROXY_ALLOWED_HOSTS"):
            Settings(_env_file=None)


# --- metrics and docs ------------------------------------------------------------------


def test_metrics_count_outcomes_and_time_the_work(proxy: AppFactory, upstream: HTTPServer) -> None:
    client = proxy()
    url = serve(upstream, "/a.png", encoded(Image.new("RGB", (2, 2)), "PNG"))
    upstream.expect_request("/gone").respond_with_data("", status=500)
    assert get(client, url).status_code == 200
    assert get(client, url, format="RGB565").status_code == 200
    assert get(client, upstream.url_for("/gone")).status_code == 502
    assert get(client, "http://localhost/a.png").status_code == 403
    scraped = client.get("/metrics").get_data(as_text=True)
    counts = {
        'iotsupport_image_conversions_total{format="ARGB8888",outcome="ok"}': 1.0,
        'iotsupport_image_conversions_total{format="RGB565",outcome="ok"}': 1.0,
        'iotsupport_image_conversions_total{format="ARGB8888",outcome="upstream_error"}': 1.0,
        'iotsupport_image_conversions_total{format="ARGB8888",outcome="forbidden"}': 1.0,
        "iotsupport_image_fetch_seconds_count": 2.0,
        "iotsupport_image_conversion_seconds_count": 2.0,
    }
    lines = dict(
        line.rsplit(" ", 1) for line in scraped.splitlines() if line.startswith("iotsupport_image")
    )
    assert {name: float(lines.get(name, "0")) for name in counts} == counts


def test_openapi_documents_the_query(client: FlaskClient) -> None:
    document = client.get("/api/openapi.json").get_json()
    operation = document["paths"]["/api/images/lvgl"]["get"]
    parameters = {parameter["name"]: parameter for parameter in operation["parameters"]}
    assert set(parameters) == {"url", "headers", "width", "height", "format"}
    assert parameters["url"]["required"] is True
    assert all(parameter["in"] == "query" for parameter in parameters.values())
    assert {"200", "400", "403", "422", "502"} <= set(operation["responses"])
    formats = document["components"]["schemas"]["ColorFormat"]["enum"]
    assert formats == ["ARGB8888", "RGB565", "RGB565A8", "RGB888"]


# --- odd widths: rows are packed, whatever their length ----------------------------------


@pytest.mark.parametrize("width", [1, 3, 5, 7, 13])
@pytest.mark.parametrize("color_format", ["ARGB8888", "RGB565", "RGB565A8", "RGB888"])
def test_odd_widths_are_packed_without_padding(
    client: FlaskClient, upstream: HTTPServer, width: int, color_format: str
) -> None:
    """Rows of 3, 5 or 7 pixels are not a multiple of 4 bytes in RGB565 or RGB888: each
    row must follow the previous one directly (stride = width x bytes per pixel)."""
    height = 3
    source = Image.new("RGBA", (width, height))
    source.putdata(
        [
            (x * 40 % 256, y * 90 % 256, (x * y * 30) % 256, 255 - x * 17 % 256)
            for y in range(3)
            for x in range(width)
        ]
    )
    url = serve(upstream, f"/odd{width}.png", encoded(source, "PNG"), "image/png")
    response = get(client, url, format=color_format)
    decoded = assert_lvgl(response, color_format, (width, height))
    data = response.get_data()
    bpp = BYTES_PER_PIXEL[color_format]
    rows = [data[12 + y * width * bpp : 12 + (y + 1) * width * bpp] for y in range(height)]
    for y, row in enumerate(rows):
        for x in range(width):
            red, green, blue, alpha = t.cast(tuple[int, int, int, int], source.getpixel((x, y)))
            pixel = row[x * bpp : (x + 1) * bpp]
            if color_format == "ARGB8888":
                assert pixel == bytes((blue, green, red, alpha))
            elif color_format == "RGB888":  # composited onto black
                expected = on_black(source).getpixel((x, y))
                assert isinstance(expected, tuple)
                assert pixel == bytes((expected[2], expected[1], expected[0]))
            else:
                value = int.from_bytes(pixel, "little")
                reference = source if color_format == "RGB565A8" else on_black(source)
                expected = t.cast(tuple[int, int, int], reference.getpixel((x, y)))
                assert value >> 11 == (expected[0] * 31 + 127) // 255
                assert (value >> 5) & 0x3F == (expected[1] * 63 + 127) // 255
                assert value & 0x1F == (expected[2] * 31 + 127) // 255
    if color_format == "RGB565A8":
        assert data[12 + width * height * 2 :] == source.getchannel("A").tobytes()
    assert decoded.size == (width, height)


# --- memory: what a worker may be asked to hold -----------------------------------------


def test_pixels_are_counted_from_the_header_before_decoding(
    proxy: AppFactory, upstream: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    real_load = ImageFile.ImageFile.load

    def counting_load(image: ImageFile.ImageFile) -> t.Any:
        loads.append(f"{image.width}x{image.height}")
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    url = serve(upstream, "/poster.png", png_claiming(9000, 9000), "image/png")
    body = assert_error(get(proxy(), url), 422, "unprocessable_image")
    assert body["details"] == {"reason": "too_many_pixels", "max_pixels": 4096 * 2048}
    assert loads == []


def test_a_jpeg_counts_the_pixels_it_decodes_at_reduced_scale(
    client: FlaskClient, upstream: HTTPServer
) -> None:
    photo = encoded(Image.new("RGB", (4000, 3000), (200, 10, 10)), "JPEG", quality=50)
    url = serve(upstream, "/photo.jpg", photo)
    assert_lvgl(get(client, url, width=320, height=240), "ARGB8888", (320, 240))
    # At full size it would decode 12 million pixels: over the default limit.
    body = assert_error(get(client, url, width=4096, height=4096), 422)
    assert body["details"]["reason"] == "too_many_pixels"


def test_conversions_beyond_the_limit_get_503_with_retry_after(
    proxy: AppFactory, upstream: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    started, release = threading.Event(), threading.Event()

    def held(*args: t.Any) -> Image.Image:
        started.set()
        assert release.wait(10)
        return fitted_image(*args)

    # The name as the proxy module imported it.
    monkeypatch.setattr("iotsupport.images.fitted_image", held)
    client = proxy(image_proxy_max_conversions=1)
    app = client.application
    url = serve(upstream, "/a.png", encoded(Image.new("RGB", (4, 4)), "PNG"), "image/png")
    first: list[TestResponse] = []
    thread = threading.Thread(target=lambda: first.append(get(app.test_client(), url)))
    thread.start()
    try:
        assert started.wait(10)
        busy = get(app.test_client(), url)
        body = assert_error(busy, 503, "image_proxy_busy")
        assert busy.headers["Retry-After"] == "2"
        assert body["details"] == {"retry_after_seconds": 2}
    finally:
        release.set()
        thread.join(10)
    assert_lvgl(first[0], "ARGB8888", (4, 4))
    assert_lvgl(get(client, url), "ARGB8888", (4, 4))  # the slot is free again
    scraped = client.get("/metrics").get_data(as_text=True)
    assert 'iotsupport_image_conversions_total{format="ARGB8888",outcome="busy"} 1.0' in scraped
