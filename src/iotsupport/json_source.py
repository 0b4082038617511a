"""Find the exact source text of a member of a JSON object, formatting kept."""

from __future__ import annotations

import json
import re

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


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
