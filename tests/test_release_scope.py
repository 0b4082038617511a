"""Release images are scoped: a device downloads its own model's images, with its token or
with the signed URL its firmware offer carried, and nothing else."""

from __future__ import annotations

import hashlib
import time
from urllib.parse import parse_qsl
from urllib.parse import urlencode
from urllib.parse import urlsplit

import pytest
from conftest import DeviceAppFactory
from conftest import assert_error
from credentials_support import basic
from local_issuer import LocalIssuer
from release_support import add_release
from release_support import create_model
from rollout_support import Device
from rollout_support import Fleet
from sqlalchemy import select

from iotsupport.credentials.tables import ServerSecret
from iotsupport.extensions import state

IMAGE = "/api/models/{}/releases/{}/image"


def other_model(fleet: Fleet) -> Device:
    """A device of model `other`, which has releases 1.0.0 and 3.0.0."""
    create_model(fleet.client, "other")
    for version in ("1.0.0", "3.0.0"):
        add_release(fleet.client, "other", version)
    return fleet.add_device(200, model="other")


def signed(fleet: Fleet, device: Device) -> tuple[str, dict[str, str]]:
    """The path and query of the signed URL the device's firmware offer carries."""
    offer = fleet.firmware(device, "1.0.0")
    assert offer.status_code == 200, offer.get_data(as_text=True)
    body = offer.get_json()
    url = urlsplit(body["signed_url"])
    assert body["url"] == body["signed_url"].split("?")[0]
    return url.path, dict(parse_qsl(url.query))


@pytest.mark.parametrize("mode", ["optional", "required"])
def test_a_device_token_opens_only_its_own_models_images(
    device_app: DeviceAppFactory, mode: str
) -> None:
    fleet = Fleet(device_app(device_auth=mode), 1)
    device, stranger = fleet.devices[0], other_model(fleet)
    client = fleet.client
    own = client.get(IMAGE.format("thermo", "2.0.0"), headers=device.auth)
    assert own.status_code == 200
    assert hashlib.sha256(own.data).hexdigest() == fleet.releases["2.0.0"]["sha256"]
    missing = client.get(IMAGE.format("other", "9.9.9"), headers=device.auth)
    assert_error(missing, 404, "not_found")
    for version in ("1.0.0", "3.0.0"):
        path = IMAGE.format("other", version)
        for headers in (device.auth, basic(device.mac, device.token)):
            for method in (client.get, client.head):
                refused = method(path, headers=headers)
                assert refused.status_code == 404
                assert b"ESP" not in refused.data and refused.headers.get("ETag") is None
            # Said as for a release that does not exist: the device learns nothing.
            body = client.get(path, headers=headers).get_json()
            assert body == {**missing.get_json(), "error": body["error"]}
            assert body["error"] == f"model 'other' has no release '{version}'"
        assert client.get(path, headers=stranger.auth).status_code == 200
        assert client.get(path).status_code == 200  # login off: the caller is an admin


def test_nobody_downloads_anonymously_with_login_on_unless_auth_is_off(
    device_app: DeviceAppFactory, issuer: LocalIssuer
) -> None:
    fleet = Fleet(device_app(), 1)
    path = IMAGE.format("thermo", "2.0.0")
    for mode in ("optional", "required"):
        client = device_app(device_auth=mode, **issuer.login_settings()).test_client()
        assert_error(client.get(path), 401, "device_unauthorized")
        assert client.get(path, headers=fleet.devices[0].auth).status_code == 200
        admin = {"Authorization": f"Bearer {issuer.token(roles=['admin'])}"}
        assert client.get(path, headers=admin).status_code == 200
    off = device_app(device_auth="off", **issuer.login_settings()).test_client()
    assert off.get(path).status_code == 200  # DEVICE_AUTH=off: as before


def test_a_signed_url_works_without_a_token_for_its_device_and_release_only(
    device_app: DeviceAppFactory, issuer: LocalIssuer
) -> None:
    fleet = Fleet(device_app(), 2)
    device, neighbour = fleet.devices
    rollout = fleet.start(["100%"])
    path, query = signed(fleet, device)
    assert path == IMAGE.format("thermo", "2.0.0") and query["device"] == device.mac
    client = device_app(device_auth="required", **issuer.login_settings()).test_client()
    answer = client.get(path, query_string=query)
    assert answer.status_code == 200
    assert hashlib.sha256(answer.data).hexdigest() == fleet.releases["2.0.0"]["sha256"]
    # Until it expires, a shared cache may keep it; never longer.
    max_age = int(answer.headers["Cache-Control"].removeprefix("public, max-age="))
    assert 850 < max_age <= int(query["expires"]) - time.time() + 1
    resumed = client.get(path, query_string=query, headers={"Range": "bytes=100-"})
    assert resumed.status_code == 206
    assert fleet.states(rollout["id"])[device.mac] == "downloading"  # as that device
    assert fleet.states(rollout["id"])[neighbour.mac] == "pending"

    def refused(path: str, query: dict[str, str] | list[tuple[str, str]]) -> None:
        answer = client.get(path, query_string=query)
        assert_error(answer, 403, "signed_url_invalid")
        assert query_secret(query) not in answer.get_data(as_text=True)

    # Each part changed: the device (to another real one), the expiry, the signature.
    refused(path, {**query, "device": neighbour.mac})
    refused(path, {**query, "expires": str(int(query["expires"]) + 1)})
    refused(path, {**query, "expires": str(int(query["expires"]) - 1)})
    last = query["signature"][-1]
    refused(path, {**query, "signature": query["signature"][:-1] + ("A" if last != "A" else "B")})
    refused(path, {**query, "signature": query["signature"].swapcase()})
    refused(path, {**query, "signature": query["signature"][:-1]})
    refused(path, {**query, "signature": ""})
    refused(path, {key: value for key, value in query.items() if key != "expires"})
    # A parameter twice: refused before any route (api/request_rules.py), secret unsaid.
    twice = [*query.items(), ("device", neighbour.mac)]
    answer = client.get(path, query_string=twice)
    assert_error(answer, 400, "duplicate_query_parameter")
    assert query_secret(twice) not in answer.get_data(as_text=True)
    # Another release, of the same model or another.
    refused(IMAGE.format("thermo", "1.0.0"), query)
    stranger = other_model(fleet)
    refused(IMAGE.format("other", "1.0.0"), query)
    # A URL signed for the stranger's device does not open another model's release either.
    assert client.get(path, query_string=query).status_code == 200
    other_path = IMAGE.format("other", "3.0.0")
    signer = state(fleet.app).devices.signer
    stranger_query = dict(parse_qsl(signer.sign(path, stranger.mac, time.time())[0]))
    assert_error(client.get(path, query_string=stranger_query), 404, "not_found")
    assert client.get(other_path, query_string=stranger_query).status_code == 403


def query_secret(query: dict[str, str] | list[tuple[str, str]]) -> str:
    pairs = query.items() if isinstance(query, dict) else query
    return dict(pairs).get("signature") or "no signature"


def test_a_signed_url_expires_and_dies_with_its_device(device_app: DeviceAppFactory) -> None:
    fleet = Fleet(device_app(device_auth="required"), 2)
    device = fleet.devices[0]
    fleet.start(["100%"])
    path = IMAGE.format("thermo", "2.0.0")
    signer = state(fleet.app).devices.signer
    client = fleet.client
    old, expires = signer.sign(path, device.mac, time.time() - 3600)
    assert expires < time.time()
    assert_error(client.get(f"{path}?{old}"), 403, "signed_url_invalid")
    path, query = signed(fleet, device)
    assert client.get(path, query_string=query).status_code == 200
    assert fleet.client.delete(f"/api/configs/{device.config_id}").status_code == 204
    assert_error(client.get(path, query_string=query), 403, "signed_url_invalid")


def test_every_replica_signs_alike_with_a_secret_made_once_in_the_database(
    device_app: DeviceAppFactory,
) -> None:
    first = device_app(device_auth="required")
    fleet = Fleet(first, 1)
    fleet.start(["100%"])
    second = device_app(device_auth="required")
    with state(first).database.session() as session:
        assert session.scalars(select(ServerSecret)).all() == []  # made on first use
    path, query = signed(fleet, fleet.devices[0])
    assert second.test_client().get(path, query_string=query).status_code == 200
    with state(second).database.session() as session:
        (secret,) = session.scalars(select(ServerSecret)).all()
    assert secret.name == "signed-urls" and len(bytes.fromhex(secret.value)) == 32


def test_the_offer_carries_a_signed_url_beside_the_plain_one(device_app: DeviceAppFactory) -> None:
    fleet = Fleet(device_app(), 1)
    fleet.start(["100%"])
    body = fleet.firmware(fleet.devices[0], "1.0.0").get_json()
    assert set(body) == {"version", "size", "sha256", "url", "signed_url", "signed_url_expires_at"}
    query = dict(parse_qsl(urlsplit(body["signed_url"]).query))
    assert set(query) == {"device", "expires", "signature"}
    assert urlencode(query)  # a plain query string
    again = fleet.firmware(fleet.devices[0], "1.0.0").get_json()
    if again["signed_url_expires_at"] == body["signed_url_expires_at"]:
        assert again["signed_url"] == body["signed_url"]  # the same for a while: cacheable
    assert fleet.devices[0].token not in body["signed_url"]
