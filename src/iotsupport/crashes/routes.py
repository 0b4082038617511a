"""Core dumps (a device uploads; admins read, download, delete) and crash groups."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import request
from sqlalchemy import select

from iotsupport.api import json_response
from iotsupport.api.spec import operation
from iotsupport.auth.access import Role
from iotsupport.auth.access import requires
from iotsupport.auth.access import requires_device
from iotsupport.configs.content import normalize_mac
from iotsupport.configs.tables import DeviceConfig
from iotsupport.crashes import service
from iotsupport.crashes.crash_views import crash_group
from iotsupport.crashes.crash_views import crash_list
from iotsupport.crashes.crash_views import update_status
from iotsupport.crashes.schemas import CoreDumpCreatedSchema
from iotsupport.crashes.schemas import CoreDumpListSchema
from iotsupport.crashes.schemas import CoreDumpSchema
from iotsupport.crashes.schemas import CrashGroupListSchema
from iotsupport.crashes.schemas import CrashGroupSchema
from iotsupport.crashes.schemas import CrashQuery
from iotsupport.crashes.schemas import CrashStatusSchema
from iotsupport.crashes.schemas import coredump_schema
from iotsupport.credentials.device_auth import current_device
from iotsupport.db import get_session
from iotsupport.errors import DeviceUnauthorized
from iotsupport.errors import InvalidInput
from iotsupport.errors import NotFound
from iotsupport.errors import PayloadTooLarge
from iotsupport.extensions import state
from iotsupport.releases.tables import Release

DECODER_KEY = "iotsupport.crash_decoder"  # the app extension holding the Decoder
device_bp = Blueprint("coredumps_device", __name__, url_prefix="/api/device")
bp = Blueprint("crashes", __name__, url_prefix="/api")
TAG = "crashes"


@device_bp.post("/coredump")
@requires_device()
@operation(
    "Device: upload the core dump partition as ESP-IDF wrote it (ELF or binary format), "
    "as the request body. The same bytes again are the same dump",
    tag="devices",
    responses={
        201: CoreDumpCreatedSchema,
        400: "Empty body, or no device (no credential and no ?mac=)",
        401: "No valid device token",
        404: "?mac= names no config",
        413: "Larger than COREDUMP_MAX_BYTES",
    },
)
def upload_coredump() -> Response:
    limit = state().settings.coredump_max_bytes
    if (request.content_length or 0) > limit:
        raise _too_large(limit)
    raw = _read_body(limit)
    if not raw:
        raise InvalidInput("the body is empty: send the core dump partition's bytes")
    session = get_session()
    device = current_device()
    if device is not None:
        config_id, verified = device.config_id, True
    else:  # nothing proved who sent it: kept, marked, never counted
        config_id, verified = _unverified_device(), False
    keep = state().settings.coredump_keep_per_device
    dump_id = service.store(session, config_id, raw, verified=verified, keep=keep)
    session.commit()
    decoder = current_app.extensions.get(DECODER_KEY)
    if decoder is not None:
        decoder.wake()
    return json_response(CoreDumpCreatedSchema(id=dump_id), 201)


def _read_body(limit: int) -> bytes:
    """The body, read until its end (a stream may answer a read with fewer bytes), or 413
    as soon as it passes `limit` (a chunked body has no length to check first)."""
    parts: list[bytes] = []
    size = 0
    while piece := request.stream.read(64 * 1024):
        size += len(piece)
        if size > limit:
            raise _too_large(limit)
        parts.append(piece)
    return b"".join(parts)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"a core dump may be at most {limit} bytes (COREDUMP_MAX_BYTES)", {"max_bytes": limit}
    )


def _unverified_device() -> int:
    mac = request.args.get("mac")
    if not mac:
        raise DeviceUnauthorized()
    normalized = normalize_mac(mac)
    config_id = get_session().scalar(
        select(DeviceConfig.id).where(DeviceConfig.mac_address == normalized)
    )
    if config_id is None:
        raise NotFound(f"no config for {normalized}", {"mac": normalized})
    return config_id


@bp.get("/configs/<int:config_id>/coredumps")
@requires(Role.ADMIN)
@operation(
    "A device's core dumps, newest first, decoded as far as they are",
    tag=TAG,
    responses={200: CoreDumpListSchema, 404: "Unknown config"},
)
def list_coredumps(config_id: int) -> Response:
    session = get_session()
    dumps = service.of_config(session, config_id)
    items = [coredump_schema(dump, _version(dump.release_id)) for dump in dumps]
    return json_response(CoreDumpListSchema(coredumps=items, count=len(items)))


@bp.get("/coredumps/<int:dump_id>")
@requires(Role.ADMIN)
@operation(
    "A core dump, decoded (with ?download: its raw bytes)",
    tag=TAG,
    responses={200: CoreDumpSchema, 404: "Unknown core dump"},
)
def get_coredump(dump_id: int) -> Response:
    if "download" in request.args:
        return _raw(dump_id)
    dump = service.get(get_session(), dump_id)
    return json_response(coredump_schema(dump, _version(dump.release_id)))


@bp.get("/coredumps/<int:dump_id>/download")
@requires(Role.ADMIN)
@operation(
    "A core dump's raw bytes, as the device sent them",
    tag=TAG,
    responses={200: "application/octet-stream", 404: "Unknown core dump"},
)
def download_coredump(dump_id: int) -> Response:
    return _raw(dump_id)


def _raw(dump_id: int) -> Response:
    dump = service.get(get_session(), dump_id)
    response = Response(dump.data, mimetype="application/octet-stream")
    response.headers["Content-Disposition"] = f'attachment; filename="coredump-{dump.id}.bin"'
    return response


@bp.delete("/coredumps/<int:dump_id>")
@requires(Role.ADMIN)
@operation("Delete a core dump", tag=TAG, responses={204: "Deleted", 404: "Unknown core dump"})
def delete_coredump(dump_id: int) -> Response:
    service.remove(get_session(), dump_id)
    return Response(status=204)


def _version(release_id: int | None) -> str | None:
    if release_id is None:
        return None
    return get_session().scalar(select(Release.version).where(Release.id == release_id))


@bp.get("/crashes")
@requires(Role.ADMIN)
@operation(
    "Crash groups (the same top frames by function), most recently seen first",
    tag=TAG,
    query=CrashQuery,
    responses={200: CrashGroupListSchema},
)
def list_crashes(query: CrashQuery) -> Response:
    return json_response(crash_list(get_session(), query))


@bp.get("/crashes/<int:group_id>")
@requires(Role.ADMIN)
@operation(
    "A crash group: exception, top frames, devices and releases affected, a sample dump "
    "per release",
    tag=TAG,
    responses={200: CrashGroupSchema, 404: "Unknown crash group"},
)
def get_crash(group_id: int) -> Response:
    return json_response(crash_group(get_session(), group_id))


@bp.route("/crashes/<int:group_id>", methods=["PATCH", "PUT"])
@requires(Role.ADMIN)
@operation(
    "Set a crash group's status: open, resolved or ignored",
    tag=TAG,
    body=CrashStatusSchema,
    responses={200: CrashGroupSchema, 404: "Unknown crash group"},
)
def set_crash_status(group_id: int, body: CrashStatusSchema) -> Response:
    return json_response(update_status(get_session(), group_id, body.status))
