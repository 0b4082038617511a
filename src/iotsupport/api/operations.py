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

from iotsupport.api.spec import operation
from iotsupport.db import get_session
from iotsupport.extensions import state
from iotsupport.schemas.health import HealthSchema

log = logging.getLogger(__name__)
bp = Blueprint("operations", __name__)


@bp.get("/api/health")
@operation(
    "Readiness: 200 when the database answers, 503 with the reason when not",
    tag="operations",
    responses={200: HealthSchema, 503: HealthSchema},
)
def health() -> Response:
    mqtt = state().publisher.state
    try:
        get_session().execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        log.warning("health: database unreachable: %s", type(exc).__name__)
        body = HealthSchema(
            status="unhealthy",
            database="unreachable",
            mqtt=mqtt,
            reason="the database is not reachable",
        )
        return Response(body.model_dump_json(), status=503, mimetype="application/json")
    body = HealthSchema(status="healthy", database="ok", mqtt=mqtt)
    return Response(body.model_dump_json(exclude_none=True), mimetype="application/json")


@bp.get("/api/health/live")
@operation("Liveness: 200 while the process answers", tag="operations", responses={200: "Alive"})
def live() -> Response:
    return jsonify(status="alive")


@bp.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(state().scrape_registry), mimetype=CONTENT_TYPE_LATEST)
