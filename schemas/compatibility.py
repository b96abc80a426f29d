"""Would promoting a revision break its callers? Compares two revisions' JSON Schemas.

A change is incompatible when the new input schema rejects inputs the old one accepted, or the
new output schema allows results the old one forbade. Detected, at the root and recursively in
properties (and ``items``) both schemas declare:

- ``required`` gains a name;
- ``type`` narrows (a type dropped, or a type where there was none);
- ``enum`` narrows (a value dropped, or an enum where there was none); ``const`` added or changed;
- ``additionalProperties`` becomes ``false``, or a property disappears under it;
- ``minimum``/``exclusiveMinimum``/``minLength``/``minItems`` rises, ``maximum``/
  ``exclusiveMaximum``/``maxLength``/``maxItems`` falls (or appears);
- ``pattern`` added or changed.

A schema of ``null``/``{}``/``true`` accepts everything. Anything else (``$ref``, ``oneOf``,
``if``...) is not compared: the check finds narrowing it can prove, it does not prove safety.
"""

from __future__ import annotations

from typing import Any

_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")


def incompatibilities(
    old_input: Any, new_input: Any, old_output: Any, new_output: Any
) -> list[dict[str, str]]:
    """One detail (``path``, ``message``) per detected break."""
    found = [
        {"path": "/schema/input" + where, "message": f"accepts less: {what}"}
        for where, what in narrowing(old_input, new_input)
    ]
    found += [
        {"path": "/schema/output" + where, "message": f"allows more: {what}"}
        for where, what in narrowing(new_output, old_output)
    ]
    return found


def narrowing(old: Any, new: Any, at: str = "") -> list[tuple[str, str]]:
    """Where and how ``new`` rejects instances ``old`` accepts (as far as detected)."""
    old, new = _as_schema(old), _as_schema(new)
    if new is False:
        return [] if old is False else [(at or "/", "now rejects everything")]
    if old is True:
        old = {}
    if old is False or not isinstance(new, dict) or not isinstance(old, dict):
        return []
    found: list[tuple[str, str]] = []
    added = sorted(set(new.get("required", [])) - set(old.get("required", [])))
    if added:
        found.append((at + "/required", f"required gains {', '.join(added)}"))
    old_types, new_types = _types(old), _types(new)
    if new_types is not None and (old_types is None or not old_types <= new_types):
        lost = "any type" if old_types is None else ", ".join(sorted(old_types - new_types))
        found.append((at + "/type", f"type no longer allows {lost}"))
    if "enum" in new:
        old_enum = old.get("enum")
        dropped = "values outside the enum" if old_enum is None else _missing(old_enum, new["enum"])
        if dropped:
            found.append((at + "/enum", f"enum no longer allows {dropped}"))
    if "const" in new and old.get("const", object()) != new["const"]:
        found.append((at + "/const", "const added or changed"))
    for key in _LOWER_BOUNDS:
        if key in new and (key not in old or new[key] > old[key]):
            found.append((at + "/" + key, f"{key} rises to {new[key]}"))
    for key in _UPPER_BOUNDS:
        if key in new and (key not in old or new[key] < old[key]):
            found.append((at + "/" + key, f"{key} falls to {new[key]}"))
    if "pattern" in new and old.get("pattern") != new["pattern"]:
        found.append((at + "/pattern", "pattern added or changed"))
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    if new.get("additionalProperties") is False:
        if old.get("additionalProperties") is not False:
            found.append((at + "/additionalProperties", "additional properties now refused"))
        for name in sorted(set(old_props) - set(new_props)):
            found.append((at + "/properties/" + name, f"property {name} removed"))
    for name in sorted(set(old_props) & set(new_props)):
        found += narrowing(old_props[name], new_props[name], f"{at}/properties/{name}")
    if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
        found += narrowing(old["items"], new["items"], at + "/items")
    return found


def _as_schema(schema: Any) -> Any:
    return True if schema is None or schema == {} else schema


def _types(schema: dict[str, Any]) -> set[str] | None:
    kind = schema.get("type")
    if kind is None:
        return None
    kinds = {kind} if isinstance(kind, str) else set(kind)
    if "number" in kinds:
        kinds.add("integer")
    return kinds


def _missing(old_values: list[Any], new_values: list[Any]) -> str:
    return ", ".join(repr(v) for v in old_values if v not in new_values)
