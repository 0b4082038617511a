"""/api/configs/import and /api/configs/export: the old file layout, in the browser."""

from __future__ import annotations

import typing as t

from flask import Blueprint
from flask import Response
from flask import request

from iotsupport.api import json_response
from iotsupport.api.spec import operation
from iotsupport.auth.access import Role
from iotsupport.auth.access import requires
from iotsupport.configs.files import import_file
from iotsupport.configs.files import totals
from iotsupport.configs.routes import config_service
from iotsupport.configs.transfer import ImportLimits
from iotsupport.configs.transfer import export_archive
from iotsupport.configs.transfer import read_form
from iotsupport.configs.transfer import uploaded_files
from iotsupport.configs.transfer_schemas import ExportQuery
from iotsupport.configs.transfer_schemas import ImportFields
from iotsupport.configs.transfer_schemas import ImportForm
from iotsupport.configs.transfer_schemas import ImportReportSchema
from iotsupport.configs.transfer_schemas import ImportResultSchema
from iotsupport.db import discard
from iotsupport.db import get_session
from iotsupport.db.base import utcnow
from iotsupport.device_models.service import ModelService
from iotsupport.errors import InvalidInput
from iotsupport.extensions import state

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
        404: "Unknown model",
        413: "Over IMPORT_MAX_BYTES or IMPORT_MAX_FILES, or a file over MAX_REQUEST_BYTES; "
        "nothing is stored",
    },
)
def import_configs() -> Response:
    settings = state().settings
    limits = ImportLimits(
        settings.import_max_bytes, settings.import_max_files, settings.max_request_bytes
    )
    with read_form(request.environ, limits) as form:
        fields = _import_fields(form.fields.to_dict(flat=False))
        service = config_service()
        if fields.model is not None:
            service.models.get(fields.model)  # an unknown model stops before the first file
        files = uploaded_files(form.files, limits)
    results = [import_file(service, file.name, file.data, fields.model) for file in files]
    dry_run = fields.dry_run == "true"
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
    return ImportFields.model_validate({name: values[0] for name, values in raw.items()})


@bp.get("/export")
@requires(Role.ADMIN)
@operation(
    "Every config (or a model's) as a zip of aa-bb-cc-dd-ee-ff.json files, content exactly "
    "as saved (no credentials)",
    tag=TAG,
    query=ExportQuery,
    responses={200: "application/zip, streamed", 404: "Unknown model"},
)
def export_configs(query: ExportQuery) -> Response:
    model_id: int | None | t.Literal["none"] = None
    if query.model is not None and query.no_model:
        raise InvalidInput("send model or no_model, not both")
    if query.model is not None:
        model_id = ModelService(get_session()).get(query.model).id
    elif query.no_model:
        model_id = "none"
    name = f"iotsupport-configs-{utcnow():%Y%m%d-%H%M%S}.zip"
    response = Response(export_archive(state().database, model_id), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
