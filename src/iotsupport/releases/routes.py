"""/api/models/{code}/releases: upload (CI signed, or an admin), list, read, download, delete."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint
from flask import Response
from flask import g
from flask import request

from iotsupport.api import json_response
from iotsupport.api.spec import operation
from iotsupport.assets.routes import signature_used
from iotsupport.assets.store import Staging
from iotsupport.assets.upload import read_upload
from iotsupport.auth import current_principal
from iotsupport.auth.access import Role
from iotsupport.auth.access import current_actor
from iotsupport.auth.access import requires
from iotsupport.auth.access import requires_device
from iotsupport.credentials.device_auth import current_device
from iotsupport.db import commit
from iotsupport.db import get_session
from iotsupport.db.base import utcnow
from iotsupport.device_models.service import ModelService
from iotsupport.errors import ServiceUnavailable
from iotsupport.extensions import state
from iotsupport.releases.downloads import file_response
from iotsupport.releases.schemas import ReleaseListSchema
from iotsupport.releases.schemas import ReleaseSchema
from iotsupport.releases.schemas import ReleaseUploadForm
from iotsupport.releases.schemas import release_schema
from iotsupport.releases.service import ReleaseService
from iotsupport.releases.upload import ReleaseSignature
from iotsupport.rollouts.service import record_download_start

log = logging.getLogger(__name__)

bp = Blueprint("releases", __name__, url_prefix="/api/models")

TAG = "releases"
RELEASE = "/<code>/releases/<version>"


def release_service() -> ReleaseService:
    return ReleaseService(get_session(), actor=current_actor())


class StagingUnavailable(ServiceUnavailable):
    code = "staging_unavailable"


def _staging_failed(exc: OSError) -> Exception:
    log.error("release upload: the temp folder failed: %s", exc)
    return StagingUnavailable("the upload could not be written to the server's temp folder")


@contextlib.contextmanager
def staging() -> Iterator[Staging]:
    """Temp files for the upload, in the system's temp folder (the bytes go to the database)."""
    max_bytes = state().settings.asset_max_bytes
    area = Staging(Path(tempfile.gettempdir()), max_bytes, _staging_failed)
    try:
        yield area
    finally:
        area.discard()


@bp.post("/<code>/releases")
@requires(Role.ASSET_UPLOADER)
@operation(
    "Upload a firmware image as a release of the model (CI: signed; an admin: signed or not)",
    tag=TAG,
    form=ReleaseUploadForm,
    responses={
        201: ReleaseSchema,
        400: "A field is missing or bad, the signature or SHA-256 does not match, or the body "
        "is not valid multipart",
        404: "Unknown model",
        409: "release_exists: the model has this version; signature_already_used",
        413: "Larger than ASSET_MAX_BYTES",
        422: "Not a valid ESP32 app image (the code names the check that failed), a version "
        "that cannot name a release, or another chip than the model's",
        503: "Signed uploads are off (SIGNING_KEY_PATH unset), or the temp folder failed",
    },
)
def upload_release(code: str) -> Response:
    app_state = state()
    # Read apart from the request's session: nothing may hold a write lock while it streams.
    with app_state.database.session(read_only=True) as lookup:
        ModelService(lookup).get(code)
    signature = ReleaseSignature(
        app_state.release_verifier,
        model_code=code,
        admin=Role.ADMIN in current_principal().roles,
        now=utcnow(),
        used=signature_used,
    )
    with staging() as area:
        max_bytes = app_state.settings.asset_max_bytes
        upload = read_upload(request.environ, area, max_bytes, signature.precheck)
        session = get_session()
        staged, signed = signature.accept(session, upload)
        model, release = release_service().create(code, staged, signed=signed)
    return json_response(release_schema(model, release), 201)


@bp.get("/<code>/releases")
@requires(Role.ADMIN)
@operation(
    "A model's releases, newest first",
    tag=TAG,
    responses={200: ReleaseListSchema, 404: "Unknown model"},
)
def list_releases(code: str) -> Response:
    service = release_service()
    model, releases = service.list(code)
    running = service.running_counts(model.id)
    items = [
        release_schema(model, release, running.get(release.version, 0)) for release in releases
    ]
    body = ReleaseListSchema(model=model.code, chip=model.chip, releases=items, count=len(items))
    return json_response(body)


@bp.get(RELEASE)
@requires(Role.ADMIN)
@operation(
    "A release: what its image says, size and SHA-256",
    tag=TAG,
    responses={200: ReleaseSchema, 404: "Unknown model or version"},
)
def get_release(code: str, version: str) -> Response:
    service = release_service()
    model, release = service.get(code, version)
    running = service.running_counts(model.id).get(release.version, 0)
    return json_response(release_schema(model, release, running))


@bp.get(f"{RELEASE}/image")
@requires_device(or_roles=(Role.ADMIN,), signed_url=True)
@operation(
    "Device endpoint: download a release's image for OTA (ETag, Range, HEAD). A device "
    "(its token, or the signed URL its firmware offer carried) gets only its own model's "
    "releases; an admin any",
    tag="devices",
    responses={
        200: "The file, application/octet-stream",
        206: "The requested byte range",
        304: "Unchanged since the ETag sent in If-None-Match",
        401: "No valid device token (DEVICE_AUTH optional or required), and no signed URL",
        403: "signed_url_invalid: a signed URL changed, expired, or for another release",
        404: "Unknown model or version, or another model's release than the device's",
        412: "If-Match names another file",
        416: "Range not satisfiable",
        429: "Too many failed tokens from this address",
    },
)
def download_release(code: str, version: str) -> Response:
    device = current_device()
    for_config = device.config_id if device is not None else None
    release_id, file = release_service().file_of(code, version, for_config=for_config)
    if device is not None and request.method == "GET" and _from_the_start():
        with state().database.session() as session:  # its own short write
            record_download_start(session, device.config_id, release_id, utcnow())
            commit(session)
    engine = state().database.read_engine
    name = f"{code}-{version}.bin"
    return file_response(
        engine, file, cache=state().release_cache, download_name=name, cache_control=_caching()
    )


def _caching() -> str:
    """A signed URL's answer may be kept by a shared cache until the URL expires (anyone
    holding the URL may fetch it meanwhile anyway); a token's is checked every time."""
    expires: int | None = g.get("signed_url_expires")
    if expires is None:
        return "no-cache"
    return f"public, max-age={max(0, expires - int(time.time()))}"


def _from_the_start() -> bool:
    """A download begins here (no Range, or one from byte 0), not a resumption."""
    ranges = request.range
    return ranges is None or not ranges.ranges or ranges.ranges[0][0] == 0


@bp.delete(RELEASE)
@requires(Role.ADMIN)
@operation(
    "Delete a release",
    tag=TAG,
    responses={
        204: "Deleted",
        404: "Unknown model or version",
        409: "release_in_use: an active rollout rolls it out, or devices should run it",
    },
)
def delete_release(code: str, version: str) -> Response:
    release_service().delete(code, version)
    return Response(status=204)
