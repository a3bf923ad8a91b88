"""Each reason appears once in a decision and in error_description (issue 12).

A policy's ``require consent`` and the implicit check of the requested scopes
both fail as ``consent_missing`` when nothing is granted; the decision reports
it once, at the policy's line.
"""

from __future__ import annotations

import pytest

from policy_sso.authoring.diff import session_matrix
from policy_sso.authoring.policytest import DEFAULT_AT
from policy_sso.request import AuthRequest
from policy_sso.sessions.fixture import session_from_fixture
from policy_sso.tenant import Tenant, load_tenant


@pytest.fixture(scope="module")
def demo(demo_dir) -> Tenant:
    return load_tenant(demo_dir)


def test_a_missing_required_consent_is_one_reason_at_the_policy_line(demo: Tenant) -> None:
    session = session_from_fixture({"subject": "u-alice", "events": [{"method": "pwd", "at": "-1h"},
                                                                     {"method": "otp", "at": "-1m"}],
                                    "last_seen": "-1m"}, DEFAULT_AT)
    request = AuthRequest.from_params("payments-web", {"scope": "openid", "prompt": "none"})
    decision = demo.decide(request, session, DEFAULT_AT)
    assert decision.codes == ("consent_missing",)
    assert decision.reasons[0].source == "policies/payments.policy:12"


@pytest.mark.parametrize("scope", ["openid", "openid profile", "openid payments:write", "openid docs:admin"])
def test_no_decision_of_the_demo_repeats_a_reason(demo: Tenant, scope: str) -> None:
    for client in demo.clients:
        for case in session_matrix():
            fixture = case.fixture
            if fixture is not None and case.consent is False:
                fixture = {**fixture, "consents": {}}
            session = session_from_fixture(fixture, DEFAULT_AT)
            for params in ({"scope": scope, "prompt": "none"}, {"scope": scope, "prompt": "consent"},
                           {"scope": scope, "prompt": "none", "max_age": "0"}):
                decision = demo.decide(AuthRequest.from_params(client, params), session, DEFAULT_AT)
                assert len(set(decision.codes)) == len(decision.codes), (client, case.name, params)
