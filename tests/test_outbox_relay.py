"""The outbox in one process: what is written, when it is sent, and what is sent."""

from __future__ import annotations

import ast
import typing as t
from pathlib import Path

from conftest import RecordingPublisher
from conftest import make_settings
from flask import Flask
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine
from sqlalchemy import text

import iotsupport
from iotsupport import create_app
from iotsupport.extensions import state
from iotsupport.notifications import MqttState
from iotsupport.notifications import Payload

MAC = "aa:bb:cc:dd:ee:01"
TOPIC = f"iotsupport/devices/{MAC}/desired"
CONFIGS = "iotsupport/updates/configs"


class SwitchablePublisher(RecordingPublisher):
    """Connected or not, as the test says; while it fails, publishing raises."""

    def __init__(self) -> None:
        super().__init__()
        self.connected = True
        self.failing = False

    @property
    def state(self) -> MqttState:
        return "connected" if self.connected else "disconnected"

    def publish(self, topic: str, payload: Payload, *, retain: bool = False) -> None:
        if self.failing:
            raise ConnectionError("broker exploded")
        super().publish(topic, payload, retain=retain)


def pending(database_url: str) -> list[tuple[str, str]]:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT kind, subject FROM outbox ORDER BY id")).all()
    engine.dispose()
    return [(kind, subject) for kind, subject in rows]


def build(database_url: str, publisher: RecordingPublisher | None) -> Flask:
    return create_app(
        make_settings(database_url), publisher=publisher, registry=CollectorRegistry()
    )


def test_without_mqtt_nothing_is_written_to_the_outbox(database_url: str) -> None:
    app = build(database_url, None)  # no MQTT_URL: the disabled publisher
    client = app.test_client()
    created = client.post("/api/configs", json={"mac_address": MAC, "content": {"v": 1}})
    config_id = created.get_json()["id"]
    assert client.put(f"/api/configs/{config_id}", json={"content": {}}).status_code == 200
    assert client.delete(f"/api/configs/{config_id}").status_code == 204
    assert pending(database_url) == []
    state(app).database.dispose()


def test_announcements_wait_in_the_outbox_and_carry_the_state_at_sending(
    database_url: str,
) -> None:
    publisher = SwitchablePublisher()
    publisher.connected = False
    app = build(database_url, publisher)
    client = app.test_client()
    config_id = client.post(
        "/api/configs", json={"mac_address": MAC, "content": {"v": 1}}
    ).get_json()["id"]
    client.put(f"/api/configs/{config_id}", json={"content": {"v": 2}})
    client.put(f"/api/configs/{config_id}", json={"content": {"v": 3}})
    assert publisher.messages == publisher.retained_log == []
    assert pending(database_url) == [("config", MAC)] * 3

    publisher.connected = True
    assert state(app).outbox.deliver(5.0)
    # Every broadcast, in order; the desired state once, as the database holds it now.
    assert publisher.messages == [(CONFIGS, {"filename": f"{MAC}.json"})] * 3
    assert [payload["config_version"] for _, payload in publisher.retained_log if payload] == [3]
    assert len(publisher.retained_log) == 1
    assert pending(database_url) == []

    assert client.delete(f"/api/configs/{config_id}").status_code == 204
    assert publisher.retained_log[-1] == (TOPIC, None)  # sent at once: connected
    state(app).database.dispose()


def test_a_failed_publish_leaves_the_rows_for_the_next_delivery(database_url: str) -> None:
    publisher = SwitchablePublisher()
    publisher.failing = True
    app = build(database_url, publisher)
    client = app.test_client()
    response = client.post("/api/configs", json={"mac_address": MAC, "content": {"v": 1}})
    assert response.status_code == 201  # a broker failure never fails the request
    assert pending(database_url) == [("config", MAC)]
    publisher.failing = False
    assert state(app).outbox.deliver(5.0)
    assert publisher.messages == [(CONFIGS, {"filename": f"{MAC}.json"})]
    assert publisher.retained[TOPIC]["config_version"] == 1
    assert pending(database_url) == []
    state(app).database.dispose()


def test_a_refused_request_writes_no_announcement(database_url: str) -> None:
    publisher = SwitchablePublisher()
    publisher.connected = False
    app = build(database_url, publisher)
    client = app.test_client()
    client.post("/api/configs", json={"mac_address": MAC, "content": {}})
    assert client.post("/api/configs", json={"mac_address": MAC, "content": {}}).status_code == 409
    assert client.put("/api/configs/1", json={"content": []}).status_code == 400
    assert pending(database_url) == [("config", MAC)]
    state(app).database.dispose()


def imported_modules(path: Path) -> t.Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_configs_imports_no_feature_that_imports_it() -> None:
    """The hub (configs/) does not import the rollouts, nor the desired-state module above it."""
    package = Path(iotsupport.__file__).parent
    for path in (package / "configs").glob("*.py"):
        for module in imported_modules(path):
            assert not module.startswith(("iotsupport.rollouts", "iotsupport.desired")), (
                path.name,
                module,
            )
