"""No 500 whatever text goes into a config: Hypothesis over raw JSON text, and lone
surrogates through every place content goes (create, update, history, diff, export).

Lone UTF-16 surrogates (an unpaired \\ud800-\\udfff) are refused with 400 wherever
they appear in a JSON body: they are not characters, and no UTF-8 (the API's, the
database's, the devices') can carry them.
"""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import pytest
from conftest import assert_error
from flask import Flask
from flask.testing import FlaskClient
from flask.testing import FlaskCliRunner
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from sqlalchemy import create_engine
from sqlalchemy import text

MAC = "aa:bb:cc:dd:ee:01"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Characters that have broken JSON handling somewhere: surrogates, NUL, separators,
# quotes, backslashes, the byte order mark, astral ones.
TRICKY = ["\ud800", "\udbff", "\udc00", "\udfff", "\x00", "\x1f", "\x7f", "\u2028", "\u2029"]
TRICKY += ['"', "\\", "/", "\ufeff", "\U0001f600", "\u202e", "\uffff", "é"]
characters = st.characters() | st.sampled_from(TRICKY)
strings = st.text(characters, max_size=12)
numbers = st.integers(min_value=-(10**30), max_value=10**30) | st.floats(allow_nan=False)
scalars = st.none() | st.booleans() | numbers | strings
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(strings, inner, max_size=4),
    max_leaves=12,
)
# The keys whose values are copied into columns of their own, and any other.
keys = st.sampled_from(["deviceName", "deviceEntityId", "enableOTA"]) | strings
documents = st.dictionaries(keys, values, max_size=5)
# Raw tokens json.dumps never writes, spliced into otherwise valid text.
RAW_TOKENS = [
    '"\\ud800"',
    '"\\udc00\\ud800"',
    '"\\ud83d\\ude00"',
    '"\\u0000"',
    '"\\uD800x"',
    "1e999",
    "-1e999",
    "1" + "0" * 400,
    "-0",
    "1.0e-400",
    "NaN",
    "Infinity",
    "[" * 50 + "]" * 50,
    '"\\x"',
    "'single'",
    "\ud800",
]


@st.composite
def json_texts(draw: st.DrawFn) -> str:
    """A JSON object as a client might write it, sometimes with a raw token spliced in."""
    document = draw(documents)
    indent = draw(st.sampled_from([None, 0, 2, "\t"]))
    source = json.dumps(document, ensure_ascii=draw(st.booleans()), indent=indent)
    if draw(st.booleans()):
        token = draw(st.sampled_from(RAW_TOKENS))
        source = (
            source.replace("{", '{"raw": ' + token + ", ", 1)
            if source != "{}"
            else ('{"raw": ' + token + "}")
        )
    return source


def check_everywhere(client: FlaskClient, config: dict[str, t.Any], source: str) -> None:
    """A saved config reads back the same through every route that shows content."""
    config_id = config["id"]
    device = client.get(f"/api/configs/{MAC}.json")
    assert device.status_code == 200
    assert device.get_data(as_text=True) == source
    assert client.get(f"/api/configs/{config_id}").get_json()["content"] == json.loads(source)
    history = client.get(f"/api/configs/{config_id}/history")
    assert history.status_code == 200
    newest = history.get_json()["versions"][0]["version"]
    version = client.get(f"/api/configs/{config_id}/history/{newest}")
    assert version.get_json()["content"] == json.loads(source)
    diff = client.get(f"/api/configs/{config_id}/diff?from=1")
    assert diff.status_code == 200, diff.get_data(as_text=True)
    assert client.get("/api/configs").status_code == 200


def post_text(client: FlaskClient, source: str, as_string: bool) -> t.Any:
    content = json.dumps(source) if as_string else source
    body = '{"mac_address": "' + MAC + '", "content": ' + content + "}"
    return client.post(
        "/api/configs", data=body.encode("utf-8", "surrogatepass"), content_type="application/json"
    )


@FUZZ
@given(source=json_texts(), as_string=st.booleans(), update=json_texts())
def test_raw_json_text_never_gives_a_500(
    client: FlaskClient, source: str, as_string: bool, update: str
) -> None:
    created = post_text(client, source, as_string)
    assert created.status_code in (201, 400), created.get_data(as_text=True)
    if created.status_code == 400:
        assert_error(created, 400)
        assert client.get("/api/configs").get_json()["count"] == 0  # nothing stored
        return
    config = created.get_json()
    check_everywhere(client, config, source)
    body = '{"content": ' + update + "}"
    updated = client.put(
        f"/api/configs/{config['id']}",
        data=body.encode("utf-8", "surrogatepass"),
        content_type="application/json",
    )
    assert updated.status_code in (200, 400), updated.get_data(as_text=True)
    check_everywhere(client, config, update if updated.status_code == 200 else source)
    assert (
        client.post(f"/api/configs/{config['id']}/rollback", json={"version": 1}).status_code == 200
    )
    assert client.delete(f"/api/configs/{config['id']}").status_code == 204


@pytest.mark.parametrize(
    "content",
    [
        '{"deviceName": "\\ud800"}',
        '{"deviceEntityId": "\\udfff"}',
        '{"\\ud800": 1}',
        '{"a": ["ok", {"b": "\\udc00\\ud800"}]}',
        '{"a": "\\uD83D"}',
        '{"a": "\\ud83d\\u0041"}',
    ],
)
def test_lone_surrogates_are_refused_on_every_way_in(client: FlaskClient, content: str) -> None:
    created = client.post("/api/configs", json={"mac_address": MAC, "content": {"ok": 1}})
    config_id = created.get_json()["id"]
    raw_create = '{"mac_address": "aa:bb:cc:dd:ee:02", "content": ' + content + "}"
    as_string = json.dumps({"mac_address": "aa:bb:cc:dd:ee:03", "content": content})
    for body in (raw_create, as_string):
        response = client.post("/api/configs", data=body, content_type="application/json")
        assert "surrogate" in assert_error(response, 400, "invalid_input")["error"]
    update = client.put(
        f"/api/configs/{config_id}",
        data='{"content": ' + content + "}",
        content_type="application/json",
    )
    assert_error(update, 400, "invalid_input")
    assert client.get("/api/configs").get_json()["count"] == 1
    assert client.get(f"/api/configs/{MAC}.json").get_data() == b'{"ok": 1}'


def test_a_version_stored_before_the_refusal_is_still_served(
    app: Flask, client: FlaskClient, runner: FlaskCliRunner, database_url: str, tmp_path: Path
) -> None:
    """Rows written by an earlier release may hold lone surrogates (as ASCII escapes):
    every read, the diff and the export still answer, and saving them again is a 400."""
    created = client.post("/api/configs", json={"mac_address": MAC, "content": {"a": "x"}})
    config_id = created.get_json()["id"]
    legacy = '{"a": "\\ud800", "deviceName": "old"}'
    engine = create_engine(database_url)
    with engine.begin() as connection:
        for table, key in (("device_configs", "id"), ("config_history", "config_id")):
            connection.execute(
                text(f"UPDATE {table} SET content = :content WHERE {key} = :id"),
                {"content": legacy, "id": config_id},
            )
    engine.dispose()
    assert client.get(f"/api/configs/{MAC}.json").get_data(as_text=True) == legacy
    assert client.get(f"/api/configs/{config_id}").status_code == 200
    assert client.get(f"/api/configs/{config_id}/history/1").status_code == 200
    assert client.put(f"/api/configs/{config_id}", json={"content": {"b": 1}}).status_code == 200
    diff = client.get(f"/api/configs/{config_id}/diff?from=1&to=2")
    assert diff.status_code == 200
    assert '-  "a": "\\ud800",' in diff.get_json()["diff"].splitlines()
    rollback = client.post(f"/api/configs/{config_id}/rollback", json={"version": 1})
    assert_error(rollback, 400, "invalid_input")
    result = runner.invoke(args=["export-dir", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "aa-bb-cc-dd-ee-01.json").read_text() == '{"b": 1}'
