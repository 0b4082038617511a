from __future__ import annotations

import typing as t

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import WithJsonSchema
from pydantic import model_validator

from iotsupport.api.schemas import Query
from iotsupport.api.schemas import QueryInt
from iotsupport.api.schemas import RequestBody
from iotsupport.configs.schemas import OBJECT_OR_STRING
from iotsupport.configs.schemas import Timestamp
from iotsupport.configs.schemas import verbatim
from iotsupport.db.base import MAX_INT
from iotsupport.device_models.schemas import SchemaErrorSchema

ConfigId = t.Annotated[int, Field(ge=1, le=MAX_INT)]
PatchText = t.Annotated[
    str,
    verbatim("patch"),
    OBJECT_OR_STRING,
    Field(
        description='A JSON Merge Patch (RFC 7396), e.g. {"mqttBroker": "10.0.0.5", "debug": '
        "null}: members are set, null removes one, objects merge."
    ),
]


MAX_IDS = 20_000
_MODEL_CODE = {"type": "string", "maxLength": 64, "description": "A model's code."}
_IDS = {
    "type": "array",
    "items": {"type": "integer", "minimum": 1, "maximum": MAX_INT},
    "minItems": 1,
    "maxItems": MAX_IDS,
    "description": "The configs' ids.",
}


class SelectionSchema(RequestBody):
    """Exactly one of: every config of a model, a list of ids, or a device query."""

    # The document says what the validator below enforces: exactly one, not null.
    model_config = ConfigDict(
        strict=True,
        json_schema_extra={
            "oneOf": [{"required": ["model"]}, {"required": ["ids"]}, {"required": ["where"]}]
        },
    )

    model: t.Annotated[str | None, WithJsonSchema(_MODEL_CODE)] = Field(default=None, max_length=64)
    ids: t.Annotated[list[ConfigId] | None, WithJsonSchema(_IDS)] = Field(
        default=None, min_length=1, max_length=MAX_IDS
    )
    where: str | None = Field(
        default=None,
        description='The devices a query selects (README "Device queries"), e.g. '
        "`display.brightness > 80`; run again on apply (expect catches a difference).",
    )

    @model_validator(mode="after")
    def _one_of(self) -> SelectionSchema:
        if sum(value is not None for value in (self.model, self.ids, self.where)) != 1:
            raise ValueError('select exactly one of "model", "ids" or "where"')
        return self


class BulkSchema(RequestBody):
    select: SelectionSchema
    patch: PatchText = Field(default="{}")
    model: str | None = Field(
        default=None,
        max_length=64,
        description="Also move the configs to this model (its code), checked against its "
        "schema; null: to no model. Absent: each keeps its model.",
    )
    dry_run: bool = Field(default=True, description="true: preview only; false: apply.")
    expect: dict[str, str] | None = Field(
        default=None,
        description='Apply only: {"<id>": "<etag>"} for every picked config, from the preview.',
    )
    skip_invalid: bool = Field(
        default=False,
        description="Apply only: leave the configs whose result would fail their schema as "
        "they are (listed in skipped) instead of refusing the whole change.",
    )


class BulkChangeSchema(BaseModel):
    id: int
    mac_address: str
    device_name: str | None
    model: str | None
    model_after: str | None = Field(
        default=None, description="Its model after the change (the same unless it sets one)."
    )
    version: int
    etag: str = Field(description="Send it back in expect to apply.")
    unchanged: bool = Field(description="The patch changes nothing here (no new version).")
    valid: bool | None = Field(description="The result meets the model's schema; null: no model.")
    errors: list[SchemaErrorSchema]
    diff: str = Field(
        description="Unified diff of the pretty-printed content; empty if unchanged, or when "
        "left out (diff_omitted)."
    )
    diff_omitted: bool = Field(
        default=False,
        description="The diff is left out: the preview's diffs together reached their limit "
        "(PREVIEW_DIFF_CHARS). The other fields still hold.",
    )


class BulkPreviewSchema(BaseModel):
    """What the patch would do to each picked config; nothing is stored."""

    changes: list[BulkChangeSchema]
    count: int
    changed: int = Field(description="How many would get a new version.")
    invalid: int = Field(description="How many results would fail their schema.")
    diffs_omitted: int = Field(
        default=0, description="How many diffs are left out (see diff_omitted)."
    )


class SkippedInvalidSchema(BaseModel):
    id: int
    mac_address: str
    errors: list[SchemaErrorSchema]


class BulkAppliedSchema(BaseModel):
    """The change set that was saved."""

    change_set: int
    changed: list[int] = Field(description="Ids of the configs that got a new version.")
    skipped: list[SkippedInvalidSchema] = Field(
        default_factory=list,
        description="skip_invalid: the configs left as they were, with why.",
    )


class ChangeSetSummarySchema(BaseModel):
    """One bulk change in the list: who, when, what, how many."""

    id: int
    patch: dict[str, t.Any]
    sets_model: bool = Field(default=False, description="It also moved the configs to `model`.")
    model: str | None = Field(default=None, description="With sets_model: the model (None: none).")
    created_at: Timestamp
    created_by: str
    undone_at: Timestamp | None
    undone_by: str | None
    count: int = Field(description="How many configs it changed.")


class ChangeSetListSchema(BaseModel):
    change_sets: list[ChangeSetSummarySchema]
    count: int


class UndoSchema(RequestBody):
    skip_changed: bool = Field(
        default=False,
        description="Undo the configs not changed since, and list the others, instead of 409.",
    )


class SkippedSchema(BaseModel):
    id: int
    mac_address: str
    reason: str


class UndoneSchema(BaseModel):
    change_set: int
    undone: list[int]
    skipped: list[SkippedSchema]


class ChangeSetItemSchema(BaseModel):
    config_id: int
    mac_address: str
    before_version: int
    after_version: int


class ChangeSetSchema(BaseModel):
    """One bulk change: its patch, who made it, and the configs it changed."""

    id: int
    patch: dict[str, t.Any]
    sets_model: bool = False
    model: str | None = None
    created_at: Timestamp
    created_by: str
    undone_at: Timestamp | None
    undone_by: str | None
    configs: list[ChangeSetItemSchema]


class ChangeSetListQuery(Query):
    limit: t.Annotated[QueryInt, Field(ge=1, le=500)] = Field(
        default=100, description="At most this many, newest first."
    )
    before: t.Annotated[QueryInt, Field(ge=1, le=MAX_INT)] | None = Field(
        default=None, description="Only change sets with a smaller id (the next page)."
    )
