"""Login and roles in one `before_request` hook: every route's `@public`/`@requires` mark.

Browsers log in through /api/auth/* (the server runs the OIDC code flow and keeps
the tokens in HttpOnly cookies); machines send `Authorization: Bearer <JWT>`.
"""

from __future__ import annotations

import logging
import typing as t
from dataclasses import dataclass
from urllib.parse import urlencode
from urllib.parse import urlsplit

from flask import Flask
from flask import Response
from flask import current_app
from flask import g
from flask import jsonify
from flask import redirect
from flask import request
from itsdangerous import BadSignature
from itsdangerous import URLSafeTimedSerializer
from werkzeug.wrappers import Response as BaseResponse

from iotsupport.auth.access import Access
from iotsupport.auth.access import Role
from iotsupport.auth.access import access_of
from iotsupport.auth.oidc import LoginRequest
from iotsupport.auth.oidc import OidcClient
from iotsupport.auth.oidc import Tokens
from iotsupport.auth.renewal import RefreshSeal
from iotsupport.auth.renewal import RenewalGate
from iotsupport.auth.tokens import Principal
from iotsupport.auth.tokens import ProviderUnavailable
from iotsupport.auth.tokens import TokenRejected
from iotsupport.errors import CrossSiteRequest
from iotsupport.errors import Forbidden
from iotsupport.errors import InvalidInput
from iotsupport.errors import InvalidToken
from iotsupport.errors import Unauthorized
from iotsupport.errors import error_response
from iotsupport.settings import Settings

if t.TYPE_CHECKING:
    from iotsupport.credentials.device_auth import DeviceGate

log = logging.getLogger(__name__)

EXTENSION_KEY = "iotsupport.auth"
ACCESS_COOKIE = "iotsupport_access"
REFRESH_COOKIE = "iotsupport_refresh"
LOGIN_COOKIE = "iotsupport_login"
LOGIN_COOKIE_PATH = "/api/auth/"
AUTH_COOKIES = (ACCESS_COOKIE, REFRESH_COOKIE, LOGIN_COOKIE)
LOGIN_SECONDS = 600  # time to finish a login at the provider
# The page to return to is kept in the login cookie; browsers keep cookies up to 4 KB.
MAX_REDIRECT_CHARS = 2048
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Without login every caller acts as this admin (GET /api/auth/self says so).
ANONYMOUS_ADMIN = Principal("anonymous", None, None, frozenset({Role.ADMIN}))
_ADMIN_ONLY = Access(frozenset({Role.ADMIN}))


@dataclass
class Auth:
    """Per-app login state: the OIDC client (None when login is off) and the cookie signer;
    and the device half of the access hook (DEVICE_AUTH)."""

    client: OidcClient | None
    secure_cookies: bool
    signer: URLSafeTimedSerializer | None
    devices: DeviceGate
    renewals: RenewalGate | None = None
    refresh_seal: RefreshSeal | None = None

    @property
    def enabled(self) -> bool:
        return self.client is not None

    @property
    def oidc(self) -> OidcClient:
        if self.client is None:
            raise InvalidInput("login is off on this server (OIDC_ENABLED=false)")
        return self.client


def auth() -> Auth:
    state: Auth = current_app.extensions[EXTENSION_KEY]
    return state


def init_app(app: Flask, settings: Settings) -> None:
    client = OidcClient(settings) if settings.oidc_enabled else None
    signer = None
    seal = None
    if settings.oidc_client_secret is not None:
        # The login cookie is signed with a key derived from the client secret, which
        # every replica shares; the salt keeps it apart from any other use of it.
        secret = settings.oidc_client_secret.get_secret_value()
        signer = URLSafeTimedSerializer(secret, salt="iotsupport.login")
        seal = RefreshSeal(secret)
    secure = (settings.baseurl or "").startswith("https://")
    devices: DeviceGate = app.extensions["iotsupport"].devices  # built by create_app first
    renewals = RenewalGate(client.refresh) if client is not None else None
    app.extensions[EXTENSION_KEY] = Auth(client, secure, signer, devices, renewals, seal)
    app.before_request(_enforce_access)
    app.after_request(_store_renewed_tokens)
    app.register_error_handler(ProviderUnavailable, _provider_unavailable)


def _provider_unavailable(exc: ProviderUnavailable) -> Response:
    # The detail (URL, driver message) is for the log; the client learns only that.
    log.warning("identity provider unavailable: %s", exc)
    return error_response(503, "the identity provider is not reachable", "service_unavailable")


def _enforce_access() -> BaseResponse | None:
    endpoint = request.endpoint
    if endpoint is None:  # no route: routing answers 404/405
        return None
    if endpoint == "static" or endpoint.endswith(".static"):
        return None
    # An unmarked route stays closed: admin only.
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    access = access_of(app.view_functions[endpoint]) or _ADMIN_ONLY
    state: Auth = app.extensions[EXTENSION_KEY]
    if access.device is not None:  # whatever OIDC_ENABLED is
        roles = access.device.or_roles
        state.devices.enforce(access.device, lambda: _admin_allowed(roles))
        return None
    if not state.enabled:
        return None
    if request.method in STATE_CHANGING and _authenticated_by_cookie():
        _check_origin()
    if access.is_public:
        return None
    try:
        principal = current_principal()
    except Unauthorized:
        if _is_page_request():
            return redirect(login_url(_page_to_return_to()))
        raise
    if not principal.may(access.roles):
        raise Forbidden("your roles do not allow this", {"roles": sorted(principal.roles)})
    return None


def _admin_allowed(roles: frozenset[Role]) -> bool:
    """For a route that admits a device or these roles: is the caller logged in with one?"""
    if auth().enabled and request.method in STATE_CHANGING and _authenticated_by_cookie():
        _check_origin()
    try:
        principal = current_principal()
    except Unauthorized:
        return False
    if not principal.may(roles):
        raise Forbidden("your roles do not allow this", {"roles": sorted(principal.roles)})
    return True


def current_principal() -> Principal:
    """The caller, checked once per request; Unauthorized when there is none."""
    if not auth().enabled:
        return ANONYMOUS_ADMIN
    principal: Principal | None = g.get("principal")
    if principal is None:
        principal = _authenticate(auth().oidc)
        g.principal = principal
        g.actor = principal.subject
    return principal


def _authenticate(client: OidcClient) -> Principal:
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("send the token as `Authorization: Bearer <token>`")
        try:
            return client.validator.principal(token.strip())
        except TokenRejected as exc:
            log.info("bearer token refused: %s", exc)
            raise InvalidToken("the token is not valid") from None
    access_token = request.cookies.get(ACCESS_COOKIE)
    if access_token:
        try:
            return client.validator.principal(access_token)
        except TokenRejected as exc:  # expired, most likely: try the refresh token
            log.debug("access cookie refused: %s", exc)
    refresh_cookie = request.cookies.get(REFRESH_COOKIE)
    if refresh_cookie:
        renewals, seal = auth().renewals, auth().refresh_seal
        assert renewals is not None and seal is not None
        refresh_token = seal.opened(refresh_cookie)
        if refresh_token is None:  # not issued here: no budget spent, no provider asked
            log.info("token renewal refused: a refresh cookie this server did not issue")
            g.clear_auth_cookies = True
            raise Unauthorized("your session has ended; log in again")
        try:
            tokens, principal = renewals.renew(refresh_token)
        except TokenRejected as exc:
            log.info("token renewal refused: %s", exc)
            g.clear_auth_cookies = True
            raise Unauthorized("your session has ended; log in again") from None
        g.renewed_tokens = tokens
        return principal
    if access_token:
        g.clear_auth_cookies = True
        raise Unauthorized("your session has ended; log in again")
    raise Unauthorized("log in or send a bearer token")


def _authenticated_by_cookie() -> bool:
    if "Authorization" in request.headers:
        return False
    return ACCESS_COOKIE in request.cookies or REFRESH_COOKIE in request.cookies


def _check_origin() -> None:
    """CSRF: a cookie-borne change must come from our own pages."""
    expected = _origin(auth().oidc.baseurl)
    sent = request.headers.get("Origin")
    if sent is None and request.referrer:
        sent = request.referrer
    if sent is None or sent == "null" or _origin(sent) != expected:
        raise CrossSiteRequest(
            "cross-site request refused: Origin must be this server",
            {"expected_origin": expected},
        )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def _is_page_request() -> bool:
    return request.method in ("GET", "HEAD") and not request.path.startswith("/api/")


def _page_to_return_to() -> str:
    """This page, to come back to after the login (without a query too long to keep)."""
    query = request.query_string.decode("latin-1")
    target = request.path + ("?" + query if query else "")
    for candidate in (target, request.path):
        if len(candidate) <= MAX_REDIRECT_CHARS:
            return candidate
    return "/"


def login_url(target: str) -> str:
    return "/api/auth/login?" + urlencode({"redirect": target})


def local_path(target: str) -> str:
    """The redirect target after login: a path on this server, never another site."""
    if len(target) > MAX_REDIRECT_CHARS:
        raise InvalidInput(
            f"redirect is longer than {MAX_REDIRECT_CHARS} characters",
            {"max_chars": MAX_REDIRECT_CHARS},
        )
    parts = urlsplit(target)
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or parts.scheme
        or parts.netloc
        or any(ord(char) < 0x21 or ord(char) == 0x7F for char in target)
    ):
        raise InvalidInput("redirect must be a path on this server, such as /configs")
    return target


# --- The login flow ---------------------------------------------------------


def start_login(target: str) -> BaseResponse:
    target = local_path(target)
    state = auth()
    if not state.enabled:
        return redirect(target)
    login = LoginRequest.new(target)
    response = redirect(state.oidc.authorization_url(login))
    assert state.signer is not None
    _set_cookie(
        response,
        LOGIN_COOKIE,
        state.signer.dumps([login.state, login.nonce, login.verifier, login.redirect]),
        max_age=LOGIN_SECONDS,
        path=LOGIN_COOKIE_PATH,
    )
    return response


def finish_login(args: t.Mapping[str, str]) -> BaseResponse:
    state = auth()
    client = state.oidc
    login = _pending_login(state)
    if "error" in args:
        raise InvalidInput("the identity provider refused the login", {"error": args["error"]})
    if args.get("state") != login.state:
        raise InvalidInput("this login answer does not match the login started here")
    if "iss" in args and args["iss"] != client.issuer():  # RFC 9207: mix-up defence
        raise InvalidInput("this login answer comes from another issuer")
    code = args.get("code")
    if not code:
        raise InvalidInput("the identity provider sent no code")
    try:
        tokens, principal = client.finish_login(login, code)
    except TokenRejected as exc:
        log.info("login refused: %s", exc)
        raise Unauthorized("the login could not be completed; try again") from None
    log.info("login: subject=%s roles=%s", principal.subject, sorted(principal.roles))
    response = redirect(login.redirect)
    set_token_cookies(response, tokens)
    response.delete_cookie(LOGIN_COOKIE, path=LOGIN_COOKIE_PATH)
    return response


def _pending_login(state: Auth) -> LoginRequest:
    cookie = request.cookies.get(LOGIN_COOKIE)
    assert state.signer is not None
    try:
        saved = state.signer.loads(cookie or "", max_age=LOGIN_SECONDS)
        return LoginRequest(*(str(part) for part in saved))
    except (BadSignature, TypeError):
        raise InvalidInput("no login in progress here (or it took too long); start again") from None


def logout() -> Response:
    """Clear our cookies; hand back the provider's end-session URL when it has one."""
    state = auth()
    end_session_url = None
    if state.enabled:
        try:
            end_session_url = state.oidc.end_session_url()
        except ProviderUnavailable as exc:
            log.warning("identity provider unavailable at logout: %s", exc)
    response = jsonify(end_session_url=end_session_url)
    clear_token_cookies(response)
    return response


# --- Cookies ----------------------------------------------------------------


def _set_cookie(
    response: BaseResponse, name: str, value: str, *, max_age: int | None = None, path: str = "/"
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        secure=auth().secure_cookies,
        httponly=True,
        samesite="Lax",
    )


def set_token_cookies(response: BaseResponse, tokens: Tokens) -> None:
    _set_cookie(response, ACCESS_COOKIE, tokens.access_token)
    seal = auth().refresh_seal
    if tokens.refresh_token and seal is not None:
        _set_cookie(
            response,
            REFRESH_COOKIE,
            seal.seal(tokens.refresh_token),
            max_age=tokens.refresh_expires_in,
        )


def cookie_secrets() -> list[str]:
    """This request's login secrets as the browser holds them, and the refresh token inside."""
    secrets = [request.cookies.get(name, "") for name in AUTH_COOKIES]
    seal = auth().refresh_seal
    sealed = request.cookies.get(REFRESH_COOKIE)
    opened = seal.opened(sealed) if seal is not None and sealed else None
    return [*secrets, opened] if opened else secrets


def clear_token_cookies(response: BaseResponse) -> None:
    for name in (ACCESS_COOKIE, REFRESH_COOKIE):
        response.delete_cookie(name, secure=auth().secure_cookies, httponly=True, samesite="Lax")


def _store_renewed_tokens(response: Response) -> Response:
    tokens: Tokens | None = g.pop("renewed_tokens", None)
    if tokens is not None:
        set_token_cookies(response, tokens)
    elif g.pop("clear_auth_cookies", False):
        clear_token_cookies(response)
    return response
