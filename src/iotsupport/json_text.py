"""Strict JSON objects, and the exact source text of one of their members."""

from __future__ import annotations

import json
import math
import re
import typing as t
from itertools import accumulate

from iotsupport.errors import DuplicateKey
from iotsupport.errors import InvalidInput

# Deepest nesting of objects and arrays in any JSON the server keeps (content, patch,
# schema, template): a device's parser (ArduinoJson, cJSON) and every recursive walk
# here stay far from their limits. A request body may wrap it in two more levels.
MAX_DEPTH = 64
BODY_DEPTH = MAX_DEPTH + 2

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


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique(pairs: list[tuple[str, t.Any]]) -> dict[str, t.Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Duplicate(key)
            seen.add(key)
    return value


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def depth(text: str) -> int:
    """How deeply objects and arrays nest in JSON `text` (0 for a scalar), read from the
    text alone so that no parser has to recurse to find out."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(1 if char in "[{" else -1 for char in brackets), default=0)


def check_depth(text: str, subject: str, limit: int = MAX_DEPTH) -> None:
    if depth(text) > limit:
        raise InvalidInput(
            f"{subject} is nested too deeply: at most {limit} levels of objects and arrays",
            {"max_depth": limit},
        )


def load_object(text: str, subject: str, *, max_depth: int = MAX_DEPTH) -> dict[str, t.Any]:
    """Parse strict JSON (no NaN, Infinity or overflowing numbers, no key twice in one
    object, at most `max_depth` levels deep) that must be an object.

    `subject` names the text in the error, e.g. "the request body" or "content".
    """
    check_depth(text, subject, max_depth)
    try:
        value = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            object_pairs_hook=_unique,
        )
    except RecursionError:
        raise InvalidInput(f"{subject} is nested too deeply") from None
    except _Duplicate as exc:
        path = duplicate_path(text) or [exc.key]
        raise DuplicateKey(
            f"{subject} has the key {json.dumps(exc.key)[:80]} twice in one object: a device "
            "reads the first, a schema the last; send each key once",
            {"path": path, "pointer": _pointer(path)},
        ) from None
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


def _pointer(path: list[str | int]) -> str:
    """RFC 6901 JSON Pointer of `path`."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def duplicate_path(text: str) -> list[str | int] | None:
    """The path (keys and indexes from the top) of the first key that an object of
    JSON `text` repeats, or None. Only called once a duplicate is known to exist."""
    # Per open container: the keys seen (None in an array), its path, the current key/index.
    frames: list[tuple[set[str] | None, list[str | int], list[str | int]]] = []
    index = _skip(text, 0)
    expect = "value"
    try:
        while True:
            if expect == "key":
                key, index = _DECODER.raw_decode(text, index)
                seen, path, current = frames[-1]
                if seen is None or key in seen:
                    return [*path, key]
                seen.add(key)
                current[0] = key
                index = _skip(text, _skip(text, index) + 1)  # past the colon
                expect = "value"
                continue
            if expect == "value":
                char = text[index]
                if char in "{[":
                    path = [*frames[-1][1], frames[-1][2][0]] if frames else []
                    frames.append((set() if char == "{" else None, path, [0]))
                    index = _skip(text, index + 1)
                    if text[index] in "}]":
                        frames.pop()
                        index = _skip(text, index + 1)
                        expect = "after"
                    else:
                        expect = "key" if char == "{" else "value"
                    continue
                _value, index = _DECODER.raw_decode(text, index)
                index = _skip(text, index)
            if not frames:
                return None
            char = text[index]
            index = _skip(text, index + 1)
            seen, _path, current = frames[-1]
            if char != ",":
                frames.pop()
                expect = "after"
            elif seen is None:
                current[0] = t.cast(int, current[0]) + 1
                expect = "value"
            else:
                expect = "key"
    except (ValueError, IndexError):
        return None
