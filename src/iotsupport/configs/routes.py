"""/api/configs: the admin CRUD and the devices' own fetch."""

from __future__ import annotations

import typing as t

from flask import Blueprint
from flask import Response
from flask import g
from flask import request

from iotsupport.api import json_response
from iotsupport.api.spec import operation
from iotsupport.auth.access import Role
from iotsupport.auth.access import current_actor
from iotsupport.auth.access import requires
from iotsupport.auth.access import requires_device
from iotsupport.configs.history import HistoryService
from iotsupport.configs.list_columns import config_with_columns
from iotsupport.configs.listing import ConfigListing
from iotsupport.configs.schemas import ConfigCreateSchema
from iotsupport.configs.schemas import ConfigListQuery
from iotsupport.configs.schemas import ConfigListSchema
from iotsupport.configs.schemas import ConfigResponseSchema
from iotsupport.configs.schemas import ConfigUpdateSchema
from iotsupport.configs.schemas import config_json
from iotsupport.configs.schemas import config_list_json
from iotsupport.configs.service import UNSET
from iotsupport.configs.service import ConfigService
from iotsupport.configs.tables import DeviceConfig
from iotsupport.db import get_session
from iotsupport.db.base import utcnow
from iotsupport.device_cache import STALE_HEADER
from iotsupport.device_cache import DeviceDocument
from iotsupport.device_models.service import ModelService
from iotsupport.extensions import state


def config_service() -> ConfigService:
    """The request's config service; its changes are recorded as made by the caller."""
    app_state = state()
    return ConfigService(
        get_session(),
        actor=current_actor(),
        keep_versions=app_state.settings.history_keep_versions,
        validation_timeout=app_state.settings.schema_validation_timeout_seconds,
        accounts=app_state.accounts,
    )


def history_service() -> HistoryService:
    return HistoryService(get_session(), keep_versions=state().settings.history_keep_versions)


bp = Blueprint("configs", __name__, url_prefix="/api/configs")

CONFIG_ID = "<int:config_id>"
TAG = "configs"
# How far before a `since` cursor the changes start, besides two check-in flushes: a
# write commits a moment after the time it records (configs/listing.py).
CHANGES_OVERLAP_SECONDS = 10.0


def config_response(
    config: DeviceConfig, status: int = 200, extra: dict[str, t.Any] | None = None
) -> Response:
    """`extra`: other features' fields of it (e.g. health's online), read when not given."""
    if extra is None:
        now = utcnow()
        extra = {}
        for columns in state().device_columns:
            extra.update(columns.for_config(get_session(), config.id, now))
    response = json_response(config_json(config, extra), status)
    response.set_etag(config.etag)
    return response


@bp.get("")
@requires(Role.ADMIN)
@operation(
    "List configs, sorted by MAC; search their content (q); what changed since a cursor",
    tag=TAG,
    query=ConfigListQuery,
    responses={200: ConfigListSchema, 400: "Bad q or since", 404: "Unknown model"},
)
def list_configs(query: ConfigListQuery) -> Response:
    session = get_session()
    model_id = ModelService(session).get(query.model).id if query.model is not None else None
    overlap = CHANGES_OVERLAP_SECONDS + 2 * state().settings.checkin_flush_seconds
    columns = state().device_columns
    listing = ConfigListing(session, overlap_seconds=overlap, columns=columns).read(
        model_id=model_id, search=query.q, since=query.since
    )
    return json_response(config_list_json(listing, search=query.q is not None))


@bp.post("")
@requires(Role.ADMIN)
@operation(
    "Create a config",
    tag=TAG,
    body=ConfigCreateSchema,
    responses={
        201: ConfigResponseSchema,
        400: "Bad MAC or content; schema_violation: the content does not meet the model's schema",
        404: "Unknown model",
        409: "MAC exists",
    },
)
def create_config(body: ConfigCreateSchema) -> Response:
    config = config_service().create(body.mac_address, body.content, body.model)
    return config_response(config, 201)


@bp.get(f"/{CONFIG_ID}")
@requires(Role.ADMIN)
@operation("Get one config", tag=TAG, responses={200: ConfigResponseSchema, 404: "Unknown id"})
def get_config(config_id: int) -> Response:
    columns = state().device_columns  # e.g. health's online, last_seen_at: one statement
    config, extra = config_with_columns(get_session(), config_id, columns, utcnow())
    return config_response(config, extra=extra)


@bp.put(f"/{CONFIG_ID}")
@requires(Role.ADMIN)
@operation(
    "Replace a config's content (send If-Match to refuse overwriting a newer save)",
    tag=TAG,
    body=ConfigUpdateSchema,
    responses={
        200: ConfigResponseSchema,
        400: "Bad content; schema_violation: the content does not meet the model's schema",
        404: "Unknown id or model",
        412: "Stale",
    },
)
def update_config(config_id: int, body: ConfigUpdateSchema) -> Response:
    expected = request.if_match if "If-Match" in request.headers else None
    config = config_service().update(
        config_id,
        body.content,
        expected_etags=expected,
        mac_address=body.mac_address,
        model=body.model if "model" in body.model_fields_set else UNSET,
    )
    return config_response(config)


@bp.delete(f"/{CONFIG_ID}")
@requires(Role.ADMIN)
@operation("Delete a config", tag=TAG, responses={204: "Deleted", 404: "Unknown id"})
def delete_config(config_id: int) -> Response:
    config_service().delete(config_id)
    return Response(status=204)


@bp.get("/<mac:mac>.json")
@requires_device(mac_arg="mac")
@operation(
    "Device endpoint: the stored config verbatim (the device's token, as DEVICE_AUTH says)",
    tag="devices",
    responses={
        200: "The config exactly as saved",
        304: "Unchanged since the ETag sent in If-None-Match",
        400: "Malformed MAC",
        401: "No valid token for this device, or no such device (one answer for both)",
        404: "Unknown MAC (DEVICE_AUTH=off only)",
        429: "Too many failed tokens from this address",
    },
)
def device_config(mac: str) -> Response:
    # The access hook has read the document (with the device's credential) already.
    document: DeviceDocument = g.device_document
    state().reports.fetched(
        document.config_id, document.version, request.environ, verified="device" in g
    )
    if document.content is None or request.if_none_match.star_tag:
        response = Response(status=304)
    else:
        response = json_response(document.content)
    response.set_etag(document.etag)
    response.headers["Cache-Control"] = "no-cache"
    if document.stale:  # from memory while the database is away (README "Outages")
        response.headers[STALE_HEADER] = "stale"
    return response
