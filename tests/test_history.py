"""History, diff, rollback, delete and restore: what an admin sees after every edit."""

from __future__ import annotations

import typing as t
from collections.abc import Iterator

import pytest
from conftest import RecordingPublisher
from conftest import Subscriber
from conftest import assert_error
from conftest import clear_desired
from conftest import make_settings
from conftest import post_raw
from conftest import race
from conftest import random_mac
from conftest import wait_until
from flask import Flask
from flask import Response
from flask import g
from flask import request
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from werkzeug.test import TestResponse

from iotsupport import create_app
from iotsupport.extensions import state

MAC = "aa:bb:cc:dd:ee:ff"
TOPIC = "iotsupport/updates/configs"
ACTOR_HEADER = "X-Test-Actor"
ENTRY_KEYS = {
    "version",
    "event",
    "source_version",
    "device_name",
    "device_entity_id",
    "enable_ota",
    "saved_at",
    "saved_by",
    "change_set_id",
}


def act_as_header(app: Flask) -> None:
    """Stand in for the login hook: the test names the caller in a header."""

    @app.before_request
    def _actor() -> None:
        if ACTOR_HEADER in request.headers:
            g.actor = request.headers[ACTOR_HEADER]


@pytest.fixture
def history_client(app: Flask) -> FlaskClient:
    act_as_header(app)
    return app.test_client()


def create(client: FlaskClient, content: t.Any = None, mac: str = MAC) -> dict[str, t.Any]:
    body = {"mac_address": mac, "content": {"deviceName": "a"} if content is None else content}
    response = client.post("/api/configs", json=body)
    assert response.status_code == 201, response.get_data(as_text=True)
    created: dict[str, t.Any] = response.get_json()
    return created


def put(client: FlaskClient, config_id: int, content: t.Any, **headers: str) -> TestResponse:
    return client.put(f"/api/configs/{config_id}", json={"content": content}, headers=headers)


def history(client: FlaskClient, config_id: int) -> dict[str, t.Any]:
    response = client.get(f"/api/configs/{config_id}/history")
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, t.Any] = response.get_json()
    return body


def versions(client: FlaskClient, config_id: int) -> list[int]:
    return [entry["version"] for entry in history(client, config_id)["versions"]]


# --- history ------------------------------------------------------------------------------


def test_every_save_is_a_version_newest_first(history_client: FlaskClient) -> None:
    client = history_client
    created = create(client, {"deviceName": "Hall"}, mac="AA-BB-CC-DD-EE-FF")
    assert created["updated_by"] == "anonymous"
    put(
        client, created["id"], {"deviceName": "Kitchen", "enableOTA": True}, **{ACTOR_HEADER: "ann"}
    )
    body = history(client, created["id"])
    assert body["config_id"] == created["id"]
    assert body["mac_address"] == MAC
    assert body["deleted"] is False
    assert body["count"] == 2
    newest, first = body["versions"]
    assert set(newest) == ENTRY_KEYS  # no content in the list
    assert (newest["version"], newest["event"], newest["saved_by"]) == (2, "updated", "ann")
    assert (newest["device_name"], newest["enable_ota"]) == ("Kitchen", True)
    assert (first["version"], first["event"], first["saved_by"]) == (1, "created", "anonymous")
    assert first["saved_at"] == created["updated_at"]
    current = client.get(f"/api/configs/{created['id']}").get_json()
    assert current["updated_by"] == "ann"
    assert newest["saved_at"] == current["updated_at"]
    (summary,) = client.get("/api/configs").get_json()["configs"]
    assert summary["updated_by"] == "ann"


def test_a_version_keeps_its_content_verbatim(client: FlaskClient) -> None:
    raw = b'{"mac_address": "aa:bb:cc:dd:ee:ff", "content": {"b": 1,  "a": [1.50, 2]}}'
    config_id = post_raw(client, raw).get_json()["id"]
    put(client, config_id, {"b": 2})
    response = client.get(f"/api/configs/{config_id}/history/1")
    assert response.status_code == 200
    assert response.get_data(as_text=True).endswith(',"content":{"b": 1,  "a": [1.50, 2]}}')
    body = response.get_json()
    assert (body["config_id"], body["mac_address"], body["version"]) == (config_id, MAC, 1)
    assert client.get(f"/api/configs/{config_id}/history/2").get_json()["content"] == {"b": 2}
    assert_error(client.get(f"/api/configs/{config_id}/history/3"), 404, "not_found")
    assert_error(client.get("/api/configs/999/history"), 404, "not_found")
    assert_error(client.get("/api/configs/999/history/1"), 404, "not_found")


@pytest.mark.parametrize("content", [[], "not json", '{"a": NaN}'], ids=["array", "text", "nan"])
def test_a_refused_update_leaves_no_version(client: FlaskClient, content: t.Any) -> None:
    config_id = create(client)["id"]
    assert put(client, config_id, content).status_code == 400
    assert put(client, config_id, {"x": 1}, **{"If-Match": '"stale"'}).status_code == 412
    assert versions(client, config_id) == [1]


def test_history_is_written_in_the_same_transaction_as_the_change(
    app: Flask, publisher: RecordingPublisher
) -> None:
    """A request that fails after the service saved (here: at the very end) keeps nothing."""

    @app.after_request
    def _fail_late(response: Response) -> Response:
        # Runs before the commit hook (Flask runs after_request hooks newest first).
        if request.headers.get("X-Fail-Late"):
            response.status_code = 500
        return response

    client = app.test_client()
    config_id = create(client, {"v": 1})["id"]

    assert put(client, config_id, {"v": 2}, **{"X-Fail-Late": "1"}).status_code == 500
    assert client.post(f"/api/configs/{config_id}/rollback", json={"version": 1}).status_code == 200
    assert versions(client, config_id) == [2, 1]
    assert client.get(f"/api/configs/{config_id}").get_json()["version"] == 2
    assert len(publisher.messages) == 2  # the create and the rollback, nothing for the failure


# --- diff --------------------------------------------------------------------------------


def test_diff_ignores_formatting_and_shows_real_changes(client: FlaskClient) -> None:
    config_id = create(client, '{"name":"a","list":[1,2],"nested":{"x":true}}')["id"]
    reformatted = '{\n    "name": "a",\n    "list": [1, 2],   "nested": {"x": true}\n}\n'
    assert put(client, config_id, reformatted).status_code == 200
    same = client.get(f"/api/configs/{config_id}/diff?from=1&to=2")
    assert same.status_code == 200
    assert same.get_json() == {
        "config_id": config_id,
        "from_version": 1,
        "to_version": 2,
        "diff": "",
    }

    put(client, config_id, '{"name": "b", "list": [1, 2], "nested": {"x": true}}')
    changed = client.get(f"/api/configs/{config_id}/diff?from=1").get_json()  # to: current
    assert changed["to_version"] == 3
    lines = changed["diff"].splitlines()
    assert lines[:2] == ["--- version 1", "+++ version 3"]
    assert [line for line in lines[2:] if line[:1] in "+-"] == [
        '-  "name": "a",',
        '+  "name": "b",',
    ]


def test_diff_keeps_key_order(client: FlaskClient) -> None:
    config_id = create(client, '{"a": 1, "b": 2}')["id"]
    put(client, config_id, '{"b": 2, "a": 1}')
    diff = client.get(f"/api/configs/{config_id}/diff?from=1&to=2").get_json()["diff"]
    assert diff.splitlines() == [
        "--- version 1",
        "+++ version 2",
        "@@ -1,4 +1,4 @@",
        " {",
        '-  "a": 1,',
        '-  "b": 2',
        '+  "b": 2,',
        '+  "a": 1',
        " }",
    ]


@pytest.mark.parametrize(
    "query", ["?from=true", "?from=1.0", "?from=+1", "?from= 1", "?from=1e0", "?from=\uff11"]
)
def test_diff_versions_are_plain_digits(client: FlaskClient, query: str) -> None:
    config_id = create(client)["id"]
    put(client, config_id, {"v": 2})
    body = assert_error(client.get(f"/api/configs/{config_id}/diff{query}"), 400)
    assert body["code"] == "validation_error"


def test_diff_refuses_unknown_parameters(client: FlaskClient) -> None:
    config_id = create(client)["id"]
    put(client, config_id, {"v": 2})
    assert_error(client.get(f"/api/configs/{config_id}/diff?from=1&too=2"), 400)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("", 400),
        ("?from=x", 400),
        ("?from=0", 400),
        ("?from=1&to=", 400),
        ("?from=5", 404),
        ("?from=1&to=9", 404),
    ],
)
def test_diff_refusals(client: FlaskClient, query: str, status: int) -> None:
    config_id = create(client)["id"]
    put(client, config_id, {"v": 2})
    assert_error(client.get(f"/api/configs/{config_id}/diff{query}"), status)


# --- rollback -----------------------------------------------------------------------------


def test_rollback_saves_a_new_version_with_the_old_content(
    history_client: FlaskClient, publisher: RecordingPublisher
) -> None:
    client = history_client
    raw = b'{"mac_address": "aa:bb:cc:dd:ee:ff", "content": {"deviceName": "One",  "n": 1}}'
    config_id = post_raw(client, raw).get_json()["id"]
    put(client, config_id, {"deviceName": "Two"})
    response = client.post(
        f"/api/configs/{config_id}/rollback", json={"version": 1}, headers={ACTOR_HEADER: "bob"}
    )
    assert response.status_code == 200
    body = response.get_json()
    assert (body["version"], body["device_name"], body["updated_by"]) == (3, "One", "bob")
    assert response.headers["ETag"]
    assert client.get(f"/api/configs/{MAC}.json").data == b'{"deviceName": "One",  "n": 1}'
    newest = history(client, config_id)["versions"][0]
    assert (newest["event"], newest["source_version"], newest["saved_by"]) == (
        "rolled_back",
        1,
        "bob",
    )
    assert publisher.messages == [(TOPIC, {"filename": f"{MAC}.json"})] * 3


def test_rollback_brings_back_the_version_asked_for_not_the_one_before(
    client: FlaskClient, publisher: RecordingPublisher
) -> None:
    raws = ['{"v": 1,  "a": "one"}', '{"v": 2, "b": "two"}', '{"v":3}', '{ "v": 4 }']
    config_id = create(client, raws[0])["id"]
    for raw in raws[1:]:
        assert put(client, config_id, raw).status_code == 200
    for target, expected_version in ((2, 5), (1, 6), (4, 7)):
        response = client.post(f"/api/configs/{config_id}/rollback", json={"version": target})
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["version"] == expected_version
        assert client.get(f"/api/configs/{MAC}.json").get_data(as_text=True) == raws[target - 1]
        newest = history(client, config_id)["versions"][0]
        assert (newest["version"], newest["event"], newest["source_version"]) == (
            expected_version,
            "rolled_back",
            target,
        )
    assert versions(client, config_id) == [7, 6, 5, 4, 3, 2, 1]
    assert len(publisher.messages) == 7


@pytest.mark.parametrize("version", [True, False, "1", "2", 2.0, 1.5, None, [2], {"v": 2}])
def test_rollback_version_must_be_an_integer(client: FlaskClient, version: t.Any) -> None:
    """`true` is not version 1: booleans, strings and floats are refused, not converted."""
    config_id = create(client, {"v": 1})["id"]
    put(client, config_id, {"v": 2})
    response = client.post(f"/api/configs/{config_id}/rollback", json={"version": version})
    body = assert_error(response, 400, "validation_error")
    assert [error["field"] for error in body["details"]["errors"]] == ["version"]
    assert versions(client, config_id) == [2, 1]
    assert client.get(f"/api/configs/{MAC}.json").get_data() == b'{"v": 2}'


def test_rollback_refusals(client: FlaskClient, publisher: RecordingPublisher) -> None:
    config_id = create(client)["id"]
    assert_error(client.post(f"/api/configs/{config_id}/rollback", json={"version": 7}), 404)
    assert_error(client.post("/api/configs/999/rollback", json={"version": 1}), 404)
    assert_error(client.post(f"/api/configs/{config_id}/rollback", json={"version": 0}), 400)
    assert_error(client.post(f"/api/configs/{config_id}/rollback", json={}), 400)
    assert versions(client, config_id) == [1]
    assert len(publisher.messages) == 1


# --- delete and restore ---------------------------------------------------------------------


def test_deleted_configs_are_listed_and_keep_their_history(history_client: FlaskClient) -> None:
    client = history_client
    assert client.get("/api/configs/deleted").get_json() == {"configs": [], "count": 0}
    created = create(client)
    put(client, created["id"], {"v": 2})
    assert (
        client.delete(f"/api/configs/{created['id']}", headers={ACTOR_HEADER: "eve"}).status_code
        == 204
    )
    listed = client.get("/api/configs/deleted").get_json()
    assert listed["count"] == 1
    (entry,) = listed["configs"]
    assert entry["deleted_at"].endswith("+00:00")
    del entry["deleted_at"]
    assert entry == {
        "config_id": created["id"],
        "mac_address": MAC,
        "version": 2,
        "deleted_by": "eve",
        "mac_in_use": False,
    }
    gone = history(client, created["id"])
    assert gone["deleted"] is True
    assert [v["version"] for v in gone["versions"]] == [2, 1]
    # The device endpoint's rule does not swallow the new paths, nor they it.
    assert_error(client.get("/api/configs/deleted.json"), 400)


def test_restore_brings_back_the_config_with_its_history(
    history_client: FlaskClient, publisher: RecordingPublisher
) -> None:
    client = history_client
    created = create(client, '{"deviceName": "Desk",  "v": 1}')
    put(client, created["id"], '{"deviceName": "Desk",  "v": 2}')
    client.delete(f"/api/configs/{created['id']}")
    response = client.post(
        "/api/configs/deleted/AA-BB-CC-DD-EE-FF/restore", headers={ACTOR_HEADER: "sam"}
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["id"], body["version"], body["updated_by"]) == (created["id"], 3, "sam")
    assert body["created_at"] == created["created_at"]
    assert client.get(f"/api/configs/{MAC}.json").data == b'{"deviceName": "Desk",  "v": 2}'
    restored = history(client, created["id"])
    assert restored["deleted"] is False
    assert [(v["version"], v["event"]) for v in restored["versions"]] == [
        (3, "restored"),
        (2, "updated"),
        (1, "created"),
    ]
    assert restored["versions"][0]["source_version"] == 2
    assert client.get("/api/configs/deleted").get_json()["count"] == 0
    assert publisher.messages == [(TOPIC, {"filename": f"{MAC}.json"})] * 3
    assert_error(client.post(f"/api/configs/deleted/{MAC}/restore"), 409, "conflict")


def test_restore_refuses_a_mac_that_was_created_again(client: FlaskClient) -> None:
    old = create(client, {"v": "old"})
    client.delete(f"/api/configs/{old['id']}")
    new = create(client, {"v": "new"})
    (entry,) = client.get("/api/configs/deleted").get_json()["configs"]
    assert (entry["config_id"], entry["mac_in_use"]) == (old["id"], True)
    assert_error(client.post(f"/api/configs/deleted/{MAC}/restore"), 409, "conflict")
    assert client.get(f"/api/configs/{MAC}.json").get_json() == {"v": "new"}
    # Once the new one is deleted too, the latest delete is the one restored.
    client.delete(f"/api/configs/{new['id']}")
    assert [e["config_id"] for e in client.get("/api/configs/deleted").get_json()["configs"]] == [
        new["id"]
    ]
    assert client.post(f"/api/configs/deleted/{MAC}/restore").get_json()["id"] == new["id"]


def test_restore_refusals(client: FlaskClient) -> None:
    assert_error(client.post(f"/api/configs/deleted/{MAC}/restore"), 404, "not_found")
    assert_error(client.post("/api/configs/deleted/nope/restore"), 400)


# --- retention ------------------------------------------------------------------------------


@pytest.fixture
def keep_three(database_url: str, publisher: RecordingPublisher) -> Iterator[FlaskClient]:
    settings = make_settings(database_url, history_keep_versions=3)
    app = create_app(settings, publisher=publisher, registry=CollectorRegistry())
    yield app.test_client()
    state(app).database.dispose()


def test_retention_keeps_the_first_and_the_newest(keep_three: FlaskClient) -> None:
    client = keep_three
    config_id = create(client, {"v": 1})["id"]
    put(client, config_id, {"v": 2})
    assert versions(client, config_id) == [2, 1]
    for value in range(3, 8):
        put(client, config_id, {"v": value})
    assert versions(client, config_id) == [7, 6, 1]
    assert client.get(f"/api/configs/{config_id}/history/1").get_json()["content"] == {"v": 1}
    assert_error(client.post(f"/api/configs/{config_id}/rollback", json={"version": 4}), 404)
    rolled = client.post(f"/api/configs/{config_id}/rollback", json={"version": 1})
    assert (rolled.status_code, rolled.get_json()["content"]) == (200, {"v": 1})
    assert versions(client, config_id) == [8, 7, 1]


# --- over a real broker and against PostgreSQL ------------------------------------------------


@pytest.mark.mqtt
def test_rollback_and_restore_reach_a_real_subscriber(
    database_url: str, mqtt_url: str, subscriber: Subscriber
) -> None:
    app = create_app(make_settings(database_url, mqtt_url=mqtt_url), registry=CollectorRegistry())
    client = app.test_client()
    mac = random_mac()
    publisher = state(app).publisher
    publisher.start()
    try:
        assert wait_until(lambda: publisher.state == "connected", 10)
        config_id = create(client, {"v": 1}, mac=mac)["id"]
        put(client, config_id, {"v": 2})
        assert (
            client.post(f"/api/configs/{config_id}/rollback", json={"version": 1}).status_code
            == 200
        )
        assert client.delete(f"/api/configs/{config_id}").status_code == 204
        assert client.post(f"/api/configs/deleted/{mac}/restore").status_code == 201
        assert wait_until(lambda: len(subscriber.about(mac)) >= 4, 5)
    finally:
        publisher.stop()
        state(app).database.dispose()
        clear_desired(mqtt_url, mac)
    # create, update, rollback, restore; nothing for the delete
    assert [message[:3] for message in subscriber.about(mac)] == [
        (TOPIC, {"filename": f"{mac}.json"}, 1)
    ] * 4


@pytest.mark.postgres
def test_concurrent_updates_leave_consecutive_history(pg_app: Flask) -> None:
    client = pg_app.test_client()
    config_id = create(client, {"n": 0})["id"]
    threads, per_thread = 6, 5

    def updater(worker: int) -> t.Callable[[FlaskClient], list[int]]:
        def run(c: FlaskClient) -> list[int]:
            return [
                put(c, config_id, {"w": worker, "s": step}).status_code
                for step in range(per_thread)
            ]

        return run

    statuses = [
        code for batch in race(pg_app, [updater(w) for w in range(threads)]) for code in batch
    ]
    assert set(statuses) == {200}
    total = threads * per_thread + 1
    assert versions(client, config_id) == list(range(total, 0, -1))
    contents = [
        client.get(f"/api/configs/{config_id}/history/{v}").get_json()["content"]
        for v in range(2, total + 1)
    ]
    assert len({(c["w"], c["s"]) for c in contents}) == total - 1  # every save kept once


@pytest.mark.postgres
def test_restore_and_history_on_postgresql(pg_app: Flask) -> None:
    client = pg_app.test_client()
    created = create(client, {"v": 1})
    put(client, created["id"], {"v": 2})
    client.delete(f"/api/configs/{created['id']}")
    restored = client.post(f"/api/configs/deleted/{MAC}/restore")
    assert restored.status_code == 201
    assert restored.get_json()["id"] == created["id"]
    assert versions(client, created["id"]) == [3, 2, 1]
    diff = client.get(f"/api/configs/{created['id']}/diff?from=1").get_json()
    assert (diff["from_version"], diff["to_version"]) == (1, 3)
    assert [line for line in diff["diff"].splitlines() if line[:1] in "+-"] == [
        "--- version 1",
        "+++ version 3",
        '-  "v": 1',
        '+  "v": 2',
    ]
    assert client.get(f"/api/configs/{MAC}.json").get_data() == b'{"v": 2}'
    # The id sequence is untouched: the next config gets a fresh id.
    assert create(client, mac="aa:bb:cc:dd:ee:01")["id"] > created["id"]
