"""Every route declares who may call it, so a new route can never be left open by accident."""

from __future__ import annotations

from flask import Flask

from iotsupport.auth.access import Role
from iotsupport.auth.access import access_of

# Routes that devices, probes and the docs reach without any token.
EXPECTED_PUBLIC = {
    "configs.device_config",
    "assets.download_asset",
    "images.lvgl_image",
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
}


def is_static(endpoint: str) -> bool:
    """Flask's own static endpoints (the app's and each blueprint's) serve files to anyone."""
    return endpoint == "static" or endpoint.endswith(".static")


def declared(app: Flask) -> dict[str, frozenset[Role]]:
    return {
        endpoint: access.roles
        for endpoint, view in app.view_functions.items()
        if (access := access_of(view)) is not None
    }


def test_every_route_declares_its_access(app: Flask) -> None:
    unmarked = sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if not is_static(rule.endpoint) and access_of(app.view_functions[rule.endpoint]) is None
    )
    assert unmarked == [], "mark these routes with @public or @requires(...)"


def test_only_the_expected_routes_are_public(app: Flask) -> None:
    public = {endpoint for endpoint, roles in declared(app).items() if not roles}
    assert EXPECTED_PUBLIC <= public
    assert public - EXPECTED_PUBLIC == set(), "a new public route must be added here on purpose"


def test_admin_routes_admit_admin(app: Flask) -> None:
    for endpoint, roles in declared(app).items():
        if roles:
            assert Role.ADMIN in roles, endpoint
