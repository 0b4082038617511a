"""What makes python-jsonschema safe to run on a stranger's schema.

- Regular expressions run on RE2 (linear time). jsonschema calls `re.search` for
  `pattern`, `patternProperties`, `additionalProperties` and
  `unevaluatedProperties`; those modules get an `re` whose `search` is RE2's, so
  no pattern can backtrack catastrophically. A pattern RE2 cannot run
  (lookaround, backreferences) is refused when the schema is saved.
- Every keyword first checks a deadline, so one document's validation stops
  after its timeout (plus at most one keyword's linear work), and `uniqueItems`
  is linear instead of jsonschema's quadratic fallback.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import re
import time
import typing as t
from types import SimpleNamespace

import jsonschema
import jsonschema._keywords
import jsonschema._legacy_keywords
import jsonschema._utils
import re2
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> t.Any:
    return re2.compile(pattern, options=_OPTIONS)


# RE2's reasons, in words for the person who wrote the pattern.
_RE2_REASONS = (
    ("invalid perl operator", "uses a lookahead or lookbehind such as (?= or (?<!"),
    ("invalid escape sequence", "uses a backreference such as \\1 or an unknown escape"),
    ("missing )", "opens a group with ( that is never closed"),
    ("unexpected )", "closes a group with ) that was never opened"),
    ("missing ]", "opens a character class with [ that is never closed"),
    ("missing argument to repetition operator", "has a *, + or ? with nothing before it"),
    ("bad repetition operator", "repeats a repetition, such as ** or +*"),
    ("invalid repetition size", "has a {n,m} count that is too large or out of order"),
    ("invalid character class range", "has a range such as [z-a] that runs backwards"),
    ("invalid named capture group", "names a group in a way RE2 does not read"),
)


def regex_advice(reason: str) -> str:
    """What is wrong with a pattern and what to do, from RE2's terse reason."""
    where = reason.split(":", 1)[1].strip() if ":" in reason else ""
    what = next((words for key, words in _RE2_REASONS if reason.startswith(key)), None)
    at = f" (at “{where[:40]}”)" if where else ""
    if what is None:
        return f"the pattern is not a regular expression this server can run{at}"
    return (
        f"the pattern {what}{at}; patterns run on RE2, which has no lookaround and no "
        "backreferences: rewrite it without"
    )


def regex_problem(pattern: str) -> str | None:
    """Why RE2 cannot run `pattern`, or None when it can."""
    try:
        _compiled(pattern)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        return regex_advice(text)
    return None


def _linear_search(pattern: str, string: str, flags: int = 0) -> t.Any:
    return _compiled(pattern).search(string)


# What jsonschema's keyword modules see as `re`: RE2's search, the rest unchanged.
_LINEAR_RE = SimpleNamespace(**{**vars(re), "search": _linear_search})
for _module in (jsonschema._keywords, jsonschema._legacy_keywords, jsonschema._utils):
    _module.re = _LINEAR_RE


class ValidationTimeout(Exception):
    """Validating one document took longer than its deadline."""


_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("schema_deadline")


@contextlib.contextmanager
def deadline(seconds: float) -> t.Iterator[None]:
    """Keywords run inside this block raise ValidationTimeout once `seconds` have passed."""
    token = _DEADLINE.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _with_deadline(keyword: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
    @functools.wraps(keyword)
    def checked(validator: t.Any, value: t.Any, instance: t.Any, schema: t.Any) -> t.Any:
        if time.monotonic() > _DEADLINE.get(float("inf")):
            raise ValidationTimeout
        return keyword(validator, value, instance, schema)

    return checked


def _canonical(value: t.Any) -> t.Hashable:
    """A hashable key equal for JSON-equal values (1 == 1.0, true != 1, key order ignored)."""
    if isinstance(value, bool) or value is None:
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", int(value) if isinstance(value, float) and value.is_integer() else value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list):
        return ("l", tuple(_canonical(item) for item in value))
    return ("o", frozenset((key, _canonical(item)) for key, item in value.items()))


def _unique_items(validator: t.Any, unique: t.Any, instance: t.Any, schema: t.Any) -> t.Any:
    if unique and validator.is_type(instance, "array"):
        seen: set[t.Hashable] = set()
        for index, item in enumerate(instance):
            key = _canonical(item)
            if key in seen:
                yield ValidationError(f"item {index} repeats an earlier item (uniqueItems)")
                return
            seen.add(key)


def guarded(base: type[Validator]) -> type[Validator]:
    """`base` with a deadline check before every keyword and a linear uniqueItems."""
    keywords = {name: _with_deadline(keyword) for name, keyword in base.VALIDATORS.items()}
    keywords["uniqueItems"] = _with_deadline(_unique_items)
    extended: type[Validator] = jsonschema.validators.extend(base, keywords)
    return extended
