"""Device credentials: issue, revoke and provision (admins); rotate its own (a device)."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import request

from iotsupport.api import json_response
from iotsupport.api.spec import operation
from iotsupport.auth.access import Role
from iotsupport.auth.access import current_actor
from iotsupport.auth.access import requires
from iotsupport.auth.access import requires_device
from iotsupport.configs.desired import desired_topic
from iotsupport.credentials.device_auth import current_device
from iotsupport.credentials.provisioning import Bundle
from iotsupport.credentials.provisioning import nvs_image
from iotsupport.credentials.schemas import IssuedTokenSchema
from iotsupport.credentials.schemas import OwnTokenSchema
from iotsupport.credentials.schemas import ProvisioningBundleSchema
from iotsupport.credentials.schemas import ProvisioningSchema
from iotsupport.credentials.service import CredentialService
from iotsupport.credentials.service import IssuedToken
from iotsupport.db import get_session
from iotsupport.errors import DeviceUnauthorized
from iotsupport.extensions import state

bp = Blueprint("credentials", __name__, url_prefix="/api/configs")
device_bp = Blueprint("device", __name__, url_prefix="/api/device")

CONFIG_ID = "<int:config_id>"
TAG = "credentials"


def credential_service() -> CredentialService:
    app_state = state()
    return CredentialService(
        get_session(), app_state.accounts, grace=app_state.devices.grace, actor=current_actor()
    )


def secret_response(
    body: ProvisioningBundleSchema | IssuedTokenSchema | OwnTokenSchema | bytes, status: int = 200
) -> Response:
    """A body holding a token: never stored by a cache on the way."""
    if isinstance(body, bytes):
        response = Response(body, status=status, mimetype="application/octet-stream")
    else:
        response = json_response(body, status)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post(f"/{CONFIG_ID}/credential")
@requires(Role.ADMIN)
@operation(
    "Issue a device token (again: rotate; the device's token works until the new one is used "
    "or DEVICE_TOKEN_GRACE_HOURS pass)",
    tag=TAG,
    responses={201: IssuedTokenSchema, 404: "Unknown config"},
)
def issue_credential(config_id: int) -> Response:
    issued = credential_service().issue(config_id)
    return secret_response(IssuedTokenSchema(token=issued.token, issued_at=issued.issued_at), 201)


@bp.delete(f"/{CONFIG_ID}/credential")
@requires(Role.ADMIN)
@operation(
    "Revoke the device's credential: its tokens stop working at once",
    tag=TAG,
    responses={204: "Revoked", 404: "Unknown config, or it has no credential"},
)
def revoke_credential(config_id: int) -> Response:
    credential_service().revoke(config_id)
    return Response(status=204)


@bp.post(f"/{CONFIG_ID}/provisioning")
@requires(Role.ADMIN)
@operation(
    "Download a provisioning bundle (JSON, or an NVS partition image) with a new device token",
    tag=TAG,
    body=ProvisioningSchema,
    responses={
        200: ProvisioningBundleSchema,
        400: "Bad format or partition size, or the bundle does not fit",
        404: "Unknown config",
    },
)
def provision(config_id: int, body: ProvisioningSchema) -> Response:
    issued = credential_service().issue(config_id)
    bundle = _bundle(issued, body)
    name = issued.mac_address.replace(":", "-")
    if body.format == "nvs":
        response = secret_response(nvs_image(bundle, body.partition_size))
        filename = f"{name}-nvs.bin"
    else:
        response = secret_response(
            ProvisioningBundleSchema(
                mac_address=bundle.mac_address,
                server_url=bundle.server_url,
                config_url=bundle.config_url,
                token=bundle.token,
                mqtt_url=bundle.mqtt_url,
                mqtt_username=bundle.mqtt_username,
                desired_topic=desired_topic(bundle.mac_address),
                wifi_ssid=bundle.wifi_ssid,
                wifi_password=bundle.wifi_password,
                issued_at=issued.issued_at,
            )
        )
        filename = f"{name}-provisioning.json"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _bundle(issued: IssuedToken, body: ProvisioningSchema) -> Bundle:
    settings = state().settings
    password = body.wifi_password.get_secret_value() if body.wifi_password else None
    return Bundle(
        mac_address=issued.mac_address,
        server_url=settings.baseurl or request.host_url.rstrip("/"),
        token=issued.token,
        mqtt_url=settings.device_mqtt_url or settings.mqtt_url,
        mqtt_username=issued.mac_address if state().accounts.enabled else None,
        wifi_ssid=body.wifi_ssid,
        wifi_password=password,
    )


@device_bp.post("/credential")
@requires_device(always=True)
@operation(
    "Device: a fresh token for the calling device (no body). The token it used keeps working "
    "until a fresh one is used; asking again (a lost answer) is safe. A token an admin's "
    "rotation superseded may fetch during its grace but never rotates",
    tag="devices",
    responses={
        200: OwnTokenSchema,
        401: "No valid device token",
        403: "token_superseded: an admin issued a new token; install it",
        429: "Too many failures",
    },
)
def rotate_own_credential() -> Response:
    device = current_device()
    if device is None:  # the access hook only lets authenticated devices in
        raise DeviceUnauthorized()
    issued = credential_service().rotate_own(device.config_id, device.token_hash)
    return secret_response(OwnTokenSchema(token=issued.token))
