"""Consent lifetime (issue 19): an expired grant is consent_missing with its expiry as the fact.

The outcomes to the second are in tests/cases/consent_lifetime.test.yaml; this
file checks what a reason says, and that the policy's current lifetime governs
grants already made (a shorter one takes effect at reload: fail closed).
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from policy_sso.checks import consent_expires_at
from policy_sso.request import AuthRequest
from policy_sso.sessions.model import AuthEvent, Session
from policy_sso.tenant import load_tenant

TENANT = Path(__file__).parent / "cases" / "tenant-consent"
NOW = int(datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp())
DAY = 86400


def granted(**times: int) -> Session:
    """Return a session that granted lifetime-app each scope at the given time (epoch s)."""
    return Session("sid", "u1", NOW - 50 * DAY, NOW - 60, (AuthEvent("pwd", NOW - 3600),), {},
                   {"lifetime-app": frozenset(times)}, consent_times={"lifetime-app": dict(times)})


@pytest.fixture(scope="module")
def tenant():
    return load_tenant(TENANT)


def request(scope: str = "openid profile") -> AuthRequest:
    return AuthRequest.from_params("lifetime-app", {"scope": scope, "prompt": "none"})


def test_the_expiry_is_the_first_second_a_grant_no_longer_counts():
    assert consent_expires_at(1000, 30) == 1031  # 30 s old at 1030 still counts, like every limit here


def test_an_expired_grant_says_when_it_expired(tenant):
    session = granted(openid=NOW - 60, profile=NOW - 30 * DAY - 1)
    decision = tenant.decide(request(), session, NOW)
    assert decision.outcome == "consent_required"
    (reason,) = decision.reasons
    assert reason.code == "consent_missing"
    assert reason.required == "granted scopes openid, profile, each within 30d"
    assert reason.observed == "granted openid, profile; consent for profile expired at 2026-03-01T12:00:00Z"
    assert reason.source.endswith("policies.policy:7")
    assert decision.remedy.params == {"prompt": "consent"}
    assert set(decision.remedy.scopes) >= {"openid", "profile"}


def test_one_second_earlier_the_same_grant_counts(tenant):
    session = granted(openid=NOW - 60, profile=NOW - 30 * DAY - 1)
    assert tenant.decide(request(), session, NOW - 1).allowed


def test_a_when_blocks_lifetime_names_its_scope_and_line(tenant):
    session = granted(openid=NOW - 60, profile=NOW - 60, **{"payments:read": NOW - 3601})
    decision = tenant.decide(request("openid payments:read"), session, NOW)
    (reason,) = decision.reasons
    assert reason.observed.endswith("consent for payments:read expired at 2026-03-01T12:00:00Z")
    assert reason.source.endswith("policies.policy:9")


def test_missing_and_expired_are_both_said(tenant):
    session = granted(openid=NOW - 31 * DAY)
    (reason,) = tenant.decide(request(), session, NOW).reasons
    assert reason.observed == ("granted openid; missing profile; "
                               "consent for openid expired at 2026-02-28T12:00:01Z")


def test_shortening_the_lifetime_applies_to_grants_already_made_at_reload(tmp_path):
    directory = tmp_path / "tenant"
    shutil.copytree(TENANT, directory)
    session = granted(openid=NOW - 2 * DAY, profile=NOW - 2 * DAY)
    assert load_tenant(directory).decide(request(), session, NOW).allowed
    policy = directory / "policies.policy"
    policy.write_text(policy.read_text().replace('"profile" for 30d', '"profile" for 1d'))
    reloaded = load_tenant(directory).decide(request(), session, NOW)
    assert reloaded.codes == ("consent_missing",)
    assert "consent for openid expired at 2026-02-28T12:00:01Z" in reloaded.reasons[0].observed


def test_a_policy_without_a_lifetime_ignores_grant_times(cases_tenant_dir):
    tenant = load_tenant(cases_tenant_dir)
    old = Session("sid", "u1", NOW - 29 * DAY, NOW - 60,
                  (AuthEvent("pwd", NOW - 3600), AuthEvent("otp", NOW - 3600)), {},
                  {"strict-app": frozenset({"openid", "profile"})},
                  consent_times={"strict-app": {"openid": NOW - 365 * DAY, "profile": NOW - 365 * DAY}})
    req = AuthRequest.from_params("strict-app", {"scope": "openid profile", "prompt": "none"})
    assert tenant.decide(req, old, NOW).allowed


# --- the authoring tools -------------------------------------------------------------------

def test_explain_shows_the_expiry_of_a_grant_from_a_session_file(tmp_path, capsys):
    from policy_sso.cli import main

    session = tmp_path / "session.yaml"
    session.write_text("subject: u1\ncreated: 2026-01-01T00:00:00Z\nevents: [{method: pwd, at: -1h}]\n"
                       "consents: {lifetime-app: {openid: {granted_at: 2026-01-30T12:00:00Z},"
                       " profile: 2026-01-30T11:59:59Z}}\n")
    argv = ["explain", "--client", "lifetime-app", "--session", str(session), "--config", str(TENANT),
            "--request", "scope=openid%20profile&prompt=none"]
    assert main([*argv, "--at", "2026-03-01T11:59:59Z"]) == 0  # one second before profile's expiry
    capsys.readouterr()
    assert main([*argv, "--at", "2026-03-01T12:00:00Z"]) == 1
    out = capsys.readouterr().out
    assert "outcome: consent_required" in out
    assert "consent for profile expired at 2026-03-01T12:00:00Z" in out
    assert "consent for openid" not in out  # granted a second later: still counts


def test_policy_test_cases_accept_the_old_consent_form_and_grant_times(tmp_path):
    from policy_sso.authoring.policytest import run_paths

    cases = tmp_path / "lifetime.test.yaml"
    cases.write_text(
        f"tenant: {TENANT}\nat: 2026-03-01T12:00:00Z\ncases:\n"
        "  - name: old form\n    client: lifetime-app\n"
        "    session: {subject: u1, created: -1d, events: [{method: pwd, at: -1h}],"
        " consents: {lifetime-app: [openid, profile]}}\n"
        "    request: {scope: openid profile, prompt: none}\n    expect: {outcome: allow}\n"
        "  - name: expired grant\n    client: lifetime-app\n"
        "    session: {subject: u1, created: -40d, events: [{method: pwd, at: -1h}],"
        " consents: {lifetime-app: {openid: -1d, profile: {granted_at: -31d}}}}\n"
        "    request: {scope: openid profile, prompt: none}\n"
        "    expect: {outcome: consent_required, reasons: [consent_missing]}\n")
    run = run_paths([cases])
    assert run.diagnostics == []
    assert (run.passed, run.failed) == (2, 0)
    assert any(item.label == "consent_missing" and covered
               for _, items in run.coverage.report() for item, covered in items)


def test_a_malformed_grant_time_is_a_diagnostic_not_a_traceback(tmp_path):
    from policy_sso.authoring.policytest import CaseError, load_cases

    cases = tmp_path / "bad.test.yaml"
    cases.write_text(f"tenant: {TENANT}\ncases:\n  - client: lifetime-app\n"
                     "    session: {subject: u1, events: [{method: pwd}],\n"
                     "              consents: {lifetime-app: {openid: soon}}}\n"
                     "    expect: {outcome: allow}\n")
    with pytest.raises(CaseError, match=r"consents\.lifetime-app\.openid: 'soon' is not"):
        load_cases(cases)


def test_fmt_prints_a_consent_lifetime_canonically_and_idempotently():
    from policy_sso.authoring.fmt import format_source

    text = 'policy "p" {\nclients "web"\n    require consent "openid" ,"profile"   for   30d  # a month\n}\n'
    formatted, errors = format_source(text)
    assert errors == []
    assert formatted == ('policy "p" {\n  clients "web"\n'
                         '  require consent "openid", "profile" for 30d  # a month\n}\n')
    assert format_source(formatted)[0] == formatted


@pytest.mark.parametrize(("body", "code", "message"), [
    ("consent: {scopes: [openid], for: 30x}", "E_DURATION", "invalid duration '30x'"),
    ("consent: {scopes: [openid], for: 0d}", "E_DURATION", "a duration must be greater than zero"),
    ("consent: {scope: [openid], for: 30d}", "E_UNKNOWN_KEY", "unknown key 'scope'"),
    ("consent: {for: 30d}", "E_MISSING_KEY", "'consent' has no 'scopes:'"),
], ids=["bad-unit", "zero", "misspelt-scopes", "no-scopes"])
def test_a_bad_yaml_consent_lifetime_is_one_diagnostic_at_its_line(body, code, message):
    from policy_sso.parse.yaml_form import parse_yaml_policies

    policies, errors = parse_yaml_policies(f"policy: p\nclients: [a]\nrequire:\n  {body}\n", "p.yaml")
    assert [(e.line, e.code, e.message) for e in errors] == [(4, code, message)]
    # the rest is still built without the part the schema refuses, as the DSL does, so the tenant's
    # other errors show in the same run; the error keeps the tenant from loading either way
    assert [(p.name, p.clients) for p in policies] == [("p", ("a",))]


@pytest.mark.parametrize(("text", "message"), [
    ('require consent "openid" for 0d', "a duration must be greater than zero"),
    ('require consent "openid" for', "'for' needs a duration like 15m after it, on the same line"),
    ('require consent "openid" for 30 days', "'30 days' is not a duration"),
], ids=["zero", "missing", "spaced-unit"])
def test_a_bad_dsl_consent_lifetime_is_one_diagnostic(text, message):
    from policy_sso.parse.dsl import parse_dsl

    _, errors = parse_dsl(f'policy "p" {{\n  clients "a"\n  {text}\n}}\n', "p.policy")
    assert len(errors) == 1 and errors[0].line == 3 and errors[0].message.startswith(message), errors
