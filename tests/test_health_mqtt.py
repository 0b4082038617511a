"""Health and online state over MQTT, on a real Mosquitto with device accounts (dynsec):
a device's own messages count as verified, another device cannot speak for it, junk is
refused with a count, and its last will shows it offline at once."""

from __future__ import annotations

import json
import typing as t

import paho.mqtt.client as mqtt
import pytest
from conftest import Broker
from conftest import wait_until
from credentials_support import create_device
from credentials_support import issue
from flask import Flask
from paho.mqtt.enums import CallbackAPIVersion
from test_dynsec import MAC
from test_dynsec import OTHER
from test_dynsec import broker  # noqa: F401  (fixture)
from test_dynsec import dynsec_app  # noqa: F401  (fixture)
from test_dynsec import settled

from iotsupport.extensions import state
from iotsupport.health.mqtt import health_topic
from iotsupport.health.mqtt import status_topic

pytestmark = pytest.mark.mqtt


def device_client(server: Broker, mac: str, token: str) -> mqtt.Client:
    """A device as firmware would connect: its will says `offline`, then it says `online`."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=mac, protocol=mqtt.MQTTv5)
    client.username_pw_set(mac, token)
    client.will_set(status_topic(mac), "offline", qos=1, retain=True)
    client.connect("127.0.0.1", server.port)
    client.loop_start()
    client.publish(status_topic(mac), "online", qos=1, retain=True).wait_for_publish(5)
    return client


def device_health(app: Flask, config_id: int) -> dict[str, t.Any]:
    state(app).reports.flush()
    body: dict[str, t.Any] = app.test_client().get(f"/api/configs/{config_id}/health").get_json()
    return body


def test_health_and_status_over_mqtt_with_device_accounts(
    dynsec_app: t.Callable[[], Flask],  # noqa: F811
    broker: Broker,  # noqa: F811
) -> None:
    app = dynsec_app()
    listener = state(app).health_listener
    assert listener is not None and listener.verified
    listener.start()
    try:
        assert listener.subscribed.wait(10)
        client = app.test_client()
        config_id = create_device(client, MAC)
        token = issue(client, config_id)
        other_id = create_device(client, OTHER)
        other_token = issue(client, other_id)
        assert settled(client)
        device = device_client(broker, MAC, token)
        report = {
            "reset_reason": "PANIC",
            "uptime_s": 12,
            "free_heap": 120000,
            "min_free_heap": 80000,
            "wifi_rssi": -70,
            "metrics": {"loop_ms": 4.5},
        }
        device.publish(health_topic(MAC), json.dumps(report), qos=1).wait_for_publish(5)
        assert wait_until(lambda: len(device_health(app, config_id)["samples"]) == 1, 10)
        body = device_health(app, config_id)
        (sample,) = body["samples"]
        assert (sample["source"], sample["verified"], sample["reset_reason"]) == (
            "mqtt",
            True,
            "PANIC",
        )
        assert sample["metrics"] == {"loop_ms": 4.5}
        assert [reset["reset_reason"] for reset in body["resets"]] == ["PANIC"]
        assert body["online"] is True

        # Another device cannot report for this one (the broker's ACL), and junk is refused.
        other = device_client(broker, OTHER, other_token)
        forged = {"reset_reason": "POWERON", "uptime_s": 1}
        other.publish(health_topic(MAC), json.dumps(forged), qos=1).wait_for_publish(5)
        registry = state(app).scrape_registry

        def junk() -> float:
            labels = {"source": "mqtt", "field": "reset_reason"}
            value = registry.get_sample_value("iotsupport_health_reports_refused_total", labels)
            return value or 0.0

        device.publish(health_topic(MAC), b'{"reset_reason": "OOPS"}', qos=1).wait_for_publish(5)
        assert wait_until(lambda: junk() == 1, 10)
        assert len(device_health(app, config_id)["samples"]) == 1
        assert wait_until(lambda: device_health(app, other_id)["online"] is True, 10)

        # The connection dies without a word: the broker publishes the will.
        device.loop_stop()
        sock = device.socket()
        assert sock is not None
        sock.close()
        assert wait_until(lambda: device_health(app, config_id)["online"] is False, 15)
        listed = client.get("/api/configs").get_json()["configs"]
        assert {row["mac_address"]: row["online"] for row in listed} == {MAC: False, OTHER: True}
        other.disconnect()
        other.loop_stop()
    finally:
        listener.stop()
