"""One simulated device: what its firmware does, over HTTP, as the README's protocol says.

Every request carries its token and what it runs (X-Firmware-Version, X-Firmware-SHA256).
At start it fetches its config, then asks for its firmware target. When its desired
topic changes it fetches the config again (If-None-Match: a 304 when only the firmware
changed) and follows a new firmware target: GET /api/device/firmware, download the
image, check its SHA-256, "reboot" and report the new version with a config fetch. A
failing device (the share `--fail-rate` picks) reports its old version after the
download instead, as a device whose new firmware crashed and rolled back would, and
does not try that version again. Between events it polls both at `poll_seconds`.

Health: each config fetch carries the device's health headers (X-Reset-Reason since its
last boot, X-Uptime, X-Free-Heap, X-Min-Free-Heap, X-Wifi-Rssi). A crashing device (the
share `--crash-rate` picks) that installs the `--crash-release` panics right after
booting it: its first fetch on it says reset reason PANIC (and again at each poll, as a
crash-looping device would).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import typing as t
from dataclasses import dataclass

from iotsupport.simulator.http import Answer
from iotsupport.simulator.http import HttpError
from iotsupport.simulator.http import HttpPool
from iotsupport.simulator.stats import Stats


@dataclass
class Identity:
    mac_address: str
    token: str


class SimDevice:
    def __init__(
        self,
        identity: Identity,
        client: HttpPool,
        stats: Stats,
        *,
        version: str,
        fails: bool,
        poll_seconds: float,
        reboot_seconds: float,
        crashes_on: str | None = None,
    ) -> None:
        self.identity = identity
        self.client = client
        self.stats = stats
        self.version = version
        self.sha256: str | None = None
        self.fails = fails
        self.poll_seconds = poll_seconds
        self.reboot_seconds = reboot_seconds
        self.etag: str | None = None
        self.given_up: set[str] = set()  # versions that "crashed" here
        self.desired: dict[str, t.Any] | None = None
        self.crashes_on = crashes_on  # the release on which it panics, if any
        self.booted_at = time.time()
        self.reset_reason = "POWERON"
        self._woken = asyncio.Event()

    def on_desired(self, payload: dict[str, t.Any]) -> None:
        """Called on the loop for each message on its desired topic."""
        self.stats.count("mqtt desired messages")
        self.desired = payload
        self._woken.set()

    def on_stop(self) -> None:
        self._woken.set()

    @property
    def settled(self) -> bool:
        """Nothing left to do: it runs its target, or gave the target up."""
        wanted = (self.desired or {}).get("firmware_version")
        return wanted is None or wanted == self.version or wanted in self.given_up

    async def run(self, stop: asyncio.Event) -> None:
        await self.fetch_config()
        await self.follow_firmware()
        while not stop.is_set():
            try:
                await asyncio.wait_for(self._woken.wait(), self.poll_seconds)
                woken = True
            except TimeoutError:
                woken = False
            self._woken.clear()
            if stop.is_set():
                return
            desired = self.desired or {}
            if not woken and self.version == self.crashes_on:
                self._reboot("PANIC")  # it keeps crashing
            if not woken or desired.get("config_etag") != self._bare_etag():
                await self.fetch_config()
            if not woken or not self.settled:
                await self.follow_firmware()

    async def fetch_config(self) -> None:
        headers = {"If-None-Match": self.etag} if self.etag else {}
        mac = self.identity.mac_address
        response = await self._request("config", "GET", f"/api/configs/{mac}.json", headers)
        if response is not None and response.status in (200, 304):
            self.etag = response.headers.get("etag", self.etag)

    async def follow_firmware(self) -> None:
        response = await self._request("firmware", "GET", "/api/device/firmware")
        if response is None or response.status != 200:
            return
        target = json.loads(response.body)
        if target["version"] in self.given_up:
            return
        digest = await self._download(target["url"])
        if digest is None:
            return
        if digest != target["sha256"]:
            self.stats.count("downloads with a wrong SHA-256 (not installed)")
            return
        await asyncio.sleep(self.reboot_seconds)  # flash and reboot
        if self.fails:
            self.given_up.add(target["version"])
            self.stats.count("updates that rolled back (reported the old version)")
        else:
            self.version, self.sha256 = target["version"], digest
            self.stats.count("updates installed")
        self._reboot("SW")  # an OTA update restarts the chip
        if self.version == self.crashes_on:  # it panics at once, and boots again
            self._reboot("PANIC")
            self.stats.count("panics")
        await self.fetch_config()  # the first request after the reboot reports it

    def _reboot(self, reason: str) -> None:
        self.booted_at, self.reset_reason = time.time(), reason

    async def _download(self, url: str) -> str | None:
        digest = hashlib.sha256()
        started = time.perf_counter()

        def take(piece: bytes) -> None:
            digest.update(piece)
            self.stats.bytes_downloaded += len(piece)

        try:
            status, _ = await self.client.stream("GET", url, self._headers(), take)
        except HttpError as exc:
            self.stats.failure("download", exc, started)
            return None
        self.stats.answer("download", status, started)
        return digest.hexdigest() if status == 200 else None

    async def _request(
        self, kind: str, method: str, path: str, headers: dict[str, str] | None = None
    ) -> Answer | None:
        started = time.perf_counter()
        try:
            response = await self.client.request(method, path, self._headers(headers))
        except HttpError as exc:
            self.stats.failure(kind, exc, started)
            return None
        self.stats.answer(kind, response.status, started)
        return response

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        heap = 150_000 - (hash(self.identity.mac_address) % 20_000)
        headers = {
            "Authorization": f"Bearer {self.identity.token}",
            "X-Firmware-Version": self.version,
            "X-Reset-Reason": self.reset_reason,
            "X-Uptime": str(int(time.time() - self.booted_at)),
            "X-Free-Heap": str(heap),
            "X-Min-Free-Heap": str(heap - 30_000),
            "X-Wifi-Rssi": "-60",
        }
        if self.sha256 is not None:
            headers["X-Firmware-SHA256"] = self.sha256
        return headers | (extra or {})

    def _bare_etag(self) -> str | None:
        return self.etag.strip('"') if self.etag else None
