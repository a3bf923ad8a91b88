"""The DSL and YAML forms of every demo policy are one policy (SPEC §1: two surface forms, one model).

Each ``policies/NAME.policy`` has a twin ``policies/yaml/NAME.policy.yaml``.
Both must parse without diagnostics into equal models (spans never affect
equality), compile to the same generated evaluator, and decide a matrix of
sessions and requests identically: outcome, reason codes with what was
required and observed, and remedy. Only the reasons' source locations differ,
and each points into its own form's file.
"""

from __future__ import annotations

import itertools
import re
from functools import cache
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from policy_sso.compile import CompiledPolicy, compile_policy
from policy_sso.decision import Decision
from policy_sso.model import Policy
from policy_sso.parse.dsl import parse_dsl
from policy_sso.parse.yaml_form import parse_yaml_policies
from policy_sso.request import AuthRequest
from policy_sso.sessions.fixture import session_from_fixture
from policy_sso.sessions.model import Session
from policy_sso.tenant import Tenant, load_tenant

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "policies"
NOW = 1767268800  # 2026-01-01T12:00:00Z

DSL_FILES = sorted(DEMO.glob("*.policy"))


def _twin(dsl_file: Path) -> Path:
    return DEMO / "yaml" / f"{dsl_file.stem}.policy.yaml"


def _parse_both(dsl_file: Path) -> tuple[list[Policy], list[Policy]]:
    dsl, dsl_errors = parse_dsl(dsl_file.read_text(), str(dsl_file))
    yaml, yaml_errors = parse_yaml_policies(_twin(dsl_file).read_text(), str(_twin(dsl_file)))
    assert dsl_errors == []
    assert yaml_errors == []
    return dsl, yaml


def _policy_name(dsl_file: Path) -> str:
    return parse_dsl(dsl_file.read_text(), str(dsl_file))[0][0].name


@cache
def demo() -> Tenant:
    return load_tenant(DEMO)


def test_every_dsl_policy_has_a_yaml_twin_and_back() -> None:
    assert DSL_FILES
    assert {f.stem for f in DSL_FILES} == {p.name.removesuffix(".policy.yaml")
                                           for p in (DEMO / "yaml").glob("*.policy.yaml")}


@pytest.mark.parametrize("dsl_file", DSL_FILES, ids=_policy_name)
def test_both_forms_parse_to_equal_models(dsl_file: Path) -> None:
    dsl, yaml = _parse_both(dsl_file)
    assert len(dsl) == len(yaml) == 1
    assert dsl == yaml
    assert hash(dsl[0]) == hash(yaml[0])
    # equal in spite of their spans, which point into their own files
    assert dsl[0].span.file != yaml[0].span.file


# --- identical decisions ----------------------------------------------------------------

# Sessions as fixtures (times relative to NOW), chosen to pass and fail each demo policy.
SESSIONS: dict[str, object] = {
    "none": None,
    "pwd-1h": {"subject": "u-alice", "events": [{"method": "pwd", "at": "-1h"}]},
    "wia-5m": {"subject": "u-alice", "events": [{"method": "wia", "at": "-5m"}]},
    "pwd+otp-fresh": {"subject": "u-alice", "events": [{"method": "pwd", "at": "-10m"},
                                                       {"method": "otp", "at": "-2m"}]},
    "pwd+otp-stale": {"subject": "u-alice", "events": [{"method": "pwd", "at": "-9h"},
                                                       {"method": "otp", "at": "-8h"}],
                      "last_seen": "-1m"},
    "pwd+hwk-fresh": {"subject": "u-alice", "events": [{"method": "pwd", "at": "-3m"},
                                                       {"method": "hwk", "at": "-1m"}]},
    "idle-20m": {"subject": "u-alice", "events": [{"method": "pwd", "at": "-1h"},
                                                  {"method": "otp", "at": "-1h"}],
                 "last_seen": "-20m"},
    "bob-mfa": {"subject": "u-bob", "events": [{"method": "pwd", "at": "-4m"},
                                               {"method": "otp", "at": "-4m"}]},
}
CONSENTED = ["openid", "profile", "email", "payments:write", "docs:admin"]

REQUESTS = [
    "scope=openid&prompt=none",
    "scope=openid%20profile&prompt=none",
    "scope=openid%20payments:write&prompt=none",
    "scope=openid%20docs:admin",
    "scope=openid&acr_values=urn:policy-sso:loa:3",
    "scope=openid&acr_values=urn:policy-sso:loa:3&prompt=login",
    "scope=openid&max_age=0",
    "scope=openid&login_hint=u-alice",
    'scope=openid&claims={"id_token":{"acr":{"essential":true,"values":["urn:policy-sso:loa:2"]}}}',
]


def _session(name: str, client_id: str, consented: bool) -> Session | None:
    fixture = SESSIONS[name]
    if fixture is None:
        return None
    consents = {client_id: CONSENTED} if consented else {}
    return session_from_fixture({**fixture, "consents": consents}, NOW)


def _request(query: str, client_id: str) -> AuthRequest:
    params = dict(parse_qsl(query))
    return AuthRequest.from_params(client_id, params, login_hint_sub=params.get("login_hint"))


def _comparable(decision: Decision) -> tuple:
    """Return everything a client sees of a decision except the reasons' source locations."""
    return (decision.outcome, decision.policy,
            tuple((r.code, r.required, r.observed, r.message) for r in decision.reasons),
            decision.remedy.to_json() if decision.remedy else None)


def _compiled(policy: Policy, client_id: str) -> CompiledPolicy:
    tenant = demo()
    return compile_policy(policy, tenant.settings, tenant.clients.get(client_id))


@pytest.mark.parametrize("dsl_file", DSL_FILES, ids=_policy_name)
def test_both_forms_compile_to_the_same_evaluator(dsl_file: Path) -> None:
    (dsl,), (yaml,) = _parse_both(dsl_file)
    for client_id in dsl.clients or ("any-client",):
        assert _compiled(dsl, client_id).source == _compiled(yaml, client_id).source


def _line(source: str) -> str:
    file, line = source.rsplit(":", 1)
    return Path(file).read_text().splitlines()[int(line) - 1]


def _assert_same_statement(dsl_source: str, yaml_source: str, dsl_file: Path) -> None:
    """Each form's reason points into its own file, at the line of the same statement."""
    assert dsl_source.startswith(f"{dsl_file}:")
    assert yaml_source.startswith(f"{_twin(dsl_file)}:")
    words = _line(dsl_source).split()
    keyword = words[1] if words[0] == "require" else words[0]  # policy, inactivity, mfa, acr, …
    assert keyword in _line(yaml_source), (dsl_source, yaml_source)


@pytest.mark.parametrize("dsl_file", DSL_FILES, ids=_policy_name)
def test_both_forms_decide_alike(dsl_file: Path) -> None:
    (dsl,), (yaml,) = _parse_both(dsl_file)
    outcomes: set[str] = set()
    compared = 0
    for client_id in dsl.clients or ("any-client",):
        by_dsl, by_yaml = _compiled(dsl, client_id), _compiled(yaml, client_id)
        for name, consented, query in itertools.product(SESSIONS, (True, False), REQUESTS):
            request = _request(query, client_id)
            from_dsl = by_dsl.decide(request, _session(name, client_id, consented), NOW)
            from_yaml = by_yaml.decide(request, _session(name, client_id, consented), NOW)
            assert _comparable(from_dsl) == _comparable(from_yaml), (client_id, name, consented, query)
            for reason_dsl, reason_yaml in zip(from_dsl.reasons, from_yaml.reasons, strict=True):
                if reason_dsl.source != reason_yaml.source:  # else both name the same tenant setting
                    _assert_same_statement(reason_dsl.source, reason_yaml.source, dsl_file)
            outcomes.add(from_dsl.outcome)
            compared += 1
    assert compared >= len(SESSIONS) * 2 * len(REQUESTS)
    # the matrix exercises the policy: some requests pass, some are denied (a first-party client
    # with a lenient policy knows only login_required; others also consent or step-up outcomes)
    assert "allow" in outcomes
    assert len(outcomes) >= 2, outcomes


def test_the_reference_example_is_one_policy_in_both_forms() -> None:
    """docs/policy-language.md shows a policy in the DSL and in YAML: they must say the same."""
    text = (ROOT / "docs" / "policy-language.md").read_text()
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, re.DOTALL)
    dsl_text = next(body for lang, body in blocks if lang == "" and body.startswith("# policies/payments"))
    yaml_text = next(body for lang, body in blocks if lang == "yaml")
    dsl, dsl_errors = parse_dsl(dsl_text, "policy-language.md")
    yaml, yaml_errors = parse_yaml_policies(yaml_text, "policy-language.md")
    assert (dsl_errors, yaml_errors) == ([], [])
    assert len(dsl) == 1
    assert dsl == yaml


# --- consent lifetime (issue 19) ----------------------------------------------------------

CONSENT_TWINS = [
    pytest.param('require consent "openid", "profile" for 30d',
                 "require: {consent: {scopes: [openid, profile], for: 30d}}", id="top-level-for"),
    pytest.param('require consent "openid", "profile"',
                 "require: {consent: {scopes: [openid, profile]}}", id="mapping-without-for"),
    pytest.param('when scope has "payments:read" {\n    require consent "payments:read" for 1h\n  }',
                 'when: [{if: {scope_has: "payments:read"}, require: {consent: {scopes: ["payments:read"], '
                 "for: 60m}}}]", id="when-block-for"),
]


@pytest.mark.parametrize(("dsl_body", "yaml_body"), CONSENT_TWINS)
def test_consent_lifetime_twins_compile_to_equal_models(dsl_body: str, yaml_body: str) -> None:
    dsl, dsl_errors = parse_dsl(f'policy "p" {{\n  clients "web"\n  {dsl_body}\n}}\n', "p.policy")
    yaml, yaml_errors = parse_yaml_policies(f"policy: p\nclients: [web]\n{yaml_body}\n", "p.policy.yaml")
    assert (dsl_errors, yaml_errors) == ([], [])
    assert dsl == yaml
    tenant = demo()
    assert (compile_policy(dsl[0], tenant.settings).source
            == compile_policy(yaml[0], tenant.settings).source)


def test_a_consent_lifetime_is_part_of_the_model() -> None:
    (with_for,), _ = parse_dsl('policy "p" {\n  require consent "openid" for 30d\n}\n')
    (without,), _ = parse_dsl('policy "p" {\n  require consent "openid"\n}\n')
    assert with_for != without
    assert with_for.requirements[0].lifetime == 30 * 86400
