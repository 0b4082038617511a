"""A small fleet for the rollout tests: a model, devices with tokens, and what they report."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from conftest import RecordingPublisher
from credentials_support import bearer
from credentials_support import issue
from flask import Flask
from release_support import add_release
from release_support import create_model
from werkzeug.test import TestResponse

from iotsupport.extensions import state


@dataclass
class Device:
    mac: str
    config_id: int
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)


class Fleet:
    """`count` devices of model `code` running `version`, with releases 1.0.0 and 2.0.0."""

    def __init__(
        self,
        app: Flask,
        count: int,
        code: str = "thermo",
        versions: t.Sequence[str] = ("1.0.0", "2.0.0"),
    ) -> None:
        self.app = app
        self.client = app.test_client()
        self.code = code
        create_model(self.client, code)
        self.releases = {version: add_release(self.client, code, version) for version in versions}
        self.devices = [self.add_device(index) for index in range(count)]

    def add_device(self, index: int, model: str | None = None) -> Device:
        mac = f"02:00:00:00:{index // 256:02x}:{index % 256:02x}"
        body = {"mac_address": mac, "content": {"n": index}, "model": model or self.code}
        created = self.client.post("/api/configs", json=body)
        assert created.status_code == 201, created.get_json()
        config_id = created.get_json()["id"]
        device = Device(mac, config_id, issue(self.client, config_id))
        self.report(device, "1.0.0")
        return device

    def report(self, device: Device, version: str, sha256: str | None = None) -> TestResponse:
        """A config fetch that says what the device runs (a check-in)."""
        headers = {**device.auth, "X-Firmware-Version": version}
        if sha256 is not None:
            headers["X-Firmware-SHA256"] = sha256
        response = self.client.get(f"/api/configs/{device.mac}.json", headers=headers)
        assert response.status_code in (200, 304), response.get_data(as_text=True)
        return response

    def download(self, device: Device, version: str = "2.0.0") -> bytes:
        url = f"/api/models/{self.code}/releases/{version}/image"
        response = self.client.get(url, headers=device.auth)
        assert response.status_code == 200
        data: bytes = response.data
        return data

    def firmware(self, device: Device, version: str | None = None) -> TestResponse:
        headers = dict(device.auth)
        if version is not None:
            headers["X-Firmware-Version"] = version
        return self.client.get("/api/device/firmware", headers=headers)

    def settle(self) -> None:
        """What the workers do in the background: write the check-ins, evaluate rollouts."""
        app_state = state(self.app)
        app_state.reports.flush()
        app_state.rollouts.evaluate_all()

    def update(self, device: Device, version: str = "2.0.0", *, ok: bool = True) -> None:
        """Download the release, then report it (or, failing, the old version)."""
        self.download(device, version)
        self.report(device, version if ok else "1.0.0")

    def start(self, stages: list[t.Any], **options: t.Any) -> dict[str, t.Any]:
        body = {"version": "2.0.0", "stages": stages, **options}
        response = self.client.post(f"/api/models/{self.code}/rollouts", json=body)
        assert response.status_code == 201, response.get_json()
        rollout: dict[str, t.Any] = response.get_json()
        return rollout

    def rollout(self, rollout_id: int) -> dict[str, t.Any]:
        body: dict[str, t.Any] = self.client.get(f"/api/rollouts/{rollout_id}").get_json()
        return body

    def stage_devices(self, rollout: dict[str, t.Any], number: int) -> list[Device]:
        macs = {device["mac_address"] for device in rollout["stages"][number - 1]["devices"]}
        return [device for device in self.devices if device.mac in macs]

    def states(self, rollout_id: int) -> dict[str, str]:
        body = self.rollout(rollout_id)
        return {d["mac_address"]: d["state"] for s in body["stages"] for d in s["devices"]}


def desired_firmware(publisher: RecordingPublisher, mac: str) -> str | None:
    payload = publisher.retained.get(f"iotsupport/devices/{mac}/desired", {})
    version: str | None = payload.get("firmware_version")
    return version
