"""The pending-interaction cookie and the choice of the next hosted page."""

from __future__ import annotations

import pytest

from policy_sso.decision import Decision, Reason, Remedy
from policy_sso.oidc.interaction import InteractionCodec, next_step, satisfied_request
from policy_sso.request import AuthRequest
from policy_sso.sessions.model import AuthEvent, Session

NOW = 1_700_000_000


def decision(*codes: str, outcome: str = "login_required", scopes: tuple[str, ...] = ()) -> Decision:
    if not codes:
        return Decision("allow")
    reasons = tuple(Reason(c, c, "", "", "x:1") for c in codes)
    return Decision(outcome, reasons, Remedy("login", "", scopes=scopes))


def session(*methods: str, at: int = NOW - 10) -> Session:
    return Session("sid", "u-1", at, at, tuple(AuthEvent(m, at) for m in methods))


def test_seal_and_open_round_trip() -> None:
    codec = InteractionCodec(b"k" * 32)
    interaction = codec.new({"client_id": "web", "scope": "openid é"}, NOW)
    opened = codec.open(codec.seal(interaction), interaction.id, NOW + 5)
    assert opened == interaction and not opened.signed_in
    marked = interaction.after_sign_in()
    assert codec.open(codec.seal(marked), interaction.id, NOW) == marked


@pytest.mark.parametrize("tamper", [
    lambda v, i: (v[:-2] + ("AA" if not v.endswith("AA") else "BB"), i),
    lambda v, i: ("x" + v, i),
    lambda v, i: (v, "other-id"),
    lambda v, i: (v.split(".")[0], i),
    lambda v, i: (None, i),
    lambda v, i: (v, None),
], ids=["mac_changed", "payload_changed", "other_interaction", "no_mac", "no_cookie", "no_id"])
def test_tampered_or_mismatched_cookie_is_refused(tamper) -> None:
    codec = InteractionCodec(b"k" * 32)
    interaction = codec.new({"client_id": "web"}, NOW)
    value, interaction_id = tamper(codec.seal(interaction), interaction.id)
    assert codec.open(value, interaction_id, NOW) is None


def test_cookie_from_another_key_or_expired_is_refused() -> None:
    codec = InteractionCodec(b"k" * 32, ttl=60)
    interaction = codec.new({}, NOW)
    value = codec.seal(interaction)
    assert InteractionCodec(b"j" * 32).open(value, interaction.id, NOW) is None
    assert codec.open(value, interaction.id, NOW + 59) is not None
    assert codec.open(value, interaction.id, NOW + 60) is None


def test_csrf_check() -> None:
    interaction = InteractionCodec(b"k" * 32).new({}, NOW)
    assert interaction.csrf_ok(interaction.csrf)
    assert not interaction.csrf_ok(None)
    assert not interaction.csrf_ok("")
    assert not interaction.csrf_ok(interaction.csrf + "x")


def test_login_in_this_interaction_satisfies_prompt_login_and_max_age() -> None:
    interaction = InteractionCodec(b"k" * 32).new({}, NOW)
    request = AuthRequest("web", prompt=frozenset({"login", "consent"}), max_age=0)
    signed_in = interaction.after_sign_in()
    assert satisfied_request(request, session("pwd", at=NOW - 1), signed_in) is request
    # a session from the same second as the interaction's start is not proof of a new sign-in
    assert satisfied_request(request, session("pwd", at=NOW), interaction) is request
    after = satisfied_request(request, session("pwd", at=NOW), signed_in)
    assert after.prompt == frozenset({"consent"}) and after.max_age is None
    consented = satisfied_request(request, session("pwd", at=NOW), signed_in, consented=True)
    assert consented.prompt == frozenset()


def _decide_mfa(s: Session) -> Decision:
    return decision() if s.mfa else decision("mfa_required")


@pytest.mark.parametrize(("d", "s", "offered", "kind"), [
    (decision(), session("pwd"), (), "complete"),
    (decision("no_session"), None, ("otp",), "login"),
    (decision("prompt_login", "mfa_required"), session("pwd"), ("otp",), "login"),
    (decision("consent_missing", outcome="consent_required"), session("pwd"), (), "consent"),
    (decision("mfa_required"), session("pwd"), ("otp",), "otp"),
    (decision("mfa_required"), session("pwd"), (), "fail"),
    (decision("mfa_required", "consent_missing"), session("pwd"), ("otp",), "otp"),
], ids=["allow", "no_session", "login_first", "consent", "mfa_by_otp", "mfa_without_factor",
        "otp_then_consent"])
def test_next_step(d: Decision, s: Session | None, offered: tuple, kind: str) -> None:
    assert next_step(d, s, _decide_mfa, offered, NOW).kind == kind


def test_step_needing_a_password_goes_to_login() -> None:
    def decide(s: Session) -> Decision:
        return decision() if "pwd" in s.methods else decision("amr_missing")

    assert next_step(decision("amr_missing"), session("wia"), decide, ("otp",), NOW).kind == "login"
    assert next_step(decision("amr_missing"), session("wia"), lambda s: decision("amr_missing"),
                     ("otp",), NOW).kind == "fail"
