"""A schema's references: each must resolve inside the document, and none may loop back
to the same value without descending (validating that would recurse forever)."""

from __future__ import annotations

import typing as t

import referencing.exceptions

from iotsupport.device_models.schema_errors import MAX_ERRORS
from iotsupport.device_models.schema_errors import Unreadable
from iotsupport.device_models.schema_errors import error_entry as _error
from iotsupport.device_models.schema_errors import pointer

# Where subschemas live, by keyword, in Drafts 7, 2019-09 and 2020-12. Only these are
# walked: a member named "enum" under `properties` is a subschema, one under `const` is data.
_ONE = frozenset(
    {
        "not", "if", "then", "else", "items", "additionalItems", "additionalProperties",
        "contains", "propertyNames", "unevaluatedItems", "unevaluatedProperties",
        "contentSchema",
    }
)  # fmt: skip
_MANY = frozenset({"allOf", "anyOf", "oneOf", "prefixItems", "items"})
_MAP = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies"}
)
# Subschemas that apply to the same instance as their parent: a cycle of these never ends.
_IN_PLACE_MANY = ("allOf", "anyOf", "oneOf")
_IN_PLACE_ONE = ("not", "if", "then", "else")
_IN_PLACE_MAP = ("dependentSchemas", "dependencies")  # Draft 7 `dependencies` too
_REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")


def _subschemas(node: dict[str, t.Any]) -> t.Iterator[tuple[list[str | int], t.Any]]:
    """(relative path, subschema) of each subschema directly inside `node`."""
    for keyword, value in node.items():
        if keyword in _ONE and isinstance(value, dict | bool):
            yield [keyword], value
        elif keyword in _MANY and isinstance(value, list):
            for index, item in enumerate(value):
                yield [keyword, index], item
        elif keyword in _MAP and isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, dict | bool):  # `dependencies` may hold a list of names
                    yield [keyword, key], item


def check_references(schema: dict[str, t.Any], resolver: t.Any, specification: t.Any) -> None:
    """Every reference resolves inside the document, and none loops back to itself
    without descending into the content (that would recurse forever)."""
    problems: list[dict[str, str]] = []
    # Edges between subschemas that apply to the same instance location.
    edges: dict[int, list[tuple[int, str]]] = {}
    walked: set[int] = set()

    def walk(node: t.Any, parent: t.Any, path: list[str | int], root: bool = False) -> None:
        if not isinstance(node, dict) or id(node) in walked:
            return
        walked.add(id(node))
        local = parent if root else parent.in_subresource(specification.create_resource(node))
        targets = edges.setdefault(id(node), [])
        here = pointer(path)
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
            # A target outside the subschema keywords (under an unknown member) is a
            # subschema too once referenced: walk it as well.
            walk(resolved.contents, resolved.resolver, [*path, keyword])
        for keyword in _IN_PLACE_MANY:
            if isinstance(node.get(keyword), list):
                targets += [(id(item), here) for item in node[keyword]]
        for keyword in _IN_PLACE_ONE:
            if isinstance(node.get(keyword), dict):
                targets.append((id(node[keyword]), here))
        for keyword in _IN_PLACE_MAP:
            if isinstance(node.get(keyword), dict):
                targets += [(id(item), here) for item in node[keyword].values()]
        for relative, subschema in _subschemas(node):
            walk(subschema, local, [*path, *relative])

    walk(schema, resolver, [], root=True)
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
