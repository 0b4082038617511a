"""Bodies shared by every domain: the error envelope, health."""

from __future__ import annotations

import typing as t

from pydantic import BaseModel
from pydantic import Field


class ErrorResponse(BaseModel):
    """The envelope of every refusal."""

    error: str = Field(description="What went wrong, for a person.")
    code: str = Field(description="Stable machine-readable code.")
    details: dict[str, t.Any] = Field(default_factory=dict)


class HealthSchema(BaseModel):
    """Health of the server and what it depends on."""

    status: t.Literal["healthy", "unhealthy"]
    database: t.Literal["ok", "unreachable"]
    mqtt: t.Literal["connected", "disconnected", "disabled"]
    assets: t.Literal["ok", "missing", "not_writable", "disabled"] = "disabled"
    broker_accounts_pending: int | None = Field(
        default=None,
        description="Device broker account changes the broker has not confirmed yet "
        "(MQTT_DEVICE_ACCOUNTS=dynsec only).",
    )
    reason: str | None = None
