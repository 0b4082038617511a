"""Device models: create, read, change (schema changes checked against every config), delete."""

from __future__ import annotations

import enum
import json
import typing as t
from dataclasses import dataclass

from sqlalchemy import case
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from iotsupport.configs.content import content_etag
from iotsupport.configs.tables import DeviceConfig
from iotsupport.db.base import ANONYMOUS_ACTOR
from iotsupport.db.base import utcnow
from iotsupport.device_models.tables import DeviceModel
from iotsupport.device_models.validation import Budget
from iotsupport.device_models.validation import CompiledSchema
from iotsupport.device_models.validation import Unreadable
from iotsupport.device_models.validation import check_schema
from iotsupport.device_models.validation import compiled
from iotsupport.errors import Conflict
from iotsupport.errors import DuplicateKey
from iotsupport.errors import InvalidInput
from iotsupport.errors import InvalidSchema
from iotsupport.errors import ModelInUse
from iotsupport.errors import NotFound
from iotsupport.errors import PreconditionFailed
from iotsupport.errors import SchemaChangeBreaksConfigs
from iotsupport.errors import SchemaViolation
from iotsupport.json_text import check_depth
from iotsupport.json_text import load_object
from iotsupport.releases.tables import Release
from iotsupport.rollouts.tables import Rollout

# How many configs a refused schema change lists (the count covers all of them).
LISTED_CONFIGS = 200

_CONFIGS = DeviceConfig.__table__
_MODELS = DeviceModel.__table__


class KeepChip(enum.Enum):
    KEEP = "keep"


KEEP_CHIP = KeepChip.KEEP  # a draft without a chip: the model keeps its own


class ChipInUse(Conflict):
    code = "chip_in_use"


@dataclass(frozen=True)
class ModelDraft:
    """What an admin sends for a model; schema and template as verbatim text."""

    name: str
    description: str
    schema: str
    template: str | None
    chip: str | None | KeepChip = KEEP_CHIP


def schema_of(model: DeviceModel) -> CompiledSchema:
    return compiled(model.schema)


def violation(message: str, errors: list[dict[str, str]]) -> SchemaViolation:
    return SchemaViolation(message, {"errors": errors})


def _model_etag(model: DeviceModel) -> str:
    fields = [model.code, model.name, model.description, model.schema, model.template]
    return content_etag(model.version, json.dumps(fields))


class ModelService:
    def __init__(
        self, session: Session, *, actor: str = ANONYMOUS_ACTOR, validation_timeout: float = 1.0
    ) -> None:
        self.session = session
        self.actor = actor
        self.validation_timeout = validation_timeout

    def summaries(self) -> list[dict[str, t.Any]]:
        """Every model with how many configs use it and how many of those fail its schema."""
        counts = (
            select(
                _CONFIGS.c.model_id,
                func.count().label("config_count"),
                func.count(case((_CONFIGS.c.schema_valid.is_(False), 1))).label("invalid_count"),
            )
            .where(_CONFIGS.c.model_id.is_not(None))
            .group_by(_CONFIGS.c.model_id)
            .subquery()
        )
        query = (
            select(
                _MODELS.c.code,
                _MODELS.c.name,
                _MODELS.c.description,
                _MODELS.c.version,
                _MODELS.c.updated_at,
                _MODELS.c.updated_by,
                _MODELS.c.chip,
                func.coalesce(counts.c.config_count, 0).label("config_count"),
                func.coalesce(counts.c.invalid_count, 0).label("invalid_count"),
            )
            .select_from(_MODELS.outerjoin(counts, counts.c.model_id == _MODELS.c.id))
            .order_by(_MODELS.c.code)
        )
        return [row._asdict() for row in self.session.execute(query)]

    def counts(self, model: DeviceModel) -> tuple[int, int]:
        """(configs of the model, of which do not meet its schema)."""
        query = select(
            func.count(), func.count(case((DeviceConfig.schema_valid.is_(False), 1)))
        ).where(DeviceConfig.model_id == model.id)
        total, invalid = self.session.execute(query).one()
        return total, invalid

    def find(self, code: str) -> DeviceModel | None:
        return self.session.scalars(
            select(DeviceModel).where(DeviceModel.code == code)
        ).one_or_none()

    def get(self, code: str) -> DeviceModel:
        model = self.find(code)
        if model is None:
            raise NotFound(f"there is no model {code[:64]!r}", {"model": code[:64]})
        return model

    def lock(self, model_id: int, *, share: bool) -> DeviceModel:
        """The model row, locked (share: saving a config of it; else: changing it).
        Lock order everywhere: configs by id first, then models by id."""
        query = (
            select(DeviceModel)
            .where(DeviceModel.id == model_id)
            .with_for_update(read=share)
            .execution_options(populate_existing=True)
        )
        model = self.session.scalars(query).one_or_none()
        if model is None:  # deleted by a request that committed meanwhile
            raise NotFound("the model was deleted meanwhile")
        return model

    def create(self, code: str, draft: ModelDraft) -> DeviceModel:
        self._check(draft)
        if self.find(code) is not None:
            raise Conflict(f"a model {code!r} already exists", {"model": code})
        now = utcnow()
        model = DeviceModel(code=code, version=1, created_at=now, updated_at=now)
        self._assign(model, draft)
        if not isinstance(draft.chip, KeepChip):
            model.chip = draft.chip
        self.session.add(model)
        try:
            self.session.flush()
        except IntegrityError:  # created by another request just now
            raise Conflict(f"a model {code!r} already exists", {"model": code}) from None
        return model

    def update(
        self,
        code: str,
        draft: ModelDraft,
        *,
        expected_etags: t.Container[str] | None = None,
        confirm: bool = False,
        reader: Session | None = None,
    ) -> DeviceModel:
        """Replace the model. A new schema that some of its configs fail is refused with
        409 and their list, unless `confirm`; then those configs are marked invalid.

        The configs are checked against the new schema within one deadline for them all
        (the validation timeout), and first through `reader` (a session outside this
        transaction): no write lock is held while the schema runs. Inside the write, only
        configs saved since are checked again, with what is left of the deadline."""
        compiled_schema = self._check(draft)
        budget = Budget(self.validation_timeout)
        verdicts = self._verdicts(reader, code, draft.schema, compiled_schema, budget)
        model_id = self.get(code).id
        # Configs first, then the model: the order config saves lock them in.
        configs = self.session.execute(
            select(_CONFIGS.c.id, _CONFIGS.c.mac_address, _CONFIGS.c.version, _CONFIGS.c.content)
            .where(_CONFIGS.c.model_id == model_id)
            .order_by(_CONFIGS.c.id)
            .with_for_update()
        ).all()
        model = self._lock_expected(model_id, expected_etags)
        if model.schema != draft.schema:
            failing = []
            for row in configs:
                errors = verdicts.get((row.id, row.version))
                if errors is None:  # saved since the check (or no reader)
                    errors = self._errors(compiled_schema, row.content, budget)
                if errors:
                    failing.append({"id": row.id, "mac_address": row.mac_address, "errors": errors})
            if failing and not confirm:
                raise SchemaChangeBreaksConfigs(
                    f"{len(failing)} of the model's {len(configs)} configs would not meet the "
                    "new schema; send confirm: true to save it anyway",
                    {"configs": failing[:LISTED_CONFIGS], "count": len(failing)},
                )
            self._mark_validity(model.id, [entry["id"] for entry in failing])
        self._assign(model, draft)
        if not isinstance(draft.chip, KeepChip) and draft.chip != model.chip:
            self._change_chip(model, draft.chip)
        model.version += 1
        model.etag = _model_etag(model)
        model.updated_at = utcnow()
        self.session.flush()
        return model

    def _errors(self, schema: CompiledSchema, content: str, budget: Budget) -> list[dict[str, str]]:
        return schema.errors(json.loads(content), self.validation_timeout, budget)

    def _verdicts(
        self,
        reader: Session | None,
        code: str,
        new_schema: str,
        schema: CompiledSchema,
        budget: Budget,
    ) -> dict[tuple[int, int], list[dict[str, str]]]:
        """(config id, version) -> its errors under the new schema, read through `reader`."""
        if reader is None:
            return {}
        model = reader.execute(
            select(_MODELS.c.id, _MODELS.c.schema).where(_MODELS.c.code == code)
        ).one_or_none()
        if model is None or model.schema == new_schema:
            return {}
        rows = reader.execute(
            select(_CONFIGS.c.id, _CONFIGS.c.version, _CONFIGS.c.content)
            .where(_CONFIGS.c.model_id == model.id)
            .order_by(_CONFIGS.c.id)
        )
        return {(row.id, row.version): self._errors(schema, row.content, budget) for row in rows}

    def delete(self, code: str, *, expected_etags: t.Container[str] | None = None) -> None:
        model = self._lock_expected(self.get(code).id, expected_etags)
        in_use = self.counts(model)[0]
        if in_use:
            raise ModelInUse(
                f"{in_use} config{'s' if in_use != 1 else ''} use model {code!r}; "
                "move them to another model (or none) first",
                {"model": code, "config_count": in_use},
            )
        releases = self._release_count(model.id)
        if releases:
            raise ModelInUse(
                f"model {code!r} has {releases} release{'s' if releases != 1 else ''}; "
                "delete them first",
                {"model": code, "release_count": releases},
            )
        # Finished rollouts of releases deleted since: their record goes with the model.
        self.session.execute(delete(Rollout).where(Rollout.model_id == model.id))
        self.session.delete(model)
        self.session.flush()

    def validate_draft(self, code: str, content: str) -> list[dict[str, str]]:
        """The schema's verdict on `content`, saving nothing."""
        model = self.get(code)
        return schema_of(model).errors(load_object(content, "content"), self.validation_timeout)

    def _lock_expected(self, model_id: int, expected_etags: t.Container[str] | None) -> DeviceModel:
        """The model, locked for a change; 412 unless its ETag is one expected (If-Match)."""
        model = self.lock(model_id, share=False)
        if expected_etags is not None and model.etag not in expected_etags:
            raise PreconditionFailed(
                "the model changed since you read it; fetch it again",
                {"current_etag": model.etag, "version": model.version},
            )
        return model

    def _check(self, draft: ModelDraft) -> CompiledSchema:
        check_depth(draft.schema, "the schema")
        try:
            load_object(draft.schema, "schema")
        except DuplicateKey:
            raise
        except InvalidInput:
            pass  # check_schema tells what is wrong with it, as invalid_schema
        try:
            compiled_schema = check_schema(draft.schema)
        except Unreadable as exc:
            raise InvalidSchema(exc.message, {"errors": exc.errors}) from None
        if draft.template is not None:
            template = load_object(draft.template, "template")
            errors = compiled_schema.errors(template, self.validation_timeout)
            if errors:
                raise violation("the template does not meet the schema", errors)
        if not draft.name.strip():
            raise InvalidInput("name must not be empty")
        return compiled_schema

    def _assign(self, model: DeviceModel, draft: ModelDraft) -> None:
        model.name = draft.name
        model.description = draft.description
        model.schema = draft.schema
        model.template = draft.template
        model.updated_by = self.actor
        model.etag = _model_etag(model)

    def _release_count(self, model_id: int) -> int:
        query = select(func.count()).where(Release.model_id == model_id)
        return self.session.execute(query).scalar_one()

    def _change_chip(self, model: DeviceModel, chip: str | None) -> None:
        chips = self.session.scalars(
            select(Release.chip).where(Release.model_id == model.id).distinct()
        ).all()
        if chips:
            raise ChipInUse(
                f"the model has releases for {', '.join(sorted(chips))}; its chip cannot change",
                {"chip": model.chip, "release_chips": sorted(chips)},
            )
        model.chip = chip

    def _mark_validity(self, model_id: int, invalid_ids: list[int]) -> None:
        self.session.execute(
            update(DeviceConfig).where(DeviceConfig.model_id == model_id).values(schema_valid=True)
        )
        for start in range(0, len(invalid_ids), 1000):
            chunk = invalid_ids[start : start + 1000]
            self.session.execute(
                update(DeviceConfig).where(DeviceConfig.id.in_(chunk)).values(schema_valid=False)
            )
