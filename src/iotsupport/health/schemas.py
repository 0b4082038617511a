from __future__ import annotations

import typing as t

from pydantic import AwareDatetime
from pydantic import BaseModel
from pydantic import Field

from iotsupport.api.schemas import Query
from iotsupport.configs.schemas import Timestamp

MAX_SAMPLES = 2000


class HealthQuery(Query):
    since: AwareDatetime | None = Field(
        default=None,
        description="From this time (ISO 8601 with its offset); default: the last 24 hours. "
        "Raw samples reach back 48 hours, hours 90 days.",
    )


class ReleaseHealthQuery(Query):
    days: int = Field(default=30, ge=1, le=90, description="Over the last this many days.")


class SampleSchema(BaseModel):
    reported_at: Timestamp
    source: t.Literal["http", "mqtt"]
    verified: bool = Field(description="A device credential (or the broker's ACL) proved it.")
    firmware_version: str | None
    reset_reason: str | None
    uptime_s: int | None
    free_heap: int | None
    min_free_heap: int | None
    wifi_rssi: int | None
    metrics: dict[str, float] | None


class MetricHourSchema(BaseModel):
    count: int
    avg: float
    min: float
    max: float


class HourSchema(BaseModel):
    hour: Timestamp
    samples: int
    firmware_version: str | None
    max_uptime_s: int | None
    min_free_heap: int | None
    avg_free_heap: float | None
    min_wifi_rssi: int | None
    avg_wifi_rssi: float | None
    metrics: dict[str, MetricHourSchema] | None


class ResetSchema(BaseModel):
    boot_at: Timestamp = Field(description="When it booted (the report's time less its uptime).")
    reset_reason: str
    unexpected: bool = Field(description="PANIC, INT_WDT, TASK_WDT, WDT or BROWNOUT.")
    firmware_version: str | None
    verified: bool


class DeviceHealthSchema(BaseModel):
    """A device's health since a time: raw samples (newest last), hours, and its resets."""

    config_id: int
    online: bool | None
    last_seen_at: Timestamp | None
    reset_reason: str | None = Field(description="Why its current boot began.")
    boot_at: Timestamp | None
    samples: list[SampleSchema] = Field(description=f"At most the newest {MAX_SAMPLES}.")
    hours: list[HourSchema] = Field(description="Hours older than the raw samples kept.")
    resets: list[ResetSchema]


class ReleaseStatsSchema(BaseModel):
    version: str
    devices: int
    crashed_devices: int
    crash_free_devices_pct: float | None = Field(
        description="Devices with no crash on this release (unexpected resets, and core "
        "dumps where known), in %; null: no device ran it."
    )
    unexpected_resets: int
    device_days: int
    unexpected_resets_per_device_day: float | None
    median_min_free_heap: float | None


class ReleaseHealthSchema(BaseModel):
    model: str
    since: Timestamp
    release: ReleaseStatsSchema
    previous: ReleaseStatsSchema | None = Field(
        description="The release created before it, over the same days; null: none."
    )
