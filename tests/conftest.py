"""Shared fixtures: `app`, `client`, `runner` on SQLite; `pg_app` on PostgreSQL; MQTT helpers.

The schema always comes from the real Alembic migrations: SQLite tests copy a
database file migrated once per session; PostgreSQL tests use a database
created and migrated once per session, emptied before each test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import typing as t
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask.testing import FlaskCliRunner
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine
from sqlalchemy import make_url
from sqlalchemy import text

from iotsupport import create_app
from iotsupport import migrate
from iotsupport.services.notifications import MqttState
from iotsupport.settings import Settings

TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TEST_MQTT_URL = os.environ.get("TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
# CI sets this so that a missing service fails the run instead of skipping tests.
REQUIRE_SERVICES = os.environ.get("IOTSUPPORT_REQUIRE_SERVICES") == "1"


def unavailable(reason: str) -> t.NoReturn:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (IOTSUPPORT_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(reason)


class RecordingPublisher:
    """In-memory stand-in for the MQTT publisher: remembers what would be sent."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, str]]] = []

    @property
    def state(self) -> MqttState:
        return "connected"

    def publish(self, topic: str, payload: dict[str, str]) -> None:
        self.messages.append((topic, payload))

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def make_settings(database_url: str, **overrides: t.Any) -> Settings:
    return Settings(_env_file=None, database_url=database_url, mqtt_url=None, **overrides)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = create_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "iotsupport.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def app(settings: Settings, publisher: RecordingPublisher) -> Iterator[Flask]:
    app = create_app(settings, publisher=publisher, registry=CollectorRegistry())
    yield app
    app.extensions["iotsupport"].database.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


# --- PostgreSQL -------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A fresh, migrated database on the test server, dropped at the end."""
    admin_url = make_url(TEST_DATABASE_URL)
    try:
        admin = create_engine(
            admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        unavailable(
            f"PostgreSQL not reachable at {admin_url.render_as_string()}: {type(exc).__name__}"
        )
    name = f"iotsupport_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_settings(pg_database_url: str) -> Settings:
    engine = create_engine(pg_database_url)
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE device_configs RESTART IDENTITY"))
    engine.dispose()
    return make_settings(pg_database_url)


@pytest.fixture
def pg_app(pg_settings: Settings, publisher: RecordingPublisher) -> Iterator[Flask]:
    app = create_app(pg_settings, publisher=publisher, registry=CollectorRegistry())
    yield app
    app.extensions["iotsupport"].database.dispose()


# --- MQTT -------------------------------------------------------------------


@pytest.fixture(scope="session")
def mqtt_url() -> str:
    url = urlsplit(TEST_MQTT_URL)
    try:
        socket.create_connection((url.hostname or "127.0.0.1", url.port or 1883), timeout=2).close()
    except OSError as exc:
        unavailable(f"MQTT broker not reachable at {TEST_MQTT_URL}: {exc}")
    return TEST_MQTT_URL


class Subscriber:
    """A real MQTT client subscribed to iotsupport/#, collecting what arrives."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.messages: list[tuple[str, dict[str, t.Any], int, bool]] = []
        self._arrived = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self.client.subscribe("iotsupport/#", qos=1)
        self.client.loop_start()
        assert self._subscribed.wait(5), "subscription not acknowledged"

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._arrived:
            payload = json.loads(message.payload)
            self.messages.append((message.topic, payload, message.qos, bool(message.retain)))
            self._arrived.notify_all()

    def wait_for(
        self, count: int, timeout: float = 5.0
    ) -> list[tuple[str, dict[str, t.Any], int, bool]]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.messages) < count and time.monotonic() < deadline:
                self._arrived.wait(deadline - time.monotonic())
            return list(self.messages)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def subscriber(mqtt_url: str) -> Iterator[Subscriber]:
    sub = Subscriber(mqtt_url)
    yield sub
    sub.close()
