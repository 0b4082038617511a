"""The retained desired state per device: `iotsupport/devices/<mac>/desired`."""

from __future__ import annotations

import json
import threading
import typing as t
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from conftest import RecordingPublisher
from conftest import assert_error
from conftest import clear_desired
from conftest import make_settings
from conftest import random_mac
from conftest import wait_until
from flask import Flask
from flask.testing import FlaskClient
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from iotsupport import create_app
from iotsupport.extensions import state

MAC = "aa:bb:cc:dd:ee:01"
TOPIC = f"iotsupport/devices/{MAC}/desired"


def desired(client: FlaskClient, config_id: int) -> dict[str, t.Any]:
    body = client.get(f"/api/configs/{config_id}").get_json()
    return {
        "config_version": body["version"],
        "config_etag": body_etag(client, config_id),
        "firmware_version": None,  # no firmware target yet (see test_rollouts.py)
        "firmware_sha256": None,
    }


def body_etag(client: FlaskClient, config_id: int) -> str:
    return client.get(f"/api/configs/{config_id}").headers["ETag"].strip('"')


def test_every_committed_change_publishes_the_desired_state_retained(
    client: FlaskClient, publisher: RecordingPublisher, tmp_path: Path, app: Flask
) -> None:
    created = client.post("/api/configs", json={"mac_address": MAC, "content": {"v": 1}})
    config_id = created.get_json()["id"]
    assert publisher.retained[TOPIC] == desired(client, config_id)
    assert publisher.retained[TOPIC]["config_version"] == 1
    # The device's ETag header is the same value, quoted.
    device_etag = client.get(f"/api/configs/{MAC}.json").headers["ETag"]
    assert device_etag == f'"{publisher.retained[TOPIC]["config_etag"]}"'

    client.put(f"/api/configs/{config_id}", json={"content": {"v": 2}})
    assert publisher.retained[TOPIC]["config_version"] == 2
    client.post(f"/api/configs/{config_id}/rollback", json={"version": 1})
    assert publisher.retained[TOPIC] == desired(client, config_id)
    assert publisher.retained[TOPIC]["config_version"] == 3

    assert client.delete(f"/api/configs/{config_id}").status_code == 204
    assert TOPIC not in publisher.retained
    assert publisher.retained_log[-1] == (TOPIC, None)

    client.post(f"/api/configs/deleted/{MAC}/restore")
    assert publisher.retained[TOPIC]["config_version"] == 4

    (tmp_path / "aa-bb-cc-dd-ee-01.json").write_text('{"v": 5}')
    result = app.test_cli_runner().invoke(args=["import-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert publisher.retained[TOPIC]["config_version"] == 5
    assert [
        entry[1]["config_version"] if entry[1] else None for entry in publisher.retained_log
    ] == [
        1,
        2,
        3,
        None,
        4,
        5,
    ]


def test_refused_changes_publish_no_desired_state(
    client: FlaskClient, publisher: RecordingPublisher
) -> None:
    config_id = client.post("/api/configs", json={"mac_address": MAC, "content": {}}).get_json()[
        "id"
    ]
    publisher.retained_log.clear()
    assert_error(client.put(f"/api/configs/{config_id}", json={"content": []}), 400)
    assert_error(
        client.put(f"/api/configs/{config_id}", json={"content": {}}, headers={"If-Match": '"x"'}),
        412,
    )
    assert_error(client.post("/api/configs", json={"mac_address": MAC, "content": {}}), 409)
    assert_error(client.delete("/api/configs/999"), 404)
    assert publisher.retained_log == []


class RetainedReader:
    """Subscribes once, late, and reports the retained message of one topic (or none)."""

    def __init__(self, url: str, topic: str) -> None:
        parts = urlsplit(url)
        self.messages: list[tuple[bytes, bool]] = []
        self._done = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = lambda _c, _u, message: self.messages.append(
            (bytes(message.payload), bool(message.retain))
        )
        self.client.on_subscribe = lambda *args: self._done.set()
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert self._done.wait(5)

    def close(self) -> None:
        self.client.disconnect()  # first: the network thread then ends at once
        self.client.loop_stop()


@pytest.mark.mqtt
def test_a_device_that_subscribes_late_gets_its_desired_state(
    database_url: str, mqtt_url: str
) -> None:
    app = create_app(make_settings(database_url, mqtt_url=mqtt_url), registry=CollectorRegistry())
    client = app.test_client()
    mac = random_mac()
    topic = f"iotsupport/devices/{mac}/desired"
    publisher = state(app).publisher
    publisher.start()
    try:
        assert wait_until(lambda: publisher.state == "connected", 10)
        config_id = client.post(
            "/api/configs", json={"mac_address": mac, "content": {"v": 1}}
        ).get_json()["id"]
        client.put(f"/api/configs/{config_id}", json={"content": {"v": 2}})
        etag = client.get(f"/api/configs/{config_id}").headers["ETag"].strip('"')

        def retained(expect: bool) -> list[tuple[bytes, bool]]:
            """What a fresh subscriber gets; the broker sends it right after the SUBACK."""
            reader = RetainedReader(mqtt_url, topic)
            try:
                wait_until(lambda: bool(reader.messages), 2 if expect else 0.3)
                return reader.messages
            finally:
                reader.close()

        # QoS 1 and in order: the device, subscribing now, gets version 2 at once.
        assert wait_until(lambda: bool(retained(True)), 5)
        ((payload, was_retained),) = retained(True)
        assert was_retained
        assert json.loads(payload) == {
            "config_version": 2,
            "config_etag": etag,
            "firmware_version": None,
            "firmware_sha256": None,
        }

        assert client.delete(f"/api/configs/{config_id}").status_code == 204
        assert wait_until(lambda: retained(False) == [], 5)  # the delete cleared it
    finally:
        publisher.stop()
        state(app).database.dispose()
        clear_desired(mqtt_url, mac)
