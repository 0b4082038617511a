"""What every answer carries and every request is held to, whatever the route.

- Request heads within our limits (URL, headers), refused in the JSON envelope;
  the HTTP server's own, larger limits are listed in README "Security".
- Only the host names of ALLOWED_HOSTS (DNS rebinding), and no state change from
  another site's page, whatever the login setting (api/origins.py).
- Security headers on every answer: no MIME sniffing, no Referer to other
  sites, no framing, and a CSP that allows nothing for answers that are not
  pages (pages set their own).
- Admin answers are never stored by a cache (they carry config content).
"""

from __future__ import annotations

import typing as t

from flask import Flask
from flask import Response
from flask import current_app
from flask import request

from iotsupport.api.origins import HostRule
from iotsupport.api.origins import cross_site_reason
from iotsupport.api.origins import origin_of
from iotsupport.auth.access import access_of
from iotsupport.errors import CrossSiteRequest
from iotsupport.errors import error_response
from iotsupport.extensions import state
from iotsupport.settings import Settings

# Tighter than the HTTP server's (64 KiB URL, ~400 KiB of headers), so that a request
# over them gets a JSON answer from us rather than an empty one from the server.
MAX_URL_BYTES = 8 * 1024
MAX_HEADER_BYTES = 32 * 1024
# Nothing may run, load or frame an answer that is not one of our pages.
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # Our own pages still send it to us (the CSRF check reads it when Origin is absent).
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


HOST_RULE_KEY = "iotsupport.host_rule"


def init_app(app: Flask, hosts: HostRule) -> None:
    app.extensions[HOST_RULE_KEY] = hosts
    app.before_request(_refuse_oversized_head)
    app.before_request(_refuse_foreign_requests)
    app.after_request(_protect)


def host_rule(settings: Settings) -> HostRule:
    return HostRule.of(settings.allowed_hosts, settings.baseurl, settings.trusted_networks)


def head_within_limits(environ: t.Mapping[str, t.Any]) -> bool:
    return _url_bytes(environ) <= MAX_URL_BYTES and _header_bytes(environ) <= MAX_HEADER_BYTES


def _url_bytes(environ: t.Mapping[str, t.Any]) -> int:
    return len(environ.get("PATH_INFO", "")) + len(environ.get("QUERY_STRING", ""))


def _header_bytes(environ: t.Mapping[str, t.Any]) -> int:
    return sum(len(key) + len(value) for key, value in environ.items() if key.startswith("HTTP_"))


def _refuse_oversized_head() -> Response | None:
    environ = request.environ
    if _url_bytes(environ) > MAX_URL_BYTES:
        return error_response(
            414,
            f"the URL is longer than {MAX_URL_BYTES} bytes",
            "uri_too_long",
            {"max_bytes": MAX_URL_BYTES},
        )
    if _header_bytes(environ) > MAX_HEADER_BYTES:
        return error_response(
            431,
            f"the request headers are larger than {MAX_HEADER_BYTES} bytes",
            "request_header_fields_too_large",
            {"max_bytes": MAX_HEADER_BYTES},
        )
    return None


def _refuse_foreign_requests() -> Response | None:
    """Before any route (and its login check): a Host we do not answer to, then a state
    change that another site's page made."""
    rule: HostRule = current_app.extensions[HOST_RULE_KEY]
    host = rule.requested_host(request.environ)
    if not rule.allows(host):
        return error_response(
            400,
            "this server does not answer to that host name; add it to ALLOWED_HOSTS",
            "unknown_host",
        )
    baseurl = state().settings.baseurl
    headers = request.headers
    reason = cross_site_reason(
        request.method, headers.get("Sec-Fetch-Site"), headers.get("Origin"), host, baseurl
    )
    if reason is not None:
        details = {"reason": reason}
        if baseurl:
            details["expected_origin"] = origin_of(baseurl)
        raise CrossSiteRequest(
            "cross-site request refused: a page on another site may not change anything here",
            details,
        )
    return None


def _protect(response: Response) -> Response:
    headers = response.headers
    for name, value in SECURITY_HEADERS.items():
        headers.setdefault(name, value)
    headers.setdefault("Content-Security-Policy", DEFAULT_CSP)
    if "Cache-Control" not in headers and _is_admin_route():
        headers["Cache-Control"] = "no-store"
    return response


def _is_admin_route() -> bool:
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None:
        return False
    access = access_of(view)
    return access is None or not access.is_public
