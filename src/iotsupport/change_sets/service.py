"""Bulk change: one JSON Merge Patch over many configs (preview, apply, undo).

The configs are read and written through ConfigService, which keeps the rules
(schema validation, history, MQTT after commit) in one place. Lock order, as
everywhere: the configs by id, then their models.
"""

from __future__ import annotations

import json
import typing as t
from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import Session

from iotsupport.change_sets.rules import MAX_PATCH_VOLUME
from iotsupport.change_sets.rules import PREVIEW_DIFF_CHARS
from iotsupport.change_sets.rules import BulkTooLarge
from iotsupport.change_sets.rules import NothingSelected
from iotsupport.change_sets.rules import patched as _patched
from iotsupport.change_sets.tables import ChangeSet
from iotsupport.change_sets.tables import ChangeSetItem
from iotsupport.change_sets.undo import Undo
from iotsupport.change_sets.undo import undo
from iotsupport.configs.content import parse_json_object
from iotsupport.configs.history import unified_diff
from iotsupport.configs.service import ConfigService
from iotsupport.configs.tables import DeviceConfig
from iotsupport.db.base import utcnow
from iotsupport.device_models.schema_errors import error_entry as _error
from iotsupport.device_models.service import schema_of
from iotsupport.device_models.tables import DeviceModel
from iotsupport.device_query import where_clause
from iotsupport.errors import InvalidInput
from iotsupport.errors import NotFound
from iotsupport.errors import PreconditionFailed

LISTED = 200


@dataclass(frozen=True)
class Selection:
    """Which configs: those of a model, these ids, or those a device query selects."""

    model: str | None = None
    ids: tuple[int, ...] = ()
    where: str | None = None


@dataclass(frozen=True)
class MoveTo:
    """The change also moves the configs to this model (None: to no model)."""

    model: DeviceModel | None

    @property
    def model_id(self) -> int | None:
        return self.model.id if self.model is not None else None


@dataclass(frozen=True)
class Change:
    config: DeviceConfig
    before: str
    after: str
    move: MoveTo | None = None

    @property
    def model(self) -> DeviceModel | None:
        """Its model after the change."""
        return self.move.model if self.move is not None else self.config.device_model

    @property
    def unchanged(self) -> bool:
        moved = self.move is not None and self.move.model_id != self.config.model_id
        return self.after == self.before and not moved


class ChangeSetService:
    def __init__(self, configs: ConfigService) -> None:
        self.configs = configs
        self.session: Session = configs.session

    def _picked(self, selection: Selection, patch_bytes: int, *, lock: bool) -> list[DeviceConfig]:
        condition = None
        if selection.where is not None:
            condition = where_clause(selection.where, self.session.get_bind().dialect.name)
        configs = self.configs.many(
            ids=selection.ids, model=selection.model, where=condition, lock=lock
        )
        if selection.model is None and condition is None:
            missing = sorted(set(selection.ids) - {config.id for config in configs})
            if missing:
                raise NotFound(
                    f"{len(missing)} of the picked configs do not exist", {"ids": missing[:LISTED]}
                )
        if patch_bytes * len(configs) > MAX_PATCH_VOLUME:
            raise BulkTooLarge(
                f"a patch of {patch_bytes} bytes over {len(configs)} configs is more than "
                f"{MAX_PATCH_VOLUME // (1024 * 1024)} MiB in all (patch size × configs): pick "
                "fewer configs or send a smaller patch",
                {
                    "patch_bytes": patch_bytes,
                    "configs": len(configs),
                    "max_bytes": MAX_PATCH_VOLUME,
                },
            )
        return configs

    def preview(
        self,
        selection: Selection,
        patch: dict[str, t.Any],
        patch_bytes: int,
        move: MoveTo | None = None,
    ) -> dict[str, t.Any]:
        """For each picked config: its ETag, the diff it would get, whether the result
        meets its model's schema (None without a model), and whether nothing changes.

        One config at a time: only its new text and diff are alive, and the diffs kept
        for the answer are at most PREVIEW_DIFF_CHARS together."""
        timeout = self.configs.validation_timeout
        rows = []
        diff_chars = 0
        for config in self._picked(selection, patch_bytes, lock=False):
            change = Change(config, config.content, _patched(config, patch), move)
            after, unchanged = change.after, change.unchanged
            errors: list[dict[str, str]] = []
            valid = None
            if change.model is not None:
                try:
                    value = parse_json_object(after)
                    errors = schema_of(change.model).errors(value, timeout)
                except InvalidInput as exc:  # saved before a rule (duplicate keys) held
                    errors = [_error(exc.details.get("pointer", ""), exc.message, exc.code)]
                valid = not errors
            diff, omitted = "", False
            if not unchanged:
                if diff_chars < PREVIEW_DIFF_CHARS:
                    diff = unified_diff(
                        config.content, after, f"version {config.version}", "after the change"
                    )
                if diff_chars + len(diff) > PREVIEW_DIFF_CHARS or diff_chars >= PREVIEW_DIFF_CHARS:
                    diff, omitted = "", True
            del after
            diff_chars += len(diff)
            rows.append(
                {
                    "id": config.id,
                    "mac_address": config.mac_address,
                    "device_name": config.device_name,
                    "model": config.model,
                    "model_after": change.model.code if change.model is not None else None,
                    "version": config.version,
                    "etag": config.etag,
                    "unchanged": unchanged,
                    "valid": valid,
                    "errors": errors,
                    "diff": diff,
                    "diff_omitted": omitted,
                }
            )
        # The configs a change would refuse come first: they are what needs a decision.
        rows.sort(key=lambda row: row["valid"] is not False)
        return {
            "changes": rows,
            "count": len(rows),
            "changed": sum(not row["unchanged"] for row in rows),
            "invalid": sum(row["valid"] is False for row in rows),
            "diffs_omitted": sum(row["diff_omitted"] for row in rows),
        }

    def apply(
        self,
        selection: Selection,
        patch: dict[str, t.Any],
        patch_text: str,
        expect: dict[int, str],
        *,
        skip_invalid: bool = False,
        move: MoveTo | None = None,
    ) -> tuple[int, list[int], list[dict[str, t.Any]]]:
        """Apply to every picked config in this transaction, or to none: refused (412) when
        the picked configs or their ETags are not those of the preview, (400) when a result
        fails its schema (with `skip_invalid`: those are left as they are, and returned).
        Unchanged configs get no version and no message."""
        configs = self._picked(selection, len(patch_text.encode()), lock=True)
        changes = [
            Change(config, config.content, _patched(config, patch), move) for config in configs
        ]
        self._refuse_stale(changes, expect)
        if not changes:  # a change set of nothing would only clutter the history
            raise NothingSelected(
                "the selection holds no config: nothing was changed and no change set was made",
                {"model": selection.model} if selection.model else {},
            )
        change_set = ChangeSet(
            patch=patch_text,
            created_at=utcnow(),
            created_by=self.configs.actor,
            sets_model=move is not None,
            model_code=move.model.code if move is not None and move.model is not None else None,
        )
        self.session.add(change_set)
        self.session.flush()
        changed = [change for change in changes if not change.unchanged]
        befores = [
            (change.config.version, change.before, change.config.model_id) for change in changed
        ]
        skipped = self.configs.save_many(
            [(change.config, change.after) for change in changed],
            "bulk_changed",
            change_set_id=change_set.id,
            skip_invalid=skip_invalid,
            models={change.config.id: move.model_id for change in changed} if move else None,
        )
        left_out = {entry["id"] for entry in skipped}
        kept = [
            (change, before)
            for change, before in zip(changed, befores, strict=True)
            if change.config.id not in left_out
        ]
        self.session.add_all(
            ChangeSetItem(
                change_set_id=change_set.id,
                config_id=change.config.id,
                mac_address=change.config.mac_address,
                before_version=version,
                after_version=change.config.version,
                before_content=before,
                before_model_id=model_id if move is not None else None,
            )
            for change, (version, before, model_id) in kept
        )
        self.session.flush()
        return change_set.id, [change.config.id for change, _ in kept], skipped

    @staticmethod
    def _refuse_stale(changes: list[Change], expect: dict[int, str]) -> None:
        stale = []
        picked = {change.config.id for change in changes}
        for change in changes:
            config = change.config
            expected = expect.get(config.id)
            if expected is None:
                reason = "not in the preview"
            elif expected != config.etag:
                reason = "changed since the preview"
            else:
                continue
            stale.append(
                {
                    "id": config.id,
                    "mac_address": config.mac_address,
                    "reason": reason,
                    "current_etag": config.etag,
                    "version": config.version,
                }
            )
        stale += [
            {"id": config_id, "reason": "no longer picked (deleted, or moved to another model)"}
            for config_id in sorted(set(expect) - picked)
        ]
        if stale:
            raise PreconditionFailed(
                f"{len(stale)} config{'s' if len(stale) != 1 else ''} changed since the "
                "preview; nothing was changed. Preview again.",
                {"configs": stale[:LISTED], "count": len(stale)},
            )

    def recent(self, limit: int, before: int | None = None) -> list[dict[str, t.Any]]:
        """The newest change sets (ids below `before`), each with how many configs it changed."""
        count = (
            select(func.count())
            .where(ChangeSetItem.change_set_id == ChangeSet.id)
            .correlate(ChangeSet)
            .scalar_subquery()
        )
        query = select(ChangeSet, count).order_by(ChangeSet.id.desc()).limit(limit)
        if before is not None:
            query = query.where(ChangeSet.id < before)
        return [
            {
                "id": change_set.id,
                "patch": json.loads(change_set.patch),
                "created_at": change_set.created_at,
                "created_by": change_set.created_by,
                "sets_model": change_set.sets_model,
                "model": change_set.model_code,
                "undone_at": change_set.undone_at,
                "undone_by": change_set.undone_by,
                "count": items,
            }
            for change_set, items in self.session.execute(query).all()
        ]

    def get(self, change_set_id: int) -> tuple[ChangeSet, list[ChangeSetItem]]:
        change_set = self.session.get(ChangeSet, change_set_id)
        if change_set is None:
            raise NotFound(f"change set {change_set_id} does not exist")
        items = self.session.scalars(
            select(ChangeSetItem)
            .where(ChangeSetItem.change_set_id == change_set_id)
            .order_by(ChangeSetItem.config_id)
        ).all()
        return change_set, list(items)

    def undo(self, change_set_id: int, *, skip_changed: bool = False) -> Undo:
        """Each config back to its content (and model) before the change set; undo.py."""
        return undo(self, change_set_id, skip_changed=skip_changed)
