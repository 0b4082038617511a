"""Strict JSON objects, and the exact source text of one of their members."""

from __future__ import annotations

import json
import math
import re
import typing as t

from iotsupport.errors import InvalidInput

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
# A \uD800-\uDFFF escape: only a high one followed by a low one makes a character.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


# Python's json reasons, in words that say what to fix.
_JSON_REASONS = {
    "Expecting property name enclosed in double quotes": "a member name must be in double "
    'quotes ("name"), and there may be no comma before }',
    "Expecting ',' delimiter": "a comma is missing between two members or items",
    "Expecting ':' delimiter": "a colon is missing after a member name",
    "Expecting value": "a value is missing here (JSON has no trailing commas, no comments and "
    "no single-quoted strings)",
    "Unterminated string starting at": "a string is not closed with a double quote",
    "Invalid control character at": "a string holds a raw line break or tab (write \\n or \\t)",
    "Invalid \\escape": "a backslash escape is not one JSON knows (write \\\\ for a backslash)",
    "Extra data": "there is more text after the end of the JSON value",
}


def json_problem(reason: str) -> str:
    return _JSON_REASONS.get(reason, reason[:1].lower() + reason[1:])


def _refuse_constant(name: str) -> t.NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:32]} is too large")
    return value


def load_object(text: str, subject: str) -> dict[str, t.Any]:
    """Parse strict JSON (no NaN, Infinity or overflowing numbers) that must be an object.

    `subject` names the text in the error, e.g. "the request body" or "content".
    """
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidInput(f"{subject} is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{subject} is not valid JSON: {json_problem(exc.msg)} at line {exc.lineno}, "
            f"column {exc.colno}",
            {"line": exc.lineno, "column": exc.colno, "position": exc.pos},
        ) from None
    except ValueError as exc:  # NaN, Infinity, a number too large
        raise InvalidInput(f"{subject} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{subject} must be a JSON object")
    if _has_lone_surrogate(text, value):
        raise InvalidInput(
            f"{subject} contains a lone UTF-16 surrogate (a \\ud800-\\udfff escape that is "
            "not half of a pair): it is not a character and cannot be stored as UTF-8"
        )
    return value


def _has_lone_surrogate(text: str, value: object) -> bool:
    """Whether any string of the parsed document (keys included) is not valid Unicode."""
    if not _encodes(text):
        return True
    if not _SURROGATE_ESCAPE.search(text):
        return False  # no escape, so every string came from valid UTF-8 text
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not _encodes(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _skip(text: str, index: int) -> int:
    match = _WHITESPACE.match(text, index)
    return match.end() if match else index


def raw_member(text: str, key: str) -> str | None:
    """The source of top-level member `key` (the last one, as json.loads keeps), or None.

    `text` must already be known to be a valid JSON object.
    """
    try:
        index = _skip(text, 0)
        if text[index : index + 1] != "{":
            return None
        index = _skip(text, index + 1)
        found: str | None = None
        while text[index : index + 1] == '"':
            name, index = _DECODER.raw_decode(text, index)
            index = _skip(text, _skip(text, index) + 1)  # past the colon
            _value, end = _DECODER.raw_decode(text, index)
            if name == key:
                found = text[index:end]
            index = _skip(text, end)
            if text[index : index + 1] == ",":
                index = _skip(text, index + 1)
        return found
    except (ValueError, RecursionError):
        return None
