"""What every request's URL is held to, whatever the route (one hook, before any view):

- no query parameter twice (`?model=a&model=b`: which one counts would depend on the
  route; a proxy or cache in front may read the other);
- no NUL in the path, the query or a header. PostgreSQL cannot hold it in text, so it would be
  a 500 there and a 4xx on SQLite; it is a 400 on both, before a view reads it.

Strings in JSON bodies are held to the same (api/spec.py `parse_json_body`).
"""

from __future__ import annotations

from flask import Flask
from flask import Response
from flask import request

from iotsupport.errors import error_response


def init_app(app: Flask) -> None:
    app.before_request(_refuse_odd_urls)


def _refuse_odd_urls() -> Response | None:
    if "\x00" in request.path:
        return nul_refusal("the path")
    if any("\x00" in value for _, value in request.headers.items()):
        return nul_refusal("a header")
    args = request.args
    for name in args:
        values = args.getlist(name)
        if "\x00" in name or any("\x00" in value for value in values):
            return nul_refusal("the query string")
        if len(values) > 1:
            shown = name[:64].encode("unicode_escape").decode("ascii")
            return error_response(
                400,
                f"the query parameter {shown!r} is given {len(values)} times; give it once",
                "duplicate_query_parameter",
                {"parameter": shown},
            )
    return None


def nul_refusal(where: str) -> Response:
    return error_response(
        400,
        f"{where} contains a NUL character (U+0000), which no text here may hold",
        "nul_character",
        {"where": where},
    )
