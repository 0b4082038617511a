"""/api/auth: the browser login (OIDC code flow run by the server) and who is logged in."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import request
from werkzeug.wrappers import Response as BaseResponse

from iotsupport import auth
from iotsupport.api import json_response
from iotsupport.api.spec import operation
from iotsupport.auth.access import public
from iotsupport.auth.schemas import LogoutSchema
from iotsupport.auth.schemas import SelfSchema

bp = Blueprint("auth", __name__, url_prefix="/api/auth")
TAG = "auth"


@bp.get("/login")
@public
@operation(
    "Log in: redirects to the identity provider, then back to `redirect` (a local path)",
    tag=TAG,
    responses={
        302: "To the identity provider",
        400: "redirect is not a local path, or longer than 2048 characters",
        503: "The identity provider is not reachable",
    },
    database=False,
)
def login() -> BaseResponse:
    return auth.start_login(request.args.get("redirect", "/"))


@bp.get("/callback")
@public
@operation(
    "Where the identity provider sends the browser back; sets the cookies",
    tag=TAG,
    responses={
        302: "To the saved path",
        400: "No matching login",
        401: "Tokens refused",
        503: "The identity provider is not reachable",
    },
    database=False,
)
def callback() -> BaseResponse:
    return auth.finish_login(request.args)


@bp.get("/self")
@public
@operation(
    "Who is logged in",
    tag=TAG,
    responses={
        200: SelfSchema,
        401: "Not logged in",
        503: "The identity provider is not reachable, or too many renewals at once",
    },
    database=False,
)
def whoami() -> Response:
    principal = auth.current_principal()
    body = SelfSchema(
        subject=principal.subject,
        email=principal.email,
        name=principal.name,
        roles=sorted(principal.roles),
        auth_enabled=auth.auth().enabled,
    )
    return json_response(body)


@bp.post("/logout")
@public
@operation("Log out: clears the cookies", tag=TAG, responses={200: LogoutSchema}, database=False)
def logout() -> Response:
    return auth.logout()
