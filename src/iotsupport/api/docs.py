"""/api/openapi.json and /api/docs (Swagger UI served from the package, no CDN)."""

from __future__ import annotations

import typing as t

from flask import Blueprint
from flask import Response
from flask import current_app
from flask import jsonify
from flask import send_from_directory
from openapi_ui_bundles import swagger_ui

from iotsupport.api.spec import build_openapi
from iotsupport.auth.access import public
from iotsupport.ui import static_url

bp = Blueprint("docs", __name__)

_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="color-scheme" content="light dark">
  <title>API · IoTSupport</title>
  <link rel="icon" href="{favicon}" type="image/svg+xml">
  <link rel="stylesheet" href="/api/docs/swagger-ui.css">
  <link rel="stylesheet" href="{style}">
</head>
<body>
  <header class="docs-bar">
    <a class="brand" href="/"><img src="{favicon}" alt=""> IoTSupport</a>
    <a href="/">Devices</a>
    <a href="/models">Models</a>
    <a href="/firmware">Firmware</a>
    <span class="spacer"></span>
    <a href="/api/openapi.json">openapi.json</a>
  </header>
  <h1 class="visually-hidden">IoTSupport API reference</h1>
  <main id="swagger-ui"></main>
  <script src="/api/docs/swagger-ui-bundle.js"></script>
  <script src="/api/docs/init.js"></script>
</body>
</html>
"""
# A file, not an inline script, so the page's CSP can forbid inline script.
_INIT_SCRIPT = 'window.ui = SwaggerUIBundle({url: "/api/openapi.json", dom_id: "#swagger-ui"});\n'
# Swagger UI sets element styles from script and shows data: images; nothing else.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)


@bp.get("/api/openapi.json")
@public
def openapi_document() -> Response:
    document: dict[str, t.Any] | None = current_app.extensions.get("iotsupport.openapi")
    if document is None:
        document = build_openapi(current_app, "IoTSupport", current_app.config["VERSION"])
        current_app.extensions["iotsupport.openapi"] = document
    return jsonify(document)


@bp.get("/api/docs")
@public
def docs_page() -> Response:
    page = _DOCS_PAGE.format(favicon=static_url("favicon.svg"), style=static_url("docs.css"))
    response = Response(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


@bp.get("/api/docs/init.js")
@public
def docs_init() -> Response:
    response = Response(_INIT_SCRIPT, mimetype="text/javascript")
    response.cache_control.max_age = 3600
    return response


@bp.get("/api/docs/<any('swagger-ui.css', 'swagger-ui-bundle.js'):filename>")
@public
def docs_asset(filename: str) -> Response:
    return send_from_directory(swagger_ui.static_path, filename, max_age=3600)
