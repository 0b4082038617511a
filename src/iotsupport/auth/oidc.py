"""The OpenID provider as this server sees it: discovery, the code flow, refresh, logout."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import typing as t
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

from iotsupport.auth.tokens import KeyCache
from iotsupport.auth.tokens import Principal
from iotsupport.auth.tokens import ProviderUnavailable
from iotsupport.auth.tokens import TokenRejected
from iotsupport.auth.tokens import TokenValidator
from iotsupport.settings import Settings

CALLBACK_PATH = "/api/auth/callback"
HTTP_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class LoginRequest:
    """What the callback needs to finish a login; kept in a signed cookie meanwhile."""

    state: str
    nonce: str
    verifier: str
    redirect: str

    @classmethod
    def new(cls, redirect: str) -> LoginRequest:
        return cls(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=secrets.token_urlsafe(48),
            redirect=redirect,
        )

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str | None
    refresh_expires_in: int | None


class OidcClient:
    """One per process. The discovery document and the JWKS are fetched on first use."""

    def __init__(self, settings: Settings, http: httpx.Client | None = None) -> None:
        assert settings.oidc_issuer_url and settings.oidc_client_id and settings.baseurl
        assert settings.oidc_client_secret is not None
        self.issuer_url = settings.oidc_issuer_url
        self.client_id = settings.oidc_client_id
        self._secret = settings.oidc_client_secret.get_secret_value()
        self.baseurl = settings.baseurl
        self.redirect_uri = settings.baseurl + CALLBACK_PATH
        self.scopes = settings.oidc_scopes
        # Calls are rare (keys, login, renewal): no idle connections kept open.
        self._http = http or httpx.Client(
            timeout=HTTP_TIMEOUT_SECONDS, limits=httpx.Limits(max_keepalive_connections=0)
        )
        self._lock = threading.Lock()
        self._metadata: dict[str, t.Any] | None = None
        self.validator = TokenValidator(
            KeyCache(self._http, lambda: self._endpoint("jwks_uri")),
            issuer=self.issuer,
            audience=settings.oidc_audience or self.client_id,
            leeway=settings.oidc_clock_skew_seconds,
            role_client=settings.oidc_role_client or self.client_id,
        )

    def metadata(self) -> dict[str, t.Any]:
        with self._lock:
            if self._metadata is None:
                self._metadata = self._discover()
            return self._metadata

    def issuer(self) -> str:
        """The issuer exactly as its discovery document spells it (tokens must match)."""
        issuer: str = self.metadata()["issuer"]
        return issuer

    def _discover(self) -> dict[str, t.Any]:
        url = self.issuer_url + "/.well-known/openid-configuration"
        try:
            response = self._http.get(url)
            response.raise_for_status()
            document = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderUnavailable(f"discovery at {url} failed: {exc}") from exc
        if not isinstance(document, dict) or not isinstance(document.get("issuer"), str):
            raise ProviderUnavailable(f"discovery at {url} returned no issuer")
        if document["issuer"].rstrip("/") != self.issuer_url:
            # Token `iss` is checked against this; a mismatch is a misconfiguration.
            raise ProviderUnavailable(f"discovery names issuer {document['issuer']!r}")
        return document

    def _endpoint(self, name: str) -> str:
        value = self.metadata().get(name)
        if not isinstance(value, str):
            raise ProviderUnavailable(f"the issuer offers no {name}")
        return value

    def authorization_url(self, login: LoginRequest) -> str:
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": self.scopes,
            "state": login.state,
            "nonce": login.nonce,
            "code_challenge": login.challenge,
            "code_challenge_method": "S256",
        }
        return self._endpoint("authorization_endpoint") + "?" + urlencode(query)

    def finish_login(self, login: LoginRequest, code: str) -> tuple[Tokens, Principal]:
        """Exchange the code, check the ID token's nonce and the access token."""
        answer = self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "code_verifier": login.verifier,
            }
        )
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise TokenRejected("the token response has no id_token")
        self.validator.claims(id_token, audience=self.client_id, nonce=login.nonce)
        tokens = _tokens(answer)
        return tokens, self.validator.principal(tokens.access_token)

    def refresh(self, refresh_token: str) -> tuple[Tokens, Principal]:
        answer = self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )
        tokens = _tokens(answer, previous_refresh_token=refresh_token)
        return tokens, self.validator.principal(tokens.access_token)

    def end_session_url(self) -> str | None:
        endpoint = self.metadata().get("end_session_endpoint")
        if not isinstance(endpoint, str):
            return None
        query = {"client_id": self.client_id, "post_logout_redirect_uri": self.baseurl + "/"}
        return endpoint + "?" + urlencode(query)

    def _token_request(self, form: dict[str, str]) -> dict[str, t.Any]:
        url = self._endpoint("token_endpoint")
        try:
            response = self._http.post(url, data=form, auth=(self.client_id, self._secret))
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"token endpoint: {exc}") from exc
        if response.status_code >= 500:
            raise ProviderUnavailable(f"token endpoint answered {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code != 200 or not isinstance(answer, dict):
            error = answer.get("error") if isinstance(answer, dict) else response.status_code
            raise TokenRejected(f"token endpoint refused: {error}")
        return answer


def _tokens(answer: dict[str, t.Any], previous_refresh_token: str | None = None) -> Tokens:
    access_token = answer.get("access_token")
    if not isinstance(access_token, str):
        raise TokenRejected("the token response has no access_token")
    refresh_token = answer.get("refresh_token")
    expires_in = answer.get("refresh_expires_in")
    return Tokens(
        access_token=access_token,
        # Some issuers keep the refresh token and send none back on refresh.
        refresh_token=refresh_token if isinstance(refresh_token, str) else previous_refresh_token,
        refresh_expires_in=expires_in if isinstance(expires_in, int) and expires_in > 0 else None,
    )
