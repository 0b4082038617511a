"""The one intake of device reports: what nobody proved moves no rollout (unless the admin
chose so), a version change survives a kill -9 of the worker that answered it, a late
report corrects an ended rollout, and the writers of two workers never deadlock."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import DeviceAppFactory
from conftest import answers
from conftest import console_script
from conftest import free_port
from conftest import script_environment
from conftest import wait_until
from flask import Flask
from prometheus_client import CollectorRegistry
from rollout_support import Device
from rollout_support import Fleet
from sqlalchemy import select

from iotsupport.credentials.tables import DeviceCredential
from iotsupport.device_reports import DeviceReportIntake
from iotsupport.extensions import state


def anonymous_device(fleet: Fleet, index: int) -> Device:
    """A device of the fleet's model without a credential (DEVICE_AUTH=optional serves it)."""
    mac = f"02:00:00:00:{index // 256:02x}:{index % 256:02x}"
    body = {"mac_address": mac, "content": {"n": index}, "model": fleet.code}
    created = fleet.client.post("/api/configs", json=body)
    assert created.status_code == 201, created.get_json()
    return Device(mac, created.get_json()["id"], token="")


def stranger_reports(fleet: Fleet, device: Device, version: str) -> None:
    """Anyone on the network: a fetch without a token that names a firmware version."""
    headers = {"X-Firmware-Version": version}
    response = fleet.client.get(f"/api/configs/{device.mac}.json", headers=headers)
    assert response.status_code == 200


def three_stage_fleet(app: Flask) -> tuple[Fleet, list[Device]]:
    fleet = Fleet(app, 0)
    devices = [anonymous_device(fleet, index) for index in range(4)]
    for device in devices:
        stranger_reports(fleet, device, "1.0.0")  # what they ran when the rollout began
    fleet.settle()
    return fleet, devices


def test_reports_nobody_proved_move_no_rollout(app: Flask) -> None:
    fleet, devices = three_stage_fleet(app)
    rollout = fleet.start([1, 2, "100%"], error_threshold="1%")
    assert rollout["unverified_reports"] is False
    # Four anonymous requests completed this rollout with no download on the old code.
    for device in devices:
        stranger_reports(fleet, device, "2.0.0")
    fleet.settle()
    body = fleet.rollout(rollout["id"])
    assert (body["state"], body["current_stage"]) == ("running", 1)
    assert body["counts"]["updated"] == 0
    assert set(fleet.states(rollout["id"]).values()) == {"pending"}
    # ... and the old version reported again fails nobody either.
    for device in devices:
        stranger_reports(fleet, device, "1.0.0")
    fleet.settle()
    body = fleet.rollout(rollout["id"])
    assert (body["state"], body["counts"]["failed"]) == ("running", 0)
    # What the fetch still records: last seen, marked unverified.
    listed = fleet.client.get(f"/api/configs/{devices[0].config_id}").get_json()
    assert listed["last_fetched_firmware_version"] == "1.0.0"
    assert listed["last_fetched_with_credential"] is False


def test_a_rollout_that_takes_unverified_reports_moves_on_them(app: Flask) -> None:
    fleet, devices = three_stage_fleet(app)
    rollout = fleet.start([1, 2, "100%"], unverified_reports=True)
    assert rollout["unverified_reports"] is True
    for device in devices:
        stranger_reports(fleet, device, "2.0.0")
    for _ in range(3):
        fleet.settle()
    body = fleet.rollout(rollout["id"])
    assert (body["state"], body["counts"]["updated"]) == ("completed", 4)
    listing = fleet.client.get(f"/api/models/{fleet.code}/rollouts").get_json()
    assert listing["rollouts"][0]["unverified_reports"] is True


def test_a_device_failed_by_timeout_that_then_reports_the_release_counts_as_updated(
    device_app: DeviceAppFactory,
) -> None:
    app = device_app(rollout_device_timeout_seconds=1)
    fleet = Fleet(app, 2)
    rollout = fleet.start(["100%"])
    on_time, late = fleet.devices
    fleet.update(on_time)
    time.sleep(1.2)
    fleet.settle()
    body = fleet.rollout(rollout["id"])
    assert body["state"] == "completed"
    assert fleet.states(rollout["id"])[late.mac] == "failed"
    fleet.update(late)  # it was off for a while; it reports the release now
    fleet.settle()
    assert fleet.states(rollout["id"])[late.mac] == "updated"
    listing = fleet.client.get(f"/api/models/{fleet.code}/rollouts").get_json()
    assert listing["rollouts"][0]["counts"]["updated"] == 2


# --- two workers' writers on PostgreSQL -----------------------------------------------------------


@pytest.mark.postgres
def test_two_workers_writing_overlapping_reports_never_deadlock(
    pg_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    """Each worker notes fetches and credential uses of the same 200 devices, in opposite
    orders, and both write at the same moment, 15 times over."""
    fleet = Fleet(pg_app, 0)
    devices = [fleet.add_device(index) for index in range(200)]
    database = state(pg_app).database
    workers = [DeviceReportIntake(database.session, CollectorRegistry()) for _ in "ab"]
    environ = {"REMOTE_ADDR": "10.0.0.9", "HTTP_X_FIRMWARE_VERSION": "1.0.0"}
    failures: list[BaseException] = []
    for round_number in range(15):
        for worker, order in zip(workers, (devices, devices[::-1]), strict=True):
            for device in order:
                worker.credential_used(device.config_id, environ)
                worker.fetched(device.config_id, round_number, environ, verified=True)
        start = threading.Barrier(2)

        def write(worker: DeviceReportIntake, start: threading.Barrier) -> None:
            try:
                start.wait(10)
                assert worker.flush() == 2 * len(devices)
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                failures.append(exc)

        threads = [threading.Thread(target=write, args=(worker, start)) for worker in workers]
        with caplog.at_level(logging.WARNING, logger="iotsupport.device_reports"):
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
    assert [r.getMessage() for r in caplog.records if "not written" in r.getMessage()] == []
    assert failures == []
    with database.session() as session:
        used = session.scalars(
            select(DeviceCredential.last_used_from).where(
                DeviceCredential.config_id.in_([device.config_id for device in devices])
            )
        ).all()
    assert used == ["10.0.0.9"] * len(devices)


# --- a kill -9 right after the answer ---------------------------------------------------------


@contextlib.contextmanager
def served(folder: Path, database_url: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`iotsupport serve` (one worker) in its own process group; batched reports would wait
    a minute, and the rollout ticker five."""
    port = free_port()
    env = script_environment(
        PORT=str(port),
        DATABASE_URL=database_url,
        WORKERS="1",
        CHECKIN_FLUSH_SECONDS="60",
        ROLLOUT_TICK_SECONDS="300",
    )
    with (folder / "serve.log").open("a") as log:
        server = subprocess.Popen(
            [console_script(), "serve"],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: answers(f"{url}/api/health/live"), timeout=30)
        yield url, server
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)


def test_a_version_change_survives_a_kill_9_right_after_its_answer(
    app: Flask, database_url: str, tmp_path: Path
) -> None:
    fleet = Fleet(app, 1)
    (device,) = fleet.devices
    rollout = fleet.start(["100%"])
    fleet.download(device)
    fleet.settle()
    assert fleet.states(rollout["id"])[device.mac] == "downloading"
    with served(tmp_path, database_url) as (url, server):
        headers = {**device.auth, "X-Firmware-Version": "2.0.0"}
        answered = httpx.get(f"{url}/api/configs/{device.mac}.json", headers=headers)
        assert answered.status_code == 200
        os.killpg(server.pid, signal.SIGKILL)  # the worker and its pending reports die
        server.wait(30)
    with served(tmp_path, database_url) as (url, _server):
        body = httpx.get(f"{url}/api/rollouts/{rollout['id']}").json()
    states = {d["mac_address"]: d["state"] for s in body["stages"] for d in s["devices"]}
    assert states[device.mac] == "updated"
    assert body["counts"]["updated"] == 1
