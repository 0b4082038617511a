"""Undo a change set: each config back to its content, and model, before it."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from iotsupport.change_sets.tables import ChangeSet
from iotsupport.db.base import utcnow
from iotsupport.device_models.tables import DeviceModel
from iotsupport.errors import ChangedSince
from iotsupport.errors import Conflict
from iotsupport.errors import NotFound

if t.TYPE_CHECKING:
    from iotsupport.change_sets.service import ChangeSetService

LISTED = 200


@dataclass(frozen=True)
class Undo:
    change_set_id: int
    undone: list[int]
    skipped: list[dict[str, t.Any]]


def undo(service: ChangeSetService, change_set_id: int, *, skip_changed: bool = False) -> Undo:
    """Each config back to its content before the change set, as a new version (and to its
    model before, when the change set moved it). A config changed again since is refused
    (409, listed) unless `skip_changed`."""
    change_set = service.session.get(
        ChangeSet, change_set_id, with_for_update=True, populate_existing=True
    )
    if change_set is None:
        raise NotFound(f"change set {change_set_id} does not exist")
    if change_set.undone_at is not None:
        raise Conflict(
            f"change set {change_set_id} was undone already",
            {"undone_at": change_set.undone_at.isoformat(), "undone_by": change_set.undone_by},
        )
    _, items = service.get(change_set_id)
    configs = {
        config.id: config
        for config in service.configs.many(ids=[item.config_id for item in items], lock=True)
    }
    skipped = []
    undoable = []
    moves: dict[int, int | None] = {}
    for item in items:
        config = configs.get(item.config_id)
        gone = (
            change_set.sets_model
            and item.before_model_id is not None
            and service.session.get(DeviceModel, item.before_model_id) is None
        )
        if config is not None and gone:
            skipped.append(
                {
                    "id": config.id,
                    "mac_address": config.mac_address,
                    "reason": "the model it had before was deleted",
                }
            )
        elif config is None:
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
            if change_set.sets_model:
                moves[config.id] = item.before_model_id
    if skipped and not skip_changed:
        raise ChangedSince(
            f"{len(skipped)} config{'s' if len(skipped) != 1 else ''} changed since the "
            "change set; nothing was undone. Send skip_changed: true to undo the others.",
            {"configs": skipped[:LISTED], "count": len(skipped)},
        )
    service.configs.save_many(
        undoable, "bulk_undone", change_set_id=change_set_id, models=moves or None
    )
    change_set.undone_at = utcnow()
    change_set.undone_by = service.configs.actor
    service.session.flush()
    return Undo(change_set_id, [config.id for config, _ in undoable], skipped)
