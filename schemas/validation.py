"""User JSON Schemas: checked once at create time, compiled once per revision, run per call."""

from __future__ import annotations

from typing import Any

import jsonschema
from jsonschema.validators import validator_for

from schemas.errors import InvalidRequest, detail
from schemas.functions import JsonSchema

MAX_REPORTED_ERRORS = 20


def check_schema(schema: JsonSchema | None, where: str) -> None:
    """Refuse a schema that is not a valid JSON Schema, naming where in it the problem is."""
    if schema is None or isinstance(schema, bool):
        return
    cls = validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        pointer = where + "".join(f"/{p}" for p in exc.absolute_path)
        raise InvalidRequest(
            f"{where} is not a valid JSON Schema: {exc.message}", [detail(pointer, exc.message)]
        ) from None


class CompiledSchema:
    """A validator built once; ``accepts_anything`` skips validation for empty schemas."""

    __slots__ = ("accepts_anything", "_validator")

    def __init__(self, schema: JsonSchema | None) -> None:
        self.accepts_anything = schema is None or schema is True or schema == {}
        self._validator: Any = None
        if not self.accepts_anything:
            cls = validator_for(schema, default=jsonschema.Draft202012Validator)
            self._validator = cls(schema)

    def errors(self, instance: Any) -> list[dict[str, Any]]:
        """One detail per failing instance location (JSON pointer), empty when valid."""
        if self.accepts_anything:
            return []
        found = []
        for error in self._validator.iter_errors(instance):
            pointer = "".join(
                "/" + str(p).replace("~", "~0").replace("/", "~1") for p in error.absolute_path
            )
            found.append(detail(pointer or "/", error.message))
            if len(found) >= MAX_REPORTED_ERRORS:
                break
        return found
