"""/api/models: device models (admins only)."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import request

from iotsupport.api import json_response
from iotsupport.api.spec import operation
from iotsupport.auth.access import Role
from iotsupport.auth.access import current_actor
from iotsupport.auth.access import requires
from iotsupport.db import get_session
from iotsupport.device_models.schemas import DraftResultSchema
from iotsupport.device_models.schemas import DraftSchema
from iotsupport.device_models.schemas import ModelCreateSchema
from iotsupport.device_models.schemas import ModelFields
from iotsupport.device_models.schemas import ModelListSchema
from iotsupport.device_models.schemas import ModelResponseSchema
from iotsupport.device_models.schemas import ModelUpdateSchema
from iotsupport.device_models.schemas import model_json
from iotsupport.device_models.service import KEEP_CHIP
from iotsupport.device_models.service import ModelDraft
from iotsupport.device_models.service import ModelService
from iotsupport.device_models.tables import DeviceModel
from iotsupport.errors import InvalidInput
from iotsupport.extensions import state

bp = Blueprint("models", __name__, url_prefix="/api/models")
TAG = "models"


def model_service() -> ModelService:
    timeout = state().settings.schema_validation_timeout_seconds
    return ModelService(get_session(), actor=current_actor(), validation_timeout=timeout)


def model_response(service: ModelService, model: DeviceModel, status: int = 200) -> Response:
    response = json_response(model_json(model, *service.counts(model)), status)
    response.set_etag(model.etag)
    return response


def draft_of(body: ModelFields) -> ModelDraft:
    chip = body.chip if "chip" in body.model_fields_set else KEEP_CHIP
    return ModelDraft(body.name, body.description, body.json_schema, body.template, chip)


def if_match() -> set[str] | None:
    return set(request.if_match.as_set()) if "If-Match" in request.headers else None


@bp.get("")
@requires(Role.ADMIN)
@operation("List device models, sorted by code", tag=TAG, responses={200: ModelListSchema})
def list_models() -> Response:
    rows = model_service().summaries()
    return json_response(ModelListSchema.model_validate({"models": rows, "count": len(rows)}))


@bp.post("")
@requires(Role.ADMIN)
@operation(
    "Create a device model",
    tag=TAG,
    body=ModelCreateSchema,
    responses={
        201: ModelResponseSchema,
        400: "invalid_schema: not a valid JSON Schema (details.errors say where); "
        "schema_violation: the template does not meet it",
        409: "Code taken",
    },
)
def create_model(body: ModelCreateSchema) -> Response:
    service = model_service()
    return model_response(service, service.create(body.code, draft_of(body)), 201)


@bp.get("/<code>")
@requires(Role.ADMIN)
@operation("Get a device model", tag=TAG, responses={200: ModelResponseSchema, 404: "Unknown"})
def get_model(code: str) -> Response:
    service = model_service()
    return model_response(service, service.get(code))


@bp.put("/<code>")
@requires(Role.ADMIN)
@operation(
    "Replace a device model (If-Match as for configs)",
    tag=TAG,
    body=ModelUpdateSchema,
    responses={
        200: ModelResponseSchema,
        400: "Bad schema or template",
        404: "Unknown",
        409: "schema_change_breaks_configs: configs of the model would fail the new schema "
        "(details.configs lists them); send confirm: true to save anyway; chip_in_use: the "
        "model has releases for its chip",
        412: "Stale",
    },
)
def update_model(code: str, body: ModelUpdateSchema) -> Response:
    if body.code is not None and body.code != code:
        raise InvalidInput("the code of a model cannot change; create a new one")
    service = model_service()
    # The configs are checked through a read-only session first: no write lock meanwhile.
    with state().database.session(read_only=True) as reader:
        model = service.update(
            code, draft_of(body), expected_etags=if_match(), confirm=body.confirm, reader=reader
        )
    return model_response(service, model)


@bp.delete("/<code>")
@requires(Role.ADMIN)
@operation(
    "Delete a device model",
    tag=TAG,
    responses={
        204: "Deleted",
        404: "Unknown",
        409: "model_in_use: configs or releases use it",
        412: "Stale",
    },
)
def delete_model(code: str) -> Response:
    model_service().delete(code, expected_etags=if_match())
    return Response(status=204)


@bp.post("/<code>/validate")
@requires(Role.ADMIN)
@operation(
    "Check content against the model's schema without saving anything",
    tag=TAG,
    body=DraftSchema,
    responses={200: DraftResultSchema, 400: "Not a JSON object", 404: "Unknown model"},
)
def validate_draft(code: str, body: DraftSchema) -> Response:
    errors = model_service().validate_draft(code, body.content)
    return json_response(DraftResultSchema.model_validate({"valid": not errors, "errors": errors}))
