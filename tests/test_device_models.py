"""Device models: CRUD, JSON Schema checks, configs in a model, validation on every save.

Each rule runs on SQLite and on PostgreSQL (the `api` fixture).
"""

from __future__ import annotations

import json
import threading
import typing as t
from pathlib import Path

import pytest
from conftest import RecordingPublisher
from conftest import assert_error
from conftest import make_settings
from flask import Flask
from flask.testing import FlaskClient
from flask.testing import FlaskCliRunner
from prometheus_client import CollectorRegistry

from iotsupport import create_app
from iotsupport.device_models import guards
from iotsupport.device_models import validation

SCHEMA = {
    "type": "object",
    "properties": {
        "deviceName": {"type": "string", "minLength": 1},
        "display": {
            "type": "object",
            "properties": {"brightness": {"type": "integer", "minimum": 0, "maximum": 100}},
        },
    },
    "required": ["deviceName"],
}
DRAFT7 = "http://json-schema.org/draft-07/schema#"
TEMPLATE = {"deviceName": "New thermostat", "display": {"brightness": 50}}
TOPIC = "iotsupport/updates/configs"


def create_model(
    client: FlaskClient, code: str = "thermostat", schema: t.Any = None, **extra: t.Any
) -> dict[str, t.Any]:
    body = {"code": code, "name": code.title(), "schema": SCHEMA if schema is None else schema}
    response = client.post("/api/models", json=body | extra)
    assert response.status_code == 201, response.get_data(as_text=True)
    created: dict[str, t.Any] = response.get_json()
    return created


def create_config(
    client: FlaskClient, mac: str, content: t.Any, model: str | None = None
) -> dict[str, t.Any]:
    body = {"mac_address": mac, "content": content, "model": model}
    response = client.post("/api/configs", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)
    created: dict[str, t.Any] = response.get_json()
    return created


def test_model_crud_with_etags(api: FlaskClient) -> None:
    raw = (
        '{"code": "thermostat", "name": "Thermostat", "description": "Hall units",'
        ' "schema": {"type":  "object"}, "template": {"deviceName": ""}}'
    )
    created = api.post("/api/models", data=raw, content_type="application/json")
    assert created.status_code == 201
    body = created.get_json()
    assert body["code"] == "thermostat" and body["version"] == 1
    assert body["schema"] == {"type": "object"} and body["template"] == {"deviceName": ""}
    assert (body["config_count"], body["invalid_count"]) == (0, 0)
    assert '"schema":{"type":  "object"}' in created.get_data(as_text=True)  # kept as sent
    etag = created.headers["ETag"]
    assert api.get("/api/models/thermostat").headers["ETag"] == etag

    listed = api.get("/api/models").get_json()
    assert listed["count"] == 1 and listed["models"][0]["name"] == "Thermostat"
    assert "schema" not in listed["models"][0]

    change = {"name": "Thermostat v2", "schema": {"type": "object"}}
    updated = api.put("/api/models/thermostat", json=change, headers={"If-Match": etag})
    assert updated.status_code == 200
    assert updated.get_json()["version"] == 2 and updated.get_json()["template"] is None
    stale = api.put("/api/models/thermostat", json=change, headers={"If-Match": etag})
    assert_error(stale, 412, "precondition_failed")
    assert_error(api.delete("/api/models/thermostat", headers={"If-Match": etag}), 412)
    assert api.delete("/api/models/thermostat").status_code == 204
    assert_error(api.get("/api/models/thermostat"), 404, "not_found")


def test_model_codes_are_short_unique_and_never_change(api: FlaskClient) -> None:
    create_model(api)
    again = {"code": "thermostat", "name": "x", "schema": {}}
    assert_error(api.post("/api/models", json=again), 409)
    for code in ("Thermo", "a-b", "", "x" * 65, "ü"):
        assert_error(api.post("/api/models", json=again | {"code": code}), 400)
    renamed = {"code": "other", "name": "x", "schema": SCHEMA}
    assert_error(api.put("/api/models/thermostat", json=renamed), 400)
    assert api.get("/api/models").get_json()["count"] == 1


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"type": "objec"}, "/type"),
        ({"properties": {"a": {"minimum": "ten"}}}, "/properties/a/minimum"),
        ({"required": "deviceName"}, "/required"),
        ({"$schema": "https://example.com/my-dialect"}, "/$schema"),
        ({"properties": {"a": {"pattern": "(?=lookahead)"}}}, "/properties/a/pattern"),
        ({"patternProperties": {"(a)\\1": {}}}, "/patternProperties"),
    ],
)
def test_a_schema_that_is_not_valid_json_schema_says_where(
    client: FlaskClient, schema: dict[str, t.Any], where: str
) -> None:
    body = {"code": "m", "name": "M", "schema": schema}
    refusal = assert_error(client.post("/api/models", json=body), 400, "invalid_schema")
    paths = [error["path"] for error in refusal["details"]["errors"]]
    assert any(path.startswith(where) for path in paths), paths
    assert client.get("/api/models").get_json()["count"] == 0


@pytest.mark.parametrize(
    "dialect",
    [
        "https://json-schema.org/draft/2020-12/schema",
        "https://json-schema.org/draft/2019-09/schema",
        "http://json-schema.org/draft-07/schema#",
    ],
)
def test_each_supported_draft_is_checked_against_its_own_metaschema(
    client: FlaskClient, dialect: str
) -> None:
    create_model(client, "ok", {"$schema": dialect, "properties": {"a": {"maximum": 3}}})
    bad = {"$schema": dialect, "properties": {"a": {"maximum": "3"}}}
    body = {"code": "bad", "name": "Bad", "schema": bad}
    assert_error(client.post("/api/models", json=body), 400, "invalid_schema")
    create_config(client, "aa:00:00:00:00:01", {"a": 3}, "ok")
    refused = client.post(
        "/api/configs",
        json={"mac_address": "aa:00:00:00:00:02", "content": {"a": 4}, "model": "ok"},
    )
    assert assert_error(refused, 400, "schema_violation")["details"]["errors"][0]["path"] == "/a"


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "https://example.com/schemas/thermostat.json"},
        {"properties": {"a": {"$ref": "http://127.0.0.1:9/never"}}},
        {"$ref": "other.json#/x"},
        {"$ref": "#/$defs/missing"},
    ],
)
def test_references_outside_the_document_are_refused_and_never_fetched(
    client: FlaskClient, schema: dict[str, t.Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*_args: object, **_kwargs: object) -> t.NoReturn:
        raise AssertionError("a schema check tried to open a connection")

    monkeypatch.setattr("socket.create_connection", no_network)
    monkeypatch.setattr("urllib.request.urlopen", no_network)
    body = {"code": "m", "name": "M", "schema": schema}
    refusal = assert_error(client.post("/api/models", json=body), 400, "invalid_schema")
    assert refusal["details"]["errors"][0]["keyword"] == "$ref"


def test_references_inside_the_document_work(client: FlaskClient) -> None:
    schema = {
        "$id": "https://example.com/thermostat",
        "$defs": {
            "percent": {"type": "integer", "minimum": 0, "maximum": 100},
            "named": {"$id": "named", "required": ["deviceName"]},
            "node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/node"}}},
        },
        "allOf": [{"$ref": "named"}],
        "properties": {
            "brightness": {"$ref": "#/$defs/percent"},
            "tree": {"$ref": "#/$defs/node"},
        },
    }
    create_model(client, "m", schema)
    draft = {"content": {"brightness": 101, "tree": {"child": {"child": 5}}}}
    result = client.post("/api/models/m/validate", json=draft).get_json()
    assert result["valid"] is False
    assert {(e["path"], e["keyword"]) for e in result["errors"]} == {
        ("", "required"),
        ("/brightness", "maximum"),
        ("/tree/child/child", "type"),
    }


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "#"},
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}}},
        {
            "properties": {"x": {"$ref": "#/$defs/loop"}},
            "$defs": {"loop": {"not": {"$ref": "#/$defs/loop"}}},
        },
        # Every keyword that holds a subschema, in every dialect (issue 20).
        {"$schema": DRAFT7, "dependencies": {"a": {"$ref": "#"}}},
        {"$schema": DRAFT7, "dependencies": {"a": {"allOf": [{"$ref": "#"}]}}},
        {"dependentSchemas": {"a": {"$ref": "#"}}},
        {"properties": {"enum": {"$ref": "#/properties/enum"}}},
        {"patternProperties": {"default": {"allOf": [{"$ref": "#/patternProperties/default"}]}}},
        {
            "$schema": DRAFT7,
            "items": [{}],
            "additionalItems": {"$ref": "#/definitions/examples"},
            "definitions": {"examples": {"not": {"$ref": "#/definitions/examples"}}},
        },
        {"additionalProperties": {"$ref": "#/$defs/const"}, "$defs": {"const": {"$ref": "#"}}}
        | {"allOf": [{"$ref": "#/$defs/const"}]},
        {"$ref": "#/x", "x": {"anyOf": [{"$ref": "#/x"}]}},
    ],
)
def test_schemas_that_recurse_without_end_are_refused(
    client: FlaskClient, schema: dict[str, t.Any]
) -> None:
    body = {"code": "m", "name": "M", "schema": schema}
    refusal = assert_error(client.post("/api/models", json=body), 400, "invalid_schema")
    assert "itself" in refusal["error"]


@pytest.mark.parametrize(
    "schema",
    [
        {"properties": {"enum": {"$ref": "#"}}},
        {"$schema": DRAFT7, "dependencies": {"a": ["b"]}, "properties": {"a": {"$ref": "#"}}},
        {"patternProperties": {"const": {"$ref": "#"}}, "additionalProperties": {"$ref": "#"}},
    ],
)
def test_schemas_that_recurse_into_the_content_are_accepted(
    client: FlaskClient, schema: dict[str, t.Any]
) -> None:
    body = {"code": "m", "name": "M", "schema": schema}
    assert client.post("/api/models", json=body).status_code == 201


def test_a_huge_schema_is_refused(app: Flask) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 4 * 1024 * 1024
    client = app.test_client()
    schema = {"properties": {f"key{index:06d}": {"type": "string"} for index in range(12_000)}}
    assert len(json.dumps(schema)) > validation.MAX_SCHEMA_BYTES
    body = {"code": "m", "name": "M", "schema": schema}
    refusal = assert_error(client.post("/api/models", json=body), 400, "invalid_schema")
    assert "256 KB" in refusal["error"]


def test_a_deeply_nested_schema_is_a_400_not_a_500(client: FlaskClient) -> None:
    nested = '{"not": ' * 3000 + "{}" + "}" * 3000
    body = '{"code": "m", "name": "M", "schema": ' + nested + "}"
    response = client.post("/api/models", data=body, content_type="application/json")
    assert_error(response, 400)


def run_with_guard(call: t.Callable[[], t.Any], seconds: float = 30) -> t.Any:
    """Run `call` on a thread; fail (instead of hanging the suite) if it never returns."""
    result: list[t.Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, "validation stalled"
    return result[0]


def test_catastrophic_patterns_cannot_stall_a_worker(client: FlaskClient) -> None:
    """With Python's backtracking `re`, each of these would run for longer than the universe
    has existed; RE2 answers in linear time."""
    evil = "^(a+)+$"
    schema = {
        "properties": {"name": {"pattern": evil}, "tags": {"propertyNames": {"pattern": evil}}},
        "patternProperties": {"^(b|bb)+$": {"type": "integer"}},
        "additionalProperties": {"type": "string"},
        "unevaluatedProperties": False,
    }
    create_model(client, "evil", schema)
    attack = "a" * 5000 + "!"
    content = {"name": attack, "b" * 5000 + "!": "x", "tags": {attack: 1}}
    response = run_with_guard(
        lambda: client.post("/api/models/evil/validate", json={"content": content})
    )
    found = {(error["path"], error["keyword"]) for error in response.get_json()["errors"]}
    assert {("/name", "pattern"), ("/tags", "pattern")} <= found


def test_every_regex_jsonschema_runs_goes_through_re2() -> None:
    """jsonschema calls `re.search` in these modules; each must see RE2's instead."""
    import jsonschema._keywords
    import jsonschema._legacy_keywords
    import jsonschema._utils

    for module in (jsonschema._keywords, jsonschema._legacy_keywords, jsonschema._utils):
        assert module.re.search is guards._linear_search, module.__name__


def test_validation_time_is_bounded(database_url: str, publisher: RecordingPublisher) -> None:
    settings = make_settings(database_url, schema_validation_timeout_seconds=1e-9)
    app = create_app(settings, publisher=publisher, registry=CollectorRegistry())
    client = app.test_client()
    create_model(client, "m", {"type": "object"})
    result = client.post("/api/models/m/validate", json={"content": {"a": 1}}).get_json()
    assert result["valid"] is False
    assert result["errors"][0]["keyword"] == "timeout"
    refused = client.post(
        "/api/configs", json={"mac_address": "aa:00:00:00:00:01", "content": {}, "model": "m"}
    )
    assert_error(refused, 400, "schema_violation")
    app.extensions["iotsupport"].database.dispose()


def test_unique_items_is_linear_and_follows_json_equality(client: FlaskClient) -> None:
    create_model(client, "m", {"properties": {"list": {"uniqueItems": True}}})
    distinct = [{"n": index} for index in range(20_000)]
    ok = client.post("/api/models/m/validate", json={"content": {"list": distinct}})
    assert ok.get_json() == {"valid": True, "errors": []}
    repeated = [1, True, {"a": 1, "b": 2}, {"b": 2, "a": 1.0}]
    result = client.post("/api/models/m/validate", json={"content": {"list": repeated}}).get_json()
    assert [error["keyword"] for error in result["errors"]] == ["uniqueItems"]
    assert client.post(
        "/api/models/m/validate", json={"content": {"list": [1, True, 0, False]}}
    ).get_json()["valid"]


def test_the_template_must_meet_the_schema(api: FlaskClient) -> None:
    body = {"code": "m", "name": "M", "schema": SCHEMA, "template": {"deviceName": ""}}
    refusal = assert_error(api.post("/api/models", json=body), 400, "schema_violation")
    assert refusal["details"]["errors"][0]["path"] == "/deviceName"
    created = create_model(api, "m", template=TEMPLATE)
    assert created["template"] == TEMPLATE


def test_draft_validation_stores_nothing(api: FlaskClient) -> None:
    create_model(api)
    draft = {"content": '{"display": {"brightness": 140}}'}
    result = api.post("/api/models/thermostat/validate", json=draft)
    assert result.status_code == 200
    assert result.get_json() == {
        "valid": False,
        "errors": [
            {
                "path": "/display/brightness",
                "message": "must be at most 100 (it is 140)",
                "keyword": "maximum",
            },
            {
                "path": "",
                "message": '"deviceName" must be set (the schema requires it)',
                "keyword": "required",
            },
        ],
    }
    good = api.post("/api/models/thermostat/validate", json={"content": TEMPLATE})
    assert good.get_json() == {"valid": True, "errors": []}
    assert_error(api.post("/api/models/thermostat/validate", json={"content": "[1]"}), 400)
    assert_error(api.post("/api/models/nope/validate", json={"content": {}}), 404)
    assert api.get("/api/configs").get_json()["count"] == 0


def test_errors_are_capped_at_fifty(client: FlaskClient) -> None:
    create_model(client, "m", {"additionalProperties": {"type": "integer"}})
    content = {f"k{index}": "text" for index in range(80)}
    result = client.post("/api/models/m/validate", json={"content": content}).get_json()
    assert len(result["errors"]) == 50
    first = result["errors"][0]
    assert first["path"].startswith("/k") and first["keyword"] == "type"
    assert first["message"] == "must be a whole number, not a text"


def test_json_pointers_escape_slash_and_tilde(client: FlaskClient) -> None:
    create_model(client, "m", {"additionalProperties": {"type": "integer"}})
    result = client.post("/api/models/m/validate", json={"content": {"a/b~c": "x"}}).get_json()
    assert result["errors"][0]["path"] == "/a~1b~0c"


# --- configs in a model -----------------------------------------------------------------


def test_configs_belong_to_a_model_or_none(api: FlaskClient, publisher: RecordingPublisher) -> None:
    create_model(api)
    free = create_config(api, "aa:00:00:00:00:01", {"anything": True})
    assert (free["model"], free["schema_valid"]) == (None, None)
    config = create_config(api, "aa:00:00:00:00:02", TEMPLATE, "thermostat")
    assert (config["model"], config["schema_valid"]) == ("thermostat", True)

    rows = api.get("/api/configs").get_json()["configs"]
    assert [(row["model"], row["schema_valid"]) for row in rows] == [
        (None, None),
        ("thermostat", True),
    ]
    only = api.get("/api/configs?model=thermostat").get_json()
    assert [row["id"] for row in only["configs"]] == [config["id"]] and only["count"] == 1
    assert_error(api.get("/api/configs?model=nope"), 404)

    # Kept when the body leaves "model" out, changed or removed when it names one.
    kept = api.put(f"/api/configs/{config['id']}", json={"content": TEMPLATE}).get_json()
    assert kept["model"] == "thermostat"
    moved = api.put(f"/api/configs/{free['id']}", json={"content": TEMPLATE, "model": "thermostat"})
    assert moved.get_json()["model"] == "thermostat"
    left = api.put(f"/api/configs/{free['id']}", json={"content": {"x": 1}, "model": None})
    assert (left.get_json()["model"], left.get_json()["schema_valid"]) == (None, None)
    assert_error(
        api.post(
            "/api/configs",
            json={"mac_address": "aa:00:00:00:00:03", "content": {}, "model": "nope"},
        ),
        404,
    )
    assert api.get("/api/models/thermostat").get_json()["config_count"] == 1
    # Two creates and two changes; the first PUT was the same bytes in the same model.
    assert len(publisher.messages) == 4


def test_every_save_path_checks_the_schema_and_a_refusal_stores_nothing(
    api: FlaskClient, publisher: RecordingPublisher
) -> None:
    create_model(api)
    mac = "aa:00:00:00:00:01"
    bad = {"deviceName": "", "display": {"brightness": 101}}
    create = api.post(
        "/api/configs", json={"mac_address": mac, "content": bad, "model": "thermostat"}
    )
    body = assert_error(create, 400, "schema_violation")
    assert {(e["path"], e["keyword"]) for e in body["details"]["errors"]} == {
        ("/deviceName", "minLength"),
        ("/display/brightness", "maximum"),
    }
    assert api.get("/api/configs").get_json()["count"] == 0

    config = create_config(api, mac, {"deviceName": "Hall"}, "thermostat")
    url = f"/api/configs/{config['id']}"
    assert_error(api.put(url, json={"content": bad}), 400, "schema_violation")
    # Moving a config to a model checks it against the new schema.
    free = create_config(api, "aa:00:00:00:00:02", {"x": 1})
    move = api.put(f"/api/configs/{free['id']}", json={"content": {"x": 1}, "model": "thermostat"})
    assert_error(move, 400, "schema_violation")
    assert api.get(f"/api/configs/{free['id']}").get_json()["model"] is None

    # Rollback to a version the schema no longer accepts.
    api.put(url, json={"content": {"deviceName": "Hall", "old": True}})
    strict = json.loads(json.dumps(SCHEMA))
    strict["properties"]["old"] = {"const": False}
    change = api.put("/api/models/thermostat", json={"name": "T", "schema": strict})
    assert change.status_code == 409
    assert api.put(url, json={"content": {"deviceName": "Hall"}}).status_code == 200
    assert (
        api.put("/api/models/thermostat", json={"name": "T", "schema": strict}).status_code == 200
    )
    assert_error(api.post(f"{url}/rollback", json={"version": 2}), 400, "schema_violation")

    # Restore: back in its model, and checked against it.
    assert api.delete(url).status_code == 204
    assert api.post(f"/api/configs/deleted/{mac}/restore").get_json()["model"] == "thermostat"
    assert api.get(f"{url}/history").get_json()["versions"][0]["event"] == "restored"
    messages = len(publisher.messages)
    assert api.get(f"/api/configs/{mac}.json").status_code == 200
    assert len(publisher.messages) == messages


def test_the_device_endpoint_never_validates(api: FlaskClient) -> None:
    create_model(api)
    config = create_config(api, "aa:00:00:00:00:01", TEMPLATE, "thermostat")
    assert (
        api.put(
            "/api/models/thermostat",
            json={"name": "T", "schema": {"required": ["x"]}, "confirm": True},
        ).status_code
        == 200
    )
    fetched = api.get("/api/configs/aa:00:00:00:00:01.json")
    assert fetched.status_code == 200 and fetched.get_json() == TEMPLATE
    assert api.get(f"/api/configs/{config['id']}").get_json()["schema_valid"] is False


def test_a_schema_change_lists_the_configs_it_breaks_unless_confirmed(
    api: FlaskClient, publisher: RecordingPublisher
) -> None:
    created = create_model(api)
    ok = create_config(
        api, "aa:00:00:00:00:01", {"deviceName": "A", "display": {"brightness": 10}}, "thermostat"
    )
    dim = create_config(
        api, "aa:00:00:00:00:02", {"deviceName": "B", "display": {"brightness": 90}}, "thermostat"
    )
    messages = len(publisher.messages)
    stricter = json.loads(json.dumps(SCHEMA))
    stricter["properties"]["display"]["properties"]["brightness"]["maximum"] = 50
    change = {"name": "Thermostat", "schema": stricter}
    refusal = assert_error(
        api.put("/api/models/thermostat", json=change), 409, "schema_change_breaks_configs"
    )
    assert refusal["details"]["count"] == 1
    (listed,) = refusal["details"]["configs"]
    assert (listed["id"], listed["mac_address"]) == (dim["id"], "aa:00:00:00:00:02")
    assert listed["errors"][0]["path"] == "/display/brightness"
    unchanged = api.get("/api/models/thermostat")
    assert (
        unchanged.get_json()["version"] == 1
        and unchanged.headers["ETag"] == api.get("/api/models/thermostat").headers["ETag"]
    )

    confirmed = api.put(
        "/api/models/thermostat",
        json=change | {"confirm": True},
        headers={"If-Match": unchanged.headers["ETag"]},
    )
    assert confirmed.status_code == 200
    assert (confirmed.get_json()["config_count"], confirmed.get_json()["invalid_count"]) == (2, 1)
    rows = {row["id"]: row for row in api.get("/api/configs").get_json()["configs"]}
    assert rows[ok["id"]]["schema_valid"] is True and rows[dim["id"]]["schema_valid"] is False
    assert api.get("/api/models").get_json()["models"][0]["invalid_count"] == 1
    assert rows[dim["id"]]["version"] == 1  # marking is not a new version
    assert len(publisher.messages) == messages  # nor a message
    # Fixing the config makes it valid again.
    api.put(
        f"/api/configs/{dim['id']}",
        json={"content": {"deviceName": "B", "display": {"brightness": 40}}},
    )
    assert api.get(f"/api/configs/{dim['id']}").get_json()["schema_valid"] is True
    assert created["version"] == 1


def test_a_model_in_use_cannot_be_deleted(api: FlaskClient) -> None:
    create_model(api)
    config = create_config(api, "aa:00:00:00:00:01", TEMPLATE, "thermostat")
    refusal = assert_error(api.delete("/api/models/thermostat"), 409, "model_in_use")
    assert refusal["details"]["config_count"] == 1 and "1 config" in refusal["error"]
    api.put(f"/api/configs/{config['id']}", json={"content": TEMPLATE, "model": None})
    assert api.delete("/api/models/thermostat").status_code == 204


def test_import_dir_puts_configs_in_a_model(
    runner: FlaskCliRunner, client: FlaskClient, tmp_path: Path
) -> None:
    create_model(client)
    (tmp_path / "aa-00-00-00-00-01.json").write_text(json.dumps(TEMPLATE))
    (tmp_path / "aa-00-00-00-00-02.json").write_text('{"display": {"brightness": 300}}')
    unknown = runner.invoke(args=["import-dir", str(tmp_path), "--model", "nope"])
    assert unknown.exit_code != 0 and "no model 'nope'" in unknown.output
    result = runner.invoke(args=["import-dir", str(tmp_path), "--model", "thermostat"])
    assert result.exit_code == 0, result.output
    assert "created   aa-00-00-00-00-01.json" in result.output
    assert "skipped   aa-00-00-00-00-02.json: the content does not meet the schema" in result.output
    assert "/display/brightness must be at most 100 (it is 300)" in result.output
    rows = client.get("/api/configs").get_json()["configs"]
    assert [(row["mac_address"], row["model"]) for row in rows] == [
        ("aa:00:00:00:00:01", "thermostat")
    ]
    # Without --model, the old layout keeps working with no model.
    (tmp_path / "aa-00-00-00-00-02.json").write_text("{}")
    again = runner.invoke(args=["import-dir", str(tmp_path)])
    assert "unchanged aa-00-00-00-00-01.json" in again.output
    assert "created   aa-00-00-00-00-02.json" in again.output


def test_the_openapi_document_describes_models(client: FlaskClient) -> None:
    paths = client.get("/api/openapi.json").get_json()["paths"]
    for path in (
        "/api/models",
        "/api/models/{code}",
        "/api/models/{code}/validate",
        "/api/configs/bulk",
        "/api/change-sets/{change_set_id}/undo",
    ):
        assert path in paths
