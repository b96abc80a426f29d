"""User JSON Schemas: checked once at create time, compiled once per revision, run per call."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import jsonschema
import jsonschema.validators
import referencing
import referencing.exceptions
import referencing.jsonschema
import regex
from jsonschema.validators import validator_for
from jsonschema_specifications import REGISTRY as META_SCHEMAS

from schemas.errors import InvalidRequest, detail
from schemas.functions import JsonSchema

MAX_REPORTED_ERRORS = 20
_REF_KEYWORDS = ("$ref", "$dynamicRef")

# A registry that never retrieves: a ``$ref`` resolves inside the schema itself or to one of the
# JSON Schema meta-schemas (which jsonschema adds), never over the network. (jsonschema's default
# fetches unknown URIs with urllib, which would let a user's schema make workers fetch URLs.)
_NO_RETRIEVAL: referencing.Registry[Any] = referencing.Registry()


# ---- a time budget for every validation ---------------------------------------------------------
# A user's ``pattern`` like ``^(a+)+$`` backtracks exponentially in ``re``, which also holds the GIL
# and so would stall every function on the worker: ``regex`` takes a timeout and releases the GIL
# while matching. ``uniqueItems`` is quadratic in jsonschema: it is checked here in linear time.
# References and combinators can fan out exponentially (``allOf`` of two ``$ref``s, 18 deep):
# every keyword that descends checks the deadline. The worker validates a schema that can be
# slow, or a big value, off its event loop, under the function's timeout.

# The monotonic time by which one validation must have finished.
_DEADLINE: ContextVar[float | None] = ContextVar("validation_deadline", default=None)
DEFAULT_PATTERN_BUDGET_S = 1.0


class ValidationTooSlow(Exception):
    """A validation did not finish within its budget."""


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> Any:
    return regex.compile(pattern)


def _search(pattern: str, text: str) -> bool:
    deadline = _DEADLINE.get()
    left = DEFAULT_PATTERN_BUDGET_S if deadline is None else deadline - time.monotonic()
    try:
        if left <= 0:
            raise TimeoutError
        return _compiled(pattern).search(text, timeout=left) is not None
    except TimeoutError:
        raise ValidationTooSlow(f"pattern {pattern!r} did not finish matching in time") from None


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, extra: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    declared = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [
        key
        for key in instance
        if key not in declared and not any(_search(p, key) for p in patterns)
    ]
    if validator.is_type(extra, "object"):
        for key in extras:
            yield from validator.descend(instance[key], extra, path=key)
    elif extra is False and extras:
        listed = ", ".join(repr(k) for k in sorted(extras))
        yield jsonschema.ValidationError(f"additional properties are not allowed ({listed})")


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not (unique and validator.is_type(instance, "array")):
        return
    seen: set[Any] = set()
    for item in instance:
        key = _json_identity(item)
        if key in seen:
            yield jsonschema.ValidationError(f"{instance!r} has non-unique elements")
            return
        seen.add(key)


def _json_identity(value: Any) -> Any:
    """A hashable key equal for equal JSON values (1 and 1.0 are one number; true is not 1)."""
    if isinstance(value, bool) or value is None:
        return ("b", value)
    if isinstance(value, (int, float)):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list):
        return ("l", tuple(_json_identity(v) for v in value))
    if isinstance(value, dict):
        return ("o", frozenset((k, _json_identity(v)) for k, v in value.items()))
    return ("?", id(value))


def _within_deadline(keyword: Any) -> Any:
    """``keyword``'s validator, checking the validation's deadline before it descends."""

    def check(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any]:
        deadline = _DEADLINE.get()
        if deadline is not None and time.monotonic() > deadline:
            raise ValidationTooSlow("the schema took too long to check this value")
        yield from keyword(validator, value, instance, schema)

    return check


_REGEX_KEYWORDS = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "uniqueItems": _unique_items,
}
# The keywords through which validation descends or fans out.
_DESCENDING = (
    "$ref",
    "$dynamicRef",
    "$recursiveRef",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "items",
    "prefixItems",
    "additionalItems",
    "contains",
    "properties",
    "patternProperties",
    "additionalProperties",
    "dependentSchemas",
    "unevaluatedItems",
    "unevaluatedProperties",
)
# Keywords whose presence makes a schema worth validating off the event loop whatever the size.
_SLOW_KEYWORDS = (
    '"pattern',
    '"uniqueItems"',
    '"$ref"',
    '"$dynamicRef"',
    '"$recursiveRef"',
    '"allOf"',
    '"anyOf"',
    '"oneOf"',
)


@functools.cache
def _bounded(cls: Any) -> Any:
    keywords = {**cls.VALIDATORS, **_REGEX_KEYWORDS}
    timed = {k: _within_deadline(keywords[k]) for k in _DESCENDING if k in keywords}
    return jsonschema.validators.extend(cls, {**_REGEX_KEYWORDS, **timed})


def _validator_class(schema: JsonSchema) -> Any:
    base = validator_for(schema, default=jsonschema.Draft202012Validator)
    return _bounded(base)


def _escape(part: object) -> str:
    return "/" + str(part).replace("~", "~0").replace("/", "~1")


def check_schema(schema: JsonSchema | None, where: str) -> None:
    """Refuse a schema that is not a valid JSON Schema, naming where in it the problem is.

    Every ``$ref`` must resolve inside the schema too: a dangling or remote one would only fail
    later, on every invocation.
    """
    if schema is None or isinstance(schema, bool):
        return
    cls = _validator_class(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        pointer = where + "".join(_escape(p) for p in exc.absolute_path)
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
                    (key, pointer + "/patternProperties" + _escape(key))
                    for key in node["patternProperties"]
                ]
            for pattern, where in candidates:
                try:
                    _compiled(pattern)
                except regex.error as exc:
                    return where, f"{pattern!r} is not a regular expression: {exc}"
            stack.extend((value, pointer + _escape(key)) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, pointer + _escape(i)) for i, value in enumerate(node))
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
            stack.extend((value, pointer + _escape(key)) for key, value in node.items())
        elif isinstance(node, list):
            stack.extend((value, pointer + _escape(i)) for i, value in enumerate(node))

    meta = cls.META_SCHEMA
    specification = referencing.jsonschema.specification_with(
        meta.get("$id") or meta.get("id") or "", default=referencing.jsonschema.DRAFT202012
    )
    old_draft = specification in _OLD_DRAFTS
    root = specification.create_resource(schema)
    edges: dict[int, list[Any]] = {}
    nodes: dict[int, Any] = {}
    todo = [(root, META_SCHEMAS.combine(_NO_RETRIEVAL).resolver_with_root(root))]
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
                    return here + _escape(keyword), (
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


class CompiledSchema:
    """A validator built once; ``accepts_anything`` skips validation for empty schemas."""

    __slots__ = ("_validator", "accepts_anything", "can_be_slow")

    def __init__(self, schema: JsonSchema | None) -> None:
        self.accepts_anything = schema is None or schema is True or schema == {}
        text = json.dumps(schema)
        self.can_be_slow = any(keyword in text for keyword in _SLOW_KEYWORDS)
        self._validator: Any = None
        if schema is not None and not self.accepts_anything:
            self._validator = _validator_class(schema)(schema, registry=_NO_RETRIEVAL)

    def errors(self, instance: Any, deadline: float | None = None) -> list[dict[str, Any]]:
        """One detail per failing instance location (JSON pointer), empty when valid.

        ``deadline`` (``time.monotonic()``) bounds the whole validation; past it, raises
        ``ValidationTooSlow``.
        """
        if self.accepts_anything:
            return []
        found = []
        token = _DEADLINE.set(deadline)
        try:
            for error in self._validator.iter_errors(instance):
                pointer = "".join(
                    "/" + str(p).replace("~", "~0").replace("/", "~1") for p in error.absolute_path
                )
                found.append(detail(pointer or "/", error.message))
                if len(found) >= MAX_REPORTED_ERRORS:
                    break
        except RecursionError:  # a recursive schema ("$ref": "#") over a deeply nested value
            found.append(detail("/", "is nested too deeply to check against the schema"))
        finally:
            _DEADLINE.reset(token)
        return found
