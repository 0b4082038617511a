"""Bulk change: JSON Merge Patch on the stored text, preview, apply, undo; races; MQTT."""

from __future__ import annotations

import json
import random
import typing as t

import pytest
from conftest import RecordingPublisher
from conftest import Subscriber
from conftest import assert_error
from conftest import make_settings
from conftest import race
from conftest import random_mac
from conftest import wait_until
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from test_device_models import SCHEMA
from test_device_models import create_config
from test_device_models import create_model

from iotsupport import create_app
from iotsupport.change_sets.merge_patch import apply
from iotsupport.change_sets.merge_patch import merge
from iotsupport.change_sets.merge_patch import same
from iotsupport.notifications import build_publisher

TOPIC = "iotsupport/updates/configs"


def bulk(client: FlaskClient, select: dict[str, t.Any], patch: t.Any, **extra: t.Any) -> t.Any:
    return client.post("/api/configs/bulk", json={"select": select, "patch": patch} | extra)


def preview(client: FlaskClient, select: dict[str, t.Any], patch: t.Any) -> dict[str, t.Any]:
    response = bulk(client, select, patch)
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, t.Any] = response.get_json()
    return body


def expect_of(previewed: dict[str, t.Any]) -> dict[str, str]:
    return {str(change["id"]): change["etag"] for change in previewed["changes"]}


def apply_bulk(client: FlaskClient, select: dict[str, t.Any], patch: t.Any) -> dict[str, t.Any]:
    expect = expect_of(preview(client, select, patch))
    response = bulk(client, select, patch, dry_run=False, expect=expect)
    assert response.status_code == 201, response.get_data(as_text=True)
    body: dict[str, t.Any] = response.get_json()
    return body


def device_text(client: FlaskClient, mac: str) -> str:
    return client.get(f"/api/configs/{mac}.json").get_data(as_text=True)


# --- the merge patch itself -------------------------------------------------------------


def test_merge_patch_follows_rfc_7396_examples() -> None:
    # RFC 7396, Appendix A (the object cases).
    cases: list[tuple[dict[str, t.Any], dict[str, t.Any], dict[str, t.Any]]] = [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ]
    for target, patch, result in cases:
        assert merge(target, patch) == result
        text = json.dumps(target)
        assert json.loads(apply(text, patch)) == result


def test_patched_text_keeps_order_indentation_and_untouched_bytes() -> None:
    text = (
        '{\n    "deviceName": "Hall",\n    "n": 1.50,\n    "wifi": {"ssid": "a"},\n'
        '    "debug": true\n}\n'
    )
    patched = apply(text, {"mqttBroker": "10.0.0.5", "debug": None, "wifi": {"ssid": "b"}})
    assert patched == (
        '{\n    "deviceName": "Hall",\n    "n": 1.50,\n    "wifi": {"ssid": "b"},\n'
        '    "mqttBroker": "10.0.0.5"\n}\n'
    )
    tabs = '{\n\t"a": 1\n}'
    assert (
        apply(tabs, {"b": {"c": [1]}})
        == '{\n\t"a": 1,\n\t"b": {\n\t\t"c": [\n\t\t\t1\n\t\t]\n\t}\n}'
    )
    assert apply('{"a":1}', {"b": 2}) == '{"a":1,"b":2}'
    assert apply('{"a": 1, "b": 2}', {"a": None, "b": None}) == "{}"
    assert apply('{"name": "Küche"}', {"x": "ü"}) == '{"name": "Küche", "x": "ü"}'


def test_a_patch_that_changes_nothing_leaves_the_bytes_alone() -> None:
    text = '{ "a" : 1.0 , "b" : { "c" : [ 1 ] } }'
    for patch in ({}, {"a": 1}, {"b": {"c": [1]}}, {"gone": None}, {"b": {"x": None}}):
        assert apply(text, patch) is text
    assert apply('{"a": true}', {"a": 1}) == '{"a": 1}'  # true is not 1


def test_random_documents_and_patches() -> None:
    rng = random.Random(12)
    leaves: list[t.Any] = [0, 1, 2.5, -3, "s", "ü", True, False, None, [1, "x"], {}]

    def value(depth: int) -> t.Any:
        if depth > 2 or rng.random() < 0.45:
            return rng.choice(leaves)
        return {rng.choice("abcdef"): value(depth + 1) for _ in range(rng.randint(0, 4))}

    for _ in range(1500):
        document = {rng.choice("abcdef"): value(1) for _ in range(rng.randint(0, 5))}
        patch = {rng.choice("abcdefg"): value(1) for _ in range(rng.randint(0, 4))}
        for indent in (None, 2, 4, "\t"):
            text = json.dumps(document, indent=indent, ensure_ascii=False)
            patched = apply(text, patch)
            assert same(json.loads(patched), merge(document, patch)), (text, patch, patched)
            if same(merge(document, patch), document):
                assert patched == text


# --- preview, apply ----------------------------------------------------------------------


def test_preview_shows_diffs_validity_and_unchanged_and_stores_nothing(
    api: FlaskClient, publisher: RecordingPublisher
) -> None:
    create_model(api)
    a = create_config(
        api, "aa:00:00:00:00:01", {"deviceName": "A", "mqttBroker": "10.0.0.1"}, "thermostat"
    )
    b = create_config(
        api, "aa:00:00:00:00:02", {"deviceName": "B", "mqttBroker": "10.0.0.5"}, "thermostat"
    )
    free = create_config(api, "aa:00:00:00:00:03", {"x": 1})
    messages = len(publisher.messages)
    body = preview(api, {"ids": [free["id"], b["id"], a["id"]]}, {"mqttBroker": "10.0.0.5"})
    assert (body["count"], body["changed"], body["invalid"]) == (3, 2, 0)
    rows = {row["id"]: row for row in body["changes"]}
    assert rows[a["id"]]["unchanged"] is False and rows[a["id"]]["valid"] is True
    assert '-  "mqttBroker": "10.0.0.1"' in rows[a["id"]]["diff"]
    assert '+  "mqttBroker": "10.0.0.5"' in rows[a["id"]]["diff"]
    assert rows[b["id"]]["unchanged"] is True and rows[b["id"]]["diff"] == ""
    assert rows[free["id"]]["valid"] is None
    assert f'"{rows[a["id"]]["etag"]}"' == api.get(f"/api/configs/{a['id']}").headers["ETag"]
    assert [row["id"] for row in body["changes"]] == sorted(rows)

    invalid = preview(api, {"model": "thermostat"}, {"display": {"brightness": 500}})
    assert invalid["invalid"] == 2
    assert invalid["changes"][0]["errors"][0]["path"] == "/display/brightness"
    assert api.get(f"/api/configs/{a['id']}").get_json()["version"] == 1
    assert len(publisher.messages) == messages


def test_apply_changes_all_in_one_change_set(
    api: FlaskClient, publisher: RecordingPublisher
) -> None:
    create_model(api)
    first = '{\n  "deviceName": "A",\n  "debug": true,\n  "mqttBroker": "10.0.0.1"\n}'
    a = create_config(api, "aa:00:00:00:00:01", first, "thermostat")
    b = create_config(
        api, "aa:00:00:00:00:02", '{"deviceName": "B", "mqttBroker": "10.0.0.5"}', "thermostat"
    )
    create_config(api, "aa:00:00:00:00:03", {"deviceName": "other model"})
    publisher.messages.clear()
    applied = apply_bulk(api, {"model": "thermostat"}, {"mqttBroker": "10.0.0.5", "debug": None})
    assert applied["changed"] == [a["id"]]  # b already had it: unchanged
    assert device_text(api, "aa:00:00:00:00:01") == (
        '{\n  "deviceName": "A",\n  "mqttBroker": "10.0.0.5"\n}'
    )
    assert device_text(api, "aa:00:00:00:00:02") == '{"deviceName": "B", "mqttBroker": "10.0.0.5"}'
    assert api.get(f"/api/configs/{a['id']}").get_json()["version"] == 2
    assert api.get(f"/api/configs/{b['id']}").get_json()["version"] == 1
    assert publisher.messages == [(TOPIC, {"filename": "aa:00:00:00:00:01.json"})]
    newest = api.get(f"/api/configs/{a['id']}/history").get_json()["versions"][0]
    assert (newest["event"], newest["change_set_id"]) == ("bulk_changed", applied["change_set"])
    change_set = api.get(f"/api/change-sets/{applied['change_set']}").get_json()
    assert change_set["patch"] == {"mqttBroker": "10.0.0.5", "debug": None}
    assert change_set["configs"] == [
        {
            "config_id": a["id"],
            "mac_address": "aa:00:00:00:00:01",
            "before_version": 1,
            "after_version": 2,
        }
    ]


def test_a_stale_etag_refuses_the_whole_change_with_412(
    api: FlaskClient, publisher: RecordingPublisher
) -> None:
    a = create_config(api, "aa:00:00:00:00:01", {"n": 1})
    b = create_config(api, "aa:00:00:00:00:02", {"n": 2})
    select = {"ids": [a["id"], b["id"]]}
    expect = expect_of(preview(api, select, {"m": 1}))
    api.put(f"/api/configs/{b['id']}", json={"content": {"n": 3}})
    publisher.messages.clear()
    refusal = assert_error(bulk(api, select, {"m": 1}, dry_run=False, expect=expect), 412)
    (stale,) = refusal["details"]["configs"]
    assert (stale["id"], stale["mac_address"]) == (b["id"], "aa:00:00:00:00:02")
    assert device_text(api, "aa:00:00:00:00:01") == '{"n": 1}'
    assert publisher.messages == []
    # Picked configs that were not previewed, or previewed ones no longer picked.
    missing = {str(a["id"]): expect[str(a["id"])]}
    assert_error(bulk(api, select, {"m": 1}, dry_run=False, expect=missing), 412)
    extra = expect | {"999": "x"}
    assert_error(bulk(api, {"ids": [a["id"]]}, {"m": 1}, dry_run=False, expect=extra), 412)
    assert_error(bulk(api, select, {"m": 1}, dry_run=False), 400)


def test_one_schema_violation_refuses_the_whole_change_with_400(
    api: FlaskClient, publisher: RecordingPublisher
) -> None:
    create_model(api)
    a = create_config(api, "aa:00:00:00:00:01", {"deviceName": "A"}, "thermostat")
    b = create_config(api, "aa:00:00:00:00:02", {"deviceName": "B"}, "thermostat")
    free = create_config(api, "aa:00:00:00:00:03", {"deviceName": "C"})
    select = {"ids": [a["id"], b["id"], free["id"]]}
    patch = {"deviceName": None, "extra": 1}
    expect = expect_of(preview(api, select, patch))
    publisher.messages.clear()
    refusal = assert_error(
        bulk(api, select, patch, dry_run=False, expect=expect), 400, "schema_violation"
    )
    assert [entry["id"] for entry in refusal["details"]["configs"]] == [a["id"], b["id"]]
    assert refusal["details"]["errors"][0] == {
        "config_id": a["id"],
        "path": "",
        "message": '"deviceName" must be set (the schema requires it)',
        "keyword": "required",
    }
    assert device_text(api, "aa:00:00:00:00:03") == '{"deviceName": "C"}'
    assert publisher.messages == []
    assert api.get(f"/api/configs/{free['id']}/history").get_json()["count"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"select": {}, "patch": {}},
        {"select": {"model": "m", "ids": [1]}, "patch": {}},
        {"select": {"ids": [0]}, "patch": {}},
        {"select": {"ids": [1]}, "patch": [1]},
        {"select": {"ids": [1]}, "patch": "not json"},
        {"select": {"ids": [1]}, "patch": {}, "dry_run": False, "expect": {"one": "x"}},
    ],
)
def test_bad_bulk_requests_are_400(client: FlaskClient, body: dict[str, t.Any]) -> None:
    create_config(client, "aa:00:00:00:00:01", {})
    assert_error(client.post("/api/configs/bulk", json=body), 400)


def test_unknown_ids_or_model_are_404(client: FlaskClient) -> None:
    assert_error(bulk(client, {"ids": [5]}, {"a": 1}), 404)
    assert_error(bulk(client, {"model": "nope"}, {"a": 1}), 404)


# --- undo -----------------------------------------------------------------------------------


def test_undo_brings_every_config_back_as_a_new_version(
    api: FlaskClient, publisher: RecordingPublisher
) -> None:
    a = create_config(api, "aa:00:00:00:00:01", '{"a": 1,\n "keep": "me"}')
    b = create_config(api, "aa:00:00:00:00:02", {"a": 2})
    applied = apply_bulk(api, {"ids": [a["id"], b["id"]]}, {"a": None, "b": True})
    publisher.messages.clear()
    undone = api.post(f"/api/change-sets/{applied['change_set']}/undo", json={})
    assert undone.status_code == 200
    assert undone.get_json() == {
        "change_set": applied["change_set"],
        "undone": [a["id"], b["id"]],
        "skipped": [],
    }
    assert device_text(api, "aa:00:00:00:00:01") == '{"a": 1,\n "keep": "me"}'
    assert api.get(f"/api/configs/{a['id']}").get_json()["version"] == 3
    newest = api.get(f"/api/configs/{a['id']}/history").get_json()["versions"][0]
    assert (newest["event"], newest["change_set_id"]) == ("bulk_undone", applied["change_set"])
    assert len(publisher.messages) == 2
    again = assert_error(api.post(f"/api/change-sets/{applied['change_set']}/undo", json={}), 409)
    assert "already" in again["error"]
    assert (
        api.get(f"/api/change-sets/{applied['change_set']}").get_json()["undone_by"] == "anonymous"
    )


def test_undo_is_refused_per_config_changed_since(
    api: FlaskClient, publisher: RecordingPublisher
) -> None:
    a = create_config(api, "aa:00:00:00:00:01", {"a": 1})
    b = create_config(api, "aa:00:00:00:00:02", {"a": 2})
    c = create_config(api, "aa:00:00:00:00:03", {"a": 3})
    applied = apply_bulk(api, {"ids": [a["id"], b["id"], c["id"]]}, {"a": 0})
    api.put(f"/api/configs/{b['id']}", json={"content": {"a": 20}})
    assert api.delete(f"/api/configs/{c['id']}").status_code == 204
    publisher.messages.clear()
    url = f"/api/change-sets/{applied['change_set']}/undo"
    refusal = assert_error(api.post(url, json={}), 409, "changed_since")
    listed = {entry["id"]: entry["reason"] for entry in refusal["details"]["configs"]}
    assert set(listed) == {b["id"], c["id"]} and listed[c["id"]] == "deleted"
    assert device_text(api, "aa:00:00:00:00:01") == '{"a": 0}'
    assert publisher.messages == []
    partial = api.post(url, json={"skip_changed": True}).get_json()
    assert partial["undone"] == [a["id"]]
    assert [entry["id"] for entry in partial["skipped"]] == [b["id"], c["id"]]
    assert device_text(api, "aa:00:00:00:00:01") == '{"a": 1}'
    assert device_text(api, "aa:00:00:00:00:02") == '{"a": 20}'
    assert_error(api.post("/api/change-sets/999/undo", json={}), 404)


def test_undo_keeps_working_after_history_was_pruned(
    database_url: str, publisher: RecordingPublisher
) -> None:
    app = create_app(
        make_settings(database_url, history_keep_versions=2),
        publisher=publisher,
        registry=CollectorRegistry(),
    )
    client = app.test_client()
    a = create_config(client, "aa:00:00:00:00:01", {"v": 1})
    client.put(f"/api/configs/{a['id']}", json={"content": '{"v": 2}'})
    applied = apply_bulk(client, {"ids": [a["id"]]}, {"v": 3})
    assert client.get(f"/api/configs/{a['id']}/history/2").status_code == 404  # pruned
    assert client.post(f"/api/change-sets/{applied['change_set']}/undo", json={}).status_code == 200
    assert device_text(client, "aa:00:00:00:00:01") == '{"v": 2}'
    app.extensions["iotsupport"].database.dispose()


def test_the_change_of_an_undo_is_checked_against_the_schema(api: FlaskClient) -> None:
    create_model(api, schema={"type": "object"})
    a = create_config(api, "aa:00:00:00:00:01", {"x": "old"}, "thermostat")
    applied = apply_bulk(api, {"model": "thermostat"}, {"x": "new"})
    strict = {"properties": {"x": {"const": "new"}}}
    assert (
        api.put("/api/models/thermostat", json={"name": "T", "schema": strict}).status_code == 200
    )
    refusal = assert_error(
        api.post(f"/api/change-sets/{applied['change_set']}/undo", json={}), 400, "schema_violation"
    )
    assert refusal["details"]["configs"][0]["id"] == a["id"]
    assert device_text(api, "aa:00:00:00:00:01") == '{"x": "new"}'


# --- races on PostgreSQL -------------------------------------------------------------------


def race_bulk_against_edits(app: Flask, ids: list[int], round_: int) -> list[int]:
    """Preview a bulk change, then apply it while three single edits (with If-Match) of
    the first, a middle and the last config race it. The statuses: bulk, then the edits."""
    client = app.test_client()
    select = {"ids": ids}
    patch = {"round": round_}
    expect = expect_of(preview(client, select, patch))
    victims = [ids[0], ids[len(ids) // 2], ids[-1]]
    etags = {victim: client.get(f"/api/configs/{victim}").headers["ETag"] for victim in victims}

    def apply_it(racer: FlaskClient) -> int:
        body = {"select": select, "patch": patch, "dry_run": False, "expect": expect}
        status: int = racer.post("/api/configs/bulk", json=body).status_code
        return status

    def edit(victim: int) -> t.Callable[[FlaskClient], int]:
        def run(racer: FlaskClient) -> int:
            headers = {"If-Match": etags[victim]}
            body = {"content": {"edited": round_}}
            status: int = racer.put(
                f"/api/configs/{victim}", json=body, headers=headers
            ).status_code
            return status

        return run

    statuses: list[int] = race(app, [apply_it, *(edit(victim) for victim in victims)])
    return statuses


@pytest.mark.postgres
def test_bulk_change_and_single_edits_never_lose_an_update(pg_app: Flask) -> None:
    client = pg_app.test_client()
    macs = [f"aa:00:00:00:01:{index:02x}" for index in range(20)]
    ids = [create_config(client, mac, {"n": index})["id"] for index, mac in enumerate(macs)]
    for round_ in range(4):
        bulk_status, *edit_statuses = race_bulk_against_edits(pg_app, ids, round_)
        contents = [json.loads(device_text(client, mac)) for mac in macs]
        if bulk_status == 201:  # the bulk change locked first: every edit is stale
            assert edit_statuses == [412, 412, 412]
            assert all(content.get("round") == round_ for content in contents)
        else:  # an edit came first: the whole bulk change was refused
            assert bulk_status == 412 and 200 in edit_statuses
            assert all(content.get("round") != round_ for content in contents)
        versions = [
            client.get(f"/api/configs/{config_id}").get_json()["version"] for config_id in ids
        ]
        kept = [
            client.get(f"/api/configs/{config_id}/history").get_json()["count"] for config_id in ids
        ]
        assert versions == kept  # every version saved exactly once, none lost


@pytest.mark.postgres
def test_a_schema_change_and_config_saves_agree(pg_app: Flask) -> None:
    """A save racing a schema change never leaves a config marked valid that is not."""
    client = pg_app.test_client()
    create_model(client, schema={"type": "object"})
    config = create_config(client, "aa:00:00:00:02:01", {"deviceName": "a"}, "thermostat")
    strict = {"properties": {"bad": {"const": False}}}

    def change_schema(racer: FlaskClient) -> int:
        body = {"name": "T", "schema": strict, "confirm": True}
        return racer.put("/api/models/thermostat", json=body).status_code

    def save_bad(racer: FlaskClient) -> int:
        body = {"content": {"deviceName": "a", "bad": True}}
        return racer.put(f"/api/configs/{config['id']}", json=body).status_code

    schema_status, save_status = race(pg_app, [change_schema, save_bad])
    assert schema_status == 200
    row = client.get(f"/api/configs/{config['id']}").get_json()
    if save_status == 200:  # saved first: the schema change then marked it invalid
        assert row["content"]["bad"] is True and row["schema_valid"] is False
    else:  # the schema change came first: the save was refused
        assert save_status == 400 and row["schema_valid"] is True


# --- MQTT ------------------------------------------------------------------------------------


@pytest.mark.mqtt
@pytest.mark.postgres
def test_a_subscriber_gets_one_message_per_changed_config(
    pg_settings: t.Any, subscriber: Subscriber, mqtt_url: str
) -> None:
    settings = pg_settings.model_copy(update={"mqtt_url": mqtt_url})
    publisher = build_publisher(settings, CollectorRegistry())
    app = create_app(settings, publisher=publisher, registry=CollectorRegistry())
    publisher.start()
    try:
        client = app.test_client()
        macs = [random_mac() for _ in range(6)]
        ids = [
            create_config(client, mac, {"n": index, "same": index == 5})
            for index, mac in enumerate(macs)
        ]
        assert wait_until(lambda: len(subscriber.about(*macs)) == 6)
        subscriber.messages.clear()
        selection = [config["id"] for config in ids]
        refused_expect = {str(config_id): "stale" for config_id in selection}
        refused = bulk(
            client, {"ids": selection}, {"same": True}, dry_run=False, expect=refused_expect
        )
        assert refused.status_code == 412
        applied = apply_bulk(client, {"ids": selection}, {"same": True})
        assert len(applied["changed"]) == 5  # the sixth had it already
        changed_macs = macs[:5]
        assert wait_until(lambda: len(subscriber.about(*macs)) >= 5)
        # One message per changed config, none for the unchanged one or the refused request.
        undone = client.post(f"/api/change-sets/{applied['change_set']}/undo", json={})
        assert undone.status_code == 200
        assert wait_until(lambda: len(subscriber.about(*macs)) >= 10)
        messages = subscriber.about(*macs)
        assert sorted(message[1]["filename"] for message in messages) == sorted(
            [f"{mac}.json" for mac in changed_macs] * 2
        )
        assert all(message[0] == TOPIC and message[2] == 1 for message in messages)
    finally:
        publisher.stop()
        app.extensions["iotsupport"].database.dispose()


def test_bulk_change_sees_the_schema_of_each_models_config(client: FlaskClient) -> None:
    create_model(client, "one", schema=SCHEMA)
    create_model(client, "two", schema={"properties": {"deviceName": {"maxLength": 3}}})
    a = create_config(client, "aa:00:00:00:00:01", {"deviceName": "A"}, "one")
    b = create_config(client, "aa:00:00:00:00:02", {"deviceName": "B"}, "two")
    rows = preview(client, {"ids": [a["id"], b["id"]]}, {"deviceName": "Long"})["changes"]
    # The refused first.
    assert [(row["id"], row["valid"]) for row in rows] == [(b["id"], False), (a["id"], True)]
