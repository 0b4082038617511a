"""The other device routes (firmware download, image proxy), logins, and "a device or an admin"."""

from __future__ import annotations

import io
import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest
from assets_support import build_assets_app
from assets_support import rsa_key
from assets_support import upload
from assets_support import write_private_key
from conftest import RecordingPublisher
from conftest import apps_on
from conftest import assert_error
from conftest import make_settings
from credentials_support import basic
from credentials_support import bearer
from credentials_support import create_device
from credentials_support import fetch
from credentials_support import issue
from flask import Blueprint
from flask import Flask
from flask import jsonify
from flask.testing import FlaskClient
from local_issuer import LocalIssuer
from PIL import Image
from prometheus_client import CollectorRegistry
from pytest_httpserver import HTTPServer

from iotsupport import create_app
from iotsupport.auth.access import Role
from iotsupport.auth.access import requires_device
from iotsupport.credentials.device_auth import current_device
from iotsupport.credentials.tokens import new_token
from iotsupport.extensions import state

MAC = "aa:bb:cc:dd:ee:01"
LVGL = "/api/images/lvgl"


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), "red").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def upstream(httpserver_ipv4: HTTPServer) -> Iterator[HTTPServer]:
    yield httpserver_ipv4
    httpserver_ipv4.clear()


# --- firmware download -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["off", "optional", "required"])
def test_firmware_download_follows_device_auth(
    tmp_path: Path, database_url: str, mode: str
) -> None:
    assets_dir = tmp_path / "assets"
    assets_dir.mkdir()
    key = write_private_key(tmp_path / "ci.pem", rsa_key())
    app = build_assets_app(database_url, assets_dir, key, device_auth=mode)
    client = app.test_client()
    assert upload(client, "fw.bin", b"firmware").status_code == 200
    token = issue(client, create_device(client, MAC))
    path = "/api/assets/fw.bin"
    anonymous = client.get(path)
    assert anonymous.status_code == (401 if mode == "required" else 200)
    assert client.get(path, headers=bearer(token)).data == b"firmware"
    assert client.get(path, headers=basic(MAC.replace(":", "-"), token)).data == b"firmware"
    assert client.head(path, headers=bearer(token)).status_code == 200
    wrong = client.get(path, headers=bearer(new_token()))
    assert wrong.status_code == (200 if mode == "off" else 401)
    state(app).database.dispose()


# --- the image proxy ----------------------------------------------------------------------------


@pytest.fixture
def proxy_app(
    database_url: str, publisher: RecordingPublisher, upstream: HTTPServer
) -> Iterator[t.Callable[..., Flask]]:
    """Apps whose image proxy may reach the local upstream (only public hosts by default)."""
    with apps_on(database_url, publisher) as build:
        allowed = f"127.0.0.1:{upstream.port}"
        yield lambda **settings: build(**{"image_proxy_allowed_hosts": allowed, **settings})


def test_the_upstream_token_travels_in_x_upstream_authorization(
    proxy_app: t.Callable[..., Flask], upstream: HTTPServer
) -> None:
    client = proxy_app(device_auth="required").test_client()
    token = issue(client, create_device(client, MAC))
    upstream.expect_request("/camera").respond_with_data(png(), content_type="image/png")
    query = {"url": upstream.url_for("/camera"), "headers": "Authorization"}
    response = client.get(
        LVGL,
        query_string=query,
        headers={**bearer(token), "X-Upstream-Authorization": "Bearer ha-token"},
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    ((request, _),) = upstream.log
    assert request.headers["Authorization"] == "Bearer ha-token"
    assert token not in str(request.headers)
    # Without a device token, required mode refuses before anything is fetched.
    refused = client.get(LVGL, query_string=query, headers={"Authorization": "Bearer ha-token"})
    assert_error(refused, 401, "device_unauthorized")
    assert len(upstream.log) == 1


def test_a_device_token_is_never_forwarded_upstream(
    proxy_app: t.Callable[..., Flask], upstream: HTTPServer
) -> None:
    client = proxy_app().test_client()
    token = issue(client, create_device(client, MAC))
    url = upstream.url_for("/camera")
    for headers in (bearer(token), basic(MAC, token)):
        response = client.get(
            LVGL, query_string={"url": url, "headers": "Authorization"}, headers=headers
        )
        body = assert_error(response, 400, "invalid_input")
        assert body["details"] == {"header": "Authorization"}
    assert upstream.log == []


def test_the_legacy_authorization_still_works_in_optional_mode(
    proxy_app: t.Callable[..., Flask], upstream: HTTPServer
) -> None:
    client = proxy_app().test_client()
    upstream.expect_request("/camera").respond_with_data(png(), content_type="image/png")
    response = client.get(
        LVGL,
        query_string={"url": upstream.url_for("/camera"), "headers": "Authorization"},
        headers={"Authorization": "Bearer ha-token"},
    )
    assert response.status_code == 200
    ((request, _),) = upstream.log
    assert request.headers["Authorization"] == "Bearer ha-token"


# --- "a device, or an admin" and logins -------------------------------------------------------


def device_or_admin_routes() -> Blueprint:
    """Like issue 15's image download: a device with its token, or an admin."""
    bp = Blueprint("either", __name__)

    @bp.get("/api/device/either")
    @requires_device(or_roles=(Role.ADMIN,))
    def either() -> t.Any:
        device = current_device()
        return jsonify(device=device.mac_address if device else None)

    return bp


@pytest.fixture
def oidc_app(
    database_url: str, issuer: LocalIssuer, publisher: RecordingPublisher
) -> Iterator[t.Callable[..., Flask]]:
    issuer.publish(issuer.key)
    apps: list[Flask] = []

    def build(**overrides: t.Any) -> Flask:
        settings = make_settings(
            database_url,
            oidc_enabled=True,
            baseurl="http://iot.test",
            oidc_issuer_url=issuer.url,
            oidc_client_id=LocalIssuer.CLIENT_ID,
            oidc_client_secret="client-secret",
            oidc_audience=LocalIssuer.AUDIENCE,
            **overrides,
        )
        app = create_app(settings, publisher=publisher, registry=CollectorRegistry())
        app.register_blueprint(device_or_admin_routes())
        apps.append(app)
        return app

    yield build
    for app in apps:
        state(app).database.dispose()


def device_with_token(client: FlaskClient, admin: dict[str, str]) -> tuple[int, str]:
    """A device and its token, made by an admin with a login."""
    created = client.post("/api/configs", json={"mac_address": MAC, "content": {}}, headers=admin)
    config_id: int = created.get_json()["id"]
    issued = client.post(f"/api/configs/{config_id}/credential", headers=admin)
    token: str = issued.get_json()["token"]
    return config_id, token


def test_with_login_on_devices_and_admins_never_pass_for_one_another(
    oidc_app: t.Callable[..., Flask], issuer: LocalIssuer
) -> None:
    client = oidc_app(device_auth="required").test_client()
    admin = bearer(issuer.token())
    config_id, token = device_with_token(client, admin)
    assert fetch(client, MAC, bearer(token)).status_code == 200
    # A device token opens no admin route.
    for method, path in (("GET", "/api/configs"), ("POST", f"/api/configs/{config_id}/credential")):
        assert_error(client.open(path, method=method, headers=bearer(token)), 401, "invalid_token")
    # An admin's JWT is not a device token.
    assert_error(fetch(client, MAC, admin), 401, "device_unauthorized")
    assert_error(client.post("/api/device/credential", headers=admin), 401, "device_unauthorized")


def test_a_route_for_a_device_or_an_admin(
    oidc_app: t.Callable[..., Flask], issuer: LocalIssuer
) -> None:
    client = oidc_app(device_auth="required").test_client()
    admin = bearer(issuer.token())
    _, token = device_with_token(client, admin)
    assert client.get("/api/device/either", headers=bearer(token)).get_json() == {"device": MAC}
    assert client.get("/api/device/either", headers=admin).get_json() == {"device": None}
    uploader = bearer(issuer.token(roles=["asset-uploader"]))
    assert_error(client.get("/api/device/either", headers=uploader), 403, "forbidden")
    assert_error(client.get("/api/device/either"), 401, "device_unauthorized")
    assert_error(
        client.get("/api/device/either", headers=bearer(new_token())), 401, "device_unauthorized"
    )
