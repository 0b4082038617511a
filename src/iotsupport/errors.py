"""The error tree and the single JSON envelope every refusal uses.

AppError
 ├── InvalidInput        400 invalid_input
 │    ├── InvalidSchema   400 invalid_schema        (a device model's JSON Schema)
 │    ├── SchemaViolation 400 schema_violation      (content against its model's schema)
 │    ├── DuplicateKey    400 duplicate_key         (a JSON object names a key twice)
 │    └── NulCharacter    400 nul_character         (U+0000 in a text field)
 ├── Unauthorized        401 unauthorized (WWW-Authenticate: Bearer)
 │    ├── InvalidToken   401 invalid_token
 │    └── DeviceUnauthorized 401 device_unauthorized (one body for every device refusal)
 ├── Forbidden           403 forbidden
 │    └── CrossSiteRequest 403 cross_site_request (a change from another site's page)
 ├── HostNotAllowed      403 host_not_allowed      (image proxy allowlist)
 ├── NotFound            404 not_found
 ├── Conflict            409 conflict
 │    ├── SchemaChangeBreaksConfigs 409 schema_change_breaks_configs
 │    ├── ModelInUse                409 model_in_use
 │    └── ChangedSince              409 changed_since  (undo of a bulk change)
 ├── PreconditionFailed  412 precondition_failed
 ├── PayloadTooLarge     413 payload_too_large
 ├── UnsupportedMediaType 415 unsupported_media_type (a JSON body not sent as JSON)
 ├── UnprocessableImage  422 unprocessable_image   (not an image, too many pixels)
 ├── InvalidFirmwareImage 422 (not a valid ESP32 app image; releases/esp_image.py
 │                            has a subclass with its own code for each check)
 ├── TooManyRequests     429 too_many_requests     (Retry-After: failed device logins)
 ├── UpstreamFailed      502 upstream_failed       (image proxy download)
 └── ServiceUnavailable  503 service_unavailable
      └── DatabaseBusy    503 database_busy         (Retry-After: a write waited too long)

StartupError is not an HTTP answer: a setting that keeps the server from starting.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import typing as t

from flask import Flask
from flask import Response
from flask import current_app
from flask import has_app_context
from flask import jsonify
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed

log = logging.getLogger(__name__)

# How long a client told "busy" should wait before it tries again.
BUSY_RETRY_AFTER_SECONDS = 5


class AppError(Exception):
    """A refusal the client can act on; subclasses set status and code."""

    status_code: t.ClassVar[int] = 400
    code: t.ClassVar[str] = "bad_request"
    # A tuple value sends the header once per item (several WWW-Authenticate challenges).
    headers: t.ClassVar[t.Mapping[str, str | tuple[str, ...]]] = {}

    def __init__(self, message: str, details: dict[str, t.Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def response_headers(self) -> t.Mapping[str, str | tuple[str, ...]]:
        return self.headers


class InvalidInput(AppError):
    status_code = 400
    code = "invalid_input"


class InvalidSchema(InvalidInput):
    code = "invalid_schema"


class SchemaViolation(InvalidInput):
    code = "schema_violation"


class DuplicateKey(InvalidInput):
    code = "duplicate_key"


class NulCharacter(InvalidInput):
    code = "nul_character"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="iotsupport"'}


class InvalidToken(Unauthorized):
    code = "invalid_token"
    headers = {"WWW-Authenticate": 'Bearer realm="iotsupport", error="invalid_token"'}


class DeviceUnauthorized(Unauthorized):
    """A device request without a valid credential: wrong token, unknown MAC, none sent.

    Always the same message and no details, so a stranger learns nothing about a MAC.
    """

    code = "device_unauthorized"
    headers = {
        "WWW-Authenticate": (
            'Basic realm="iotsupport devices", charset="UTF-8"',
            'Bearer realm="iotsupport devices"',
        )
    }

    def __init__(self) -> None:
        super().__init__("device authentication failed: send this device's token")


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class CrossSiteRequest(Forbidden):
    code = "cross_site_request"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class SchemaChangeBreaksConfigs(Conflict):
    code = "schema_change_breaks_configs"


class ModelInUse(Conflict):
    code = "model_in_use"


class ChangedSince(Conflict):
    code = "changed_since"


class PreconditionFailed(AppError):
    status_code = 412
    code = "precondition_failed"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_media_type"


class HostNotAllowed(AppError):
    status_code = 403
    code = "host_not_allowed"


class UnprocessableImage(AppError):
    status_code = 422
    code = "unprocessable_image"


class InvalidFirmwareImage(AppError):
    status_code = 422
    code = "invalid_firmware_image"


class TooManyRequests(AppError):
    status_code = 429
    code = "too_many_requests"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, {"retry_after": retry_after})
        self.retry_after = retry_after

    def response_headers(self) -> t.Mapping[str, str | tuple[str, ...]]:
        return {"Retry-After": str(self.retry_after)}


class UpstreamFailed(AppError):
    status_code = 502
    code = "upstream_failed"


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"


class DatabaseBusy(ServiceUnavailable):
    """A write that waited its turn longer than DB_BUSY_TIMEOUT_SECONDS (SQLite)."""

    code = "database_busy"

    def __init__(self, waited: float | None = None) -> None:
        waited_for = f" (waited {waited:g} s)" if waited is not None else ""
        super().__init__(
            f"the database is busy with other changes{waited_for}; try again",
            {"retry_after": BUSY_RETRY_AFTER_SECONDS},
        )

    def response_headers(self) -> t.Mapping[str, str | tuple[str, ...]]:
        return {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)}


def is_busy(exc: BaseException | None) -> bool:
    """Whether a driver error says another writer held SQLite's lock too long."""
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorname", None) in ("SQLITE_BUSY", "SQLITE_LOCKED")
        or "database is locked" in str(exc)
    )


class StartupError(Exception):
    """A setting is unusable; the server refuses to start and says why."""


def error_response(
    status: int, message: str, code: str, details: dict[str, t.Any] | None = None
) -> Response:
    response = jsonify({"error": message, "code": code, "details": details or {}})
    response.status_code = status
    return response


_SHORT_MESSAGES = {
    404: "there is nothing at this URL",
    405: "this URL does not accept that method",
    413: "the request body is too large",
}


# The same refusal as our own PayloadTooLarge, whichever layer made it.
_CODES = {413: PayloadTooLarge.code}


def _http_code(exc: HTTPException) -> str:
    if exc.code in _CODES:
        return _CODES[exc.code]
    name = exc.name or "error"
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _validation_details(exc: ValidationError) -> dict[str, t.Any]:
    # Never echo the input back: it may be a whole config.
    return {
        "errors": [
            {"field": ".".join(str(part) for part in err["loc"]) or "body", "message": _say(err)}
            for err in exc.errors(include_url=False, include_input=False)
        ]
    }


# Pydantic's error types, in words for a person (its own wording is "Input should be ...").
_PYDANTIC_WORDS: dict[str, str] = {
    "missing": "is required",
    "extra_forbidden": "is not a field this request knows (check the spelling)",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be more than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "string_too_short": "must have at least {min_length} characters",
    "string_too_long": "must have at most {max_length} characters",
    "too_short": "must have at least {min_length} items",
    "too_long": "must have at most {max_length} items",
    "string_pattern_mismatch": "has characters or a form that is not allowed here",
    "literal_error": "must be one of {expected}",
    "enum": "must be one of {expected}",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "string_type": "must be a text in double quotes",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "list_type": "must be a list",
    "multiple_of": "must be a multiple of {multiple_of}",
    "datetime_type": "must be a date and time such as 2026-01-31T12:00:00Z",
    "datetime_parsing": "must be a date and time such as 2026-01-31T12:00:00Z",
    "datetime_from_date_parsing": "must be a date and time such as 2026-01-31T12:00:00Z",
}


def _say(err: t.Mapping[str, t.Any]) -> str:
    context = err.get("ctx") or {}
    if err["type"] == "value_error":  # our own validators' messages, written for people
        return str(context.get("error") or err["msg"]).removeprefix("Value error, ")
    words = _PYDANTIC_WORDS.get(err["type"])
    if words is None:
        return str(err["msg"])
    if "expected" in context:  # "'off', 'heat' or 'eco'": JSON's quotes, as the body uses
        context = {**context, "expected": str(context["expected"]).replace("'", '"')}
    try:
        return words.format(**context)
    except (KeyError, IndexError):
        return str(err["msg"])


def http_error_response(exc: HTTPException) -> Response:
    """A werkzeug HTTP error (404, 405, 413, 416 ...) in the JSON envelope."""
    message = _SHORT_MESSAGES.get(exc.code or 500, exc.description or exc.name)
    details = {}
    if exc.code == 413 and has_app_context() and "MAX_REQUEST_BYTES" in current_app.config:
        details["max_bytes"] = limit = current_app.config["MAX_REQUEST_BYTES"]
        message = f"the request body is larger than {limit} bytes (MAX_REQUEST_BYTES)"
    response = error_response(exc.code or 500, message, _http_code(exc), details)
    # Keep what the status needs, e.g. Content-Range on a 416.
    for name, value in exc.get_headers():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    return response


def init_app(app: Flask) -> None:
    """Register the three handlers that turn every failure into the JSON envelope."""

    @app.errorhandler(AppError)
    def _app_error(exc: AppError) -> Response:
        response = error_response(exc.status_code, exc.message, exc.code, exc.details)
        response.headers.update(exc.response_headers())
        return response

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError) -> Response:
        return error_response(
            400, "the request is not valid", "validation_error", _validation_details(exc)
        )

    app.register_error_handler(HTTPException, http_error_response)

    @app.errorhandler(OperationalError)
    def _database_down(exc: OperationalError) -> Response:
        log.error("database error: %s", exc.orig)
        if is_busy(exc.orig):  # SQLite: another process kept the write lock too long
            return _app_error(DatabaseBusy())
        return error_response(503, "the database is not reachable", "database_unavailable")

    @app.errorhandler(PoolTimeout)
    def _pool_exhausted(exc: PoolTimeout) -> Response:
        # More requests at once than the pool has connections (DB_POOL_SIZE): try again.
        log.error("no database connection free within the timeout: %s", exc)
        return error_response(503, "the database is busy; try again", "database_busy")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal server error", "internal_error")
