"""A small recursive-descent parser of device queries (the grammar is in README.md,
"Device queries"; tests/test_device_query_grammar.py checks it).

One function per rule, reading characters (no token list), so every error knows its
offset. Bounds (length, nesting, terms, values, path steps) are checked as it reads:
a query that passes them costs the database a bounded amount of work.
"""

from __future__ import annotations

import typing as t
import unicodedata

from iotsupport.device_query.syntax import BARE_KEY
from iotsupport.device_query.syntax import BARE_VALUE
from iotsupport.device_query.syntax import NUMBER
from iotsupport.device_query.syntax import OPERATORS
from iotsupport.device_query.syntax import RELATIVE
from iotsupport.device_query.syntax import STAR
from iotsupport.device_query.syntax import And
from iotsupport.device_query.syntax import Attribute
from iotsupport.device_query.syntax import Compare
from iotsupport.device_query.syntax import Constant
from iotsupport.device_query.syntax import Exists
from iotsupport.device_query.syntax import Field
from iotsupport.device_query.syntax import In
from iotsupport.device_query.syntax import InvalidQuery
from iotsupport.device_query.syntax import Node
from iotsupport.device_query.syntax import Not
from iotsupport.device_query.syntax import Number
from iotsupport.device_query.syntax import Or
from iotsupport.device_query.syntax import Path
from iotsupport.device_query.syntax import Relative
from iotsupport.device_query.syntax import Step
from iotsupport.device_query.syntax import Text
from iotsupport.device_query.syntax import Value

MAX_LENGTH = 2000
MAX_DEPTH = 16  # parentheses and `not`s inside each other
MAX_TERMS = 64  # comparisons and exists()
MAX_IN_VALUES = 200
MAX_VALUES = 400  # in the whole query (each is a few bound parameters)
MAX_STEPS = 16  # keys and indexes in one path
MAX_STARS = 3  # [*] in one path (each is a nested scan of an array)
MAX_INDEX = 100_000
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def parse(text: str, attributes: t.Collection[str]) -> Node:
    """The tree of a query; `attributes`: the names that are device attributes (any other
    bare name starts a content path)."""
    if len(text) > MAX_LENGTH:
        raise InvalidQuery(f"the query is longer than {MAX_LENGTH} characters", MAX_LENGTH)
    return _Parser(text, frozenset(attributes)).query()


class _Parser:
    def __init__(self, text: str, attributes: frozenset[str]) -> None:
        self.text = text
        self.at = 0
        self.attributes = attributes
        self.depth = 0
        self.terms = 0
        self.values_seen = 0

    # --- characters ---------------------------------------------------------------

    def skip(self) -> int:
        while self.at < len(self.text) and self.text[self.at] in " \t\r\n":
            self.at += 1
        return self.at

    def fail(self, message: str, at: int | None = None) -> t.NoReturn:
        raise InvalidQuery(message, self.at if at is None else at)

    def found(self) -> str:
        """What stands at the current place, for a message."""
        if self.at >= len(self.text):
            return "the end of the query"
        word = BARE_VALUE.match(self.text, self.at)
        shown = word.group() if word else self.text[self.at]
        return repr(shown[:20]) if shown.isprintable() else f"U+{ord(shown[0]):04X}"

    def keyword(self, word: str) -> bool:
        """Takes `word` (any case) when it stands here as a whole word."""
        at = self.skip()
        end = at + len(word)
        if self.text[at:end].lower() != word:
            return False
        if end < len(self.text) and self.text[end] in _NAME_CHARS:
            return False
        self.at = end
        return True

    def symbol(self, symbol: str) -> bool:
        if self.text.startswith(symbol, self.skip()):
            self.at += len(symbol)
            return True
        return False

    def expect(self, symbol: str, what: str) -> None:
        if not self.symbol(symbol):
            self.fail(f"expected {what}, found {self.found()}")

    # --- rules --------------------------------------------------------------------

    def query(self) -> Node:
        if not self.text.strip():
            self.fail("the query is empty: write a comparison such as model == thermostat", 0)
        node = self.or_expr()
        if self.skip() < len(self.text):
            self.fail(f"expected and, or or the end of the query, found {self.found()}")
        return node

    def or_expr(self) -> Node:
        start = self.skip()
        items = [self.and_expr()]
        while self.keyword("or"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items), start)

    def and_expr(self) -> Node:
        start = self.skip()
        items = [self.unary()]
        while self.keyword("and"):
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items), start)

    def nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"the query nests more than {MAX_DEPTH} levels deep")

    def unary(self) -> Node:
        start = self.skip()
        if self.keyword("not"):
            self.nest()
            node: Node = Not(self.unary(), start)
            self.depth -= 1
            return node
        if self.symbol("("):
            self.nest()
            node = self.or_expr()
            self.expect(")", "')' to close the '(' at character " + str(start))
            self.depth -= 1
            return node
        self.count_term(start)
        if self.keyword("exists"):
            self.expect("(", "'(' after exists")
            path = self.path()
            self.expect(")", "')' after the path")
            return Exists(path, start)
        return self.comparison(start)

    def count_term(self, start: int) -> None:
        self.terms += 1
        if self.terms > MAX_TERMS:
            self.fail(f"the query has more than {MAX_TERMS} comparisons", start)

    def comparison(self, start: int) -> Node:
        field = self.field()
        at = self.skip()
        for operator in OPERATORS:
            if self.symbol(operator):
                return Compare(field, operator, self.value(), start)
        negated = self.keyword("not")
        if self.keyword("in"):
            return In(field, self.values(), negated, start)
        if self.text.startswith("=", at):
            self.fail("write == to compare (a single = is not an operator)", at)
        self.fail(f"expected an operator (== != < <= > >= in) after the name, found {self.found()}")

    def values(self) -> tuple[Value, ...]:
        self.expect("(", "'(' and a list of values after in")
        found = [self.value()]
        while self.symbol(","):
            if len(found) == MAX_IN_VALUES:
                self.fail(f"in takes at most {MAX_IN_VALUES} values")
            found.append(self.value())
        self.expect(")", "',' or ')' in the list of values")
        return tuple(found)

    def field(self) -> Field:
        start = self.skip()
        if BARE_KEY.match(self.text, start) is None and self.text[start : start + 1] != "$":
            self.fail(
                f"expected a name (an attribute, or a path in the content), found {self.found()}"
            )
        path = self.path()
        steps = path.steps
        if not path.rooted and len(steps) == 1 and steps[0] in self.attributes:
            return Attribute(t.cast(str, steps[0]), start)
        return path

    def path(self) -> Path:
        start = self.skip()
        rooted = self.text.startswith("$", start)
        steps: list[Step] = []
        if rooted:
            self.at += 1
        else:
            steps.append(self.key())
        while self.at < len(self.text) and self.text[self.at] in ".[":
            if len(steps) == MAX_STEPS:
                self.fail(f"a path has at most {MAX_STEPS} steps")
            if self.text[self.at] == ".":
                self.at += 1
                steps.append(self.key())
            else:
                steps.append(self.bracket())
        if not steps:
            self.fail("expected a key after $, as in $.name")
        if sum(step == STAR for step in steps) > MAX_STARS:
            self.fail(f"a path has at most {MAX_STARS} [*]", start)
        return Path(tuple(steps), rooted, start)

    def key(self) -> str:
        match = BARE_KEY.match(self.text, self.at)
        if match is None:
            self.fail(
                f'expected a key, found {self.found()} (write other keys in quotes: ["a key"])'
            )
        self.at = match.end()
        return match.group()

    def bracket(self) -> Step:
        self.at += 1  # [
        start = self.skip()
        step: Step
        if self.symbol("*"):
            step = STAR
        elif self.text[start : start + 1] in ('"', "'"):
            step = self.string()
            if '"' in step:  # SQLite's JSON paths cannot name such a key
                self.fail('a key in a query cannot contain "', start)
        else:
            digits = start
            while (
                digits < len(self.text)
                and self.text[digits].isascii()
                and (self.text[digits].isdigit())
            ):
                digits += 1
            if digits == start or digits - start > 6 or int(self.text[start:digits]) > MAX_INDEX:
                self.fail(f"expected *, an index (0 to {MAX_INDEX}) or a quoted key in [ ]")
            step = int(self.text[start:digits])
            self.at = digits
        self.expect("]", "']'")
        return step

    def string(self) -> str:
        return "".join(self.quoted(wildcards=False))

    def quoted(self, *, wildcards: bool) -> list[str]:
        """A quoted text, split at each `*` when `wildcards` (`\\*` is a star itself)."""
        start = self.at
        quote = self.text[start]
        parts = [""]
        self.at += 1
        while True:
            if self.at >= len(self.text):
                self.fail(f"this text has no closing {quote}", start)
            char = self.text[self.at]
            self.at += 1
            if char == quote:
                return parts
            if char == "\\":
                escaped = self.text[self.at : self.at + 1]
                if escaped not in ('"', "'", "\\", "*"):
                    self.fail("after \\ write one of \" ' \\ *", self.at - 1)
                parts[-1] += escaped
                self.at += 1
            elif char == "*" and wildcards:
                parts.append("")
            elif unicodedata.category(char) in ("Cc", "Cs"):
                self.fail("a text cannot hold control characters or lone surrogates", self.at - 1)
            else:
                parts[-1] += char

    def value(self) -> Value:
        start = self.skip()
        self.values_seen += 1
        if self.values_seen > MAX_VALUES:
            self.fail(f"the query has more than {MAX_VALUES} values")
        if self.text[start : start + 1] in ('"', "'"):
            return Text(tuple(self.quoted(wildcards=True)), start)
        match = BARE_VALUE.match(self.text, start)
        if match is None:
            self.fail(
                f"expected a value (a number, a text, true, false, null, -1h), found {self.found()}"
            )
        word = match.group()
        self.at = match.end()
        if NUMBER.fullmatch(word):
            number = float(word)
            if abs(number) == float("inf"):
                self.fail("this number is too large", start)
            whole = "." not in word and "e" not in word.lower()
            return Number(int(word) if whole else number, start, word)
        relative = RELATIVE.fullmatch(word)
        if relative:
            return Relative(int(relative.group(1)), relative.group(2), start)
        lowered = word.lower()
        if lowered in ("true", "false", "null"):
            return Constant({"true": True, "false": False, "null": None}[lowered], start)
        if lowered in ("and", "or", "not", "in", "exists"):
            self.fail(
                f"expected a value, found the word {word!r} (quote it to mean the text)", start
            )
        return Text(tuple(word.split("*")), start)
