"""/api/models/{code}/releases/{version}/elf: a release's app ELF (its symbols)."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import request

from iotsupport.api import json_response
from iotsupport.api.spec import operation
from iotsupport.assets.routes import signature_used
from iotsupport.assets.signing import RELEASE_ELF_PURPOSE
from iotsupport.assets.signing import UploadVerifier
from iotsupport.assets.upload import read_upload
from iotsupport.auth import current_principal
from iotsupport.auth.access import Role
from iotsupport.auth.access import current_actor
from iotsupport.auth.access import requires
from iotsupport.crashes.symbol_files import NoSymbols
from iotsupport.crashes.symbol_files import attach_elf
from iotsupport.crashes.symbol_files import detach_elf
from iotsupport.db import get_session
from iotsupport.db.base import utcnow
from iotsupport.extensions import state
from iotsupport.releases.downloads import file_response
from iotsupport.releases.routes import staging
from iotsupport.releases.schemas import ReleaseSchema
from iotsupport.releases.schemas import ReleaseUploadForm
from iotsupport.releases.schemas import release_schema
from iotsupport.releases.service import ReleaseService
from iotsupport.releases.storage import find_file
from iotsupport.releases.upload import ReleaseSignature

bp = Blueprint("release_elf", __name__, url_prefix="/api/models")
ELF = "/<code>/releases/<version>/elf"
TAG = "releases"


def _verifier() -> UploadVerifier | None:
    release = state().release_verifier
    if release is None:
        return None
    return UploadVerifier(
        release.public_key, release.tolerance_seconds, purpose=RELEASE_ELF_PURPOSE
    )


@bp.post(ELF)
@requires(Role.ASSET_UPLOADER)
@operation(
    "Upload the app ELF a release's image was built from (its symbols). CI signs it with "
    "purpose release-elf and the name '{code}/{version}'; an admin may leave that out",
    tag=TAG,
    form=ReleaseUploadForm,
    responses={
        201: ReleaseSchema,
        400: "A field is missing or bad, or the signature or SHA-256 does not match",
        404: "Unknown model or version",
        409: "signature_already_used",
        413: "Larger than ASSET_MAX_BYTES",
        422: "elf_sha256_mismatch: not the ELF the image names in its esp_app_desc_t",
        503: "Signed uploads are off (SIGNING_KEY_PATH unset), or the temp folder failed",
    },
)
def upload_elf(code: str, version: str) -> Response:
    app_state = state()
    with app_state.database.session(read_only=True) as lookup:
        ReleaseService(lookup).get(code, version)
    signature = ReleaseSignature(
        _verifier(),
        model_code=code,
        admin=Role.ADMIN in current_principal().roles,
        now=utcnow(),
        used=signature_used,
        signed_name=f"{code}/{version}",
    )
    with staging() as area:
        max_bytes = app_state.settings.asset_max_bytes
        upload = read_upload(request.environ, area, max_bytes, signature.precheck)
        session = get_session()
        staged, _signed = signature.accept(session, upload)
        model, release = ReleaseService(session, actor=current_actor()).get(code, version)
        again = attach_elf(session, release, staged)
    session.commit()
    decoder = current_app.extensions.get("iotsupport.crash_decoder")
    if again and decoder is not None:
        decoder.wake()
    return json_response(release_schema(model, release), 201)


@bp.get(ELF)
@requires(Role.ADMIN)
@operation(
    "Download a release's app ELF",
    tag=TAG,
    responses={200: "The ELF, application/octet-stream", 404: "Unknown release, or no ELF"},
)
def download_elf(code: str, version: str) -> Response:
    session = get_session()
    _, release = ReleaseService(session).get(code, version)
    file = find_file(session, release.elf_file_sha256) if release.elf_file_sha256 else None
    if file is None:
        raise NoSymbols(f"release {version[:32]!r} has no app ELF")
    engine = state().database.read_engine
    return file_response(engine, file, download_name=f"{code}-{version}.elf")


@bp.delete(ELF)
@requires(Role.ADMIN)
@operation(
    "Delete a release's app ELF",
    tag=TAG,
    responses={204: "Deleted", 404: "Unknown release, or no ELF"},
)
def delete_elf(code: str, version: str) -> Response:
    session = get_session()
    _, release = ReleaseService(session).get(code, version)
    detach_elf(session, release)
    return Response(status=204)
