"""Which hosts the server answers to, which pages may change anything, and JSON as JSON
(api/origins.py, api/protections.py); with login off, as `make run` sets it up.

The same attacks from a real browser page are in test_ui_cross_site.py."""

from __future__ import annotations

import json
import typing as t

import pytest
from conftest import ClientWith
from conftest import assert_error
from conftest import make_settings
from credentials_support import bearer
from credentials_support import create_device
from credentials_support import fetch
from credentials_support import issue
from flask.testing import FlaskClient
from pydantic import ValidationError

MAC = "aa:bb:cc:dd:ee:01"
CONFIG = {"mac_address": MAC, "content": {"v": 1}}


def count(client: FlaskClient) -> int:
    value: int = client.get("/api/configs").get_json()["count"]
    return value


# --- Host -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:3201", "127.0.0.1:3201", "192.168.1.20", "[::1]:3201", "[fd00::7]"],
)
def test_the_default_answers_to_localhost_and_any_address(client: FlaskClient, host: str) -> None:
    assert client.get("/api/configs", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:3201", "127.0.0.1.nip.io", "localhost.evil.example", ""],
)
def test_other_names_are_refused_before_any_route(client: FlaskClient, host: str) -> None:
    create_device(client, MAC)
    for method, path in [
        ("GET", "/api/configs"),
        ("GET", f"/api/configs/{MAC}.json"),  # the device fetch, answered from memory too
        ("GET", "/"),
        ("GET", "/api/no-such-route"),
        ("POST", "/api/configs"),
    ]:
        response = client.open(path, method=method, json=CONFIG, headers={"Host": host})
        body = assert_error(response, 400, "unknown_host")
        assert "ALLOWED_HOSTS" in body["error"]
    assert count(client) == 1


def test_allowed_hosts_names_and_domains(client_with: ClientWith) -> None:
    client = client_with(allowed_hosts="iot.local,.example.com", baseurl="https://iot.example.org")
    for host in [
        "iot.local",
        "IOT.LOCAL:3201",
        "example.com",
        "a.b.example.com",
        "iot.example.org",
    ]:
        assert client.get("/api/configs", headers={"Host": host}).status_code == 200, host
    for host in ["localhost", "127.0.0.1", "iot.local.evil", "badexample.com", "example.org"]:
        assert_error(client.get("/api/configs", headers={"Host": host}), 400, "unknown_host")


def test_x_forwarded_host_counts_only_from_a_trusted_proxy(client_with: ClientWith) -> None:
    client = client_with(allowed_hosts="iot.example.com", trusted_proxies="10.0.0.0/8")
    proxy = {"REMOTE_ADDR": "10.1.2.3"}
    stranger = {"REMOTE_ADDR": "192.168.1.50"}
    inside = {"Host": "iotsupport:3201"}
    sent = {**inside, "X-Forwarded-Host": "iot.example.com"}
    assert client.get("/api/configs", headers=sent, environ_base=proxy).status_code == 200
    refused = client.get("/api/configs", headers=sent, environ_base=stranger)
    assert_error(refused, 400, "unknown_host")
    # A trusted proxy that forwards a name we do not serve: refused, whatever Host says.
    evil = {"Host": "iot.example.com", "X-Forwarded-Host": "evil.example"}
    assert_error(client.get("/api/configs", headers=evil, environ_base=proxy), 400, "unknown_host")


def test_bad_allowed_hosts_and_a_wildcard_bind_without_baseurl_do_not_start() -> None:
    for value in ["http://iot.example.com", "iot.example.com:3201", "iot.example.com/x"]:
        with pytest.raises(ValidationError, match="is not a host name"):
            make_settings("sqlite://", allowed_hosts=value)
    for host in ["0.0.0.0", "::"]:
        with pytest.raises(ValidationError, match="needs BASEURL"):
            make_settings("sqlite://", host=host)
    settings = make_settings("sqlite://", host="0.0.0.0", baseurl="http://192.168.1.20:3201")
    assert settings.public_url == "http://192.168.1.20:3201"
    assert make_settings("sqlite://", host="::1", port=8080).public_url == "http://[::1]:8080"


def test_urls_handed_out_never_come_from_the_host_header(client_with: ClientWith) -> None:
    client = client_with(host="192.168.1.20", port=3201)  # no BASEURL: HOST:PORT
    config_id = create_device(client, MAC)
    headers = {"Host": "10.9.9.9:1234", "X-Forwarded-Host": "evil.example"}
    response = client.post(
        f"/api/configs/{config_id}/provisioning", json={"format": "json"}, headers=headers
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    bundle = response.get_json()
    assert bundle["server_url"] == "http://192.168.1.20:3201"
    assert bundle["config_url"] == f"http://192.168.1.20:3201/api/configs/{MAC}.json"
    assert "10.9.9.9" not in response.get_data(as_text=True)


# --- Cross-site state changes --------------------------------------------------------

# (headers a browser or a script sends, whether the change is made)
HEADER_CASES: list[tuple[dict[str, str], bool]] = [
    ({}, True),  # curl, CI, a device
    ({"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"}, True),
    ({"Sec-Fetch-Site": "same-origin"}, True),
    ({"Sec-Fetch-Site": "none"}, True),  # typed by the user
    ({"Origin": "http://localhost"}, True),  # a browser without Fetch Metadata
    ({"Origin": "HTTP://LOCALHOST:80"}, True),
    ({"Origin": "https://iot.example.com"}, True),  # BASEURL
    ({"Sec-Fetch-Site": "cross-site"}, False),
    ({"Sec-Fetch-Site": "same-site"}, False),  # another port or subdomain
    ({"Sec-Fetch-Site": "Cross-Site", "Origin": "http://localhost"}, False),
    ({"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}, False),
    ({"Sec-Fetch-Site": "same-origin", "Origin": "http://evil.example"}, False),
    ({"Origin": "http://evil.example"}, False),
    ({"Origin": "http://localhost:3202"}, False),
    ({"Origin": "http://localhost.evil.example"}, False),
    ({"Origin": "null"}, False),
    ({"Origin": ""}, False),
    ({"Origin": "localhost"}, False),
]


@pytest.mark.parametrize(("headers", "made"), HEADER_CASES, ids=lambda value: repr(value))
def test_a_change_from_another_sites_page_is_refused(
    client_with: ClientWith, headers: dict[str, str], made: bool
) -> None:
    client = client_with(baseurl="https://iot.example.com")  # login stays off
    response = client.post("/api/configs", json=CONFIG, headers=headers)
    if made:
        assert response.status_code == 201, response.get_data(as_text=True)
        assert count(client) == 1
    else:
        body = assert_error(response, 403, "cross_site_request")
        assert "another site" in body["error"]
        assert count(client) == 0


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_every_kind_of_change_is_covered(client: FlaskClient, site: str) -> None:
    config_id = create_device(client, MAC)
    token = issue(client, config_id)
    foreign = {"Sec-Fetch-Site": site, "Origin": "http://evil.example"}
    attempts: list[tuple[str, str, dict[str, t.Any] | None]] = [
        ("PUT", f"/api/configs/{config_id}", {"content": {"v": 2}}),
        ("DELETE", f"/api/configs/{config_id}", None),
        ("POST", f"/api/configs/{config_id}/credential", None),
        ("DELETE", f"/api/configs/{config_id}/credential", None),
        ("POST", "/api/models", {"code": "m", "name": "M"}),
        ("POST", "/api/auth/logout", None),
    ]
    for method, path, body in attempts:
        response = client.open(path, method=method, json=body, headers=foreign)
        assert_error(response, 403, "cross_site_request")
    assert client.get(f"/api/configs/{config_id}").get_json()["content"] == {"n": MAC}
    assert fetch(client, MAC, bearer(token)).status_code == 200  # not re-issued nor revoked
    # Reading stays open to a link from elsewhere (another site cannot read the answer).
    assert client.get("/api/configs", headers=foreign).status_code == 200


def test_devices_keep_working(client: FlaskClient) -> None:
    config_id = create_device(client, MAC)
    token = issue(client, config_id)
    assert fetch(client, MAC, bearer(token)).status_code == 200
    rotated = client.post("/api/device/credential", headers=bearer(token))
    assert rotated.status_code == 200, rotated.get_data(as_text=True)
    assert fetch(client, MAC, bearer(rotated.get_json()["token"])).status_code == 200


# --- JSON as JSON ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "text/json",
    ],
)
def test_a_json_body_must_say_it_is_json(client: FlaskClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/api/configs", data=json.dumps(CONFIG), headers=headers)
    body = assert_error(response, 415, "unsupported_media_type")
    assert "application/json" in body["error"]
    assert count(client) == 0


@pytest.mark.parametrize(
    "content_type", ["application/json", "Application/JSON; charset=utf-8", "application/ld+json"]
)
def test_json_content_types_are_accepted(client: FlaskClient, content_type: str) -> None:
    headers = {"Content-Type": content_type}
    response = client.post("/api/configs", data=json.dumps(CONFIG), headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)


def test_no_answer_names_the_host_it_was_asked_under(client: FlaskClient) -> None:
    host = {"Host": "192.168.1.99:4444"}
    login = client.get("/api/auth/login?redirect=/models", headers=host)  # login off
    assert login.status_code == 302 and login.headers["Location"] == "/models"
    assert "servers" not in client.get("/api/openapi.json", headers=host).get_json()
    for path in ["/", "/models", "/api/docs"]:
        assert "192.168.1.99" not in client.get(path, headers=host).get_data(as_text=True)
