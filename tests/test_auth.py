"""Login and roles with locally signed JWTs, served over real HTTP by a local issuer."""

from __future__ import annotations

import hashlib
import hmac
import time
import typing as t
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from conftest import RecordingPublisher
from conftest import assert_error
from conftest import free_port
from conftest import make_settings
from conftest import race
from conftest import run_script
from conftest import serving
from conftest import wait_until
from flask import Blueprint
from flask import Flask
from flask import Response
from flask import jsonify
from flask.testing import FlaskClient
from joserfc.jwk import RSAKey
from local_issuer import LocalIssuer
from local_issuer import b64_json
from local_issuer import b64url
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from iotsupport import create_app
from iotsupport.auth import ACCESS_COOKIE
from iotsupport.auth import LOGIN_COOKIE
from iotsupport.auth import REFRESH_COOKIE
from iotsupport.auth import set_token_cookies
from iotsupport.auth.access import Role
from iotsupport.auth.access import current_actor
from iotsupport.auth.access import requires
from iotsupport.auth.oidc import Tokens
from iotsupport.auth.renewal import RenewalGate
from iotsupport.auth.tokens import Principal
from iotsupport.auth.tokens import TokenRejected
from iotsupport.auth.tokens import roles_in
from iotsupport.cli import main
from iotsupport.settings import Settings

BASEURL = "http://iot.test"
CONFIG = {"mac_address": "aa:bb:cc:dd:ee:01", "content": {"deviceName": "Lamp"}}


@pytest.fixture
def oidc_settings(database_url: str, issuer: LocalIssuer) -> Settings:
    return make_settings(database_url, **issuer.login_settings(BASEURL), oidc_clock_skew_seconds=30)


def extra_routes() -> Blueprint:
    """Routes like those of the parallel issues (uploads, web UI pages), unknown to auth."""
    bp = Blueprint("extra", __name__)

    @bp.post("/api/uploads")
    @requires(Role.ASSET_UPLOADER)
    def upload() -> t.Any:
        return jsonify(ok=True), 201

    @bp.get("/page")
    @requires(Role.ADMIN)
    def page() -> str:
        return "<html>admin page</html>"

    return bp


@pytest.fixture
def oidc_app(oidc_settings: Settings, publisher: RecordingPublisher) -> Iterator[Flask]:
    app = create_app(oidc_settings, publisher=publisher, registry=CollectorRegistry())
    app.register_blueprint(extra_routes())
    yield app
    app.extensions["iotsupport"].database.dispose()


@pytest.fixture
def oidc_client(oidc_app: Flask) -> FlaskClient:
    return oidc_app.test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- Settings and start-up -------------------------------------------------------


def test_oidc_settings_missing_are_named() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, oidc_enabled=True, oidc_client_id="x")
    message = str(caught.value)
    for name in ("BASEURL", "OIDC_ISSUER_URL", "OIDC_CLIENT_SECRET"):
        assert name in message
    assert "OIDC_CLIENT_ID" not in message


def test_cli_refuses_to_start_with_missing_oidc_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file
    env = {"OIDC_ENABLED": "true", "BASEURL": "https://iot.example.com", "OIDC_CLIENT_ID": "x"}
    result = CliRunner().invoke(main, ["serve"], env=env)
    assert result.exit_code == 1
    assert "OIDC_ENABLED=true needs OIDC_ISSUER_URL, OIDC_CLIENT_SECRET" in result.output
    assert "Traceback" not in result.output


def test_serve_exits_naming_the_missing_settings(tmp_path: Path) -> None:
    result = run_script(
        tmp_path, "serve", OIDC_ENABLED="true", OIDC_ISSUER_URL="https://id.example"
    )
    assert result.returncode != 0
    assert "BASEURL, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_without_oidc_warns_once_per_server(tmp_path: Path) -> None:
    with serving(tmp_path, WORKERS="2", THREADS="1") as (_port, log_path):
        # Each worker logs this line as it starts: wait until both have.
        started = "change notifications are off"
        assert wait_until(lambda: log_path.read_text().count(started) == 2, timeout=30)
    output = log_path.read_text()
    assert output.count("runs WITHOUT authentication") == 1, output


# --- Bearer tokens -----------------------------------------------------------------


def test_valid_bearer_token_is_admitted(oidc_client: FlaskClient, issuer: LocalIssuer) -> None:
    response = oidc_client.get("/api/configs", headers=bearer(issuer.token()))
    assert response.status_code == 200


def test_no_token_is_refused_with_401(oidc_client: FlaskClient) -> None:
    response = oidc_client.get("/api/configs")
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_other_authorization_schemes_are_refused(oidc_client: FlaskClient) -> None:
    response = oidc_client.get("/api/configs", headers={"Authorization": "Basic YTpi"})
    assert_error(response, 401, "invalid_token")


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"exp": int(time.time()) - 120}, id="expired"),
        pytest.param({"nbf": int(time.time()) + 3600}, id="not-yet-valid"),  # collected early
        pytest.param({"iss": "https://other.example.com"}, id="wrong-issuer"),
        pytest.param({"aud": "some-other-api"}, id="wrong-audience"),
        pytest.param({"sub": None}, id="no-subject"),
    ],
)
def test_bad_claims_are_refused(
    oidc_client: FlaskClient, issuer: LocalIssuer, claims: dict[str, t.Any]
) -> None:
    response = oidc_client.get("/api/configs", headers=bearer(issuer.token(**claims)))
    assert_error(response, 401, "invalid_token")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_clock_skew_is_allowed(oidc_client: FlaskClient, issuer: LocalIssuer) -> None:
    # OIDC_CLOCK_SKEW_SECONDS=30 in these tests.
    token = issuer.token(exp=int(time.time()) - 5, nbf=int(time.time()) + 5)
    assert oidc_client.get("/api/configs", headers=bearer(token)).status_code == 200


def test_alg_none_is_refused(oidc_client: FlaskClient, issuer: LocalIssuer) -> None:
    token = issuer.unsigned_token({"alg": "none", "typ": "JWT"})
    assert_error(oidc_client.get("/api/configs", headers=bearer(token)), 401, "invalid_token")


def test_hs256_signed_with_the_public_key_is_refused(
    oidc_client: FlaskClient, issuer: LocalIssuer
) -> None:
    header = {"alg": "HS256", "typ": "JWT", "kid": issuer.key.kid}
    signing_input = f"{b64_json(header)}.{b64_json(issuer.claims())}"
    public_pem = issuer.key.as_pem(private=False)
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64url(signature)}"
    assert_error(oidc_client.get("/api/configs", headers=bearer(token)), 401, "invalid_token")


def test_token_signed_by_another_key_with_our_kid_is_refused(
    oidc_client: FlaskClient, issuer: LocalIssuer
) -> None:
    forger = RSAKey.generate_key(2048, parameters={"kid": "key-1"})
    token = issuer.token(key=forger)
    assert_error(oidc_client.get("/api/configs", headers=bearer(token)), 401, "invalid_token")


def test_unknown_kid_refetches_the_jwks_once_then_401(
    oidc_client: FlaskClient, issuer: LocalIssuer
) -> None:
    assert oidc_client.get("/api/configs", headers=bearer(issuer.token())).status_code == 200
    fetches = issuer.jwks_fetches
    stranger = RSAKey.generate_key(2048, parameters={"kid": "key-unknown"})
    response = oidc_client.get("/api/configs", headers=bearer(issuer.token(key=stranger)))
    assert_error(response, 401, "invalid_token")
    assert issuer.jwks_fetches == fetches + 1
    # Another unknown kid right after: refused without asking the issuer again.
    response = oidc_client.get("/api/configs", headers=bearer(issuer.token(key=stranger)))
    assert_error(response, 401, "invalid_token")
    assert issuer.jwks_fetches == fetches + 1


def test_rotated_key_is_picked_up(oidc_client: FlaskClient, issuer: LocalIssuer) -> None:
    assert oidc_client.get("/api/configs", headers=bearer(issuer.token())).status_code == 200
    fetches = issuer.jwks_fetches
    new_key = RSAKey.generate_key(2048, parameters={"kid": "key-2"})
    issuer.publish(issuer.key, new_key)
    response = oidc_client.get("/api/configs", headers=bearer(issuer.token(key=new_key)))
    assert response.status_code == 200
    assert issuer.jwks_fetches == fetches + 1
    # Cached from now on.
    oidc_client.get("/api/configs", headers=bearer(issuer.token(key=new_key)))
    assert issuer.jwks_fetches == fetches + 1


def test_cached_keys_outlive_a_failed_refetch(
    oidc_client: FlaskClient, issuer: LocalIssuer
) -> None:
    assert oidc_client.get("/api/configs", headers=bearer(issuer.token())).status_code == 200
    issuer.jwks_broken = True
    try:
        stranger = RSAKey.generate_key(2048, parameters={"kid": "key-unknown"})
        response = oidc_client.get("/api/configs", headers=bearer(issuer.token(key=stranger)))
        assert_error(response, 401, "invalid_token")
        assert oidc_client.get("/api/configs", headers=bearer(issuer.token())).status_code == 200
    finally:
        issuer.jwks_broken = False


def test_unreachable_issuer_answers_503(database_url: str) -> None:
    settings = make_settings(
        database_url,
        oidc_enabled=True,
        baseurl=BASEURL,
        oidc_issuer_url=f"http://127.0.0.1:{free_port()}",
        oidc_client_id="iotsupport",
        oidc_client_secret="client-secret",
    )
    app = create_app(settings, publisher=RecordingPublisher(), registry=CollectorRegistry())
    response = app.test_client().get("/api/configs", headers=bearer("a.b.c"))
    # A malformed token is refused before the issuer is needed...
    assert_error(response, 401, "invalid_token")
    header = b64_json({"alg": "RS256", "kid": "k"})
    token = f"{header}.{b64_json({'sub': 'x'})}.c2ln"
    response = app.test_client().get("/api/configs", headers=bearer(token))
    # ...a well-formed one needs the keys, and the issuer is down.
    body = assert_error(response, 503, "service_unavailable")
    assert body["error"] == "the identity provider is not reachable"
    # Starting a login needs the discovery document: the same answer, no URL leaked.
    login = app.test_client().get("/api/auth/login?redirect=/")
    body = assert_error(login, 503, "service_unavailable")
    assert body["error"] == "the identity provider is not reachable"
    assert "127.0.0.1" not in login.get_data(as_text=True)
    app.extensions["iotsupport"].database.dispose()


# --- Roles -------------------------------------------------------------------------


def test_token_without_roles_gets_403(oidc_client: FlaskClient, issuer: LocalIssuer) -> None:
    response = oidc_client.get("/api/configs", headers=bearer(issuer.token(roles=None)))
    assert_error(response, 403, "forbidden")


def test_asset_uploader_may_upload_but_not_edit_configs(
    oidc_client: FlaskClient, issuer: LocalIssuer
) -> None:
    token = issuer.token(roles=["asset-uploader"])
    assert oidc_client.post("/api/uploads", headers=bearer(token)).status_code == 201
    assert_error(oidc_client.get("/api/configs", headers=bearer(token)), 403, "forbidden")
    response = oidc_client.post("/api/configs", json=CONFIG, headers=bearer(token))
    assert_error(response, 403, "forbidden")


def test_admin_may_do_everything(oidc_client: FlaskClient, issuer: LocalIssuer) -> None:
    token = issuer.token()
    assert oidc_client.post("/api/uploads", headers=bearer(token)).status_code == 201
    assert oidc_client.post("/api/configs", json=CONFIG, headers=bearer(token)).status_code == 201


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        pytest.param({"realm_access": {"roles": ["admin", "offline_access"]}}, 200, id="realm"),
        pytest.param({"resource_access": {"iotsupport": {"roles": ["admin"]}}}, 200, id="client"),
        pytest.param({"resource_access": {"other-app": {"roles": ["admin"]}}}, 403, id="other"),
    ],
)
def test_keycloak_role_places(
    oidc_client: FlaskClient, issuer: LocalIssuer, claims: dict[str, t.Any], status: int
) -> None:
    token = issuer.token(roles=None, **claims)
    assert oidc_client.get("/api/configs", headers=bearer(token)).status_code == status


def test_roles_are_read_from_every_place_and_unknown_ones_dropped() -> None:
    claims = {
        "roles": ["asset-uploader", 7],
        "realm_access": {"roles": ["uma_authorization"]},
        "resource_access": {"iotsupport": {"roles": ["admin"]}, "x": "not a dict"},
    }
    assert roles_in(claims, "iotsupport") == {Role.ADMIN, Role.ASSET_UPLOADER}
    assert roles_in({"realm_access": "junk", "resource_access": []}, "iotsupport") == set()


def test_public_routes_need_no_token(oidc_client: FlaskClient, issuer: LocalIssuer) -> None:
    for path in ("/api/health/live", "/metrics", "/api/openapi.json", "/api/docs"):
        assert oidc_client.get(path).status_code == 200, path
    # Device routes need a device's credential as DEVICE_AUTH says, never a login: with
    # the default (optional) a device without a credential is served by MAC alone.
    assert oidc_client.get("/api/configs/aa-bb-cc-dd-ee-01.json").status_code == 401
    assert (
        oidc_client.post("/api/configs", json=CONFIG, headers=bearer(issuer.token())).status_code
        == 201
    )
    assert oidc_client.get("/api/configs/aa-bb-cc-dd-ee-01.json").status_code == 200


def test_openapi_tells_which_operations_need_a_token(client: FlaskClient) -> None:
    document = client.get("/api/openapi.json").get_json()
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    paths = document["paths"]
    assert paths["/api/configs"]["post"]["security"] == [{"bearerAuth": []}]
    device_security = paths["/api/configs/{mac}.json"]["get"]["security"]
    assert device_security == [{"deviceToken": []}, {"deviceBasic": []}, {}]
    assert "security" not in paths["/api/auth/self"]["get"]


# --- Audit actor --------------------------------------------------------------------


def test_actor_is_the_token_subject(oidc_app: Flask, issuer: LocalIssuer) -> None:
    headers = bearer(issuer.token(sub="alice-42"))
    with oidc_app.test_request_context("/api/configs", headers=headers):
        assert oidc_app.preprocess_request() is None
        assert current_actor() == "alice-42"


def test_changes_record_who_made_them(oidc_client: FlaskClient, issuer: LocalIssuer) -> None:
    alice, bob = bearer(issuer.token(sub="alice-42")), bearer(issuer.token(sub="bob-7"))
    created = oidc_client.post("/api/configs", json=CONFIG, headers=alice)
    assert created.status_code == 201 and created.get_json()["updated_by"] == "alice-42"
    url = f"/api/configs/{created.get_json()['id']}"
    updated = oidc_client.put(url, json={"content": {"deviceName": "Desk"}}, headers=bob)
    assert updated.get_json()["updated_by"] == "bob-7"
    listed = oidc_client.get("/api/configs", headers=alice).get_json()["configs"]
    assert [summary["updated_by"] for summary in listed] == ["bob-7"]
    history = oidc_client.get(url + "/history", headers=alice).get_json()["versions"]
    assert [(entry["version"], entry["saved_by"]) for entry in history] == [
        (2, "bob-7"),
        (1, "alice-42"),
    ]
    assert oidc_client.delete(url, headers=bob).status_code == 204
    deleted = oidc_client.get("/api/configs/deleted", headers=alice).get_json()["configs"]
    assert deleted[0]["deleted_by"] == "bob-7"


def test_actor_is_anonymous_without_login(app: Flask) -> None:
    with app.test_request_context("/api/configs", method="POST"):
        assert app.preprocess_request() is None
        assert current_actor() == "anonymous"


# --- Cookies and CSRF -------------------------------------------------------------


def test_access_cookie_admits_a_read(oidc_client: FlaskClient, issuer: LocalIssuer) -> None:
    oidc_client.set_cookie(ACCESS_COOKIE, issuer.token())
    assert oidc_client.get("/api/configs").status_code == 200


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({}, 403, id="no-origin"),
        pytest.param({"Origin": "https://evil.example.com"}, 403, id="other-origin"),
        pytest.param({"Origin": "null"}, 403, id="null-origin"),
        pytest.param({"Referer": "https://evil.example.com/configs"}, 403, id="other-referer"),
        pytest.param({"Origin": BASEURL}, 201, id="our-origin"),
        pytest.param({"Referer": BASEURL + "/configs/3"}, 201, id="our-referer"),
    ],
)
def test_cookie_changes_need_our_origin(
    oidc_client: FlaskClient, issuer: LocalIssuer, headers: dict[str, str], status: int
) -> None:
    oidc_client.set_cookie(ACCESS_COOKIE, issuer.token())
    response = oidc_client.post("/api/configs", json=CONFIG, headers=headers)
    assert response.status_code == status, response.get_json()
    if status == 403:
        assert_error(response, 403, "cross_site_request")
        assert oidc_client.get("/api/configs").get_json()["count"] == 0


LOOK_ALIKES = [
    {"Origin": "http://iot.test.evil.example"},
    {"Origin": "http://iot.testevil.example"},
    {"Origin": "http://evil.example/iot.test"},
    {"Origin": "http://iot.test:8080"},
    {"Origin": "https://iot.test"},
    {"Origin": "http://user@iot.test"},
    {"Origin": "http://iot.test@evil.example"},
    {"Origin": "http://iot.test."},
    {"Origin": "iot.test"},
    {"Origin": ""},
    {"Origin": "http://iot.test, http://evil.example"},
    {"Referer": "http://iot.test.evil.example/configs"},
    {"Referer": "http://iot.test:8080/configs"},
    {"Referer": "https://iot.test/configs"},
    {"Referer": "http://iot.test@evil.example/configs"},
    {"Referer": "http://evil.example/?http://iot.test/"},
    {"Referer": "//iot.test/configs"},
    {"Origin": "null", "Referer": BASEURL + "/configs"},
    {"Origin": "http://evil.example", "Referer": BASEURL + "/configs"},
]


@pytest.mark.parametrize("headers", LOOK_ALIKES, ids=lambda headers: repr(headers))
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("POST", "/api/configs", CONFIG), ("POST", "/api/auth/logout", None)],
)
def test_look_alike_origins_are_refused(
    oidc_client: FlaskClient,
    issuer: LocalIssuer,
    headers: dict[str, str],
    method: str,
    path: str,
    body: dict[str, t.Any] | None,
) -> None:
    oidc_client.set_cookie(ACCESS_COOKIE, issuer.token())
    response = oidc_client.open(path, method=method, json=body, headers=headers)
    body_sent = assert_error(response, 403, "cross_site_request")
    assert body_sent["details"]["expected_origin"] == BASEURL
    assert oidc_client.get("/api/configs").get_json()["count"] == 0
    assert oidc_client.get_cookie(ACCESS_COOKIE) is not None  # the logout did not happen


@pytest.mark.parametrize("origin", ["http://IOT.TEST", "HTTP://iot.test"])
def test_the_origin_compares_without_regard_to_case(
    oidc_client: FlaskClient, issuer: LocalIssuer, origin: str
) -> None:
    oidc_client.set_cookie(ACCESS_COOKIE, issuer.token())
    response = oidc_client.post("/api/configs", json=CONFIG, headers={"Origin": origin})
    assert response.status_code == 201


def test_bearer_changes_need_no_origin(oidc_client: FlaskClient, issuer: LocalIssuer) -> None:
    oidc_client.set_cookie(ACCESS_COOKIE, "stale")
    response = oidc_client.post("/api/configs", json=CONFIG, headers=bearer(issuer.token()))
    assert response.status_code == 201


def test_logout_with_cookies_needs_our_origin(oidc_client: FlaskClient) -> None:
    oidc_client.set_cookie(ACCESS_COOKIE, "anything")
    assert_error(oidc_client.post("/api/auth/logout"), 403, "cross_site_request")


# --- Pages, login redirects ---------------------------------------------------------


def test_page_without_login_redirects_to_login(oidc_client: FlaskClient) -> None:
    response = oidc_client.get("/page?tab=2")
    assert response.status_code == 302
    assert response.headers["Location"] == "/api/auth/login?redirect=%2Fpage%3Ftab%3D2"


def test_page_with_login_is_served(oidc_client: FlaskClient, issuer: LocalIssuer) -> None:
    oidc_client.set_cookie(ACCESS_COOKIE, issuer.token())
    assert oidc_client.get("/page").status_code == 200


def test_expired_cookie_without_refresh_token_is_cleared(
    oidc_client: FlaskClient, issuer: LocalIssuer
) -> None:
    oidc_client.set_cookie(ACCESS_COOKIE, issuer.token(exp=int(time.time()) - 120))
    response = oidc_client.get("/api/configs")
    assert_error(response, 401, "unauthorized")
    assert oidc_client.get_cookie(ACCESS_COOKIE) is None


def test_login_redirects_to_the_issuer_with_pkce(oidc_client: FlaskClient) -> None:
    response = oidc_client.get("/api/auth/login?redirect=/configs%3Fsort%3Dmac")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.path == "/authorize"
    query = {name: values[0] for name, values in parse_qs(location.query).items()}
    assert query["client_id"] == LocalIssuer.CLIENT_ID
    assert query["redirect_uri"] == BASEURL + "/api/auth/callback"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert query["state"] and query["nonce"] and query["state"] != query["nonce"]
    cookie = oidc_client.get_cookie(LOGIN_COOKIE, path="/api/auth/")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    assert query["state"] not in cookie.value  # signed and encoded, not plain text
    assert "Secure" not in response.headers["Set-Cookie"]  # BASEURL is http here


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example.com/",
        "//evil.example.com/",
        "/\\evil.example.com",
        "javascript:alert(1)",
        "configs",
        "/ok\r\nSet-Cookie: x=1",
    ],
)
def test_login_refuses_open_redirects(oidc_client: FlaskClient, target: str) -> None:
    response = oidc_client.get("/api/auth/login", query_string={"redirect": target})
    assert_error(response, 400, "invalid_input")


def test_callback_without_a_started_login_is_refused(oidc_client: FlaskClient) -> None:
    response = oidc_client.get("/api/auth/callback?code=abc&state=xyz")
    assert_error(response, 400, "invalid_input")


def test_callback_with_another_state_is_refused(oidc_client: FlaskClient) -> None:
    oidc_client.get("/api/auth/login?redirect=/")
    response = oidc_client.get("/api/auth/callback?code=abc&state=forged")
    assert_error(response, 400, "invalid_input")


def test_callback_from_another_issuer_is_refused(oidc_client: FlaskClient) -> None:
    login = oidc_client.get("/api/auth/login?redirect=/")
    state = parse_qs(urlsplit(login.headers["Location"]).query)["state"][0]
    response = oidc_client.get(
        "/api/auth/callback", query_string={"code": "x", "state": state, "iss": "https://evil"}
    )
    assert_error(response, 400, "invalid_input")


def test_callback_reports_a_refused_login(oidc_client: FlaskClient) -> None:
    oidc_client.get("/api/auth/login?redirect=/")
    body = assert_error(oidc_client.get("/api/auth/callback?error=access_denied"), 400)
    assert body["details"] == {"error": "access_denied"}


def test_self_with_token(oidc_client: FlaskClient, issuer: LocalIssuer) -> None:
    token = issuer.token(roles=None, realm_access={"roles": ["asset-uploader", "offline"]})
    body = oidc_client.get("/api/auth/self", headers=bearer(token)).get_json()
    assert body == {
        "subject": "user-1",
        "email": "user@example.com",
        "name": "A User",
        "roles": ["asset-uploader"],
        "auth_enabled": True,
    }


def test_self_without_login_is_401(oidc_client: FlaskClient) -> None:
    assert_error(oidc_client.get("/api/auth/self"), 401, "unauthorized")


# --- Login off ----------------------------------------------------------------------


def test_self_without_oidc_is_an_anonymous_admin(client: FlaskClient) -> None:
    assert client.get("/api/auth/self").get_json() == {
        "subject": "anonymous",
        "email": None,
        "name": None,
        "roles": ["admin"],
        "auth_enabled": False,
    }


def test_without_oidc_everything_is_open(client: FlaskClient) -> None:
    client.set_cookie(ACCESS_COOKIE, "junk")
    assert client.post("/api/configs", json=CONFIG).status_code == 201
    assert client.get("/api/configs", headers=bearer("junk")).status_code == 200


def test_without_oidc_login_goes_straight_to_the_target(client: FlaskClient) -> None:
    response = client.get("/api/auth/login?redirect=/configs")
    assert response.status_code == 302
    assert response.headers["Location"] == "/configs"
    assert_error(client.get("/api/auth/login?redirect=//evil.example.com"), 400)


def test_without_oidc_logout_clears_cookies(client: FlaskClient) -> None:
    client.set_cookie(ACCESS_COOKIE, "x")
    client.set_cookie(REFRESH_COOKIE, "y")
    response = client.post("/api/auth/logout")
    assert response.get_json() == {"end_session_url": None}
    assert client.get_cookie(ACCESS_COOKIE) is None
    assert client.get_cookie(REFRESH_COOKIE) is None


# --- renewal: a refresh cookie cannot drive the provider --------------------------------


def issued_refresh_cookie(app: Flask, refresh_token: str) -> str:
    """The refresh cookie's value exactly as the server hands it to a browser after login."""
    with app.test_request_context():
        response = Response()
        set_token_cookies(response, Tokens("access", refresh_token, None))
    cookie = next(
        value
        for value in response.headers.getlist("Set-Cookie")
        if value.startswith(REFRESH_COOKIE + "=")
    )
    return cookie.split(";", 1)[0].split("=", 1)[1].strip('"')


FORGED_REFRESH_COOKIES = [
    *(f"bogus-{number}" for number in range(40)),
    *(f"{number}.{'A' * 27}" for number in range(20)),  # the shape of a sealed cookie
    "",
    ".",
    "good-refresh-token",  # the provider's own token, but not sealed by us
]


def test_forged_refresh_cookies_never_reach_the_provider_nor_starve_renewals(
    oidc_app: Flask, issuer: LocalIssuer
) -> None:
    """Issue 20, renewal starvation: a burst of cookies the server never issued."""
    issuer.valid_refresh_tokens.add("good-refresh-token")
    token, _, signature = issued_refresh_cookie(oidc_app, "good-refresh-token").rpartition(".")
    tampered = f"{token}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"
    calls = issuer.token_calls
    stranger = oidc_app.test_client()
    for forged in [*FORGED_REFRESH_COOKIES, tampered] * 2:
        stranger.set_cookie(REFRESH_COOKIE, forged)
        response = stranger.get("/api/configs")
        if forged:
            assert_error(response, 401, "unauthorized")
            assert stranger.get_cookie(REFRESH_COOKIE) is None  # cleared
    assert issuer.token_calls == calls  # the provider saw none of them

    # Right after the burst, an admin's session renews at once.
    admin = oidc_app.test_client()
    admin.set_cookie(ACCESS_COOKIE, issuer.token(exp=int(time.time()) - 120))
    admin.set_cookie(REFRESH_COOKIE, issued_refresh_cookie(oidc_app, "good-refresh-token"))
    response = admin.get("/api/configs")
    assert response.status_code == 200, response.get_json()
    assert issuer.token_calls == calls + 1
    renewed = admin.get_cookie(REFRESH_COOKIE)
    assert renewed is not None and renewed.value != "good-refresh-token"  # sealed again


def test_a_refresh_token_the_provider_refuses_reaches_it_once(
    oidc_app: Flask, oidc_client: FlaskClient, issuer: LocalIssuer
) -> None:
    calls = issuer.token_calls
    revoked = issued_refresh_cookie(oidc_app, "revoked-refresh-token")
    for _ in range(200):
        oidc_client.set_cookie(REFRESH_COOKIE, revoked)  # a client that insists
        response = oidc_client.get("/api/configs")
        assert_error(response, 401, "unauthorized")
    assert issuer.token_calls == calls + 1


def test_many_refused_refresh_tokens_are_rate_limited(
    oidc_app: Flask, oidc_client: FlaskClient, issuer: LocalIssuer
) -> None:
    """Sessions we issued that the provider has since ended still cannot drive it."""
    calls = issuer.token_calls
    statuses: dict[int, int] = {}
    for number in range(200):
        oidc_client.set_cookie(REFRESH_COOKIE, issued_refresh_cookie(oidc_app, f"ended-{number}"))
        response = oidc_client.get("/api/configs")
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code == 503:
            body = assert_error(response, 503, "renewal_busy")
            assert response.headers["Retry-After"] == "5"
            assert body["details"] == {"retry_after_seconds": 5}
            assert oidc_client.get_cookie(REFRESH_COOKIE) is not None  # kept for the retry
    assert set(statuses) == {401, 503}
    assert issuer.token_calls - calls <= 15  # a burst of 10, then one a second


def test_parallel_requests_share_one_renewal(oidc_app: Flask, issuer: LocalIssuer) -> None:
    issuer.valid_refresh_tokens.add("good-refresh-token")
    expired = issuer.token(exp=int(time.time()) - 120)
    refresh = issued_refresh_cookie(oidc_app, "good-refresh-token")
    calls = issuer.token_calls

    def fetch(client: FlaskClient) -> tuple[int, str | None]:
        client.set_cookie(ACCESS_COOKIE, expired)
        client.set_cookie(REFRESH_COOKIE, refresh)
        response = client.get("/api/configs")
        cookie = client.get_cookie(ACCESS_COOKIE)
        return response.status_code, cookie.value if cookie else None

    results = race(oidc_app, [fetch] * 6)
    assert [status for status, _ in results] == [200] * 6
    assert len({cookie for _, cookie in results}) == 1  # the same new tokens for all
    assert issuer.token_calls == calls + 1


def test_the_renewal_gate_remembers_for_a_while() -> None:
    now = [0.0]
    calls: list[str] = []
    renewed = (Tokens("access", "refresh", None), Principal("alice", None, None, frozenset()))

    def refresh(token: str) -> tuple[Tokens, Principal]:
        calls.append(token)
        if token.startswith("bad"):
            raise TokenRejected("invalid_grant")
        return renewed

    gate = RenewalGate(refresh, clock=lambda: now[0])
    assert gate.renew("good") == renewed
    assert gate.renew("good") is renewed
    for _ in range(3):
        with pytest.raises(TokenRejected):
            gate.renew("bad")
    assert calls == ["good", "bad"]
    now[0] = 31.0  # new tokens are shared for 30 s, a refusal is kept for 10 min
    gate.renew("good")
    with pytest.raises(TokenRejected):
        gate.renew("bad")
    assert calls == ["good", "bad", "good"]
    now[0] = 700.0
    with pytest.raises(TokenRejected):
        gate.renew("bad")
    assert calls == ["good", "bad", "good", "bad"]


# --- the login's redirect ----------------------------------------------------------------


def test_a_long_redirect_is_refused(oidc_client: FlaskClient) -> None:
    longest = "/" + "a" * 2047
    assert oidc_client.get("/api/auth/login", query_string={"redirect": longest}).status_code == 302
    cookie = oidc_client.get_cookie(LOGIN_COOKIE, path="/api/auth/")
    assert cookie is not None and len(cookie.value) < 4000
    response = oidc_client.get("/api/auth/login", query_string={"redirect": longest + "a"})
    body = assert_error(response, 400, "invalid_input")
    assert body["details"] == {"max_chars": 2048}


def test_a_page_with_a_long_query_returns_to_its_path(oidc_client: FlaskClient) -> None:
    response = oidc_client.get("/page", query_string={"q": "x" * 5000})
    assert response.status_code == 302
    assert response.headers["Location"] == "/api/auth/login?redirect=%2Fpage"
