"""A user's JSON Schema compiled once per revision and run per call (checked once at create
time by schema_checks.py, under the guards of validation_guards.py)."""

from __future__ import annotations

import json
from typing import Any

from schemas.codec import pointer_of
from schemas.errors import detail
from schemas.functions import JsonSchema
from schemas.validation_guards import (
    DEADLINE,
    NO_RETRIEVAL,
    SLOW_KEYWORDS,
    validator_class,
)

MAX_REPORTED_ERRORS = 20


class CompiledSchema:
    """A validator built once; ``accepts_anything`` skips validation for empty schemas."""

    __slots__ = ("_validator", "accepts_anything", "can_be_slow")

    def __init__(self, schema: JsonSchema | None) -> None:
        self.accepts_anything = schema is None or schema is True or schema == {}
        text = json.dumps(schema)
        self.can_be_slow = any(keyword in text for keyword in SLOW_KEYWORDS)
        self._validator: Any = None
        if schema is not None and not self.accepts_anything:
            self._validator = validator_class(schema)(schema, registry=NO_RETRIEVAL)

    def errors(self, instance: Any, deadline: float | None = None) -> list[dict[str, Any]]:
        """One detail per failing instance location (JSON pointer), empty when valid.

        ``deadline`` (``time.monotonic()``) bounds the whole validation; past it, raises
        ``ValidationTooSlow``.
        """
        if self.accepts_anything:
            return []
        found = []
        token = DEADLINE.set(deadline)
        try:
            for error in self._validator.iter_errors(instance):
                found.append(detail(pointer_of(error.absolute_path) or "/", error.message))
                if len(found) >= MAX_REPORTED_ERRORS:
                    break
        except RecursionError:  # a recursive schema ("$ref": "#") over a deeply nested value
            found.append(detail("/", "is nested too deeply to check against the schema"))
        finally:
            DEADLINE.reset(token)
        return found
