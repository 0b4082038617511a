"""/api/configs/...: history, diff, rollback, and restoring deleted configs (admins only)."""

from __future__ import annotations

from flask import Blueprint
from flask import Response

from iotsupport.api import json_response
from iotsupport.api.spec import operation
from iotsupport.auth.access import Role
from iotsupport.auth.access import requires
from iotsupport.configs.history_schemas import DeletedListSchema
from iotsupport.configs.history_schemas import DiffQuerySchema
from iotsupport.configs.history_schemas import DiffSchema
from iotsupport.configs.history_schemas import HistoryListSchema
from iotsupport.configs.history_schemas import HistoryVersionSchema
from iotsupport.configs.history_schemas import RollbackSchema
from iotsupport.configs.history_schemas import history_version_json
from iotsupport.configs.routes import config_response
from iotsupport.configs.routes import config_service
from iotsupport.configs.routes import history_service
from iotsupport.configs.schemas import ConfigResponseSchema

bp = Blueprint("history", __name__, url_prefix="/api/configs")

CONFIG_ID = "<int:config_id>"
TAG = "history"


@bp.get(f"/{CONFIG_ID}/history")
@requires(Role.ADMIN)
@operation(
    "A config's versions, newest first (also for a deleted config)",
    tag=TAG,
    responses={200: HistoryListSchema, 404: "No such config, nor any history of one"},
)
def list_history(config_id: int) -> Response:
    page = history_service().versions(config_id)
    body = HistoryListSchema.model_validate({**vars(page), "count": len(page.versions)})
    return json_response(body)


@bp.get(f"/{CONFIG_ID}/history/<int:version>")
@requires(Role.ADMIN)
@operation(
    "One version with its content",
    tag=TAG,
    responses={200: HistoryVersionSchema, 404: "Unknown or pruned version"},
)
def get_version(config_id: int, version: int) -> Response:
    return json_response(history_version_json(history_service().version(config_id, version)))


@bp.get(f"/{CONFIG_ID}/diff")
@requires(Role.ADMIN)
@operation(
    "Unified diff of two versions, pretty-printed first (formatting alone is no change)",
    tag=TAG,
    query=DiffQuerySchema,
    responses={200: DiffSchema, 400: "Missing or bad version", 404: "Unknown version"},
)
def diff_versions(config_id: int, query: DiffQuerySchema) -> Response:
    diff = history_service().diff(config_id, query.from_, query.to)
    return json_response(DiffSchema.model_validate(vars(diff)))


@bp.post(f"/{CONFIG_ID}/rollback")
@requires(Role.ADMIN)
@operation(
    "Save a new version with an earlier version's content (announced like an update)",
    tag=TAG,
    body=RollbackSchema,
    responses={200: ConfigResponseSchema, 404: "Unknown config or version"},
)
def rollback_config(config_id: int, body: RollbackSchema) -> Response:
    return config_response(config_service().rollback(config_id, body.version))


@bp.get("/deleted")
@requires(Role.ADMIN)
@operation(
    "Deleted configs that can be restored, latest delete first",
    tag=TAG,
    responses={200: DeletedListSchema},
)
def list_deleted() -> Response:
    rows = history_service().deleted()
    body = DeletedListSchema.model_validate({"configs": rows, "count": len(rows)})
    return json_response(body)


@bp.post("/deleted/<mac:mac>/restore")
@requires(Role.ADMIN)
@operation(
    "Restore the MAC's deleted config with its history, as a new version",
    tag=TAG,
    responses={
        201: ConfigResponseSchema,
        400: "Malformed MAC",
        404: "Nothing deleted under this MAC",
        409: "A config with this MAC exists again",
    },
)
def restore_config(mac: str) -> Response:
    return config_response(config_service().restore(mac), 201)
