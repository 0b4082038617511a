"""Bulk change: one JSON Merge Patch over many configs (preview, apply, undo).

The configs are read and written through ConfigService, which keeps the rules
(schema validation, history, MQTT after commit) in one place. Lock order, as
everywhere: the configs by id, then their models.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from iotsupport.change_sets.rules import MAX_PATCH_VOLUME
from iotsupport.change_sets.rules import PREVIEW_DIFF_CHARS
from iotsupport.change_sets.rules import BulkTooLarge
from iotsupport.change_sets.rules import NothingSelected
from iotsupport.change_sets.rules import patched as _patched
from iotsupport.change_sets.tables import ChangeSet
from iotsupport.change_sets.tables import ChangeSetItem
from iotsupport.configs.content import parse_json_object
from iotsupport.configs.history import unified_diff
from iotsupport.configs.service import ConfigService
from iotsupport.configs.tables import DeviceConfig
from iotsupport.db.base import utcnow
from iotsupport.device_models.schema_errors import error_entry as _error
from iotsupport.device_models.service import schema_of
from iotsupport.device_query import where_clause
from iotsupport.errors import ChangedSince
from iotsupport.errors import Conflict
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
class Change:
    config: DeviceConfig
    before: str
    after: str

    @property
    def unchanged(self) -> bool:
        return self.after == self.before


@dataclass(frozen=True)
class Undo:
    change_set_id: int
    undone: list[int]
    skipped: list[dict[str, t.Any]]


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
        self, selection: Selection, patch: dict[str, t.Any], patch_bytes: int
    ) -> dict[str, t.Any]:
        """For each picked config: its ETag, the diff it would get, whether the result
        meets its model's schema (None without a model), and whether nothing changes.

        One config at a time: only its new text and diff are alive, and the diffs kept
        for the answer are at most PREVIEW_DIFF_CHARS together."""
        timeout = self.configs.validation_timeout
        rows = []
        diff_chars = 0
        for config in self._picked(selection, patch_bytes, lock=False):
            after = _patched(config, patch)
            unchanged = after == config.content
            errors: list[dict[str, str]] = []
            valid = None
            if config.device_model is not None:
                try:
                    value = parse_json_object(after)
                    errors = schema_of(config.device_model).errors(value, timeout)
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
                    "version": config.version,
                    "etag": config.etag,
                    "unchanged": unchanged,
                    "valid": valid,
                    "errors": errors,
                    "diff": diff,
                    "diff_omitted": omitted,
                }
            )
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
    ) -> tuple[int, list[int]]:
        """Apply to every picked config in this transaction, or to none: refused (412) when
        the picked configs or their ETags are not those of the preview, (400) when a result
        fails its schema. Unchanged configs get no version and no message."""
        configs = self._picked(selection, len(patch_text.encode()), lock=True)
        changes = [Change(config, config.content, _patched(config, patch)) for config in configs]
        self._refuse_stale(changes, expect)
        if not changes:  # a change set of nothing would only clutter the history
            raise NothingSelected(
                "the selection holds no config: nothing was changed and no change set was made",
                {"model": selection.model} if selection.model else {},
            )
        change_set = ChangeSet(patch=patch_text, created_at=utcnow(), created_by=self.configs.actor)
        self.session.add(change_set)
        self.session.flush()
        changed = [change for change in changes if not change.unchanged]
        befores = [(change.config.version, change.before) for change in changed]
        self.configs.save_many(
            [(change.config, change.after) for change in changed],
            "bulk_changed",
            change_set_id=change_set.id,
        )
        self.session.add_all(
            ChangeSetItem(
                change_set_id=change_set.id,
                config_id=change.config.id,
                mac_address=change.config.mac_address,
                before_version=version,
                after_version=change.config.version,
                before_content=before,
            )
            for change, (version, before) in zip(changed, befores, strict=True)
        )
        self.session.flush()
        return change_set.id, [change.config.id for change in changed]

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
        """Each config back to its content before the change set, as a new version.
        A config changed again since is refused (409, listed) unless `skip_changed`."""
        change_set = self.session.get(
            ChangeSet, change_set_id, with_for_update=True, populate_existing=True
        )
        if change_set is None:
            raise NotFound(f"change set {change_set_id} does not exist")
        if change_set.undone_at is not None:
            raise Conflict(
                f"change set {change_set_id} was undone already",
                {"undone_at": change_set.undone_at.isoformat(), "undone_by": change_set.undone_by},
            )
        _, items = self.get(change_set_id)
        configs = {
            config.id: config
            for config in self.configs.many(ids=[item.config_id for item in items], lock=True)
        }
        skipped = []
        undoable = []
        for item in items:
            config = configs.get(item.config_id)
            if config is None:
                skipped.append(
                    {"id": item.config_id, "mac_address": item.mac_address, "reason": "deleted"}
                )
            elif config.version != item.after_version:
                skipped.append(
                    {
                        "id": config.id,
                        "mac_address": config.mac_address,
                        "reason": f"changed since (version {config.version}, the change set "
                        f"left version {item.after_version})",
                    }
                )
            else:
                undoable.append((config, item.before_content))
        if skipped and not skip_changed:
            raise ChangedSince(
                f"{len(skipped)} config{'s' if len(skipped) != 1 else ''} changed since the "
                "change set; nothing was undone. Send skip_changed: true to undo the others.",
                {"configs": skipped[:LISTED], "count": len(skipped)},
            )
        self.configs.save_many(undoable, "bulk_undone", change_set_id=change_set_id)
        change_set.undone_at = utcnow()
        change_set.undone_by = self.configs.actor
        self.session.flush()
        return Undo(change_set_id, [config.id for config, _ in undoable], skipped)
