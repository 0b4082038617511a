"""Log payloads as devices send them, turned into lines to store.

A payload is plain text (one or more lines, ESP-IDF's format understood), NDJSON, one
JSON object `{"ts"?, "level"?, "tag"?, "message"}`, or `{"lines": [...]}` of those.
Nothing here raises on what a device sends: what cannot be understood is kept as text.
"""

from __future__ import annotations

import json
import re
import typing as t
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime

MAX_LINE_BYTES = 4096
MAX_TAG_CHARS = 64

# Numbers in the database: "this level and worse" is `level <= n`.
LEVELS = {"E": 1, "W": 2, "I": 3, "D": 4, "V": 5}
LEVEL_NAMES = {"error": "E", "warn": "W", "warning": "W", "info": "I", "debug": "D"}
LEVEL_NAMES |= {"verbose": "V", "e": "E", "w": "W", "i": "I", "d": "D", "v": "V"}
LETTERS = {number: letter for letter, number in LEVELS.items()}
DEFAULT_LEVEL = LEVELS["I"]

# CSI sequences (colours, cursor moves) and the other escapes a terminal would eat.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# ESP-IDF: `E (12345) wifi: text`, the uptime in ms, or the wall time `(12:34:56.789)`.
_ESP_IDF = re.compile(r"^([EWIDV]) \((\d{1,12}|[\d:.]{1,16})\) ([^:\s][^:]{0,63}?): ?(.*)$", re.S)


@dataclass(frozen=True, slots=True)
class LogLine:
    message: str
    level: int = DEFAULT_LEVEL
    tag: str | None = None
    uptime_ms: int | None = None
    device_time: datetime | None = None


def level_number(raw: object) -> int | None:
    """`E`, `error`, ... as the stored number; None for anything else."""
    if not isinstance(raw, str):
        return None
    letter = LEVEL_NAMES.get(raw.strip().lower())
    return LEVELS[letter] if letter else None


def clean(text: str) -> str:
    """ANSI escapes and control characters out, cut at MAX_LINE_BYTES of UTF-8."""
    text = _CONTROL.sub("", _ANSI.sub("", text)).rstrip()
    encoded = text.encode("utf-8", "replace")
    if len(encoded) > MAX_LINE_BYTES:
        text = encoded[:MAX_LINE_BYTES].decode("utf-8", "ignore")
    return text


def parse_text_line(raw: str, device_time: datetime | None = None) -> LogLine | None:
    """One line of text; ESP-IDF's prefix gives its level, uptime and tag."""
    text = clean(raw)
    if not text:
        return None
    match = _ESP_IDF.match(text)
    if match is None:
        return LogLine(text, device_time=device_time)
    letter, stamp, tag, message = match.groups()
    uptime = int(stamp) if stamp.isdigit() else None
    return LogLine(message, LEVELS[letter], tag.strip()[:MAX_TAG_CHARS], uptime, device_time)


def device_time(raw: object) -> datetime | None:
    """The device's own time: epoch seconds (or ms), or ISO 8601; None when unusable."""
    try:
        if isinstance(raw, bool):
            return None
        if isinstance(raw, int | float):
            seconds = raw / 1000 if raw > 1e11 else raw
            return datetime.fromtimestamp(seconds, UTC)
        if isinstance(raw, str):
            parsed = datetime.fromisoformat(raw.strip())
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return None


def parse_object(item: t.Mapping[str, t.Any]) -> LogLine | None:
    message = item.get("message")
    if not isinstance(message, str):
        return None
    when = device_time(item.get("ts"))
    parsed = parse_text_line(message, when)
    if parsed is None:
        return None
    level = level_number(item.get("level"))
    tag = item.get("tag")
    if level is None and not isinstance(tag, str):
        return parsed  # the message's own ESP-IDF prefix, if any, tells
    if isinstance(tag, str):
        tag = clean(tag)[:MAX_TAG_CHARS] or None
    else:
        tag = parsed.tag
    return LogLine(
        parsed.message if parsed.tag else clean(message),
        level if level is not None else parsed.level,
        tag,
        parsed.uptime_ms,
        when,
    )


def _objects(data: object) -> t.Iterator[t.Mapping[str, t.Any]]:
    if isinstance(data, dict):
        lines = data.get("lines")
        if isinstance(lines, list) and "message" not in data:
            for item in lines:
                if isinstance(item, dict):
                    yield item
        else:
            yield data


def parse_payload(body: bytes, max_lines: int) -> list[LogLine]:
    """Every line of a payload (text, NDJSON, JSON), at most `max_lines`."""
    text = body.decode("utf-8", "replace")
    lines: list[LogLine] = []
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            whole = json.loads(stripped)
        except ValueError:
            whole = None
        if whole is not None:
            return _from_objects([whole], max_lines)
    for raw in text.splitlines():
        if len(lines) >= max_lines:
            break
        candidate = raw.strip()
        if candidate.startswith("{"):
            try:
                data = json.loads(candidate)
            except ValueError:
                data = None
            if isinstance(data, dict):
                lines.extend(_from_objects([data], max_lines - len(lines)))
                continue
        line = parse_text_line(raw)
        if line is not None:
            lines.append(line)
    return lines


def _from_objects(items: list[object], max_lines: int) -> list[LogLine]:
    lines: list[LogLine] = []
    for data in items:
        for item in _objects(data):
            if len(lines) >= max_lines:
                return lines
            line = parse_object(item)
            if line is not None:
                lines.append(line)
    return lines
