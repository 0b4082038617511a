"""JSON Schema for device models: checking a schema, and checking content against one.

python-jsonschema does the validating. Three things are ours:

- `$ref` never leaves the document: the registry's retrieve refuses, so a
  reference to an http(s) URL is a 400 when the schema is saved, never a fetch.
- Regular expressions run on RE2 (linear time). jsonschema calls `re.search` for
  `pattern`, `patternProperties`, `additionalProperties` and
  `unevaluatedProperties`; those modules get an `re` whose `search` is RE2's, so
  no pattern can backtrack catastrophically. A pattern RE2 cannot run
  (lookaround, backreferences) is refused when the schema is saved.
- Every keyword first checks a deadline, so one document's validation stops
  after `timeout` seconds (plus at most one keyword's linear work), and
  `uniqueItems` is linear instead of jsonschema's quadratic fallback.
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
import time
import typing as t
from dataclasses import dataclass
from types import SimpleNamespace

import jsonschema
import jsonschema._keywords
import jsonschema._legacy_keywords
import jsonschema._utils
import re2
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

MAX_SCHEMA_BYTES = 256 * 1024
MAX_ERRORS = 50
MAX_MESSAGE_CHARS = 300

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> t.Any:
    return re2.compile(pattern, options=_OPTIONS)


def regex_problem(pattern: str) -> str | None:
    """Why RE2 cannot run `pattern`, or None when it can."""
    try:
        _compiled(pattern)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        return f"{text} (patterns run on RE2: no lookaround, no backreferences)"
    return None


def _linear_search(pattern: str, string: str, flags: int = 0) -> t.Any:
    return _compiled(pattern).search(string)


# What jsonschema's keyword modules see as `re`: RE2's search, the rest unchanged.
_LINEAR_RE = SimpleNamespace(**{**vars(re), "search": _linear_search})
for _module in (jsonschema._keywords, jsonschema._legacy_keywords, jsonschema._utils):
    _module.re = _LINEAR_RE


class ValidationTimeout(Exception):
    """Validating one document took longer than its deadline."""


class Unreadable(Exception):
    """The schema is not one this server will run; `errors` say where."""

    def __init__(self, message: str, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("schema_deadline")


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


def _guarded(base: type[Validator]) -> type[Validator]:
    keywords = {name: _with_deadline(keyword) for name, keyword in base.VALIDATORS.items()}
    keywords["uniqueItems"] = _with_deadline(_unique_items)
    extended: type[Validator] = jsonschema.validators.extend(base, keywords)
    return extended


DEFAULT_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# `$schema` values we accept, with or without "#" and in http or https.
_DIALECTS: dict[str, tuple[type[Validator], t.Any]] = {}
for _uri, _base, _spec in (
    ("json-schema.org/draft/2020-12/schema", jsonschema.Draft202012Validator, DRAFT202012),
    ("json-schema.org/draft/2019-09/schema", jsonschema.Draft201909Validator, DRAFT201909),
    ("json-schema.org/draft-07/schema", jsonschema.Draft7Validator, DRAFT7),
):
    _DIALECTS[_uri] = (_guarded(_base), _spec)
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


def pointer(parts: t.Iterable[str | int]) -> str:
    """RFC 6901 JSON Pointer of a path ("" is the whole document)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def _error(path: str, message: str, keyword: str) -> dict[str, str]:
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return {"path": path, "message": message, "keyword": keyword}


def _describe(error: ValidationError) -> dict[str, str]:
    keyword = error.validator if isinstance(error.validator, str) else "schema"
    message = error.message
    if error.cause is not None and keyword == "format":
        message = f"{message}: {error.cause}"
    return _error(pointer(error.absolute_path), message, keyword)


# Keywords whose values are data, not subschemas: never read as references or cycles.
_DATA_KEYWORDS = frozenset({"const", "enum", "examples", "default"})
_IN_PLACE = ("allOf", "anyOf", "oneOf")
_IN_PLACE_SINGLE = ("not", "if", "then", "else")
_REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")


@dataclass(frozen=True)
class CompiledSchema:
    """A checked schema, ready to validate content."""

    validator: Validator

    def errors(self, instance: t.Any, timeout: float) -> list[dict[str, str]]:
        """Every violation (at most MAX_ERRORS); empty when the instance is valid."""
        token = _DEADLINE.set(time.monotonic() + timeout)
        found: list[dict[str, str]] = []
        try:
            for error in self.validator.iter_errors(instance):
                found.append(_describe(error))
                if len(found) >= MAX_ERRORS:
                    break
        except ValidationTimeout:
            found.append(_error("", f"validation took longer than {timeout:g} s", "timeout"))
        except RecursionError:
            found.append(_error("", "the content is nested too deeply to validate", "depth"))
        except referencing.exceptions.Unresolvable as exc:  # checked on save; never expected
            found.append(_error("", f"cannot resolve {exc}", "$ref"))
        finally:
            _DEADLINE.reset(token)
        return found[:MAX_ERRORS]


def parse_schema(text: str) -> dict[str, t.Any]:
    """The schema text as an object; refused when too large or not an object."""
    if len(text.encode("utf-8", errors="replace")) > MAX_SCHEMA_BYTES:
        raise Unreadable(f"the schema is larger than {MAX_SCHEMA_BYTES // 1024} KB")
    try:
        value = json.loads(text)
    except RecursionError:
        raise Unreadable("the schema is nested too deeply") from None
    except ValueError as exc:
        raise Unreadable(f"the schema is not valid JSON: {exc}") from None
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
    _check_references(schema, resolver, specification)
    validator = base(schema, registry=registry, format_checker=None)
    return CompiledSchema(validator)


def _check_references(schema: dict[str, t.Any], resolver: t.Any, specification: t.Any) -> None:
    """Every reference resolves inside the document, and none loops back to itself
    without descending into the content (that would recurse forever)."""
    problems: list[dict[str, str]] = []
    # Edges between subschemas that apply to the same instance location.
    edges: dict[int, list[tuple[int, str]]] = {}
    nodes: dict[int, tuple[t.Any, str]] = {}

    def walk(node: t.Any, parent: t.Any, path: list[str | int]) -> None:
        if isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, parent, [*path, index])
            return
        if not isinstance(node, dict):
            return
        nodes[id(node)] = (node, pointer(path))
        local = parent.in_subresource(specification.create_resource(node)) if path else parent
        targets = edges.setdefault(id(node), [])
        for keyword in _REF_KEYWORDS:
            ref = node.get(keyword)
            if not isinstance(ref, str):
                continue
            where = pointer([*path, keyword])
            try:
                resolved = local.lookup(ref)
            except referencing.exceptions.Unresolvable:
                problems.append(
                    _error(
                        where,
                        f"{ref[:200]} does not resolve within the schema "
                        "(references outside the document are never fetched)",
                        keyword,
                    )
                )
                continue
            targets.append((id(resolved.contents), where))
            nodes.setdefault(id(resolved.contents), (resolved.contents, where))
        for keyword in _IN_PLACE:
            if isinstance(node.get(keyword), list):
                targets += [(id(item), pointer(path)) for item in node[keyword]]
        for keyword in _IN_PLACE_SINGLE:
            if isinstance(node.get(keyword), dict):
                targets.append((id(node[keyword]), pointer(path)))
        if isinstance(node.get("dependentSchemas"), dict):
            targets += [(id(item), pointer(path)) for item in node["dependentSchemas"].values()]
        for key, value in node.items():
            if key not in _DATA_KEYWORDS:
                walk(value, local, [*path, key])

    walk(schema, resolver, [])
    if problems:
        raise Unreadable("the schema refers to something outside itself", problems[:MAX_ERRORS])
    loop = _find_cycle(edges)
    if loop is not None:
        raise Unreadable(
            "the schema refers to itself without end",
            [_error(loop, "this reference leads back to itself for the same value", "$ref")],
        )


def _find_cycle(edges: dict[int, list[tuple[int, str]]]) -> str | None:
    """The pointer of a reference on a cycle of in-place edges, or None."""
    done: set[int] = set()
    for start in edges:
        if start in done:
            continue
        on_path: set[int] = {start}
        stack: list[tuple[int, t.Iterator[tuple[int, str]]]] = [(start, iter(edges[start]))]
        while stack:
            node, pending = stack[-1]
            step = next(pending, None)
            if step is None:
                stack.pop()
                on_path.discard(node)
                done.add(node)
                continue
            target, where = step
            if target in on_path:
                return where
            if target not in done:
                on_path.add(target)
                stack.append((target, iter(edges.get(target, []))))
    return None


@functools.lru_cache(maxsize=64)
def compiled(text: str) -> CompiledSchema:
    """A stored schema, compiled once per process (schemas are checked before storing)."""
    return check_schema(text)
