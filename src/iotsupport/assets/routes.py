"""/api/assets: signed firmware uploads from CI, OTA downloads for devices."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import request
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.wsgi import wrap_file

from iotsupport.api import json_response
from iotsupport.api.spec import operation
from iotsupport.assets.names import check_filename
from iotsupport.assets.schemas import AssetListSchema
from iotsupport.assets.schemas import AssetSchema
from iotsupport.assets.schemas import AssetUploadedSchema
from iotsupport.assets.schemas import AssetUploadForm
from iotsupport.assets.service import Assets
from iotsupport.assets.service import AssetService
from iotsupport.assets.service import AssetsNotConfigured
from iotsupport.assets.tables import UsedUploadSignature
from iotsupport.assets.upload import read_upload
from iotsupport.auth.access import Role
from iotsupport.auth.access import current_actor
from iotsupport.auth.access import requires
from iotsupport.auth.access import requires_device
from iotsupport.db import get_session
from iotsupport.extensions import state

bp = Blueprint("assets", __name__, url_prefix="/api/assets")

TAG = "assets"
# `filename` (a path), so that a name with a slash reaches the check and gets its 400.
FILENAME = "<filename:filename>"
NOT_CONFIGURED = "ASSETS_DIR not set, or the folder is unavailable"


def configured_assets() -> Assets:
    assets = state().assets
    if assets is None:
        raise AssetsNotConfigured(
            "firmware assets are off on this server: an administrator sets ASSETS_DIR "
            "(a folder the server can write) to turn them on"
        )
    return assets


def signature_used(digest: str) -> bool:
    """Read on a connection of its own, so no write lock is held while the file streams."""
    with state().database.session(read_only=True) as session:
        return session.get(UsedUploadSignature, digest) is not None


@bp.post("")
@requires(Role.ASSET_UPLOADER)
@operation(
    "Upload a signed firmware image (CI): timestamp, sha256 and signature, then the file",
    tag=TAG,
    form=AssetUploadForm,
    responses={
        200: AssetUploadedSchema,
        400: "A field is missing or bad, the filename is unsafe, the timestamp, signature or "
        "SHA-256 does not match, or the body is not valid multipart",
        409: "This timestamp and signature were used already",
        413: "Larger than ASSET_MAX_BYTES",
        503: "Assets or signing not configured, or the folder is unavailable",
    },
)
def upload_asset() -> Response:
    assets = configured_assets()
    service = AssetService(
        get_session(),
        assets.store,
        assets.upload_verifier(),
        used=signature_used,
    )
    with assets.metrics.counting_upload(), assets.store.staging() as staging:
        upload = read_upload(request.environ, staging, assets.store.max_bytes, service.precheck)
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
@operation(
    "List assets, sorted by name",
    tag=TAG,
    responses={200: AssetListSchema, 503: NOT_CONFIGURED},
    database=False,
)
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
        412: "If-Match names another version",
        416: "Range not satisfiable",
        503: NOT_CONFIGURED,
    },
    database=False,
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
    responses={
        204: "Deleted",
        400: "Unsafe filename",
        404: "Unknown filename",
        503: NOT_CONFIGURED,
    },
    database=False,
)
def delete_asset(filename: str) -> Response:
    configured_assets().store.delete(check_filename(filename), actor=current_actor())
    return Response(status=204)
