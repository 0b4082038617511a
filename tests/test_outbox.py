"""Announcements survive what used to lose them: a worker killed right after a commit,
simultaneous saves on two replicas, a broker outage. Real servers, a real broker: at the
end every retained desired state equals the database."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
import pytest
from conftest import Broker
from conftest import Subscriber
from conftest import answers
from conftest import clear_desired
from conftest import console_script
from conftest import free_port
from conftest import make_settings
from conftest import random_mac
from conftest import script_environment
from conftest import wait_until
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine
from sqlalchemy import text

from iotsupport import create_app
from iotsupport.configs.service import ConfigService
from iotsupport.db import commit
from iotsupport.extensions import state
from iotsupport.settings import Settings

# Loaded by every Python process of the server (PYTHONPATH): the worker that commits a
# bulk apply kills itself with SIGKILL right after the commit, before anything else.
KILL_HOOK = """
import os
import signal

import iotsupport.db as db
from flask import has_request_context, request

_commit = db.commit


def commit(session):
    if has_request_context() and request.path == "/api/configs/bulk":
        body = request.get_json(silent=True) or {}
        if body.get("dry_run") is False:
            session.commit()
            os.kill(os.getpid(), signal.SIGKILL)
    _commit(session)


db.commit = commit
"""

Desired = tuple[int, str] | None  # (config_version, config_etag); None: nothing retained


def seed(database_url: str, macs: list[str]) -> dict[str, int]:
    """Configs for `macs`, written without announcements (no MQTT); MAC -> id."""
    app = create_app(make_settings(database_url), registry=CollectorRegistry())
    with state(app).database.session() as session:
        service = ConfigService(session)
        configs = [service.create(mac, json.dumps({"n": 0})) for mac in macs]
        commit(session)
        ids = {config.mac_address: config.id for config in configs}
    state(app).database.dispose()
    return ids


def database_truth(database_url: str, macs: list[str]) -> dict[str, Desired]:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT mac_address, version, etag FROM device_configs")
        ).all()
    engine.dispose()
    found = {mac: (version, etag) for mac, version, etag in rows}
    return {mac: found.get(mac) for mac in macs}


def retained(url: str, macs: list[str], timeout: float = 3.0) -> dict[str, Desired]:
    """What a device subscribing now gets on each desired topic."""
    parts = urlsplit(url)
    got: dict[str, Desired] = {}
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        mac = message.topic.split("/")[2]
        if message.retain and message.payload:
            body = json.loads(message.payload)
            got[mac] = (int(body["config_version"]), str(body["config_etag"]))
        if len(got) == len(macs):
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    try:
        client.subscribe([(f"iotsupport/devices/{mac}/desired", 1) for mac in macs])
        done.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return {mac: got.get(mac) for mac in macs}


def behind(mqtt_url: str, database_url: str, macs: list[str]) -> list[str]:
    """The MACs whose retained desired state differs from the database."""
    truth = database_truth(database_url, macs)
    seen = retained(mqtt_url, macs)
    return [mac for mac in macs if seen[mac] != truth[mac]]


def settles_equal(mqtt_url: str, database_url: str, macs: list[str], timeout: float) -> list[str]:
    """Wait until no retained state differs from the database; what still differs."""
    last: list[str] = []

    def equal() -> bool:
        nonlocal last
        last = behind(mqtt_url, database_url, macs)
        return not last

    wait_until(equal, timeout=timeout, step=1.0)
    return last


@contextmanager
def server(folder: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`iotsupport serve` in a session of its own (so that it can be killed whole)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = folder / "serve.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [console_script(), "serve"],
            cwd=folder,
            env=script_environment(PORT=str(port), **env),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: answers(f"{base}/api/health/live"), 120), log_path.read_text()
        yield base, process
    finally:
        kill_whole(process)


def kill_whole(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server and every worker it started."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(30)


@pytest.mark.mqtt
def test_a_worker_killed_right_after_a_bulk_apply_loses_no_announcement(
    backend_url: str, mqtt_url: str, subscriber: Subscriber, tmp_path: Path
) -> None:
    database_url = backend_url
    macs = [random_mac() for _ in range(400)]
    ids = seed(database_url, macs)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_HOOK)
    env = {"DATABASE_URL": database_url, "MQTT_URL": mqtt_url, "WORKERS": "2"}
    try:
        path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
        with server(tmp_path / "a", PYTHONPATH=path, **env) as (base, process):
            body = {"select": {"ids": sorted(ids.values())}, "patch": {"n": 1}}
            with httpx.Client(timeout=60) as http:
                preview = http.post(f"{base}/api/configs/bulk", json=body).json()
                expect = {str(change["id"]): change["etag"] for change in preview["changes"]}
                with pytest.raises(httpx.TransportError):  # the worker died mid-request
                    http.post(
                        f"{base}/api/configs/bulk", json=body | {"dry_run": False, "expect": expect}
                    )
            kill_whole(process)  # the whole server, the worker that survived included
        truth = database_truth(database_url, macs)
        assert {state[0] if state else None for state in truth.values()} == {2}
        # Another server, without the hook: it sends what the dead one owed.
        with server(tmp_path / "b", **env):
            assert settles_equal(mqtt_url, database_url, macs, timeout=60) == []
            for mac in macs:
                assert subscriber.wait_for_filename(f"{mac}.json", timeout=30), mac
    finally:
        clear_desired(mqtt_url, *macs)


@pytest.mark.postgres
@pytest.mark.mqtt
def test_simultaneous_saves_on_two_replicas_leave_no_retained_state_behind(
    pg_settings: Settings, mqtt_url: str, tmp_path: Path
) -> None:
    url = pg_settings.database_url
    # On main 3 of 60 ended behind: only the last round decides, so many devices.
    macs = [random_mac() for _ in range(150)]
    ids = seed(url, macs)
    env = {"DATABASE_URL": url, "MQTT_URL": mqtt_url, "WORKERS": "2"}
    try:
        with server(tmp_path / "a", **env) as (a, _), server(tmp_path / "b", **env) as (b, _):
            with httpx.Client(timeout=30) as http:

                def save(target: str, mac: str, value: int) -> None:
                    response = http.put(
                        f"{target}/api/configs/{ids[mac]}", json={"content": {"n": value}}
                    )
                    assert response.status_code == 200, response.text

                with ThreadPoolExecutor(max_workers=16) as pool:
                    for round_ in range(2):
                        futures = [
                            pool.submit(save, target, mac, round_ * 10 + index)
                            for mac in macs
                            for index, target in enumerate((a, b))
                        ]
                        for future in futures:
                            future.result()
            assert settles_equal(mqtt_url, url, macs, timeout=60) == []
    finally:
        clear_desired(mqtt_url, *macs)


@pytest.mark.mqtt
def test_after_a_broker_outage_every_retained_state_equals_the_database(
    database_url: str, own_broker: Broker, tmp_path: Path
) -> None:
    macs = [random_mac() for _ in range(60)]
    ids = seed(database_url, macs)
    env = {"DATABASE_URL": database_url, "MQTT_URL": own_broker.url, "WORKERS": "2"}
    with server(tmp_path / "a", **env) as (base, _), httpx.Client(timeout=30) as http:

        def save(mac: str, value: int) -> None:
            response = http.put(f"{base}/api/configs/{ids[mac]}", json={"content": {"n": value}})
            assert response.status_code == 200, response.text

        for mac in macs:
            save(mac, 1)
        assert settles_equal(own_broker.url, database_url, macs, timeout=30) == []
        own_broker.kill()
        # Saves while the broker is away, spread over both workers (each has its own
        # connection to the broker).
        with ThreadPoolExecutor(max_workers=8) as pool:
            for value in range(2, 6):
                order = random.sample(macs, len(macs))
                list(pool.map(lambda mac, v=value: save(mac, v), order))
        own_broker.start()
        assert settles_equal(own_broker.url, database_url, macs, timeout=90) == []
