"""The audit docs and schemas stay in step with the code: every event type, every setting and default."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from policy_sso.audit.event import EVENT_TYPES
from policy_sso.audit.settings import AuditSettings
from policy_sso.model import format_duration

ROOT = Path(__file__).resolve().parents[2]


def test_every_event_type_is_documented_and_nothing_else() -> None:
    text = (ROOT / "docs" / "audit-events.md").read_text()
    documented = re.findall(r"^\| `([a-z_]+\.[a-z_]+)` \|", text, re.M)
    assert sorted(documented) == sorted(EVENT_TYPES) and len(set(documented)) == len(documented)


def test_every_setting_is_in_the_schema_and_documented_with_its_default() -> None:
    schema = json.loads((ROOT / "schemas" / "tenant.schema.json").read_text())
    fields = [f.name for f in dataclasses.fields(AuditSettings)]
    assert list(schema["properties"]["audit"]["properties"]) == fields
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| `([^`]+)` \|", (ROOT / "docs" / "operations.md").read_text(),
                           re.M))
    defaults = AuditSettings()
    for name in fields:
        value = getattr(defaults, name)
        shown = ("[" + ", ".join(value) + "]" if isinstance(value, tuple)
                 else format_duration(value) if name == "retention" else str(value))
        assert rows[name] == shown, name
