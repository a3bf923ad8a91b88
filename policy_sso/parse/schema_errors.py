"""JSON Schema violations as diagnostics in the user's words.

python-jsonschema says "'portal' is not of type 'array'" and "[...] has
non-unique elements"; a person editing YAML needs "'clients' must be a list,
not the text 'portal'" with "write clients: [portal]", a duplicate pointed at
with where it first appears, and for an unknown key the near key or the key
it belongs under (``inactivity`` at the top of a policy: under ``session:``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from jsonschema.exceptions import ValidationError, relevance

from policy_sso.diagnostics import Diagnostic, Related, did_you_mean
from policy_sso.parse.lexer import explain_duration

if TYPE_CHECKING:
    from policy_sso.parse.yaml_source import Path_, YamlDocument

_CODE_OF_VALIDATOR = {
    "additionalProperties": "E_UNKNOWN_KEY", "required": "E_MISSING_KEY", "type": "E_TYPE",
    "enum": "E_VALUE", "const": "E_VALUE", "minItems": "E_EMPTY", "minLength": "E_EMPTY",
    "uniqueItems": "E_DUPLICATE", "minProperties": "E_EMPTY", "maxProperties": "E_SCHEMA",
}


def _leaf(error: ValidationError) -> ValidationError:
    """Return the most specific error inside a oneOf/anyOf error.

    Like jsonschema's ``best_match`` descent: the deepest error, preferring a
    branch whose type fits the instance, so ``amr: {one_of: [pwd]}`` reports
    the unknown key rather than "is not of type 'array'".
    """
    while error.context:
        error = min(error.context, key=relevance)
    return error


def explain_schema_error(doc: YamlDocument, raw: ValidationError,
                         root: dict[str, Any]) -> Iterator[Diagnostic]:
    """Yield the diagnostics for one JSON Schema violation, at the offending node (or key)."""
    error = _leaf(raw)
    path = tuple(error.absolute_path)
    validator = str(error.validator)
    if validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        for key in sorted(set(error.instance) - allowed, key=str):
            hint = _unknown_key_hint(str(key), error.instance[key], error.schema, root)
            yield doc.diagnostic((*path, key), "E_UNKNOWN_KEY", f"unknown key {key!r}", hint, at_key=True)
        return
    if validator == "uniqueItems" and isinstance(error.instance, list):
        yield from _duplicates(doc, path, error.instance)
        return
    code = _CODE_OF_VALIDATOR.get(validator, "E_SCHEMA")
    if validator == "pattern" and "[smhd]" in str(error.validator_value):
        yield doc.diagnostic(path, "E_DURATION", *explain_duration(str(error.instance)))
        return
    key = _name(path)
    where = "/" + "/".join(str(p) for p in path) if path else "the document"
    message, hint = f"{error.message} (at {where})", ""
    if validator == "type":
        message, hint = _type_problem(path, error.instance, error.validator_value, error.schema)
    elif validator in ("enum", "const"):
        allowed = error.validator_value if validator == "enum" else [error.validator_value]
        in_list = bool(path) and isinstance(path[-1], int)
        owner = next((p for p in reversed(path) if isinstance(p, str)), "")
        message = f"{error.instance!r} is not a valid value " + (f"in '{owner}'" if in_list else f"for {key}")
        hint = did_you_mean(str(error.instance), [str(a) for a in allowed]) or \
            "one of " + ", ".join(str(a) for a in allowed)
    elif validator == "required":
        missing = re.match(r"'([^']*)'", error.message)
        name = missing[1] if missing else "?"
        message = f"{key} has no '{name}:'" if path else f"missing '{name}:' key"
        hint = f"add '{name}:' to it" if path else f"add '{name}:' at the top"
    elif validator in ("minLength", "minItems", "minProperties"):
        message = f"{key} is empty"
        hint = {"minLength": "give it a value", "minItems": "list at least one item",
                "minProperties": "give it at least one key"}[validator]
    elif validator == "contains" and isinstance(error.validator_value, dict) \
            and "const" in error.validator_value:
        needed = error.validator_value["const"]
        message = f"{key} must include {needed}"
        hint = f"add {needed} to the list"
    elif validator == "maxProperties" and isinstance(error.instance, dict):
        keys = ", ".join(str(k) for k in error.instance)
        message = f"{key} takes a single entry, but has {len(error.instance)}: {keys}"
        hint = "keep one of them" + ("; combine conditions with all: [...] or any: [...]"
                                     if path and path[-1] in ("if", "not") else "")
    yield doc.diagnostic(path, code, message, hint)


def _name(path: Path_) -> str:
    """Return how to call the node at ``path``: 'clients', item 2 of 'clients', the document."""
    key = next((p for p in reversed(path) if isinstance(p, str)), "")
    if path and isinstance(path[-1], int):
        return f"item {path[-1] + 1} of '{key}'"
    return f"'{key}'" if key else "the document"


def _duplicates(doc: YamlDocument, path: Path_, items: list[Any]) -> Iterator[Diagnostic]:
    """Yield an error at each repeated item of a list, with where it first appears."""
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        seen = first.setdefault(repr(item), i)
        if seen == i:
            continue
        line, col = doc.position((*path, seen))
        end_line, end_col = doc.end((*path, seen))
        note = Related(doc.file, line, col, "first listed here", end_col if end_line == line else 0)
        d = doc.diagnostic((*path, i), "E_DUPLICATE", f"{item!r} is listed twice in {_name(path)}",
                           "remove one of the two")
        yield Diagnostic(d.file, d.line, d.col, d.code, d.message, d.hint, d.severity,
                         d.end_line, d.end_col, (note,))
_TYPE_NAMES = {"array": "a list", "object": "a mapping", "string": "a string", "boolean": "true or false",
               "integer": "a whole number", "number": "a number", "null": "empty"}


def _kind(value: Any) -> str:
    """Return how a person would call a YAML value: 'the text 'x'', 'the number 0', 'a list'…"""
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    return "a list" if isinstance(value, list) else "a mapping"


def _type_problem(path: Path_, value: Any, expected: Any, schema: dict[str, Any]) -> tuple[str, str]:
    """Return the message and hint for a value of the wrong type, in YAML's words (a list, a mapping)."""
    wanted = [expected] if isinstance(expected, str) else list(expected)
    what = " or ".join(_TYPE_NAMES.get(t, t) for t in wanted)
    key = next((p for p in reversed(path) if isinstance(p, str)), "")
    name = _name(path)
    squashed = _SQUASHED.fullmatch(value) if isinstance(value, str) else None
    if squashed:  # "inactivity:15m" is one string to YAML
        return (f"{value!r} is read as one string, not 'key: value'",
                f"write '{squashed[1]}: {squashed[2]}': YAML needs a space after the ':' of a key")
    if isinstance(value, int) and not isinstance(value, bool) and "[smhd]" in str(schema.get("pattern", "")):
        return (f"{name} must be a duration like 15m, not the number {value}",
                f"a duration has a unit right after the number: write {value}m (or s, h, d)")
    message = f"{name} must be {what}, not {_kind(value)}"
    hint = ""
    if "array" in wanted and isinstance(value, str | int | float):
        hint = f"write {key}: [{value}]"
    elif "string" in wanted and isinstance(value, int | float | bool):
        hint = f"quote it: {key}: \"{value if not isinstance(value, bool) else str(value).lower()}\""
    elif value is None and path and isinstance(path[-1], str):
        hint = f"write a value after '{key}:'"
    return message, hint


_SQUASHED = re.compile(r"([A-Za-z_][\w-]*):(\S.*)")


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Return ``schema`` with a local ``$ref`` followed, and an array's items schema for an array."""
    for _ in range(4):  # refs to refs are short chains here
        ref = schema.get("$ref", "")
        if ref.startswith("#/$defs/"):
            schema = root.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
        elif schema.get("type") == "array" and isinstance(schema.get("items"), dict):
            schema = schema["items"]
        else:
            break
    return schema


def _unknown_key_hint(key: str, value: Any, schema: dict[str, Any], root: dict[str, Any]) -> str:
    """Return the hint for a key the schema does not allow here.

    A near name of an allowed key ("did you mean"), else the key this one
    belongs under (``inactivity`` at the top of a policy belongs under
    ``session:``), else the allowed keys.
    """
    allowed = schema.get("properties", {})
    near = did_you_mean(key, allowed)
    if near:
        return near
    homes = [name for name, sub in allowed.items()
             if isinstance(sub, dict) and key in _resolve(sub, root).get("properties", {})]
    if homes:
        shown = value if isinstance(value, str | int | float | bool) else "…"
        return f"'{key}' belongs under '{homes[0]}:', e.g. {homes[0]}: {{{key}: {shown}}}"
    return "allowed: " + ", ".join(sorted(allowed))
