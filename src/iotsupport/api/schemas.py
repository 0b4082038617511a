"""Bodies shared by every domain: the request and query bases, the error envelope, health."""

from __future__ import annotations

import re
import typing as t

from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field

_DIGITS = re.compile(r"[0-9]{1,10}")


class RequestBody(BaseModel):
    """Every JSON request body: strict types, so `true`, `"2"` or `2.0` is not an integer
    and `1` is not a string."""

    model_config = ConfigDict(strict=True)


class Query(BaseModel):
    """Every query string: unknown parameters are refused (a misspelt one is not ignored)."""

    model_config = ConfigDict(extra="forbid")


def _query_int(value: object) -> object:
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError("must be a whole number written with the digits 0-9")
    return int(value) if isinstance(value, str) else value


# An integer in a query string: ASCII digits only (no sign, space, point, exponent).
QueryInt = t.Annotated[int, BeforeValidator(_query_int)]


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
    device_cache: t.Literal["memory", "database", "stale"] = Field(
        default="database",
        description="Where this worker reads device fetches: memory; the database while "
        "its cache loads or catches up after losing its change feed (slower, never stale); "
        "stale: memory while the database is out of this worker's reach (such answers carry "
        "`X-Device-Cache: stale`).",
    )
    broker_accounts_pending: int | None = Field(
        default=None,
        description="Device broker account changes the broker has not confirmed yet "
        "(MQTT_DEVICE_ACCOUNTS=dynsec only).",
    )
    reason: str | None = None
