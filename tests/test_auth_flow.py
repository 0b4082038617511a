"""The whole browser login against a real OpenID provider (npm oidc-provider) on 127.0.0.1.

An httpx client plays the browser: it follows redirects from our login to the
provider's login form, posts it, comes back through our callback with cookies,
and calls the API. The provider issues 3-second access tokens, so renewal runs
for real. The stack comes from tests/oidc_stack.py (conftest's `oidc_stack`).
"""

from __future__ import annotations

import base64
import json
import re
import time
import typing as t
from collections.abc import Iterator
from urllib.parse import urljoin

import httpx
import pytest
from conftest import wait_until
from oidc_stack import ACCESS_TOKEN_TTL
from oidc_stack import Stack

from iotsupport.auth import ACCESS_COOKIE
from iotsupport.auth import LOGIN_COOKIE
from iotsupport.auth import REFRESH_COOKIE

CONFIG = {"mac_address": "aa:bb:cc:dd:ee:42", "content": {"deviceName": "Hall"}}


@pytest.fixture
def stack(oidc_stack: Stack) -> Stack:
    return oidc_stack


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
