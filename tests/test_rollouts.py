"""Staged rollouts: stages advance from what devices report, the error threshold pauses,
pause, resume, approve, cancel; the devices' targets and their desired topics follow."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import RecordingPublisher
from conftest import apps_on
from conftest import assert_error
from conftest import race
from flask import Flask
from rollout_support import Fleet
from rollout_support import desired_firmware
from sqlalchemy import update

from iotsupport.db.base import utcnow
from iotsupport.extensions import state
from iotsupport.rollouts.tables import RolloutDevice


def test_a_rollout_goes_stage_by_stage_as_devices_update(
    app: Flask, publisher: RecordingPublisher
) -> None:
    fleet = Fleet(app, 20)
    rollout = fleet.start([1, "10%", "100%"], error_threshold="20%")
    assert rollout["state"] == "running" and rollout["current_stage"] == 1
    assert [s["counts"]["total"] for s in rollout["stages"]] == [1, 1, 18]
    assert [s["state"] for s in rollout["stages"]] == ["running", "waiting", "waiting"]
    (first,) = fleet.stage_devices(rollout, 1)
    release = fleet.releases["2.0.0"]
    # The first stage's device learns its target; the others have none yet.
    assert desired_firmware(publisher, first.mac) == "2.0.0"
    payload = publisher.retained[f"iotsupport/devices/{first.mac}/desired"]
    assert payload["firmware_sha256"] == release["sha256"]
    offer = fleet.firmware(first, "1.0.0")
    assert offer.status_code == 200
    body = offer.get_json()
    assert body.pop("signed_url").startswith(f"{body['url']}?device=")
    assert body.pop("signed_url_expires_at")
    assert body == {
        "version": "2.0.0",
        "size": release["size"],
        "sha256": release["sha256"],
        # From BASEURL, by default http://HOST:PORT; never from the request's Host.
        "url": state(app).settings.public_url + "/api/models/thermo/releases/2.0.0/image",
    }
    others = [device for device in fleet.devices if device is not first]
    assert all(desired_firmware(publisher, d.mac) is None for d in others)
    assert fleet.firmware(others[0], "1.0.0").status_code == 204

    fleet.download(first)
    assert fleet.states(rollout["id"])[first.mac] == "downloading"
    fleet.report(first, "2.0.0")
    fleet.settle()
    rollout = fleet.rollout(rollout["id"])
    assert rollout["current_stage"] == 2 and rollout["stages"][0]["state"] == "done"
    (second,) = fleet.stage_devices(rollout, 2)
    assert desired_firmware(publisher, second.mac) == "2.0.0"
    fleet.update(second)
    fleet.settle()
    rollout = fleet.rollout(rollout["id"])
    assert rollout["current_stage"] == 3
    for device in fleet.stage_devices(rollout, 3):
        fleet.update(device)
    fleet.settle()
    rollout = fleet.rollout(rollout["id"])
    assert rollout["state"] == "completed" and rollout["finished_at"] is not None
    assert rollout["counts"] == {
        "pending": 0,
        "downloading": 0,
        "updated": 20,
        "failed": 0,
        "crashed": 0,
        "total": 20,
    }
    # Updated devices run what they should; one back on the old firmware is offered it again.
    assert fleet.firmware(first, "2.0.0").status_code == 204
    assert fleet.firmware(first, "1.0.0").status_code == 200
    assert fleet.firmware(first).status_code == 204  # no header: its last report counts
    # The target stays after the rollout: the release cannot be deleted now.
    assert_error(fleet.client.delete("/api/models/thermo/releases/2.0.0"), 409, "release_in_use")
    assert fleet.client.delete("/api/models/thermo/releases/1.0.0").status_code == 204


def test_the_error_threshold_pauses_and_resume_accepts_the_failures(app: Flask) -> None:
    fleet = Fleet(app, 20)
    rollout = fleet.start([2, "100%"], error_threshold="50%")
    one, two = fleet.stage_devices(rollout, 1)
    fleet.update(one, ok=False)  # downloaded, then reported the old version: failed
    fleet.settle()
    rollout = fleet.rollout(rollout["id"])
    assert rollout["state"] == "paused" and rollout["paused_reason"] == "error_threshold"
    failed = next(d for d in rollout["stages"][0]["devices"] if d["mac_address"] == one.mac)
    assert (failed["state"], failed["reason"]) == ("failed", "old_version")
    fleet.update(two)
    fleet.settle()
    assert fleet.rollout(rollout["id"])["current_stage"] == 1  # paused: no next stage
    resumed = fleet.client.post(f"/api/rollouts/{rollout['id']}/resume").get_json()
    assert resumed["state"] == "running" and resumed["current_stage"] == 2
    # A failure in the next stage counts against that stage's own threshold.
    rest = fleet.stage_devices(resumed, 2)
    for device in rest[:8]:
        fleet.update(device, ok=False)
    fleet.settle()
    assert fleet.rollout(rollout["id"])["state"] == "running"  # 8 of 18 < 50%
    fleet.update(rest[8], ok=False)
    fleet.settle()
    assert fleet.rollout(rollout["id"])["paused_reason"] == "error_threshold"


def test_a_device_that_never_reports_fails_after_the_timeout(app: Flask) -> None:
    fleet = Fleet(app, 3)
    rollout = fleet.start([1, "100%"])
    (quiet,) = fleet.stage_devices(rollout, 1)
    assert fleet.states(rollout["id"])[quiet.mac] == "pending"
    with state(app).database.session() as session:
        stage_start = utcnow() - timedelta(seconds=3601)
        session.execute(update(RolloutDevice).values(released_at=stage_start))
        session.commit()
    fleet.settle()
    body = fleet.rollout(rollout["id"])
    device = body["stages"][0]["devices"][0]
    assert (device["state"], device["reason"]) == ("failed", "timeout")
    assert body["current_stage"] == 2  # no threshold: the next stage starts


def test_the_reported_sha256_must_be_the_releases(app: Flask) -> None:
    fleet = Fleet(app, 3)
    rollout = fleet.start([3, "100%"])
    a, b, c = fleet.stage_devices(rollout, 1)
    release = fleet.releases["2.0.0"]
    fleet.download(a)
    fleet.report(a, "2.0.0", "0" * 64)  # the version, but other bytes
    fleet.report(b, "2.0.0", release["sha256"].upper())  # the file's SHA-256
    fleet.report(c, "2.0.0", release["image_sha256"])  # esp_partition_get_sha256's
    fleet.settle()
    devices = {d["mac_address"]: d for d in fleet.rollout(rollout["id"])["stages"][0]["devices"]}
    assert (devices[a.mac]["state"], devices[a.mac]["reason"]) == ("failed", "sha256_mismatch")
    assert devices[b.mac]["state"] == devices[c.mac]["state"] == "updated"
    assert devices[c.mac]["reported_sha256"] == release["image_sha256"]


def test_approve_each_stage(app: Flask) -> None:
    fleet = Fleet(app, 10)
    rollout = fleet.start([1, "50%", "100%"], approve_each_stage=True)
    rollout_url = f"/api/rollouts/{rollout['id']}"
    assert_error(fleet.client.post(f"{rollout_url}/approve"), 409, "rollout_state")
    for device in fleet.stage_devices(rollout, 1):
        fleet.update(device)
    fleet.settle()
    assert fleet.rollout(rollout["id"])["state"] == "waiting_for_approval"
    approved = fleet.client.post(f"{rollout_url}/approve").get_json()
    assert approved["state"] == "running" and approved["current_stage"] == 2
    for device in fleet.stage_devices(approved, 2):
        fleet.update(device)
    # Paused while waiting: resuming waits for the approval again.
    fleet.settle()
    assert fleet.client.post(f"{rollout_url}/pause").get_json()["state"] == "paused"
    assert fleet.client.post(f"{rollout_url}/resume").get_json()["state"] == "waiting_for_approval"
    assert fleet.client.post(f"{rollout_url}/approve").get_json()["current_stage"] == 3


def test_cancel_gives_devices_that_did_not_take_the_release_their_old_target_back(
    app: Flask, publisher: RecordingPublisher
) -> None:
    fleet = Fleet(app, 10, versions=("1.0.0", "2.0.0", "3.0.0"))
    first = fleet.start(["100%"])
    for device in fleet.devices:
        fleet.update(device)
    fleet.settle()
    assert fleet.rollout(first["id"])["state"] == "completed"
    body = {"version": "3.0.0", "stages": ["50%", "100%"]}
    second = fleet.client.post("/api/models/thermo/rollouts", json=body).get_json()
    updated, downloading, rolled_back, untouched = fleet.stage_devices(second, 1)[:4]
    fleet.update(updated, "3.0.0")
    fleet.download(downloading, "3.0.0")
    fleet.download(rolled_back, "3.0.0")
    fleet.report(rolled_back, "2.0.0")
    fleet.settle()
    assert desired_firmware(publisher, untouched.mac) == "3.0.0"
    cancelled = fleet.client.post(f"/api/rollouts/{second['id']}/cancel").get_json()
    assert cancelled["state"] == "cancelled"
    for device in (untouched, rolled_back):  # back to what they had
        assert desired_firmware(publisher, device.mac) == "2.0.0"
        assert fleet.firmware(device, "2.0.0").status_code == 204
    for device in (updated, downloading):  # may run it (or soon): kept, no downgrade
        assert desired_firmware(publisher, device.mac) == "3.0.0"
    assert fleet.firmware(updated, "3.0.0").status_code == 204
    for action in ("pause", "resume", "cancel", "approve"):
        assert_error(fleet.client.post(f"/api/rollouts/{second['id']}/{action}"), 409)
    assert fleet.client.delete("/api/models/thermo/releases/1.0.0").status_code == 204
    assert_error(fleet.client.delete("/api/models/thermo/releases/3.0.0"), 409)


def test_one_active_rollout_per_model(app: Flask) -> None:
    fleet = Fleet(app, 2)
    first = fleet.start(["100%"])
    again = fleet.client.post(
        "/api/models/thermo/rollouts", json={"version": "2.0.0", "stages": ["100%"]}
    )
    assert assert_error(again, 409, "rollout_active")["details"]["rollout"] == first["id"]
    assert_error(fleet.client.delete("/api/models/thermo/releases/2.0.0"), 409, "release_in_use")
    fleet.client.post(f"/api/rollouts/{first['id']}/cancel")
    assert fleet.start(["100%"])["state"] == "running"


@pytest.mark.postgres
def test_starts_at_once_give_one_rollout(pg_app: Flask) -> None:
    fleet = Fleet(pg_app, 5)
    body = {"version": "2.0.0", "stages": [1, "100%"]}
    starts = [lambda c: c.post("/api/models/thermo/rollouts", json=body)] * 4
    results = race(pg_app, starts)
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409]
    listed = fleet.client.get("/api/models/thermo/rollouts").get_json()
    assert listed["count"] == 1 and listed["rollouts"][0]["counts"]["total"] == 5


@pytest.mark.postgres
def test_a_worker_leaves_a_rollout_another_one_is_evaluating(pg_app: Flask) -> None:
    fleet = Fleet(pg_app, 2)
    rollout = fleet.start([1, "100%"])
    (first,) = fleet.stage_devices(rollout, 1)
    fleet.update(first)
    state(pg_app).reports.flush()
    with state(pg_app).database.session() as holder:
        from iotsupport.rollouts.service import RolloutService

        assert RolloutService(holder).lock(rollout["id"]) is not None
        assert state(pg_app).rollouts.evaluate_all() == 0  # locked: skipped, not waited for
    assert state(pg_app).rollouts.evaluate_all() == 1
    assert fleet.rollout(rollout["id"])["current_stage"] == 2


def test_devices_that_join_the_model_join_the_last_stage(
    app: Flask, publisher: RecordingPublisher
) -> None:
    fleet = Fleet(app, 4)
    rollout = fleet.start([1, "100%"])
    late = fleet.add_device(50)
    fleet.settle()
    body = fleet.rollout(rollout["id"])
    assert late.mac in [d["mac_address"] for d in body["stages"][1]["devices"]]
    assert desired_firmware(publisher, late.mac) is None  # its stage has not started
    for device in fleet.stage_devices(body, 1):
        fleet.update(device)
    fleet.settle()
    assert desired_firmware(publisher, late.mac) == "2.0.0"
    later = fleet.add_device(51)
    fleet.settle()
    assert desired_firmware(publisher, later.mac) == "2.0.0"  # the last stage runs: at once
    # A device moved to another model leaves the rollout and is offered nothing.
    fleet.client.post("/api/models", json={"code": "lamp", "name": "Lamp", "schema": {}})
    config = fleet.client.get(f"/api/configs/{later.config_id}").get_json()
    moved = fleet.client.put(
        f"/api/configs/{later.config_id}", json={"content": config["content"], "model": "lamp"}
    )
    assert moved.status_code == 200
    assert desired_firmware(publisher, later.mac) is None
    assert fleet.firmware(later, "1.0.0").status_code == 204
    fleet.settle()
    assert later.mac not in fleet.states(rollout["id"])


def test_a_device_deleted_mid_rollout_leaves_it(app: Flask) -> None:
    fleet = Fleet(app, 3)
    rollout = fleet.start([1, "100%"])
    (first,) = fleet.stage_devices(rollout, 1)
    assert fleet.client.delete(f"/api/configs/{first.config_id}").status_code == 204
    fleet.settle()
    body = fleet.rollout(rollout["id"])
    assert body["current_stage"] == 2 and body["counts"]["total"] == 2  # stage 1 is empty
    assert fleet.client.post(f"/api/configs/deleted/{first.mac}/restore").status_code == 201
    fleet.settle()
    assert first.mac in fleet.states(rollout["id"])  # back, in the last stage


def test_unknown_firmware_is_shown_and_is_no_error(app: Flask) -> None:
    fleet = Fleet(app, 2)
    odd = fleet.devices[0]
    fleet.report(odd, "0.9.9-dev")
    fleet.settle()
    rollout = fleet.start([1, "100%"])
    shown = {d["mac_address"]: d for s in rollout["stages"] for d in s["devices"]}
    assert shown[odd.mac]["unknown_firmware"] is True
    assert shown[odd.mac]["state"] in ("pending", "downloading")
    assert shown[odd.mac]["from_version"] == "0.9.9-dev"
    assert shown[fleet.devices[1].mac]["unknown_firmware"] is False


def test_a_restart_loses_nothing(database_url: str, publisher: RecordingPublisher) -> None:
    with apps_on(database_url, publisher) as build:
        fleet = Fleet(build(), 6)
        rollout = fleet.start([1, "100%"])
        (first,) = fleet.stage_devices(rollout, 1)
        fleet.update(first)
        state(fleet.app).reports.stop()  # the worker ends: its check-ins are written
        fleet.app = build()  # another worker (or the same after a restart)
        fleet.client = fleet.app.test_client()
        fleet.settle()
        rollout = fleet.rollout(rollout["id"])
        assert rollout["current_stage"] == 2
        for device in fleet.stage_devices(rollout, 2):
            fleet.update(device)
        fleet.settle()
        assert fleet.rollout(rollout["id"])["state"] == "completed"


@pytest.mark.parametrize(
    "body",
    [
        {"version": "2.0.0", "stages": []},
        {"version": "2.0.0", "stages": [1, "10%"]},
        {"version": "2.0.0", "stages": ["10%", "5%", "100%"]},
        {"version": "2.0.0", "stages": [5, 2, "100%"]},
        {"version": "2.0.0", "stages": [0, "100%"]},
        {"version": "2.0.0", "stages": ["0%", "100%"]},
        {"version": "2.0.0", "stages": ["101%"]},
        {"version": "2.0.0", "stages": [1.5, "100%"]},
        {"version": "2.0.0", "stages": [True, "100%"]},
        {"version": "2.0.0", "stages": ["100%"], "error_threshold": "many"},
        {"version": "2.0.0", "stages": ["100%"], "approve_each_stage": "yes"},
        {"version": "", "stages": ["100%"]},
    ],
)
def test_bad_rollouts_are_refused(app: Flask, body: dict[str, object]) -> None:
    fleet = Fleet(app, 1)
    assert_error(fleet.client.post("/api/models/thermo/rollouts", json=body), 400)


def test_unknown_models_releases_and_rollouts_are_404(app: Flask) -> None:
    fleet = Fleet(app, 1)
    body = {"version": "9.0.0", "stages": ["100%"]}
    assert_error(fleet.client.post("/api/models/thermo/rollouts", json=body), 404)
    assert_error(fleet.client.post("/api/models/nope/rollouts", json=body), 404)
    assert_error(fleet.client.get("/api/rollouts/77"), 404)
    assert_error(fleet.client.post("/api/rollouts/77/pause"), 404)
    assert_error(fleet.client.get("/api/models/nope/rollouts"), 404)
