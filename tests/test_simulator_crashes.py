"""`iotsupport simulate --crash-rate`: devices that panic on a release, and a rollout of it
that pauses by itself (PostgreSQL, Mosquitto, the server's background work)."""

from __future__ import annotations

import uuid

import pytest
from conftest import clear_desired
from esp_images import AppInfo
from esp_images import build_image
from flask import Flask
from release_support import create_model
from release_support import post_release
from test_rollout_fleet import server  # noqa: F401  (fixture)
from ui_support import Serve

from iotsupport.simulator.fleet import FleetOptions
from iotsupport.simulator.fleet import simulate
from iotsupport.simulator.provision import mac_for

pytestmark = [pytest.mark.postgres, pytest.mark.mqtt]
DEVICES = 20


def test_a_rollout_of_a_crashing_release_pauses_by_itself(
    server: Flask,  # noqa: F811
    serve: Serve,
    mqtt_url: str,
) -> None:
    client = server.test_client()
    create_model(client, "crashy")
    image = build_image("esp32c3", app=AppInfo(version="2.0.0"), code_bytes=50_000)
    assert post_release(client, "crashy", image).status_code == 201
    prefix = "02:" + ":".join(f"{byte:02x}" for byte in uuid.uuid4().bytes[:3])
    options = FleetOptions(
        server=serve(server),
        devices=DEVICES,
        model="crashy",
        mac_prefix=prefix,
        mqtt_url=mqtt_url,
        poll_seconds=30,
        http_connections=8,
        reboot_seconds=0.05,
        rollout_version="2.0.0",
        rollout_stages=[1, "25%", "100%"],
        max_crash_rate="20%",
        crash_rate=0.3,
    )
    try:
        report = simulate(options)
        assert report.rollout is not None
        rollout = report.rollout
        assert (rollout["state"], rollout["paused_reason"]) == ("paused", "crash_rate"), "\n".join(
            report.lines()
        )
        assert "crashed (PANIC)" in rollout["paused_detail"]
        crashed = [
            device
            for stage in rollout["stages"]
            for device in stage["devices"]
            if device["state"] == "crashed"
        ]
        assert crashed and all(device["reason"] == "PANIC" for device in crashed)
        assert report.stats.events["panics"] >= len(crashed)
        health = client.get(f"/api/configs/{crashed[0]['config_id']}/health").get_json()
        assert "PANIC" in [reset["reset_reason"] for reset in health["resets"]]
        release = client.get("/api/models/crashy/releases/2.0.0/health").get_json()["release"]
        assert release["crashed_devices"] >= len(crashed)
        assert release["crash_free_devices_pct"] < 100
    finally:
        clear_desired(mqtt_url, *[mac_for(prefix, index) for index in range(DEVICES)])
