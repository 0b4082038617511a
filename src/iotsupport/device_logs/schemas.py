"""What the log routes take and answer."""

from __future__ import annotations

import typing as t
from datetime import UTC
from datetime import datetime

from pydantic import AfterValidator
from pydantic import BaseModel
from pydantic import Field

from iotsupport.api.schemas import Query
from iotsupport.api.schemas import QueryInt
from iotsupport.configs.schemas import Timestamp
from iotsupport.device_logs.parsing import LETTERS
from iotsupport.device_logs.parsing import level_number

MAX_LIMIT = 1000
MAX_DOWNLOAD = 10_000


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _level(value: str) -> str:
    if level_number(value) is None:
        raise ValueError("must be one of E, W, I, D, V or error, warning, info, debug, verbose")
    return value


When = t.Annotated[datetime, AfterValidator(_aware)]


class LogQuery(Query):
    since: When | None = Field(default=None, description="Lines received at or after (ISO 8601).")
    until: When | None = Field(default=None, description="Lines received before (ISO 8601).")
    level: t.Annotated[str, AfterValidator(_level)] | None = Field(
        default=None, description="E, W, I, D, V (or their names): this level and worse."
    )
    tag: str | None = Field(default=None, max_length=64, description="ESP-IDF tag, exactly.")
    q: str | None = Field(
        default=None, max_length=200, description="Text in the message (case-insensitive)."
    )
    limit: QueryInt | None = Field(
        default=None,
        ge=1,
        le=MAX_DOWNLOAD,
        description=f"Lines (default 100; at most {MAX_LIMIT}, {MAX_DOWNLOAD} for a download).",
    )
    cursor: QueryInt | None = Field(default=None, description="Page back: `cursor` of an answer.")
    after: QueryInt | None = Field(
        default=None, description="Follow: `latest` of an answer; only newer lines."
    )
    wait: float | None = Field(
        default=None,
        ge=0,
        le=300,
        description="With `after`: answer as soon as newer lines exist, or after this many "
        "seconds (at most LOG_WAIT_MAX_SECONDS).",
    )
    format: t.Literal["json", "text", "ndjson"] = Field(
        default="json", description="text or ndjson: a download of the selection."
    )


class FleetLogQuery(LogQuery):
    model: str | None = Field(default=None, max_length=64, description="Devices of this model.")
    firmware_version: str | None = Field(
        default=None, max_length=64, description="Lines logged by this firmware version."
    )


class LogDeviceSchema(BaseModel):
    id: int
    mac: str
    name: str | None


class LogLineSchema(BaseModel):
    id: int
    device: LogDeviceSchema
    received_at: Timestamp
    device_time: Timestamp | None
    uptime_ms: int | None
    level: t.Literal["E", "W", "I", "D", "V"]
    tag: str | None
    message: str
    firmware_version: str | None
    verified: bool = Field(description="A device credential (token or broker account) sent it.")


class LogDropsSchema(BaseModel):
    count: int = Field(description="Lines this device sent that were not kept.")
    last_dropped_at: Timestamp


class LogPageSchema(BaseModel):
    lines: list[LogLineSchema] = Field(description="Newest first.")
    cursor: int | None = Field(description="To page back (`cursor=`); null: no older lines.")
    latest: int = Field(description="To follow (`after=`).")
    dropped: LogDropsSchema | None = Field(
        default=None, description="A device's log only: lines it lost (rate or queue)."
    )


class LogAcceptedSchema(BaseModel):
    accepted: int = Field(description="Lines queued to be stored.")
    dropped: int = Field(description="Lines not kept (LOG_MAX_LINES_PER_MINUTE, a full queue).")


def line_schema(row: t.Any) -> LogLineSchema:
    return LogLineSchema(
        id=row.id,
        device=LogDeviceSchema(id=row.config_id, mac=row.mac_address, name=row.device_name),
        received_at=row.received_at,
        device_time=row.device_time,
        uptime_ms=row.uptime_ms,
        level=t.cast(t.Any, LETTERS.get(row.level, "I")),
        tag=row.tag,
        message=row.message,
        firmware_version=row.firmware_version,
        verified=row.verified,
    )


class LevelDevicesQuery(Query):
    level: t.Annotated[str, AfterValidator(_level)] = Field(
        default="E", description="This level and worse (default E)."
    )
    since: When | None = Field(default=None, description="Default: an hour ago.")


class LevelDeviceSchema(BaseModel):
    id: int
    lines: int = Field(description="Lines at that level or worse since then.")
    last_at: Timestamp


class LevelDevicesSchema(BaseModel):
    since: Timestamp
    devices: list[LevelDeviceSchema]
