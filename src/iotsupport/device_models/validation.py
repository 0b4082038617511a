"""JSON Schema for device models: checking a schema, and checking content against one.

python-jsonschema does the validating. `$ref` never leaves the document: the
registry's retrieve refuses, so a reference to an http(s) URL is a 400 when the
schema is saved, never a fetch (references.py). Patterns run on RE2 and every
keyword checks a deadline (guards.py).
"""

from __future__ import annotations

import functools
import json
import re
import time
import typing as t
from dataclasses import dataclass

import jsonschema
import referencing.exceptions
from jsonschema import FormatChecker
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from jsonschema_specifications import REGISTRY as SPECIFICATIONS
from referencing import Registry
from referencing import Resource
from referencing.jsonschema import DRAFT7
from referencing.jsonschema import DRAFT201909
from referencing.jsonschema import DRAFT202012

from iotsupport.device_models.guards import ValidationTimeout
from iotsupport.device_models.guards import deadline
from iotsupport.device_models.guards import guarded
from iotsupport.device_models.guards import regex_problem
from iotsupport.device_models.references import check_references
from iotsupport.device_models.schema_errors import MAX_ERRORS
from iotsupport.device_models.schema_errors import Unreadable
from iotsupport.device_models.schema_errors import error_entry as _error
from iotsupport.device_models.schema_errors import for_person
from iotsupport.device_models.schema_errors import pointer
from iotsupport.json_text import json_problem

__all__ = [
    "MAX_ERRORS",
    "Budget",
    "CompiledSchema",
    "Unreadable",
    "check_schema",
    "compiled",
    "pointer",
]

MAX_SCHEMA_BYTES = 256 * 1024


DEFAULT_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# `$schema` values we accept, with or without "#" and in http or https.
_DIALECTS: dict[str, tuple[type[Validator], t.Any]] = {}
for _uri, _base, _spec in (
    ("json-schema.org/draft/2020-12/schema", jsonschema.Draft202012Validator, DRAFT202012),
    ("json-schema.org/draft/2019-09/schema", jsonschema.Draft201909Validator, DRAFT201909),
    ("json-schema.org/draft-07/schema", jsonschema.Draft7Validator, DRAFT7),
):
    _DIALECTS[_uri] = (guarded(_base), _spec)
SUPPORTED_DIALECTS = (
    DEFAULT_DIALECT,
    "https://json-schema.org/draft/2019-09/schema",
    "http://json-schema.org/draft-07/schema#",
)


def _dialect(schema: dict[str, t.Any]) -> tuple[type[Validator], t.Any]:
    declared = schema.get("$schema", DEFAULT_DIALECT)
    if not isinstance(declared, str):
        raise Unreadable("$schema must be a string", [_error("/$schema", "not a string", "type")])
    key = re.sub(r"^https?://", "", declared).rstrip("#")
    if key not in _DIALECTS:
        raise Unreadable(
            f"$schema {declared[:200]!r} is not supported; use Draft 2020-12 (the default), "
            "2019-09 or 7",
            [_error("/$schema", "unsupported dialect", "$schema")],
        )
    return _DIALECTS[key]


def _refuse_retrieval(uri: str) -> Resource[t.Any]:
    raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]


_REGEX_FORMAT = FormatChecker(formats=())


def _is_runnable_regex(instance: object) -> bool:
    if isinstance(instance, str) and (problem := regex_problem(instance)) is not None:
        raise ValueError(problem)
    return True


_REGEX_FORMAT.checks("regex", raises=ValueError)(_is_runnable_regex)


def _describe(error: ValidationError) -> dict[str, str]:
    keyword = error.validator if isinstance(error.validator, str) else "schema"
    message = for_person(
        keyword, error.validator_value, error.instance, error.message, error.schema
    )
    if error.cause is not None and keyword == "format":
        message = f"{message}: {error.cause}"
    return _error(pointer(error.absolute_path), message, keyword)


class Budget:
    """One deadline for a check of many documents (a model's schema change, a bulk save):
    the whole check takes at most `seconds`, however many configs it covers."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()


@dataclass(frozen=True)
class CompiledSchema:
    """A checked schema, ready to validate content."""

    validator: Validator

    def errors(
        self, instance: t.Any, timeout: float, budget: Budget | None = None
    ) -> list[dict[str, str]]:
        """Every violation (at most MAX_ERRORS); empty when the instance is valid. With a
        `budget`, validation also stops when the budget is spent (a timeout error)."""
        found: list[dict[str, str]] = []
        limit = timeout if budget is None else min(timeout, budget.remaining())
        spent = f"the check of all configs took longer than {budget.seconds:g} s" if budget else ""
        if limit <= 0:
            return [_error("", spent, "timeout")]
        try:
            with deadline(limit):
                for error in self.validator.iter_errors(instance):
                    found.append(_describe(error))
                    if len(found) >= MAX_ERRORS:
                        break
        except ValidationTimeout:
            message = f"validation took longer than {timeout:g} s"
            if budget is not None and budget.remaining() <= 0:
                message = spent
            found.append(_error("", message, "timeout"))
        except RecursionError:
            found.append(_error("", "the content is nested too deeply to validate", "depth"))
        except referencing.exceptions.Unresolvable as exc:  # checked on save; never expected
            found.append(_error("", f"cannot resolve {exc}", "$ref"))
        return found[:MAX_ERRORS]


def parse_schema(text: str) -> dict[str, t.Any]:
    """The schema text as an object; refused when too large or not an object."""
    if len(text.encode("utf-8", errors="replace")) > MAX_SCHEMA_BYTES:
        raise Unreadable(f"the schema is larger than {MAX_SCHEMA_BYTES // 1024} KB")
    try:
        value = json.loads(text)
    except RecursionError:
        raise Unreadable("the schema is nested too deeply") from None
    except json.JSONDecodeError as exc:
        where = f"at line {exc.lineno}, column {exc.colno}"
        raise Unreadable(f"the schema is not valid JSON: {json_problem(exc.msg)} {where}") from None
    if not isinstance(value, dict):
        raise Unreadable("the schema must be a JSON object")
    return value


def check_schema(text: str) -> CompiledSchema:
    """Check a schema completely: size, dialect, metaschema, RE2 patterns, references
    (all within the document), and references that loop without consuming input."""
    schema = parse_schema(text)
    base, specification = _dialect(schema)
    metaschema_errors = []
    try:
        meta = jsonschema.validators.validator_for(base.META_SCHEMA, default=base)
        checker = meta(base.META_SCHEMA, format_checker=_REGEX_FORMAT)
        for error in checker.iter_errors(schema):
            metaschema_errors.append(_describe(error))
            if len(metaschema_errors) >= MAX_ERRORS:
                break
    except RecursionError:
        raise Unreadable("the schema is nested too deeply") from None
    if metaschema_errors:
        raise Unreadable("the schema is not a valid JSON Schema", metaschema_errors)
    registry: Registry[t.Any] = Registry(retrieve=_refuse_retrieval)  # type: ignore[call-arg]
    resolver = SPECIFICATIONS.combine(registry).resolver_with_root(
        specification.create_resource(schema)
    )
    check_references(schema, resolver, specification)
    validator = base(schema, registry=registry, format_checker=None)
    return CompiledSchema(validator)


@functools.lru_cache(maxsize=64)
def compiled(text: str) -> CompiledSchema:
    """A stored schema, compiled once per process (schemas are checked before storing)."""
    return check_schema(text)
