"""Device logs: intake over HTTP, storage, reading, retention (SQLite and PostgreSQL)."""

from __future__ import annotations

import gzip
import json
import threading
import time
import typing as t
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from conftest import ClientWith
from conftest import assert_error
from conftest import random_mac
from credentials_support import bearer
from credentials_support import create_device
from credentials_support import fetch
from credentials_support import issue
from flask.testing import FlaskClient
from sqlalchemy import text

from iotsupport.device_logs.parsing import parse_payload
from iotsupport.device_logs.parsing import parse_text_line
from iotsupport.extensions import state


def flush(client: FlaskClient) -> None:
    state(client.application).reports.flush()


def post_logs(
    client: FlaskClient, body: bytes | str, token: str | None = None, **kwargs: t.Any
) -> t.Any:
    headers = dict(kwargs.pop("headers", {}))
    if token:
        headers.update(bearer(token))
    return client.post("/api/device/logs", data=body, headers=headers, **kwargs)


def test_esp_idf_lines_are_understood() -> None:
    line = parse_text_line("\x1b[0;31mE (12345) wifi: connect failed, reason 201\x1b[0m")
    assert line is not None
    assert (line.level, line.uptime_ms, line.tag) == (1, 12345, "wifi")
    assert line.message == "connect failed, reason 201"
    plain = parse_text_line("just text")
    assert plain is not None and plain.tag is None and plain.level == 3
    long = parse_text_line("I (1) x: " + "é" * 5000)
    assert long is not None and len(long.message.encode()) <= 4096
    lines = parse_payload(b"W (5) boot: ok\n\xff\xfe broken\n", 100)
    assert [line.level for line in lines] == [2, 3]
    assert "\ufffd" in lines[1].message
    objects = parse_payload(
        json.dumps(
            {"lines": [{"ts": 1_700_000_000, "level": "error", "tag": "app", "message": "x"}]}
        ).encode(),
        100,
    )
    assert objects[0].level == 1 and objects[0].tag == "app"
    assert objects[0].device_time == datetime.fromtimestamp(1_700_000_000, UTC)


def test_a_device_posts_lines_and_an_admin_reads_them(api: FlaskClient) -> None:
    mac = random_mac()
    config_id = create_device(api, mac)
    token = issue(api, config_id)
    assert fetch(api, mac, {**bearer(token), "X-Firmware-Version": "1.2.3"}).status_code == 200
    flush(api)
    body = (
        "I (100) boot: started\n\x1b[0;31mE (2500) wifi: auth failed\x1b[0m\nW (3000) app: slow\n"
    )
    response = post_logs(api, body, token, content_type="text/plain")
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json() == {"accepted": 3, "dropped": 0}
    assert api.get(f"/api/configs/{config_id}/logs").get_json()["lines"] == []  # batched
    flush(api)
    page = api.get(f"/api/configs/{config_id}/logs").get_json()
    assert [line["message"] for line in page["lines"]] == ["slow", "auth failed", "started"]
    newest = page["lines"][1]
    assert newest["level"] == "E" and newest["tag"] == "wifi" and newest["uptime_ms"] == 2500
    assert newest["device"] == {"id": config_id, "mac": mac, "name": None}
    assert newest["firmware_version"] == "1.2.3" and newest["verified"] is True
    assert page["latest"] == page["lines"][0]["id"] and page["cursor"] is None
    errors = api.get(f"/api/configs/{config_id}/logs?level=warning").get_json()["lines"]
    assert [line["level"] for line in errors] == ["W", "E"]
    assert [x["tag"] for x in api.get("/api/logs?tag=app").get_json()["lines"]] == ["app"]
    found = api.get(f"/api/configs/{config_id}/logs?q=AUTH FAIL").get_json()["lines"]
    assert [line["message"] for line in found] == ["auth failed"]
    assert api.get(f"/api/configs/{config_id}/logs?q=fa").get_json()["lines"][0]["tag"] == "wifi"


def test_pages_back_by_cursor_and_follows_by_after(api: FlaskClient) -> None:
    config_id = create_device(api, random_mac())
    token = issue(api, config_id)
    post_logs(api, "\n".join(f"I (1) n: line {n}" for n in range(5)), token)
    flush(api)
    first = api.get(f"/api/configs/{config_id}/logs?limit=2").get_json()
    assert [line["message"] for line in first["lines"]] == ["line 4", "line 3"]
    second = api.get(f"/api/configs/{config_id}/logs?limit=2&cursor={first['cursor']}").get_json()
    assert [line["message"] for line in second["lines"]] == ["line 2", "line 1"]
    latest = first["latest"]
    none = api.get(f"/api/configs/{config_id}/logs?after={latest}").get_json()
    assert none["lines"] == [] and none["latest"] == latest
    post_logs(api, "E (9) n: newer", token)
    flush(api)
    newer = api.get(f"/api/configs/{config_id}/logs?after={latest}").get_json()
    assert [line["message"] for line in newer["lines"]] == ["newer"]
    assert newer["latest"] > latest


def test_download_as_text_and_ndjson(client: FlaskClient) -> None:
    mac = random_mac()
    config_id = create_device(client, mac)
    token = issue(client, config_id)
    post_logs(client, "E (7) wifi: gone\n", token)
    flush(client)
    text_answer = client.get(f"/api/configs/{config_id}/logs?format=text")
    assert text_answer.mimetype == "text/plain"
    assert "attachment" in text_answer.headers["Content-Disposition"]
    assert text_answer.get_data(as_text=True).rstrip().endswith(f"{mac} E (7) wifi: gone")
    ndjson = client.get("/api/logs?format=ndjson")
    rows = [json.loads(line) for line in ndjson.get_data(as_text=True).splitlines()]
    assert rows[0]["message"] == "gone" and rows[0]["device"]["mac"] == mac


def test_gzip_bodies_and_limits(client: FlaskClient) -> None:
    config_id = create_device(client, random_mac())
    token = issue(client, config_id)
    packed = gzip.compress(b"I (1) z: zipped\n")
    response = post_logs(client, packed, token, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 202 and response.get_json()["accepted"] == 1
    assert_error(post_logs(client, b"I (1) x: y" * 30_000, token), 413, "payload_too_large")
    bomb = gzip.compress(b"A" * (8 * 1024 * 1024))
    assert len(bomb) < 256 * 1024
    refused = post_logs(client, bomb, token, headers={"Content-Encoding": "gzip"})
    assert_error(refused, 413, "payload_too_large")
    broken = post_logs(client, b"not gzip", token, headers={"Content-Encoding": "gzip"})
    assert_error(broken, 400)


def test_who_may_write(client_with: ClientWith) -> None:
    optional = client_with(device_auth="optional")
    mac = random_mac()
    config_id = create_device(optional, mac)
    response = post_logs(optional, "W (1) a: anonymous", query_string={"mac": mac})
    assert response.status_code == 202
    flush(optional)
    line = optional.get(f"/api/configs/{config_id}/logs").get_json()["lines"][0]
    assert line["verified"] is False
    assert_error(post_logs(optional, "x"), 400)
    assert_error(post_logs(optional, "x", query_string={"mac": random_mac()}), 401)
    assert_error(post_logs(optional, "x", token="iotd_wrong", query_string={"mac": mac}), 401)
    issue(optional, config_id)  # a device with a credential must use it
    assert_error(post_logs(optional, "x", query_string={"mac": mac}), 401)
    required = client_with(device_auth="required")
    other = random_mac()
    create_device(required, other)
    assert_error(post_logs(required, "x", query_string={"mac": other}), 401)


def test_a_device_over_its_rate_drops_and_the_drop_is_counted(client_with: ClientWith) -> None:
    client = client_with(log_max_lines_per_minute=5)
    config_id = create_device(client, random_mac())
    token = issue(client, config_id)
    response = post_logs(client, "\n".join(f"I (1) r: {n}" for n in range(8)), token)
    assert response.get_json() == {"accepted": 5, "dropped": 3}
    flush(client)
    page = client.get(f"/api/configs/{config_id}/logs").get_json()
    assert len(page["lines"]) == 5
    assert page["dropped"]["count"] == 3
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'iotsupport_device_log_lines_total{outcome="dropped_rate"} 3.0' in metrics
    assert "r: 7" not in metrics


def test_reading_is_for_admins_and_refuses_bad_queries(api: FlaskClient) -> None:
    config_id = create_device(api, random_mac())
    assert_error(api.get(f"/api/configs/{config_id}/logs?level=loud"), 400)
    assert_error(api.get(f"/api/configs/{config_id}/logs?limit=0"), 400)
    assert_error(api.get(f"/api/configs/{config_id}/logs?limit=5000"), 400)
    assert_error(api.get(f"/api/configs/{config_id}/logs?since=yesterday"), 400)
    assert_error(api.get(f"/api/configs/{config_id}/logs?wait=3"), 400)
    assert_error(api.get("/api/configs/999999/logs"), 404)
    assert api.get("/api/logs?model=nothing&q=%25_\\").status_code == 200


def test_wait_answers_when_newer_lines_arrive(client: FlaskClient) -> None:
    """Plain WSGI (no front): the route's thread waits; the front's own test is elsewhere."""
    config_id = create_device(client, random_mac())
    token = issue(client, config_id)
    latest = client.get(f"/api/configs/{config_id}/logs").get_json()["latest"]
    started = time.monotonic()
    empty = client.get(f"/api/configs/{config_id}/logs?after={latest}&wait=1")
    assert empty.get_json()["lines"] == [] and time.monotonic() - started >= 0.9

    def later() -> None:
        time.sleep(0.5)
        post_logs(client.application.test_client(), "E (1) w: arrived", token)
        flush(client)

    writer = threading.Thread(target=later)
    writer.start()
    started = time.monotonic()
    answer = client.get(f"/api/configs/{config_id}/logs?after={latest}&wait=30").get_json()
    writer.join()
    assert [line["message"] for line in answer["lines"]] == ["arrived"]
    assert time.monotonic() - started < 15


def test_retention_drops_old_lines_and_caps_devices(api: FlaskClient) -> None:
    config_id = create_device(api, random_mac())
    token = issue(api, config_id)
    app = api.application
    logs = state(app).logs
    assert logs is not None
    post_logs(api, "I (1) old: old line", token)
    flush(api)
    old = datetime.now(UTC) - timedelta(days=20)
    engine = state(app).database.engine
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Moving a row across partitions: it lands in the old day's partition.
            from iotsupport.device_logs.storage import ensure_partition

            ensure_partition(connection, old.date())
        connection.execute(text("UPDATE device_logs SET received_at = :old"), {"old": old})
    post_logs(api, "I (1) new: new line", token)
    flush(api)
    logs.apply_retention()
    lines = api.get(f"/api/configs/{config_id}/logs").get_json()["lines"]
    assert [line["message"] for line in lines] == ["new line"]
    assert api.get(f"/api/configs/{config_id}/logs?q=old").get_json()["lines"] == []


def test_which_devices_logged_errors_in_the_last_hour(api: FlaskClient) -> None:
    noisy, calm = create_device(api, random_mac()), create_device(api, random_mac())
    post_logs(api, "E (1) a: broke\nE (2) a: again\nI (3) a: fine", issue(api, noisy))
    post_logs(api, "W (1) b: meh", issue(api, calm))
    flush(api)
    answer = api.get("/api/logs/devices").get_json()
    assert [(device["id"], device["lines"]) for device in answer["devices"]] == [(noisy, 2)]
    warned = api.get("/api/logs/devices?level=W").get_json()["devices"]
    assert {device["id"] for device in warned} == {noisy, calm}
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert api.get("/api/logs/devices", query_string={"since": later}).get_json()["devices"] == []
