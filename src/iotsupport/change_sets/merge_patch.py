"""JSON Merge Patch (RFC 7396) applied to a config's stored text, not to its value.

Only the members the patch changes are rewritten: every other byte of the text
stays as it was (key order, indentation, spacing, number spelling). New members
go at the end of their object, written in the style of their siblings. A patch
that changes nothing leaves the text identical, byte for byte.
"""

from __future__ import annotations

import json
import re
import typing as t
from dataclasses import dataclass

_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def merge(target: t.Any, patch: t.Any) -> t.Any:
    """RFC 7396 MergePatch on plain values."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


def same(left: t.Any, right: t.Any) -> bool:
    """JSON equality that tells true from 1 and keeps 1 == 1.0."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left is right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    return bool(left == right)


@dataclass(frozen=True)
class _Member:
    key: str
    key_start: int
    key_end: int
    value_start: int
    value_end: int


def _skip(text: str, index: int) -> int:
    match = _SPACE.match(text, index)
    return match.end() if match else index


def _members(text: str, start: int) -> tuple[list[_Member], int]:
    """The members of the object starting at `start` and the index of its closing brace."""
    index = _skip(text, start + 1)
    members: list[_Member] = []
    while text[index] == '"':
        key, key_end = _DECODER.raw_decode(text, index)
        value_start = _skip(text, _skip(text, key_end) + 1)
        _value, value_end = _DECODER.raw_decode(text, value_start)
        members.append(_Member(key, index, key_end, value_start, value_end))
        index = _skip(text, value_end)
        if text[index] == ",":
            index = _skip(text, index + 1)
    return members, index


def _line_indent(text: str, index: int) -> str:
    line_start = text.rfind("\n", 0, index) + 1
    return text[line_start : _skip(text, line_start)].replace("\n", "").replace("\r", "")


@dataclass(frozen=True)
class _Style:
    indent: str | None  # one level of indentation; None: everything on one line
    item_separator: str
    key_separator: str


def _style(text: str) -> _Style:
    """How the document is written, read from its first members."""
    unit = None
    for line in text.splitlines()[1:]:
        stripped = line.lstrip(" \t")
        if stripped and len(stripped) < len(line):
            unit = line[: len(line) - len(stripped)]
            break
    key_separator = ": "
    match = re.search(r'"\s*(:\s*)', text)
    if match:
        key_separator = match.group(1).replace("\n", " ").replace("\r", "")
    item_separator = ", " if key_separator.endswith(" ") else ","  # compact stays compact
    comma = re.search(r"(,[ \t]*)\S", text)
    if comma and unit is None:
        item_separator = comma.group(1)
    return _Style(unit, item_separator, key_separator)


def _dump(value: t.Any, style: _Style, base_indent: str) -> str:
    kwargs: dict[str, t.Any] = {}
    if style.indent is not None:
        kwargs = {"indent": style.indent, "separators": (",", style.key_separator)}
    else:
        kwargs = {"separators": (style.item_separator, style.key_separator)}
    text = json.dumps(value, ensure_ascii=False, **kwargs)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \\ud800 escape: keep it escaped
        text = json.dumps(value, ensure_ascii=True, **kwargs)
    return text.replace("\n", "\n" + base_indent) if style.indent is not None else text


def _patch_object(text: str, start: int, patch: dict[str, t.Any], style: _Style) -> str:
    """The object text at `start` (up to its closing brace) with `patch` merged in."""
    members, close = _members(text, start)
    by_key = {member.key: member for member in members}  # the last of duplicates, as parsers
    removed = [member.key in patch and patch[member.key] is None for member in members]
    kept = [member for member, gone in zip(members, removed, strict=True) if not gone]
    additions = [
        (key, merge(None, value))
        for key, value in patch.items()
        if value is not None and key not in by_key
    ]
    if not kept:
        return _fresh_object(text, start, additions, style)
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), in `text` positions
    first_kept = removed.index(False)
    if first_kept:  # the leading removed members, up to the first kept one's key
        edits.append((members[0].key_start, members[first_kept].key_start, ""))
    for index in range(first_kept + 1, len(members)):
        if removed[index]:  # from the previous member's end: takes the comma along
            edits.append((members[index - 1].value_end, members[index].value_end, ""))
    for key, value in patch.items():
        member = by_key.get(key)
        if value is None or member is None:
            continue
        if isinstance(value, dict) and text[member.value_start] == "{":
            replacement = _patch_object(text, member.value_start, value, style)
        else:
            replacement = _dump(merge(None, value), style, _line_indent(text, member.key_start))
        edits.append((member.value_start, member.value_end, replacement))
    if additions:
        edits.append(_append(text, members, kept, additions, style))
    result = text[start : close + 1]
    for edit_start, edit_end, replacement in sorted(edits, reverse=True):
        result = result[: edit_start - start] + replacement + result[edit_end - start :]
    return result


def _append(
    text: str,
    members: list[_Member],
    kept: list[_Member],
    additions: list[tuple[str, t.Any]],
    style: _Style,
) -> tuple[int, int, str]:
    """The edit that adds `additions` after the last kept member, spaced like its siblings."""
    first = members[0]
    indent = _line_indent(text, first.key_start)
    if len(members) > 1:
        separator = text[text.index(",", first.value_end) : members[1].key_start]
    elif "\n" in text[first.value_end : text.index("}", first.value_end)]:
        separator = ",\n" + indent
    else:
        separator = style.item_separator
    key_separator = text[first.key_end : first.value_start]
    if "\n" in key_separator or ":" not in key_separator:
        key_separator = style.key_separator
    base = indent if "\n" in separator else ""
    rendered = "".join(
        separator + json.dumps(key, ensure_ascii=False) + key_separator + _dump(value, style, base)
        for key, value in additions
    )
    end = kept[-1].value_end
    return (end, end, rendered)


def _fresh_object(text: str, start: int, additions: list[tuple[str, t.Any]], style: _Style) -> str:
    """An object that had no members left: written anew in the document's style."""
    if not additions:
        return "{}"
    if style.indent is None:
        items = [
            json.dumps(key, ensure_ascii=False) + style.key_separator + _dump(value, style, "")
            for key, value in additions
        ]
        return "{" + style.item_separator.join(items) + "}"
    outer = _line_indent(text, start)
    inner = outer + style.indent
    items = [
        inner
        + json.dumps(key, ensure_ascii=False)
        + style.key_separator
        + _dump(value, style, inner)
        for key, value in additions
    ]
    return "{\n" + ",\n".join(items) + "\n" + outer + "}"


def apply(text: str, patch: dict[str, t.Any]) -> str:
    """`text` (a JSON object) with `patch` merged in; `text` itself when nothing changes."""
    document = json.loads(text)
    if same(merge(document, patch), document):
        return text
    start = _skip(text, 0)
    patched = _patch_object(text, start, patch, _style(text))
    return text[:start] + patched + text[_members(text, start)[1] + 1 :]
