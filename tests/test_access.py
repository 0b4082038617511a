"""Every route declares who may call it, so a new route can never be left open by accident."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from conftest import RecordingPublisher
from conftest import make_settings
from flask import Flask
from local_issuer import LocalIssuer
from prometheus_client import CollectorRegistry
from werkzeug.routing import Rule

from iotsupport import create_app
from iotsupport.auth.access import Role
from iotsupport.auth.access import access_of

# Routes that probes and the docs reach without any token.
EXPECTED_PUBLIC = {
    "operations.health",
    "operations.live",
    "operations.metrics",
    "docs.openapi_document",
    "docs.docs_page",
    "docs.docs_asset",
    "docs.docs_init",
    "auth.login",
    "auth.callback",
    "auth.whoami",
    "auth.logout",
    "ui.static_file",
}


# Routes for devices: a device token as DEVICE_AUTH says (whatever OIDC_ENABLED is).
EXPECTED_DEVICE = {
    "configs.device_config",
    "assets.download_asset",
    "images.lvgl_image",
    "device.rotate_own_credential",
    "releases.download_release",
    "rollouts.device_firmware",
    "coredumps_device.upload_coredump",
    "device_logs.post_device_logs",
}


def is_static(endpoint: str) -> bool:
    """Flask's own static endpoints (the app's and each blueprint's) serve files to anyone."""
    return endpoint == "static" or endpoint.endswith(".static")


def declared(app: Flask) -> dict[str, frozenset[Role]]:
    """Role-marked and public routes (device routes apart)."""
    return {
        endpoint: access.roles
        for endpoint, view in app.view_functions.items()
        if (access := access_of(view)) is not None and access.device is None
    }


def device_routes(app: Flask) -> set[str]:
    return {
        endpoint
        for endpoint, view in app.view_functions.items()
        if (access := access_of(view)) is not None and access.device is not None
    }


def test_every_route_declares_its_access(app: Flask) -> None:
    unmarked = sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if not is_static(rule.endpoint) and access_of(app.view_functions[rule.endpoint]) is None
    )
    assert unmarked == [], "mark these routes with @public, @requires(...) or @requires_device"


def test_only_the_expected_routes_are_public(app: Flask) -> None:
    public = {endpoint for endpoint, roles in declared(app).items() if not roles}
    assert EXPECTED_PUBLIC <= public
    assert public - EXPECTED_PUBLIC == set(), "a new public route must be added here on purpose"


def test_admin_routes_admit_admin(app: Flask) -> None:
    for endpoint, roles in declared(app).items():
        if roles:
            assert Role.ADMIN in roles, endpoint


def test_only_the_expected_routes_are_device_routes(app: Flask) -> None:
    assert device_routes(app) == EXPECTED_DEVICE, "a new device route must be added here"


def test_device_routes_carry_no_roles_of_their_own(app: Flask) -> None:
    for endpoint in device_routes(app):
        access = access_of(app.view_functions[endpoint])
        assert access is not None and access.roles == frozenset() and not access.is_public


# --- the hook enforces every mark: walk the URL map with login on -----------------------

BASEURL = "http://iot.test"
_ARGUMENT = re.compile(r"<(?:(\w+)[^:<>]*:)?(\w+)>")
_SAMPLE = {"int": "1", "mac": "aa:bb:cc:dd:ee:01", "filename": "fw.bin", "path": "x"}


def sample_path(rule: Rule) -> str:
    def value(match: re.Match[str]) -> str:
        converter = match.group(1) or "default"
        if converter == "any":  # e.g. the docs' asset names: take the first choice
            choice = re.search(r"'([^']+)'", match.group(0))
            return choice.group(1) if choice else "x"
        return _SAMPLE.get(converter, "x")

    return _ARGUMENT.sub(value, rule.rule)


@pytest.fixture
def guarded_app(database_url: str, issuer: LocalIssuer) -> Iterator[Flask]:
    settings = make_settings(database_url, **issuer.login_settings(BASEURL))
    app = create_app(settings, publisher=RecordingPublisher(), registry=CollectorRegistry())
    yield app
    app.extensions["iotsupport"].database.dispose()


def every_route(app: Flask) -> Iterator[tuple[str, str, str, frozenset[Role]]]:
    for rule in app.url_map.iter_rules():
        if is_static(rule.endpoint):
            continue
        access = access_of(app.view_functions[rule.endpoint])
        roles = access.roles if access is not None else frozenset({Role.ADMIN})
        for method in sorted((rule.methods or set()) - {"OPTIONS"}):
            yield rule.endpoint, method, sample_path(rule), roles


def test_every_protected_route_refuses_strangers(guarded_app: Flask, issuer: LocalIssuer) -> None:
    """The hook, not only the decorators: with login on, each protected route of the URL map
    answers 401 without a token (a page: a redirect to the login), 403 with a token that
    lacks the role, and never lets the request through."""
    client = guarded_app.test_client()
    no_role = {"Authorization": f"Bearer {issuer.token(roles=None)}"}
    checked = 0
    for endpoint, method, path, roles in every_route(guarded_app):
        if not roles:
            continue
        checked += 1
        stranger = client.open(path, method=method, headers={"Origin": BASEURL}, buffered=True)
        if method in ("GET", "HEAD") and not path.startswith("/api/"):
            assert stranger.status_code == 302, (endpoint, method, path)
            assert stranger.headers["Location"].startswith("/api/auth/login?redirect=")
        else:
            assert stranger.status_code == 401, (endpoint, method, path, stranger.status_code)
            if method != "HEAD":
                assert stranger.get_json()["code"] == "unauthorized", (endpoint, method)
        lacking = client.open(path, method=method, headers=no_role, buffered=True)
        assert lacking.status_code == 403, (endpoint, method, path, lacking.status_code)
        if method != "HEAD":
            assert lacking.get_json()["code"] == "forbidden"
    assert checked >= 20


def test_every_public_route_lets_strangers_in(guarded_app: Flask) -> None:
    client = guarded_app.test_client()
    for endpoint, method, path, roles in every_route(guarded_app):
        if roles or method not in ("GET", "HEAD"):
            continue
        own = getattr(guarded_app.view_functions[endpoint], "openapi", None)
        if own is not None and 401 in own.responses:  # says "not logged in" itself
            continue
        response = client.open(path, method=method, buffered=True)  # closes files it sends
        assert response.status_code not in (401, 403), (endpoint, path, response.status_code)
        assert not response.headers.get("Location", "").startswith("/api/auth/login"), endpoint
