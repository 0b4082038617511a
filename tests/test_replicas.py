"""Two servers on one PostgreSQL database: the moment an MQTT announcement arrives, the
other server already serves what it announces, even while listeners are being cut."""

from __future__ import annotations

import json
import threading
import time
import typing as t
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as mqtt
import pytest
from conftest import cut_cache_listeners
from conftest import random_mac
from conftest import serving
from conftest import unavailable
from net_faults import OwnPostgres
from net_faults import own_postgres
from net_faults import own_postgres_available
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import create_engine

from iotsupport import migrate
from iotsupport.device_cache import STALE_HEADER
from iotsupport.settings import Settings

DEVICES = 20
VERSIONS_EACH = 51  # created at version 1, then 50 changes: 1,000 changes in all


class Checker:
    """Subscribed to the devices' desired topics; fetches from the other server at once."""

    def __init__(self, mqtt_url: str, macs: list[str], servers: list[str]) -> None:
        self.servers = servers
        self.fetch_from: dict[str, str] = {}  # the server that did not make the change
        self.stale: list[tuple[str, int, int]] = []
        self.marked = 0
        self.unanswered = 0
        self.checked = 0
        self.reached: dict[str, threading.Condition] = {mac: threading.Condition() for mac in macs}
        self.announced: dict[str, int] = dict.fromkeys(macs, 0)
        self.http = httpx.Client(timeout=30)
        parts = urlsplit(mqtt_url)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
        self.client.subscribe([(f"iotsupport/devices/{mac}/desired", 1) for mac in macs])
        self.client.loop_start()
        assert subscribed.wait(5)

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if not message.payload:
            return
        mac = message.topic.split("/")[2]
        announced = int(json.loads(message.payload)["config_version"])
        server = self.fetch_from.get(mac, self.servers[1])
        try:
            response = self.http.get(f"{server}/api/configs/{mac}.json")
        except httpx.TransportError:
            response = None
        if response is None or response.status_code != 200:
            self.unanswered += 1
        elif STALE_HEADER in response.headers:
            self.marked += 1  # the database was away: memory, said so (README "Outages")
        elif int(response.json()["seq"]) < announced:
            self.stale.append((mac, announced, int(response.json()["seq"])))
        condition = self.reached[mac]
        with condition:
            self.checked += 1
            self.announced[mac] = max(self.announced[mac], announced)
            condition.notify_all()

    def wait_for(self, mac: str, version: int) -> bool:
        condition = self.reached[mac]
        with condition:
            return condition.wait_for(lambda: self.announced[mac] >= version, timeout=30)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        self.http.close()


FAULTS = ["none", "cut listeners", "database restarts"]
CUT_EVERY = 40  # changes between two cuts of every listener: 25 cuts in a run
RESTART_EVERY = 50  # changes between two restarts of the database: 20 in a run


@contextmanager
def database_for(fault: str, pg_settings: Settings) -> Iterator[tuple[str, OwnPostgres | None]]:
    """The shared test database, or a cluster of the test's own that it may restart."""
    if fault != "database restarts":
        yield pg_settings.database_url, None
        return
    if not own_postgres_available():
        unavailable("no PostgreSQL binaries to start a cluster of the test's own")
    with own_postgres() as cluster:
        engine = create_engine(cluster.url)
        migrate.upgrade(engine)
        engine.dispose()
        yield cluster.url, cluster


def until_answered(send: t.Callable[[], httpx.Response], expected: int) -> httpx.Response:
    """A write retried while the database is away (503 or a dropped connection)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            response = send()
            if response.status_code == expected or time.monotonic() > deadline:
                return response
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


@pytest.mark.postgres
@pytest.mark.parametrize("fault", FAULTS)
def test_no_stale_answer_from_the_other_server_in_1000_announced_changes(
    fault: str, pg_settings: Settings, mqtt_url: str, tmp_path: Path
) -> None:
    with database_for(fault, pg_settings) as (database_url, cluster):
        run_1000_changes(fault, database_url, cluster, mqtt_url, tmp_path)


def run_1000_changes(
    fault: str, database_url: str, cluster: OwnPostgres | None, mqtt_url: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": database_url, "MQTT_URL": mqtt_url, "WORKERS": "2"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        serving(tmp_path / "a", **env) as (port_a, _),
        serving(tmp_path / "b", **env) as (
            port_b,
            _,
        ),
    ):
        servers = [f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"]
        macs = [random_mac() for _ in range(DEVICES)]
        checker = Checker(mqtt_url, macs, servers)
        changes = 0
        faults = 0
        changes_lock = threading.Lock()
        fault_lock = threading.Lock()

        def inject() -> None:
            nonlocal faults
            with fault_lock:  # one at a time; the others go on changing meanwhile
                if fault == "cut listeners":
                    cut_cache_listeners(database_url)
                elif cluster is not None:
                    cluster.restart()
                faults += 1

        def drive(index: int, mac: str) -> None:
            nonlocal changes
            with httpx.Client(timeout=30) as http:
                writer, reader = servers[index % 2], servers[1 - index % 2]
                checker.fetch_from[mac] = reader
                created = until_answered(
                    lambda: http.post(
                        f"{writer}/api/configs", json={"mac_address": mac, "content": {"seq": 1}}
                    ),
                    201,
                )
                assert created.status_code == 201, created.text
                assert checker.wait_for(mac, 1), f"no announcement of {mac} v1"
                for seq in range(2, VERSIONS_EACH + 1):
                    writer, reader = reader, writer  # alternate which server changes it
                    checker.fetch_from[mac] = reader
                    url = f"{writer}/api/configs/{created.json()['id']}"
                    put = until_answered(
                        partial(http.put, url, json={"content": {"seq": seq}}), 200
                    )
                    assert put.status_code == 200, put.text
                    assert checker.wait_for(mac, seq), f"no announcement of {mac} v{seq}"
                    with changes_lock:
                        changes += 1
                        due = fault != "none" and changes % every == 0
                    if due:
                        inject()

        every = CUT_EVERY if fault == "cut listeners" else RESTART_EVERY
        try:
            with ThreadPoolExecutor(max_workers=DEVICES) as pool:
                for future in [pool.submit(drive, i, mac) for i, mac in enumerate(macs)]:
                    future.result()
        finally:
            checker.close()
        assert changes == DEVICES * (VERSIONS_EACH - 1) == 1000
        assert faults == (0 if fault == "none" else 1000 // every)
        assert checker.checked >= 1020  # every announcement (creates included) was checked
        assert checker.stale == []
        health = [httpx.get(f"{server}/api/health").json() for server in servers]
        assert all(body["status"] == "healthy" for body in health)
        if fault == "none":
            assert checker.marked == 0
            assert_revocation_is_immediate(servers, macs[0])


def assert_revocation_is_immediate(servers: list[str], mac: str) -> None:
    """Issued on one server, revoked on the other: refused by both the moment the revoke
    has answered (20 times, so that each worker of both servers is asked)."""
    with httpx.Client(timeout=10) as http:
        config_id = next(
            config["id"]
            for config in http.get(f"{servers[0]}/api/configs").json()["configs"]
            if config["mac_address"] == mac
        )
        for _ in range(5):
            issued = http.post(f"{servers[0]}/api/configs/{config_id}/credential")
            token = issued.json()["token"]
            headers = {"Authorization": f"Bearer {token}"}
            url = f"/api/configs/{mac}.json"
            assert http.get(servers[1] + url, headers=headers).status_code == 200
            revoked = http.delete(f"{servers[1]}/api/configs/{config_id}/credential")
            assert revoked.status_code == 204
            for server in servers * 2:
                assert http.get(server + url, headers=headers).status_code == 401
