"""/api/configs/import and /api/configs/export: the old file layout, in the browser."""

from __future__ import annotations

import typing as t

from flask import Blueprint
from flask import Response
from flask import request

from iotsupport.api import json_response
from iotsupport.api.spec import operation
from iotsupport.api.spec import refuse_nul
from iotsupport.auth.access import Role
from iotsupport.auth.access import requires
from iotsupport.configs.export import export_archive
from iotsupport.configs.files import totals
from iotsupport.configs.import_form import read_form
from iotsupport.configs.routes import config_service
from iotsupport.configs.transfer import ImportLimits
from iotsupport.configs.transfer import import_files
from iotsupport.configs.transfer import uploaded_files
from iotsupport.configs.transfer_schemas import ExportQuery
from iotsupport.configs.transfer_schemas import ImportFields
from iotsupport.configs.transfer_schemas import ImportForm
from iotsupport.configs.transfer_schemas import ImportReportSchema
from iotsupport.configs.transfer_schemas import ImportResultSchema
from iotsupport.db import Turns
from iotsupport.db import discard
from iotsupport.db import get_session
from iotsupport.db.base import utcnow
from iotsupport.device_models.service import ModelService
from iotsupport.errors import InvalidInput
from iotsupport.extensions import state
from iotsupport.names import attachment
from iotsupport.staging import area_of
from iotsupport.staging import own_folder

bp = Blueprint("transfer", __name__, url_prefix="/api/configs")
TAG = "configs"


@bp.post("/import")
@requires(Role.ADMIN)
@operation(
    "Import configs from files of the old layout (aa-bb-cc-dd-ee-ff.json, or a .zip of them); "
    "dry_run=true reports what would happen",
    tag=TAG,
    form=ImportForm,
    responses={
        200: ImportReportSchema,
        400: "Not multipart, no file part, an unknown field, a zip that cannot be read, or "
        "an unsafe file name; nothing is stored",
        503: "The database is not reachable, or busy past DB_BUSY_TIMEOUT_SECONDS "
        "(database_busy, with Retry-After): the files imported before it stay imported",
        404: "Unknown model",
        413: "Over IMPORT_MAX_BYTES or IMPORT_MAX_FILES, or a file over MAX_REQUEST_BYTES "
        "(details.limit names the setting, details.value its value); nothing is stored",
    },
)
def import_configs() -> Response:
    settings = state().settings
    limits = ImportLimits(
        settings.import_max_bytes, settings.import_max_files, settings.max_request_bytes
    )
    with read_form(request.environ, limits, own_folder(area_of(settings))) as form:
        fields = _import_fields(form.fields.to_dict(flat=False))
        files = uploaded_files(form.files, limits)
    service = config_service()
    if fields.model is not None:
        service.models.get(fields.model)  # an unknown model stops before the first file
    dry_run = fields.dry_run == "true"
    turns = None if dry_run else Turns(service.session, state().database.writers)
    results = import_files(service, files, fields.model, turns)
    if dry_run:
        discard(service.session)
    body = ImportReportSchema(
        dry_run=dry_run,
        results=[ImportResultSchema.model_validate(vars(result)) for result in results],
        **totals(results),
    )
    return json_response(body)


def _import_fields(raw: dict[str, list[str]]) -> ImportFields:
    twice = sorted(name for name, values in raw.items() if len(values) > 1)
    if twice:
        raise InvalidInput(f"the field {twice[0][:64]!r} came more than once")
    fields = ImportFields.model_validate({name: values[0] for name, values in raw.items()})
    return refuse_nul(fields)


@bp.get("/export")
@requires(Role.ADMIN)
@operation(
    "Every config (or a model's) as a zip of aa-bb-cc-dd-ee-ff.json files, content exactly "
    "as saved (no credentials)",
    tag=TAG,
    query=ExportQuery,
    responses={
        200: "application/zip, streamed",
        400: "invalid_query: where cannot be read (details.position)",
        404: "Unknown model",
    },
)
def export_configs(query: ExportQuery) -> Response:
    model_id: int | None | t.Literal["none"] = None
    if query.model is not None and query.no_model:
        raise InvalidInput("send model or no_model, not both")
    if query.model is not None:
        model_id = ModelService(get_session()).get(query.model).id
    elif query.no_model:
        model_id = "none"
    app_state = state()
    where = None
    if query.where is not None:  # read before the answer starts: a bad query is a 400
        where = app_state.where_filter(query.where, app_state.database.engine.dialect.name)
    name = f"iotsupport-configs-{utcnow():%Y%m%d-%H%M%S}.zip"
    archive = export_archive(app_state.database, model_id, where)
    response = Response(archive, mimetype="application/zip")
    response.headers["Content-Disposition"] = attachment(name)
    return response
