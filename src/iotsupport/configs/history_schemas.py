from __future__ import annotations

import typing as t

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

from iotsupport.api.schemas import Query
from iotsupport.api.schemas import QueryInt
from iotsupport.api.schemas import RequestBody
from iotsupport.configs.schemas import Timestamp
from iotsupport.configs.tables import ConfigHistory
from iotsupport.db.base import MAX_INT


class RollbackSchema(RequestBody):
    version: int = Field(ge=1, le=MAX_INT, description="The version whose content to bring back.")


class HistoryEntrySchema(BaseModel):
    """One saved version, without its content."""

    model_config = ConfigDict(from_attributes=True)

    version: int
    event: t.Literal["created", "updated", "rolled_back", "restored", "bulk_changed", "bulk_undone"]
    source_version: int | None = Field(
        description="For a rollback or a restore: the version whose content this one took."
    )
    device_name: str | None
    device_entity_id: str | None
    enable_ota: bool | None
    saved_at: Timestamp
    saved_by: str
    change_set_id: int | None = Field(
        default=None, description="The bulk change (or its undo) that saved this version."
    )


class HistoryListSchema(BaseModel):
    """A config's kept versions, newest first (deleted configs keep theirs)."""

    config_id: int
    mac_address: str
    deleted: bool
    versions: list[HistoryEntrySchema]
    count: int


class HistoryMetaSchema(HistoryEntrySchema):
    config_id: int
    mac_address: str


class HistoryVersionSchema(HistoryMetaSchema):
    """One saved version with its content."""

    content: dict[str, t.Any] = Field(description="The content as saved then.")


class DiffSchema(BaseModel):
    """A unified diff of two versions, both pretty-printed first."""

    config_id: int
    from_version: int
    to_version: int
    diff: str = Field(description="Empty when the two differ in formatting only.")


class DiffQuerySchema(Query):
    from_: QueryInt = Field(alias="from", ge=1, le=MAX_INT, description="The older version.")
    to: QueryInt | None = Field(
        default=None, ge=1, le=MAX_INT, description="The newer version; default: the current."
    )


class DeletedConfigSchema(BaseModel):
    config_id: int
    mac_address: str
    version: int = Field(description="The last version before the delete.")
    deleted_at: Timestamp
    deleted_by: str
    mac_in_use: bool = Field(description="A new config has this MAC now; restoring gives 409.")


class DeletedListSchema(BaseModel):
    configs: list[DeletedConfigSchema]
    count: int


def history_version_json(entry: ConfigHistory) -> str:
    """`HistoryVersionSchema` as JSON, with the content spliced in exactly as saved."""
    meta = HistoryMetaSchema.model_validate(entry).model_dump_json()
    return f'{meta[:-1]},"content":{entry.content}}}'
