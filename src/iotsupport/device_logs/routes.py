"""The log routes: devices send lines; admins read, download and follow them."""

from __future__ import annotations

import typing as t
import zlib
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from flask import Blueprint
from flask import Response
from flask import request

from iotsupport.api import json_response
from iotsupport.api.spec import operation
from iotsupport.auth.access import Role
from iotsupport.auth.access import requires
from iotsupport.auth.access import requires_device
from iotsupport.configs.content import normalize_mac
from iotsupport.configs.tables import DeviceConfig
from iotsupport.credentials.device_auth import current_device
from iotsupport.db import get_session
from iotsupport.device_logs import DeviceLogs
from iotsupport.device_logs.live import WAITED
from iotsupport.device_logs.parsing import LETTERS
from iotsupport.device_logs.parsing import level_number
from iotsupport.device_logs.parsing import parse_payload
from iotsupport.device_logs.query import Page
from iotsupport.device_logs.query import Selection
from iotsupport.device_logs.query import devices_at_level
from iotsupport.device_logs.query import read
from iotsupport.device_logs.schemas import MAX_LIMIT
from iotsupport.device_logs.schemas import FleetLogQuery
from iotsupport.device_logs.schemas import LevelDeviceSchema
from iotsupport.device_logs.schemas import LevelDevicesQuery
from iotsupport.device_logs.schemas import LevelDevicesSchema
from iotsupport.device_logs.schemas import LogAcceptedSchema
from iotsupport.device_logs.schemas import LogDropsSchema
from iotsupport.device_logs.schemas import LogPageSchema
from iotsupport.device_logs.schemas import LogQuery
from iotsupport.device_logs.schemas import line_schema
from iotsupport.device_logs.tables import DeviceLogDrops
from iotsupport.errors import DeviceUnauthorized
from iotsupport.errors import InvalidInput
from iotsupport.errors import NotFound
from iotsupport.errors import PayloadTooLarge
from iotsupport.extensions import state

bp = Blueprint("device_logs", __name__, url_prefix="/api")

TAG = "logs"
MAX_BODY_BYTES = 256 * 1024
MAX_INFLATED_BYTES = 1024 * 1024  # a gzip body, once inflated
MAX_LINES = 10_000  # per request


def device_logs() -> DeviceLogs:
    logs = state().logs
    assert logs is not None
    return logs


@bp.post("/device/logs")
@requires_device()
@operation(
    "Device: log lines (text, ESP-IDF's format understood; NDJSON; JSON {ts, level, tag, "
    'message} or {"lines": [...]}), gzip allowed, at most 256 KiB. Its token, or with '
    "DEVICE_AUTH=optional and no credential, `?mac=` (kept marked unverified)",
    tag="devices",
    responses={
        202: LogAcceptedSchema,
        400: "Bad mac, or a gzip body that does not inflate",
        401: "No valid device token (DEVICE_AUTH=required, or a device that has a credential)",
        404: "No config for that MAC (DEVICE_AUTH=off)",
        413: "payload_too_large: over 256 KiB (1 MiB inflated)",
    },
)
def post_device_logs() -> Response:
    config_id, verified = _sender()
    lines = parse_payload(_body(), MAX_LINES)
    batch = device_logs().receive(config_id, lines, verified=verified)
    accepted = LogAcceptedSchema(accepted=len(batch.lines), dropped=batch.dropped)
    return json_response(accepted, 202)


def _sender() -> tuple[int, bool]:
    """The device whose lines these are, and whether a credential proved it."""
    device = current_device()
    if device is not None:
        return device.config_id, True
    raw = request.args.get("mac")
    if raw is None:
        raise InvalidInput("name the device: ?mac=<its MAC>, or send its token")
    try:
        mac = normalize_mac(raw)
    except ValueError:
        raise InvalidInput("mac is not a MAC address (aa:bb:cc:dd:ee:ff)") from None
    gate = state().devices
    document = gate.cache.document(get_session, mac, ())
    if document is None:
        if gate.mode == "off":
            raise NotFound("no config for this MAC")
        raise DeviceUnauthorized()
    if gate.mode != "off" and document.credential is not None:
        raise DeviceUnauthorized()  # it has a token: it must use it
    return document.config_id, False


def _body() -> bytes:
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise _too_large()
    raw = request.stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise _too_large()
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip"):
        raise InvalidInput("Content-Encoding must be gzip or identity")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(raw, MAX_INFLATED_BYTES + 1)
    except zlib.error:
        raise InvalidInput("the body is not valid gzip") from None
    if len(data) > MAX_INFLATED_BYTES or inflater.unconsumed_tail:
        raise _too_large()
    return data


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(
        f"send at most {MAX_BODY_BYTES} bytes of logs a request ({MAX_INFLATED_BYTES} inflated)",
        {"max_bytes": MAX_BODY_BYTES},
    )


LOG_ANSWERS: dict[int, t.Any] = {
    200: LogPageSchema,
    400: "Bad since, until, level, limit, cursor, after or wait",
}


@bp.get("/configs/<int:config_id>/logs")
@requires(Role.ADMIN)
@operation(
    "A device's log, newest first; `after` + `wait` to follow (long poll); `format` to "
    "download as text or NDJSON",
    tag=TAG,
    query=LogQuery,
    responses={**LOG_ANSWERS, 404: "No such config"},
)
def config_logs(config_id: int, query: LogQuery) -> Response:
    session = get_session()
    if session.get(DeviceConfig, config_id) is None:
        raise NotFound(f"config {config_id} does not exist")
    page = _read(query, Selection(config_id=config_id))
    drops = session.get(DeviceLogDrops, config_id)
    dropped = (
        LogDropsSchema(count=drops.dropped, last_dropped_at=drops.last_dropped_at)
        if drops is not None
        else None
    )
    return _answer(query, page, dropped, f"logs-{config_id}")


@bp.get("/logs")
@requires(Role.ADMIN)
@operation(
    "The fleet's logs (or a model's, or a firmware version's), newest first; `after` + "
    "`wait` to follow (long poll); `format` to download as text or NDJSON",
    tag=TAG,
    query=FleetLogQuery,
    responses=LOG_ANSWERS,
)
def fleet_logs(query: FleetLogQuery) -> Response:
    base = Selection(model=query.model, firmware_version=query.firmware_version)
    return _answer(query, _read(query, base), None, "logs")


@bp.get("/logs/devices")
@requires(Role.ADMIN)
@operation(
    "Which devices logged at a level or worse (default E) since a time (default: an hour "
    "ago), with how many such lines",
    tag=TAG,
    query=LevelDevicesQuery,
    responses={200: LevelDevicesSchema, 400: "Bad level or since"},
)
def devices_at_level_route(query: LevelDevicesQuery) -> Response:
    since = query.since or datetime.now(UTC) - timedelta(hours=1)
    max_level = level_number(query.level) or 1
    rows = devices_at_level(get_session(), max_level, since)
    devices = [
        LevelDeviceSchema(id=row.config_id, lines=row.lines, last_at=row.last) for row in rows
    ]
    return json_response(LevelDevicesSchema(since=since, devices=devices))


def _read(query: LogQuery, base: Selection) -> Page:
    session = get_session()
    download = query.format != "json"
    limit = query.limit or (MAX_LIMIT if download else 100)
    if not download and limit > MAX_LIMIT:
        raise InvalidInput(f"limit is at most {MAX_LIMIT} (download with format= for more)")
    if query.wait is not None and query.after is None:
        raise InvalidInput("wait needs after (the `latest` of an answer)")
    if query.after is not None and query.wait and not request.environ.get(WAITED):
        # Plain WSGI: no event loop to wait on; this thread waits instead.
        device_logs().live.wait_blocking(base.config_id, query.after, query.wait)
    selection = Selection(
        config_id=base.config_id,
        since=query.since,
        until=query.until,
        max_level=level_number(query.level) if query.level else None,
        tag=query.tag,
        q=query.q,
        model=base.model,
        firmware_version=base.firmware_version,
        cursor=query.cursor,
        after=query.after,
        limit=limit,
    )
    return read(session, selection)


def _answer(query: LogQuery, page: Page, dropped: LogDropsSchema | None, name: str) -> Response:
    if query.format == "json":
        lines = [line_schema(row) for row in page.rows]
        answer = LogPageSchema(lines=lines, cursor=page.cursor, latest=page.latest, dropped=dropped)
        response = json_response(answer)
        response.headers["Cache-Control"] = "no-store"
        return response
    if query.format == "ndjson":
        body = "".join(line_schema(row).model_dump_json() + "\n" for row in page.rows)
        response = Response(body, mimetype="application/x-ndjson")
    else:
        body = "".join(_text_line(row) for row in page.rows)
        response = Response(body, mimetype="text/plain")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.{query.format}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _text_line(row: t.Any) -> str:
    uptime = f"({row.uptime_ms}) " if row.uptime_ms is not None else ""
    tag = f"{row.tag}: " if row.tag else ""
    when = row.received_at.isoformat()
    level = LETTERS.get(row.level, "I")
    return f"{when} {row.mac_address} {level} {uptime}{tag}{row.message}\n"
