"""The web UI: page shells served from the package; the pages load their data from /api."""

from __future__ import annotations

import functools
import hashlib
import secrets
from pathlib import Path

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import render_template
from flask import request
from flask import send_from_directory
from werkzeug.exceptions import NotFound

from iotsupport.auth.access import Role
from iotsupport.auth.access import public
from iotsupport.auth.access import requires
from iotsupport.errors import http_error_response
from iotsupport.extensions import state

bp = Blueprint("ui", __name__, template_folder="templates")

STATIC_FOLDER = Path(__file__).parent / "static"
# A year: the URL changes whenever any file does (see static_digest).
IMMUTABLE_SECONDS = 365 * 24 * 3600

# Only our own files run in these pages: no inline script, no third-party origin. The one
# exception is for styles: the editor (CodeMirror) puts its own rules in a <style> element
# it creates, which carries this response's nonce (read from <meta name="csp-nonce">).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)


@functools.cache
def static_digest(folder: Path = STATIC_FOLDER) -> str:
    """A digest of every static file: part of their URLs, so a browser may keep them for a
    year and still never runs an old script after an upgrade. The scripts import each
    other by relative URL, so the whole folder shares one digest."""
    digest = hashlib.blake2b(digest_size=6)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def static_url(filename: str) -> str:
    return f"/ui/static/{static_digest()}/{filename}"


@bp.get("/ui/static/<digest>/<path:filename>")
@public
def static_file(digest: str, filename: str) -> Response:
    """The UI's scripts, styles and icons: cached for a year under the current digest."""
    current = digest == static_digest()
    response = send_from_directory(STATIC_FOLDER, filename, max_age=0)
    # An old digest (a page from before an upgrade) gets today's file, revalidated each time.
    response.cache_control.public = current
    response.cache_control.immutable = current
    response.cache_control.max_age = IMMUTABLE_SECONDS if current else 0
    response.cache_control.no_cache = None if current else True
    return response


def server_settings() -> dict[str, object]:
    """What the page scripts need to know of the server's settings (body data-* attributes),
    so their messages say what is true: no request, no secret."""
    settings = state().settings
    return {
        "mqtt": "on" if settings.mqtt_url else "off",
        "home-assistant-url": settings.home_assistant_url or "",
        "max-request-bytes": settings.max_request_bytes,
        "import-max-bytes": settings.import_max_bytes,
        "import-max-files": settings.import_max_files,
    }


def page(template: str, **context: object) -> Response:
    nonce = secrets.token_urlsafe(18)
    html = render_template(
        template,
        version=current_app.config["VERSION"],
        static_url=static_url,
        csp_nonce=nonce,
        server=server_settings(),
        **context,
    )
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.format(nonce=nonce)
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


@bp.get("/models/<code>/releases")
@requires(Role.ADMIN)
def model_releases(code: str) -> Response:
    return page("releases.html", active="models", code=code)


@bp.get("/models/<code>/rollouts/<int:rollout_id>")
@requires(Role.ADMIN)
def rollout(code: str, rollout_id: int) -> Response:
    return page("rollout.html", active="models", code=code, rollout_id=rollout_id)


@bp.get("/change-sets")
@requires(Role.ADMIN)
def change_sets() -> Response:
    return page("change_sets.html", active="devices")


@bp.get("/firmware")
@requires(Role.ADMIN)
def firmware() -> Response:
    return page("firmware.html", active="firmware")


@bp.get("/crashes")
@requires(Role.ADMIN)
def crashes() -> Response:
    return page("crashes.html", active="crashes")


@bp.get("/crashes/<int:crash_id>")
@requires(Role.ADMIN)
def crash(crash_id: int) -> Response:
    return page("crash.html", active="crashes", crash_id=crash_id)


@bp.get("/logs")
@requires(Role.ADMIN)
def logs() -> Response:
    return page("logs.html", active="logs")


@bp.app_errorhandler(NotFound)
def not_found(exc: NotFound) -> Response:
    """A person who mistypes a page gets a page back; API clients keep the JSON error."""
    wants_page = request.accept_mimetypes.best_match(["application/json", "text/html"])
    if request.path.startswith("/api/") or wants_page != "text/html":
        return http_error_response(exc)
    response = page("not_found.html", active=None)
    response.status_code = 404
    return response
