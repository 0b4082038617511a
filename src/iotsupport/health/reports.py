"""A health report, checked strictly: from the config fetch's headers or an MQTT message.

What a device sends is refused whole when any field is wrong (a name that is not one of
ESP-IDF's reset reasons, a number out of range, an unknown key, a metric that is not a
finite number): half a report would be read as a healthy device.
"""

from __future__ import annotations

import json
import math
import re
import time
import typing as t
from dataclasses import dataclass

# esp_reset_reason_t, without the ESP_RST_ prefix.
RESET_REASONS = frozenset(
    {
        "UNKNOWN",
        "POWERON",
        "EXT",
        "SW",
        "PANIC",
        "INT_WDT",
        "TASK_WDT",
        "WDT",
        "DEEPSLEEP",
        "BROWNOUT",
        "SDIO",
        "USB",
        "JTAG",
        "EFUSE",
        "PWR_GLITCH",
        "CPU_LOCKUP",
    }
)
# What a healthy device does not do: these count as crashes (release health, rollouts).
UNEXPECTED_RESETS = frozenset({"PANIC", "INT_WDT", "TASK_WDT", "WDT", "BROWNOUT"})

MAX_METRICS = 32
METRIC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,31}")
MAX_UPTIME_S = 10 * 366 * 86400
MAX_HEAP = 2**40
MAX_METRIC = 1e15
# Header -> field (README "Device health"): the config fetch may carry any of them.
HEADERS = {
    "HTTP_X_RESET_REASON": "reset_reason",
    "HTTP_X_UPTIME": "uptime_s",
    "HTTP_X_FREE_HEAP": "free_heap",
    "HTTP_X_MIN_FREE_HEAP": "min_free_heap",
    "HTTP_X_WIFI_RSSI": "wifi_rssi",
    "HTTP_X_METRICS": "metrics",
}
_INTEGERS = {
    "uptime_s": (0, MAX_UPTIME_S),
    "free_heap": (0, MAX_HEAP),
    "min_free_heap": (0, MAX_HEAP),
    "wifi_rssi": (-127, 0),
}
FIELDS = frozenset({"reset_reason", "metrics", *_INTEGERS})
MAX_MQTT_BYTES = 4096
_INTEGER = re.compile(r"-?[0-9]{1,16}")


class Refused(ValueError):
    """A report that is not one: `field` says which part (a metric label, never the value)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


@dataclass(slots=True)
class HealthReport:
    reported_at: float  # epoch seconds (when the server got it)
    source: str  # http, mqtt
    verified: bool
    firmware_version: str | None = None  # the fetch's X-Firmware-Version, if any
    reset_reason: str | None = None
    uptime_s: int | None = None
    free_heap: int | None = None
    min_free_heap: int | None = None
    wifi_rssi: int | None = None
    metrics: dict[str, float] | None = None

    @property
    def unexpected_reset(self) -> bool:
        return self.reset_reason in UNEXPECTED_RESETS


def _integer(field: str, value: object) -> int:
    if isinstance(value, str):
        if not _INTEGER.fullmatch(value.strip()):
            raise Refused(field)
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise Refused(field)
    low, high = _INTEGERS[field]
    if not low <= value <= high:
        raise Refused(field)
    return value


def _metrics(value: object) -> dict[str, float]:
    if not isinstance(value, dict) or len(value) > MAX_METRICS:
        raise Refused("metrics")
    checked: dict[str, float] = {}
    for name, number in value.items():
        if not isinstance(name, str) or not METRIC_NAME.fullmatch(name):
            raise Refused("metrics")
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise Refused("metrics")
        if not math.isfinite(number) or abs(number) > MAX_METRIC:
            raise Refused("metrics")
        checked[name] = number
    return checked


def _metrics_text(text: str) -> dict[str, float]:
    """X-Metrics: a JSON object, or `name=number` pairs separated by commas."""
    if len(text) > 2048:
        raise Refused("metrics")
    if text.lstrip().startswith("{"):
        try:
            return _metrics(json.loads(text))
        except ValueError:
            raise Refused("metrics") from None
    pairs: dict[str, float] = {}
    for part in text.split(","):
        name, sep, number = part.strip().partition("=")
        if not sep:
            raise Refused("metrics")
        try:
            pairs[name.strip()] = float(number) if "." in number or "e" in number else int(number)
        except ValueError:
            raise Refused("metrics") from None
    return _metrics(pairs)


def checked(report: HealthReport, values: t.Mapping[str, object]) -> HealthReport:
    """The report with `values` (field -> as sent) checked and set; Refused otherwise."""
    for field, value in values.items():
        if field not in FIELDS:
            raise Refused("unknown")
        if value is None:
            continue
        if field == "reset_reason":
            if not isinstance(value, str) or value not in RESET_REASONS:
                raise Refused(field)
            report.reset_reason = value
        elif field == "metrics":
            report.metrics = _metrics_text(value) if isinstance(value, str) else _metrics(value)
        else:
            setattr(report, field, _integer(field, value))
    return report


def from_headers(environ: t.Mapping[str, t.Any], *, verified: bool) -> HealthReport | None:
    """The fetch's health headers as a report; None without any. Refused when one is bad."""
    values = {field: environ[key] for key, field in HEADERS.items() if key in environ}
    if not values:
        return None
    firmware = environ.get("HTTP_X_FIRMWARE_VERSION")
    report = HealthReport(time.time(), "http", verified, firmware[:64] if firmware else None)
    return checked(report, values)


def from_message(payload: bytes, *, verified: bool) -> HealthReport:
    """An MQTT health message (a JSON object); Refused when it is not a good one."""
    if len(payload) > MAX_MQTT_BYTES:
        raise Refused("size")
    try:
        values = json.loads(payload)
    except ValueError:
        raise Refused("json") from None
    if not isinstance(values, dict) or not values:
        raise Refused("json")
    return checked(HealthReport(time.time(), "mqtt", verified), values)
