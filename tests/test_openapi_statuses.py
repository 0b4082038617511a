"""Every status an operation answers is in the OpenAPI document.

Each documented operation is called with a battery of requests built from its
own declaration (path parameters of every converter, bodies and queries with
wrong types, missing and oversized parts, conditional headers) in several
situations: login off and on (no token, no role, admin, cross-site cookie),
assets off, the database away, the identity provider away. Whatever comes
back must be documented for that operation, and nothing is ever a 500.
"""

from __future__ import annotations

import io
import re
import typing as t
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from assets_support import build_assets_app
from assets_support import multipart
from assets_support import rsa_key
from assets_support import signed
from assets_support import signed_fields
from assets_support import write_private_key
from conftest import free_port
from esp_images import AppInfo
from esp_images import small_image
from flask import Flask
from flask.testing import FlaskClient
from local_issuer import LocalIssuer
from PIL import Image
from pydantic import BaseModel
from pytest_httpserver import HTTPServer
from request_bodies import VALID_BODIES
from werkzeug.test import TestResponse

from iotsupport.api.spec import Operation
from iotsupport.auth import ACCESS_COOKIE
from iotsupport.extensions import state

MAC = "aa:bb:cc:dd:ee:01"
Observed = defaultdict[tuple[str, str], set[int]]
_ARGUMENT = re.compile(r"<(?:(\w+)[^:<>]*:)?(\w+)>")
SAMPLES = {
    "int": ["1", "2", "3", "999999"],
    "mac": [MAC, "aa-bb-cc-dd-ee-02", "nope"],
    "filename": ["fw.bin", "missing.bin", "..", "fw%E2%80%AE.bin"],
    "default": ["x"],
}


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    return buffer.getvalue()


def template(rule: str) -> str:
    return _ARGUMENT.sub(r"{\2}", rule)


def key(rule: str, method: str) -> tuple[str, str]:
    """The OpenAPI operation of a request (HEAD is documented as the GET it mirrors)."""
    return template(rule), "get" if method == "HEAD" else method.lower()


def paths(rule: str) -> list[str]:
    found = [""]
    for literal, match in zip(
        _ARGUMENT.split(rule)[::3], [*_ARGUMENT.finditer(rule), None], strict=True
    ):
        found = [prefix + literal for prefix in found]
        if match is not None:
            samples = SAMPLES[match.group(1) or "default"]
            found = [prefix + sample for prefix in found for sample in samples]
    return found


METHOD_ORDER = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def operations(app: Flask) -> list[tuple[str, str, str, Operation]]:
    """Every documented (rule, method), reads first and deletes last."""
    found = []
    for rule in app.url_map.iter_rules():
        spec: Operation | None = getattr(app.view_functions[rule.endpoint], "openapi", None)
        if spec is None:
            continue
        for method in (rule.methods or set()) - {"OPTIONS"}:
            found.append((rule.rule, method, rule.endpoint, spec))
    return sorted(found, key=lambda item: (METHOD_ORDER.index(item[1]), item[0]))


def wrong_values(model: type[BaseModel], valid: dict[str, t.Any]) -> Iterator[dict[str, t.Any]]:
    """The valid body with one field of another JSON type, or left out."""
    for name in model.model_fields:
        field = model.model_fields[name].alias or name
        wrong: tuple[t.Any, ...] = (True, "1", 1, 1.5, None, [], {"a": 1}, "\ud800")
        for value in wrong:
            yield {**valid, field: value}
        yield {key: value for key, value in valid.items() if key != field}


def queries(spec: Operation, upstream: str) -> list[dict[str, str]]:
    if spec.query is None:
        return [{}]
    if spec.query.__name__ == "DiffQuerySchema":
        base = {"from": "1"}
        extra = [{"from": "1", "to": "2"}, {"from": "1", "to": "99"}]
    else:
        base = {"url": upstream + "/a.png"}
        extra = [
            {"url": upstream + "/page.html"},
            {"url": upstream + "/gone"},
            {"url": f"http://127.0.0.1:{free_port()}/a.png"},
            {"url": "http://10.0.0.1/a.png"},
            {"url": "ftp://example.com/a.png"},
            {"url": upstream + "/a.png", "headers": "Cookie"},
            {"url": upstream + "/a.png", "headers": "Authorization"},
            {"url": upstream + "/a.png", "format": "RGB565", "width": "3"},
        ]
    found = [{}, base, {**base, "unknown": "1"}, *extra]
    for name, field in spec.query.model_fields.items():
        for value in ("true", "1.0", " 1", "+1", "-1", "0", "1e3", "\uff11", "99999999999", ""):
            found.append({**base, field.alias or name: value})
    return found


def requests(
    method: str, rule: str, spec: Operation, upstream: str, full: bool
) -> Iterator[tuple[str, dict[str, t.Any]]]:
    """(path, keyword arguments of client.open) for one operation; not `full`: one
    plain request (with a valid body, when it takes one) per operation."""
    if not full:
        path = paths(rule)[0]
        if spec.body is not None:
            yield path, {"json": VALID_BODIES[spec.body.__name__]}
        elif spec.form is not None:
            body, content_type = multipart(signed(), "new.bin", b"firmware")
            yield path, {"data": body, "content_type": content_type}
        else:
            yield path, {"query_string": queries(spec, upstream)[1 if spec.query else 0]}
        return
    for path in paths(rule):
        for query in queries(spec, upstream):
            yield path, {"query_string": query}
        yield path, {"headers": {"If-None-Match": "*"}}
        yield path, {"headers": {"If-Match": '"stale"'}}
        yield path, {"headers": {"Range": "bytes=0-1"}}
        yield path, {"headers": {"Range": "bytes=999999-"}}
        yield path, {"headers": {"X-Big": "x" * 40_000}}
        yield path + "?" + "a" * 9000, {}
        if spec.body is not None:
            valid = VALID_BODIES[spec.body.__name__]
            yield path, {"json": valid}
            for wrong in wrong_values(spec.body, valid):
                yield path, {"json": wrong}
            for raw in (b"", b"{", b"[]", b"null", b'{"a": NaN}', b"\xff", b" " * 2_000_000):
                yield path, {"data": raw, "content_type": "application/json"}
        if spec.form is not None:
            once = signed_fields("twice.bin", b"firmware")
            uploads: list[tuple[str, bytes, dict[str, str]]] = [
                ("twice.bin", b"firmware", once),
                ("twice.bin", b"firmware", once),  # the same pair again: 409
                ("new.bin", b"firmware", signed()),
                ("new.bin", b"firmware", signed(key=rsa_key("other"))),
                ("../x", b"firmware", signed()),
                ("big.bin", b"x" * 5000, signed()),
            ]
            for name, content, fields in uploads:
                body, content_type = multipart(fields, name, content)
                yield path, {"data": body, "content_type": content_type}
            yield (
                path,
                {"data": b"--x\r\nbroken", "content_type": "multipart/form-data; boundary=x"},
            )
            yield path, {"json": {"file": "x"}}


def seed(client: FlaskClient) -> None:
    """A config with three versions (of model x), a deleted one, an asset, and model x's
    release x, rolled out."""
    client.post("/api/models", json={"code": "x", "name": "X", "schema": {"type": "object"}})
    image = small_image(app=AppInfo(version="x"))  # under the walk's ASSET_MAX_BYTES
    body, content_type = multipart({}, "x.bin", image)
    client.post("/api/models/x/releases", data=body, content_type=content_type)
    created = client.post(
        "/api/configs", json={"mac_address": MAC, "content": {"v": 1}, "model": "x"}
    )
    config_id = created.get_json()["id"]
    for version in (2, 3):
        client.put(f"/api/configs/{config_id}", json={"content": {"v": version}})
    other = client.post("/api/configs", json={"mac_address": "aa:bb:cc:dd:ee:02", "content": {}})
    client.delete(f"/api/configs/{other.get_json()['id']}")
    body, content_type = multipart(signed(), "fw.bin", b"firmware")
    client.post("/api/assets", data=body, content_type=content_type)


def walk(
    app: Flask, observed: Observed, upstream: str, *, full: bool = True, **headers: str
) -> None:
    client = app.test_client()
    for rule, method, _endpoint, spec in operations(app):
        for path, options in requests(method, rule, spec, upstream, full):
            options.setdefault("headers", {}).update(headers)
            response: TestResponse = client.open(path, method=method, **options)
            observed[key(rule, method)].add(response.status_code)
            assert response.status_code != 500, (method, path, response.get_data(as_text=True))
            response.close()


@pytest.fixture
def upstream(httpserver_ipv4: HTTPServer) -> Iterator[str]:
    httpserver_ipv4.expect_request("/a.png").respond_with_data(png(), content_type="image/png")
    httpserver_ipv4.expect_request("/page.html").respond_with_data(
        "<html>", content_type="text/html"
    )
    httpserver_ipv4.expect_request("/gone").respond_with_data("", status=404)
    yield httpserver_ipv4.url_for("").rstrip("/")
    httpserver_ipv4.clear()


def documented(app: Flask) -> dict[tuple[str, str], set[int]]:
    document = app.test_client().get("/api/openapi.json").get_json()
    return {
        (path, method): {int(status) for status in entry["responses"]}
        for path, methods in document["paths"].items()
        for method, entry in methods.items()
    }


def assert_documented(app: Flask, observed: Observed) -> None:
    docs = documented(app)
    missing = {
        key: sorted(statuses - docs[key])
        for key, statuses in observed.items()
        if statuses - docs[key]
    }
    assert missing == {}, "statuses answered but not in the OpenAPI document"


def build(
    database_url: str, tmp_path: Path, upstream: str, *, assets: bool = True, **overrides: t.Any
) -> Flask:
    folder = tmp_path / "assets"
    folder.mkdir(exist_ok=True)
    port = upstream.rsplit(":", 1)[1]
    allowed = f"127.0.0.1:{port}"
    return build_assets_app(
        database_url,
        folder if assets else None,
        write_private_key(tmp_path / "ci.pem", rsa_key()),
        asset_max_bytes=4096,
        image_proxy_allowed_hosts=overrides.pop("image_proxy_allowed_hosts", allowed),
        **overrides,
    )


def test_login_off_with_and_without_assets(
    database_url: str, tmp_path: Path, upstream: str
) -> None:
    observed: Observed = defaultdict(set)
    app = build(database_url, tmp_path, upstream)
    seed(app.test_client())
    walk(app, observed, upstream)
    walk(build(database_url, tmp_path, upstream, assets=False), observed, upstream)
    assert_documented(app, observed)
    # The walk reaches the answers that matter, not only refusals.
    # An unknown MAC is the same 401 as a wrong token (DEVICE_AUTH=optional).
    assert {200, 304, 400, 401} <= observed[("/api/configs/{mac}.json", "get")]
    assert {200, 400, 404, 413} <= observed[("/api/configs/{config_id}/rollback", "post")]
    assert {200, 400, 409, 413} <= observed[("/api/assets", "post")]
    assert {200, 206, 304, 400, 404, 416, 503} <= observed[("/api/assets/{filename}", "get")]
    assert {200, 400, 403, 422, 502} <= observed[("/api/images/lvgl", "get")]
    image = ("/api/models/{code}/releases/{version}/image", "get")
    assert {200, 206, 304, 404, 416} <= observed[image]
    assert {201, 400, 409} <= observed[("/api/models/{code}/rollouts", "post")]
    assert {200, 404, 409} <= observed[("/api/rollouts/{rollout_id}/cancel", "post")]
    state(app).database.dispose()


def test_login_on(database_url: str, tmp_path: Path, upstream: str, issuer: LocalIssuer) -> None:
    observed: Observed = defaultdict(set)
    app = build(database_url, tmp_path, upstream, **issuer.login_settings())
    for headers in (
        {},
        {"Authorization": f"Bearer {issuer.token(roles=None)}"},
        {"Authorization": f"Bearer {issuer.token(roles=['asset-uploader'])}"},
        {"Authorization": f"Bearer {issuer.token()}"},
        {"Authorization": "Bearer not-a-jwt"},
    ):
        walk(app, observed, upstream, full=False, **headers)
    cookie_client = app.test_client()
    cookie_client.set_cookie(ACCESS_COOKIE, issuer.token())
    for rule, method, _endpoint, _spec in operations(app):
        for path in paths(rule):
            response = cookie_client.open(path, method=method, headers={"Origin": "http://evil"})
            observed[key(rule, method)].add(response.status_code)
    assert_documented(app, observed)
    assert observed[("/api/configs", "get")] >= {200, 401, 403}
    assert 403 in observed[("/api/auth/logout", "post")]
    state(app).database.dispose()


def test_database_and_provider_away(tmp_path: Path, upstream: str) -> None:
    observed: Observed = defaultdict(set)
    away = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"
    app = build(away, tmp_path, upstream, db_connect_timeout_seconds=0.2)
    walk(app, observed, upstream, full=False)
    provider_away = build(
        f"sqlite:///{tmp_path}/absent/none.db",
        tmp_path,
        upstream,
        oidc_enabled=True,
        baseurl="http://iot.test",
        oidc_issuer_url=f"http://127.0.0.1:{free_port()}",
        oidc_client_id="iotsupport",
        oidc_client_secret="client-secret",
    )
    header = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ"  # {"alg":"RS256","kid":"k"}
    walk(provider_away, observed, upstream, full=False, Authorization=f"Bearer {header}.e30.c2ln")
    assert_documented(app, observed)
    assert 503 in observed[("/api/configs", "get")]
    assert 503 in observed[("/api/configs/{mac}.json", "get")]
