"""Login on the firmware endpoints: the uploader role, on top of the upload signature."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from assets_support import build_assets_app
from assets_support import iso_now
from assets_support import multipart
from assets_support import rsa_key
from assets_support import signed
from assets_support import unique_name
from assets_support import write_private_key
from conftest import assert_error
from flask import Flask
from flask.testing import FlaskClient
from local_issuer import LocalIssuer
from werkzeug.test import TestResponse

BASEURL = "http://iot.test"


@pytest.fixture
def app(database_url: str, tmp_path: Path, issuer: LocalIssuer) -> Iterator[Flask]:
    assets = tmp_path / "assets"
    assets.mkdir()
    key = write_private_key(tmp_path / "ci.pem", rsa_key())
    app = build_assets_app(database_url, assets, key, **issuer.login_settings(BASEURL))
    yield app
    app.extensions["iotsupport"].database.dispose()


def post(client: FlaskClient, name: str, fields: dict[str, str], token: str | None) -> TestResponse:
    body, content_type = multipart(fields, name, b"firmware")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/api/assets", data=body, content_type=content_type, headers=headers)


def test_uploader_with_a_good_signature_uploads(client: FlaskClient, issuer: LocalIssuer) -> None:
    name = unique_name()
    response = post(client, name, signed(), issuer.token(roles=["asset-uploader"]))
    assert response.status_code == 200, response.get_json()
    download = client.get(f"/api/assets/{name}")  # devices need no token
    assert download.status_code == 200 and download.data == b"firmware"


def test_uploader_still_needs_the_signature(client: FlaskClient, issuer: LocalIssuer) -> None:
    token = issuer.token(roles=["asset-uploader"])
    forged = signed(iso_now(), key=rsa_key("other"))
    assert_error(post(client, unique_name(), forged, token), 400, "signature_mismatch")


def test_upload_without_a_token_is_401(client: FlaskClient) -> None:
    assert_error(post(client, unique_name(), signed(), None), 401)


def test_uploader_may_not_list_or_delete(client: FlaskClient, issuer: LocalIssuer) -> None:
    uploader = {"Authorization": f"Bearer {issuer.token(roles=['asset-uploader'])}"}
    assert_error(client.get("/api/assets", headers=uploader), 403, "forbidden")
    assert_error(client.delete("/api/assets/x.bin", headers=uploader), 403, "forbidden")
    admin = {"Authorization": f"Bearer {issuer.token(roles=['admin'])}"}
    assert client.get("/api/assets", headers=admin).status_code == 200
