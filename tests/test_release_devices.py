"""The device side of releases: who may download an image and ask for its firmware target,
in each DEVICE_AUTH mode and with login on."""

from __future__ import annotations

import pytest
from conftest import DeviceAppFactory
from conftest import assert_error
from credentials_support import basic
from credentials_support import bearer
from local_issuer import LocalIssuer
from rollout_support import Fleet

IMAGE = "/api/models/thermo/releases/2.0.0/image"
FIRMWARE = "/api/device/firmware"


@pytest.mark.parametrize("mode", ["off", "optional", "required"])
def test_downloads_and_targets_follow_device_auth(device_app: DeviceAppFactory, mode: str) -> None:
    fleet = Fleet(device_app(device_auth=mode), 2)
    device = fleet.devices[0]
    client = fleet.client
    fleet.start(["100%"])
    assert client.get(IMAGE, headers=device.auth).status_code == 200
    assert client.get(IMAGE, headers=basic(device.mac.upper(), device.token)).status_code == 200
    # "A device or an admin": with login off every caller is an admin, whatever DEVICE_AUTH
    # says (with login on, see below, a stranger is refused).
    assert client.get(IMAGE).status_code == 200
    wrong = client.get(IMAGE, headers=bearer("iotd_" + "x" * 43))
    if mode == "off":
        assert wrong.status_code == 200  # tokens are not checked
    else:
        assert_error(wrong, 401, "device_unauthorized")
    # The firmware route means nothing without knowing the device: a token in every mode.
    assert_error(client.get(FIRMWARE), 401, "device_unauthorized")
    offer = client.get(FIRMWARE, headers={**device.auth, "X-Firmware-Version": "1.0.0"})
    assert offer.status_code == 200 and offer.get_json()["version"] == "2.0.0"
    assert offer.headers["Cache-Control"] == "no-cache"


def test_a_device_token_opens_no_admin_route_and_an_admin_may_download(
    device_app: DeviceAppFactory, issuer: LocalIssuer
) -> None:
    plain = Fleet(device_app(), 1)
    app = device_app(**issuer.login_settings())
    client = app.test_client()
    device = plain.devices[0]
    for path in ("/api/models/thermo/releases", "/api/models/thermo/rollouts", "/api/rollouts/1"):
        assert_error(client.get(path, headers=device.auth), 401)
    admin = {"Authorization": f"Bearer {issuer.token(roles=['admin'])}"}
    assert client.get(IMAGE, headers=admin).status_code == 200
    uploader = {"Authorization": f"Bearer {issuer.token(roles=['asset-uploader'])}"}
    assert_error(client.get(IMAGE, headers=uploader), 403)
    required = device_app(device_auth="required", **issuer.login_settings()).test_client()
    assert_error(required.get(IMAGE), 401, "device_unauthorized")
    assert required.get(IMAGE, headers=device.auth).status_code == 200
    assert client.get(IMAGE, headers=device.auth).status_code == 200
    assert_error(client.get(FIRMWARE, headers=admin), 401, "device_unauthorized")


def test_a_download_from_the_start_marks_the_device_downloading(
    device_app: DeviceAppFactory,
) -> None:
    fleet = Fleet(device_app(), 3)
    rollout = fleet.start(["100%"])
    a, b, c = fleet.devices
    client = fleet.client
    client.head(IMAGE, headers=a.auth)  # a HEAD is no download
    client.get(IMAGE, headers={**b.auth, "Range": "bytes=100-"})  # a resumption
    client.get(IMAGE, headers={**c.auth, "Range": "bytes=0-99"})  # a start, in pieces
    states = fleet.states(rollout["id"])
    assert (states[a.mac], states[b.mac], states[c.mac]) == ("pending", "pending", "downloading")
