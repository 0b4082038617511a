"""Who a JWT says the caller is: signature against the issuer's JWKS, then the claims."""

from __future__ import annotations

import logging
import threading
import time
import typing as t
from dataclasses import dataclass

import httpx
from joserfc import jws
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from iotsupport.auth.access import Role

log = logging.getLogger(__name__)

# Asymmetric only: `none` and HS256 signed with a public key are refused by construction.
ALLOWED_ALGORITHMS = [
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
]
KNOWN_ROLES = frozenset(role.value for role in Role)


class TokenRejected(Exception):
    """The token is not acceptable; the message says why (for logs, not for clients)."""


class ProviderUnavailable(Exception):
    """The identity provider did not answer (discovery, JWKS or token endpoint)."""


@dataclass(frozen=True)
class Principal:
    subject: str
    email: str | None
    name: str | None
    roles: frozenset[Role]

    def may(self, allowed: frozenset[Role]) -> bool:
        return Role.ADMIN in self.roles or bool(self.roles & allowed)


def roles_in(claims: dict[str, t.Any], role_client: str) -> frozenset[Role]:
    """Our roles from Keycloak's places (realm and client) and a plain `roles` claim."""
    found: set[str] = set()
    places = (
        claims.get("roles"),
        _dict(claims.get("realm_access")).get("roles"),
        _dict(_dict(claims.get("resource_access")).get(role_client)).get("roles"),
    )
    for place in places:
        if isinstance(place, list):
            found.update(role for role in place if isinstance(role, str))
    return frozenset(Role(role) for role in found & KNOWN_ROLES)


def _dict(value: object) -> dict[str, t.Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class KeyCache:
    """The issuer's JWKS, fetched on first use and again when a token names an unknown key."""

    MAX_AGE_SECONDS = 3600.0  # removed keys stop being trusted within this long
    MIN_REFETCH_SECONDS = 30.0  # unknown-kid tokens cannot make us hammer the issuer

    def __init__(self, http: httpx.Client, jwks_uri: t.Callable[[], str]) -> None:
        self._http = http
        self._jwks_uri = jwks_uri
        self._lock = threading.Lock()
        self._keys: KeySet | None = None
        self._fetched_at = 0.0
        self._refetched_at: float | None = None

    def keys_for(self, kid: str | None) -> KeySet:
        with self._lock:
            now = time.monotonic()
            if self._keys is None or now - self._fetched_at > self.MAX_AGE_SECONDS:
                self._fetch(now)
            elif kid is not None and not self._has(kid) and self._may_refetch(now):
                log.info("token names unknown key id %r: fetching the JWKS again", kid)
                self._refetched_at = now
                self._fetch(now)
            assert self._keys is not None
            return self._keys

    def _has(self, kid: str) -> bool:
        return any(key.kid == kid for key in t.cast(KeySet, self._keys).keys)

    def _may_refetch(self, now: float) -> bool:
        return self._refetched_at is None or now - self._refetched_at >= self.MIN_REFETCH_SECONDS

    def _fetch(self, now: float) -> None:
        try:
            response = self._http.get(self._jwks_uri())
            response.raise_for_status()
            self._keys = KeySet.import_key_set(response.json())
        except (httpx.HTTPError, ValueError, JoseError) as exc:
            if self._keys is None:
                raise ProviderUnavailable(f"JWKS not available: {exc}") from exc
            # Keep the keys we have: tokens they sign stay valid while the issuer is away.
            log.warning("JWKS refresh failed, keeping the cached keys: %s", exc)
        self._fetched_at = now


class TokenValidator:
    """Checks signature, iss, aud, exp and nbf (with leeway) and reads the principal."""

    def __init__(
        self,
        keys: KeyCache,
        *,
        issuer: t.Callable[[], str],
        audience: str,
        leeway: int,
        role_client: str,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway
        self._role_client = role_client

    def principal(self, token: str) -> Principal:
        claims = self.claims(token, audience=self._audience)
        return Principal(
            subject=claims["sub"],
            email=_text(claims.get("email")),
            name=_text(claims.get("name")) or _text(claims.get("preferred_username")),
            roles=roles_in(claims, self._role_client),
        )

    def claims(self, token: str, *, audience: str, nonce: str | None = None) -> dict[str, t.Any]:
        try:
            header = jws.extract_compact(token.encode()).protected
        except (JoseError, ValueError, UnicodeError) as exc:
            raise TokenRejected(f"not a JWT: {exc}") from exc
        if header.get("alg") not in ALLOWED_ALGORITHMS:
            raise TokenRejected(f"algorithm {header.get('alg')!r} is not allowed")
        kid = header.get("kid")
        keys = self._keys.keys_for(kid if isinstance(kid, str) else None)
        try:
            decoded = jwt.decode(token, keys, algorithms=ALLOWED_ALGORITHMS)
        except JoseError as exc:
            raise TokenRejected(f"signature: {exc}") from exc
        options: dict[str, t.Any] = {
            "iss": {"essential": True, "value": self._issuer()},
            "aud": {"essential": True, "value": audience},
            "sub": {"essential": True},
            "exp": {"essential": True},
        }
        if nonce is not None:
            options["nonce"] = {"essential": True, "value": nonce}
        registry = jwt.JWTClaimsRegistry(leeway=self._leeway, **options)
        try:
            registry.validate(decoded.claims)
        except JoseError as exc:
            raise TokenRejected(f"claims: {exc}") from exc
        if not isinstance(decoded.claims.get("sub"), str):
            raise TokenRejected("sub is not a string")
        return decoded.claims
