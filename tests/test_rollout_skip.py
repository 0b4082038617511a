"""A stalled rollout says why: each device's last contact and when it times out; the admin
can skip the devices that are not reachable, and the stage goes on without them."""

from __future__ import annotations

from datetime import datetime

from conftest import assert_error
from flask import Flask
from rollout_support import Fleet

from iotsupport.extensions import state


def test_unreachable_devices_are_shown_and_can_be_skipped(app: Flask) -> None:
    fleet = Fleet(app, 5)
    fleet.settle()
    started = fleet.start(["100%"], error_threshold="20%")
    rollout_id = started["id"]
    reachable, unreachable = fleet.devices[:3], fleet.devices[3:]
    for device in reachable:
        fleet.update(device)
    fleet.settle()
    body = fleet.rollout(rollout_id)
    timeout_seconds = state(app).settings.rollout_device_timeout_seconds
    assert body["device_timeout_seconds"] == timeout_seconds
    (stage,) = body["stages"]
    assert (stage["state"], stage["counts"]["updated"], stage["counts"]["pending"]) == (
        "running",
        3,
        2,
    )
    rows = {device["mac_address"]: device for device in stage["devices"]}
    for device in unreachable:
        row = rows[device.mac]
        assert row["state"] == "pending"
        # It last fetched before the stage started, and times out one timeout after it.
        assert row["last_contact_at"] is not None
        assert datetime.fromisoformat(row["last_contact_at"]) < datetime.fromisoformat(
            stage["released_at"]
        )
        timeout = datetime.fromisoformat(row["times_out_at"]) - datetime.fromisoformat(
            stage["released_at"]
        )
        assert timeout.total_seconds() == body["device_timeout_seconds"]
    assert rows[reachable[0].mac]["times_out_at"] is None

    ids = [device.config_id for device in unreachable]
    refused = assert_error(
        fleet.client.post(
            f"/api/rollouts/{rollout_id}/skip", json={"config_ids": ids + [reachable[0].config_id]}
        ),
        409,
        "rollout_state",
    )
    assert refused["details"]["devices"] == [
        {"config_id": reachable[0].config_id, "reason": "it is updated already"}
    ]
    assert fleet.rollout(rollout_id)["state"] == "running"

    response = fleet.client.post(f"/api/rollouts/{rollout_id}/skip", json={"config_ids": ids})
    assert response.status_code == 200, response.get_json()
    skipped = response.get_json()
    # 2 of 5 skipped is above the 20% threshold: skipped devices are no failures.
    assert skipped["state"] == "completed"
    counts = skipped["stages"][0]["counts"]
    assert (counts["failed"], counts["skipped"], counts["updated"]) == (2, 2, 3)
    reasons = {d["mac_address"]: d["reason"] for d in skipped["stages"][0]["devices"]}
    assert {reasons[device.mac] for device in unreachable} == {"skipped"}
    assert_error(
        fleet.client.post(f"/api/rollouts/{rollout_id}/skip", json={"config_ids": ids}), 409
    )
    assert_error(
        fleet.client.post(f"/api/rollouts/{rollout_id}/skip", json={"config_ids": []}), 400
    )


def test_a_skipped_device_that_comes_back_still_updates(app: Flask) -> None:
    fleet = Fleet(app, 3)
    fleet.settle()
    rollout_id = fleet.start([1, "100%"], error_threshold="50%")["id"]
    first = fleet.stage_devices(fleet.rollout(rollout_id), 1)[0]
    response = fleet.client.post(
        f"/api/rollouts/{rollout_id}/skip", json={"config_ids": [first.config_id]}
    )
    assert response.status_code == 200
    assert response.get_json()["current_stage"] == 2  # stage 1 did not wait for it
    fleet.update(first)
    fleet.settle()
    assert fleet.states(rollout_id)[first.mac] == "updated"
