"""docs/configuration.md documents every key of tenant.yaml, clients.yaml and users.yaml, with the
defaults the code applies (issue 12).

Every key of each schema is a row of the doc's tables, and no row names a key
the schema lacks. A default written as a YAML value (in backticks) is checked
against the code by loading the file twice, without the key and with the
documented value: the two must load to equal records. Where the schema states
a ``default`` too, it must be the documented one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from policy_sso.config import DEFAULT_RATE_LIMITS, client_record, tenant_settings, user_record
from policy_sso.model import Span

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
SPAN = Span("x.yaml", 1, 1)
ROW = re.compile(r"^\|\s*`(?P<key>[a-z_.\[\]]+)`\s*\|(?P<type>[^|]*)\|(?P<default>[^|]*)\|"
                 r"(?P<meaning>[^|]+)\|$")


def _section(title: str) -> str:
    start = DOC.index(f"## {title}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start:end if end != -1 else None]


def _rows(title: str) -> dict[str, dict[str, str]]:
    return {m["key"]: m.groupdict() for m in map(ROW.match, _section(title).splitlines()) if m}


def _schema_keys(name: str) -> dict[str, dict]:
    """Return every key path of a schema (``a.b``, ``list[].c``) with its schema node; secrets are leaves."""
    root = json.loads((ROOT / "schemas" / f"{name}.schema.json").read_text())

    def deref(node: dict) -> dict:
        while "$ref" in node:
            target = root
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return node

    out: dict[str, dict] = {}

    def walk(node: dict, prefix: str) -> None:
        node = deref(node)
        if node.get("type") == "array" and isinstance(node.get("items"), dict):
            items = deref(node["items"])
            if "properties" in items:
                walk(items, prefix + "[]")
            return
        if set(node.get("properties", {})) in ({"env", "file"}, {"requests", "window"}):
            return  # a secret ({env: VAR} or {file: PATH}) or a rate ({requests, window}): one row
        for key, child in node.get("properties", {}).items():
            path = f"{prefix}.{key}" if prefix else key
            out[path] = deref(child)
            walk(child, path)

    walk(root, "")
    return out


SECTIONS = {"tenant": "tenant.yaml", "clients": "clients.yaml", "users": "users.yaml"}


@pytest.mark.parametrize("schema", sorted(SECTIONS))
def test_every_key_of_the_schema_is_documented_and_no_other(schema: str) -> None:
    keys = set(_schema_keys(schema)) - {"clients", "users"}  # the top-level lists themselves
    documented = set(_rows(SECTIONS[schema]))
    assert keys - documented == set(), f"keys of {schema}.schema.json missing from docs/configuration.md"
    assert documented - keys == set(), f"docs/configuration.md documents keys {schema}.schema.json lacks"


def _documented_defaults(title: str) -> list[tuple[str, Any]]:
    out = []
    for key, row in _rows(title).items():
        literal = re.match(r"`([^`]*)`", row["default"].strip())
        if literal:
            out.append((key, yaml.safe_load(literal[1])))
    return out


def _nested(path: str, value: Any) -> dict:
    """Return ``{"a": {"b": value}}`` for the path ``a.b`` (list-item keys: the part after ``[].``)."""
    data: Any = value
    for part in reversed(path.rsplit("[].", maxsplit=1)[-1].split(".")):
        data = {part: data}
    return data


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both else value
    return out


def _effective(settings: Any) -> Any:
    """The settings as the server applies them (rate-limit kinds left out keep their defaults)."""
    from dataclasses import replace

    return replace(settings, rate_limits={**DEFAULT_RATE_LIMITS, **settings.rate_limits}, spans={})


TENANT_MINIMAL = {"issuer": "http://127.0.0.1:8080"}
TENANT_DEFAULTS = [(k, v) for k, v in _documented_defaults("tenant.yaml") if not k.startswith("acr_levels[]")]


@pytest.mark.parametrize(("key", "value"), TENANT_DEFAULTS, ids=[k for k, _ in TENANT_DEFAULTS])
def test_a_documented_tenant_default_is_the_code_default(key: str, value: Any) -> None:
    without = tenant_settings(TENANT_MINIMAL, {})
    written = tenant_settings(_merge(TENANT_MINIMAL, _nested(key, value)), {})
    assert _effective(written) == _effective(without), f"{key}: the doc says {value!r}"


def test_acr_level_defaults() -> None:
    description = dict(_documented_defaults("tenant.yaml"))["acr_levels[].description"]
    written = tenant_settings({**TENANT_MINIMAL, "acr_levels": [{"id": "x", "description": description}]}, {})
    without = tenant_settings({**TENANT_MINIMAL, "acr_levels": [{"id": "x"}]}, {})
    assert written.acr_levels[0] == without.acr_levels[0]


CLIENT_MINIMAL = {"client_id": "app", "secret": {"env": "X"}}
CLIENT_DEFAULTS = _documented_defaults("clients.yaml")


@pytest.mark.parametrize(("key", "value"), CLIENT_DEFAULTS, ids=[k for k, _ in CLIENT_DEFAULTS])
def test_a_documented_client_default_is_the_code_default(key: str, value: Any) -> None:
    field = key.removeprefix("clients[].")
    assert client_record({**CLIENT_MINIMAL, field: value}, SPAN) == client_record(CLIENT_MINIMAL, SPAN)


USER_MINIMAL = {"sub": "u-1", "username": "one", "password_hash": "$argon2id$x"}
USER_DEFAULTS = _documented_defaults("users.yaml")


@pytest.mark.parametrize(("key", "value"), USER_DEFAULTS, ids=[k for k, _ in USER_DEFAULTS])
def test_a_documented_user_default_is_the_code_default(key: str, value: Any) -> None:
    field = key.removeprefix("users[].")
    with_key, without = user_record({**USER_MINIMAL, field: value}, SPAN), user_record(USER_MINIMAL, SPAN)
    assert (with_key, with_key.claims) == (without, without.claims)


@pytest.mark.parametrize("schema", sorted(SECTIONS))
def test_schema_defaults_are_the_documented_ones(schema: str) -> None:
    documented = dict(_documented_defaults(SECTIONS[schema]))
    stated = {k: node["default"] for k, node in _schema_keys(schema).items() if "default" in node}
    for key, default in stated.items():
        assert documented.get(key) == default, f"{schema}.schema.json default of {key}"
