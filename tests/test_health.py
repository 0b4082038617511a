"""Device health through the one intake: headers on the config fetch (junk ignored with a
count, never a failed fetch), resets per boot, online state, downsampling, release health."""

from __future__ import annotations

import typing as t
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from conftest import assert_error
from conftest import random_mac
from credentials_support import bearer
from credentials_support import create_device
from credentials_support import fetch
from credentials_support import issue
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from rollout_support import Fleet
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update

from iotsupport import create_app
from iotsupport.extensions import state
from iotsupport.health.tables import HealthHour
from iotsupport.health.tables import HealthSample

HEALTH = {
    "X-Reset-Reason": "POWERON",
    "X-Uptime": "120",
    "X-Free-Heap": "150000",
    "X-Min-Free-Heap": "90000",
    "X-Wifi-Rssi": "-61",
    "X-Metrics": "queue_depth=3,temp_c=41.5",
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def both(request: pytest.FixtureRequest) -> Flask:
    """The app on SQLite, then on PostgreSQL."""
    app: Flask = request.getfixturevalue("app" if request.param == "sqlite" else "pg_app")
    return app


def flush(app: Flask) -> None:
    state(app).reports.flush()


def health(client: FlaskClient, config_id: int, **query: str) -> dict[str, t.Any]:
    response = client.get(f"/api/configs/{config_id}/health", query_string=query)
    assert response.status_code == 200, response.get_json()
    body: dict[str, t.Any] = response.get_json()
    return body


def refused(app: Flask, source: str, field: str) -> float:
    value = state(app).scrape_registry.get_sample_value(
        "iotsupport_health_reports_refused_total", {"source": source, "field": field}
    )
    return value or 0.0


def test_health_headers_on_the_fetch_are_stored_with_what_proved_them(
    app: Flask, client: FlaskClient
) -> None:
    mac = random_mac()
    config_id = create_device(client, mac, {"a": 1})
    token = issue(client, config_id)
    headers = {**bearer(token), **HEALTH, "X-Firmware-Version": "1.0.0"}
    assert fetch(client, mac, headers).status_code == 200
    assert fetch(client, mac, {**HEALTH, "X-Uptime": "180"}).status_code == 401  # no token
    flush(app)
    body = health(client, config_id)
    (sample,) = body["samples"]
    assert sample["verified"] is True and sample["source"] == "http"
    assert sample["firmware_version"] == "1.0.0"
    assert (sample["reset_reason"], sample["uptime_s"]) == ("POWERON", 120)
    assert (sample["free_heap"], sample["min_free_heap"], sample["wifi_rssi"]) == (
        150000,
        90000,
        -61,
    )
    assert sample["metrics"] == {"queue_depth": 3, "temp_c": 41.5}
    assert body["reset_reason"] == "POWERON"
    assert [r["reset_reason"] for r in body["resets"]] == ["POWERON"]
    assert body["online"] is True


@pytest.mark.parametrize(
    ("header", "value", "field"),
    [
        ("X-Reset-Reason", "CRASHED", "reset_reason"),
        ("X-Reset-Reason", "panic", "reset_reason"),
        ("X-Uptime", "-5", "uptime_s"),
        ("X-Uptime", "12abc", "uptime_s"),
        ("X-Free-Heap", "1e9", "free_heap"),
        ("X-Wifi-Rssi", "12", "wifi_rssi"),
        ("X-Metrics", "temp=nan", "metrics"),
        ("X-Metrics", '{"temp": "hot"}', "metrics"),
        ("X-Metrics", '{"temp": true}', "metrics"),
        ("X-Metrics", "x" * 3000, "metrics"),
        ("X-Metrics", "bad name=1", "metrics"),
    ],
)
def test_junk_health_headers_are_ignored_with_a_count_and_the_fetch_is_answered(
    app: Flask, client: FlaskClient, header: str, value: str, field: str
) -> None:
    mac = random_mac()
    config_id = create_device(client, mac, {"a": 1})
    token = issue(client, config_id)
    before = refused(app, "http", field)
    response = fetch(client, mac, {**bearer(token), **HEALTH, header: value})
    assert response.status_code == 200
    assert response.get_json() == {"a": 1}
    flush(app)
    assert health(client, config_id)["samples"] == []  # the whole report, not half of it
    assert refused(app, "http", field) == before + 1


def test_a_new_boot_is_one_reset_and_the_same_boot_reported_again_is_not(
    app: Flask, client: FlaskClient
) -> None:
    mac = random_mac()
    config_id = create_device(client, mac)
    auth = bearer(issue(client, config_id))
    for uptime in ("100", "160", "220"):  # one boot, reported three times
        fetch(client, mac, {**auth, "X-Reset-Reason": "POWERON", "X-Uptime": uptime})
        flush(app)
    fetch(client, mac, {**auth, "X-Reset-Reason": "PANIC", "X-Uptime": "3"})  # urgent
    fetch(client, mac, {**auth, "X-Reset-Reason": "PANIC", "X-Uptime": "9"})  # same boot
    flush(app)
    fetch(client, mac, {**auth, "X-Reset-Reason": "PANIC", "X-Uptime": "2"})  # a crash loop
    body = health(client, config_id)
    assert [r["reset_reason"] for r in body["resets"]] == ["POWERON", "PANIC", "PANIC"]
    assert [r["unexpected"] for r in body["resets"]] == [False, True, True]
    assert body["reset_reason"] == "PANIC"
    assert len(body["samples"]) == 6


def test_health_query_since_is_checked(client: FlaskClient) -> None:
    config_id = create_device(client, random_mac())
    assert_error(client.get(f"/api/configs/{config_id}/health?since=yesterday"), 400)
    assert_error(client.get(f"/api/configs/{config_id}/health?since=2026-01-01T00:00:00"), 400)
    assert_error(client.get(f"/api/configs/{config_id}/health?limit=1"), 400)
    assert_error(client.get("/api/configs/999999/health"), 404)
    assert (
        client.get(f"/api/configs/{config_id}/health?since=2026-01-01T00:00:00%2B00:00").status_code
        == 200
    )


def test_online_by_last_contact_in_the_config_and_the_list(database_url: str) -> None:
    from conftest import make_settings

    app = create_app(
        make_settings(database_url, offline_after_seconds=600), registry=CollectorRegistry()
    )
    client = app.test_client()
    seen, silent, never = random_mac(), random_mac(), random_mac()
    ids = {mac: create_device(client, mac) for mac in (seen, silent, never)}
    fetch(client, seen)
    fetch(client, silent)
    flush(app)
    from iotsupport.configs.tables import DeviceCheckin

    with state(app).database.session() as session:
        session.execute(
            update(DeviceCheckin)
            .where(DeviceCheckin.config_id == ids[silent])
            .values(fetched_at=datetime.now(UTC) - timedelta(hours=1))
        )
        session.commit()
    rows = {row["mac_address"]: row for row in client.get("/api/configs").get_json()["configs"]}
    assert rows[seen]["online"] is True and rows[seen]["last_seen_at"] is not None
    assert rows[silent]["online"] is False
    assert rows[never]["online"] is None and rows[never]["last_seen_at"] is None
    one = client.get(f"/api/configs/{ids[silent]}").get_json()
    assert (one["online"], one["last_seen_at"]) == (False, rows[silent]["last_seen_at"])
    state(app).database.dispose()


def test_downsampling_folds_old_samples_into_hours(both: Flask) -> None:
    app, client = both, both.test_client()
    mac = random_mac()
    config_id = create_device(client, mac)
    auth = bearer(issue(client, config_id))
    for heap, rssi in ((1000, -70), (3000, -50)):
        headers = {**auth, "X-Free-Heap": str(heap), "X-Wifi-Rssi": str(rssi)}
        fetch(client, mac, {**headers, "X-Metrics": f"temp={heap // 100}"})
        flush(app)
    database = state(app).database
    old = datetime(2026, 1, 1, 10, 15, tzinfo=UTC)
    with database.session() as session:
        session.execute(update(HealthSample).values(reported_at=old))
        session.commit()
    downsampler = state(app).health_downsampler
    assert downsampler is not None
    assert downsampler.run(now=datetime(2026, 1, 4, tzinfo=UTC)) == 2
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(HealthSample)) == 0
        hour = session.scalars(select(HealthHour)).one()
    assert (hour.samples, hour.avg_free_heap, hour.min_free_heap) == (2, 2000.0, 1000)
    assert (hour.min_wifi_rssi, hour.avg_wifi_rssi) == (-70, -60.0)
    body = health(client, config_id, since="2026-01-01T00:00:00+00:00")
    assert body["hours"][0]["metrics"] == {"temp": {"count": 2, "avg": 20.0, "min": 10, "max": 30}}
    # 90 days on, the hour is gone too.
    downsampler.run(now=datetime(2026, 4, 15, tzinfo=UTC))
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(HealthHour)) == 0


def test_release_health_against_the_release_before(both: Flask) -> None:
    app = both
    fleet = Fleet(app, 4)
    client = fleet.client
    for index, device in enumerate(fleet.devices):
        version = "1.0.0" if index < 2 else "2.0.0"
        headers = {**device.auth, "X-Firmware-Version": version, "X-Uptime": "30"}
        headers["X-Reset-Reason"] = "PANIC" if index == 3 else "POWERON"
        headers["X-Min-Free-Heap"] = str(10000 * (index + 1))
        client.get(f"/api/configs/{device.mac}.json", headers=headers)
    flush(app)
    body = client.get("/api/models/thermo/releases/2.0.0/health").get_json()
    release, previous = body["release"], body["previous"]
    assert (release["version"], release["devices"], release["crashed_devices"]) == ("2.0.0", 2, 1)
    assert release["crash_free_devices_pct"] == 50.0
    assert release["unexpected_resets"] == 1
    assert release["unexpected_resets_per_device_day"] == 0.5
    assert release["median_min_free_heap"] == 35000.0
    assert (previous["version"], previous["devices"], previous["crash_free_devices_pct"]) == (
        "1.0.0",
        2,
        100.0,
    )
    assert_error(client.get("/api/models/thermo/releases/9.9.9/health"), 404)


def test_mqtt_messages_without_device_accounts_are_stored_unverified(
    app: Flask, client: FlaskClient
) -> None:
    mac = random_mac()
    config_id = create_device(client, mac)
    listener = state(app).health_listener
    assert listener is not None and not listener.verified  # MQTT_DEVICE_ACCOUNTS=off
    listener.handle(f"iotsupport/devices/{mac}/health", b'{"reset_reason": "PANIC", "uptime_s": 1}')
    listener.handle(f"iotsupport/devices/{mac}/status", b"online")
    before = refused(app, "mqtt", "topic"), refused(app, "mqtt", "unknown")
    listener.handle(f"iotsupport/devices/{mac.upper()}/health", b"{}")
    listener.handle(f"iotsupport/devices/{mac}/health", b'{"uptime_s": 1, "colour": "red"}')
    assert (refused(app, "mqtt", "topic"), refused(app, "mqtt", "unknown")) == (
        before[0] + 1,
        before[1] + 1,
    )
    flush(app)
    body = health(client, config_id)
    (sample,) = body["samples"]
    assert (sample["source"], sample["verified"]) == ("mqtt", False)
    assert body["online"] is True
    assert [(r["reset_reason"], r["verified"]) for r in body["resets"]] == [("PANIC", False)]


def test_any_other_contact_counts_as_last_seen(app: Flask, client: FlaskClient) -> None:
    config_id = create_device(client, random_mac())
    assert health(client, config_id)["online"] is None
    state(app).reports.contacted(config_id)  # type: ignore[attr-defined]
    flush(app)
    body = health(client, config_id)
    assert body["online"] is True and body["last_seen_at"] is not None


def test_health_urgent_says_when_the_headers_would_be_written_at_once(
    app: Flask, client: FlaskClient
) -> None:
    config_id = create_device(client, random_mac())
    intake = state(app).reports

    def environ(reason: str, uptime: str) -> dict[str, str]:
        return {"HTTP_X_RESET_REASON": reason, "HTTP_X_UPTIME": uptime}

    assert not intake.health_urgent(config_id, {})  # type: ignore[attr-defined]
    assert not intake.health_urgent(config_id, environ("POWERON", "5"))  # type: ignore[attr-defined]
    assert intake.health_urgent(config_id, environ("PANIC", "5"))  # type: ignore[attr-defined]
    assert not intake.health_urgent(config_id, environ("NOPE", "5"))  # type: ignore[attr-defined]
