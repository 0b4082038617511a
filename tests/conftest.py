"""Shared fixtures: `app`, `client`, `runner` on SQLite; `pg_app` on PostgreSQL; MQTT helpers.

The schema always comes from the real Alembic migrations: SQLite tests copy a
database file migrated once per session; PostgreSQL tests use a database
created and migrated once per session, emptied before each test.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import typing as t
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask.testing import FlaskCliRunner
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy import create_engine
from sqlalchemy import make_url
from sqlalchemy import text
from werkzeug.routing import Rule
from werkzeug.test import TestResponse

from iotsupport import create_app
from iotsupport import migrate
from iotsupport.db.tables import Base
from iotsupport.device_cache.postgres import LISTENER_NAME
from iotsupport.notifications import MqttState
from iotsupport.notifications import Payload
from iotsupport.settings import Settings

# The browser fixtures of the web UI tests (page, new_page, serve, ...).
pytest_plugins = ["ui_support"]
# Helpers whose asserts should explain themselves like a test's do.
pytest.register_assert_rewrite("editor_support")


def _compile_url_builders_once() -> None:
    """Werkzeug compiles two small Python functions per URL rule (for url_for) in every app,
    about 17 ms of an app's 23; the tests build an app per test, each with the same rules.
    The compiled function takes the rule as an argument, so one per distinct rule serves
    every app: the same code, compiled once per run instead of once per app."""
    compile_builder = getattr(Rule, "_compile_builder", None)
    if compile_builder is None:  # another werkzeug: leave it alone
        return
    compiled: dict[t.Hashable, t.Any] = {}

    def once(rule: Rule, append_unknown: bool = True) -> t.Any:
        key = (
            rule.rule,
            tuple(rule._trace),
            repr(rule.defaults),
            tuple((name, type(converter)) for name, converter in rule._converters.items()),
            append_unknown,
        )
        if key not in compiled:
            compiled[key] = compile_builder(rule, append_unknown)
        return compiled[key]

    setattr(Rule, "_compile_builder", once)  # noqa: B010 - a private method, on purpose


_compile_url_builders_once()


if t.TYPE_CHECKING:
    from local_issuer import LocalIssuer
    from oidc_stack import Stack

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
    """In-memory stand-in for the MQTT publisher: remembers what would be sent.

    `messages` holds the plain (not retained) messages in order; `retained` is what a
    broker would keep per topic (a cleared topic is gone), and `retained_log` every
    retained publish in order (None for a clear).
    """

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, t.Any]]] = []
        self.retained: dict[str, dict[str, t.Any]] = {}
        self.retained_log: list[tuple[str, dict[str, t.Any] | None]] = []

    @property
    def state(self) -> MqttState:
        return "connected"

    def publish(self, topic: str, payload: Payload, *, retain: bool = False) -> None:
        if retain:
            self.retained[topic] = dict(payload)
            self.retained_log.append((topic, dict(payload)))
        else:
            self.messages.append((topic, dict(payload)))

    def clear_retained(self, topic: str) -> None:
        self.retained.pop(topic, None)
        self.retained_log.append((topic, None))

    def wait_acknowledged(self, timeout: float) -> bool:
        return True

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def make_settings(database_url: str, **overrides: t.Any) -> Settings:
    overrides.setdefault("mqtt_url", None)  # never pick MQTT_URL up from the environment
    return Settings(_env_file=None, database_url=database_url, **overrides)


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
    app.extensions["iotsupport"].devices.cache.start()  # device fetches from memory
    yield app
    app.extensions["iotsupport"].devices.cache.stop()
    app.extensions["iotsupport"].database.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


ClientWith = t.Callable[..., FlaskClient]


@pytest.fixture
def client_with(database_url: str) -> Iterator[ClientWith]:
    """A test client of a fresh app with these settings changed; closed afterwards."""
    apps: list[Flask] = []

    def build(**overrides: t.Any) -> FlaskClient:
        settings = make_settings(database_url, **overrides)
        app = create_app(settings, publisher=RecordingPublisher(), registry=CollectorRegistry())
        app.extensions["iotsupport"].devices.cache.start()
        apps.append(app)
        return app.test_client()

    yield build
    for app in apps:
        app.extensions["iotsupport"].devices.cache.stop()
        app.extensions["iotsupport"].image_proxy.close()
        app.extensions["iotsupport"].database.dispose()


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


@pytest.fixture(scope="session")
def pg_cleaner(pg_database_url: str) -> Iterator[Engine]:
    """The connection that empties the test database before each PostgreSQL test."""
    engine = create_engine(pg_database_url, pool_size=1, pool_pre_ping=True)
    yield engine
    engine.dispose()


def empty_database(engine: Engine) -> None:
    """Every table emptied and every sequence restarted, as TRUNCATE ... RESTART IDENTITY
    would, but row by row: a TRUNCATE of all tables costs a quarter of a second, this a few
    milliseconds (the tables of a test are small)."""
    with engine.begin() as connection:
        sequences = connection.execute(
            text("SELECT schemaname, sequencename FROM pg_sequences")
        ).all()
        statements = [
            f'DELETE FROM "{table.name}"' for table in reversed(Base.metadata.sorted_tables)
        ]
        statements += [f'ALTER SEQUENCE "{schema}"."{name}" RESTART' for schema, name in sequences]
        connection.exec_driver_sql("; ".join(statements))


@pytest.fixture
def pg_settings(pg_database_url: str, pg_cleaner: Engine) -> Settings:
    empty_database(pg_cleaner)
    return make_settings(pg_database_url)


def cut_cache_listeners(url: str) -> int:
    """Terminate every worker's device cache listener on this database (as a network cut
    or a database restart would); how many there were."""
    engine = create_engine(url)
    with engine.begin() as connection:
        cut = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = :name"
            ),
            {"name": LISTENER_NAME},
        ).scalar_one()
    engine.dispose()
    return int(cut)


@pytest.fixture
def pg_app(pg_settings: Settings, publisher: RecordingPublisher) -> Iterator[Flask]:
    app = create_app(pg_settings, publisher=publisher, registry=CollectorRegistry())
    yield app
    app.extensions["iotsupport"].database.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api(request: pytest.FixtureRequest) -> FlaskClient:
    """A test client on SQLite, then on PostgreSQL: for rules that must hold on both."""
    if request.param == "sqlite":
        client: FlaskClient = request.getfixturevalue("client")
        return client
    app: Flask = request.getfixturevalue("pg_app")
    return app.test_client()


# --- On both databases ---------------------------------------------------------

DeviceAppFactory = t.Callable[..., Flask]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend_url(request: pytest.FixtureRequest) -> str:
    """The test runs on SQLite and again on PostgreSQL (a database emptied per test)."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("database_url")
    else:
        url = request.getfixturevalue("pg_settings").database_url
    return url


@contextmanager
def apps_on(url: str, publisher: RecordingPublisher) -> Iterator[DeviceAppFactory]:
    """`build(**settings)` makes apps on `url`; they are closed when the block ends."""
    apps: list[Flask] = []

    def build(**overrides: t.Any) -> Flask:
        app = create_app(
            make_settings(url, **overrides), publisher=publisher, registry=CollectorRegistry()
        )
        apps.append(app)
        return app

    try:
        yield build
    finally:
        for app in apps:
            app.extensions["iotsupport"].image_proxy.close()
            app.extensions["iotsupport"].database.dispose()


@pytest.fixture
def device_app(backend_url: str, publisher: RecordingPublisher) -> Iterator[DeviceAppFactory]:
    """`device_app(device_auth="required", ...)`: an app on this test's database."""
    with apps_on(backend_url, publisher) as build:
        yield build


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

    def __init__(self, url: str, *, retain_as_published: bool = False) -> None:
        """With retain_as_published, `retain` tells what the publisher set (MQTT 5 option)."""
        parts = urlsplit(url)
        self.messages: list[tuple[str, dict[str, t.Any], int, bool]] = []
        self._arrived = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        options = SubscribeOptions(qos=1, retainAsPublished=retain_as_published)
        self.client.subscribe("iotsupport/#", options=options)
        self.client.loop_start()
        assert self._subscribed.wait(5), "subscription not acknowledged"

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        try:
            # An empty payload clears a retained message; it is recorded as {}.
            payload = json.loads(message.payload) if message.payload else {}
        except ValueError:  # not ours: another run's payload on the shared broker
            return
        with self._arrived:
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

    def wait_for_filename(self, filename: str, timeout: float = 5.0) -> bool:
        """Wait until a message whose payload names `filename` has arrived."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not any(message[1].get("filename") == filename for message in self.messages):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._arrived.wait(remaining)
            return True

    def about(self, *macs: str) -> list[tuple[str, dict[str, t.Any], int, bool]]:
        """The messages about these MACs only (the broker may be shared with other runs)."""
        names = {f"{mac}.json" for mac in macs}
        with self._arrived:
            return [message for message in self.messages if message[1].get("filename") in names]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def clear_desired(url: str, *macs: str) -> None:
    """Remove the retained desired-state messages of `macs` from the (shared) broker."""
    parts = urlsplit(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    try:
        for mac in macs:
            info = client.publish(f"iotsupport/devices/{mac}/desired", b"", qos=1, retain=True)
            info.wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Broker:
    """A throwaway mosquitto on its own port (with its own config file, if given);
    only this process is ever stopped."""

    def __init__(self, port: int, log_path: Path, config: Path | None = None) -> None:
        self.port = port
        self.log_path = log_path
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        options = ["-c", str(self.config)] if self.config else ["-p", str(self.port)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [MOSQUITTO, *options, "-v"], stdout=log, stderr=subprocess.STDOUT
            )

        def accepting() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                return False
            return True

        assert wait_until(accepting, 10), self.log_path.read_text()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Broker]:
    """A throwaway mosquitto of the test's own, to stop and start again (an outage)."""
    if not os.access(MOSQUITTO, os.X_OK):
        unavailable(f"{MOSQUITTO} not found")
    broker = Broker(free_port(), tmp_path / "mosquitto.log")
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture
def subscriber(mqtt_url: str) -> Iterator[Subscriber]:
    sub = Subscriber(mqtt_url)
    yield sub
    sub.close()


# --- Login ------------------------------------------------------------------


@pytest.fixture(scope="module")
def issuer() -> Iterator[LocalIssuer]:
    """A local issuer (discovery and JWKS over HTTP) that signs tokens for the tests."""
    from local_issuer import LocalIssuer

    local = LocalIssuer()
    yield local
    local.close()


@pytest.fixture(scope="session")
def oidc_stack(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Stack]:
    """A real OpenID provider and our app with login on (tests/oidc_stack.py), once per session."""
    from oidc_stack import running_stack  # it imports this module's helpers

    with running_stack(tmp_path_factory.mktemp("oidc"), sqlite_template) as running:
        yield running


# --- Helpers shared by the test modules ---------------------------------------

ERROR_KEYS = {"error", "code", "details"}


def console_script() -> str:
    """The installed `iotsupport` command, as an operator runs it."""
    found = shutil.which("iotsupport") or str(Path(sys.executable).parent / "iotsupport")
    assert os.access(found, os.X_OK), f"iotsupport console script not installed at {found}"
    return found


def script_environment(**env: str) -> dict[str, str]:
    """This environment without any of the server's own settings, plus `env`."""
    ours = {name.upper() for name in Settings.model_fields}
    return {key: value for key, value in os.environ.items() if key not in ours} | env


def run_script(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`iotsupport ARGS` in `tmp_path` (so the default SQLite file lands there)."""
    return subprocess.run(
        [console_script(), *args],
        cwd=tmp_path,
        env=script_environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def serving(folder: Path, **env: str) -> Iterator[tuple[int, Path]]:
    """`iotsupport serve` in `folder` on a free port, until the block ends: (port, log file)."""
    port = free_port()
    log_path = folder / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [console_script(), "serve"],
            cwd=folder,
            env=script_environment(PORT=str(port), **env),
            stdout=log,
            stderr=log,
        )
    try:
        url = f"http://127.0.0.1:{port}/api/health/live"
        assert wait_until(lambda: answers(url), timeout=60), log_path.read_text()
        yield port, log_path
    finally:
        server.terminate()
        server.wait(30)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def free_port() -> int:
    """A local TCP port that nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_until(predicate: t.Callable[[], bool], timeout: float = 5.0, step: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds passed; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def random_mac() -> str:
    """A locally administered MAC nobody else uses (safe on a shared broker)."""
    raw = uuid.uuid4().bytes[:5]
    return ":".join(f"{byte:02x}" for byte in (b"\x02" + raw))


def assert_error(response: TestResponse, status: int, code: str | None = None) -> dict[str, t.Any]:
    """The JSON error envelope: exactly error, code, details; no internals leak."""
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert isinstance(body, dict)
    assert set(body) == ERROR_KEYS
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["code"], str) and body["code"]
    assert isinstance(body["details"], dict)
    text_body = response.get_data(as_text=True)
    for leak in ("Traceback", 'File "', "sqlalchemy", "psycopg", "sqlite3"):
        assert leak not in text_body
    if code is not None:
        assert body["code"] == code
    return body


def config_count(client: FlaskClient) -> int:
    response = client.get("/api/configs")
    assert response.status_code == 200
    count: int = response.get_json()["count"]
    assert count == len(response.get_json()["configs"])
    return count


def post_raw(client: FlaskClient, body: bytes | str) -> TestResponse:
    return client.post("/api/configs", data=body, content_type="application/json")


class TcpProxy:
    """A TCP relay that can be cut and restored, and counts PostgreSQL frontend messages.

    Stopping it closes the listener and every relayed connection, which is what a
    database restart or a network cut looks like to the app; freezing it lets nothing
    through and closes nothing, which is what a partition looks like (nobody notices).
    """

    _SSL_OR_GSS_REQUEST = {80877103, 80877104}

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.messages: list[str] = []  # frontend message types, e.g. "Q", "P", "S"
        self.queries: list[str] = []  # the text of each simple Query ("Q") message
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        self._accept_thread: threading.Thread | None = None
        self._flowing = threading.Event()
        self._flowing.set()

    def freeze(self) -> None:
        self._flowing.clear()

    def restore(self) -> None:
        """Flowing again, and listening again if it was stopped."""
        self._flowing.set()
        if self._listener is None:
            self.start()

    @property
    def url_host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self._listener = listener
        self._stopped.clear()
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept_thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._flowing.set()  # a frozen relay lets go of its threads
        if self._accept_thread is not None:
            self._accept_thread.join(5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def count(self, *types: str) -> int:
        with self._lock:
            return sum(1 for kind in self.messages if kind in types)

    def reset_counts(self) -> None:
        with self._lock:
            self.messages.clear()
            self.queries.clear()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        listener = self._listener
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, frontend: bool) -> None:
        buffer = b""
        startup = True
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                if not frontend:
                    sink.sendall(data)
                    continue
                buffer += data
                while True:
                    if startup:
                        if len(buffer) < 8:
                            break
                        length = int.from_bytes(buffer[:4], "big")
                        if len(buffer) < length:
                            break
                        code = int.from_bytes(buffer[4:8], "big")
                        buffer = buffer[length:]
                        startup = code in self._SSL_OR_GSS_REQUEST
                        continue
                    if len(buffer) < 5:
                        break
                    length = int.from_bytes(buffer[1:5], "big")
                    if len(buffer) < 1 + length:
                        break
                    with self._lock:
                        self.messages.append(chr(buffer[0]))
                        if buffer[:1] == b"Q":
                            self.queries.append(buffer[5 : length + 1].rstrip(b"\0").decode())
                    buffer = buffer[1 + length :]
                # Counted before the server sees it, so before any answer comes back.
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def spellings(mac: str, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    result = []
    for _ in range(count):
        pairs = [pair.upper() if rng.random() < 0.5 else pair for pair in mac.split(":")]
        separators = [rng.choice(":-") for _ in range(5)]
        result.append(pairs[0] + "".join(s + p for s, p in zip(separators, pairs[1:], strict=True)))
    return result


def race(app: Flask, requests: list[t.Callable[[FlaskClient], t.Any]]) -> list[t.Any]:
    """Run each request on its own thread and test client, released at the same instant."""
    barrier = threading.Barrier(len(requests))
    results: list[t.Any] = [None] * len(requests)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        client = app.test_client()
        try:
            barrier.wait(10)
            results[index] = requests[index](client)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results
