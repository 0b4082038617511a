"""Every route declares who may call it, so a new route can never be left open by accident."""

from __future__ import annotations

from flask import Flask

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
