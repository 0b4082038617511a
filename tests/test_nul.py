"""NUL (U+0000) anywhere a client can put it: the same 400 on SQLite and on PostgreSQL.

PostgreSQL cannot hold NUL in text: before the central checks, a NUL in a model code or
release version reached a query there and answered 500 on about ten routes (issue 20).
The walk below takes every route of the app, puts NUL in each text path parameter, and
runs on both databases (the `api` fixture).
"""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest
from conftest import assert_error
from conftest import make_settings
from conftest import random_mac
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from test_device_models import SCHEMA
from test_device_models import create_config
from test_device_models import create_model
from werkzeug.routing import IntegerConverter
from werkzeug.routing import PathConverter
from werkzeug.routing import UnicodeConverter

from iotsupport import create_app

NUL = "a\x00b"


def _routes() -> list[tuple[str, str, str]]:
    """(method, URL with NUL in one text parameter, that parameter) for every route."""
    # Building the app opens no database: the URL map is all that is read.
    app = create_app(
        make_settings(f"sqlite:///{Path('/nonexistent/routes.db')}"), registry=CollectorRegistry()
    )
    walk = []
    for rule in app.url_map.iter_rules():
        texts = [
            name
            for name, converter in rule._converters.items()
            if type(converter) in (UnicodeConverter, PathConverter)
        ]
        if rule.rule.startswith(("/static/", "/ui/static/")):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            for name in texts:
                values = {
                    arg: NUL
                    if arg == name
                    else 1
                    if isinstance(rule._converters[arg], IntegerConverter)
                    else "x"
                    for arg in rule.arguments
                }
                url = rule.build(values, append_unknown=False)
                assert url is not None
                walk.append((method, url[1], name))
    return walk


ROUTES = _routes()


def test_the_walk_covers_the_routes_that_failed() -> None:
    urls = {url for _, url, _ in ROUTES}
    assert "/api/models/a%00b" in urls
    assert "/api/models/x/releases/a%00b/image" in urls
    assert len(ROUTES) >= 15


@pytest.mark.parametrize(("method", "url", "parameter"), ROUTES, ids=lambda v: str(v))
def test_nul_in_a_path_parameter_is_the_same_400_on_both_databases(
    api: FlaskClient, method: str, url: str, parameter: str
) -> None:
    create_model(api, "x", SCHEMA)  # so that the NUL is the only thing wrong
    response = api.open(url, method=method, json={} if method != "GET" else None)
    refusal = assert_error(response, 400, "nul_character")
    assert refusal["details"] == {"where": "the path"}


QUERIES = [
    "/api/configs?model=a%00b",
    "/api/configs?q=a%00b",
    "/api/configs/export?model=a%00b",
    "/api/models/x/releases?x%00=1",
    "/api/models?since=%00",
]


@pytest.mark.parametrize("url", QUERIES)
def test_nul_in_the_query_is_the_same_400_on_both_databases(api: FlaskClient, url: str) -> None:
    create_model(api, "x", SCHEMA)
    assert_error(api.get(url), 400, "nul_character")


def bodies(config_id: int) -> list[tuple[str, str, dict[str, t.Any]]]:
    """Bodies whose strings reach a query: NUL sent as \\u0000 in the JSON."""
    mac = random_mac()
    return [
        ("POST", "/api/configs", {"mac_address": mac, "content": {}, "model": NUL}),
        ("PUT", f"/api/configs/{config_id}", {"content": {}, "model": NUL}),
        ("POST", "/api/configs/bulk", {"select": {"model": NUL}, "patch": {"a": 1}}),
        ("POST", "/api/models", {"code": NUL, "name": "N", "schema": SCHEMA}),
        ("POST", "/api/models", {"code": "n", "name": NUL, "schema": SCHEMA}),
        ("PUT", "/api/models/x", {"name": "X", "schema": SCHEMA, "description": NUL}),
        ("POST", "/api/models/x/rollouts", {"version": NUL, "stages": [100]}),
    ]


def test_nul_in_a_json_string_is_the_same_400_on_both_databases(api: FlaskClient) -> None:
    create_model(api, "x", SCHEMA)
    config = create_config(api, random_mac(), {"deviceName": "A"})
    for method, url, body in bodies(config["id"]):
        response = api.open(url, method=method, json=body)
        assert 400 <= response.status_code < 500, (url, body, response.get_data(as_text=True))
        assert response.get_json()["code"] in ("nul_character", "validation_error"), url
    # Content may hold an escaped NUL: it is JSON text, stored as sent.
    response = api.put(f"/api/configs/{config['id']}", json={"content": {"deviceName": NUL}})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert api.get(f"/api/configs/{config['id']}").get_json()["content"] == {"deviceName": NUL}


def test_nul_in_a_device_header_is_a_400(api: FlaskClient) -> None:
    response = api.get("/api/device/firmware", headers={"X-Firmware-Version": NUL})
    assert_error(response, 400, "nul_character")
