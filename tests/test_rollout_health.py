"""Rollouts that watch health: a device that updated and then crashed on the release
counts as crashed and pauses the rollout, saying why; what nobody proved moves nothing."""

from __future__ import annotations

from flask import Flask
from rollout_support import Device
from rollout_support import Fleet
from test_device_reports import anonymous_device


def stage_devices(fleet: Fleet, rollout_id: int, stage: int) -> list[Device]:
    macs = [d["mac_address"] for d in fleet.rollout(rollout_id)["stages"][stage]["devices"]]
    return [device for device in fleet.devices if device.mac in macs]


def crash(fleet: Fleet, device: Device, version: str = "2.0.0", *, token: bool = True) -> None:
    """The device rebooted after a panic, and says so on its next fetch."""
    headers = {"X-Firmware-Version": version, "X-Reset-Reason": "PANIC", "X-Uptime": "1"}
    if token:
        headers.update(device.auth)
    response = fleet.client.get(f"/api/configs/{device.mac}.json", headers=headers)
    assert response.status_code == 200


def test_a_device_that_crashes_after_updating_pauses_the_rollout(app: Flask) -> None:
    fleet = Fleet(app, 4)
    rollout = fleet.start([1, 2, "100%"], error_threshold="50%")
    assert (rollout["health_window"], rollout["paused_detail"]) == (3600, None)
    (first,) = stage_devices(fleet, rollout["id"], 0)
    fleet.update(first)
    fleet.settle()
    body = fleet.rollout(rollout["id"])
    assert (body["state"], body["current_stage"]) == ("running", 2)  # stage 1 looked fine
    crash(fleet, first)
    fleet.settle()
    body = fleet.rollout(rollout["id"])
    assert body["state"] == "paused"
    assert body["paused_reason"] == "error_threshold"
    assert "1 crashed (PANIC)" in body["paused_detail"]
    stage = body["stages"][0]
    assert stage["counts"]["crashed"] == 1
    assert [(d["state"], d["reason"]) for d in stage["devices"]] == [("crashed", "PANIC")]
    page = fleet.client.get(f"/api/rollouts/{rollout['id']}").get_json()
    assert page["paused_detail"] == body["paused_detail"]


def test_a_crash_on_the_old_release_is_not_the_new_ones(app: Flask) -> None:
    fleet = Fleet(app, 2)
    for device in fleet.devices:
        crash(fleet, device, "1.0.0")
    fleet.settle()
    rollout = fleet.start([1, "100%"], error_threshold="1%")
    for device in fleet.devices:
        fleet.update(device)
    fleet.settle()
    body = fleet.rollout(rollout["id"])
    assert body["state"] == "completed"
    assert body["counts"]["crashed"] == 0


def test_max_crash_rate_pauses_and_resume_acknowledges(app: Flask) -> None:
    fleet = Fleet(app, 4)
    rollout = fleet.start(["100%"], max_crash_rate="50%")
    for index, device in enumerate(fleet.devices):
        fleet.update(device)
        if index < 2:
            crash(fleet, device)
    fleet.settle()
    body = fleet.rollout(rollout["id"])
    assert (body["state"], body["paused_reason"]) == ("paused", "crash_rate")
    assert body["paused_detail"].startswith("stage 1: 2 of 4 devices crashed (PANIC)")
    resumed = fleet.client.post(f"/api/rollouts/{rollout['id']}/resume")
    assert resumed.status_code == 200, resumed.get_json()
    fleet.settle()
    body = fleet.rollout(rollout["id"])
    assert (body["state"], body["paused_detail"]) == ("completed", None)


def test_compare_to_previous_pauses_a_less_crash_free_release(app: Flask) -> None:
    fleet = Fleet(app, 4)
    rollout = fleet.start([2, "100%"], compare_to_previous=True, crash_free_margin=10)
    first, second = stage_devices(fleet, rollout["id"], 0)
    fleet.update(first)
    fleet.update(second)
    crash(fleet, first)
    fleet.settle()
    body = fleet.rollout(rollout["id"])
    assert (body["state"], body["paused_reason"]) == ("paused", "worse_than_previous")
    assert "% of devices crash-free on 2.0.0" in body["paused_detail"]


def test_crashes_nobody_proved_count_only_with_unverified_reports(app: Flask) -> None:
    for unverified in (False, True):
        fleet = Fleet(app, 0, code=f"lamp{int(unverified)}")
        devices = [anonymous_device(fleet, 10 * int(unverified) + i) for i in range(2)]
        for device in devices:
            fleet.client.get(
                f"/api/configs/{device.mac}.json", headers={"X-Firmware-Version": "1.0.0"}
            )
        fleet.settle()
        rollout = fleet.start(["100%"], error_threshold="1%", unverified_reports=unverified)
        for device in devices:
            crash(fleet, device, token=False)
        fleet.settle()
        body = fleet.rollout(rollout["id"])
        if unverified:
            assert (body["state"], body["counts"]["crashed"]) == ("paused", 2)
        else:
            assert (body["state"], body["counts"]["crashed"]) == ("running", 0)
