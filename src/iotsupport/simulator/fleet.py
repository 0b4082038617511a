"""Run a simulated fleet: devices up, optionally a rollout started, until done; a summary."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal
import time
import typing as t
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path

import httpx

from iotsupport.simulator.device import Identity
from iotsupport.simulator.device import SimDevice
from iotsupport.simulator.http import HttpPool
from iotsupport.simulator.mqtt import DesiredFeed
from iotsupport.simulator.provision import provision
from iotsupport.simulator.provision import read_devices
from iotsupport.simulator.provision import write_devices
from iotsupport.simulator.stats import Stats

ROLLOUT_ENDED = ("completed", "cancelled")


@dataclass
class FleetOptions:
    server: str
    devices: int = 10
    model: str | None = None  # provision devices of this model
    devices_file: Path | None = None  # or use these (mac token per line)
    save_devices: Path | None = None
    mac_prefix: str = "02:51"
    admin_token: str | None = None
    mqtt_url: str | None = None
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_connections: int = 1
    firmware_version: str = "1.0.0"
    fail_rate: float = 0.0
    crash_rate: float = 0.0  # share of devices that panic on crash_release
    crash_release: str | None = None  # default: the rollout's release
    poll_seconds: float = 60.0
    reboot_seconds: float = 0.2
    http_connections: int = 100
    seed: int = 1
    duration: float | None = None  # stop after this long
    until_version: str | None = None  # stop once every device runs it (or gave it up)
    # Start this rollout once the devices are up, and stop when it has ended or paused.
    rollout_version: str | None = None
    rollout_stages: list[int | str] = field(default_factory=lambda: [1, "10%", "100%"])
    error_threshold: str | None = None
    max_crash_rate: str | None = None
    progress: Callable[[str], None] | None = None  # gets a line now and then


@dataclass
class Report:
    devices: int
    elapsed: float
    stats: Stats
    running: Counter[str]
    rollout: dict[str, t.Any] | None = None
    rollout_seconds: float | None = None  # from the start of the rollout to its end

    def lines(self) -> list[str]:
        out = [f"devices: {self.devices}, ran {self.elapsed:.1f} s"]
        out.append(f"requests: {self.stats.requests()}")
        out += self.stats.lines()
        out.append(f"downloaded: {self.stats.bytes_downloaded / 1e6:.1f} MB")
        out += [f"{event}: {number}" for event, number in sorted(self.stats.events.items())]
        running = ", ".join(f"{version} on {n}" for version, n in self.running.most_common())
        out.append(f"running: {running}")
        if self.rollout is not None:
            rollout = self.rollout
            counts = ", ".join(f"{k} {v}" for k, v in rollout["counts"].items() if k != "total")
            took = f" after {self.rollout_seconds:.1f} s" if self.rollout_seconds else ""
            out.append(f"rollout {rollout['id']}: {rollout['state']}{took} ({counts})")
        return out


def failing(devices: t.Sequence[Identity], rate: float, seed: int) -> set[str]:
    """The MACs that report their old version after an update: a fixed share, by hash."""

    def rank(device: Identity) -> bytes:
        # Not "{seed}:{mac}": that is how rollout `seed` orders its stages, which would
        # make its first stage's devices the failing ones.
        return hashlib.sha256(f"fails-{seed}:{device.mac_address}".encode()).digest()

    wanted = round(rate * len(devices))
    return {device.mac_address for device in sorted(devices, key=rank)[:wanted]}


async def run_fleet(options: FleetOptions) -> Report:
    admin_headers = (
        {"Authorization": f"Bearer {options.admin_token}"} if options.admin_token else {}
    )
    timeout = httpx.Timeout(60.0, connect=10.0)
    client = HttpPool(options.server, options.http_connections)
    async with httpx.AsyncClient(
        base_url=options.server, headers=admin_headers, timeout=timeout
    ) as admin:
        identities = await _identities(admin, options)
        stats = Stats()
        bad = failing(identities, options.fail_rate, options.seed)
        crashing = failing(identities, options.crash_rate, options.seed + 1)
        crash_release = options.crash_release or options.rollout_version
        devices = [
            SimDevice(
                identity,
                client,
                stats,
                version=options.firmware_version,
                fails=identity.mac_address in bad,
                poll_seconds=options.poll_seconds,
                reboot_seconds=options.reboot_seconds,
                crashes_on=crash_release if identity.mac_address in crashing else None,
            )
            for identity in identities
        ]
        feed = None
        if options.mqtt_url:
            feed = DesiredFeed(
                options.mqtt_url,
                username=options.mqtt_username,
                password=options.mqtt_password,
                connections=options.mqtt_connections,
            )
            for device in devices:
                feed.add(device.identity.mac_address, device.on_desired)
            await feed.start()
        stop = asyncio.Event()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)  # Ctrl+C
        started = time.monotonic()
        tasks = [asyncio.create_task(device.run(stop)) for device in devices]
        try:
            rollout, took = await _until_done(admin, devices, options, started, stop)
        finally:
            stop.set()
            for device in devices:
                device.on_stop()
            await asyncio.gather(*tasks, return_exceptions=True)
            if feed is not None:
                feed.stop()
            await client.close()
        running = Counter(device.version for device in devices)
        return Report(len(devices), time.monotonic() - started, stats, running, rollout, took)


def simulate(options: FleetOptions) -> Report:
    return asyncio.run(run_fleet(options))


async def _identities(admin: httpx.AsyncClient, options: FleetOptions) -> list[Identity]:
    if options.devices_file is not None:
        return read_devices(options.devices_file)[: options.devices]
    if options.model is None:
        raise ValueError("give a model to provision devices of, or a devices file")
    identities = await provision(admin, options.model, options.devices, options.mac_prefix)
    if options.save_devices is not None:
        write_devices(options.save_devices, identities)
    return identities


async def _until_done(
    admin: httpx.AsyncClient,
    devices: list[SimDevice],
    options: FleetOptions,
    started: float,
    interrupted: asyncio.Event,
) -> tuple[dict[str, t.Any] | None, float | None]:
    """Wait for the end the options ask for; start the rollout when they name one."""
    await _wait(lambda: all(device.etag is not None for device in devices), 60.0)
    rollout: dict[str, t.Any] | None = None
    rollout_started = 0.0
    if options.rollout_version is not None:
        rollout_started = time.monotonic()
        rollout = await _start_rollout(admin, options)
        _say(options, f"rollout {rollout['id']} of {options.rollout_version} started")
    last_line = ""
    while True:
        await asyncio.sleep(0.25)
        if interrupted.is_set():
            return rollout, None
        if options.duration is not None and time.monotonic() - started >= options.duration:
            return rollout, None
        if options.until_version is not None and all(
            device.version == options.until_version or options.until_version in device.given_up
            for device in devices
        ):
            return rollout, None
        if rollout is None:
            continue
        answer = await admin.get(f"/api/rollouts/{rollout['id']}")
        if answer.status_code != 200:
            continue
        rollout = answer.json()
        line = _progress_line(rollout)
        if line != last_line:
            _say(options, line)
            last_line = line
        if rollout["state"] in ROLLOUT_ENDED or rollout["paused_reason"] not in (None, "manual"):
            return rollout, time.monotonic() - rollout_started


async def _start_rollout(admin: httpx.AsyncClient, options: FleetOptions) -> dict[str, t.Any]:
    body = {
        "version": options.rollout_version,
        "stages": options.rollout_stages,
        "error_threshold": options.error_threshold,
        "max_crash_rate": options.max_crash_rate,
    }
    started = await admin.post(f"/api/models/{options.model}/rollouts", json=body)
    if started.status_code != 201:
        raise RuntimeError(f"the rollout was refused: HTTP {started.status_code}: {started.text}")
    result: dict[str, t.Any] = started.json()
    return result


def _progress_line(rollout: dict[str, t.Any]) -> str:
    stages = " | ".join(
        f"{stage['number']}: {stage['counts']['updated']}/{stage['counts']['total']} updated"
        + (f", {stage['counts']['failed']} failed" if stage["counts"]["failed"] else "")
        + (f", {stage['counts']['crashed']} crashed" if stage["counts"].get("crashed") else "")
        for stage in rollout["stages"]
    )
    return f"rollout {rollout['id']} {rollout['state']}, stage {rollout['current_stage']}: {stages}"


def _say(options: FleetOptions, line: str) -> None:
    if options.progress is not None:
        options.progress(line)


async def _wait(predicate: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
