"""``policy-sso diff``: exactly the cases whose decision flips between two versions of the demo tenant."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from policy_sso.authoring.diff import diff_tenants
from policy_sso.authoring.policytest import DEFAULT_AT
from policy_sso.cli import main
from policy_sso.tenant import load_tenant

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "policies"

# The request matrix for the demo tenant: silent openid, each scope a `when` tests that the
# client may request (clients.yaml scopes), each acr level, max_age=0.
BASE = (
    "prompt=none scope=openid",
    "prompt=none scope=openid acr_values=urn:policy-sso:loa:1",
    "prompt=none scope=openid acr_values=urn:policy-sso:loa:2",
    "prompt=none scope=openid acr_values=urn:policy-sso:loa:3",
    "prompt=none scope=openid max_age=0",
)
PAYMENTS = (*BASE, "prompt=none scope=openid payments:write")
BOTH_CONSENTS = (" / consent", " / no consent")
SESSIONS = 17  # no session, and 8 representative sessions with and without consent
# 10 clients x 5 requests, and docs, payments-web, payments-api, shop each try one scope of their own
# ... plus, per client, two probes (exactly the limit old, one second older) of each time limit:
# every client has the tenant's session.lifetime 14d and require_login_after 30d, and an idle
# window (payments 15m, backoffice 1h, else the tenant's 1d); payments adds max_auth_age 8h and
# mfa within 5m, docs and shop mfa within 5m
LIMIT_PROBES = {"payments-web": 10, "payments-api": 10, "docs": 8, "shop": 8, "backoffice": 6, "spa": 6,
                "portal": 6, "portal-backend": 6, "intranet-bridge": 6, "wiki": 6}
DECISIONS = (10 * 5 + 4) * SESSIONS + sum(n * (6 if c in ("docs", "payments-web", "payments-api", "shop")
                                                  else 5) for c, n in LIMIT_PROBES.items())


def idle(age: str) -> str:
    """The probe of an idle window: signed in with pwd+otp ``age`` ago, not seen since."""
    return f"pwd+otp, idle {age} since sign-in / consent"


def signed_in(age: str) -> str:
    """The probe of max_auth_age, session.lifetime and mfa within: pwd+otp ``age`` ago, seen 1m ago."""
    return f"pwd+otp {age} ago, seen 1m ago / consent"


def created(age: str) -> str:
    """The probe of require_login_after: created ``age`` ago, signed in again 1m ago."""
    return f"pwd+otp 1m ago, created {age} ago / consent"


def edited(tmp_path: Path, file: str, old: str, new: str, *more: tuple[str, str, str]) -> Path:
    copy = tmp_path / "new"
    shutil.copytree(DEMO, copy)
    for name, before, after in ((file, old, new), *more):
        path = copy / name
        text = path.read_text()
        assert text.count(before) == 1, before
        path.write_text(text.replace(before, after))
    return copy


def flips(old: Path, new: Path) -> set[tuple[str, str, str]]:
    result = diff_tenants(load_tenant(old), load_tenant(new), DEFAULT_AT)
    return {(c.client, c.session, c.request) for c in result.changes}


def every(clients: tuple[str, ...], *sessions: str, requests: tuple[str, ...] = BASE) -> set:
    """Return every (client, session, request) case of these clients and sessions, both consent variants."""
    return {(c, s + consent, r) for c in clients for s in sessions for consent in BOTH_CONSENTS
            for r in requests}


def probes(clients: tuple[str, ...], *sessions: str, requests: tuple[str, ...] = BASE) -> set:
    """Return every (client, session, request) case of these clients and limit probes (consent granted)."""
    return {(c, s, r) for c in clients for s in sessions for r in requests}


DOCS_ADMIN = ("prompt=none scope=openid docs:admin",)
BOTH_PAYMENTS = ("payments-api", "payments-web")
EVERY_CLIENT = tuple(LIMIT_PROBES)

EDITS = [
    # the idle window grows from 15m to 30m: the session idle for 20m, and the probes idle a second
    # past the old window and exactly the new one, for both payments clients
    ("payments.policy", "inactivity 15m", "inactivity 30m",
     every(("payments-api", "payments-web"), "pwd+otp idle 20m", requests=PAYMENTS)
     | probes(("payments-api", "payments-web"), idle("15m 1s"), idle("30m"), requests=PAYMENTS)),
    # Windows sign-in no longer counts for the portal: every wia case of its two clients
    ("portal.policy", 'any_of "pwd", "wia", "hwk"', 'any_of "pwd", "hwk"',
     every(("portal", "portal-backend"), "wia")),
    # docs:admin step-up window 5m -> 2h: every session whose second factor is 1h old now passes,
    # for that one request (the 9h-old factor still fails; the 2d-idle session fails both ways), and
    # the probes signed in a second past the old window and exactly the new one
    ("docs.policy", "require mfa within 5m", "require mfa within 2h",
     every(("docs",), "pwd+otp stale otp", "pwd+otp idle 20m", "hwk+pwd", requests=DOCS_ADMIN)
     | probes(("docs",), signed_in("5m 1s"), signed_in("2h"), requests=DOCS_ADMIN)),
    # the default policy governs the one client that opts in with `policy: default`
    ("default.policy", 'any_of "pwd", "otp", "hwk", "wia"', 'any_of "pwd", "otp", "hwk"',
     every(("wiki",), "wia")),
]


@pytest.mark.parametrize(("file", "old", "new", "expected"), EDITS,
                         ids=["payments-inactivity", "portal-amr", "docs-step-up", "default-amr"])
def test_diff_reports_exactly_the_cases_that_flip(tmp_path, file, old, new, expected) -> None:
    assert flips(DEMO, edited(tmp_path, file, old, new)) == expected


def test_a_client_moved_onto_the_default_policy_flips_where_the_policies_differ(tmp_path) -> None:
    new = edited(tmp_path, "default.policy",
                 'any_of "pwd", "otp", "hwk", "wia"', 'any_of "pwd", "otp", "hwk"',
                 ("portal.policy", 'clients "portal", "portal-backend"', 'clients "portal"'),
                 ("clients.yaml", "    first_party: true\n\n  - client_id: payments-web",
                  "    first_party: true\n    policy: default\n\n  - client_id: payments-web"))
    assert flips(DEMO, new) == every(("portal-backend", "wiki"), "wia")


def test_only_scopes_a_client_may_request_are_tried() -> None:
    demo = load_tenant(DEMO)
    requests = {c.request for c in diff_tenants(demo, demo, DEFAULT_AT).changes}
    assert requests == set()  # identical: nothing changes; the matrix itself is checked below
    from policy_sso.authoring.diff import request_matrix

    assert [r.name for r in request_matrix(demo, demo, "portal")] == list(BASE)
    assert [r.name for r in request_matrix(demo, demo, "docs")] == [
        *BASE[:1], "prompt=none scope=openid docs:admin", *BASE[1:]]


def test_a_recorded_session_naming_an_unknown_client_is_refused(tmp_path, capsys) -> None:
    sessions = tmp_path / "s.yaml"
    sessions.write_text("- {subject: u-alice, events: [{method: pwd, at: -1h}],\n"
                        "   consents: {payment-web: [openid]}}\n")
    assert main(["diff", str(DEMO), str(DEMO), "--sessions", str(sessions)]) == 2
    assert capsys.readouterr().err == (
        f"policy-sso diff: {sessions}: session 1 (recorded #1) names client 'payment-web', which neither "
        "tenant registers (did you mean 'payments-web' or 'payments-api'?)\n")


def test_identical_tenants_differ_nowhere(capsys) -> None:
    assert main(["diff", str(DEMO), str(DEMO)]) == 0
    out = capsys.readouterr().out
    assert out == f"0 of {DECISIONS} decisions changed (10 clients compared)\n"


def test_table_and_exit_status(tmp_path, capsys) -> None:
    new = edited(tmp_path, "docs.policy", "require mfa within 5m", "require mfa within 2h")
    assert main(["diff", str(DEMO), str(new)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["CLIENT", "SESSION", "REQUEST", "OLD", "NEW"]
    assert lines[1].split("  ")[0] == "docs"
    assert "pwd+otp stale otp / consent" in lines[1]
    assert lines[1].split()[-1] == "allow"
    assert "login_required [step_up_required]" in lines[1]
    # the matrix grows with the new window's two probes (docs, 6 requests)
    assert lines[-1] == f"8 of {DECISIONS + 2 * 6} decisions changed for 1 client: docs"


def test_json_format(tmp_path, capsys) -> None:
    new = edited(tmp_path, "payments.policy", "inactivity 15m", "inactivity 30m")
    assert main(["diff", str(DEMO), str(new), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    # the new window's two probes join the matrix; 2 clients x 6 requests x 4 sessions change
    assert (data["evaluated"], data["changed"]) == (DECISIONS + 2 * 2 * 6, 48)
    assert data["clients"] == ["payments-api", "payments-web"]
    first = data["changes"][0]
    assert first == {
        "client": "payments-api", "session": "pwd+otp idle 20m / consent",
        "request": "prompt=none scope=openid",
        "old": {"outcome": "login_required", "reasons": ["inactivity_timeout"], "policy": "payments"},
        "new": {"outcome": "allow", "reasons": [], "policy": "payments"},
    }


RECORDED = """\
- name: alice at her desk
  subject: u-alice
  last_seen: -25m
  events: [{method: pwd, at: -3h}, {method: otp, at: -3h}]
  consents: {payments-web: [openid, profile]}
- session: {subject: u-bob, last_seen: -5m, events: [{method: pwd, at: -1h}, {method: otp, at: -1h}]}
  name: bob
"""


def test_recorded_sessions_join_the_matrix(tmp_path, capsys) -> None:
    sessions = tmp_path / "sessions.yaml"
    sessions.write_text(RECORDED)
    new = edited(tmp_path, "payments.policy", "inactivity 15m", "inactivity 30m")
    assert main(["diff", str(DEMO), str(new), "--sessions", str(sessions), "--format", "json"]) == 1
    changes = json.loads(capsys.readouterr().out)["changes"]
    recorded = {(c["client"], c["request"]) for c in changes if c["session"] == "alice at her desk"}
    assert recorded == {(c, r) for c in ("payments-api", "payments-web") for r in PAYMENTS}
    assert not [c for c in changes if c["session"] == "bob"]


def test_one_session_file_as_explain_takes_it_is_a_matrix_of_one(tmp_path, capsys) -> None:
    session = tmp_path / "s.json"  # explain's --session file: one session, not a list
    session.write_text(json.dumps({"subject": "u-alice", "events": [{"method": "pwd", "at": "-1h"},
                                                                    {"method": "otp", "at": "-1h"}],
                                   "last_seen": "-20m"}))
    new = edited(tmp_path, "payments.policy", "inactivity 15m", "inactivity 30m")
    assert main(["diff", str(DEMO), str(new), "--sessions", str(session), "--format", "json"]) == 1
    changes = json.loads(capsys.readouterr().out)["changes"]
    assert any(c["session"] == "recorded #1" for c in changes)


@pytest.mark.parametrize(("args", "message"), [
    (["policies", "nowhere"], "nowhere is not a tenant directory (no tenant.yaml)"),
    (["policies", "policies", "--sessions", "nowhere.yaml"], "cannot read nowhere.yaml"),
    (["policies", "policies", "--sessions", "policies/tenant.yaml"],
     "policies/tenant.yaml: expected a non-empty list of session fixtures"),
    (["policies", "policies", "--at", "yesterday"], "--at: 'yesterday' is not epoch seconds"),
], ids=["not-a-tenant", "missing-sessions-file", "sessions-not-a-list", "bad-time"])
def test_usage_errors_exit_2(capsys, monkeypatch, args, message) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["diff", *args]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_recorded_session_is_a_usage_error_without_traceback(tmp_path) -> None:
    sessions = tmp_path / "s.yaml"
    sessions.write_text("- {subject: u-alice, events: []}\n")
    run = subprocess.run([sys.executable, "-m", "policy_sso.cli", "diff", str(DEMO), str(DEMO),
                          "--sessions", str(sessions)], capture_output=True, text=True, check=False)
    assert run.returncode == 2
    assert run.stderr == (f"policy-sso diff: {sessions}: session 1: session fixture needs a non-empty "
                          "list of events\n")


def test_a_tenant_that_does_not_validate_exits_1(tmp_path, capsys) -> None:
    new = edited(tmp_path, "payments.policy", "inactivity 15m", "inactivity 15x")
    assert main(["diff", str(DEMO), str(new)]) == 1
    err = capsys.readouterr().err
    assert "payments.policy:6:16: E_DURATION: invalid duration '15x'" in err
    assert f"policy-sso diff: {new} does not validate" in err


def test_a_consent_lifetime_flips_exactly_the_grants_older_than_it(tmp_path) -> None:
    """Issue 19: consent granted exactly the lifetime ago stays; one second more flips."""
    new = edited(tmp_path, "payments.policy", 'require consent "openid", "profile"',
                 'require consent "openid", "profile" for 30d')
    sessions = ("pwd", "pwd+otp fresh", "pwd+otp stale otp", "pwd+otp 9h ago", "pwd+otp idle 20m",
                "pwd+otp idle 2d", "wia", "hwk+pwd")
    assert flips(DEMO, new) == {(c, f"{s} / consent granted 30d 1s ago", r)
                                for c in ("payments-api", "payments-web") for s in sessions for r in PAYMENTS}
    result = diff_tenants(load_tenant(DEMO), load_tenant(new), DEFAULT_AT)
    change = next(c for c in result.changes if c.session == "pwd+otp fresh / consent granted 30d 1s ago")
    assert "consent_missing" in change.new.reasons and "consent_missing" not in change.old.reasons


def requests_of(client: str) -> tuple[str, ...]:
    """Return the demo's request matrix for ``client`` (the scope its policy tests, where it may ask)."""
    if client.startswith("payments"):
        return PAYMENTS
    if client == "docs":
        return (*BASE[:1], *DOCS_ADMIN, *BASE[1:])
    if client == "shop":
        return (*BASE, "prompt=none scope=openid payments:write")
    return BASE


# A time limit moved either way flips the probes between its old and its new value (the one a second
# past the shorter, the one exactly the longer), with the limit's reason code added (tightened) or
# dropped (loosened) and every other reason as it was. max_age=0 fails as max_age_exceeded anyway,
# so max_auth_age cannot change its decision.
LIMIT_EDITS = [
    ("payments.policy", "inactivity 15m", "inactivity 5m", "inactivity_timeout", True,
     probes(BOTH_PAYMENTS, idle("5m 1s"), idle("15m"), requests=PAYMENTS)),
    ("payments.policy", "inactivity 15m", "inactivity 30m", "inactivity_timeout", False,
     probes(BOTH_PAYMENTS, idle("15m 1s"), idle("30m"), requests=PAYMENTS)
     | every(BOTH_PAYMENTS, "pwd+otp idle 20m", requests=PAYMENTS)),
    ("payments.policy", "max_auth_age 8h", "max_auth_age 4h", "max_age_exceeded", True,
     probes(BOTH_PAYMENTS, signed_in("4h 1s"), signed_in("8h"), requests=PAYMENTS[:-2] + PAYMENTS[-1:])),
    ("payments.policy", "max_auth_age 8h", "max_auth_age 12h", "max_age_exceeded", False,
     probes(BOTH_PAYMENTS, signed_in("8h 1s"), signed_in("12h"), requests=PAYMENTS[:-2] + PAYMENTS[-1:])
     | every(BOTH_PAYMENTS, "pwd+otp 9h ago", requests=PAYMENTS[:-2] + PAYMENTS[-1:])),
    ("docs.policy", "require mfa within 5m", "require mfa within 2m", "step_up_required", True,
     probes(("docs",), signed_in("2m 1s"), signed_in("5m"), requests=DOCS_ADMIN)),
    ("docs.policy", "require mfa within 5m", "require mfa within 2h", "step_up_required", False,
     probes(("docs",), signed_in("5m 1s"), signed_in("2h"), requests=DOCS_ADMIN)
     | every(("docs",), "pwd+otp stale otp", "pwd+otp idle 20m", "hwk+pwd", requests=DOCS_ADMIN)),
    # tenant.yaml's lifetimes apply to every client (the idle window only where no policy shortens it)
    ("tenant.yaml", "lifetime: 14d ", "lifetime: 7d  ", "session_expired", True,
     {(c, s, r) for c in EVERY_CLIENT for s in (signed_in("7d 1s"), signed_in("14d"))
      for r in requests_of(c)}),
    ("tenant.yaml", "require_login_after: 30d", "require_login_after: 20d",
     "absolute_lifetime_exceeded", True,
     {(c, s, r) for c in EVERY_CLIENT for s in (created("20d 1s"), created("30d"))
      for r in requests_of(c)}),
    ("tenant.yaml", "inactivity: 1d ", "inactivity: 2h ", "inactivity_timeout", True,
     {(c, s, r) for c in ("docs", "shop", "portal", "portal-backend", "intranet-bridge", "wiki")
      for s in (idle("2h 1s"), idle("1d"))
      for r in requests_of(c)}),
]


@pytest.mark.parametrize(("file", "old", "new", "code", "tightened", "expected"), LIMIT_EDITS, ids=[
    "inactivity-tightened", "inactivity-loosened", "max_auth_age-tightened", "max_auth_age-loosened",
    "mfa-within-tightened", "mfa-within-loosened", "tenant-lifetime-tightened",
    "tenant-require_login_after-tightened", "tenant-inactivity-tightened"])
def test_a_time_limit_moved_either_way_flips_the_sessions_between_old_and_new(
        tmp_path, file, old, new, code, tightened, expected) -> None:
    result = diff_tenants(load_tenant(DEMO), load_tenant(edited(tmp_path, file, old, new)), DEFAULT_AT)
    assert {(c.client, c.session, c.request) for c in result.changes} == expected
    for change in result.changes:
        stricter, looser = (change.new, change.old) if tightened else (change.old, change.new)
        assert set(stricter.reasons) - set(looser.reasons) == {code}, change
        assert set(looser.reasons) <= set(stricter.reasons), change


def test_the_reported_tightening_is_seen(tmp_path, capsys) -> None:
    """A stricter idle window and max_auth_age (15m -> 5m, 8h -> 4h) used to show "0 of 918 changed"."""
    new = edited(tmp_path, "payments.policy", "inactivity 15m", "inactivity 5m",
                 ("payments.policy", "max_auth_age 8h", "max_auth_age 4h"))
    assert main(["diff", str(DEMO), str(new), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["clients"] == ["payments-api", "payments-web"]
    assert {c["session"] for c in data["changes"]} == {idle("5m 1s"), idle("15m"),
                                                       signed_in("4h 1s"), signed_in("8h")}
    first = data["changes"][0]
    assert first == {
        "client": "payments-api", "session": idle("5m 1s"), "request": "prompt=none scope=openid",
        "old": {"outcome": "allow", "reasons": [], "policy": "payments"},
        "new": {"outcome": "login_required", "reasons": ["inactivity_timeout"], "policy": "payments"},
    }


def test_probes_sit_on_each_limit_and_one_second_past_it() -> None:
    from policy_sso.authoring.diff import limit_sessions, time_limits

    demo = load_tenant(DEMO)
    limits = time_limits((demo, demo), "payments-web")
    assert limits == [("last_seen", 900), ("auth_time", 300), ("auth_time", 28800),
                      ("auth_time", 14 * 86400), ("created_at", 30 * 86400)]
    assert [c.name for c in limit_sessions(limits)] == [
        idle("15m"), idle("15m 1s"), signed_in("5m"), signed_in("5m 1s"), signed_in("8h"),
        signed_in("8h 1s"), signed_in("14d"), signed_in("14d 1s"), created("30d"), created("30d 1s")]
    # one limit stated twice (or by both tenants) is probed once
    assert len(limit_sessions([("auth_time", 300), ("auth_time", 300)])) == 2
