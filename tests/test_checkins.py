"""Device check-ins: did the device pick up its config? sync_state, the recorder, metrics."""

from __future__ import annotations

import typing as t
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import ip_network

import pytest
from conftest import make_settings
from conftest import wait_until
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from iotsupport import create_app
from iotsupport.configs.checkins import client_address
from iotsupport.device_reports import DeviceReportIntake
from iotsupport.extensions import state
from iotsupport.settings import Settings

MAC = "aa:bb:cc:dd:ee:ff"
DEVICE_URL = f"/api/configs/{MAC}.json"


def create(client: FlaskClient, content: t.Any = None, mac: str = MAC) -> int:
    body = {"mac_address": mac, "content": {"v": 1} if content is None else content}
    response = client.post("/api/configs", json=body)
    assert response.status_code == 201
    config_id: int = response.get_json()["id"]
    return config_id


def flush(app: Flask) -> int:
    return state(app).reports.flush()


def config(client: FlaskClient, config_id: int) -> dict[str, t.Any]:
    body: dict[str, t.Any] = client.get(f"/api/configs/{config_id}").get_json()
    return body


def summary(client: FlaskClient, config_id: int) -> dict[str, t.Any]:
    rows = client.get("/api/configs").get_json()["configs"]
    (row,) = [row for row in rows if row["id"] == config_id]
    return dict(row)


def sync(client: FlaskClient, config_id: int) -> tuple[str, int | None]:
    """The state both the config body and its list summary report (they must agree)."""
    body, row = config(client, config_id), summary(client, config_id)
    for key in ("sync_state", "last_fetched_version", "last_fetched_at"):
        assert body[key] == row[key], key
    return body["sync_state"], body["last_fetched_version"]


def test_sync_state_follows_a_simulated_device(app: Flask, client: FlaskClient) -> None:
    config_id = create(client)
    assert sync(client, config_id) == ("never", None)
    assert config(client, config_id)["last_fetched_at"] is None

    fetch = client.get(DEVICE_URL, headers={"User-Agent": "esp32/1", "X-Firmware-Version": "1.4.2"})
    assert fetch.status_code == 200
    assert flush(app) == 0  # a firmware version it had not reported was written at once
    assert sync(client, config_id) == ("in_sync", 1)
    body = config(client, config_id)
    assert body["last_fetched_at"].endswith("+00:00")
    assert body["last_fetched_user_agent"] == "esp32/1"
    assert body["last_fetched_firmware_version"] == "1.4.2"
    assert body["last_fetched_from"] == "127.0.0.1"
    assert (
        body["updated_at"] == config(client, config_id)["updated_at"]
    )  # a fetch changes no config

    assert client.put(f"/api/configs/{config_id}", json={"content": {"v": 2}}).status_code == 200
    assert sync(client, config_id) == ("pending", 1)

    # The device, told over MQTT, revalidates with its old ETag and gets the new version.
    refetch = client.get(DEVICE_URL, headers={"If-None-Match": fetch.headers["ETag"]})
    assert refetch.status_code == 200
    flush(app)
    assert sync(client, config_id) == ("in_sync", 2)


def test_a_304_is_a_check_in(app: Flask, client: FlaskClient) -> None:
    config_id = create(client)
    etag = client.get(f"/api/configs/{config_id}").headers["ETag"]
    response = client.get(DEVICE_URL, headers={"If-None-Match": etag})
    assert response.status_code == 304
    flush(app)
    assert sync(client, config_id) == ("in_sync", 1)
    first = config(client, config_id)["last_fetched_at"]
    assert client.get(DEVICE_URL, headers={"If-None-Match": etag}).status_code == 304
    flush(app)
    assert config(client, config_id)["last_fetched_at"] > first


def test_failed_fetches_are_not_check_ins(app: Flask, client: FlaskClient) -> None:
    create(client)
    assert client.get("/api/configs/aa:bb:cc:dd:ee:00.json").status_code == 401
    assert client.get("/api/configs/nope.json").status_code == 400
    assert flush(app) == 0


def test_fetches_are_coalesced_per_config(app: Flask, client: FlaskClient) -> None:
    first, second = create(client), create(client, mac="aa:bb:cc:dd:ee:01")
    for _ in range(20):
        client.get(DEVICE_URL, headers={"User-Agent": "a"})
    client.get(DEVICE_URL, headers={"User-Agent": "last"})
    client.get("/api/configs/aa:bb:cc:dd:ee:01.json")
    assert flush(app) == 2  # two configs, one write each
    assert config(client, first)["last_fetched_user_agent"] == "last"
    assert sync(client, second) == ("in_sync", 1)


def test_a_restored_config_keeps_its_check_in(app: Flask, client: FlaskClient) -> None:
    config_id = create(client)
    client.get(DEVICE_URL)
    flush(app)
    client.delete(f"/api/configs/{config_id}")
    client.post(f"/api/configs/deleted/{MAC}/restore")
    assert sync(client, config_id) == ("pending", 1)


# --- client address ---------------------------------------------------------------------------

PROXIES = (ip_network("10.0.0.0/8"), ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "trusted", "expected"),
    [
        ("192.0.2.7", "198.51.100.1", (), "192.0.2.7"),  # no proxies configured
        ("192.0.2.7", "198.51.100.1", PROXIES, "192.0.2.7"),  # the peer is no proxy
        ("10.0.0.2", "198.51.100.1", PROXIES, "198.51.100.1"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.1, 10.0.0.3", PROXIES, "198.51.100.1"),  # spoof ignored
        ("10.0.0.2", "fd00::5, 2001:db8::1", PROXIES, "2001:db8::1"),
        ("10.0.0.2", "10.0.0.9", PROXIES, "10.0.0.9"),  # only proxies: the farthest one
        ("10.0.0.2", "garbage, 10.0.0.9", PROXIES, "10.0.0.9"),
        ("10.0.0.2", None, PROXIES, "10.0.0.2"),
        (None, "198.51.100.1", PROXIES, None),
    ],
)
def test_client_address(
    peer: str | None, forwarded_for: str | None, trusted: t.Any, expected: str | None
) -> None:
    assert client_address(peer, forwarded_for, trusted) == expected


@contextmanager
def behind_proxy(settings: Settings, **overrides: t.Any) -> Iterator[FlaskClient]:
    app = create_app(
        make_settings(settings.database_url, **overrides), registry=CollectorRegistry()
    )
    yield app.test_client()
    state(app).reports.flush()
    state(app).database.dispose()


@pytest.mark.parametrize(
    ("trusted", "expected"), [("", "127.0.0.1"), ("127.0.0.1, 10.0.0.0/8", "198.51.100.1")]
)
def test_x_forwarded_for_only_from_trusted_proxies(
    settings: Settings, trusted: str, expected: str
) -> None:
    with behind_proxy(settings, trusted_proxies=trusted) as client:
        config_id = create(client)
        forwarded = {"X-Forwarded-For": "6.6.6.6, 198.51.100.1, 10.1.2.3"}
        assert client.get(DEVICE_URL, headers=forwarded).status_code == 200
        state(client.application).reports.flush()
        assert config(client, config_id)["last_fetched_from"] == expected


def test_a_bad_trusted_proxies_setting_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        make_settings("sqlite://", trusted_proxies="10.0.0.0/8, not-an-ip")


# --- the recorder -------------------------------------------------------------------------------


def test_the_background_thread_writes_fetches(settings: Settings) -> None:
    app = create_app(
        make_settings(settings.database_url, checkin_flush_seconds=0.05),
        registry=CollectorRegistry(),
    )
    client = app.test_client()
    recorder = state(app).reports
    recorder.start()
    try:
        config_id = create(client)
        client.get(DEVICE_URL)
        # Wait on one read, then compare both: the writer may land between two reads.
        assert wait_until(lambda: summary(client, config_id)["sync_state"] == "in_sync", 5)
        assert sync(client, config_id) == ("in_sync", 1)
    finally:
        recorder.stop()
        state(app).database.dispose()


def test_stopping_writes_the_last_fetch_of_a_quiet_device(settings: Settings) -> None:
    app = create_app(
        make_settings(settings.database_url, checkin_flush_seconds=60),
        registry=CollectorRegistry(),
    )
    client = app.test_client()
    state(app).reports.start()
    config_id = create(client)
    client.get(DEVICE_URL)
    state(app).reports.stop()  # long before the next periodic write
    assert sync(client, config_id) == ("in_sync", 1)
    state(app).database.dispose()


def test_the_newest_fetch_wins_across_workers(app: Flask, client: FlaskClient) -> None:
    """Two processes' recorders, writing in the 'wrong' order, keep the newer fetch."""
    config_id = create(client)
    database = state(app).database
    older, newer = (DeviceReportIntake(database.session, CollectorRegistry()) for _ in "ab")
    older.fetched(
        config_id, 1, {"REMOTE_ADDR": "10.0.0.1", "HTTP_USER_AGENT": "old"}, verified=False
    )
    newer.fetched(
        config_id, 1, {"REMOTE_ADDR": "10.0.0.2", "HTTP_USER_AGENT": "new"}, verified=False
    )
    assert newer.flush() == 1
    assert older.flush() == 1
    assert config(client, config_id)["last_fetched_user_agent"] == "new"


class FlakySessions:
    """A session factory whose database is away for the first `failures` calls."""

    def __init__(self, real: t.Callable[[], Session], failures: int) -> None:
        self.real, self.failures = real, failures

    def __call__(self) -> Session:
        if self.failures > 0:
            self.failures -= 1
            raise OperationalError("connect", {}, Exception("database away"))
        return self.real()


def test_fetches_survive_a_failed_write(app: Flask, client: FlaskClient) -> None:
    config_id = create(client)
    # Away for the read of what is stored, the write it then tried at once, and a flush.
    sessions = FlakySessions(state(app).database.session, failures=3)
    recorder = DeviceReportIntake(sessions, CollectorRegistry())
    recorder.fetched(config_id, 1, {"HTTP_USER_AGENT": "a"}, verified=False)
    assert recorder.flush() == 0  # the database was away; nothing lost
    assert recorder.flush() == 1
    assert sync(client, config_id) == ("in_sync", 1)


# --- metrics ------------------------------------------------------------------------------------


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def by_state(client: FlaskClient) -> dict[str, float]:
    return {
        dict(labels)["state"]: value
        for (name, labels), value in scrape(client).items()
        if name == "iotsupport_configs_by_sync_state"
    }


def test_metrics_count_configs_by_sync_state_and_delivery_time(
    app: Flask, client: FlaskClient
) -> None:
    fetched, changed = create(client), create(client, mac="aa:bb:cc:dd:ee:01")
    create(client, mac="aa:bb:cc:dd:ee:02")
    assert by_state(client) == {"in_sync": 0, "pending": 0, "never": 3}
    client.get(DEVICE_URL)
    client.get("/api/configs/aa:bb:cc:dd:ee:01.json")
    flush(app)
    client.put(f"/api/configs/{changed}", json={"content": {"v": 2}})
    assert by_state(client) == {"in_sync": 1, "pending": 1, "never": 1}
    assert sync(client, fetched)[0] == "in_sync"

    delivered = scrape(client)[("iotsupport_config_delivery_seconds_count", ())]
    assert delivered == 2  # one per version a device picked up for the first time
    client.get(DEVICE_URL)  # the same version again: no new delivery
    flush(app)
    assert scrape(client)[("iotsupport_config_delivery_seconds_count", ())] == 2


@pytest.mark.postgres
def test_check_ins_on_postgresql(pg_app: Flask) -> None:
    client = pg_app.test_client()
    config_id = create(client)
    client.get(DEVICE_URL, headers={"User-Agent": "esp32"})
    assert flush(pg_app) == 1
    assert sync(client, config_id) == ("in_sync", 1)
    client.put(f"/api/configs/{config_id}", json={"content": {"v": 2}})
    assert sync(client, config_id) == ("pending", 1)
    # Two workers' recorders; the one holding the older fetch writes last and loses.
    database = state(pg_app).database
    older, newer = (DeviceReportIntake(database.session, CollectorRegistry()) for _ in "ab")
    for recorder, agent in ((older, "old"), (newer, "new")):
        recorder.fetched(config_id, 2, {"HTTP_USER_AGENT": agent}, verified=False)
    assert (newer.flush(), older.flush()) == (1, 1)
    assert sync(client, config_id) == ("in_sync", 2)
    assert config(client, config_id)["last_fetched_user_agent"] == "new"
    assert by_state(client) == {"in_sync": 1, "pending": 0, "never": 0}
    delivered = scrape(client)[("iotsupport_config_delivery_seconds_count", ())]
    assert delivered == 1  # the app's own recorder saw version 1 delivered
