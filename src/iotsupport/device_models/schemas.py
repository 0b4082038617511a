from __future__ import annotations

import typing as t

from pydantic import AfterValidator
from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
from pydantic import field_validator

from iotsupport.api.schemas import RequestBody
from iotsupport.configs.schemas import OBJECT_OR_STRING
from iotsupport.configs.schemas import ContentText
from iotsupport.configs.schemas import Timestamp
from iotsupport.configs.schemas import verbatim
from iotsupport.device_models.tables import DeviceModel
from iotsupport.names import checked_name
from iotsupport.releases.image_format import CHIPS

CODE_PATTERN = r"^[a-z0-9_]+$"
CHIP_NAMES = sorted(CHIPS.values())
CHIP_DESCRIPTION = (
    "The ESP32 chip of its firmware, as esptool names it (e.g. esp32s3); null: not set yet "
    "(the model's first release sets it). Releases for another chip are refused."
)

SchemaText = t.Annotated[
    str,
    verbatim("schema"),
    OBJECT_OR_STRING,
    Field(
        description="A JSON Schema (Draft 2020-12 unless $schema names 2019-09 or 7), as an "
        "object or a string holding one; kept as sent. At most 256 KB."
    ),
]
TemplateText = t.Annotated[
    str,
    verbatim("template"),
    OBJECT_OR_STRING,
    Field(description="The content a new device of this model starts from (meets the schema)."),
]


# The rule for every name a person sees (names.py); no space at either end.
NameText = t.Annotated[
    str,
    AfterValidator(checked_name),
    Field(min_length=1, max_length=255, pattern=r"^\S(.*\S)?$"),
]


class ModelFields(RequestBody):
    name: NameText
    description: str = Field(default="", max_length=10_000)
    json_schema: SchemaText = Field(alias="schema")
    template: TemplateText | None = None
    chip: str | None = Field(
        default=None,
        description=CHIP_DESCRIPTION + " Left out of a PUT: unchanged.",
        json_schema_extra={"enum": [*CHIP_NAMES, None]},
    )

    @field_validator("chip")
    @classmethod
    def _known_chip(cls, chip: str | None) -> str | None:
        if chip is not None and chip not in CHIP_NAMES:
            raise ValueError(f"unknown chip; one of {', '.join(CHIP_NAMES)}")
        return chip


class ModelCreateSchema(ModelFields):
    code: str = Field(
        min_length=1,
        max_length=64,
        pattern=CODE_PATTERN,
        description="Short name: lowercase letters, digits and _; never changes.",
    )


class ModelUpdateSchema(ModelFields):
    code: str | None = Field(default=None, max_length=64, description="If sent, the model's own.")
    confirm: bool = Field(
        default=False,
        description="Save a new schema even though some of the model's configs do not meet "
        "it (they are then marked schema_valid: false). Without it, that is a 409 listing them.",
    )


class ModelSummarySchema(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    name: str
    description: str
    version: int
    updated_at: Timestamp
    updated_by: str
    chip: str | None = Field(description=CHIP_DESCRIPTION)
    config_count: int = Field(description="Configs of this model.")
    invalid_count: int = Field(description="Of those, how many do not meet its current schema.")


class ModelListSchema(BaseModel):
    models: list[ModelSummarySchema]
    count: int


class ModelMetaSchema(ModelSummarySchema):
    created_at: Timestamp


class ModelResponseSchema(ModelMetaSchema):
    """A whole model."""

    json_schema: dict[str, t.Any] = Field(alias="schema", description="Its JSON Schema, as saved.")
    template: dict[str, t.Any] | None


class DraftSchema(RequestBody):
    content: ContentText


class SchemaErrorSchema(BaseModel):
    path: str = Field(description="JSON Pointer of the offending value ('' is the whole).")
    message: str
    keyword: str = Field(description="The schema keyword that failed, e.g. maximum.")


class DraftResultSchema(BaseModel):
    """The schema's verdict on a draft; nothing is stored."""

    valid: bool
    errors: list[SchemaErrorSchema] = Field(description="Every violation, at most 50.")


def model_json(model: DeviceModel, config_count: int, invalid_count: int) -> str:
    """`ModelResponseSchema` as JSON, schema and template spliced in exactly as saved."""
    meta = ModelMetaSchema.model_validate(
        {
            **{
                name: getattr(model, name)
                for name in ModelMetaSchema.model_fields
                if hasattr(model, name)
            },
            "config_count": config_count,
            "invalid_count": invalid_count,
        }
    ).model_dump_json()
    template = model.template if model.template is not None else "null"
    return f'{meta[:-1]},"schema":{model.schema},"template":{template}}}'
