from __future__ import annotations

import json
import typing as t
from datetime import UTC
from datetime import datetime

from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field
from pydantic import PlainSerializer
from pydantic import StringConstraints
from pydantic import TypeAdapter
from pydantic import ValidationInfo
from pydantic import WithJsonSchema

from iotsupport.api.schemas import Query
from iotsupport.api.schemas import RequestBody
from iotsupport.configs.content import MAC_DESCRIPTION
from iotsupport.configs.content import MAC_PATTERN
from iotsupport.configs.listing import CURSOR_PATTERN
from iotsupport.configs.listing import MATCH_WIDTH
from iotsupport.configs.listing import SEARCH_MAX_LENGTH
from iotsupport.configs.listing import Listing
from iotsupport.configs.tables import DeviceConfig
from iotsupport.configs.tables import SyncState
from iotsupport.json_text import raw_member

CONTENT_DESCRIPTION = (
    "The config: a JSON object, or a string holding one. Stored exactly as sent, "
    "formatting and key order included."
)


def verbatim(key: str) -> BeforeValidator:
    """For a body member that arrives as an object or a string holding one: the view gets
    the text exactly as the client wrote it (the service checks it is an object)."""

    def as_text(value: object, info: ValidationInfo) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            raw_body = (info.context or {}).get("raw_body")
            source = raw_member(raw_body, key) if isinstance(raw_body, str) else None
            return source if source is not None else json.dumps(value)
        raise ValueError(f"{key} must be a JSON object or a string holding a JSON object")

    return BeforeValidator(as_text)


OBJECT_OR_STRING = WithJsonSchema({"anyOf": [{"type": "object"}, {"type": "string"}]})

# Checked by the service (400 with the rule); the pattern is for the OpenAPI document.
MacText = t.Annotated[
    str,
    StringConstraints(max_length=64),
    WithJsonSchema({"type": "string", "maxLength": 64, "pattern": MAC_PATTERN}),
]

# Arrives as an object or a string; the view always gets the verbatim text.
ContentText = t.Annotated[
    str, verbatim("content"), OBJECT_OR_STRING, Field(description=CONTENT_DESCRIPTION)
]
MODEL_DESCRIPTION = "The code of the config's device model, or null for none."


class ConfigCreateSchema(RequestBody):
    mac_address: MacText = Field(description=MAC_DESCRIPTION)
    content: ContentText
    model: str | None = Field(default=None, max_length=64, description=MODEL_DESCRIPTION)


class ConfigUpdateSchema(RequestBody):
    content: ContentText
    mac_address: MacText | None = Field(
        default=None, description="Optional; if sent, the config's own MAC."
    )
    model: str | None = Field(
        default=None,
        max_length=64,
        description=MODEL_DESCRIPTION + " Left out: the model stays as it is.",
    )


class ConfigListQuery(Query):
    model: str | None = Field(
        default=None, max_length=64, description="Only the configs of this model (its code)."
    )
    q: str | None = Field(
        default=None,
        min_length=1,
        max_length=SEARCH_MAX_LENGTH,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="Only the configs whose content contains this text, ignoring case; "
        "each row then has `match`, the first line that contains it.",
    )
    since: str | None = Field(
        default=None,
        pattern=CURSOR_PATTERN,
        description="A `cursor` from an earlier answer: only the configs changed since "
        "(content, model, device fetch, credential), and `deleted`, those deleted since. "
        "Rows changed shortly before the cursor may come again.",
    )


# UTC with an explicit "+00:00" offset, as Python's isoformat writes it.
def _utc_iso(value: datetime) -> str:
    # SQLite hands back naive UTC; PostgreSQL sessions run in UTC (see db.py).
    if value.tzinfo is None:
        return value.isoformat() + "+00:00"
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.isoformat()


Timestamp = t.Annotated[datetime, PlainSerializer(_utc_iso, return_type=str)]


class CredentialSummarySchema(BaseModel):
    """That the device has a credential, and its use; never the token."""

    model_config = ConfigDict(from_attributes=True)

    issued_at: Timestamp = Field(description="When the newest token was issued.")
    last_used_at: Timestamp | None = Field(description="The device's last authenticated request.")
    last_used_from: str | None = Field(description="The address it came from.")


class ConfigSummarySchema(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    mac_address: str
    device_name: str | None
    device_entity_id: str | None
    enable_ota: bool | None
    model: str | None = Field(description="The device model's code; null: no model.")
    schema_valid: bool | None = Field(
        description="Whether the content meets its model's current schema; null without a model."
    )
    version: int
    updated_at: Timestamp
    updated_by: str = Field(description="Who saved the current version.")
    last_fetched_at: Timestamp | None = Field(description="When the device last fetched it.")
    last_fetched_version: int | None = Field(description="The version it got then.")

    sync_state: SyncState = Field(
        description="in_sync: the device has the current version; pending: it has an older "
        "one; never: it never fetched. Device fetches are written every few seconds."
    )
    last_fetched_with_credential: bool | None = Field(
        description="Whether the last fetch carried a valid device credential (false: the "
        "device still fetches by MAC alone)."
    )
    credential: CredentialSummarySchema | None = Field(
        description="The device's credential (never its token), or null."
    )
    online: bool | None = Field(
        default=None,
        description="Online: as its broker status said (iotsupport/devices/<mac>/status), "
        "else whether its last contact is at most OFFLINE_AFTER_SECONDS old; null: nothing "
        "is known of it.",
    )
    last_seen_at: Timestamp | None = Field(
        default=None, description="Its last contact: config fetch, health report, status, log."
    )


class ConfigListRowSchema(ConfigSummarySchema):
    match: str | None = Field(
        default=None,
        description="With `q` only: the first line of the content that contains it, trimmed "
        f"(cut to about {MATCH_WIDTH} characters around the text, marked with …).",
    )


class ConfigListSchema(BaseModel):
    configs: list[ConfigListRowSchema]
    count: int = Field(description="How many rows `configs` has.")
    deleted: list[int] = Field(
        description="With `since`: the ids of configs deleted since that cursor; else empty."
    )
    cursor: str = Field(description="Pass it as `since` to get what changes after this answer.")


class ConfigMetaSchema(ConfigSummarySchema):
    created_at: Timestamp
    last_fetched_from: str | None = Field(
        description="The device's address at its last fetch (X-Forwarded-For is believed "
        "only from TRUSTED_PROXIES)."
    )
    last_fetched_user_agent: str | None
    last_fetched_firmware_version: str | None = Field(
        description="The X-Firmware-Version header of the last fetch, if the device sent one."
    )


class ConfigResponseSchema(ConfigMetaSchema):
    """A whole config."""

    content: dict[str, t.Any] = Field(description="The stored config as a JSON object.")


_SUMMARIES = TypeAdapter(list[ConfigSummarySchema])
_MATCHES = TypeAdapter(list[ConfigListRowSchema])


def config_list_json(listing: Listing, *, search: bool = False) -> t.Iterator[bytes]:
    """`ConfigListSchema` as streamed JSON, validated and serialized a slice at a time
    (rows with `match` when `search`).

    One call per slice is several times faster than one per row, and only one
    slice is alive at a time: the body of 10,000 configs is never held whole.
    """
    rows: TypeAdapter[t.Any] = _MATCHES if search else _SUMMARIES
    yield b'{"configs":['
    count = 0
    for summaries in listing.slices:
        if summaries:
            yield (b"," if count else b"") + rows.dump_json(rows.validate_python(summaries))[1:-1]
            count += len(summaries)
    tail = {"count": count, "deleted": listing.deleted, "cursor": listing.cursor}
    yield b"]," + json.dumps(tail, separators=(",", ":")).encode()[1:]


def config_json(config: DeviceConfig, extra: t.Mapping[str, t.Any] | None = None) -> str:
    """`ConfigResponseSchema` as JSON, with the stored content spliced in verbatim,
    so key order, formatting and numbers reach the client exactly as saved; `extra`:
    other features' fields (configs/list_columns.py)."""
    meta_model = ConfigMetaSchema.model_validate(config)
    if extra:
        meta_model = meta_model.model_copy(update=dict(extra))
    meta = meta_model.model_dump_json()
    return f'{meta[:-1]},"content":{config.content}}}'
