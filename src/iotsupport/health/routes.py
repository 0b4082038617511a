"""/api/configs/{id}/health and /api/models/{code}/releases/{version}/health."""

from __future__ import annotations

from datetime import timedelta

from flask import Blueprint
from flask import Response

from iotsupport.api import json_response
from iotsupport.api.spec import operation
from iotsupport.auth.access import Role
from iotsupport.auth.access import requires
from iotsupport.configs.service import ConfigService
from iotsupport.db import get_session
from iotsupport.db.base import utcnow
from iotsupport.extensions import state
from iotsupport.health.presence import Presence
from iotsupport.health.release_health import previous_release
from iotsupport.health.release_health import release_health
from iotsupport.health.schemas import DeviceHealthSchema
from iotsupport.health.schemas import HealthQuery
from iotsupport.health.schemas import ReleaseHealthQuery
from iotsupport.health.schemas import ReleaseHealthSchema
from iotsupport.health.service import device_health
from iotsupport.releases.service import ReleaseService

bp = Blueprint("health", __name__, url_prefix="/api")
TAG = "health"


def _presence() -> Presence:
    return next(c for c in state().device_columns if isinstance(c, Presence))


@bp.get("/configs/<int:config_id>/health")
@requires(Role.ADMIN)
@operation(
    "A device's health: samples, hours, resets, online state",
    tag=TAG,
    query=HealthQuery,
    responses={200: DeviceHealthSchema, 400: "Bad since", 404: "Unknown id"},
)
def config_health(config_id: int, query: HealthQuery) -> Response:
    session = get_session()
    ConfigService(session).get(config_id)  # 404 for an unknown id
    now = utcnow()
    since = query.since or now - timedelta(hours=24)
    body = DeviceHealthSchema.model_validate(
        device_health(session, _presence(), config_id, since, now)
    )
    return json_response(body)


@bp.get("/models/<code>/releases/<version>/health")
@requires(Role.ADMIN)
@operation(
    "A release's health next to the release before it",
    tag=TAG,
    query=ReleaseHealthQuery,
    responses={200: ReleaseHealthSchema, 404: "Unknown model or version"},
)
def release_health_view(code: str, version: str, query: ReleaseHealthQuery) -> Response:
    session = get_session()
    model, release = ReleaseService(session).get(code, version)
    since = utcnow() - timedelta(days=query.days)
    previous = previous_release(session, model.id, release.version)
    body = ReleaseHealthSchema.model_validate(
        {
            "model": model.code,
            "since": since,
            "release": release_health(session, model.id, release.version, since).__dict__,
            "previous": (
                release_health(session, model.id, previous.version, since).__dict__
                if previous is not None
                else None
            ),
        }
    )
    return json_response(body)
