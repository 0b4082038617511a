"""The device fetch answered from memory before Flask sends what Flask would send: the
same status, headers and body, the same check-in, access log line and metrics."""

from __future__ import annotations

import logging
import typing as t
from collections.abc import Iterator

import pytest
from conftest import RecordingPublisher
from conftest import make_settings
from credentials_support import basic
from credentials_support import bearer
from credentials_support import create_device
from credentials_support import issue
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry

from iotsupport import create_app
from iotsupport.extensions import state

OPEN = "aa:bb:cc:00:00:01"  # no credential
LOCKED = "aa:bb:cc:00:00:02"  # has one
UNKNOWN = "aa:bb:cc:00:00:09"


@pytest.fixture
def twin_apps(database_url: str) -> Iterator[tuple[Flask, Flask, str]]:
    """Two apps on one database: `fast` answers from memory, `flask` (cache not started)
    goes through Flask for every fetch."""
    fast = create_app(
        make_settings(database_url), publisher=RecordingPublisher(), registry=CollectorRegistry()
    )
    flask = create_app(
        make_settings(database_url), publisher=RecordingPublisher(), registry=CollectorRegistry()
    )
    state(fast).devices.cache.start()
    admin = fast.test_client()
    create_device(admin, OPEN, {"wifi": "home", "big": "x" * 3000})
    token = issue(admin, create_device(admin, LOCKED, {"n": 2}))
    yield fast, flask, token
    for app in (fast, flask):
        state(app).devices.cache.stop()
        state(app).database.dispose()


def answer(
    client: FlaskClient, method: str, path: str, headers: dict[str, str]
) -> tuple[t.Any, ...]:
    response = client.open(path, method=method, headers={"X-Request-ID": "req-1", **headers})
    return response.status_code, sorted(response.headers.items()), response.get_data()


def fetched_from_memory(app: Flask) -> float:
    value: float = state(app).devices.cache.metrics.from_memory._value.get()
    return value


CASES: list[tuple[str, str, dict[str, str]]] = [
    ("GET", f"/api/configs/{OPEN}.json", {}),
    ("GET", f"/api/configs/{OPEN.upper().replace(':', '-')}.json", {}),
    ("HEAD", f"/api/configs/{OPEN}.json", {}),
    ("GET", f"/api/configs/{OPEN}.json", {"Accept-Encoding": "gzip"}),
    ("GET", f"/api/configs/{OPEN}.json", {"If-None-Match": "*"}),
    ("GET", f"/api/configs/{OPEN}.json", {"If-None-Match": '"nope", W/"other"'}),
    ("GET", f"/api/configs/{LOCKED}.json", {"TOKEN": "bearer"}),
    ("GET", f"/api/configs/{LOCKED}.json", {"TOKEN": "basic"}),
    ("GET", f"/api/configs/{LOCKED}.json", {"TOKEN": "basic-other-mac"}),
    ("GET", f"/api/configs/{LOCKED}.json", {}),
    ("GET", f"/api/configs/{LOCKED}.json", {"Authorization": "Bearer iotd_wrong"}),
    ("GET", f"/api/configs/{UNKNOWN}.json", {}),
    ("GET", "/api/configs/not-a-mac.json", {}),
    ("GET", f"/api/configs/{OPEN}.json", {"X-Padding": "p" * 40_000}),
    ("POST", f"/api/configs/{OPEN}.json", {}),
]


@pytest.mark.parametrize(("method", "path", "headers"), CASES)
def test_the_fast_path_answers_as_flask_does(
    twin_apps: tuple[Flask, Flask, str], method: str, path: str, headers: dict[str, str]
) -> None:
    fast, flask, token = twin_apps
    headers = dict(headers)
    kind = headers.pop("TOKEN", None)
    if kind == "bearer":
        headers.update(bearer(token))
    elif kind == "basic":
        headers.update(basic(LOCKED, token))
    elif kind == "basic-other-mac":
        headers.update(basic(OPEN, token))
    before = fetched_from_memory(fast)
    from_memory = answer(fast.test_client(), method, path, headers)
    assert from_memory == answer(flask.test_client(), method, path, headers)
    if from_memory[0] in (200, 304):  # read from memory once, whoever answered
        assert fetched_from_memory(fast) == before + 1


def test_a_304_from_memory_matches_the_etag_flask_sent(twin_apps: tuple[Flask, Flask, str]) -> None:
    fast, flask, token = twin_apps
    path = f"/api/configs/{LOCKED}.json"
    etag = flask.test_client().get(path, headers=bearer(token)).headers["ETag"]
    before = fetched_from_memory(fast)
    again = fast.test_client().get(path, headers={"If-None-Match": etag, **bearer(token)})
    assert again.status_code == 304 and again.headers["ETag"] == etag and again.data == b""
    assert fetched_from_memory(fast) == before + 1


def test_memory_fetches_are_logged_counted_and_checked_in(
    twin_apps: tuple[Flask, Flask, str], caplog: pytest.LogCaptureFixture
) -> None:
    fast, _, token = twin_apps
    client = fast.test_client()
    with caplog.at_level(logging.INFO, logger="iotsupport.access"):
        response = client.get(
            f"/api/configs/{LOCKED}.json",
            headers={"X-Firmware-Version": "1.2.3", "User-Agent": "esp32", **bearer(token)},
        )
    assert response.status_code == 200
    assert fetched_from_memory(fast) >= 1
    lines = [r.getMessage() for r in caplog.records if r.name == "iotsupport.access"]
    assert any("route=/api/configs/<mac:mac>.json status=200" in line for line in lines)
    assert token not in caplog.text
    metrics = client.get("/metrics").get_data(as_text=True)
    assert (
        'iotsupport_http_requests_total{method="GET",route="/api/configs/<mac:mac>.json",'
        'status="200"} 1.0' in metrics
    )
    valid = (
        'iotsupport_device_requests_total{credential="valid",route="/api/configs/<mac:mac>.json"}'
    )
    assert f"{valid} 1.0" in metrics
    state(fast).reports.flush()
    listed = client.get("/api/configs").get_json()["configs"]
    config_id = next(config["id"] for config in listed if config["mac_address"] == LOCKED)
    item = client.get(f"/api/configs/{config_id}").get_json()
    assert item["last_fetched_firmware_version"] == "1.2.3"
    assert item["last_fetched_user_agent"] == "esp32"
    assert item["last_fetched_with_credential"] is True
    assert item["sync_state"] == "in_sync"
