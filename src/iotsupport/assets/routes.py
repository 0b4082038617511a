"""/api/assets: signed firmware uploads from CI, OTA downloads for devices."""

from __future__ import annotations

import typing as t

from flask import Blueprint
from flask import Response
from flask import request
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.wsgi import wrap_file

from iotsupport.api import json_response
from iotsupport.api.spec import operation
from iotsupport.assets.schemas import AssetListSchema
from iotsupport.assets.schemas import AssetSchema
from iotsupport.assets.schemas import AssetUploadedSchema
from iotsupport.assets.schemas import AssetUploadForm
from iotsupport.assets.service import Assets
from iotsupport.assets.service import AssetService
from iotsupport.assets.service import AssetsNotConfigured
from iotsupport.assets.service import StagedFile
from iotsupport.assets.service import Staging
from iotsupport.assets.service import Upload
from iotsupport.assets.service import check_filename
from iotsupport.assets.service import too_large
from iotsupport.auth.access import Role
from iotsupport.auth.access import current_actor
from iotsupport.auth.access import requires
from iotsupport.auth.access import requires_device
from iotsupport.db import get_session
from iotsupport.extensions import state

bp = Blueprint("assets", __name__, url_prefix="/api/assets")

TAG = "assets"
# `path`, so that a name with a slash reaches the check and gets its 400, not a 404.
FILENAME = "<path:filename>"
# Room for the boundaries, part headers and the two text fields around the file.
FORM_OVERHEAD_BYTES = 64 * 1024
# Caps each text field, and werkzeug applies it to its read buffer too (64 KiB chunks).
MAX_FIELD_BYTES = 256 * 1024
MAX_FORM_PARTS = 16


def configured_assets() -> Assets:
    assets = state().assets
    if assets is None:
        raise AssetsNotConfigured("assets not configured")
    return assets


def read_upload(staging: Staging, max_file_bytes: int) -> Upload:
    """Parse the multipart body, streaming each file part into the assets folder.

    The app-wide MAX_REQUEST_BYTES does not apply here: this parser reads the
    body itself, with the asset limit (the file's own size is checked exactly as
    it is written).
    """

    def stream_factory(
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None,
        content_length: int | None = None,
    ) -> t.IO[bytes]:
        # A StagedFile has the write, seek and read the parser uses.
        return t.cast(t.IO[bytes], staging.new_file())

    parser = FormDataParser(
        stream_factory=stream_factory,
        max_form_memory_size=MAX_FIELD_BYTES,
        max_content_length=max_file_bytes + FORM_OVERHEAD_BYTES,
        max_form_parts=MAX_FORM_PARTS,
    )
    try:
        _, form, files = parser.parse_from_environ(request.environ)
    except RequestEntityTooLarge:
        raise too_large(max_file_bytes) from None
    part = files.get("file")
    staged = part.stream if part is not None else None
    return Upload(
        file=staged if isinstance(staged, StagedFile) else None,
        filename=part.filename if part is not None else None,
        timestamp=form.get("timestamp"),
        signature=form.get("signature"),
    )


@bp.post("")
@requires(Role.ASSET_UPLOADER)
@operation(
    "Upload a signed firmware image (CI)",
    tag=TAG,
    form=AssetUploadForm,
    responses={
        200: AssetUploadedSchema,
        400: "A field is missing, the filename is unsafe, the timestamp or signature is bad",
        409: "This timestamp and signature were used already",
        413: "Larger than ASSET_MAX_BYTES",
        503: "Assets or signing not configured, or the folder is unavailable",
    },
)
def upload_asset() -> Response:
    assets = configured_assets()
    verifier = assets.upload_verifier()
    with assets.metrics.counting_upload(), assets.store.staging() as staging:
        upload = read_upload(staging, assets.store.max_bytes)
        service = AssetService(get_session(), assets.store, verifier, state().publisher)
        stored = service.accept(upload, actor=current_actor())
    return json_response(
        AssetUploadedSchema(
            filename=stored.name,
            size=stored.size,
            sha256=stored.sha256,
            uploaded_at=stored.uploaded_at,
        )
    )


@bp.get("")
@requires(Role.ADMIN)
@operation("List assets, sorted by name", tag=TAG, responses={200: AssetListSchema})
def list_assets() -> Response:
    stored = configured_assets().store.list()
    items = [AssetSchema.model_validate(asset, from_attributes=True) for asset in stored]
    return json_response(AssetListSchema(assets=items, count=len(items)))


@bp.get(f"/{FILENAME}")
@requires_device()
@operation(
    "Device endpoint: download a firmware image for OTA (ETag, Range, HEAD; a device token "
    "as DEVICE_AUTH says)",
    tag="devices",
    responses={
        200: "The file, application/octet-stream",
        206: "The requested byte range",
        304: "Unchanged since the ETag sent in If-None-Match",
        400: "Unsafe filename",
        404: "Unknown filename",
        416: "Range not satisfiable",
    },
)
def download_asset(filename: str) -> Response:
    assets = configured_assets()
    opened = assets.store.open(filename)
    # Built from the open file's own stat: werkzeug's send_file stats the path and
    # opens it separately, which can pair one version's length with another's bytes.
    response = Response(
        wrap_file(request.environ, opened.file),
        mimetype="application/octet-stream",
        direct_passthrough=True,
    )
    response.content_length = opened.size
    response.last_modified = opened.modified
    response.set_etag(opened.etag)
    response.cache_control.no_cache = True
    try:
        response.make_conditional(request, accept_ranges=True, complete_length=opened.size)
    except RequestedRangeNotSatisfiable:
        opened.file.close()
        raise
    if request.method == "GET" and response.status_code in (200, 206):
        assets.metrics.bytes_served.inc(response.content_length or 0)
    return response


@bp.delete(f"/{FILENAME}")
@requires(Role.ADMIN)
@operation(
    "Delete an asset",
    tag=TAG,
    responses={204: "Deleted", 400: "Unsafe filename", 404: "Unknown filename"},
)
def delete_asset(filename: str) -> Response:
    configured_assets().store.delete(check_filename(filename), actor=current_actor())
    return Response(status=204)
