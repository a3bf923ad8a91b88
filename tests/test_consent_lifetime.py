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
