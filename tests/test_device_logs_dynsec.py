"""Device logs over MQTT with broker device accounts (Mosquitto's dynamic security): a
device publishes to its own log topic only, and its lines count as verified."""

from __future__ import annotations

import json
import os
import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MOSQUITTO
from conftest import Broker
from conftest import make_settings
from conftest import unavailable
from conftest import wait_until
from credentials_support import create_device
from credentials_support import issue
from flask import Flask
from prometheus_client import CollectorRegistry
from test_dynsec import ADMIN
from test_dynsec import ADMIN_PASSWORD
from test_dynsec import MAC
from test_dynsec import MOSQUITTO_CTRL
from test_dynsec import OTHER
from test_dynsec import PLUGIN
from test_dynsec import Login
from test_dynsec import dynsec_broker
from test_dynsec import settled

from iotsupport import create_app
from iotsupport.extensions import state

pytestmark = pytest.mark.mqtt


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    for path in (MOSQUITTO, MOSQUITTO_CTRL, str(PLUGIN)):
        if not os.access(path, os.R_OK):
            unavailable(f"{path} not found (apt-get install mosquitto)")
    started = dynsec_broker(tmp_path)
    # The server's account also reads the devices' logs (README "Device logs").
    dynsec = tmp_path / "dynsec.json"
    document = json.loads(dynsec.read_text())
    (admin,) = [role for role in document["roles"] if role["rolename"] == "admin"]
    for acltype in ("subscribePattern", "publishClientReceive"):
        admin["acls"].append(
            {"acltype": acltype, "topic": "iotsupport/devices/+/logs", "allow": True}
        )
    dynsec.write_text(json.dumps(document))
    started.start()
    yield started
    started.kill()


def test_a_device_account_logs_as_itself_only(
    broker: Broker, database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(
        database_url,
        mqtt_url=broker.url,
        mqtt_username=ADMIN,
        mqtt_password=ADMIN_PASSWORD,
        mqtt_device_accounts="dynsec",
        mqtt_client_id_prefix="logdyn",
    )
    app: Flask = create_app(settings, registry=CollectorRegistry())
    app_state = state(app)
    app_state.publisher.start()
    app_state.accounts.start()
    logs = app_state.logs
    assert logs is not None and logs.subscriber is not None
    logs.subscriber.start()
    client = app.test_client()
    try:
        mine = create_device(client, MAC)
        token = issue(client, mine)
        other = create_device(client, OTHER)
        issue(client, other)
        assert settled(client)
        assert logs.subscriber.subscribed.wait(10)
        login = Login(broker, MAC, token)
        try:
            assert login.accepted
            login.client.publish(f"iotsupport/devices/{OTHER}/logs", b"E (1) x: forged", qos=1)
            login.client.publish(f"iotsupport/devices/{MAC}/logs", b"I (2) y: mine", qos=1)

            def lines(config_id: int) -> list[t.Any]:
                app_state.reports.flush()
                page = client.get(f"/api/configs/{config_id}/logs").get_json()
                return list(page["lines"])

            assert wait_until(lambda: len(lines(mine)) == 1, 10)
            line = lines(mine)[0]
            assert line["message"] == "mine" and line["verified"] is True
            assert lines(other) == []  # the broker refused the other device's topic
        finally:
            login.close()
    finally:
        logs.subscriber.stop()
        app_state.accounts.stop()
        app_state.publisher.stop()
        app_state.database.dispose()
