"""Key reloads are on record: ``key.reload`` with the kids a reload added, or the failure."""

from __future__ import annotations

import io
import json
from pathlib import Path

from policy_sso.audit import AuditLog
from policy_sso.audit.sinks import StdoutSink
from policy_sso.oidc.keys import KeyRing
from policy_sso.tenant import load_tenant
from server.app import keys_follow_reloads, longest_token_lifetime

DEMO = Path(__file__).resolve().parents[2] / "policies"


def events_of(out: io.StringIO, log: AuditLog) -> list[dict]:
    assert log.flush()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_reload_records_the_keys_it_added_and_one_that_failed(tmp_path: Path) -> None:
    tenant = load_tenant(DEMO)
    ring = KeyRing.load_or_create(tmp_path, tenant.settings.tokens.algorithms,
                                  token_lifetime=longest_token_lifetime(tenant))
    out = io.StringIO()
    log = AuditLog([StdoutSink(out)])
    on_swap = keys_follow_reloads(ring, log)

    on_swap(tenant)  # nothing new on disk
    rotated = KeyRing.load_or_create(tmp_path, tenant.settings.tokens.algorithms).rotate("RS256")
    on_swap(tenant)  # another instance (here: another ring on the same directory) rotated
    (tmp_path / "keys" / "RS256.9999.pem").write_text("not a key")
    on_swap(tenant)

    reloads = [e for e in events_of(out, log) if e["type"] == "key.reload"]
    assert [(e["outcome"], e["details"].get("added")) for e in reloads] == [
        ("accepted", []), ("accepted", [rotated.kid]), ("rejected", None)]
    assert reloads[2]["details"]["error"]
    log.close()
