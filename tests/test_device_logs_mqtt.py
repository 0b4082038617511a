"""Device logs over MQTT: a shared subscription with a persistent session per worker,
against a throwaway mosquitto of the test's own."""

from __future__ import annotations

import typing as t

import paho.mqtt.client as mqtt
import pytest
from conftest import Broker
from conftest import make_settings
from conftest import random_mac
from conftest import wait_until
from credentials_support import create_device
from flask import Flask
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from iotsupport import create_app
from iotsupport.credentials.broker import device_acls
from iotsupport.device_logs.subscriber import LogSubscriber
from iotsupport.extensions import state

pytestmark = pytest.mark.mqtt


def log_app(database_url: str, own_broker: Broker) -> Flask:
    settings = make_settings(database_url, mqtt_url=own_broker.url, mqtt_client_id_prefix="logtest")
    return create_app(settings, registry=CollectorRegistry())


def subscriber_of(app: Flask) -> LogSubscriber:
    logs = state(app).logs
    assert logs is not None and isinstance(logs.subscriber, LogSubscriber)
    return logs.subscriber


def publish(own_broker: Broker, mac: str, payloads: t.Sequence[bytes]) -> None:
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"dev-{mac}")
    device.connect("127.0.0.1", own_broker.port)
    device.loop_start()
    try:
        for payload in payloads:
            device.publish(f"iotsupport/devices/{mac}/logs", payload, qos=1).wait_for_publish(5)
    finally:
        device.disconnect()
        device.loop_stop()


def stored(app: Flask, config_id: int) -> list[str]:
    state(app).reports.flush()
    answer = app.test_client().get(f"/api/configs/{config_id}/logs?limit=1000").get_json()
    return [line["message"] for line in answer["lines"]]


def test_lines_published_by_a_device_are_stored(database_url: str, own_broker: Broker) -> None:
    app = log_app(database_url, own_broker)
    mac = random_mac()
    config_id = create_device(app.test_client(), mac)
    reader = subscriber_of(app)
    reader.start()
    try:
        assert reader.subscribed.wait(10)
        publish(
            own_broker, mac, [b"\x1b[0;33mW (42) wifi: weak signal\x1b[0m", b'{"message": "json"}']
        )
        assert wait_until(lambda: len(stored(app, config_id)) == 2, 10)
        line = app.test_client().get(f"/api/configs/{config_id}/logs").get_json()["lines"][1]
        assert (line["level"], line["tag"], line["message"]) == ("W", "wifi", "weak signal")
        assert line["verified"] is False  # no broker device accounts: anyone could publish
    finally:
        reader.stop()


def test_the_broker_keeps_lines_while_the_reader_is_away(
    database_url: str, own_broker: Broker
) -> None:
    app = log_app(database_url, own_broker)
    mac = random_mac()
    config_id = create_device(app.test_client(), mac)
    reader = subscriber_of(app)
    reader.start()
    assert reader.subscribed.wait(10)
    reader.stop()
    publish(own_broker, mac, [b"I (1) away: sent while the server was down"])
    reader.subscribed.clear()
    reader.start()  # the same slot, so the same client id and session
    try:
        assert wait_until(lambda: stored(app, config_id) == ["sent while the server was down"], 10)
    finally:
        reader.stop()


def test_workers_share_the_subscription(database_url: str, own_broker: Broker) -> None:
    first, second = log_app(database_url, own_broker), log_app(database_url, own_broker)
    mac = random_mac()
    config_id = create_device(first.test_client(), mac)
    readers = [subscriber_of(first), subscriber_of(second)]
    for reader in readers:
        reader.start()
    try:
        assert all(reader.subscribed.wait(10) for reader in readers)
        publish(own_broker, mac, [f"I (1) n: {n}".encode() for n in range(20)])

        def both() -> list[str]:
            state(second).reports.flush()
            return stored(first, config_id)

        assert wait_until(lambda: len(both()) >= 20, 10)
        assert sorted(both()) == sorted(str(n) for n in range(20))  # each line once
    finally:
        for reader in readers:
            reader.stop()
    assert "logtest-logs-" in own_broker.log() and "$share/iotsupport-logs/" in own_broker.log()


def test_a_device_account_may_publish_its_own_logs() -> None:
    acls = device_acls("aa:bb:cc:dd:ee:ff")
    assert {
        "acltype": "publishClientSend",
        "topic": "iotsupport/devices/aa:bb:cc:dd:ee:ff/logs",
        "allow": True,
    } in acls


def test_simulated_devices_log_over_mqtt(
    database_url: str, own_broker: Broker, serve: t.Callable[[Flask], str]
) -> None:
    from release_support import create_model

    app = log_app(database_url, own_broker)
    create_model(app.test_client(), "simmqtt")
    reader = subscriber_of(app)
    reader.start()
    try:
        assert reader.subscribed.wait(10)
        args = ["simulate", "--server", serve(app), "--devices", "2", "--model", "simmqtt"]
        args += ["--mqtt-url", own_broker.url, "--log-rate", "120", "--duration", "3"]
        result = app.test_cli_runner().invoke(args=args)
        assert result.exit_code == 0, result.output
        assert "log lines sent" in result.output

        def lines() -> list[t.Any]:
            state(app).reports.flush()
            answer = app.test_client().get("/api/logs?limit=1000").get_json()
            return list(answer["lines"])

        assert wait_until(lambda: len({line["device"]["id"] for line in lines()}) == 2, 10)
        assert any(line["tag"] == "cpu_start" for line in lines())
    finally:
        reader.stop()
