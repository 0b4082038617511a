"""The web UI: page shells served from the package; the pages load their data from /api."""

from __future__ import annotations

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import render_template
from flask import request
from werkzeug.exceptions import NotFound

from iotsupport.auth.access import Role
from iotsupport.auth.access import requires
from iotsupport.errors import http_error_response

bp = Blueprint(
    "ui",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/ui/static",
)

# Only our own files run in these pages: no inline script, no third-party origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def page(template: str, **context: object) -> Response:
    html = render_template(template, version=current_app.config["VERSION"], **context)
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/")
@requires(Role.ADMIN)
def devices() -> Response:
    return page("devices.html", active="devices")


@bp.get("/devices/new")
@requires(Role.ADMIN)
def new_device() -> Response:
    return page("new.html", active="devices")


@bp.get("/devices/<int:config_id>")
@requires(Role.ADMIN)
def device(config_id: int) -> Response:
    return page("device.html", active="devices", config_id=config_id)


@bp.get("/models")
@requires(Role.ADMIN)
def models() -> Response:
    return page("models.html", active="models")


@bp.get("/models/new")
@requires(Role.ADMIN)
def new_model() -> Response:
    return page("model.html", active="models", code=None)


@bp.get("/models/<code>")
@requires(Role.ADMIN)
def model(code: str) -> Response:
    return page("model.html", active="models", code=code)


@bp.get("/firmware")
@requires(Role.ADMIN)
def firmware() -> Response:
    return page("firmware.html", active="firmware")


@bp.app_errorhandler(NotFound)
def not_found(exc: NotFound) -> Response:
    """A person who mistypes a page gets a page back; API clients keep the JSON error."""
    wants_page = request.accept_mimetypes.best_match(["application/json", "text/html"])
    if request.path.startswith("/api/") or wants_page != "text/html":
        return http_error_response(exc)
    response = page("not_found.html", active=None)
    response.status_code = 404
    return response
