"""Test helpers for login: a tiny token issuer over real HTTP, and a server for the app.

`LocalIssuer` serves a discovery document and a JWKS from a werkzeug server on a
thread and signs JWTs with its own keys, so the app fetches keys exactly as it
would from Keycloak; it counts JWKS fetches to show caching and refetching.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import typing as t

from conftest import free_port
from joserfc import jwt
from joserfc.jwk import RSAKey
from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response


class ThreadedServer:
    """A WSGI app on 127.0.0.1 on a thread of the test process."""

    def __init__(self, app: t.Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: BaseWSGIServer = make_server("127.0.0.1", self.port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class LocalIssuer:
    AUDIENCE = "iotsupport-api"
    CLIENT_ID = "iotsupport"

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "key-1"})
        self.published = [self.key]
        self.jwks_fetches = 0
        self.jwks_broken = False  # answer 500 on /jwks, as an issuer in trouble would
        self.token_calls = 0  # POSTs to /token (code exchanges and renewals)
        self.valid_refresh_tokens: set[str] = set()  # renewed with a fresh access token
        self._server = ThreadedServer(self._wsgi)
        self.url = self._server.url

    def close(self) -> None:
        self._server.close()

    def login_settings(self, baseurl: str = "http://iot.test") -> dict[str, t.Any]:
        """Settings overrides for an app that logs in against this issuer (its key published)."""
        self.publish(self.key)
        return {
            "oidc_enabled": True,
            "baseurl": baseurl,
            "oidc_issuer_url": self.url,
            "oidc_client_id": self.CLIENT_ID,
            "oidc_client_secret": "client-secret",
            "oidc_audience": self.AUDIENCE,
        }

    def publish(self, *keys: RSAKey) -> None:
        self.published = list(keys)

    def _wsgi(self, environ: dict[str, t.Any], start_response: t.Any) -> t.Any:
        request = Request(environ)
        if request.path == "/.well-known/openid-configuration":
            body: dict[str, t.Any] = {
                "issuer": self.url,
                "jwks_uri": self.url + "/jwks",
                "authorization_endpoint": self.url + "/authorize",
                "token_endpoint": self.url + "/token",
            }
        elif request.path == "/token" and request.method == "POST":
            self.token_calls += 1
            refresh = request.form.get("refresh_token", "")
            if refresh not in self.valid_refresh_tokens:
                body = {"error": "invalid_grant"}
                return Response(json.dumps(body), status=400, mimetype="application/json")(
                    environ, start_response
                )
            body = {"access_token": self.token(), "refresh_token": refresh}
        elif request.path == "/jwks":
            self.jwks_fetches += 1
            if self.jwks_broken:
                return Response(status=500)(environ, start_response)
            body = {"keys": [key.as_dict(private=False) for key in self.published]}
        else:
            return Response(status=404)(environ, start_response)
        return Response(json.dumps(body), mimetype="application/json")(environ, start_response)

    def claims(self, **overrides: t.Any) -> dict[str, t.Any]:
        now = int(time.time())
        claims: dict[str, t.Any] = {
            "iss": self.url,
            "aud": self.AUDIENCE,
            "sub": "user-1",
            "email": "user@example.com",
            "name": "A User",
            "iat": now,
            "exp": now + 300,
            "roles": ["admin"],
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def token(self, key: RSAKey | None = None, **overrides: t.Any) -> str:
        """A JWT signed with `key` (default: the published one); None drops a claim."""
        key = key or self.key
        return jwt.encode({"alg": "RS256", "kid": key.kid}, self.claims(**overrides), key)

    def unsigned_token(self, header: dict[str, t.Any], **overrides: t.Any) -> str:
        """Header and claims with an empty signature (for `alg: none`)."""
        return f"{b64_json(header)}.{b64_json(self.claims(**overrides))}."


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64_json(data: dict[str, t.Any]) -> str:
    return b64url(json.dumps(data).encode())
