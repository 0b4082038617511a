"""Devices for a simulation: made through the admin API, or read from a file.

Provisioning creates each device (a config of the model, from the model's template)
unless its MAC exists in the model already, and issues it a token (`POST
/api/configs/{id}/credential`: a rotation for a device that had one). MACs are the
prefix and the device's number, so a second run with the same prefix reuses the devices.
"""

from __future__ import annotations

import asyncio
import typing as t
from pathlib import Path

import httpx

from iotsupport.simulator.device import Identity


class ProvisioningFailed(RuntimeError):
    pass


def mac_for(prefix: str, index: int) -> str:
    """`prefix` (one to five bytes, e.g. 02:51) and `index` in the bytes left."""
    head = [part for part in prefix.lower().split(":") if part]
    left = 6 - len(head)
    if not 1 <= left <= 5 or index >= 256**left:
        raise ValueError(f"the MAC prefix {prefix!r} leaves no room for device {index}")
    tail = [f"{(index >> (8 * shift)) & 0xFF:02x}" for shift in reversed(range(left))]
    return ":".join(head + tail)


def read_devices(path: Path) -> list[Identity]:
    """Lines of `<mac> <token>` (blank lines and # comments skipped)."""
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ProvisioningFailed(f"{path}:{number}: expected '<mac> <token>'")
        found.append(Identity(parts[0].lower(), parts[1]))
    return found


def write_devices(path: Path, devices: t.Sequence[Identity]) -> None:
    lines = [f"{device.mac_address} {device.token}" for device in devices]
    path.write_text(
        "# mac token (device tokens: keep this file private)\n" + "\n".join(lines) + "\n"
    )
    path.chmod(0o600)


async def provision(
    admin: httpx.AsyncClient, model: str, count: int, prefix: str, concurrency: int = 16
) -> list[Identity]:
    """`count` devices of `model`, each with a fresh token."""
    found = await admin.get(f"/api/models/{model}")
    _check(found, f"model {model!r}")
    content = found.json().get("template") or {}
    listed = await admin.get("/api/configs", params={"model": model})
    _check(listed, "the device list")
    existing = {row["mac_address"]: row["id"] for row in listed.json()["configs"]}
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> Identity:
        mac = mac_for(prefix, index)
        async with gate:
            config_id = existing.get(mac)
            if config_id is None:
                body = {"mac_address": mac, "content": content, "model": model}
                created = await admin.post("/api/configs", json=body)
                _check(created, f"creating {mac} (in another model already? use another prefix)")
                config_id = created.json()["id"]
            issued = await admin.post(f"/api/configs/{config_id}/credential")
            _check(issued, f"a token for {mac}")
            return Identity(mac, issued.json()["token"])

    return list(await asyncio.gather(*(one(index) for index in range(count))))


def _check(response: httpx.Response, what: str) -> None:
    if response.is_success:
        return
    try:
        detail = response.json().get("error", response.text)
    except ValueError:
        detail = response.text[:200]
    raise ProvisioningFailed(f"{what}: HTTP {response.status_code}: {detail}")
