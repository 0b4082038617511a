"""How schema problems are reported: a JSON Pointer, a message, the keyword."""

from __future__ import annotations

import json
import typing as t

MAX_ERRORS = 50
MAX_MESSAGE_CHARS = 300


class Unreadable(Exception):
    """The schema is not one this server will run; `errors` say where."""

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


def pointer(parts: t.Iterable[str | int]) -> str:
    """RFC 6901 JSON Pointer of a path ("" is the whole document)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def error_entry(path: str, message: str, keyword: str) -> dict[str, str]:
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return {"path": path, "message": message, "keyword": keyword}


_TYPE_WORDS = {
    "object": "an object ({…})",
    "array": "a list ([…])",
    "string": "a text in double quotes",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _json(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:59] + "…"


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null"


def _items(count: object, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def for_person(
    keyword: str, expected: t.Any, instance: t.Any, fallback: str, schema: t.Any = None
) -> str:
    """A schema violation in words for the person editing the config (what the value must
    be, and what it is), instead of python-jsonschema's Python-flavoured message."""
    match keyword:
        case "enum" if isinstance(expected, list):
            choices = ", ".join(_json(choice) for choice in expected[:20])
            return f"must be one of {choices} (it is {_json(instance)})"
        case "const":
            return f"must be {_json(expected)} (it is {_json(instance)})"
        case "type":
            wanted = [expected] if isinstance(expected, str) else list(expected)
            words = " or ".join(_TYPE_WORDS.get(name, name) for name in wanted)
            return f"must be {words}, not {_kind(instance)}"
        case "required" if isinstance(instance, dict):
            missing = [name for name in expected if name not in instance]
            names = ", ".join(f'"{name}"' for name in missing) or "a member"
            return f"{names} must be set (the schema requires it)"
        case "minimum":
            return f"must be at least {expected} (it is {_json(instance)})"
        case "maximum":
            return f"must be at most {expected} (it is {_json(instance)})"
        case "exclusiveMinimum":
            return f"must be more than {expected} (it is {_json(instance)})"
        case "exclusiveMaximum":
            return f"must be less than {expected} (it is {_json(instance)})"
        case "multipleOf":
            return f"must be a multiple of {expected} (it is {_json(instance)})"
        case "minLength":
            return f"must have at least {_items(expected, 'character')}"
        case "maxLength":
            return f"must have at most {_items(expected, 'character')}"
        case "minItems":
            return f"must have at least {_items(expected, 'item')}"
        case "maxItems":
            return f"must have at most {_items(expected, 'item')}"
        case "minProperties":
            return f"must have at least {_items(expected, 'member')}"
        case "maxProperties":
            return f"must have at most {_items(expected, 'member')}"
        case "uniqueItems":
            return "must not list the same item twice"
        case "pattern":
            return f"must match the pattern {expected} (it is {_json(instance)})"
        case "additionalProperties" if isinstance(instance, dict) and isinstance(schema, dict):
            if schema.get("patternProperties"):
                return "has members the schema does not allow (remove, or fix the spelling)"
            known = set(schema.get("properties") or {})
            extra = [name for name in instance if name not in known][:10]
            names = ", ".join(f'"{name}"' for name in extra)
            return f"{names}: not allowed here (remove, or fix the spelling)"
        case "oneOf" | "anyOf":
            return "does not match any of the forms the schema allows"
        case "not":
            return "matches a form the schema forbids"
        case "format":
            return f"is not a valid {expected}"
    return fallback
