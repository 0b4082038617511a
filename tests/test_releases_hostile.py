"""Hostile release uploads: broken multipart, fields in the wrong place, lying images.

Whatever arrives, the answer is a 4xx in the JSON envelope, nothing is stored, no temp
file is left behind, and no file is read whole into memory.
"""

from __future__ import annotations

import struct
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from assets_support import BOUNDARY
from assets_support import multipart
from conftest import assert_error
from esp_images import small_image
from flask import Flask
from flask.testing import FlaskClient
from release_support import create_model
from release_support import post_release
from release_support import release_fields
from release_support import release_image
from sqlalchemy import func
from sqlalchemy import select

from iotsupport.assets.store import TEMP_PREFIX
from iotsupport.extensions import state
from iotsupport.releases.tables import Release
from iotsupport.releases.tables import StoredFile

URL = "/api/models/thermo/releases"
HEAD = 24


def nothing_stored(app: Flask) -> bool:
    with state(app).database.session(read_only=True) as session:
        files = session.execute(select(func.count()).select_from(StoredFile)).scalar_one()
        releases = session.execute(select(func.count()).select_from(Release)).scalar_one()
    return files == 0 and releases == 0


@pytest.fixture
def staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temp folder, where uploads are staged, this test's own."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.fixture
def thermo(client: FlaskClient, staging: Path) -> FlaskClient:
    create_model(client, "thermo")
    return client


def lying(offset: int, value: int) -> bytes:
    data = bytearray(small_image())
    data[offset : offset + 4] = struct.pack("<I", value)
    return bytes(data)


@pytest.mark.parametrize(
    ("image", "code"),
    [
        (lying(HEAD + 4, 0xFFFFFFF0), "image_bad_segment"),  # a 4 GB segment in a 1 KB file
        (lying(HEAD + 4, 0x00FFFFF0), "image_truncated"),  # 16 MB less a bit, in 1 KB
        (small_image()[:1] + b"\x10" + small_image()[2:], "image_bad_segment"),  # 16 segments
        (small_image()[: HEAD + 6], "image_truncated"),
        (b"\xe9" + b"\xff" * 4000, "image_bad_header"),
    ],
)
def test_lying_images_are_refused_and_nothing_is_kept(
    thermo: FlaskClient, app: Flask, staging: Path, image: bytes, code: str
) -> None:
    assert_error(post_release(thermo, "thermo", image), 422, code)
    assert nothing_stored(app)
    assert list(staging.glob(f"{TEMP_PREFIX}*")) == []  # the staged upload is gone


def test_broken_multipart_bodies_are_400(thermo: FlaskClient, app: Flask, staging: Path) -> None:
    image = release_image("1.0.0")
    body, content_type = multipart({}, "fw.bin", image)
    cut = body[: len(body) // 2]
    assert_error(thermo.post(URL, data=cut, content_type=content_type), 400, "invalid_multipart")
    many = {f"f{n}": "x" for n in range(20)}
    body, content_type = multipart(many, "fw.bin", image)
    assert_error(thermo.post(URL, data=body, content_type=content_type), 400, "invalid_multipart")
    huge_field = {"timestamp": "x" * 70_000}
    body, content_type = multipart(huge_field, "fw.bin", image)
    assert_error(thermo.post(URL, data=body, content_type=content_type), 400, "invalid_multipart")
    assert_error(thermo.post(URL, json={"file": "x"}), 400, "missing_field")
    assert_error(thermo.post(URL, data=b"", content_type=content_type), 400)
    no_file, content_type = multipart({"note": "hello"})
    assert_error(thermo.post(URL, data=no_file, content_type=content_type), 400, "missing_field")
    assert nothing_stored(app)
    assert list(staging.glob(f"{TEMP_PREFIX}*")) == []


def test_a_model_field_must_name_the_urls_model(thermo: FlaskClient, app: Flask) -> None:
    body, content_type = multipart({"model": "lamp"}, "fw.bin", release_image("1.0.0"))
    assert_error(thermo.post(URL, data=body, content_type=content_type), 400, "invalid_input")
    body, content_type = multipart({"model": "thermo"}, "fw.bin", release_image("1.0.0"))
    assert thermo.post(URL, data=body, content_type=content_type).status_code == 201


def test_signed_fields_after_the_file_are_refused(thermo: FlaskClient, app: Flask) -> None:
    image = release_image("1.0.0")
    fields = release_fields("thermo", image)
    body, _ = multipart({}, "fw.bin", image)
    late = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ).encode()
    body = body.replace(f"--{BOUNDARY}--".encode(), late + f"--{BOUNDARY}--".encode())
    response = thermo.post(URL, data=body, content_type=f"multipart/form-data; boundary={BOUNDARY}")
    assert_error(response, 400, "missing_field")
    assert nothing_stored(app)


def test_a_big_upload_is_streamed_not_held(client_with: object, tmp_path: Path) -> None:
    client: FlaskClient = client_with(asset_max_bytes=8 * 1024 * 1024)  # type: ignore[operator]
    create_model(client, "thermo")
    image = release_image("1.0.0", code_bytes=6 * 1024 * 1024)
    body, content_type = multipart({}, "fw.bin", image)
    tracemalloc.start()
    try:
        response = client.post(URL, data=body, content_type=content_type)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 201, response.get_json()
    # The test client holds the request body (6 MB) itself; the server adds about a chunk.
    assert peak < len(body) + 3 * 1024 * 1024, peak
