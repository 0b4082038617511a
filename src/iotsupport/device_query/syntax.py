"""The parsed form of a device query, and its canonical text (`unparse`).

A tree of frozen dataclasses, each node with the 0-based offset of where it starts in
the query, so a later check (a value of the wrong kind, an unknown attribute value) can
still point at the character. `unparse` writes the tree back as a query that parses to
the same tree (the grammar test's round trip).
"""

from __future__ import annotations

import dataclasses
import re
import typing as t
from dataclasses import dataclass

from iotsupport.errors import InvalidInput

Operator = t.Literal["==", "!=", "<", "<=", ">", ">="]
OPERATORS: tuple[Operator, ...] = ("==", "!=", "<=", ">=", "<", ">")  # longest first
KEYWORDS = frozenset({"and", "or", "not", "in", "exists", "true", "false", "null"})
# A key written bare in a path; any other key is written quoted: ["a key"].
BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# A value written bare: a number, a relative time, a word (`*` a wildcard in it).
BARE_VALUE = re.compile(r"[A-Za-z0-9_.:*+/@-]+")
NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
RELATIVE = re.compile(r"-([0-9]{1,6})([smhdw])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class InvalidQuery(InvalidInput):
    """A query that cannot be read or run; `details.position` is the 0-based offset."""

    code = "invalid_query"

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at character {position})", {"position": position})
        self.position = position


class Star:
    """`[*]`: any element of an array."""

    def __repr__(self) -> str:
        return "STAR"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Star)

    def __hash__(self) -> int:
        return 0


STAR = Star()
Step = str | int | Star


@dataclass(frozen=True)
class Path:
    """A place in the content: keys, array indexes and `[*]`. `rooted`: written with `$`
    (always content, even when its first key is an attribute's name)."""

    steps: tuple[Step, ...]
    rooted: bool = dataclasses.field(default=False, compare=False)
    position: int = dataclasses.field(default=0, compare=False)


@dataclass(frozen=True)
class Attribute:
    name: str
    position: int = dataclasses.field(default=0, compare=False)


Field = Path | Attribute


@dataclass(frozen=True)
class Text:
    """A text value; more than one part: `*` stood between them (a wildcard)."""

    parts: tuple[str, ...]
    position: int = dataclasses.field(default=0, compare=False)

    @property
    def wildcard(self) -> bool:
        return len(self.parts) > 1


@dataclass(frozen=True)
class Number:
    value: int | float
    position: int = dataclasses.field(default=0, compare=False)
    source: str = dataclasses.field(default="", compare=False)  # as written (a version: 1.20)


@dataclass(frozen=True)
class Constant:
    """true, false or null."""

    value: bool | None
    position: int = dataclasses.field(default=0, compare=False)


@dataclass(frozen=True)
class Relative:
    """A time before now, e.g. -1h."""

    amount: int
    unit: str
    position: int = dataclasses.field(default=0, compare=False)

    @property
    def seconds(self) -> int:
        return self.amount * UNITS[self.unit]


Value = Text | Number | Constant | Relative


@dataclass(frozen=True)
class Compare:
    field: Field
    operator: Operator
    value: Value
    position: int = dataclasses.field(default=0, compare=False)


@dataclass(frozen=True)
class In:
    field: Field
    values: tuple[Value, ...]
    negated: bool = False
    position: int = dataclasses.field(default=0, compare=False)


@dataclass(frozen=True)
class Exists:
    path: Path
    position: int = dataclasses.field(default=0, compare=False)


@dataclass(frozen=True)
class Not:
    item: Node
    position: int = dataclasses.field(default=0, compare=False)


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]
    position: int = dataclasses.field(default=0, compare=False)


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]
    position: int = dataclasses.field(default=0, compare=False)


Node = Compare | In | Exists | Not | And | Or


def unparse(node: Node) -> str:
    """The query text of a tree (fully parenthesized where it nests)."""
    if isinstance(node, Compare):
        return f"{_field(node.field)} {node.operator} {_value(node.value)}"
    if isinstance(node, In):
        values = ", ".join(_value(value) for value in node.values)
        return f"{_field(node.field)} {'not in' if node.negated else 'in'} ({values})"
    if isinstance(node, Exists):
        return f"exists({_path(node.path)})"
    if isinstance(node, Not):
        return f"not ({unparse(node.item)})"
    joiner = " and " if isinstance(node, And) else " or "
    return joiner.join(f"({unparse(item)})" for item in node.items)


def _field(item: Field) -> str:
    return item.name if isinstance(item, Attribute) else _path(item)


def _path(path: Path) -> str:
    first = path.steps[0]
    bare = isinstance(first, str) and BARE_KEY.fullmatch(first) and first.lower() not in KEYWORDS
    rooted = path.rooted or not bare
    text = "$" if rooted else ""
    for index, step in enumerate(path.steps):
        if isinstance(step, Star):
            text += "[*]"
        elif isinstance(step, int):
            text += f"[{step}]"
        elif BARE_KEY.fullmatch(step) and step.lower() not in KEYWORDS:
            text += step if index == 0 and not rooted else f".{step}"
        else:
            text += f"[{quote(step)}]"
    return text


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _value(value: Value) -> str:
    if isinstance(value, Text):
        escaped = (part.replace("\\", "\\\\").replace('"', '\\"') for part in value.parts)
        return '"' + "*".join(part.replace("*", "\\*") for part in escaped) + '"'
    if isinstance(value, Number):
        return repr(value.value)
    if isinstance(value, Constant):
        return {True: "true", False: "false", None: "null"}[value.value]
    return f"-{value.amount}{value.unit}"
