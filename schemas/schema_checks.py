"""Checking a user's schema once, at create time: a valid JSON Schema, patterns that compile,
and ``$ref``s that resolve inside it without a loop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import jsonschema.validators
import referencing
import referencing.exceptions
import referencing.jsonschema
import regex
from jsonschema_specifications import REGISTRY as META_SCHEMAS

from schemas.codec import pointer_of
from schemas.errors import InvalidRequest, detail
from schemas.functions import JsonSchema
from schemas.validation_guards import NO_RETRIEVAL, compiled_pattern, validator_class

_REF_KEYWORDS = ("$ref", "$dynamicRef")


def check_schema(schema: JsonSchema | None, where: str) -> None:
    """Refuse a schema that is not a valid JSON Schema, naming where in it the problem is.

    Every ``$ref`` must resolve inside the schema too: a dangling or remote one would only fail
    later, on every invocation.
    """
    if schema is None or isinstance(schema, bool):
        return
    cls = validator_class(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        pointer = where + pointer_of(exc.absolute_path)
        raise InvalidRequest(
            f"{where} is not a valid JSON Schema: {exc.message}", [detail(pointer, exc.message)]
        ) from None
    except RecursionError:
        reason = "is nested too deeply to check"
        raise InvalidRequest(f"{where} {reason}", [detail(where, reason)]) from None
    problem = _pattern_problem(schema) or _reference_problem(schema, cls)
    if problem is not None:
        pointer, reason = problem
        raise InvalidRequest(
            f"{where} is not a usable JSON Schema: {reason}", [detail(where + pointer, reason)]
        )


def _pattern_problem(schema: dict[str, Any]) -> tuple[str, str] | None:
    """(JSON pointer, reason) of the first ``pattern`` or ``patternProperties`` key that is not a
    regular expression."""
    stack: list[tuple[Any, str]] = [(schema, "")]
    while stack:
        node, pointer = stack.pop()
        if isinstance(node, dict):
            candidates = []
            if isinstance(node.get("pattern"), str):
                candidates.append((node["pattern"], pointer + "/pattern"))
            if isinstance(node.get("patternProperties"), dict):
                candidates += [
                    (key, pointer + "/patternProperties" + pointer_of([key]))
                    for key in node["patternProperties"]
                ]
            for pattern, where in candidates:
                try:
                    compiled_pattern(pattern)
                except regex.error as exc:
                    return where, f"{pattern!r} is not a regular expression: {exc}"
            stack.extend((value, pointer + pointer_of([key])) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, pointer + pointer_of([i])) for i, value in enumerate(node))
    return None


# Keywords that apply a subschema to the same instance; a loop through only these (and
# references) never reaches a smaller part of the instance, so validating it never ends.
_IN_PLACE_ONE = ("not", "if", "then", "else")
_IN_PLACE_LIST = ("allOf", "anyOf", "oneOf")
_IN_PLACE_MAP = ("dependentSchemas", "dependencies")
# Up to draft 7, a schema with ``$ref`` ignores its other keywords.
_OLD_DRAFTS = (
    referencing.jsonschema.DRAFT3,
    referencing.jsonschema.DRAFT4,
    referencing.jsonschema.DRAFT6,
    referencing.jsonschema.DRAFT7,
)


def _reference_problem(schema: dict[str, Any], cls: Any) -> tuple[str, str] | None:
    """(JSON pointer, reason) of the first ``$ref`` that does not resolve or that loops."""
    pointers: dict[int, str] = {}
    stack: list[tuple[Any, str]] = [(schema, "")]
    while stack:
        node, pointer = stack.pop()
        if isinstance(node, dict):
            pointers.setdefault(id(node), pointer)
            stack.extend((value, pointer + pointer_of([key])) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, pointer + pointer_of([i])) for i, value in enumerate(node))

    meta = cls.META_SCHEMA
    specification = referencing.jsonschema.specification_with(
        meta.get("$id") or meta.get("id") or "", default=referencing.jsonschema.DRAFT202012
    )
    old_draft = specification in _OLD_DRAFTS
    root = specification.create_resource(schema)
    edges: dict[int, list[Any]] = {}
    nodes: dict[int, Any] = {}
    todo = [(root, META_SCHEMAS.combine(NO_RETRIEVAL).resolver_with_root(root))]
    while todo:
        resource, resolver = todo.pop()
        contents = resource.contents
        if isinstance(contents, dict):
            here = pointers.get(id(contents), "")
            out: list[Any] = []
            for keyword in _REF_KEYWORDS:
                ref = contents.get(keyword)
                if not isinstance(ref, str):
                    continue
                try:
                    out.append(resolver.lookup(ref).contents)
                except referencing.exceptions.Unresolvable:
                    return here + pointer_of([keyword]), (
                        f"{keyword} {ref!r} does not resolve inside the schema "
                        "(remote references are not fetched)"
                    )
            if not (old_draft and "$ref" in contents):
                out.extend(contents.get(k) for k in _IN_PLACE_ONE)
                for k in _IN_PLACE_LIST:
                    value = contents.get(k)
                    out.extend(value if isinstance(value, list) else [])
                for k in _IN_PLACE_MAP:
                    value = contents.get(k)
                    out.extend(value.values() if isinstance(value, dict) else [])
            nodes[id(contents)] = contents
            edges[id(contents)] = [target for target in out if isinstance(target, dict)]
        todo.extend((sub, resolver.in_subresource(sub)) for sub in resource.subresources())
    looping = _on_a_loop(edges)
    if looping is None:
        return None
    return pointers.get(looping, ""), (
        "its references loop back to it without descending into the instance, "
        "so validation would never end"
    )


def _on_a_loop(edges: dict[int, list[Any]]) -> int | None:
    """The id of a node on a cycle of ``edges`` (ids to target objects), or None."""
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    for start in edges:
        if start in state:
            continue
        path: list[tuple[int, Iterator[Any]]] = [(start, iter(edges[start]))]
        state[start] = 1
        while path:
            node, targets = path[-1]
            target = next(targets, None)
            if target is None:
                state[node] = 2
                path.pop()
                continue
            key = id(target)
            if state.get(key) == 1:
                return key
            if key not in state and key in edges:
                state[key] = 1
                path.append((key, iter(edges[key])))
    return None
