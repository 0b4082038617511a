from __future__ import annotations

import typing as t

from pydantic import BaseModel


class HealthSchema(BaseModel):
    """Health of the server and what it depends on."""

    status: t.Literal["healthy", "unhealthy"]
    database: t.Literal["ok", "unreachable"]
    mqtt: t.Literal["connected", "disconnected", "disabled"]
    assets: t.Literal["ok", "missing", "not_writable", "disabled"] = "disabled"
    reason: str | None = None
