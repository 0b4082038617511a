"""Refused requests: always 4xx in the JSON error shape, never a 500, never a row left behind."""

from __future__ import annotations

import io
import json
import random
import re
import typing as t
from collections.abc import Iterator

import pytest
from conftest import RecordingPublisher
from conftest import assert_error
from conftest import config_count
from conftest import make_settings
from conftest import post_raw
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from request_bodies import VALID_BODIES
from werkzeug.test import TestResponse

from iotsupport import create_app
from iotsupport.api.spec import Operation

MAC = "aa:bb:cc:dd:ee:01"
M = f'"mac_address": "{MAC}"'
DEEP = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 50_000 + "1" + "}" * 50_000


def with_content(content_source: str) -> bytes:
    return ("{" + M + ', "content": ' + content_source + "}").encode()


def string_content(text: str) -> bytes:
    """A body whose content is the string `text` (JSON-escaped by json.dumps)."""
    return ("{" + M + ', "content": ' + json.dumps(text) + "}").encode()


# Bodies of POST /api/configs that must be refused with 400.
BAD_CREATE_BODIES: dict[str, bytes] = {
    "empty body": b"",
    "whitespace body": b"  \n ",
    "not json": b"hello",
    "truncated json": b'{"mac_address": "aa:bb:cc:dd:ee:01", "content": {"a": 1}',
    "trailing garbage": with_content("{}") + b" x",
    "two documents": with_content("{}") + with_content("{}"),
    "invalid utf-8": with_content("{}").replace(b"{}", b'{"\xff": 1}'),
    "overlong utf-8": with_content("{}").replace(b"{}", b'{"\xc0\xaf": 1}'),
    "utf-8 encoded surrogate": with_content("{}").replace(b"{}", b'{"\xed\xa0\x80": 1}'),
    "latin-1 body": with_content('{"a": "caf\u00e9"}').decode().encode("latin-1"),
    "utf-16 body": with_content("{}").decode().encode("utf-16"),
    "utf-8 bom": b"\xef\xbb\xbf" + with_content("{}"),
    "json array body": b"[]",
    "json array of the object": b"[" + with_content("{}") + b"]",
    "json string body": b'"{}"',
    "json number body": b"42",
    "json null body": b"null",
    "json true body": b"true",
    "missing mac": b'{"content": {"a": 1}}',
    "missing content": ("{" + M + "}").encode(),
    "missing both": b"{}",
    "mac null": b'{"mac_address": null, "content": {}}',
    "content array": with_content("[1, 2]"),
    "content empty array": with_content("[]"),
    "content number": with_content("1"),
    "content float": with_content("1.5"),
    "content true": with_content("true"),
    "content null": with_content("null"),
    "content string not json": string_content("{nope"),
    "content string empty": string_content(""),
    "content string blank": string_content("   "),
    "content string json array": string_content("[1, 2]"),
    "content string json string": string_content('"{}"'),
    "content string json number": string_content("3"),
    "content string json null": string_content("null"),
    "content string two objects": string_content("{}{}"),
    "content string trailing text": string_content('{"a": 1} trailing'),
    "content string single quotes": string_content("{'a': 1}"),
    "content string trailing comma": string_content('{"a": 1,}'),
    "content string comment": string_content('{"a": 1 /* c */}'),
    "content NaN": with_content('{"a": NaN}'),
    "content Infinity": with_content('{"a": Infinity}'),
    "content -Infinity": with_content('{"a": -Infinity}'),
    "content string NaN": string_content('{"a": NaN}'),
    "content string Infinity": string_content('{"a": [Infinity]}'),
    "content 1e999": with_content('{"a": 1e999}'),
    "content -1e999": with_content('{"a": -1e999}'),
    "content string 1e999": string_content('{"a": 1e999}'),
    "content huge integer": with_content('{"a": 1' + "0" * 5000 + "}"),
    "content string huge integer": string_content('{"a": 1' + "0" * 5000 + "}"),
    "deeply nested content": with_content('{"a": ' + DEEP + "}"),
    "deeply nested object content": with_content(DEEP_OBJECT),
    "deeply nested string content": string_content('{"a": ' + DEEP + "}"),
    "deeply nested body": b"[" * 100_000 + b"]" * 100_000,
    "lone surrogate in string content": string_content('{"a": "\ud800"}'),
    "lone low surrogate in string content": string_content('{"\udc00": 1}'),
    "lone surrogate in mac": b'{"mac_address": "\\ud800", "content": {}}',
    "raw NUL inside string content": string_content('{"deviceName": "a\u0000b"}'),
    "raw control char in object content": with_content('{"a": "x\ty"}'),
    "content string with raw newline in a string": string_content('{"a": "x\ny"}'),
}


@pytest.mark.parametrize("body", BAD_CREATE_BODIES.values(), ids=BAD_CREATE_BODIES.keys())
def test_bad_create_is_400_and_stores_nothing(
    client: FlaskClient, publisher: RecordingPublisher, body: bytes
) -> None:
    post_raw(client, b'{"mac_address": "11:22:33:44:55:66", "content": {"keep": 1}}')
    before = client.get("/api/configs").get_json()["configs"]
    publisher.messages.clear()
    assert_error(post_raw(client, body), 400)
    assert client.get("/api/configs").get_json()["configs"] == before
    assert client.get(f"/api/configs/{MAC}.json").status_code == 401  # no such device
    assert publisher.messages == []


# PUT needs no MAC, so these two bodies are valid updates.
BAD_UPDATE_BODIES = {
    name: body
    for name, body in BAD_CREATE_BODIES.items()
    if name not in {"missing mac", "mac null"}
}


@pytest.mark.parametrize("body", BAD_UPDATE_BODIES.values(), ids=BAD_UPDATE_BODIES.keys())
def test_bad_update_is_400_and_changes_nothing(
    client: FlaskClient, publisher: RecordingPublisher, body: bytes
) -> None:
    created = post_raw(client, with_content('{"keep":  1}')).get_json()
    url = f"/api/configs/{created['id']}"
    publisher.messages.clear()
    # The create bodies carry the config's own MAC, which PUT accepts; the content is the fault.
    response = client.put(url, data=body, content_type="application/json")
    assert_error(response, 400)
    assert client.get(url).get_json() == created
    assert client.get(f"/api/configs/{MAC}.json").data == b'{"keep":  1}'
    assert publisher.messages == []


def test_nul_escape_in_device_name_is_stored_but_not_derived(client: FlaskClient) -> None:
    # "\u0000" as an escape is valid JSON; PostgreSQL text cannot hold NUL, so the
    # derived column must not receive it. The content itself is kept verbatim.
    body = with_content('{"deviceName": "a\\u0000b", "deviceEntityId": "e\\u0000"}')
    response = post_raw(client, body)
    assert response.status_code == 201
    assert response.get_json()["device_name"] is None
    assert response.get_json()["device_entity_id"] is None
    assert client.get(f"/api/configs/{MAC}.json").data == b'{"deviceName": "a\\u0000b", ' + (
        b'"deviceEntityId": "e\\u0000"}'
    )


def test_surrogate_pair_escapes_are_fine(client: FlaskClient) -> None:
    response = post_raw(client, string_content('{"emoji": "\\ud83d\\ude00"}'))
    assert response.status_code == 201
    assert response.get_json()["content"] == {"emoji": "\U0001f600"}


@pytest.mark.parametrize("extra", ['"id": 99', '"version": 50', '"created_at": "1999-01-01"'])
def test_server_managed_fields_in_the_body_are_ignored(client: FlaskClient, extra: str) -> None:
    body = ("{" + M + ', "content": {}, ' + extra + "}").encode()
    created = post_raw(client, body).get_json()
    assert created["version"] == 1
    assert created["id"] != 99
    assert not created["created_at"].startswith("1999")


# --- size limit ------------------------------------------------------------------


def test_body_over_the_default_limit_is_413(client: FlaskClient) -> None:
    big = json.dumps({"mac_address": MAC, "content": {"blob": "x" * (1024 * 1024 + 10)}})
    assert_error(post_raw(client, big), 413)
    assert config_count(client) == 0


def test_body_over_a_configured_limit_is_413(
    database_url: str, publisher: RecordingPublisher
) -> None:
    app = create_app(
        make_settings(database_url, max_request_bytes=2048),
        publisher=publisher,
        registry=CollectorRegistry(),
    )
    client = app.test_client()
    small = json.dumps({"mac_address": MAC, "content": {"blob": "x" * 1000}})
    big = json.dumps({"mac_address": "aa:bb:cc:dd:ee:02", "content": {"blob": "x" * 3000}})
    assert post_raw(client, small).status_code == 201
    assert_error(post_raw(client, big), 413)
    created_id = client.get("/api/configs").get_json()["configs"][0]["id"]
    put = client.put(f"/api/configs/{created_id}", data=big, content_type="application/json")
    assert_error(put, 413)
    assert config_count(client) == 1
    assert client.get(f"/api/configs/{MAC}.json").get_json() == {"blob": "x" * 1000}
    assert publisher.messages == [("iotsupport/updates/configs", {"filename": f"{MAC}.json"})]
    app.extensions["iotsupport"].database.dispose()


# --- routing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/devices/abc",
        "/api",
        "/api/nope",
        "/api/configs/1/extra",
        "/api/configs/abc",
        "/api/configs/-1",
        "/api/configs/1.5",
        "/api/configs/aa:bb:cc:dd:ee:01.xml",
        "/api/configs/aa:bb:cc:dd:ee:01.json/x",
        "/api/docs/other.js",
        "/api/docs/../../etc/passwd",
    ],
)
def test_unknown_routes_are_404_json(client: FlaskClient, path: str) -> None:
    assert_error(client.get(path), 404, "not_found")


@pytest.mark.parametrize(
    "config_id",
    [
        "2147483648",  # 2**31
        "4294967296",  # 2**32
        "9223372036854775807",  # 2**63 - 1
        "9223372036854775808",  # 2**63
        "18446744073709551616",  # 2**64
        "9" * 40,
    ],
)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_ids_overflowing_an_integer_are_404(
    client: FlaskClient, method: str, config_id: str
) -> None:
    post_raw(client, with_content("{}"))
    response = client.open(f"/api/configs/{config_id}", method=method, json={"content": {"a": 1}})
    assert_error(response, 404)
    assert config_count(client) == 1


@pytest.mark.parametrize("number", ["2147483648", "9" * 40])
def test_every_numeric_route_refuses_overflowing_numbers_with_404(
    app: Flask, client: FlaskClient, number: str
) -> None:
    """Ids and versions anywhere in a URL (history, rollback, pages ...) never reach the
    database as an overflowing integer."""
    numeric = [rule for rule in app.url_map.iter_rules() if "<int:" in rule.rule]
    assert len(numeric) >= 8
    for rule in numeric:
        path = re.sub(r"<int:\w+>", number, rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            response = client.open(path, method=method, json={"version": 1, "content": {}})
            assert response.status_code == 404, (method, path, response.get_data(as_text=True))


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/api/configs", {"GET", "POST"}),
        ("PUT", "/api/configs", {"GET", "POST"}),
        ("PATCH", "/api/configs", {"GET", "POST"}),
        ("POST", "/api/configs/1", {"GET", "PUT", "DELETE"}),
        ("PATCH", "/api/configs/1", {"GET", "PUT", "DELETE"}),
        ("PUT", "/api/configs/aa:bb:cc:dd:ee:01.json", {"GET"}),
        ("POST", "/api/configs/aa:bb:cc:dd:ee:01.json", {"GET"}),
        ("DELETE", "/api/configs/aa:bb:cc:dd:ee:01.json", {"GET"}),
        ("POST", "/api/health", {"GET"}),
        ("DELETE", "/metrics", {"GET"}),
        ("POST", "/api/openapi.json", {"GET"}),
    ],
)
def test_wrong_method_is_405_with_allow(
    client: FlaskClient, method: str, path: str, allowed: set[str]
) -> None:
    post_raw(client, with_content("{}"))
    response = client.open(path, method=method, json={"content": {}})
    assert_error(response, 405, "method_not_allowed")
    allow = {part.strip() for part in response.headers["Allow"].split(",")}
    assert allowed <= allow
    assert config_count(client) == 1
    assert client.get(f"/api/configs/{MAC}.json").data == b"{}"


def test_no_refusal_ever_leaves_a_row(client: FlaskClient) -> None:
    for body in BAD_CREATE_BODIES.values():
        assert post_raw(client, body).status_code == 400
    assert config_count(client) == 0


# --- fuzz-ish: random mutations of a valid body -----------------------------------

VALID = b'{"mac_address": "aa:bb:cc:dd:ee:01", "content": {"deviceName": "k", "n": [1, 2.5]}}'
ALPHABET = b'{}[]":,\\ \t\n0123456789.eE+-abcdefnulltrue\x00\xff\xc3\xa9'


def mutate(rng: random.Random, data: bytes) -> bytes:
    chars = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(4)
        position = rng.randrange(len(chars) + 1)
        if action == 0 and chars:  # delete a byte
            del chars[min(position, len(chars) - 1)]
        elif action == 1:  # insert a byte
            chars.insert(position, rng.choice(ALPHABET))
        elif action == 2 and chars:  # replace a byte
            chars[min(position, len(chars) - 1)] = rng.choice(ALPHABET)
        else:  # truncate
            chars = chars[:position]
    return bytes(chars)


def test_mutated_bodies_never_500(client: FlaskClient, publisher: RecordingPublisher) -> None:
    rng = random.Random(20261124)
    created = 0
    for _ in range(400):
        body = mutate(rng, VALID)
        response = post_raw(client, body)
        assert response.status_code in {201, 400, 409}, (body, response.data)
        if response.status_code == 201:
            created += 1
            config = response.get_json()
            device = client.get(f"/api/configs/{config['mac_address']}.json")
            # Whatever was accepted is served back as a JSON object equal to the response.
            assert json.loads(device.data) == config["content"]
            assert client.delete(f"/api/configs/{config['id']}").status_code == 204
        else:
            assert_error(response, response.status_code)
    assert config_count(client) == 0
    assert len(publisher.messages) == created


JSON_VALUES: list[t.Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    "",
    "x",
    "{}",
    "[]",
    [],
    [1],
    {},
    {"a": 1},
    "aa:bb:cc:dd:ee:01",
    {"mac_address": "aa:bb:cc:dd:ee:01"},
]


@pytest.mark.parametrize("mac", JSON_VALUES)
def test_every_json_type_for_each_field_is_handled(client: FlaskClient, mac: t.Any) -> None:
    valid_contents = [{}, {"a": 1}, "{}", {"mac_address": MAC}]
    for content in JSON_VALUES:
        response = client.post("/api/configs", json={"mac_address": mac, "content": content})
        if mac == MAC and content in valid_contents:
            assert response.status_code == 201
            assert client.delete(f"/api/configs/{response.get_json()['id']}").status_code == 204
        else:
            assert_error(response, 400)
    assert config_count(client) == 0


def test_large_but_allowed_config_roundtrips(client: FlaskClient) -> None:
    content = json.dumps({f"key{i}": ["v" * 50, i, {"n": i / 7}] for i in range(5000)})
    assert len(content) < 1024 * 1024
    response = client.post("/api/configs", json={"mac_address": MAC, "content": content})
    assert response.status_code == 201
    assert client.get(f"/api/configs/{MAC}.json").get_data(as_text=True) == content


# --- strict types: no boolean or string is ever taken for a number --------------------------


def documented_operations(app: Flask) -> Iterator[tuple[str, str, Operation]]:
    for rule in app.url_map.iter_rules():
        spec: Operation | None = getattr(app.view_functions[rule.endpoint], "openapi", None)
        if spec is None:
            continue
        path = re.sub(r"<int:\w+>", "1", rule.rule).replace("<mac:mac>", MAC)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield method, path, spec


def takes(field: t.Any, kind: type) -> bool:
    """Whether the field's type is `kind`, maybe optional or annotated."""
    pending = [field.annotation]
    while pending:
        annotation = pending.pop()
        if annotation is kind:
            return True
        arguments = t.get_args(annotation)
        pending.extend(arguments[:1] if t.get_origin(annotation) is t.Annotated else arguments)
    return False


def test_every_body_is_strict(app: Flask, client: FlaskClient) -> None:
    post_raw(client, with_content('{"v": 1}'))
    checked = 0
    for method, path, spec in documented_operations(app):
        if spec.body is None:
            continue
        assert spec.body.model_config.get("strict") is True, spec.body.__name__
        valid = VALID_BODIES[spec.body.__name__]
        for name, field in spec.body.model_fields.items():
            key = field.alias or name  # as the JSON spells it
            wrong: list[t.Any] = []
            if takes(field, int):
                wrong = [True, False, "1", "01", 1.0, 1.5]
            elif takes(field, str) and name != "content":
                wrong = [1, True, 1.5]
            for value in wrong:
                checked += 1
                response = client.open(path, method=method, json={**valid, key: value})
                body = assert_error(response, 400, "validation_error")
                assert key in {error["field"] for error in body["details"]["errors"]}
    assert checked >= 10
    assert client.get("/api/configs/1").get_json()["version"] == 1


def test_every_query_number_is_plain_digits(app: Flask, client: FlaskClient) -> None:
    post_raw(client, with_content('{"v": 1}'))
    client.put("/api/configs/1", json={"content": {"v": 2}})
    checked = 0
    for method, path, spec in documented_operations(app):
        if spec.query is None:
            continue
        base = (
            {"from": "1"}
            if "from" in {f.alias for f in spec.query.model_fields.values()}
            else {"url": "http://127.0.0.1:9/a.png"}
        )
        for name, field in spec.query.model_fields.items():
            if not takes(field, int):
                continue
            for value in ("true", "1.0", "+1", " 1", "1 ", "1e0", "0x1", "\uff11", "1_0", ""):
                checked += 1
                query = {**base, field.alias or name: value}
                body = assert_error(client.open(path, method=method, query_string=query), 400)
                assert body["code"] == "validation_error", (path, query)
    assert checked >= 20


# --- a body without Content-Length (chunked) is held to the same limit ------------------------


def post_chunked(client: FlaskClient, body: bytes) -> TestResponse:
    """As a server that de-chunks the body hands it over: no CONTENT_LENGTH, a stream
    that ends with the body (wsgi.input_terminated)."""
    return client.post(
        "/api/configs",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        environ_overrides={"wsgi.input_terminated": True},
    )


@pytest.mark.parametrize("extra", [1, 1000, 500_000, 1_000_000])
def test_a_chunked_body_over_the_limit_is_413_never_cut_short(
    client: FlaskClient, publisher: RecordingPublisher, extra: int
) -> None:
    head = b'{"mac_address": "' + MAC.encode() + b'", "content": {"blob": "'
    tail = b'"}}'
    raw = head + b"x" * (1024 * 1024 - len(head) - len(tail) + extra) + tail
    error = assert_error(post_chunked(client, raw), 413, "payload_too_large")
    assert error["details"] == {"max_bytes": 1024 * 1024}
    assert config_count(client) == 0
    assert publisher.messages == []


def test_a_chunked_body_at_the_limit_is_read_whole(client: FlaskClient) -> None:
    head = b'{"mac_address": "' + MAC.encode() + b'", "content": {"blob": "'
    tail = b'"}}'
    filler = b"x" * (1024 * 1024 - len(head) - len(tail))
    response = post_chunked(client, head + filler + tail)
    assert response.status_code == 201, response.get_data(as_text=True)[:200]
    assert client.get(f"/api/configs/{MAC}.json").data == b'{"blob": "' + filler + b'"}'
