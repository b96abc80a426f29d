"""Guards on every validation of a user's schema: a time budget, and linear-time versions of
the keywords that backtrack or go quadratic in jsonschema."""

from __future__ import annotations

import functools
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

from schemas.functions import JsonSchema

# A user's ``pattern`` like ``^(a+)+$`` backtracks exponentially in ``re``, which also holds the GIL
# and so would stall every function on the worker: ``regex`` takes a timeout and releases the GIL
# while matching. ``uniqueItems`` is quadratic in jsonschema: it is checked here in linear time.
# References and combinators can fan out exponentially (``allOf`` of two ``$ref``s, 18 deep):
# every keyword that descends checks the deadline. The worker validates a schema that can be
# slow, or a big value, off its event loop, under the function's timeout.

# A registry that never retrieves: a ``$ref`` resolves inside the schema itself or to one of the
# JSON Schema meta-schemas (which jsonschema adds), never over the network. (jsonschema's default
# fetches unknown URIs with urllib, which would let a user's schema make workers fetch URLs.)
NO_RETRIEVAL: referencing.Registry[Any] = referencing.Registry()

# The monotonic time by which one validation must have finished.
DEADLINE: ContextVar[float | None] = ContextVar("validation_deadline", default=None)
DEFAULT_PATTERN_BUDGET_S = 1.0


class ValidationTooSlow(Exception):
    """A validation did not finish within its budget."""


@functools.lru_cache(maxsize=1024)
def compiled_pattern(pattern: str) -> Any:
    return regex.compile(pattern)


def _search(pattern: str, text: str) -> bool:
    deadline = DEADLINE.get()
    left = DEFAULT_PATTERN_BUDGET_S if deadline is None else deadline - time.monotonic()
    try:
        if left <= 0:
            raise TimeoutError
        return compiled_pattern(pattern).search(text, timeout=left) is not None
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
        deadline = DEADLINE.get()
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
SLOW_KEYWORDS = (
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


def validator_class(schema: JsonSchema) -> Any:
    base = validator_for(schema, default=jsonschema.Draft202012Validator)
    return _bounded(base)
