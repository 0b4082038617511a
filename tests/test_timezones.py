"""Timestamps without an offset are UTC: checked where that cannot pass by accident.

On a machine whose clock is in UTC, "no offset" read as local time and read as
UTC give the same instant. These tests run in St. John's (UTC-03:30, -02:30 in
summer), where every such mistake moves the instant by hours.
"""

from __future__ import annotations

import time
import typing as t
from collections.abc import Iterator
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path

import pytest
from assets_support import build_assets_app
from assets_support import rsa_key
from assets_support import signed
from assets_support import upload
from assets_support import write_private_key
from conftest import assert_error
from flask import Flask
from flask.testing import FlaskClient

from iotsupport.extensions import state

MAC = "aa:bb:cc:dd:ee:01"
ZONE = "America/St_Johns"


@pytest.fixture(autouse=True)
def other_timezone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", ZONE)
    time.tzset()
    assert datetime.now().astimezone().utcoffset() not in (None, timedelta(0))
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def app(database_url: str, tmp_path: Path) -> Iterator[Flask]:
    folder = tmp_path / "assets"
    folder.mkdir()
    app = build_assets_app(database_url, folder, write_private_key(tmp_path / "k.pem", rsa_key()))
    yield app
    state(app).database.dispose()


def assert_now(text: str) -> None:
    """An ISO 8601 instant with an explicit UTC offset, within a minute of the real now."""
    instant = datetime.fromisoformat(text)
    assert instant.utcoffset() == timedelta(0), text
    assert abs(instant - datetime.now(UTC)) < timedelta(minutes=1), text


def test_an_upload_timestamp_without_offset_is_utc(client: FlaskClient) -> None:
    utc_wall_clock = datetime.now(UTC).replace(tzinfo=None).isoformat()
    assert upload(client, "utc.bin", b"x", signed(utc_wall_clock)).status_code == 200
    local_wall_clock = datetime.now().isoformat()  # hours away from UTC here
    body = assert_error(upload(client, "local.bin", b"x", signed(local_wall_clock)), 400)
    assert body["code"] in ("timestamp_too_old", "timestamp_in_future")
    assert_now(client.get("/api/assets").get_json()["assets"][0]["uploaded_at"])


def test_saved_times_are_now_in_utc(app: Flask, client: FlaskClient) -> None:
    created = client.post("/api/configs", json={"mac_address": MAC, "content": {"v": 1}})
    config = created.get_json()
    for stamp in ("created_at", "updated_at"):
        assert_now(config[stamp])
        assert_now(client.get(f"/api/configs/{config['id']}").get_json()[stamp])
    assert_now(client.get("/api/configs").get_json()["configs"][0]["updated_at"])
    history = client.get(f"/api/configs/{config['id']}/history").get_json()
    assert_now(history["versions"][0]["saved_at"])
    assert client.delete(f"/api/configs/{config['id']}").status_code == 204
    assert_now(client.get("/api/configs/deleted").get_json()["configs"][0]["deleted_at"])


def test_check_in_times_are_now_in_utc(app: Flask, client: FlaskClient) -> None:
    config: dict[str, t.Any] = client.post(
        "/api/configs", json={"mac_address": MAC, "content": {}}
    ).get_json()
    assert client.get(f"/api/configs/{MAC}.json").status_code == 200
    state(app).reports.flush()
    assert_now(client.get(f"/api/configs/{config['id']}").get_json()["last_fetched_at"])
    assert_now(client.get("/api/configs").get_json()["configs"][0]["last_fetched_at"])
