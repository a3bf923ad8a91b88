"""``policy-sso events``: the same query as the API, against the store file; text and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policy_sso.audit import AuditEvent, ReasonRecord
from policy_sso.audit.stores import SQLiteEventStore
from policy_sso.cli.main import main

DEMO = Path(__file__).resolve().parents[2] / "policies"
T0 = 1_800_000_000


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    events = SQLiteEventStore(tmp_path / "s.db")
    reasons = (ReasonRecord("mfa_required", "policies/payments.policy:10", "two distinct factors (mfa)",
                            "session amr pwd"),)
    rows = [AuditEvent("authorization.decision", T0 - 3600 * i, f"e{i:03d}", "interaction_required",
                       "payments-web", "u-alice", reasons=reasons,
                       details={"silent": True, "policy": "payments"})
            for i in range(30)]
    rows.append(AuditEvent("sign_in.success", T0, "s1", "success", "portal", "u-bob"))
    events.write([(e.to_json(), json.dumps(e.to_json())) for e in rows])
    events.close()
    return f"sqlite:///{tmp_path}/s.db"


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    status = main(["events", "--config", str(DEMO), "--now", str(T0), *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_text_pages_and_the_next_cursor(store_url: str, capsys: pytest.CaptureFixture) -> None:
    query = ("--store", store_url, "--subject", "alice", "--since", "-1d", "--limit", "10")
    status, out, err = run(capsys, *query)
    assert status == 0
    heads = [line for line in out.splitlines() if not line.startswith(" ")]
    assert len(heads) == 10 and all("interaction_required  client=payments-web  subject=u-alice" in h
                                    for h in heads)
    assert "    mfa_required  policies/payments.policy:10" in out
    cursor = err.split("--cursor ")[1].strip()
    status, out, err = run(capsys, *query, "--cursor", cursor)
    assert status == 0 and len([h for h in out.splitlines() if not h.startswith(" ")]) == 10
    assert "more:" in err  # 25 in the last day: a third page


def test_json_is_the_api_answer(store_url: str, capsys: pytest.CaptureFixture) -> None:
    status, out, _ = run(capsys, "--store", store_url, "--type", "sign_in.*", "--format", "json")
    assert status == 0
    body = json.loads(out)
    assert [e["id"] for e in body["events"]] == ["s1"] and body["next_cursor"] is None


@pytest.mark.parametrize(("args", "message"), [
    pytest.param(["--store", "sqlite:////nonexistent/s.db"], "no SQLite store", id="missing-file"),
    pytest.param(["--store", "memory://"], "inside the server", id="memory-store"),
    pytest.param(["--store", "sqlite:////x.db", "--limit", "9999"], "limit", id="limit-too-large"),
    pytest.param(["--store", "sqlite:////x.db", "--since", "someday"], "since", id="bad-time"),
    # a type no event has could only ever match nothing: said, with the nearest (a new user's typo)
    pytest.param(["--store", "sqlite:////x.db", "--type", "nope"], "no event type is 'nope'", id="type"),
    pytest.param(["--store", "sqlite:////x.db", "--type", "logut.*"], "did you mean 'logout'?",
                 id="type-prefix"),
])
def test_usage_errors_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    status, _, err = run(capsys, *args)
    assert status == 2 and message in err


def test_events_of_a_server_not_yet_restarted_are_read_where_they_are(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    # upgraded but not restarted: the events are still in the session file, which the CLI only reads
    import sqlite3

    from policy_sso.audit.stores import SQLITE_SCHEMA, sqlite_events_path

    session_file = tmp_path / "policy-sso.db"
    old = sqlite3.connect(session_file, isolation_level=None)
    old.executescript(SQLITE_SCHEMA)
    event = AuditEvent("sign_in.success", T0, "s1", "success", "portal", "u-bob").to_json()
    old.execute("INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?)",
                ("s1", T0, "sign_in.success", "u-bob", "portal", "success", json.dumps(event)))
    old.close()
    status, out, _ = run(capsys, "--store", f"sqlite:///{session_file}", "--format", "json")
    assert status == 0 and [e["id"] for e in json.loads(out)["events"]] == ["s1"]
    assert not sqlite_events_path(session_file).exists()  # nothing created (it would be the CLI user's)
    tables = sqlite3.connect(session_file).execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    assert "audit_events" in {name for (name,) in tables}  # nor moved: the server does that


def test_a_client_the_tenant_does_not_have_is_named_when_nothing_matches(
        store_url: str, capsys: pytest.CaptureFixture) -> None:
    status, out, err = run(capsys, "--store", store_url, "--client", "portl")
    assert status == 0 and out == ""
    assert "'portl' is not a client of this tenant (did you mean 'portal'?)" in err
    status, out, err = run(capsys, "--store", store_url, "--client", "portal")
    assert status == 0 and "client=portal" in out and "not a client" not in err


def test_text_lines_carry_a_types_own_values_and_the_address(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    events = SQLiteEventStore(tmp_path / "s.db")
    refused = AuditEvent("rate_limit.refused", T0, "r1", "refused", ip="203.0.113.7",
                         details={"kind": "authorize", "suppressed": 29})
    events.write([(refused.to_json(), json.dumps(refused.to_json()))])
    events.close()
    status, out, _ = run(capsys, "--store", f"sqlite:///{tmp_path}/s.db", "--since", "-1d")
    assert status == 0 and "rate_limit.refused  refused  kind=authorize  suppressed=29  ip=203.0.113.7" in out
