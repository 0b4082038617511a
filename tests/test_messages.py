"""Every refusal speaks to a person: no Python, jsonschema, Pydantic or RE2 wording."""

from __future__ import annotations

import json
import re
import typing as t

import pytest
from conftest import assert_error
from flask.testing import FlaskClient
from test_device_models import create_model

# What the libraries say, which a person should never read.
LIBRARY_WORDING = re.compile(
    r"is not one of \[|Input should be|Expecting |\(char \d+\)|perl operator|"
    r"is a required property|is not of type|is greater than the maximum|was unexpected"
)
HEAT = {
    "type": "object",
    "properties": {
        "mode": {"enum": ["off", "heat", "eco", "auto"]},
        "port": {"type": "integer", "minimum": 12288},
        "name": {"type": "string"},
    },
    "required": ["name"],
    "additionalProperties": False,
}


def refusal_text(body: dict[str, t.Any]) -> str:
    return json.dumps(body, ensure_ascii=False)


def save(client: FlaskClient, content: dict[str, t.Any]) -> dict[str, t.Any]:
    body = {"mac_address": "aa:00:00:00:00:01", "content": content, "model": "heater"}
    return assert_error(client.post("/api/configs", json=body), 400, "schema_violation")


def test_schema_violations_say_what_the_value_must_be(client: FlaskClient) -> None:
    create_model(client, "heater", HEAT)
    body = save(client, {"name": "a", "mode": "turbo", "port": 80, "extra": 1})
    messages = {error["path"]: error["message"] for error in body["details"]["errors"]}
    assert messages["/mode"] == 'must be one of "off", "heat", "eco", "auto" (it is "turbo")'
    assert messages["/port"] == "must be at least 12288 (it is 80)"
    assert messages[""] == '"extra": not allowed here (remove, or fix the spelling)'
    body = save(client, {"name": 5})
    assert (
        body["details"]["errors"][0]["message"]
        == "must be a text in double quotes, not a whole number"
    )
    body = save(client, {"mode": "eco"})
    assert body["details"]["errors"][0]["message"] == '"name" must be set (the schema requires it)'
    assert not LIBRARY_WORDING.search(refusal_text(body))


def test_request_fields_out_of_range_say_the_bound(client: FlaskClient) -> None:
    body = assert_error(client.get("/api/change-sets?limit=0"), 400, "validation_error")
    assert body["details"]["errors"] == [{"field": "limit", "message": "must be at least 1"}]
    body = assert_error(client.post("/api/configs/bulk", json={"patch": {}}), 400)
    assert body["details"]["errors"] == [{"field": "select", "message": "is required"}]
    assert not LIBRARY_WORDING.search(refusal_text(body))


@pytest.mark.parametrize(
    ("text", "words", "line", "column"),
    [
        ('{"a": 1,\n "b": 2,}', "there may be no comma before }", 2, 9),
        ("{'a': 1}", "a member name must be in double quotes", 1, 2),
        ('{"a": 1 "b": 2}', "a comma is missing", 1, 9),
        ('{"a": }', "a value is missing here", 1, 7),
    ],
)
def test_broken_json_says_what_and_where(
    client: FlaskClient, text: str, words: str, line: int, column: int
) -> None:
    body = {"mac_address": "aa:00:00:00:00:02", "content": text}
    refusal = assert_error(client.post("/api/configs", json=body), 400)
    assert words in refusal["error"] and f"at line {line}, column {column}" in refusal["error"]
    assert (refusal["details"]["line"], refusal["details"]["column"]) == (line, column)
    assert not LIBRARY_WORDING.search(refusal_text(refusal))
    schema = assert_error(
        client.post("/api/models", json={"code": "m", "name": "M", "schema": text}), 400
    )
    assert words in refusal_text(schema) and not LIBRARY_WORDING.search(refusal_text(schema))


def test_a_pattern_re2_cannot_run_says_why_and_what_to_do(client: FlaskClient) -> None:
    schema = {"properties": {"a": {"pattern": "^(?=x)y"}}}
    body = {"code": "m", "name": "M", "schema": schema}
    refusal = assert_error(client.post("/api/models", json=body), 400, "invalid_schema")
    text = refusal_text(refusal)
    assert "lookahead or lookbehind" in text and "rewrite it without" in text
    assert not LIBRARY_WORDING.search(text)
