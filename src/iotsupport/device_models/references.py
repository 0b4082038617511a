"""A schema's references: each must resolve inside the document, and none may loop back
to the same value without descending (validating that would recurse forever)."""

from __future__ import annotations

import typing as t

import referencing.exceptions

from iotsupport.device_models.schema_errors import MAX_ERRORS
from iotsupport.device_models.schema_errors import Unreadable
from iotsupport.device_models.schema_errors import error_entry as _error
from iotsupport.device_models.schema_errors import pointer

# Keywords whose values are data, not subschemas: never read as references or cycles.
_DATA_KEYWORDS = frozenset({"const", "enum", "examples", "default"})
_IN_PLACE = ("allOf", "anyOf", "oneOf")
_IN_PLACE_SINGLE = ("not", "if", "then", "else")
_REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")


def check_references(schema: dict[str, t.Any], resolver: t.Any, specification: t.Any) -> None:
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
