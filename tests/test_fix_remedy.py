"""A remedy followed is a decision allowed (SPEC §2: "a remedy the app can act on").

Each case decides a silent request, does what the remedy says (retry without
``prompt=none`` with its ``acr_values`` and ``max_age``, the user presents the
methods it lists and grants what the interaction asks) and decides again: the
answer must be allow, for the retry and for the app's own request, and the
retry must not ask for less than the app did. The level and methods the
remedy names are also pinned, so a remedy cannot list a method that does not
help (the otp loop of a ``when acr_values has loa:3 { require amr all_of
"hwk" }`` block) or a level below the one the request asked for.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from policy_sso.cli import main
from policy_sso.compile import compile_policy
from policy_sso.decision import Decision
from policy_sso.parse.dsl import parse_dsl
from policy_sso.request import AuthRequest
from policy_sso.sessions.model import AuthEvent, Session
from policy_sso.tenant import Tenant, load_tenant

ROOT = Path(__file__).resolve().parents[1]
NOW = 1_767_268_800
LOA1, LOA2, LOA3 = (f"urn:policy-sso:loa:{n}" for n in (1, 2, 3))
DOCS = f'require amr any_of "pwd", "wia" when acr_values has "{LOA3}" and not prompt is "login" ' \
       '{ require amr all_of "hwk" }'
ESSENTIAL_LOA3 = json.dumps({"id_token": {"acr": {"essential": True, "values": [LOA3]}}})


@pytest.fixture(scope="module")
def demo() -> Tenant:
    return load_tenant(ROOT / "policies")


def _session(*events: tuple[str, int]) -> Session:
    evs = tuple(AuthEvent(method, NOW - ago) for method, ago in events)
    return Session("sid", "u1", NOW - 7200, NOW - 60, evs, {}, {"app": frozenset({"openid", "admin"})})


def _follow(decision: Decision, request: AuthRequest, session: Session) -> tuple[AuthRequest, Session]:
    """Return the retry the remedy describes and the session after the user did what it asks."""
    params = decision.remedy.params
    retry = replace(request, prompt=frozenset(),  # prompt=login/consent: done by the interaction
                    acr_values=tuple(params["acr_values"].split()) if "acr_values" in params
                    else request.acr_values,
                    max_age=int(params["max_age"]) if "max_age" in params else request.max_age)
    after = session
    for method in decision.remedy.methods:
        after = after.with_event(AuthEvent(method, NOW), session.id)
    return retry, after


# (policy body, request parameters, session events (method, seconds ago), remedy acr_values, methods)
CASES = [
    pytest.param(DOCS, {"acr_values": LOA3}, [("pwd", 60)], LOA3, ("hwk",),
                 id="acr_insufficient-amr_missing-request-loa3-session-pwd"),
    pytest.param(DOCS, {"acr_values": LOA3}, [("pwd", 60), ("otp", 60)], LOA3, ("hwk",),
                 id="acr_insufficient-amr_missing-request-loa3-session-mfa-otp-is-no-remedy"),
    pytest.param(DOCS, {"acr_values": f"{LOA3} {LOA2}"}, [("pwd", 60)], LOA3, ("hwk",),
                 id="amr_missing-loa3-preferred-over-loa2"),
    pytest.param('require amr any_of "pwd", "wia", "hwk"', {"acr_values": LOA3}, [("pwd", 60), ("otp", 60)],
                 LOA3, ("hwk",), id="acr_insufficient-request-above-a-lenient-policy"),
    pytest.param('require amr any_of "pwd", "wia", "hwk"', {"acr_values": LOA2}, [("pwd", 60)],
                 LOA2, ("hwk", "otp"), id="acr_insufficient-request-loa2"),
    pytest.param(f'require mfa require acr "{LOA2}"', {"acr_values": LOA3}, [("pwd", 60)], LOA3, ("hwk",),
                 id="mfa_required-acr_insufficient-request-above-policy-acr"),
    pytest.param(f'require acr "{LOA3}"', {}, [("pwd", 60)], LOA3, ("hwk",),
                 id="acr_insufficient-policy-loa3"),
    pytest.param(f'require acr "{LOA3}"', {}, [("pwd", 60), ("otp", 60)], LOA3, ("hwk",),
                 id="acr_insufficient-policy-loa3-session-mfa"),
    pytest.param("require mfa", {}, [("pwd", 60)], LOA2, ("hwk", "otp"), id="mfa_required"),
    pytest.param("require mfa", {}, [("hwk", 60)], LOA2, ("pwd", "wia"),
                 id="mfa_required-session-second-factor-only"),
    pytest.param("require mfa", {"acr_values": LOA3}, [("pwd", 60)], LOA3, ("hwk",),
                 id="mfa_required-request-loa3"),
    pytest.param('when scope has "admin" { require mfa within 5m }', {"scope": "openid admin"},
                 [("pwd", 3600), ("otp", 3600)], LOA2, ("hwk", "otp"), id="step_up_required"),
    pytest.param('when scope has "admin" { require mfa within 5m }',
                 {"scope": "openid admin", "acr_values": LOA3}, [("pwd", 3600), ("hwk", 3600)], LOA3,
                 ("hwk", "otp"), id="step_up_required-request-loa3-kept"),
    pytest.param('require amr all_of "hwk"', {}, [("pwd", 60)], LOA3, ("hwk",), id="amr_missing-all_of-hwk"),
    pytest.param('require amr all_of "otp", "hwk"', {}, [("pwd", 60)], LOA2, ("hwk", "otp"),
                 id="amr_missing-all_of-otp-hwk"),
    pytest.param('require amr all_of "otp", "hwk"', {"acr_values": LOA3}, [("pwd", 60), ("hwk", 60)], LOA3,
                 ("otp",), id="amr_missing-all_of-otp-hwk-session-hwk"),
    pytest.param('require amr any_of "otp", "hwk"', {}, [("pwd", 60)], LOA2, ("hwk", "otp"),
                 id="amr_missing-any_of-second-factors"),
    pytest.param('require amr any_of "pwd", "wia"', {}, [("hwk", 60)], None, ("pwd", "wia"),
                 id="amr_missing-first-factor-signs-in-again"),
    pytest.param('require amr any_of "pwd", "wia"', {"acr_values": LOA3}, [("hwk", 60)], LOA3, ("pwd", "wia"),
                 id="amr_missing-acr_insufficient-first-factor-request-loa3"),
    pytest.param(f'require mfa require amr all_of "hwk" require acr "{LOA2}"', {}, [("pwd", 60), ("otp", 60)],
                 LOA3, ("hwk",), id="amr_missing-mixed-mfa-hwk-acr"),
    pytest.param("require mfa", {"claims": ESSENTIAL_LOA3}, [("pwd", 60)], LOA3, ("hwk",),
                 id="mfa_required-acr_insufficient-essential-loa3"),
]


@pytest.mark.parametrize(("body", "params", "events", "acr", "methods"), CASES)
def test_following_the_remedy_is_allowed(demo: Tenant, body: str, params: dict[str, str],
                                         events: list[tuple[str, int]], acr: str | None,
                                         methods: tuple[str, ...]) -> None:
    policies, errors = parse_dsl(f'policy "p" {{ clients "app" {body} }}', "p.policy")
    assert errors == []
    compiled = compile_policy(policies[0], demo.settings)
    request = AuthRequest.from_params("app", {"scope": "openid", "prompt": "none", **params})
    session = _session(*events)
    decision = compiled.decide(request, session, NOW)
    assert not decision.allowed
    assert (decision.remedy.params.get("acr_values"), decision.remedy.methods) == (acr, methods)

    retry, after = _follow(decision, request, session)
    again = compiled.decide(retry, after, NOW)
    assert again.allowed, (again.codes, again.remedy.message if again.remedy else None)
    # the app's own request (its acr_values, its claims) is met as well: nothing it asked for was dropped
    assert compiled.decide(replace(request, prompt=frozenset()), after, NOW).allowed
    ranks = {level.id: level.rank for level in demo.settings.acr_levels}
    if "acr_values" in decision.remedy.params and request.acr_values:
        assert ranks[decision.remedy.params["acr_values"]] >= min(ranks[v] for v in request.acr_values)
    # every method listed helps: it is needed (the others alone do not do), or it is enough by itself
    for method in decision.remedy.methods:
        others = replace(decision.remedy, methods=tuple(m for m in decision.remedy.methods if m != method))
        alone = replace(decision.remedy, methods=(method,))
        assert (not compiled.decide(retry, _follow(replace(decision, remedy=others), request, session)[1],
                                    NOW).allowed
                or compiled.decide(retry, _follow(replace(decision, remedy=alone), request, session)[1],
                                   NOW).allowed), f"{method} does not help"


def test_explain_names_the_requested_level_and_the_hardware_key(tmp_path: Path, capsys,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The reviewer's repro: docs, acr_values=loa:3, a pwd+otp session; the remedy was loa:2 and otp."""
    monkeypatch.chdir(ROOT)
    fixture = tmp_path / "s.json"
    events = [{"method": "pwd", "at": "-2m"}, {"method": "otp", "at": "-1m"}]
    fixture.write_text(json.dumps({"subject": "u-alice", "last_seen": "-1m", "consents": {"docs": ["openid"]},
                                   "events": events}))
    status = main(["explain", "--client", "docs", "--session", str(fixture), "--format", "json",
                   "--request", f"scope=openid&prompt=none&acr_values={LOA3}"])
    remedy = json.loads(capsys.readouterr().out)["remedy"]
    assert status == 1
    assert (remedy["params"], remedy["methods"]) == ({"acr_values": LOA3}, ["hwk"])
    assert remedy["message"].endswith(f"(with acr_values={LOA3}); methods that satisfy the policy: hwk")
