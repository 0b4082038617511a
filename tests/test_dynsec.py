"""Device broker accounts on a real Mosquitto with the dynamic-security plugin.

Each test starts a throwaway broker on a free port with its own config and dynsec
file (made by `mosquitto_ctrl dynsec init`), so the shared broker is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import typing as t
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import MOSQUITTO
from conftest import Broker
from conftest import RecordingPublisher
from conftest import free_port
from conftest import make_settings
from conftest import unavailable
from conftest import wait_until
from credentials_support import bearer
from credentials_support import create_device
from credentials_support import fetch
from credentials_support import issue
from flask import Flask
from flask.testing import FlaskClient
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import CollectorRegistry

from iotsupport import create_app
from iotsupport.credentials.broker import Sealer
from iotsupport.credentials.broker import role_name
from iotsupport.extensions import state

pytestmark = pytest.mark.mqtt

MOSQUITTO_CTRL = shutil.which("mosquitto_ctrl") or "/usr/bin/mosquitto_ctrl"
PLUGIN = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
ADMIN, ADMIN_PASSWORD = "iotsupport", "broker-admin-secret"
MAC, OTHER = "aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"
NOT_AUTHORIZED = 0x87


def dynsec_broker(folder: Path) -> Broker:
    """Mosquitto with the plugin, its admin made by `mosquitto_ctrl dynsec init`."""
    port = free_port()
    dynsec = folder / "dynsec.json"
    subprocess.run(
        [MOSQUITTO_CTRL, "dynsec", "init", str(dynsec), ADMIN, ADMIN_PASSWORD],
        check=True,
        capture_output=True,
    )
    # The server's account also publishes the change notifications.
    document = json.loads(dynsec.read_text())
    (admin,) = [role for role in document["roles"] if role["rolename"] == "admin"]
    admin["acls"].append({"acltype": "publishClientSend", "topic": "iotsupport/#", "allow": True})
    dynsec.write_text(json.dumps(document))
    config = folder / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous false\n"
        f"plugin {PLUGIN}\n"
        f"plugin_opt_config_file {dynsec}\n"  # dynsec saves it on every change
        "persistence false\n"
        "user root\n"
    )
    return Broker(port, folder / "mosquitto.log", config)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    for path in (MOSQUITTO, MOSQUITTO_CTRL, str(PLUGIN)):
        if not os.access(path, os.R_OK):
            unavailable(f"{path} not found (apt-get install mosquitto)")
    started = dynsec_broker(tmp_path)
    started.start()
    yield started
    started.kill()


class Login:
    """An MQTT 5 client logging in as a device."""

    def __init__(self, broker: Broker, username: str, password: str) -> None:
        self.connack: ReasonCode | None = None
        self.granted: list[ReasonCode] = []
        self.messages: list[tuple[str, bytes]] = []
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, m: self.messages.append((m.topic, bytes(m.payload)))
        self.client.connect_async("127.0.0.1", broker.port)
        self.client.loop_start()
        self._connected.wait(5)

    @property
    def accepted(self) -> bool:
        return self.connack is not None and not self.connack.is_failure

    def subscribe(self, topic: str) -> ReasonCode:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(5)
        return self.granted[-1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(
        self, _c: mqtt.Client, _u: object, _f: t.Any, reason: ReasonCode, _p: Properties | None
    ) -> None:
        self.connack = reason
        self._connected.set()

    def _on_subscribe(
        self, _c: mqtt.Client, _u: object, _mid: int, codes: list[ReasonCode], _p: Properties
    ) -> None:
        self.granted += codes
        self._subscribed.set()


def logs_in(broker: Broker, username: str, password: str) -> bool:
    login = Login(broker, username, password)
    try:
        return login.accepted
    finally:
        login.close()


@pytest.fixture
def dynsec_app(
    broker: Broker, database_url: str, publisher: RecordingPublisher
) -> Iterator[t.Callable[[], Flask]]:
    apps: list[Flask] = []

    def build() -> Flask:
        settings = make_settings(
            database_url,
            mqtt_url=broker.url,
            mqtt_username=ADMIN,
            mqtt_password=ADMIN_PASSWORD,
            mqtt_device_accounts="dynsec",
        )
        app = create_app(settings, registry=CollectorRegistry())
        apps.append(app)
        state(app).publisher.start()
        state(app).accounts.start()
        return app

    yield build
    for app in apps:
        state(app).accounts.stop()
        state(app).publisher.stop(flush_seconds=0.5)  # type: ignore[call-arg]
        state(app).database.dispose()


def pending(client: FlaskClient) -> int:
    value: int = client.get("/api/health").get_json()["broker_accounts_pending"]
    return value


def settled(client: FlaskClient) -> bool:
    return wait_until(lambda: pending(client) == 0, 15)


def test_a_device_logs_in_with_its_token_and_reaches_only_its_own_topics(
    dynsec_app: t.Callable[[], Flask], broker: Broker
) -> None:
    client = dynsec_app().test_client()
    token = issue(client, create_device(client, MAC, {"v": 1}))
    other = issue(client, create_device(client, OTHER))
    assert settled(client)
    assert not logs_in(broker, MAC, "iotd_wrong")
    assert not logs_in(broker, MAC, other)
    login = Login(broker, MAC, token)
    try:
        assert login.accepted
        assert login.subscribe(f"iotsupport/devices/{MAC}/desired").value == 1  # QoS 1
        assert wait_until(lambda: bool(login.messages), 5)  # the retained desired state
        assert json.loads(login.messages[0][1])["config_version"] == 1
        assert login.subscribe("iotsupport/updates/configs").value == 1
        assert login.subscribe(f"iotsupport/devices/{OTHER}/desired").value == NOT_AUTHORIZED
        assert login.subscribe("iotsupport/devices/#").value == NOT_AUTHORIZED
        assert login.subscribe("#").value == NOT_AUTHORIZED
    finally:
        login.close()
    assert logs_in(broker, OTHER, other)


def test_rotation_and_revocation_reach_the_broker(
    dynsec_app: t.Callable[[], Flask], broker: Broker
) -> None:
    client = dynsec_app().test_client()
    config_id = create_device(client, MAC)
    old = issue(client, config_id)
    assert settled(client) and logs_in(broker, MAC, old)
    new = issue(client, config_id)  # an admin's rotation
    assert settled(client)
    # The broker keeps the token the device holds until it proves the new one.
    assert logs_in(broker, MAC, old) and not logs_in(broker, MAC, new)
    assert fetch(client, MAC, bearer(new)).status_code == 200
    assert settled(client)
    assert logs_in(broker, MAC, new) and not logs_in(broker, MAC, old)
    # A device's own rotation, the same way.
    fresh = client.post("/api/device/credential", headers=bearer(new)).get_json()["token"]
    assert fetch(client, MAC, bearer(fresh)).status_code == 200
    assert settled(client) and logs_in(broker, MAC, fresh)
    assert client.delete(f"/api/configs/{config_id}/credential").status_code == 204
    assert settled(client)
    assert not logs_in(broker, MAC, fresh)
    roles = subprocess.run(
        [MOSQUITTO_CTRL, "-p", str(broker.port), "-u", ADMIN, "-P", ADMIN_PASSWORD]
        + ["dynsec", "listRoles"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert role_name(MAC) not in roles


def test_changes_wait_in_the_database_while_the_broker_is_away(
    dynsec_app: t.Callable[[], Flask], broker: Broker
) -> None:
    first = dynsec_app()
    client = first.test_client()
    config_id = create_device(client, MAC)
    broker.kill()
    token = issue(client, config_id)
    assert pending(client) == 1
    health = client.get("/api/health")
    assert health.status_code == 200 and health.get_json()["broker_accounts_pending"] == 1
    # The server restarts meanwhile: the change is in the database, not in its memory.
    state(first).accounts.stop()
    broker.start()
    second = dynsec_app()
    assert settled(second.test_client())
    assert logs_in(broker, MAC, token)
    # The token is sealed in the queue, never stored as it is.
    assert token not in json.dumps(client.get("/api/health").get_json())


def test_a_sealed_token_opens_only_with_the_same_secret_and_account() -> None:
    sealed = Sealer("one").seal(MAC, "iotd_x")
    assert Sealer("one").unseal(MAC, sealed) == "iotd_x"
    assert Sealer("two").unseal(MAC, sealed) is None
    assert Sealer("one").unseal(OTHER, sealed) is None
    assert "iotd_x" not in sealed


def test_a_deleted_device_leaves_the_broker_and_comes_back_with_its_token(
    dynsec_app: t.Callable[[], Flask], broker: Broker
) -> None:
    client = dynsec_app().test_client()
    config_id = create_device(client, MAC)
    token = issue(client, config_id)
    assert settled(client) and logs_in(broker, MAC, token)
    assert client.delete(f"/api/configs/{config_id}").status_code == 204
    assert settled(client) and not logs_in(broker, MAC, token)
    assert client.post(f"/api/configs/deleted/{MAC}/restore").status_code == 201
    assert fetch(client, MAC, bearer(token)).status_code == 200  # proves it: the account returns
    assert settled(client) and logs_in(broker, MAC, token)


def test_a_leaked_token_cannot_take_the_broker_account_after_an_admin_rotation(
    dynsec_app: t.Callable[[], Flask], broker: Broker
) -> None:
    """The old token, within its grace, asks for a fresh token: refused, so the broker
    never gets a token of the attacker's, and the admin's new token takes the account."""
    client = dynsec_app().test_client()
    config_id = create_device(client, MAC)
    leaked = issue(client, config_id)
    assert fetch(client, MAC, bearer(leaked)).status_code == 200
    admins = issue(client, config_id)  # the admin rotates because `leaked` leaked
    stolen = client.post("/api/device/credential", headers=bearer(leaked))
    assert stolen.status_code == 403 and stolen.get_json()["code"] == "token_superseded"
    assert "token" not in stolen.get_json()
    assert fetch(client, MAC, bearer(leaked)).status_code == 200  # the grace: fetch only
    assert fetch(client, MAC, bearer(admins)).status_code == 200
    assert settled(client)
    assert logs_in(broker, MAC, admins) and not logs_in(broker, MAC, leaked)
    assert fetch(client, MAC, bearer(leaked)).status_code == 401
