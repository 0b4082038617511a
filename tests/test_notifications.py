"""Change notifications: what is published, when, and what happens when the broker is away."""

from __future__ import annotations

import sqlite3
import typing as t
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from conftest import Broker
from conftest import RecordingPublisher
from conftest import Subscriber
from conftest import assert_error
from conftest import clear_desired
from conftest import free_port
from conftest import make_settings
from conftest import random_mac
from conftest import wait_until
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from iotsupport import create_app
from iotsupport.extensions import state
from iotsupport.notifications import MqttPublisher
from iotsupport.notifications import MqttState
from iotsupport.notifications import Payload

TOPIC = "iotsupport/updates/configs"
DESIRED_LABEL = "iotsupport/devices/+/desired"  # the metric label of every device's topic
MAC = "aa:bb:cc:dd:ee:ff"


def message(mac: str) -> tuple[str, dict[str, str]]:
    return (TOPIC, {"filename": f"{mac}.json"})


def create(client: FlaskClient, mac: str, content: object = None) -> dict[str, t.Any]:
    response = client.post(
        "/api/configs", json={"mac_address": mac, "content": content or {"deviceName": "d"}}
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    body: dict[str, t.Any] = response.get_json()
    return body


# --- with the in-memory publisher --------------------------------------------------


def test_create_publishes_the_normalized_filename(
    client: FlaskClient, publisher: RecordingPublisher
) -> None:
    create(client, "AA-BB-CC-DD-EE-FF")
    assert publisher.messages == [message(MAC)]


def test_update_publishes(client: FlaskClient, publisher: RecordingPublisher) -> None:
    created = create(client, MAC)
    publisher.messages.clear()
    response = client.put(f"/api/configs/{created['id']}", json={"content": {"v": 2}})
    assert response.status_code == 200
    assert publisher.messages == [message(MAC)]
    client.put(f"/api/configs/{created['id']}", json={"content": {"v": 3}})
    assert publisher.messages == [message(MAC), message(MAC)]


def test_delete_publishes_nothing(client: FlaskClient, publisher: RecordingPublisher) -> None:
    created = create(client, MAC)
    publisher.messages.clear()
    assert client.delete(f"/api/configs/{created['id']}").status_code == 204
    assert publisher.messages == []


def test_reads_publish_nothing(client: FlaskClient, publisher: RecordingPublisher) -> None:
    created = create(client, MAC)
    publisher.messages.clear()
    for path in ("/api/configs", f"/api/configs/{created['id']}", f"/api/configs/{MAC}.json"):
        assert client.get(path).status_code == 200
    assert publisher.messages == []


def test_duplicate_publishes_nothing(client: FlaskClient, publisher: RecordingPublisher) -> None:
    create(client, MAC)
    publisher.messages.clear()
    response = client.post("/api/configs", json={"mac_address": MAC.upper(), "content": {}})
    assert_error(response, 409)
    assert publisher.messages == []


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    [
        ("POST", "/api/configs", {"mac_address": "bad", "content": {}}, {}, 400),
        ("POST", "/api/configs", {"mac_address": "11:22:33:44:55:66", "content": []}, {}, 400),
        ("POST", "/api/configs", {"mac_address": "11:22:33:44:55:66", "content": "[]"}, {}, 400),
        ("PUT", "/api/configs/1", {"content": "nope"}, {}, 400),
        ("PUT", "/api/configs/1", {"content": {}, "mac_address": "11:22:33:44:55:66"}, {}, 400),
        ("PUT", "/api/configs/1", {"content": {"v": 2}}, {"If-Match": '"stale"'}, 412),
        ("PUT", "/api/configs/999", {"content": {"v": 2}}, {}, 404),
        ("DELETE", "/api/configs/999", None, {}, 404),
        ("PATCH", "/api/configs/1", {"content": {"v": 2}}, {}, 405),
    ],
)
def test_refused_requests_publish_nothing(
    client: FlaskClient,
    publisher: RecordingPublisher,
    method: str,
    path: str,
    body: object,
    headers: dict[str, str],
    status: int,
) -> None:
    created = create(client, MAC)
    assert created["id"] == 1
    publisher.messages.clear()
    response = client.open(path, method=method, json=body, headers=headers)
    assert_error(response, status)
    assert publisher.messages == []


class CommitCheckingPublisher(RecordingPublisher):
    """Reads the database from its own connection when asked to publish."""

    def __init__(self, database_path: str) -> None:
        super().__init__()
        self.database_path = database_path
        self.seen: list[tuple[str, int] | None] = []

    def publish(self, topic: str, payload: Payload, *, retain: bool = False) -> None:
        if retain:  # the desired state; this test is about the broadcast
            super().publish(topic, payload, retain=retain)
            return
        mac = payload["filename"].removesuffix(".json")
        with sqlite3.connect(self.database_path) as connection:
            row = connection.execute(
                "SELECT content, version FROM device_configs WHERE mac_address = ?", (mac,)
            ).fetchone()
        self.seen.append(None if row is None else (row[0], row[1]))
        super().publish(topic, payload, retain=retain)


def test_messages_are_published_only_after_commit(database_url: str) -> None:
    publisher = CommitCheckingPublisher(database_url.removeprefix("sqlite:///"))
    app = create_app(make_settings(database_url), publisher=publisher, registry=CollectorRegistry())
    client = app.test_client()
    created = create(client, MAC, {"v": 1})
    client.put(f"/api/configs/{created['id']}", json={"content": '{"v": 2}'})
    # Another connection already sees what each message announces.
    assert publisher.seen == [('{"v": 1}', 1), ('{"v": 2}', 2)]
    assert publisher.messages == [message(MAC), message(MAC)]
    state(app).database.dispose()


class FailingPublisher(RecordingPublisher):
    def publish(self, topic: str, payload: Payload, *, retain: bool = False) -> None:
        raise ConnectionError("broker exploded")


def test_a_failing_publisher_never_fails_the_request(database_url: str) -> None:
    app = create_app(
        make_settings(database_url), publisher=FailingPublisher(), registry=CollectorRegistry()
    )
    client = app.test_client()
    created = create(client, MAC, {"v": 1})
    response = client.put(f"/api/configs/{created['id']}", json={"content": {"v": 2}})
    assert response.status_code == 200
    assert client.get(f"/api/configs/{MAC}.json").data == b'{"v": 2}'
    state(app).database.dispose()


def test_without_mqtt_url_publishing_is_off_and_nothing_fails(database_url: str) -> None:
    app = create_app(make_settings(database_url), registry=CollectorRegistry())
    client = app.test_client()
    state(app).publisher.start()
    created = create(client, MAC)
    assert client.put(f"/api/configs/{created['id']}", json={"content": {}}).status_code == 200
    assert client.get("/api/health").get_json()["mqtt"] == "disabled"
    state(app).publisher.stop()
    state(app).database.dispose()


# --- against a real broker --------------------------------------------------------


def mqtt_app(database_url: str, mqtt_url: str) -> Flask:
    return create_app(make_settings(database_url, mqtt_url=mqtt_url), registry=CollectorRegistry())


def publisher_state(app: Flask) -> MqttState:
    return state(app).publisher.state


@contextmanager
def started(app: Flask, *, wait_connected: bool = True) -> Iterator[MqttPublisher]:
    publisher = state(app).publisher
    assert isinstance(publisher, MqttPublisher)
    publisher.start()
    try:
        if wait_connected:
            assert wait_until(lambda: publisher.state == "connected", 10), "never connected"
        yield publisher
    finally:
        publisher.stop(flush_seconds=1.0 if wait_connected else 0.0)
        state(app).database.dispose()


def publish_totals(client: FlaskClient) -> dict[str, dict[str, float]]:
    """Publish outcomes per topic label."""
    families = text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
    totals: dict[str, dict[str, float]] = {}
    for family in families:
        if family.name != "iotsupport_mqtt_publish":
            continue
        for sample in family.samples:
            if sample.name == "iotsupport_mqtt_publish_total":
                topic = totals.setdefault(sample.labels["topic"], {})
                topic[sample.labels["outcome"]] = sample.value
    return totals


@pytest.mark.mqtt
def test_subscriber_receives_exactly_the_announced_changes(
    database_url: str, mqtt_url: str
) -> None:
    watcher = Subscriber(mqtt_url, retain_as_published=True)
    app = mqtt_app(database_url, mqtt_url)
    client = app.test_client()
    mac, other, sentinel = random_mac(), random_mac(), random_mac()
    try:
        with started(app):
            assert client.get("/api/health").get_json()["mqtt"] == "connected"
            created = create(client, mac.upper().replace(":", "-"))
            url = f"/api/configs/{created['id']}"
            assert client.put(url, json={"content": {"v": 2}}).status_code == 200
            # Refusals and a delete: none of them may reach the own_broker.
            assert (
                client.post("/api/configs", json={"mac_address": mac, "content": {}}).status_code
                == 409
            )
            assert client.put(url, json={"content": []}).status_code == 400
            assert (
                client.put(url, json={"content": {}}, headers={"If-Match": '"x"'}).status_code
                == 412
            )
            other_config = create(client, other)
            assert client.delete(f"/api/configs/{other_config['id']}").status_code == 204
            # Messages from one client on one topic arrive in order: once the
            # sentinel is here, anything sent before it has arrived too.
            create(client, sentinel)
            assert watcher.wait_for_filename(f"{sentinel}.json")
        received = watcher.about(mac, other, sentinel)
    finally:
        watcher.close()
        clear_desired(mqtt_url, mac, sentinel)
    assert received == [
        (TOPIC, {"filename": f"{mac}.json"}, 1, False),
        (TOPIC, {"filename": f"{mac}.json"}, 1, False),
        (TOPIC, {"filename": f"{other}.json"}, 1, False),
        (TOPIC, {"filename": f"{sentinel}.json"}, 1, False),
    ]


@pytest.mark.mqtt
def test_the_subscriber_fixture_sees_a_create(
    database_url: str, mqtt_url: str, subscriber: Subscriber
) -> None:
    app = mqtt_app(database_url, mqtt_url)
    client = app.test_client()
    mac = random_mac()
    try:
        with started(app):
            create(client, mac)
            assert subscriber.wait_for_filename(f"{mac}.json")
    finally:
        clear_desired(mqtt_url, mac)
    assert subscriber.about(mac) == [(TOPIC, {"filename": f"{mac}.json"}, 1, False)]
    assert publish_totals(client)[TOPIC].get("sent") == 1


def outbox_metrics(client: FlaskClient) -> dict[str, float]:
    families = text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
    names = {"iotsupport_outbox_pending": "pending", "iotsupport_outbox_oldest_seconds": "oldest"}
    return {
        names[family.name]: family.samples[0].value for family in families if family.name in names
    }


def closed_port_url() -> str:
    return f"mqtt://127.0.0.1:{free_port()}"


def test_unreachable_broker_never_fails_an_api_call(database_url: str) -> None:
    app = mqtt_app(database_url, closed_port_url())
    client = app.test_client()
    with started(app, wait_connected=False) as publisher:
        assert publisher.state == "disconnected"
        created = create(client, MAC, {"v": 1})
        url = f"/api/configs/{created['id']}"
        assert client.put(url, json={"content": {"v": 2}}).status_code == 200
        assert client.get(f"/api/configs/{MAC}.json").data == b'{"v": 2}'
        assert client.delete(url).status_code == 204
        health = client.get("/api/health")
        assert health.status_code == 200
        assert health.get_json() == {
            "status": "healthy",
            "database": "ok",
            "mqtt": "disconnected",
            "assets": "disabled",
            "device_cache": "database",  # this app's cache was not started
        }
        # Nothing was handed to the MQTT client: the announcements wait in the outbox
        # (create, update, delete) until a relay can send them.
        assert publish_totals(client) == {}
        assert outbox_metrics(client) == {"pending": 3.0, "oldest": pytest.approx(0, abs=30)}


# --- a broker that goes away and comes back -----------------------------------------


@pytest.mark.mqtt
def test_publisher_uses_one_mqtt5_connection(database_url: str, own_broker: Broker) -> None:
    app = mqtt_app(database_url, own_broker.url)
    client = app.test_client()
    with started(app):
        for index in range(5):
            create(client, f"aa:bb:cc:dd:ee:{index:02x}")
    connects = [
        line
        for line in own_broker.log().splitlines()
        if "New client connected" in line and " as iotsupport-" in line
    ]
    assert len(connects) == 1, own_broker.log()
    assert "(p5," in connects[0]  # protocol level 5: MQTT 5


@pytest.mark.mqtt
def test_publisher_reconnects_when_the_broker_returns(
    database_url: str, own_broker: Broker
) -> None:
    app = mqtt_app(database_url, own_broker.url)
    client = app.test_client()
    with started(app) as publisher:
        created = create(client, MAC, {"v": 1})
        url = f"/api/configs/{created['id']}"

        own_broker.kill()
        assert wait_until(lambda: publisher.state == "disconnected", 10)
        assert client.get("/api/health").get_json()["mqtt"] == "disconnected"
        assert client.get("/api/health").status_code == 200
        assert client.put(url, json={"content": {"v": 2}}).status_code == 200
        assert client.get(f"/api/configs/{MAC}.json").data == b'{"v": 2}'

        own_broker.start()
        watcher = Subscriber(own_broker.url)
        try:
            assert wait_until(lambda: publisher.state == "connected", 15), own_broker.log()
            assert client.get("/api/health").get_json()["mqtt"] == "connected"
            later = random_mac()
            create(client, later)
            assert watcher.wait_for_filename(f"{later}.json"), own_broker.log()
        finally:
            watcher.close()
