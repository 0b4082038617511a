"""Releases of a model: upload (an admin unsigned, CI signed), the image's checks, list,
read, download (ETag, Range, HEAD) and delete, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import typing as t
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest
from assets_support import build_assets_app
from assets_support import rsa_key
from assets_support import write_private_key
from conftest import assert_error
from conftest import race
from esp_images import AppInfo
from esp_images import build_image
from esp_images import small_image
from flask import Flask
from flask.testing import FlaskClient
from local_issuer import LocalIssuer
from release_support import add_release
from release_support import create_model
from release_support import post_release
from release_support import release_fields
from release_support import release_image
from sqlalchemy import func
from sqlalchemy import select

from iotsupport.extensions import state
from iotsupport.releases.tables import Release
from iotsupport.releases.tables import StoredFile


def stored_files(app: Flask) -> int:
    with state(app).database.session(read_only=True) as session:
        return session.execute(select(func.count()).select_from(StoredFile)).scalar_one()


def release_count(app: Flask) -> int:
    with state(app).database.session(read_only=True) as session:
        return session.execute(select(func.count()).select_from(Release)).scalar_one()


def test_an_admin_uploads_a_release_and_the_image_names_it(api: FlaskClient) -> None:
    create_model(api, "thermo")
    image = build_image("esp32s3", app=AppInfo(version="2.1.0", project_name="thermo-fw"))
    response = post_release(api, "thermo", image)
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["version"] == "2.1.0" and body["project_name"] == "thermo-fw"
    assert body["chip"] == "esp32s3" and body["size"] == len(image)
    assert body["sha256"] == hashlib.sha256(image).hexdigest()
    assert body["image_sha256"] == image[-32:].hex()  # the digest appended to the image
    assert body["idf_version"] == "v5.3.1" and body["build_date"] == "Nov 30 2026"
    assert body["signed"] is False and body["created_by"] == "anonymous"
    assert body["image_url"] == "/api/models/thermo/releases/2.1.0/image"
    # The model's first release set its chip.
    assert api.get("/api/models/thermo").get_json()["chip"] == "esp32s3"
    listed = api.get("/api/models/thermo/releases").get_json()
    assert listed["chip"] == "esp32s3" and listed["count"] == 1
    assert listed["releases"][0] == body
    assert api.get("/api/models/thermo/releases/2.1.0").get_json() == body


def test_the_same_version_twice_is_409_and_other_versions_list_newest_first(
    api: FlaskClient,
) -> None:
    create_model(api, "thermo")
    add_release(api, "thermo", "1.0.0")
    add_release(api, "thermo", "1.1.0")
    again = post_release(api, "thermo", release_image("1.0.0", code_bytes=8192))
    assert assert_error(again, 409, "release_exists")["details"]["version"] == "1.0.0"
    versions = [r["version"] for r in api.get("/api/models/thermo/releases").get_json()["releases"]]
    assert versions == ["1.1.0", "1.0.0"]
    # Another model may have the same version.
    create_model(api, "lamp")
    add_release(api, "lamp", "1.0.0")


def test_the_download_answers_like_a_file_server(api: FlaskClient) -> None:
    create_model(api, "thermo")
    image = release_image("1.0.0", code_bytes=20_000)
    post_release(api, "thermo", image)
    url = "/api/models/thermo/releases/1.0.0/image"
    whole = api.get(url)
    assert whole.status_code == 200 and whole.data == image
    assert whole.headers["Content-Type"] == "application/octet-stream"
    etag = whole.headers["ETag"]
    assert etag == f'"{hashlib.sha256(image).hexdigest()}"'
    assert api.get(url, headers={"If-None-Match": etag}).status_code == 304
    part = api.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == image[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(image)}"
    assert_error(api.get(url, headers={"Range": f"bytes={len(image)}-"}), 416)
    head = api.head(url)
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Content-Length"] == str(len(image))
    assert_error(api.get("/api/models/thermo/releases/9.9.9/image"), 404)
    assert_error(api.get("/api/models/nope/releases/1.0.0/image"), 404)


@pytest.mark.parametrize(
    ("damage", "code"),
    [
        (lambda image: b"not an image at all", "not_an_esp_image"),
        (lambda image: b"", "not_an_esp_image"),
        (lambda image: image[:-40], "image_truncated"),
        (
            lambda image: image[:-33] + bytes([image[-33] ^ 1]) + image[-32:],
            "image_checksum_mismatch",
        ),
        (lambda image: image[:-1] + bytes([image[-1] ^ 1]), "image_hash_mismatch"),
        (lambda image: image[:12] + b"\x99\x99" + image[14:], "image_unknown_chip"),
        (lambda image: image[:1] + b"\x20" + image[2:], "image_bad_header"),
    ],
)
def test_each_check_of_the_image_is_a_422_that_stores_nothing(
    client: FlaskClient, app: Flask, damage: object, code: str
) -> None:
    create_model(client, "thermo")
    image = damage(small_image())  # type: ignore[operator]
    assert_error(post_release(client, "thermo", image), 422, code)
    assert release_count(app) == 0 and stored_files(app) == 0
    assert client.get("/api/models/thermo").get_json()["chip"] is None


@pytest.mark.parametrize("version", ["", "   ", "a/b", "..", "back\\slash"])
def test_a_version_that_cannot_name_a_release_is_refused(
    client: FlaskClient, app: Flask, version: str
) -> None:
    create_model(client, "thermo")
    body = assert_error(post_release(client, "thermo", release_image(version)), 422)
    assert body["code"] == "release_bad_version"
    assert release_count(app) == 0


def test_another_chip_than_the_models_is_refused(api: FlaskClient) -> None:
    create_model(api, "thermo", chip="esp32c3")
    refused = post_release(api, "thermo", release_image("1.0.0", chip="esp32s3"))
    details = assert_error(refused, 422, "image_wrong_chip")["details"]
    assert details == {"chip": "esp32s3", "expected": "esp32c3"}
    add_release(api, "thermo", "1.0.0", chip="esp32c3")
    # Set by the first release: later ones must match it.
    create_model(api, "lamp")
    add_release(api, "lamp", "1.0.0", chip="esp32")
    assert_error(post_release(api, "lamp", release_image("2.0.0", "esp32c6")), 422)


def test_the_chip_cannot_change_once_the_model_has_releases(client: FlaskClient) -> None:
    create_model(client, "thermo")
    model = client.get("/api/models/thermo").get_json()
    put = {"name": model["name"], "schema": model["schema"]}
    assert client.put("/api/models/thermo", json={**put, "chip": "esp32c3"}).status_code == 200
    assert client.put("/api/models/thermo", json=put).get_json()["chip"] == "esp32c3"  # kept
    assert_error(client.put("/api/models/thermo", json={**put, "chip": "esp32x"}), 400)
    add_release(client, "thermo", "1.0.0", chip="esp32c3")
    assert_error(
        client.put("/api/models/thermo", json={**put, "chip": "esp32"}), 409, "chip_in_use"
    )
    assert_error(client.put("/api/models/thermo", json={**put, "chip": None}), 409, "chip_in_use")
    assert_error(client.delete("/api/models/thermo"), 409, "model_in_use")


def test_delete_a_release_and_its_file(api: FlaskClient, request: pytest.FixtureRequest) -> None:
    create_model(api, "thermo")
    first = add_release(api, "thermo", "1.0.0")
    add_release(api, "thermo", "2.0.0")
    assert api.delete("/api/models/thermo/releases/1.0.0").status_code == 204
    assert_error(api.get("/api/models/thermo/releases/1.0.0"), 404)
    assert_error(api.get("/api/models/thermo/releases/1.0.0/image"), 404)
    assert_error(api.delete("/api/models/thermo/releases/1.0.0"), 404)
    assert first["sha256"] not in [
        r["sha256"] for r in api.get("/api/models/thermo/releases").get_json()["releases"]
    ]
    assert api.delete("/api/models/thermo/releases/2.0.0").status_code == 204
    assert api.delete("/api/models/thermo").status_code == 204  # no releases left


def test_the_same_bytes_in_two_models_are_stored_once(client: FlaskClient, app: Flask) -> None:
    image = release_image("1.0.0")
    for code in ("thermo", "lamp"):
        create_model(client, code)
        assert post_release(client, code, image).status_code == 201
    assert stored_files(app) == 1
    client.delete("/api/models/thermo/releases/1.0.0")
    assert stored_files(app) == 1  # the lamp's release still needs it
    assert client.get("/api/models/lamp/releases/1.0.0/image").data == image
    client.delete("/api/models/lamp/releases/1.0.0")
    assert stored_files(app) == 0


def test_an_unknown_model_is_404_before_the_file_is_read(client: FlaskClient) -> None:
    assert_error(post_release(client, "nope", release_image("1.0.0")), 404)
    assert_error(client.get("/api/models/nope/releases"), 404)


@pytest.mark.postgres
def test_two_uploads_of_one_version_at_once_give_one_release(pg_app: Flask) -> None:
    client = pg_app.test_client()
    create_model(client, "thermo")
    images = [release_image("1.0.0", code_bytes=4096 + 4 * n) for n in range(4)]
    results = race(pg_app, [partial(post_release, model="thermo", image=i) for i in images])
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409]
    assert release_count(pg_app) == 1 and stored_files(pg_app) == 1


@pytest.mark.postgres
def test_two_first_releases_of_other_chips_at_once_set_one_chip(pg_app: Flask) -> None:
    client = pg_app.test_client()
    create_model(client, "thermo")
    chips = ["esp32", "esp32s3"]
    uploads: list[t.Callable[[FlaskClient], t.Any]] = [
        partial(post_release, model="thermo", image=release_image(c, c)) for c in chips
    ]
    results = race(pg_app, uploads)
    assert sorted(r.status_code for r in results) == [201, 422]
    won = next(r for r in results if r.status_code == 201).get_json()["chip"]
    assert client.get("/api/models/thermo").get_json()["chip"] == won


# --- signed uploads (CI) ---------------------------------------------------------------------


@dataclass
class Login:
    """An app with login on and model thermo: its client and an admin's and CI's headers."""

    app: Flask
    client: FlaskClient
    admin: dict[str, str]
    ci: dict[str, str]


@pytest.fixture
def login(database_url: str, tmp_path: Path, issuer: LocalIssuer) -> Iterator[Login]:
    key = write_private_key(tmp_path / "ci.pem", rsa_key())
    app = build_assets_app(
        database_url, None, key, asset_max_bytes=200_000, **issuer.login_settings()
    )
    admin = {"Authorization": f"Bearer {issuer.token(roles=['admin'])}"}
    ci = {"Authorization": f"Bearer {issuer.token(roles=['asset-uploader'])}"}
    client = app.test_client()
    model = {"code": "thermo", "name": "T", "schema": {}}
    assert client.post("/api/models", json=model, headers=admin).status_code == 201
    yield Login(app, client, admin, ci)
    state(app).database.dispose()


def test_ci_uploads_signed_and_admins_may_skip_the_signature(login: Login) -> None:
    client, ci = login.client, login.ci
    image = release_image("1.0.0")
    unsigned = post_release(client, "thermo", image, headers=ci)
    assert_error(unsigned, 400, "missing_field")
    forged = release_fields("thermo", image, key=rsa_key("other"))
    assert_error(
        post_release(client, "thermo", image, forged, headers=ci), 400, "signature_mismatch"
    )
    other_model = release_fields("lamp", image)  # signed for another model
    assert_error(post_release(client, "thermo", image, other_model, headers=ci), 400)
    other_bytes = post_release(
        client, "thermo", release_image("1.0.1"), release_fields("thermo", image), headers=ci
    )
    assert_error(other_bytes, 400, "sha256_mismatch")
    fields = release_fields("thermo", image)
    signed = post_release(client, "thermo", image, fields, headers=ci)
    assert signed.status_code == 201, signed.get_json()
    assert signed.get_json()["signed"] is True
    replay = post_release(client, "thermo", image, fields, headers=ci)
    assert_error(replay, 409, "signature_already_used")
    by_admin = post_release(client, "thermo", release_image("2.0.0"), headers=login.admin)
    assert by_admin.status_code == 201 and by_admin.get_json()["signed"] is False
    # The uploader may only upload.
    assert_error(client.get("/api/models/thermo/releases", headers=ci), 403)
    assert_error(client.delete("/api/models/thermo/releases/1.0.0", headers=ci), 403)
    assert_error(post_release(client, "thermo", release_image("3.0.0")), 401)


def test_a_wrong_signature_is_refused_before_the_file_is_stored(login: Login) -> None:
    big = release_image("1.0.0", code_bytes=150_000)
    forged = release_fields("thermo", big, key=rsa_key("other"))
    refused = post_release(login.client, "thermo", big, forged, headers=login.ci)
    assert_error(refused, 400, "signature_mismatch")
    too_big = release_image("1.0.0", code_bytes=300_000)
    refused = post_release(login.client, "thermo", too_big, headers=login.admin)
    assert_error(refused, 413, "asset_too_large")
    assert release_count(login.app) == 0 and stored_files(login.app) == 0


def test_signed_uploads_need_the_signing_key(client: FlaskClient) -> None:
    create_model(client, "thermo")
    image = release_image("1.0.0")
    # Login off: the caller is an admin, whose signed fields are still checked.
    refused = post_release(client, "thermo", image, release_fields("thermo", image))
    assert_error(refused, 503, "signing_not_configured")
    assert post_release(client, "thermo", image).status_code == 201
