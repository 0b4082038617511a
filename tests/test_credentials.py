"""Device credentials over HTTP: issue, use, modes, refusals, revocation; SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import logging
import typing as t
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import DeviceAppFactory
from conftest import assert_error
from credentials_support import basic
from credentials_support import bearer
from credentials_support import create_device
from credentials_support import fetch
from credentials_support import issue
from credentials_support import rotate_own
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update

from iotsupport.credentials import tokens
from iotsupport.credentials.tables import DeviceCredential
from iotsupport.db.base import utcnow
from iotsupport.extensions import state

MAC = "aa:bb:cc:dd:ee:01"
OTHER = "aa:bb:cc:dd:ee:02"
UNKNOWN = "aa:bb:cc:dd:ee:99"
REFUSAL = {
    "error": "device authentication failed: send this device's token",
    "code": "device_unauthorized",
    "details": {},
}


def refused(response: t.Any) -> None:
    """The one device refusal: same status, body and challenges, whatever the cause."""
    assert_error(response, 401, "device_unauthorized")
    assert response.get_json() == REFUSAL
    challenges = response.headers.getlist("WWW-Authenticate")
    assert challenges == [
        'Basic realm="iotsupport devices", charset="UTF-8"',
        'Bearer realm="iotsupport devices"',
    ]


def stored(app: Flask, config_id: int) -> DeviceCredential | None:
    with state(app).database.session() as session:
        return session.get(DeviceCredential, config_id)


def expire_previous(app: Flask, config_id: int) -> None:
    """Time passes: the grace of an admin's rotation is over."""
    with state(app).database.session() as session:
        session.execute(
            update(DeviceCredential)
            .where(DeviceCredential.config_id == config_id)
            .values(previous_expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()


# --- issue, show, revoke -----------------------------------------------------------------


def test_issue_shows_the_token_once_and_stores_only_its_hash(device_app: DeviceAppFactory) -> None:
    app = device_app()
    client = app.test_client()
    config_id = create_device(client, MAC)
    response = client.post(f"/api/configs/{config_id}/credential")
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == {"token", "issued_at"}
    token = body["token"]
    assert token.startswith("iotd_") and len(token) >= len("iotd_") + 43  # 256 bits
    assert body["issued_at"].endswith("+00:00")
    credential = stored(app, config_id)
    assert credential is not None
    assert credential.token_hash == hashlib.sha256(token.encode()).hexdigest()
    # Nowhere in the database is the token itself.
    with state(app).database.session() as session:
        for table in ("device_credentials", "device_configs", "config_history"):
            for row in session.execute(text(f"SELECT * FROM {table}")):  # noqa: S608
                assert all(token not in str(value) for value in row), table
    # Two tokens never repeat (and differ from one issue to the next).
    assert issue(client, config_id) != token


def test_bodies_and_list_show_the_credential_never_the_token(
    device_app: DeviceAppFactory,
) -> None:
    app = device_app()
    client = app.test_client()
    config_id = create_device(client, MAC)
    assert client.get(f"/api/configs/{config_id}").get_json()["credential"] is None
    token = issue(client, config_id)
    assert fetch(client, MAC, bearer(token)).status_code == 200
    state(app).reports.flush()
    body = client.get(f"/api/configs/{config_id}").get_json()
    assert set(body["credential"]) == {"issued_at", "last_used_at", "last_used_from"}
    assert body["credential"]["last_used_from"] == "127.0.0.1"
    assert body["credential"]["last_used_at"] >= body["credential"]["issued_at"]
    assert body["last_fetched_with_credential"] is True
    (row,) = client.get("/api/configs").get_json()["configs"]
    assert row["credential"] == body["credential"]
    assert row["last_fetched_with_credential"] is True
    for text_body in (
        client.get(f"/api/configs/{config_id}").get_data(as_text=True),
        client.get("/api/configs").get_data(as_text=True),
        client.get(f"/api/configs/{config_id}/history").get_data(as_text=True),
    ):
        assert token not in text_body and "iotd_" not in text_body


def test_revoke_stops_the_token_at_once(device_app: DeviceAppFactory) -> None:
    client = device_app().test_client()
    config_id = create_device(client, MAC)
    token = issue(client, config_id)
    assert fetch(client, MAC, bearer(token)).status_code == 200
    assert client.delete(f"/api/configs/{config_id}/credential").status_code == 204
    refused(fetch(client, MAC, bearer(token)))
    # Optional mode: with no credential the device is served by MAC alone again.
    assert fetch(client, MAC).status_code == 200
    assert client.get(f"/api/configs/{config_id}").get_json()["credential"] is None
    assert_error(client.delete(f"/api/configs/{config_id}/credential"), 404)
    assert_error(client.delete("/api/configs/999/credential"), 404)
    assert_error(client.post("/api/configs/999/credential"), 404)


# --- using it ------------------------------------------------------------------------------


def test_bearer_and_basic_with_any_spelling_of_the_mac(device_app: DeviceAppFactory) -> None:
    client = device_app(device_auth="required").test_client()
    token = issue(client, create_device(client, MAC, {"v": 1}))
    assert fetch(client, MAC, bearer(token)).data == b'{"v": 1}'
    for user in (MAC, MAC.upper(), MAC.replace(":", "-")):
        assert fetch(client, MAC, basic(user, token)).data == b'{"v": 1}'
    assert fetch(client, MAC.upper().replace(":", "-"), basic(MAC, token)).status_code == 200
    # 304 with a token works as before.
    etag = fetch(client, MAC, bearer(token)).headers["ETag"]
    headers = {**bearer(token), "If-None-Match": etag}
    assert fetch(client, MAC, headers).status_code == 304


def test_a_token_opens_only_its_own_device(device_app: DeviceAppFactory) -> None:
    client = device_app().test_client()
    mine = issue(client, create_device(client, MAC))
    issue(client, create_device(client, OTHER))
    refused(fetch(client, OTHER, bearer(mine)))
    refused(fetch(client, OTHER, basic(MAC, mine)))  # own user name, another device's URL
    refused(fetch(client, OTHER, basic(OTHER, mine)))
    refused(fetch(client, MAC, basic(OTHER, mine)))


@pytest.mark.parametrize("mode", ["optional", "required"])
def test_wrong_token_and_unknown_mac_get_the_same_401(
    device_app: DeviceAppFactory, mode: str
) -> None:
    client = device_app(device_auth=mode).test_client()
    token = issue(client, create_device(client, MAC))
    issue(client, create_device(client, OTHER))
    wrong = tokens.new_token()
    refused(fetch(client, MAC, bearer(wrong)))
    refused(fetch(client, UNKNOWN, bearer(wrong)))
    refused(fetch(client, UNKNOWN, bearer(token)))
    refused(fetch(client, UNKNOWN, basic(UNKNOWN, wrong)))
    refused(fetch(client, UNKNOWN))
    refused(fetch(client, OTHER))  # a device with a credential, asked without one


def test_a_known_and_an_unknown_mac_cost_the_same_work(
    device_app: DeviceAppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No timing assertion: the same statements and the same comparisons run either way."""
    app = device_app()
    client = app.test_client()
    issue(client, create_device(client, MAC))
    statements: list[str] = []
    event.listen(
        state(app).database.engine,
        "before_cursor_execute",
        lambda _c, _cur, sql, *_: statements.append(sql),
    )
    compared: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def counting(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)  # what tokens.check calls
    work = []
    for mac in (MAC, UNKNOWN):
        statements.clear()
        compared.clear()
        refused(fetch(client, mac, bearer(tokens.new_token())))
        work.append((list(statements), len(compared)))
    assert work[0] == work[1]
    assert len(work[0][0]) == 1 and work[0][1] == 2


MALFORMED = [
    "Bearer",
    "Bearer ",
    "Bearer iotd_",
    "Bearer iotd_" + "x" * 400,
    "bearer iotd_not-a-token",
    "Basic",
    "Basic !!!",
    "Basic " + "YWJj",  # "abc": no colon
    "Basic OjpiYQ==",  # "::ba"
    "Basic YWE6YmI6Y2M6ZGQ6ZWU6MDE6",  # MAC with an empty password
    "Digest username=x",
    "iotd_abc",
    "Bearer eyJhbGciOiJub25lIn0.e30.",
    " ",
]


def test_a_malformed_authorization_is_401_never_500(device_app: DeviceAppFactory) -> None:
    client = device_app(device_auth="required").test_client()
    issue(client, create_device(client, MAC))
    for header in MALFORMED:
        refused(fetch(client, MAC, {"Authorization": header}))
        refused(client.post("/api/device/credential", headers={"Authorization": header}))


# --- DEVICE_AUTH modes ---------------------------------------------------------------------


def test_optional_protects_devices_with_a_credential_and_serves_the_rest(
    device_app: DeviceAppFactory,
) -> None:
    app = device_app()  # optional is the default
    client = app.test_client()
    with_token = create_device(client, MAC, {"v": "a"})
    token = issue(client, with_token)
    without = create_device(client, OTHER, {"v": "b"})
    refused(fetch(client, MAC))
    assert fetch(client, MAC, bearer(token)).data == b'{"v": "a"}'
    assert fetch(client, OTHER).data == b'{"v": "b"}'
    # Something in Authorization that is not a device credential changes nothing here.
    assert fetch(client, OTHER, {"Authorization": "Bearer some-ha-token"}).status_code == 200
    state(app).reports.flush()
    rows = {row["id"]: row for row in client.get("/api/configs").get_json()["configs"]}
    assert rows[with_token]["last_fetched_with_credential"] is True
    assert rows[without]["last_fetched_with_credential"] is False  # still to migrate
    counted = device_requests(client)
    assert counted[("/api/configs/<mac:mac>.json", "none")] == 2
    assert counted[("/api/configs/<mac:mac>.json", "valid")] == 1
    assert counted[("/api/configs/<mac:mac>.json", "refused")] == 1


def test_required_needs_a_token_from_every_device(device_app: DeviceAppFactory) -> None:
    client = device_app(device_auth="required").test_client()
    token = issue(client, create_device(client, MAC))
    create_device(client, OTHER)
    refused(fetch(client, OTHER))
    refused(fetch(client, MAC))
    refused(fetch(client, MAC, {"Authorization": "Bearer some-ha-token"}))
    assert fetch(client, MAC, bearer(token)).status_code == 200


def test_off_serves_by_mac_alone_as_before(device_app: DeviceAppFactory) -> None:
    client = device_app(device_auth="off").test_client()
    issue(client, create_device(client, MAC, {"v": 1}))
    assert fetch(client, MAC).data == b'{"v": 1}'
    assert fetch(client, MAC, bearer(tokens.new_token())).status_code == 200  # not checked
    assert_error(fetch(client, UNKNOWN), 404, "not_found")
    assert_error(fetch(client, "nope"), 400)
    # A device can still rotate its own token (it is the only way to know the device).
    refused(client.post("/api/device/credential"))


def device_requests(client: FlaskClient) -> dict[tuple[str, str], float]:
    families = text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
    return {
        (sample.labels["route"], sample.labels["credential"]): sample.value
        for family in families
        if family.name == "iotsupport_device_requests"
        for sample in family.samples
        if sample.name == "iotsupport_device_requests_total"
    }


# --- rotation through the API ---------------------------------------------------------------


def test_an_admin_rotation_keeps_the_old_token_until_the_new_one_is_used(
    device_app: DeviceAppFactory,
) -> None:
    client = device_app(device_auth="required").test_client()
    config_id = create_device(client, MAC)
    old = issue(client, config_id)
    new = issue(client, config_id)
    assert fetch(client, MAC, bearer(old)).status_code == 200
    assert fetch(client, MAC, bearer(new)).status_code == 200  # first use retires the old
    refused(fetch(client, MAC, bearer(old)))
    assert fetch(client, MAC, bearer(new)).status_code == 200


def test_an_admin_rotation_ends_with_the_grace(device_app: DeviceAppFactory) -> None:
    app = device_app(device_auth="required", device_token_grace_hours=1)
    client = app.test_client()
    config_id = create_device(client, MAC)
    old = issue(client, config_id)
    new = issue(client, config_id)
    credential = stored(app, config_id)
    assert credential is not None and credential.previous_expires_at is not None
    remaining = credential.previous_expires_at - utcnow()
    assert timedelta(minutes=59) < remaining <= timedelta(hours=1)
    expire_previous(app, config_id)
    refused(fetch(client, MAC, bearer(old)))
    assert fetch(client, MAC, bearer(new)).status_code == 200


def test_a_device_rotates_its_own_token(device_app: DeviceAppFactory) -> None:
    app = device_app(device_auth="required")
    client = app.test_client()
    config_id = create_device(client, MAC)
    old = issue(client, config_id)
    response = rotate_own(client, old)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    fresh = response.get_json()["token"]
    assert set(response.get_json()) == {"token"} and fresh.startswith("iotd_")
    assert fetch(client, MAC, bearer(old)).status_code == 200  # still valid
    assert fetch(client, MAC, bearer(fresh)).status_code == 200
    refused(fetch(client, MAC, bearer(old)))
    credential = stored(app, config_id)
    assert credential is not None and credential.issued_by == "device"
    refused(client.post("/api/device/credential"))
    refused(rotate_own(client, old))


def test_a_device_token_never_rotates_another_device(device_app: DeviceAppFactory) -> None:
    app = device_app()
    client = app.test_client()
    mine = issue(client, create_device(client, MAC))
    theirs_id = create_device(client, OTHER)
    theirs = issue(client, theirs_id)
    fresh = rotate_own(client, mine).get_json()["token"]
    refused(fetch(client, OTHER, bearer(fresh)))
    assert fetch(client, OTHER, bearer(theirs)).status_code == 200
    credential = stored(app, theirs_id)
    assert credential is not None and credential.previous_hash is None


# --- a deleted device ------------------------------------------------------------------------


def test_a_deleted_device_opens_nothing_and_a_restore_brings_its_token_back(
    device_app: DeviceAppFactory,
) -> None:
    client = device_app(device_auth="required").test_client()
    config_id = create_device(client, MAC)
    token = issue(client, config_id)
    assert client.delete(f"/api/configs/{config_id}").status_code == 204
    refused(fetch(client, MAC, bearer(token)))
    refused(rotate_own(client, token))
    assert client.post(f"/api/configs/deleted/{MAC}/restore").status_code == 201
    assert fetch(client, MAC, bearer(token)).status_code == 200
    # A new config under the same MAC (a new id) does not inherit it.
    assert client.delete(f"/api/configs/{config_id}").status_code == 204
    new_id = create_device(client, MAC)
    assert new_id != config_id
    refused(fetch(client, MAC, bearer(token)))
    assert client.get(f"/api/configs/{new_id}").get_json()["credential"] is None


# --- brute force ------------------------------------------------------------------------------


def test_repeated_failures_from_one_address_get_429_but_never_lock_out_a_device(
    device_app: DeviceAppFactory,
) -> None:
    app = device_app(device_auth_max_failures=3, device_auth_failure_window_seconds=60)
    client = app.test_client()
    token = issue(client, create_device(client, MAC))
    stranger = {"REMOTE_ADDR": "192.0.2.66"}
    for _ in range(3):
        refused(
            client.get(
                f"/api/configs/{MAC}.json",
                headers=bearer(tokens.new_token()),
                environ_base=stranger,
            )
        )
    limited = client.get(
        f"/api/configs/{MAC}.json", headers=bearer(tokens.new_token()), environ_base=stranger
    )
    body = assert_error(limited, 429, "too_many_requests")
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert body["details"] == {"retry_after": int(limited.headers["Retry-After"])}
    # The device itself, from its own address and even from the stranger's, still gets in.
    assert fetch(client, MAC, bearer(token)).status_code == 200
    ok = client.get(f"/api/configs/{MAC}.json", headers=bearer(token), environ_base=stranger)
    assert ok.status_code == 200
    # Another address is not limited.
    refused(fetch(client, MAC, bearer(tokens.new_token())))
    assert device_requests(client)[("/api/configs/<mac:mac>.json", "limited")] == 1


# --- tokens never leak ----------------------------------------------------------------------


def test_tokens_never_reach_logs_metrics_errors_history_or_exports(
    device_app: DeviceAppFactory, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    app = device_app(device_auth="required")
    client = app.test_client()
    config_id = create_device(client, MAC)
    token = issue(client, config_id)
    fresh = rotate_own(client, token).get_json()["token"]
    seen = [
        fetch(client, MAC, bearer(fresh)),
        fetch(client, MAC, bearer(token)),  # retired: refused
        fetch(client, OTHER, bearer(fresh)),
        fetch(client, MAC, {"Authorization": f"Bearer {fresh}x"}),
        client.get("/metrics"),
        client.get(f"/api/configs/{config_id}/history"),
        client.get("/api/openapi.json"),
    ]
    state(app).reports.flush()
    result = app.test_cli_runner().invoke(args=["export-dir", str(tmp_path / "out")])
    assert result.exit_code == 0
    exported = "".join(path.read_text() for path in (tmp_path / "out").iterdir())
    texts = [response.get_data(as_text=True) for response in seen[1:]]
    for secret in (token, fresh, token[5:], fresh[5:]):
        assert secret not in caplog.text
        assert secret not in result.output and secret not in exported
        for body in texts:
            assert secret not in body


def test_credentials_are_stored_per_config_id(device_app: DeviceAppFactory) -> None:
    app = device_app()
    client = app.test_client()
    ids = [create_device(client, mac) for mac in (MAC, OTHER)]
    issue(client, ids[1])
    with state(app).database.session() as session:
        assert session.scalars(select(DeviceCredential.config_id)).all() == [ids[1]]
