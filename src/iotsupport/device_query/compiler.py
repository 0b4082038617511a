"""A parsed query as one SQL condition on device_configs.

Every leaf is made two-valued (true or false, never NULL), so `not` matches exactly
the devices its operand does not: an absent path, a null attribute or a value of
another type makes a comparison false, and its `not` true. Values are bound
parameters; a comparison that cannot mean anything (`sync_state > 3`, `last_seen ==
-1h`, `name < true`) is a 400 pointing at it.
"""

from __future__ import annotations

import typing as t
from datetime import UTC
from datetime import datetime
from datetime import timedelta

from sqlalchemy import ColumnElement
from sqlalchemy import and_
from sqlalchemy import false
from sqlalchemy import func
from sqlalchemy import not_
from sqlalchemy import or_

from iotsupport.device_query.attributes import ATTRIBUTES
from iotsupport.device_query.attributes import AttributeSpec
from iotsupport.device_query.content import Content
from iotsupport.device_query.content import Slot
from iotsupport.device_query.syntax import And
from iotsupport.device_query.syntax import Attribute
from iotsupport.device_query.syntax import Constant
from iotsupport.device_query.syntax import Exists
from iotsupport.device_query.syntax import In
from iotsupport.device_query.syntax import InvalidQuery
from iotsupport.device_query.syntax import Node
from iotsupport.device_query.syntax import Not
from iotsupport.device_query.syntax import Number
from iotsupport.device_query.syntax import Operator
from iotsupport.device_query.syntax import Or
from iotsupport.device_query.syntax import Path
from iotsupport.device_query.syntax import Relative
from iotsupport.device_query.syntax import Text
from iotsupport.device_query.syntax import Value

# The largest number compared: beyond it SQLite's and PostgreSQL's arithmetic differ.
MAX_NUMBER = 1e15
ORDERING = ("<", "<=", ">", ">=")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Compiler:
    def __init__(self, dialect: str, now: datetime) -> None:
        self.dialect = dialect
        self.now = now
        self.content = Content(dialect)

    def compile(self, node: Node) -> ColumnElement[bool]:
        return self.content.wrap(self.condition(node))

    def condition(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, And):
            return and_(*(self.condition(item) for item in node.items))
        if isinstance(node, Or):
            return or_(*(self.condition(item) for item in node.items))
        if isinstance(node, Not):
            return not_(self.condition(node.item))
        if isinstance(node, Exists):
            return self.leaf(self.content.at(node.path.steps, lambda slot: slot.present()))
        if isinstance(node, In):
            return self.leaf(self.member(node))
        return self.leaf(self.compare(node.field, node.operator, node.value))

    def leaf(self, condition: ColumnElement[bool]) -> ColumnElement[bool]:
        return func.coalesce(condition, false())

    def member(self, node: In) -> ColumnElement[bool]:
        """`in`: equal to one of the values; `not in`: a value of a kind the list names
        (present, for an attribute), equal to none of them. On a path, one walk to the
        value (one scan of each [*]) tests them all: with [*], per element."""
        if isinstance(node.field, Attribute):
            spec = ATTRIBUTES[node.field.name]
            anyof = or_(*(self.attribute(spec, "==", value) for value in node.values))
            if not node.negated:
                return anyof
            return and_(spec.expression().is_not(None), not_(func.coalesce(anyof, false())))
        for value in node.values:
            self.content_test("==", value)  # refuses what cannot be compared
        numbers = [self.number(value) for value in node.values if isinstance(value, Number)]
        texts = [value for value in node.values if isinstance(value, Text)]
        exact = [value.parts[0] for value in texts if not value.wildcard]
        others: list[Value] = [value for value in node.values if isinstance(value, Constant)]
        others += [value for value in texts if value.wildcard]
        kinds = {type(value): value for value in node.values}

        def test(slot: Slot) -> ColumnElement[bool]:
            tests = [self.content_test("==", value)(slot) for value in others]
            if numbers:
                tests.append(and_(slot.is_number(), slot.number().in_(numbers)))
            if exact:
                tests.append(and_(slot.is_text(), slot.text().in_(exact)))
            anyof = or_(*tests)
            if not node.negated:
                return anyof
            present = or_(*(self.kind(slot, value) for value in kinds.values()))
            return and_(present, not_(func.coalesce(anyof, false())))

        return self.content.at(node.field.steps, test)

    @staticmethod
    def kind(slot: Slot, value: Value) -> ColumnElement[bool]:
        if isinstance(value, Number):
            return slot.is_number()
        if isinstance(value, Text):
            return slot.is_text()
        if isinstance(value, Constant) and value.value is not None:
            return or_(slot.is_boolean(True), slot.is_boolean(False))
        return slot.is_null()

    def compare(self, field: Attribute | Path, operator: Operator, value: Value) -> t.Any:
        if isinstance(field, Attribute):
            return self.attribute(ATTRIBUTES[field.name], operator, value)
        return self.content.at(field.steps, self.content_test(operator, value))

    # --- content ------------------------------------------------------------------

    def content_test(self, operator: Operator, value: Value) -> t.Callable[[Slot], t.Any]:
        if isinstance(value, Relative):
            raise InvalidQuery(
                "a relative time (-1h) compares with last_seen, not with content",
                value.position,
            )
        if isinstance(value, Constant):
            self.equality_only(operator, value, "true, false and null")
            if value.value is None:
                return lambda slot: _negate(operator, slot.is_null(), slot.present())
            flag = value.value
            return lambda slot: _negate(
                operator,
                slot.is_boolean(flag),
                or_(slot.is_boolean(True), slot.is_boolean(False)),
            )
        if isinstance(value, Number):
            number = self.number(value)
            return lambda slot: and_(slot.is_number(), _operate(slot.number(), operator, number))
        return lambda slot: and_(slot.is_text(), self.text(slot.text(), operator, value))

    def number(self, value: Number) -> int | float:
        if abs(value.value) > MAX_NUMBER:
            raise InvalidQuery(f"numbers in a query are at most {MAX_NUMBER:.0e}", value.position)
        return value.value

    def text(self, column: ColumnElement[t.Any], operator: Operator, value: Text) -> t.Any:
        if value.wildcard:
            if operator not in ("==", "!="):
                raise InvalidQuery("* matches with == and != only", value.position)
            pattern = "%".join(_escape_like(part) for part in value.parts).lower()
            if self.dialect == "sqlite" and not pattern.isascii():
                # SQLite's LIKE ignores case in ASCII only.
                matched = func.unicode_lower(column).like(pattern, escape="\\")
            elif self.dialect == "sqlite":
                matched = column.like(pattern, escape="\\")
            else:
                matched = func.lower(column).like(pattern, escape="\\")
            return matched if operator == "==" else not_(matched)
        text = value.parts[0]
        if self.dialect == "postgresql" and operator in ORDERING:
            column = column.collate("C")  # as SQLite orders text: by code point
        return _operate(column, operator, text)

    def equality_only(self, operator: Operator, value: Value, what: str) -> None:
        if operator not in ("==", "!="):
            raise InvalidQuery(f"{what} compare with == and != only", value.position)

    # --- attributes ---------------------------------------------------------------

    def attribute(self, spec: AttributeSpec, operator: Operator, value: Value) -> t.Any:
        column = spec.expression()
        if isinstance(value, Constant) and value.value is None:
            self.equality_only(operator, value, "null")
            if not spec.nullable:
                raise InvalidQuery(f"{spec.name} is never null", value.position)
            return column.is_(None) if operator == "==" else column.is_not(None)
        if spec.kind == "boolean":
            if not isinstance(value, Constant):
                raise InvalidQuery(f"{spec.name} is true, false or null", value.position)
            self.equality_only(operator, value, spec.name)
            return column.is_(value.value) if operator == "==" else column.is_(not value.value)
        if spec.kind == "time":
            return _operate(column, operator, self.moment(spec, operator, value))
        if not isinstance(value, Text):
            if isinstance(value, Number) and spec.kind == "text":
                value = Text((_number_text(value),), value.position)
            else:
                raise InvalidQuery(f"{spec.name} compares with a text", value.position)
        if spec.kind == "choice":
            self.equality_only(operator, value, spec.name)
            if value.wildcard or value.parts[0] not in spec.choices:
                raise InvalidQuery(
                    f"{spec.name} is one of {', '.join(spec.choices)}", value.position
                )
            return _operate(column, operator, value.parts[0])
        if operator in ORDERING and not spec.ordered:
            raise InvalidQuery(f"{spec.name} compares with == != and in only", value.position)
        if spec.lower:
            value = Text(tuple(part.lower().replace("-", ":") for part in value.parts))
        return self.text(column, operator, value)

    def moment(self, spec: AttributeSpec, operator: Operator, value: Value) -> datetime:
        if operator not in ORDERING:
            raise InvalidQuery(f"{spec.name} compares with < <= > >= (or == null)", value.position)
        try:
            if isinstance(value, Relative):
                return self.now - timedelta(seconds=value.seconds)
            if isinstance(value, Text) and not value.wildcard:
                moment = datetime.fromisoformat(value.parts[0])
                # In UTC now: a time near year 1 or 9999 fails here, not in the database.
                return (
                    moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
                )
        except OverflowError:
            raise InvalidQuery("this time is out of range", value.position) from None
        except ValueError:
            pass
        raise InvalidQuery(
            f"{spec.name} compares with a time before now (-30m, -1h, -7d) or an ISO time "
            '("2026-12-01T08:00:00Z")',
            value.position,
        )


def _number_text(value: Number) -> str:
    return value.source or str(value.value)


def _operate(column: ColumnElement[t.Any], operator: Operator, value: object) -> t.Any:
    if operator == "==":
        return column == value
    if operator == "!=":
        return column != value
    if operator == "<":
        return column < value
    if operator == "<=":
        return column <= value
    if operator == ">":
        return column > value
    return column >= value


def _negate(
    operator: Operator, matched: ColumnElement[bool], kind: ColumnElement[bool]
) -> ColumnElement[bool]:
    """== matched; != a value of the same kind that is not matched."""
    return matched if operator == "==" else and_(kind, not_(matched))


__all__ = ["Compiler", "UTC"]
