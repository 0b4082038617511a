"""For operators: Kubernetes probes and the Prometheus endpoint."""

from __future__ import annotations

import logging

from flask import Blueprint
from flask import Response
from flask import jsonify
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from iotsupport.api.access import public
from iotsupport.api.spec import operation
from iotsupport.extensions import state
from iotsupport.schemas.health import HealthSchema

log = logging.getLogger(__name__)
bp = Blueprint("operations", __name__)


@bp.get("/api/health")
@public
@operation(
    "Readiness: 200 when the database answers, 503 with the reason when not",
    tag="operations",
    responses={200: HealthSchema, 503: HealthSchema},
)
def health() -> Response:
    mqtt = state().publisher.state
    try:
        state().database.call_with_deadline(_ping)
    except (SQLAlchemyError, TimeoutError) as exc:
        log.warning("health: database unreachable: %s", type(exc).__name__)
        body = HealthSchema(
            status="unhealthy", database="unreachable", mqtt=mqtt, reason=_reason(exc)
        )
        return Response(body.model_dump_json(), status=503, mimetype="application/json")
    body = HealthSchema(status="healthy", database="ok", mqtt=mqtt)
    return Response(body.model_dump_json(exclude_none=True), mimetype="application/json")


def _ping(session: Session) -> None:
    session.execute(text("SELECT 1"))


def _reason(exc: Exception) -> str:
    # Our own TimeoutError says how long we waited; a driver's message stays inside.
    return str(exc) if isinstance(exc, TimeoutError) else "the database is not reachable"


@bp.get("/api/health/live")
@public
@operation("Liveness: 200 while the process answers", tag="operations", responses={200: "Alive"})
def live() -> Response:
    return jsonify(status="alive")


@bp.get("/metrics")
@public
def metrics() -> Response:
    return Response(generate_latest(state().scrape_registry), mimetype=CONTENT_TYPE_LATEST)
