"""Bodies of the import and export in the browser (POST /api/configs/import, GET .../export)."""

from __future__ import annotations

import typing as t

from pydantic import BaseModel
from pydantic import Field

from iotsupport.api.schemas import Query
from iotsupport.configs.files import Outcome

MODEL_FIELD = Field(
    default=None,
    max_length=64,
    description="Put every imported config in this model (its code); each must meet its "
    "schema, else it is skipped with the errors. Left out: no model, as import-dir.",
)


class ImportFields(Query):
    """The text fields of an import; unknown fields are refused."""

    dry_run: t.Literal["true", "false"] = Field(
        default="false", description="true: report what would happen, change nothing."
    )
    model: str | None = MODEL_FIELD


class ImportForm(ImportFields):
    """multipart/form-data: one or more `file` parts, and the fields (documentation; the
    view reads the parts itself)."""

    file: list[str] = Field(
        description="A config file named by its MAC (aa-bb-cc-dd-ee-ff.json, any spelling of "
        "the MAC), or a .zip of such files; one part per file.",
        json_schema_extra={"items": {"type": "string", "format": "binary"}},
    )


class ImportResultSchema(BaseModel):
    file: str = Field(description="The file's name; a zip member as zip name/member path.")
    outcome: Outcome
    reason: str | None = Field(description="Why it was skipped (the outcomes of import-dir).")
    mac_address: str | None = Field(description="The MAC its name gives, normalized.")


class ImportReportSchema(BaseModel):
    """What an import did (or, with dry_run, would do), file by file."""

    dry_run: bool
    results: list[ImportResultSchema]
    created: int
    updated: int
    unchanged: int
    skipped: int


class ExportQuery(Query):
    model: str | None = Field(
        default=None, max_length=64, description="Only the configs of this model (its code)."
    )
    where: str | None = Field(
        default=None,
        description='Only the devices this query selects (README "Device queries").',
    )
    no_model: bool = Field(
        default=False, description="true: only the configs without a model (not with model)."
    )
