"""Bulk change of configs (POST /api/configs/bulk) and change sets (admins only)."""

from __future__ import annotations

import json

from flask import Blueprint
from flask import Response

from iotsupport.api import json_response
from iotsupport.api.spec import operation
from iotsupport.auth.access import Role
from iotsupport.auth.access import requires
from iotsupport.change_sets.schemas import BulkAppliedSchema
from iotsupport.change_sets.schemas import BulkPreviewSchema
from iotsupport.change_sets.schemas import BulkSchema
from iotsupport.change_sets.schemas import ChangeSetListQuery
from iotsupport.change_sets.schemas import ChangeSetListSchema
from iotsupport.change_sets.schemas import ChangeSetSchema
from iotsupport.change_sets.schemas import UndoneSchema
from iotsupport.change_sets.schemas import UndoSchema
from iotsupport.change_sets.service import ChangeSetService
from iotsupport.change_sets.service import MoveTo
from iotsupport.change_sets.service import Selection
from iotsupport.configs.routes import config_service
from iotsupport.db import get_session
from iotsupport.device_models.service import ModelService
from iotsupport.errors import InvalidInput
from iotsupport.json_text import load_object

bp = Blueprint("change_sets", __name__)
TAG = "bulk change"


def change_set_service() -> ChangeSetService:
    return ChangeSetService(config_service())


@bp.post("/api/configs/bulk")
@requires(Role.ADMIN)
@operation(
    "Change many configs with one JSON Merge Patch: preview (dry_run), then apply with expect",
    tag=TAG,
    body=BulkSchema,
    responses={
        200: BulkPreviewSchema,
        201: BulkAppliedSchema,
        400: "Bad request; schema_violation: results that fail their schema (details.configs); "
        "invalid_query: select.where cannot be read (details.position)",
        404: "Unknown model or config ids",
        412: "Picked configs or ETags differ from expect (details.configs); nothing changed",
        413: "bulk_too_large: patch size × picked configs is over 64 MiB",
    },
)
def bulk_change(body: BulkSchema) -> Response:
    patch = load_object(body.patch, "patch")
    picked = body.select
    selection = Selection(picked.model, tuple(sorted(set(picked.ids or ()))), picked.where)
    service = change_set_service()
    move = None
    if "model" in body.model_fields_set:  # null moves them to no model
        move = MoveTo(None if body.model is None else ModelService(get_session()).get(body.model))
    if body.dry_run:
        preview = service.preview(selection, patch, len(body.patch.encode()), move)
        return json_response(BulkPreviewSchema.model_validate(preview))
    if body.expect is None:
        raise InvalidInput('to apply, send "expect": the ETag of each config from the preview')
    try:
        # As in the preview, or quoted as in an ETag header.
        expect = {int(key): etag.strip('"') for key, etag in body.expect.items()}
    except ValueError:
        raise InvalidInput("the keys of expect must be config ids") from None
    change_set, changed, skipped = service.apply(
        selection, patch, body.patch, expect, skip_invalid=body.skip_invalid, move=move
    )
    applied = BulkAppliedSchema.model_validate(
        {"change_set": change_set, "changed": changed, "skipped": skipped}
    )
    return json_response(applied, 201)


@bp.get("/api/change-sets")
@requires(Role.ADMIN)
@operation(
    "The change sets, newest first: who, when, what patch, how many configs",
    tag=TAG,
    query=ChangeSetListQuery,
    responses={200: ChangeSetListSchema},
)
def list_change_sets(query: ChangeSetListQuery) -> Response:
    rows = change_set_service().recent(query.limit, query.before)
    return json_response(
        ChangeSetListSchema.model_validate({"change_sets": rows, "count": len(rows)})
    )


@bp.get("/api/change-sets/<int:change_set_id>")
@requires(Role.ADMIN)
@operation(
    "One change set: its patch and the configs it changed",
    tag=TAG,
    responses={200: ChangeSetSchema, 404: "Unknown"},
)
def get_change_set(change_set_id: int) -> Response:
    change_set, items = change_set_service().get(change_set_id)
    body = {
        **{name: getattr(change_set, name) for name in ("id", "created_at", "created_by")},
        "sets_model": change_set.sets_model,
        "model": change_set.model_code,
        "undone_at": change_set.undone_at,
        "undone_by": change_set.undone_by,
        "patch": json.loads(change_set.patch),
        "configs": [vars(item) for item in items],
    }
    return json_response(ChangeSetSchema.model_validate(body))


@bp.post("/api/change-sets/<int:change_set_id>/undo")
@requires(Role.ADMIN)
@operation(
    "Undo a change set: each config back to its content before it, as a new version",
    tag=TAG,
    body=UndoSchema,
    responses={
        200: UndoneSchema,
        400: "schema_violation: an old content fails its model's schema now",
        404: "Unknown",
        409: "changed_since: configs changed again since (details.configs); or undone already",
    },
)
def undo_change_set(change_set_id: int, body: UndoSchema) -> Response:
    undo = change_set_service().undo(change_set_id, skip_changed=body.skip_changed)
    return json_response(
        UndoneSchema.model_validate(vars(undo) | {"change_set": undo.change_set_id})
    )
