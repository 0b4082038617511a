"""Helpers shared by the tests of releases: files (a test-only download route, storing) and
releases through the API (models, images, signed fields)."""

from __future__ import annotations

import hashlib
import io
import typing as t

from assets_support import iso_now
from assets_support import multipart
from assets_support import rsa_key
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from esp_images import AppInfo
from esp_images import build_image
from flask import Flask
from flask import Response
from flask.testing import FlaskClient
from sqlalchemy import event
from werkzeug.test import TestResponse

from iotsupport.assets.signing import RELEASE_PURPOSE
from iotsupport.assets.signing import sign_upload
from iotsupport.auth.access import public
from iotsupport.db import get_session
from iotsupport.errors import NotFound
from iotsupport.extensions import state
from iotsupport.releases.cache import FileCache
from iotsupport.releases.downloads import file_response
from iotsupport.releases.storage import FileInfo
from iotsupport.releases.storage import find_file
from iotsupport.releases.storage import store_file

DOWNLOAD = "/test/files/{}"


def add_download_route(app: Flask, cache: FileCache | None = None) -> None:
    """GET /test/files/<sha256>: the stored file, as a release route would serve it."""

    @app.get(DOWNLOAD.format("<sha256>"))
    @public
    def download(sha256: str) -> Response:
        file = find_file(get_session(), sha256)
        if file is None:
            raise NotFound("no such file")
        engine = state().database.read_engine
        return file_response(engine, file, cache=cache, cache_control="private, max-age=60")


def put(app: Flask, data: bytes, chunk_size: int) -> FileInfo:
    """Store `data` and commit."""
    with state(app).database.session() as session:
        stored = store_file(session, io.BytesIO(data), chunk_size=chunk_size)
        session.commit()
    return stored


class CheckoutCounter:
    """Counts connections taken from the app's pool: a request's lookup, then one per chunk."""

    def __init__(self, app: Flask) -> None:
        self.count = 0
        event.listen(state(app).database.engine.pool, "checkout", self._taken)

    def _taken(self, *_: object) -> None:
        self.count += 1


# --- releases through the API -------------------------------------------------------------


def release_fields(
    model: str, image: bytes, timestamp: str | None = None, key: RSAPrivateKey | None = None
) -> dict[str, str]:
    """The signed fields CI sends with `image` for `model` (purpose `release`)."""
    timestamp = iso_now() if timestamp is None else timestamp
    sha256 = hashlib.sha256(image).hexdigest()
    signature = sign_upload(
        key or rsa_key(), timestamp=timestamp, name=model, sha256=sha256, purpose=RELEASE_PURPOSE
    )
    return {"timestamp": timestamp, "sha256": sha256, "signature": signature}


def create_model(client: FlaskClient, code: str, chip: str | None = None) -> None:
    body: dict[str, t.Any] = {"code": code, "name": code.title(), "schema": {"type": "object"}}
    if chip is not None:
        body["chip"] = chip
    response = client.post("/api/models", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)


def post_release(
    client: FlaskClient, model: str, image: bytes, fields: dict[str, str] | None = None, **kw: t.Any
) -> TestResponse:
    body, content_type = multipart(fields or {}, "firmware.bin", image)
    return client.post(f"/api/models/{model}/releases", data=body, content_type=content_type, **kw)


def add_release(
    client: FlaskClient, model: str, version: str, chip: str = "esp32"
) -> dict[str, t.Any]:
    """A release of `model` with this version (uploaded by the admin, unsigned)."""
    response = post_release(client, model, release_image(version, chip))
    assert response.status_code == 201, response.get_data(as_text=True)
    body: dict[str, t.Any] = response.get_json()
    return body


def release_image(version: str, chip: str = "esp32", code_bytes: int = 4096) -> bytes:
    return build_image(chip, app=AppInfo(version=version), code_bytes=code_bytes)
