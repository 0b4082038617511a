"""Provisioning bundles: JSON and an NVS image read back with our own NVS reader."""

from __future__ import annotations

import logging
import typing as t

import pytest
from conftest import DeviceAppFactory
from conftest import assert_error
from credentials_support import bearer
from credentials_support import create_device
from credentials_support import fetch
from credentials_support import issue
from flask.testing import FlaskClient
from nvs_reader import NvsError
from nvs_reader import read_partition
from sqlalchemy import text

from iotsupport.credentials.provisioning import Bundle
from iotsupport.credentials.provisioning import nvs_image
from iotsupport.extensions import state

MAC = "aa:bb:cc:dd:ee:01"
WIFI_PASSWORD = "correct horse battery staple"


def provision(client: FlaskClient, config_id: int, **body: t.Any) -> t.Any:
    return client.post(f"/api/configs/{config_id}/provisioning", json=body)


def test_a_json_bundle_carries_a_working_token(device_app: DeviceAppFactory) -> None:
    app = device_app(
        device_auth="required", baseurl="https://iot.example.com", mqtt_url="mqtt://broker:1883"
    )
    client = app.test_client()
    config_id = create_device(client, MAC)
    response = provision(client, config_id, format="json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="aa-bb-cc-dd-ee-01-provisioning.json"'
    )
    body = response.get_json()
    assert body["mac_address"] == MAC
    assert body["server_url"] == "https://iot.example.com"
    assert body["config_url"] == f"https://iot.example.com/api/configs/{MAC}.json"
    assert body["mqtt_url"] == "mqtt://broker:1883"
    assert body["mqtt_username"] is None  # no device accounts on the broker
    assert body["desired_topic"] == f"iotsupport/devices/{MAC}/desired"
    assert body["wifi_ssid"] is None and body["wifi_password"] is None
    assert fetch(client, MAC, bearer(body["token"])).status_code == 200
    assert client.get(f"/api/configs/{config_id}").get_json()["credential"] is not None


def test_a_bundle_for_a_device_with_a_token_rotates_it(device_app: DeviceAppFactory) -> None:
    client = device_app(device_auth="required").test_client()
    config_id = create_device(client, MAC)
    old = issue(client, config_id)
    new = provision(client, config_id, format="json").get_json()["token"]
    assert fetch(client, MAC, bearer(old)).status_code == 200  # until the new one is used
    assert fetch(client, MAC, bearer(new)).status_code == 200
    assert fetch(client, MAC, bearer(old)).status_code == 401


def test_an_nvs_image_read_back_by_an_independent_reader(
    device_app: DeviceAppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Without BASEURL, the server's address is HOST:PORT (never the Host the admin sent).
    app = device_app(
        device_auth="required", mqtt_url="mqtt://broker:1883", host="192.168.1.20", port=8080
    )
    client = app.test_client()
    config_id = create_device(client, MAC)
    response = provision(
        client,
        config_id,
        format="nvs",
        partition_size=0x6000,
        wifi_ssid="homelab-iot",
        wifi_password=WIFI_PASSWORD,
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/octet-stream"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="aa-bb-cc-dd-ee-01-nvs.bin"'
    )
    image = response.data
    assert len(image) == 0x6000
    values = read_partition(image)
    assert list(values) == ["iotsupport"]
    stored = values["iotsupport"]
    token = stored["token"][1]
    assert stored == {
        "bundle_ver": ("u8", 1),
        "server_url": ("string", "http://192.168.1.20:8080"),
        "mac": ("string", MAC),
        "token": ("string", token),
        "mqtt_url": ("string", "mqtt://broker:1883"),
        "wifi_ssid": ("string", "homelab-iot"),
        "wifi_pass": ("string", WIFI_PASSWORD),
    }
    assert fetch(client, MAC, bearer(token)).status_code == 200
    # The Wi-Fi password was used for this download only: not stored, not logged.
    with state(app).database.session() as session:
        for table in ("device_credentials", "device_configs", "config_history"):
            for row in session.execute(text(f"SELECT * FROM {table}")):  # noqa: S608
                assert all(WIFI_PASSWORD not in str(value) for value in row)
    assert WIFI_PASSWORD not in caplog.text and token not in caplog.text


def test_the_reader_notices_a_damaged_image() -> None:
    bundle = Bundle(MAC, "http://x", "iotd_" + "a" * 43, None, None, None, None)
    image = bytearray(nvs_image(bundle, 0x3000))
    assert read_partition(bytes(image))["iotsupport"]["mac"] == ("string", MAC)
    position = bytes(image).index(b"aa:bb:cc:dd:ee:01")
    image[position] ^= 0x01
    with pytest.raises(NvsError, match="CRC"):
        read_partition(bytes(image))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "format"),
        ({"format": "yaml"}, "format"),
        ({"format": "nvs", "partition_size": 0x2000}, "partition_size"),
        ({"format": "nvs", "partition_size": 0x6001}, "partition_size"),
        ({"format": "nvs", "partition_size": "big"}, "partition_size"),
        ({"format": "nvs", "partition_size": 0x200000}, "partition_size"),
        ({"format": "json", "wifi_ssid": ""}, "wifi_ssid"),
        ({"format": "json", "wifi_ssid": "x" * 33}, "wifi_ssid"),
        ({"format": "json", "wifi_password": "x" * 65}, "wifi_password"),
        ({"format": "json", "extra": 1}, "extra"),
    ],
)
def test_bad_requests_are_400_and_issue_nothing(
    device_app: DeviceAppFactory, body: dict[str, t.Any], field: str
) -> None:
    client = device_app().test_client()
    config_id = create_device(client, MAC)
    response = provision(client, config_id, **body)
    details = assert_error(response, 400)["details"]
    assert field in str(details)
    assert "x" * 33 not in response.get_data(as_text=True)  # no input echoed
    assert client.get(f"/api/configs/{config_id}").get_json()["credential"] is None
    assert_error(provision(client, 999, format="json"), 404)
