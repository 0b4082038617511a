"""What a simulated device logs, as ESP-IDF firmware prints it: boot lines, Wi-Fi, a
periodic status line, a warning or an error now and then, colour codes included; sent at
`--log-rate` lines per minute over MQTT (`iotsupport/devices/<mac>/logs`) or HTTP
(`POST /api/device/logs`, a batch every few seconds, as a vprintf hook with a buffer
would).
"""

from __future__ import annotations

import asyncio
import random
import time
import typing as t
import uuid
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from iotsupport.simulator.device import Identity
from iotsupport.simulator.http import HttpError
from iotsupport.simulator.http import HttpPool
from iotsupport.simulator.stats import Stats

COLOURS = {"E": "\x1b[0;31m", "W": "\x1b[0;33m", "I": "\x1b[0;32m"}
RESET = "\x1b[0m"
BATCH_SECONDS = 5.0  # HTTP: lines gathered this long, then sent as one request

BOOT = [
    ("I", "cpu_start", "Pro cpu up."),
    ("I", "cpu_start", "Starting app cpu, entry point is 0x40081010"),
    ("I", "heap_init", "Initializing. RAM available for dynamic allocation:"),
    ("I", "spi_flash", "detected chip: generic"),
    ("I", "app_start", "Starting scheduler on CPU0"),
    ("I", "wifi", "wifi driver task: 3ffc1e4c, prio:23, stack:6656, core=0"),
    ("I", "wifi", "mode : sta (24:0a:c4:00:00:00)"),
    ("I", "wifi", "connected with HomeNet, aid = 3, channel 6, BW20, bssid = aa:bb:cc:dd:ee:01"),
    ("I", "esp_netif_handlers", "sta ip: 192.168.1.57, mask: 255.255.255.0, gw: 192.168.1.1"),
]
PERIODIC = [
    ("I", "app", "status: heap {heap} free, rssi -{rssi} dBm"),
    ("I", "mqtt_client", "MQTT_EVENT_DATA topic=iotsupport/devices/+/desired"),
    ("D", "sensor", "temperature {temp:.1f} C, humidity {hum} %"),
    ("I", "app", "config up to date (etag {etag})"),
]
WARNINGS = [
    ("W", "wifi", "beacon timeout, rssi -{rssi} dBm"),
    ("W", "app", "sensor read took {ms} ms"),
]
ERRORS = [
    ("E", "wifi", "Disconnected, reason: 201 (NO_AP_FOUND), retrying"),
    ("E", "esp-tls", "couldn't get hostname for :iot.example.com: getaddrinfo() returns 202"),
    ("E", "app", "sensor i2c read failed: ESP_ERR_TIMEOUT"),
]


def esp_line(level: str, uptime_ms: int, tag: str, message: str) -> str:
    colour = COLOURS.get(level, "")
    return f"{colour}{level} ({uptime_ms}) {tag}: {message}{RESET if colour else ''}"


class LogScript:
    """One device's lines: its boot, then a random walk of ordinary life."""

    def __init__(self, seed: str) -> None:
        self.random = random.Random(seed)
        self.booted = time.monotonic()

    def uptime(self) -> int:
        return int((time.monotonic() - self.booted) * 1000)

    def boot(self) -> list[str]:
        self.booted = time.monotonic()
        return [esp_line(level, 5 + 30 * n, tag, text) for n, (level, tag, text) in enumerate(BOOT)]

    def next(self) -> str:
        roll = self.random.random()
        pool = ERRORS if roll < 0.02 else WARNINGS if roll < 0.08 else PERIODIC
        level, tag, text = self.random.choice(pool)
        values = {
            "heap": self.random.randint(90_000, 180_000),
            "rssi": self.random.randint(45, 90),
            "temp": self.random.uniform(18, 26),
            "hum": self.random.randint(30, 60),
            "etag": uuid.UUID(int=self.random.getrandbits(128)).hex[:8],
            "ms": self.random.randint(150, 900),
        }
        return esp_line(level, self.uptime(), tag, text.format(**values))


class LogSender(t.Protocol):
    async def send(self, identity: Identity, lines: list[str]) -> None: ...

    def close(self) -> None: ...


class HttpLogSender:
    def __init__(self, client: HttpPool, stats: Stats) -> None:
        self.client = client
        self.stats = stats

    async def send(self, identity: Identity, lines: list[str]) -> None:
        headers = {"Authorization": f"Bearer {identity.token}", "Content-Type": "text/plain"}
        body = ("\n".join(lines) + "\n").encode()
        started = time.perf_counter()
        try:
            answer = await self.client.request("POST", "/api/device/logs", headers, body)
        except HttpError as exc:
            self.stats.failure("logs", exc, started)
            return
        self.stats.answer("logs", answer.status, started)
        if answer.status == 202:
            self.stats.count("log lines sent", len(lines))

    def close(self) -> None:
        pass


class MqttLogSender:
    """One connection for the simulator's devices (a real device has its own)."""

    def __init__(self, url: str, stats: Stats, username: str | None, password: str | None):
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        self.stats = stats
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"iotsupport-sim-logs-{uuid.uuid4().hex[:8]}"
        )
        if username:
            self.client.username_pw_set(username, password)
        if tls:
            self.client.tls_set()
        self.client.max_queued_messages_set(100_000)
        self.client.connect(parts.hostname or "127.0.0.1", parts.port or (8883 if tls else 1883))
        self.client.loop_start()

    async def send(self, identity: Identity, lines: list[str]) -> None:
        topic = f"iotsupport/devices/{identity.mac_address}/logs"
        info = self.client.publish(topic, "\n".join(lines).encode(), qos=1)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self.stats.count("log lines sent", len(lines))
        else:
            self.stats.count("log messages not sent (MQTT)")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def run_logs(
    identity: Identity, sender: LogSender, per_minute: float, stop: asyncio.Event, batch: float
) -> None:
    """Boot lines at once, then `per_minute` lines, sent every `batch` seconds."""
    script = LogScript(identity.mac_address)
    await sender.send(identity, script.boot())
    interval = 60.0 / per_minute
    pending: list[str] = []
    last_sent = time.monotonic()
    # Devices do not all start in step: a random first gap.
    next_line = time.monotonic() + script.random.uniform(0, interval)
    while not stop.is_set():
        wake = min(next_line, last_sent + batch) if pending else next_line
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, wake - time.monotonic()))
        except TimeoutError:
            pass
        now = time.monotonic()
        while next_line <= now:
            pending.append(script.next())
            next_line += interval
        if pending and (now - last_sent >= batch or stop.is_set()):
            await sender.send(identity, pending)
            pending, last_sent = [], now
