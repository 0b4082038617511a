"""Rollouts (admins) and the device firmware route: what a device should run."""

from __future__ import annotations

import time
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from flask import Blueprint
from flask import Response
from flask import request

from iotsupport.api import json_response
from iotsupport.api.spec import ResponseSpec
from iotsupport.api.spec import operation
from iotsupport.auth.access import Role
from iotsupport.auth.access import current_actor
from iotsupport.auth.access import requires
from iotsupport.auth.access import requires_device
from iotsupport.configs.tables import DeviceCheckin
from iotsupport.credentials.device_auth import current_device
from iotsupport.db import get_session
from iotsupport.extensions import state
from iotsupport.releases.schemas import image_path
from iotsupport.rollouts.health_watch import RolloutHealth
from iotsupport.rollouts.schemas import FirmwareTargetSchema
from iotsupport.rollouts.schemas import RolloutCreateSchema
from iotsupport.rollouts.schemas import RolloutListSchema
from iotsupport.rollouts.schemas import RolloutSchema
from iotsupport.rollouts.service import RolloutService
from iotsupport.rollouts.tables import Rollout
from iotsupport.rollouts.targets import DeviceTarget
from iotsupport.rollouts.targets import device_target
from iotsupport.rollouts.views import rollout_view
from iotsupport.rollouts.views import summaries

bp = Blueprint("rollouts", __name__, url_prefix="/api")

TAG = "rollouts"
ROLLOUT = "/rollouts/<int:rollout_id>"
STATE_CONFLICT = "rollout_state: the rollout's state does not allow this (details.state)"


def rollout_service() -> RolloutService:
    app_state = state()
    return RolloutService(
        get_session(),
        actor=current_actor(),
        timeout_seconds=app_state.settings.rollout_device_timeout_seconds,
    )


def rollout_response(rollout: Rollout, status: int = 200) -> Response:
    timeout = timedelta(seconds=state().settings.rollout_device_timeout_seconds)
    return json_response(rollout_view(get_session(), rollout, timeout), status)


@bp.post("/models/<code>/rollouts")
@requires(Role.ADMIN)
@operation(
    "Start a staged rollout of a release to the model's devices",
    tag=TAG,
    body=RolloutCreateSchema,
    responses={
        201: RolloutSchema,
        400: "Bad stages or threshold",
        404: "Unknown model or release",
        409: "rollout_active: the model has an active rollout",
    },
)
def start_rollout(code: str, body: RolloutCreateSchema) -> Response:
    rollout = rollout_service().start(
        code,
        body.version,
        body.stages,
        error_threshold=body.error_threshold,
        approve_each_stage=body.approve_each_stage,
        unverified_reports=body.unverified_reports,
        health=RolloutHealth(
            body.health_window,
            body.max_crash_rate,
            body.compare_to_previous,
            body.crash_free_margin,
        ),
    )
    return rollout_response(rollout, 201)


@bp.get("/models/<code>/rollouts")
@requires(Role.ADMIN)
@operation(
    "A model's rollouts, newest first (device counts as last evaluated)",
    tag=TAG,
    responses={200: RolloutListSchema, 404: "Unknown model"},
)
def list_rollouts(code: str) -> Response:
    model, rollouts = rollout_service().of_model(code)
    rows = summaries(get_session(), model, rollouts)
    return json_response(RolloutListSchema(model=model.code, rollouts=rows, count=len(rows)))


@bp.get(ROLLOUT)
@requires(Role.ADMIN)
@operation(
    "A rollout: its state, and per stage the device counts and lists",
    tag=TAG,
    responses={200: RolloutSchema, 404: "Unknown rollout"},
)
def get_rollout(rollout_id: int) -> Response:
    return rollout_response(rollout_service().get(rollout_id))


def act(rollout_id: int, action: str) -> Response:
    return rollout_response(rollout_service().act(rollout_id, action))


ACTION_ANSWERS: dict[int, ResponseSpec] = {
    200: RolloutSchema,
    404: "Unknown rollout",
    409: STATE_CONFLICT,
}


@bp.post(f"{ROLLOUT}/pause")
@requires(Role.ADMIN)
@operation("Pause: no further stage starts", tag=TAG, responses=ACTION_ANSWERS)
def pause_rollout(rollout_id: int) -> Response:
    return act(rollout_id, "pause")


@bp.post(f"{ROLLOUT}/resume")
@requires(Role.ADMIN)
@operation(
    "Resume a paused rollout (after an error pause, the stage's failures are accepted)",
    tag=TAG,
    responses=ACTION_ANSWERS,
)
def resume_rollout(rollout_id: int) -> Response:
    return act(rollout_id, "resume")


@bp.post(f"{ROLLOUT}/cancel")
@requires(Role.ADMIN)
@operation(
    "Cancel: devices that have not updated get their previous target back",
    tag=TAG,
    responses=ACTION_ANSWERS,
)
def cancel_rollout(rollout_id: int) -> Response:
    return act(rollout_id, "cancel")


@bp.post(f"{ROLLOUT}/approve")
@requires(Role.ADMIN)
@operation("Approve the next stage (approve_each_stage)", tag=TAG, responses=ACTION_ANSWERS)
def approve_rollout(rollout_id: int) -> Response:
    return act(rollout_id, "approve")


@bp.get("/device/firmware")
@requires_device(always=True)
@operation(
    "Device endpoint: the release this device should run, or 204 when it runs it "
    "(its token; send X-Firmware-Version and X-Firmware-SHA256)",
    tag="devices",
    responses={
        200: FirmwareTargetSchema,
        204: "It runs what it should (or has nothing to run)",
        401: "No valid device token (needed in every DEVICE_AUTH mode)",
        429: "Too many failed tokens from this address",
    },
)
def device_firmware() -> Response:
    device = current_device()
    assert device is not None  # always=True: the access hook let only a device through
    session = get_session()
    target = device_target(session, device.config_id)
    version = request.headers.get("X-Firmware-Version")
    sha256 = request.headers.get("X-Firmware-SHA256")
    if version is None:  # then what its last fetch said
        checkin = session.get(DeviceCheckin, device.config_id)
        if checkin is not None:
            version, sha256 = checkin.firmware_version, checkin.firmware_sha256
    if target is None or runs(target, version, sha256):
        response = Response(status=204)
    else:
        response = json_response(offer(target, device.mac_address))
    response.headers["Cache-Control"] = "no-cache"
    return response


def offer(target: DeviceTarget, mac: str) -> FirmwareTargetSchema:
    """The target's download: its URL (with the token), and one signed for this device."""
    base = state().settings.public_url  # never the request's Host
    url = base + image_path(target.model, target.version)
    path = f"/api/models/{target.model}/releases/{target.version}/image"  # as Flask sees it
    query, expires = state().devices.signer.sign(path, mac, time.time())
    return FirmwareTargetSchema(
        version=target.version,
        size=target.size,
        sha256=target.sha256,
        url=url,
        signed_url=f"{url}?{query}",
        signed_url_expires_at=datetime.fromtimestamp(expires, UTC),
    )


def runs(target: DeviceTarget, version: str | None, sha256: str | None) -> bool:
    if version != target.version:
        return False
    return sha256 is None or sha256.lower() in (target.sha256, target.image_sha256)
