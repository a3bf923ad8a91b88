"""Evaluator behaviour beyond outcomes: reason content, sources, remedies, safety of generated code."""

from __future__ import annotations

import pytest

from policy_sso import evaluate
from policy_sso.compile import compile_policy
from policy_sso.config import TenantSettings
from policy_sso.parse.dsl import parse_dsl
from policy_sso.request import AuthRequest
from policy_sso.sessions.model import AuthEvent, Session
from policy_sso.tenant import load_tenant

NOW = 1_767_268_800


def session(*events: tuple[str, int], consents=None, last_seen=None, created=None) -> Session:
    evs = tuple(AuthEvent(m, NOW - ago) for m, ago in events)
    return Session("sid", "u1", created or min(e.time for e in evs), last_seen or NOW - 60, evs, {},
                   consents or {})


@pytest.fixture(scope="module")
def tenant(cases_tenant_dir):
    return load_tenant(cases_tenant_dir)


def test_reasons_say_what_was_required_and_observed_and_where(tenant):
    req = AuthRequest.from_params("strict-app", {"scope": "openid profile", "prompt": "none"})
    granted = {"strict-app": frozenset({"openid", "profile"})}
    decision = tenant.decide(req, session(("pwd", 9 * 3600), consents=granted), NOW)
    by_code = {r.code: r for r in decision.reasons}
    assert set(by_code) == {"max_age_exceeded", "mfa_required", "acr_insufficient"}
    age = by_code["max_age_exceeded"]
    assert age.required == "auth_time at most 8h ago"
    assert age.observed == "auth_time 9h ago"
    assert age.source.endswith("policies.policy:9")
    assert by_code["mfa_required"].observed == "session amr pwd (factors: knowledge)"
    assert by_code["acr_insufficient"].required == "acr at least loa2"
    assert by_code["acr_insufficient"].observed == "session acr loa1"
    assert by_code["acr_insufficient"].source.endswith("policies.policy:13")


def test_remedy_for_mfa_names_the_acr_and_second_factor_methods(tenant):
    req = AuthRequest.from_params("step-app", {"scope": "openid admin", "prompt": "none"})
    granted = {"step-app": frozenset({"openid", "admin"})}
    decision = tenant.decide(req, session(("pwd", 60), consents=granted), NOW)
    assert decision.outcome == "interaction_required"
    assert decision.remedy.action == "step_up"
    assert decision.remedy.params == {"acr_values": "loa2"}
    assert decision.remedy.methods == ("hwk", "otp")
    assert "Retry without prompt=none" in decision.remedy.message


def test_remedy_for_consent_asks_for_prompt_consent(tenant):
    req = AuthRequest.from_params("open-app", {"scope": "openid email", "prompt": "none"})
    decision = tenant.decide(req, session(("pwd", 60), consents={"open-app": frozenset({"openid"})}), NOW)
    assert decision.outcome == "consent_required"
    assert decision.remedy.action == "consent"
    assert decision.remedy.params == {"prompt": "consent"}
    assert decision.reasons[0].observed == "granted openid; missing email"


def test_remedy_for_step_up_window_asks_for_a_fresh_factor(tenant):
    req = AuthRequest.from_params("step-app", {"scope": "openid admin"})
    s = session(("pwd", 3600), ("otp", 600), consents={"step-app": frozenset({"openid", "admin"})})
    decision = tenant.decide(req, s, NOW)
    assert decision.codes == ("step_up_required",)
    assert decision.reasons[0].observed == "last second factor 10m ago"
    assert decision.remedy.params["max_age"] == "300"


def test_decision_json_shape(tenant):
    req = AuthRequest.from_params("open-app", {"scope": "openid", "prompt": "none"})
    out = tenant.decide(req, None, NOW).to_json()
    assert out["outcome"] == "login_required"
    assert out["policy"] == "open"
    assert [r["code"] for r in out["reasons"]] == ["no_session"]
    assert set(out["reasons"][0]) == {"code", "message", "required", "observed", "source"}
    assert out["remedy"]["action"] == "login"


def test_evaluate_is_the_public_entry_point(tenant):
    compiled = tenant.evaluator("open-app")
    req = AuthRequest.from_params("open-app", {"scope": "openid"})
    s = session(("pwd", 60), consents={"open-app": frozenset({"openid"})})
    assert evaluate(compiled, req, s, NOW).allowed


@pytest.mark.parametrize("hostile", [
    "'); import os; os._exit(3) #", '"""', "\\", "{0}{1}", "x\" or True or \"", "__import__('os')",
], ids=["quote-injection", "triple-quote", "backslash", "format-braces", "or-true", "dunder-import"])
def test_policy_strings_are_bound_as_values_never_spliced_as_code(hostile):
    escaped = hostile.replace("\\", "\\\\").replace('"', '\\"')
    text = f'policy "p" {{ clients "c" when scope has "{escaped}" {{ require amr all_of "otp" }} }}'
    policies, errors = parse_dsl(text, "t.policy")
    assert errors == []
    compiled = compile_policy(policies[0], TenantSettings(issuer="http://x", default_policy="p"))
    assert hostile not in compiled.source
    s = session(("pwd", 60), consents={"c": frozenset({"openid", hostile})})
    with_scope = AuthRequest("c", frozenset({"openid", hostile}))
    without = AuthRequest("c", frozenset({"openid"}))
    assert compiled.decide(with_scope, s, NOW).codes == ("amr_missing",)
    assert compiled.decide(without, s, NOW).allowed


def test_request_rejects_prompt_none_with_another_value():
    from policy_sso.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="prompt=none cannot be combined"):
        AuthRequest.from_params("c", {"prompt": "none consent"})


@pytest.mark.parametrize(("params", "message"), [
    ({"max_age": "-1"}, "max_age"), ({"max_age": "soon"}, "max_age"),
    ({"prompt": "sometimes"}, "unsupported prompt"), ({"claims": "{"}, "claims is not valid JSON"),
    ({"claims": "[]"}, "claims must be a JSON object"),
], ids=["negative-max-age", "word-max-age", "unknown-prompt", "bad-claims-json", "claims-not-object"])
def test_request_rejects_malformed_parameters(params, message):
    from policy_sso.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match=message):
        AuthRequest.from_params("c", params)


@pytest.mark.parametrize(("client_id", "method"), [("docs", "hwk"), ("portal", "otp")])
def test_remedy_for_a_first_factor_amr_asks_to_sign_in_again_not_for_mfa(demo_dir, client_id, method):
    """A policy asking for pwd or wia alone is not met by retrying at the MFA level (acr_values loa:2)."""
    demo = load_tenant(demo_dir)
    req = AuthRequest.from_params(client_id, {"scope": "openid", "prompt": "none"})
    decision = demo.decide(req, session((method, 60), consents={client_id: frozenset({"openid"})}), NOW)
    assert [r.code for r in decision.reasons] == ["amr_missing"]
    assert "acr_values" not in decision.remedy.params
    assert decision.remedy.params == {"prompt": "login"} and "pwd" in decision.remedy.methods


def test_remedy_for_a_second_factor_amr_keeps_the_step_up_level(demo_dir):
    demo = load_tenant(demo_dir)
    req = AuthRequest.from_params("docs", {"scope": "openid", "prompt": "none",
                                           "acr_values": "urn:policy-sso:loa:3"})
    granted = {"docs": frozenset({"openid"})}
    decision = demo.decide(req, session(("pwd", 60), ("otp", 60), consents=granted), NOW)
    assert "amr_missing" in [r.code for r in decision.reasons]
    assert decision.remedy.action == "step_up" and "hwk" in decision.remedy.methods
