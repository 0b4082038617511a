"""The whole browser login against a real OpenID provider (npm oidc-provider) on 127.0.0.1.

An httpx client plays the browser: it follows redirects from our login to the
provider's login form, posts it, comes back through our callback with cookies,
and calls the API. The provider issues 3-second access tokens, so renewal runs
for real. Skipped with the reason when Node or the package is missing
(`make test` runs `npm ci` in tests/oidc); CI requires it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import time
import typing as t
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from conftest import RecordingPublisher
from conftest import free_port
from conftest import make_settings
from conftest import unavailable
from conftest import wait_until
from local_issuer import ThreadedServer
from prometheus_client import CollectorRegistry

from iotsupport import create_app
from iotsupport.auth import ACCESS_COOKIE
from iotsupport.auth import LOGIN_COOKIE
from iotsupport.auth import REFRESH_COOKIE

OIDC_DIR = Path(__file__).parent / "oidc"
CLIENT_ID = "iotsupport-web"
CLIENT_SECRET = "a-test-client-secret"
AUDIENCE = "iotsupport-api"
ACCESS_TOKEN_TTL = 3
CONFIG = {"mac_address": "aa:bb:cc:dd:ee:42", "content": {"deviceName": "Hall"}}


@dataclass(frozen=True)
class Stack:
    app_url: str
    provider_url: str


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Stack]:
    """The provider and our app (served over HTTP on a thread), once per test session."""
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed; the OpenID provider tests need Node.js 20+")
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        unavailable("oidc-provider is not installed: run `npm ci` in tests/oidc (make test does)")
    provider_port, app_port = free_port(), free_port()
    provider_url = f"http://127.0.0.1:{provider_port}"
    app_url = f"http://127.0.0.1:{app_port}"
    workdir = tmp_path_factory.mktemp("oidc")
    env = {
        **os.environ,
        "PORT": str(provider_port),
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "REDIRECT_URI": app_url + "/api/auth/callback",
        "POST_LOGOUT_REDIRECT_URI": app_url + "/",
        "AUDIENCE": AUDIENCE,
        "ACCESS_TOKEN_TTL": str(ACCESS_TOKEN_TTL),
    }
    log_path = workdir / "provider.log"
    with log_path.open("w") as log:
        provider = subprocess.Popen(
            [node, "provider.mjs"], cwd=OIDC_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        if not wait_until(lambda: _listening(provider_port), timeout=15):
            pytest.fail(f"the OpenID provider did not start:\n{log_path.read_text()}")
        database = workdir / "iotsupport.db"
        shutil.copyfile(sqlite_template, database)
        settings = make_settings(
            f"sqlite:///{database}",
            oidc_enabled=True,
            baseurl=app_url,
            oidc_issuer_url=provider_url,
            oidc_client_id=CLIENT_ID,
            oidc_client_secret=CLIENT_SECRET,
            oidc_audience=AUDIENCE,
            oidc_clock_skew_seconds=0,
            oidc_scopes="openid profile email offline_access api",
        )
        app = create_app(settings, publisher=RecordingPublisher(), registry=CollectorRegistry())
        server = ThreadedServer(app, app_port)
        try:
            yield Stack(app_url, provider_url)
        finally:
            server.close()
            app.extensions["iotsupport"].database.dispose()
    finally:
        provider.terminate()
        provider.wait(10)


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(follow_redirects=True, timeout=10) as client:
        yield client


def log_in(stack: Stack, browser: httpx.Client, user: str, target: str) -> httpx.Response:
    """Our login → the provider's form → post it → our callback → `target`."""
    form = browser.get(stack.app_url + "/api/auth/login", params={"redirect": target})
    assert form.status_code == 200, form.text
    assert str(form.url).startswith(stack.provider_url + "/interaction/")
    assert 'name="login"' in form.text
    return browser.post(str(form.url), data={"login": user})


def token_expiry(token: str) -> int:
    payload = token.split(".")[1]
    claims: dict[str, t.Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return int(claims["exp"])


def test_browser_login_then_api_calls(stack: Stack, browser: httpx.Client) -> None:
    landed = log_in(stack, browser, "alice", "/api/auth/self?from=login")
    assert landed.status_code == 200
    assert str(landed.url) == stack.app_url + "/api/auth/self?from=login"
    assert landed.json() == {
        "subject": "alice",
        "email": "alice@example.com",
        "name": "Alice Admin",
        "roles": ["admin"],
        "auth_enabled": True,
    }
    callback = next(r for r in landed.history if r.url.path == "/api/auth/callback")
    set_cookies = callback.headers.get_list("set-cookie")
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        cookie = next(c for c in set_cookies if c.startswith(name + "="))
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
        assert "Secure" not in cookie  # BASEURL is plain http in this test
    assert any(c.startswith(LOGIN_COOKIE + "=;") for c in set_cookies)  # used up

    assert browser.get(stack.app_url + "/api/configs").status_code == 200
    created = browser.post(
        stack.app_url + "/api/configs", json=CONFIG, headers={"Origin": stack.app_url}
    )
    assert created.status_code in (201, 409)  # 409 when the session re-runs this test

    # The same access token works for a machine as a bearer token.
    token = browser.cookies[ACCESS_COOKIE]
    with httpx.Client() as machine:
        answer = machine.get(
            stack.app_url + "/api/configs", headers={"Authorization": f"Bearer {token}"}
        )
    assert answer.status_code == 200


@pytest.mark.parametrize(("user", "roles"), [("uploader", ["asset-uploader"]), ("nobody", [])])
def test_users_without_admin_are_refused_configs(
    stack: Stack, browser: httpx.Client, user: str, roles: list[str]
) -> None:
    me = log_in(stack, browser, user, "/api/auth/self")
    assert me.json()["roles"] == roles
    response = browser.get(stack.app_url + "/api/configs")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


def test_expired_access_token_is_renewed_transparently(stack: Stack, browser: httpx.Client) -> None:
    log_in(stack, browser, "alice", "/api/auth/self")
    first = browser.cookies[ACCESS_COOKIE]
    expiry = token_expiry(first)
    assert wait_until(lambda: time.time() > expiry + 0.2, timeout=ACCESS_TOKEN_TTL + 2)

    response = browser.get(stack.app_url + "/api/configs")
    assert response.status_code == 200
    renewed = browser.cookies[ACCESS_COOKIE]
    assert renewed != first and token_expiry(renewed) > expiry

    # A refresh token the provider refuses: 401 and the cookies are cleared.
    with httpx.Client() as stale:
        stale.cookies.set(ACCESS_COOKIE, first)
        stale.cookies.set(REFRESH_COOKIE, "not-a-refresh-token")
        response = stale.get(stack.app_url + "/api/configs")
        assert response.status_code == 401
        cleared = response.headers.get_list("set-cookie")
        for name in (ACCESS_COOKIE, REFRESH_COOKIE):
            assert any(cookie.startswith(f"{name}=;") for cookie in cleared), cleared


def test_logout_clears_cookies_and_ends_the_provider_session(
    stack: Stack, browser: httpx.Client
) -> None:
    log_in(stack, browser, "alice", "/api/auth/self")
    answer = browser.post(stack.app_url + "/api/auth/logout", headers={"Origin": stack.app_url})
    assert answer.status_code == 200
    end_session_url = answer.json()["end_session_url"]
    assert end_session_url.startswith(stack.provider_url + "/session/end?")
    assert ACCESS_COOKIE not in browser.cookies
    assert browser.get(stack.app_url + "/api/configs").status_code == 401

    # The browser opens the end-session URL and confirms; the provider sends it home.
    confirm = browser.get(end_session_url)
    assert confirm.status_code == 200
    action = re.search(r'action="([^"]+)"', confirm.text)
    xsrf = re.search(r'name="xsrf" value="([^"]+)"', confirm.text)
    assert action and xsrf, confirm.text
    done = browser.post(
        urljoin(str(confirm.url), action.group(1)),
        data={"xsrf": xsrf.group(1), "logout": "yes"},
        follow_redirects=False,
    )
    assert done.is_redirect
    assert done.headers["Location"] == stack.app_url + "/"

    # The provider forgot the session: logging in asks for the login form again.
    again = browser.get(stack.app_url + "/api/auth/login", params={"redirect": "/api/auth/self"})
    assert str(again.url).startswith(stack.provider_url + "/interaction/")
