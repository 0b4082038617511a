"""For operators: Kubernetes probes and the Prometheus endpoint."""

from __future__ import annotations

import logging
import typing as t

from flask import Blueprint
from flask import Response
from flask import jsonify
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from iotsupport.api import json_response
from iotsupport.api.schemas import HealthSchema
from iotsupport.api.spec import operation
from iotsupport.assets.store import FOLDER_PROBLEMS
from iotsupport.auth.access import public
from iotsupport.extensions import state

log = logging.getLogger(__name__)
bp = Blueprint("operations", __name__)


@bp.get("/api/health")
@public
@operation(
    "Readiness: 200 when the database and the assets folder are usable, 503 with the reason",
    tag="operations",
    responses={200: HealthSchema, 503: HealthSchema},
)
def health() -> Response:
    mqtt = state().publisher.state
    reasons: list[str] = []
    database: t.Literal["ok", "unreachable"] = "ok"
    try:
        state().database.call_with_deadline(_ping)
    except (SQLAlchemyError, TimeoutError) as exc:
        log.warning("health: database unreachable: %s", type(exc).__name__)
        database = "unreachable"
        reasons.append(_reason(exc))
    assets = state().assets
    folder = assets.store.folder_state() if assets is not None else "disabled"
    if (problem := FOLDER_PROBLEMS.get(folder)) is not None:
        log.warning("health: %s", problem)
        reasons.append(problem)
    pending = None
    if database == "ok" and state().accounts.enabled:
        try:
            pending = state().accounts.pending()
        except (SQLAlchemyError, TimeoutError):
            pending = None
    body = HealthSchema(
        status="unhealthy" if reasons else "healthy",
        database=database,
        mqtt=mqtt,
        assets=folder,
        device_cache=state().devices.cache.state,
        broker_accounts_pending=pending,
        reason="; ".join(reasons) or None,
    )
    return json_response(body.model_dump_json(exclude_none=True), 503 if reasons else 200)


def _ping(session: Session) -> None:
    session.execute(text("SELECT 1"))


def _reason(exc: Exception) -> str:
    # Our own TimeoutError says how long we waited; a driver's message stays inside.
    return str(exc) if isinstance(exc, TimeoutError) else "the database is not reachable"


@bp.get("/api/health/live")
@public
@operation(
    "Liveness: 200 while the process answers",
    tag="operations",
    responses={200: "Alive"},
    database=False,
)
def live() -> Response:
    return jsonify(status="alive")


@bp.get("/metrics")
@public
def metrics() -> Response:
    return Response(generate_latest(state().scrape_registry), mimetype=CONTENT_TYPE_LATEST)
