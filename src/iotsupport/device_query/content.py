"""A place in a config's content, in SQL: SQLite's JSON functions or PostgreSQL's jsonb.

A `Slot` is one JSON value the path reaches in a row (or none): its type tests and its
value as a number or a text. Every test is false for an absent path or a value of
another type, and none can fail: a value is read as a number only where its type is a
number. `[*]` becomes an EXISTS over the array's elements (nested for each `[*]`), so
`sensors[*].type == "sht40"` matches when any element does.

Paths and values are bound parameters; the content is stored as text (always a JSON
object: every save checks it), read with json_type/json_extract on SQLite and cast to
jsonb on PostgreSQL.
"""

from __future__ import annotations

import typing as t

from sqlalchemy import ColumnElement
from sqlalchemy import Numeric
from sqlalchemy import Text
from sqlalchemy import and_
from sqlalchemy import bindparam
from sqlalchemy import case
from sqlalchemy import cast
from sqlalchemy import exists
from sqlalchemy import func
from sqlalchemy import literal
from sqlalchemy import select
from sqlalchemy import type_coerce
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import JSONB

from iotsupport.configs.tables import DeviceConfig
from iotsupport.device_query.syntax import Star
from iotsupport.device_query.syntax import Step

_CONFIGS = DeviceConfig.__table__
Test = t.Callable[["Slot"], ColumnElement[bool]]


class Slot(t.Protocol):
    def present(self) -> ColumnElement[bool]: ...
    def is_number(self) -> ColumnElement[bool]: ...
    def number(self) -> ColumnElement[t.Any]: ...
    def is_text(self) -> ColumnElement[bool]: ...
    def text(self) -> ColumnElement[str]: ...
    def is_boolean(self, value: bool) -> ColumnElement[bool]: ...
    def is_null(self) -> ColumnElement[bool]: ...


def _split(steps: t.Sequence[Step]) -> tuple[list[str | int], t.Sequence[Step] | None]:
    """The steps before the first [*], and those after it (None: no [*])."""
    for index, step in enumerate(steps):
        if isinstance(step, Star):
            return t.cast(list[str | int], list(steps[:index])), steps[index + 1 :]
    return t.cast(list[str | int], list(steps)), None


# --- SQLite ---------------------------------------------------------------------------


def _sqlite_path(steps: t.Sequence[str | int]) -> str:
    # Keys always quoted: a key may hold "." or "[" (the parser refuses '"' in keys).
    return "".join(f"[{step}]" if isinstance(step, int) else f'."{step}"' for step in steps)


class _SqliteSlot:
    def __init__(self, path: ColumnElement[str]) -> None:
        self.kind = func.json_type(_CONFIGS.c.content, path)
        self.value = func.json_extract(_CONFIGS.c.content, path)

    def present(self) -> ColumnElement[bool]:
        return self.kind.is_not(None)

    def is_number(self) -> ColumnElement[bool]:
        return self.kind.in_(["integer", "real"])

    def number(self) -> ColumnElement[t.Any]:
        return self.value

    def is_text(self) -> ColumnElement[bool]:
        return self.kind == "text"

    def text(self) -> ColumnElement[str]:
        return self.value

    def is_boolean(self, value: bool) -> ColumnElement[bool]:
        return self.kind == ("true" if value else "false")

    def is_null(self) -> ColumnElement[bool]:
        return self.kind == "null"


def _sqlite(base: ColumnElement[str] | None, steps: t.Sequence[Step], test: Test) -> t.Any:
    """Every path is read from the whole document: `base` is the SQL text of the path
    so far (an element's `fullkey` inside a [*]), the rest is appended as a parameter."""
    before, after = _split(steps)
    suffix = _sqlite_path(before)
    path: ColumnElement[str]
    if base is None:
        path = bindparam(None, "$" + suffix, Text)
    else:
        path = base.concat(bindparam(None, suffix, Text)) if suffix else base
    if after is None:
        return test(_SqliteSlot(path))
    elements = func.json_each(_CONFIGS.c.content, path).table_valued("fullkey").alias()
    is_array = func.json_type(_CONFIGS.c.content, path) == "array"
    inner = select(literal(1)).select_from(elements).where(_sqlite(elements.c.fullkey, after, test))
    return and_(is_array, exists(inner.correlate_except(elements)))


# --- PostgreSQL -----------------------------------------------------------------------


class _PostgresSlot:
    def __init__(self, document: ColumnElement[t.Any], steps: t.Sequence[str | int]) -> None:
        keys = bindparam(None, [str(step) for step in steps], ARRAY(Text))
        self.value = document.op("#>", return_type=JSONB)(keys)
        self.kind = func.jsonb_typeof(self.value)
        self.plain = document.op("#>>", return_type=Text)(keys)

    def present(self) -> ColumnElement[bool]:
        return self.kind.is_not(None)

    def is_number(self) -> ColumnElement[bool]:
        return self.kind == "number"

    def number(self) -> ColumnElement[t.Any]:
        # CASE first: casting a jsonb that is not a number would be an error.
        return case((self.is_number(), cast(self.value, Numeric)))

    def is_text(self) -> ColumnElement[bool]:
        return self.kind == "string"

    def text(self) -> ColumnElement[str]:
        return self.plain

    def is_boolean(self, value: bool) -> ColumnElement[bool]:
        return and_(self.kind == "boolean", self.plain == ("true" if value else "false"))

    def is_null(self) -> ColumnElement[bool]:
        return self.kind == "null"


def _containers(document: ColumnElement[t.Any], steps: list[str | int]) -> list[t.Any]:
    """jsonb's #> takes an index for an object's key ("0") and a key for an array's
    index: [0] must step into an array and "0" into an object, as in SQLite."""
    guards = []
    for index, step in enumerate(steps):
        if isinstance(step, int) or step.isdigit():
            parent = _PostgresSlot(document, steps[:index]).kind
            guards.append(parent == ("array" if isinstance(step, int) else "object"))
    return guards


def _postgres(document: ColumnElement[t.Any], steps: t.Sequence[Step], test: Test) -> t.Any:
    before, after = _split(steps)
    slot = _PostgresSlot(document, before)
    guards = _containers(document, before)
    if after is None:
        return and_(*guards, test(slot))
    # jsonb_array_elements of anything but an array is an error: NULL (no rows) instead.
    array = case((and_(*guards, slot.kind == "array"), slot.value))
    elements = func.jsonb_array_elements(array).table_valued("value").alias()
    element = type_coerce(elements.c.value, JSONB)
    inner = select(literal(1)).select_from(elements).where(_postgres(element, after, test))
    return exists(inner.correlate_except(elements))


class Content:
    """The content of the row in one query: `at(steps, test)` for each place the query
    names, then `wrap` the whole condition.

    On PostgreSQL the text is cast to jsonb once per row, in a subquery the planner may
    not inline (OFFSET 0): written at each place, the cast ran once per place (the
    parse is most of the cost)."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.used = False
        self.source = (
            select(cast(_CONFIGS.c.content, JSONB).label("doc"))
            .correlate(_CONFIGS)
            .offset(0)
            .subquery("content_doc")
        )

    def at(self, steps: t.Sequence[Step], test: Test) -> ColumnElement[bool]:
        """`test` of the value at `steps` in the content (any element, at a [*])."""
        self.used = True
        if self.dialect == "postgresql":
            return t.cast(ColumnElement[bool], _postgres(self.source.c.doc, steps, test))
        return t.cast(ColumnElement[bool], _sqlite(None, steps, test))

    def wrap(self, condition: ColumnElement[bool]) -> ColumnElement[bool]:
        if self.dialect != "postgresql" or not self.used:
            return condition
        inner = select(literal(1)).select_from(self.source).where(condition)
        return exists(inner.correlate_except(self.source))
