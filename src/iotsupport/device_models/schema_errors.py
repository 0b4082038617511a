"""How schema problems are reported: a JSON Pointer, a message, the keyword."""

from __future__ import annotations

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
