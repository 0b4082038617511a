"""Validate once, document once: the `operation` decorator and the OpenAPI builder.

`operation` parses the JSON body (and the query string) into their Pydantic
schemas, hands them to the view as `body` (and `query`), and records the schemas;
`build_openapi` turns those records into the OpenAPI 3 document, so the docs and
the validation can never disagree.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass
from dataclasses import field
from functools import wraps

from flask import Flask
from flask import current_app
from flask import request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode
from pydantic.json_schema import models_json_schema

from iotsupport.api.schemas import ErrorResponse
from iotsupport.auth.access import Access
from iotsupport.auth.access import access_of
from iotsupport.errors import InvalidInput
from iotsupport.errors import NulCharacter
from iotsupport.errors import PayloadTooLarge
from iotsupport.errors import UnsupportedMediaType
from iotsupport.json_text import BODY_DEPTH
from iotsupport.json_text import load_object

View = t.Callable[..., ResponseReturnValue]
ResponseSpec = type[BaseModel] | str

_RULE_ARGUMENT = re.compile(r"<(?:([a-z]+)[^:<>]*:)?(\w+)>")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Operation:
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    responses: dict[int, ResponseSpec] = field(default_factory=dict)
    form: type[BaseModel] | None = None  # multipart fields, documented only
    query: type[BaseModel] | None = None
    database: bool = True  # uses the database (so may answer 503, and 409 on a write)
    # Status -> the media type of a body that is not JSON (e.g. an NVS image), by choice
    # of the request: documented beside the JSON one.
    binary: dict[int, str] = field(default_factory=dict)


def operation(
    summary: str,
    *,
    tag: str,
    body: type[BaseModel] | None = None,
    responses: dict[int, ResponseSpec] | None = None,
    form: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    database: bool = True,
    binary: dict[int, str] | None = None,
) -> t.Callable[[View], View]:
    """Declare a route's schemas; with `body` or `query`, the view receives the validated model.

    `form` documents a multipart/form-data body that the view reads itself. `responses`
    are the route's own answers; `common_answers` adds those every route of its kind
    can give.
    """
    spec = Operation(summary, tag, body, responses or {}, form, query, database, binary or {})

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(*args: t.Any, **kwargs: t.Any) -> ResponseReturnValue:
            if spec.body is not None:
                kwargs["body"] = parse_json_body(spec.body)
            if spec.query is not None:
                kwargs["query"] = spec.query.model_validate(request.args.to_dict())
            return view(*args, **kwargs)

        wrapper.openapi = spec  # type: ignore[attr-defined]
        return wrapper

    return decorate


BodyModel = t.TypeVar("BodyModel", bound=BaseModel)


def request_body() -> bytes:
    """The whole request body, or 413 when it is larger than MAX_REQUEST_BYTES.

    Flask is allowed one byte more (see create_app): a chunked body, which has no
    Content-Length, is cut there rather than refused, so one byte too many is how
    a larger one shows.
    """
    raw = request.get_data(cache=True)
    limit: int = current_app.config["MAX_REQUEST_BYTES"]
    if len(raw) > limit:
        raise PayloadTooLarge(
            f"the request body is larger than {limit} bytes (MAX_REQUEST_BYTES)",
            {"max_bytes": limit},
        )
    return raw


def parse_json_body(model: type[BodyModel]) -> BodyModel:
    _check_json_media_type()
    raw = request_body()
    if not raw:
        raise InvalidInput("the request body is empty; send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the request body is not UTF-8") from None
    data = load_object(text, "the request body", max_depth=BODY_DEPTH)
    return refuse_nul(model.model_validate(data, context={"raw_body": text}))


def refuse_nul(parsed: BodyModel) -> BodyModel:
    """`parsed`, unless a text field holds NUL (api/request_rules.py says why).

    The validated fields are walked, not the raw body: content kept as verbatim JSON
    text holds an escaped \\u0000, which is fine, and never the character itself.
    """
    pending: list[tuple[str, t.Any]] = [("", parsed)]
    while pending:
        where, value = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise NulCharacter(
                    f"{where or 'the body'} contains a NUL character (U+0000), which no "
                    "text here may hold",
                    {"field": where},
                )
        elif isinstance(value, BaseModel):
            pending += [
                (f"{where}.{name}".lstrip("."), getattr(value, name))
                for name in type(value).model_fields
            ]
        elif isinstance(value, dict):
            pending += [(f"{where}.{key}", key) for key in value]
            pending += [(f"{where}.{key}", item) for key, item in value.items()]
        elif isinstance(value, list | tuple):
            pending += [(f"{where}.{index}", item) for index, item in enumerate(value)]
    return parsed


def _check_json_media_type() -> None:
    """A JSON body comes as JSON: a page on another site can send text/plain (or form
    data) without asking first, never application/json."""
    media_type = request.mimetype  # lowercased, parameters (charset) left out
    if media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return
    raise UnsupportedMediaType(
        "send the body as JSON, with Content-Type: application/json",
        {"content_type": media_type or None},
    )


def _path_and_parameters(
    rule: str, converters: t.Mapping[str, type[t.Any]]
) -> tuple[str, list[dict[str, t.Any]]]:
    """The OpenAPI path and its parameters; a converter's `openapi` attribute is its schema."""
    parameters = []
    for converter, name in _RULE_ARGUMENT.findall(rule):
        schema = dict(
            getattr(converters.get(converter or "default"), "openapi", {"type": "string"})
        )
        parameter = {"name": name, "in": "path", "required": True}
        if "description" in schema:
            parameter["description"] = schema.pop("description")
        parameters.append({**parameter, "schema": schema})
    return _RULE_ARGUMENT.sub(r"{\2}", rule), parameters


def _query_parameters(
    ref: dict[str, t.Any], definitions: dict[str, t.Any]
) -> list[dict[str, t.Any]]:
    """One OpenAPI query parameter per field of a query model."""
    schema = definitions["$defs"][ref["$ref"].rsplit("/", 1)[-1]]
    required = set(schema.get("required", []))
    parameters = []
    for name, field_schema in schema["properties"].items():
        parameter = {"name": name, "in": "query", "required": name in required}
        if "description" in field_schema:
            parameter["description"] = field_schema["description"]
        parameter["schema"] = {k: v for k, v in field_schema.items() if k != "description"}
        parameters.append(parameter)
    return parameters


def common_answers(spec: Operation, method: str, access: Access | None) -> dict[int, str]:
    """What an operation can answer besides its own responses: the request limits
    (api/protections.py), validation, the access hook and the unit of work."""
    answers = {
        400: "The Host is not one of ALLOWED_HOSTS",
        414: "The URL is longer than 8 KiB",
        431: "The request headers are larger than 32 KiB",
    }
    if spec.body is not None or spec.query is not None or spec.form is not None:
        answers[400] = (
            "The request is not valid (the details name each field), "
            "or the Host is not one of ALLOWED_HOSTS"
        )
    if spec.body is not None:
        answers[413] = "The body is larger than MAX_REQUEST_BYTES"
        answers[415] = "The body is not sent as application/json"
    protected = access is None or not access.is_public
    if protected:
        answers[401] = "Login is on and no valid token or login cookie came"
        answers[503] = "The identity provider is not reachable"
    if method.upper() in STATE_CHANGING:
        answers[403] = "A change from another site's page, or roles that do not allow this"
    elif protected:
        answers[403] = "Roles that do not allow this"
    if spec.database:
        answers[503] = (
            "The database (or the identity provider) is not reachable, or a write waited "
            "its turn past DB_BUSY_TIMEOUT_SECONDS (database_busy, Retry-After)"
        )
        if method.upper() in STATE_CHANGING:
            answers[409] = "The change conflicts with one made at the same time"
    return answers


def _media(schema: dict[str, t.Any]) -> dict[str, t.Any]:
    return {"content": {"application/json": {"schema": schema}}}


def build_openapi(app: Flask, title: str, version: str) -> dict[str, t.Any]:
    """The OpenAPI 3.1 document for every route that carries an `operation`."""
    routes: list[tuple[str, str, str, Operation]] = []
    for rule in app.url_map.iter_rules():
        spec: Operation | None = getattr(app.view_functions[rule.endpoint], "openapi", None)
        if spec is None:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((rule.rule, method.lower(), rule.endpoint, spec))

    models: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {
        (ErrorResponse, "serialization"): None
    }
    for *_, spec in routes:
        if spec.body is not None:
            models[(spec.body, "validation")] = None
        if spec.form is not None:
            models[(spec.form, "validation")] = None
        if spec.query is not None:
            models[(spec.query, "validation")] = None
        for answer in spec.responses.values():
            if not isinstance(answer, str):
                models[(answer, "serialization")] = None
    refs, definitions = models_json_schema(
        list(models), ref_template="#/components/schemas/{model}"
    )

    paths: dict[str, dict[str, t.Any]] = {}
    for rule_text, method, endpoint, spec in sorted(routes):
        path, parameters = _path_and_parameters(rule_text, app.url_map.converters)
        if spec.query is not None:
            parameters += _query_parameters(refs[(spec.query, "validation")], definitions)
        access = access_of(app.view_functions[endpoint])
        answers = {**common_answers(spec, method, access), **spec.responses}
        responses: dict[str, t.Any] = {}
        for status, answer in sorted(answers.items()):
            if not isinstance(answer, str):
                description = answer.__doc__ or answer.__name__
                responses[str(status)] = {
                    "description": description,
                    **_media(refs[(answer, "serialization")]),
                }
            elif status >= 400:
                error_ref = refs[(ErrorResponse, "serialization")]
                responses[str(status)] = {"description": answer, **_media(error_ref)}
            else:
                responses[str(status)] = {"description": answer}
            if status in spec.binary:
                content = responses[str(status)].setdefault("content", {})
                content[spec.binary[status]] = {"schema": {"contentMediaType": spec.binary[status]}}
        entry: dict[str, t.Any] = {
            "operationId": endpoint.replace(".", "_") + "_" + method,
            "summary": spec.summary,
            "tags": [spec.tag],
            "responses": responses,
        }
        if parameters:
            entry["parameters"] = parameters
        access = access_of(app.view_functions[endpoint])
        if access is not None and access.device is not None:
            # A device token (Bearer or Basic); none at all where DEVICE_AUTH allows it.
            entry["security"] = [{"deviceToken": []}, {"deviceBasic": []}, {}]
            if access.device.or_roles:
                entry["security"].insert(2, {"bearerAuth": []})
        elif access is not None and not access.is_public:
            entry["security"] = [{"bearerAuth": []}]
            entry["description"] = "Roles: " + ", ".join(sorted(access.roles))
        if spec.body is not None:
            entry["requestBody"] = {
                "required": True,
                **_media(refs[(spec.body, "validation")]),
            }
        if spec.form is not None:
            form_schema = {"schema": refs[(spec.form, "validation")]}
            entry["requestBody"] = {
                "required": True,
                "content": {"multipart/form-data": form_schema},
            }
        paths.setdefault(path, {})[method] = entry

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            # Browsers are authenticated by the login cookie instead (see /api/auth/login).
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "deviceToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "iotd_ device token",
                },
                "deviceBasic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "User name: the device's MAC; password: its token.",
                },
            },
        },
    }
