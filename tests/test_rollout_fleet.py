"""A rollout to fifty simulated devices, end to end: PostgreSQL, Mosquitto, the server's
background work (check-in flushes, rollout ticks) and the fleet simulator."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from conftest import clear_desired
from conftest import make_settings
from conftest import wait_until
from esp_images import AppInfo
from esp_images import build_image
from flask import Flask
from prometheus_client import CollectorRegistry
from release_support import create_model
from release_support import post_release
from ui_support import Serve

from iotsupport import create_app
from iotsupport.extensions import state
from iotsupport.settings import Settings
from iotsupport.simulator.fleet import FleetOptions
from iotsupport.simulator.fleet import simulate
from iotsupport.simulator.provision import mac_for

pytestmark = [pytest.mark.postgres, pytest.mark.mqtt]
DEVICES = 50


@pytest.fixture
def server(pg_settings: Settings, mqtt_url: str) -> Iterator[Flask]:
    """The app as a worker runs it: MQTT, check-ins written every 0.2 s, rollouts ticking."""
    settings = make_settings(
        pg_settings.database_url,
        mqtt_url=mqtt_url,
        checkin_flush_seconds=0.2,
        rollout_tick_seconds=0.5,
        # werkzeug's test server runs a thread per request (Granian: THREADS per worker);
        # a download holds two connections for a moment (its own and the download start's).
        db_pool_size=24,
    )
    app = create_app(settings, registry=CollectorRegistry())
    app_state = state(app)
    app_state.publisher.start()
    assert wait_until(lambda: app_state.publisher.state == "connected", 10)
    app_state.reports.start()
    app_state.rollouts.start()
    yield app
    app_state.rollouts.stop()
    app_state.reports.stop()
    app_state.publisher.stop()
    app_state.database.dispose()


def test_fifty_devices_follow_a_staged_rollout_and_failures_pause_the_next(
    server: Flask, serve: Serve, mqtt_url: str
) -> None:
    client = server.test_client()
    create_model(client, "sim")
    for version, size in (("2.0.0", 100_000), ("3.0.0", 50_000)):
        image = build_image("esp32c3", app=AppInfo(version=version), code_bytes=size)
        assert post_release(client, "sim", image).status_code == 201
    prefix = "02:" + ":".join(f"{byte:02x}" for byte in uuid.uuid4().bytes[:3])
    macs = [mac_for(prefix, index) for index in range(DEVICES)]
    options = FleetOptions(
        server=serve(server),
        devices=DEVICES,
        model="sim",
        mac_prefix=prefix,
        mqtt_url=mqtt_url,
        poll_seconds=30,
        http_connections=12,
        reboot_seconds=0.05,
        rollout_version="2.0.0",
        rollout_stages=[1, "10%", "100%"],
        error_threshold="20%",
    )
    try:
        report = simulate(options)
        assert report.rollout is not None
        assert report.rollout["state"] == "completed", report.lines()
        stages = report.rollout["stages"]
        assert [stage["counts"]["updated"] for stage in stages] == [1, 4, 45]
        assert report.running == {"2.0.0": DEVICES}
        assert report.stats.events["updates installed"] == DEVICES
        # Each device heard its target over MQTT and fetched its config with 304s since.
        assert report.stats.events["mqtt desired messages"] >= 2 * DEVICES
        assert report.stats.answers[("config", 304)] >= DEVICES
        assert report.stats.answers[("download", 200)] == DEVICES

        failing = replace(options, firmware_version="2.0.0", rollout_version="3.0.0", fail_rate=0.3)
        report = simulate(failing)
        assert report.rollout is not None
        assert report.rollout["state"] == "paused", report.lines()
        assert report.rollout["paused_reason"] == "error_threshold"
        failed = [
            device
            for stage in report.rollout["stages"]
            for device in stage["devices"]
            if device["state"] == "failed"
        ]
        assert failed and all(device["reason"] == "old_version" for device in failed)
        assert all(device["reported_version"] == "2.0.0" for device in failed)
        assert report.rollout["current_stage"] < 3 or report.rollout["counts"]["updated"] < 50
    finally:
        clear_desired(mqtt_url, *macs)
