"""Which apps a user could still sign in to after removing a factor: the compiled policies decide."""

from __future__ import annotations

from pathlib import Path

import pytest

from policy_sso.oidc.account import removal_refused_message
from policy_sso.oidc.reachability import lost_apps, methods_held
from policy_sso.tenant import Tenant, load_tenant

CASES = Path(__file__).parent.parent / "cases" / "tenant"
NOW = 1_767_268_800


@pytest.fixture(scope="module")
def tenant() -> Tenant:
    return load_tenant(CASES)


def lost(tenant: Tenant, before: str, after: str) -> dict[str, bool]:
    needs = lost_apps(tenant, frozenset(before.split()), frozenset(after.split()), NOW)
    return {n.client_id: n.only_sometimes for n in needs}


@pytest.mark.parametrize(("before", "after", "expected"), [
    # strict (and first-party, on the same policy) require mfa and loa2; step-app's admin scope needs mfa;
    # cond-app's scope block needs otp
    ("pwd otp", "pwd", {"strict-app": False, "first-party": False, "step-app": True, "cond-app": True}),
    # unmet-app: require amr any_of "hwk" and acr loa3: the only passkey is the one it needs
    ("pwd otp hwk", "pwd otp", {"unmet-app": False, "cond-app": True}),
    # with otp gone, a passkey still gives mfa; only cond-app's `require amr all_of "otp"` block is lost
    ("pwd otp hwk", "pwd hwk", {"cond-app": True}),
    # a synced passkey (swk) never met unmet-app: its removal is not blamed for it
    ("pwd swk", "pwd", {"strict-app": False, "first-party": False, "step-app": True}),
    ("pwd", "pwd", {}),
    ("pwd otp", "pwd otp", {}),
], ids=["mfa_required-last-second-factor", "amr_missing-only-hwk", "when-block-only",
        "never-reachable-not-blamed", "nothing-removed", "same-methods"])
def test_the_apps_lost_with_a_factor(tenant, before, after, expected):
    assert lost(tenant, before, after) == expected


def test_a_demo_step_up_protects_the_only_passkey(demo):
    """Documentation's `when acr_values has loa:3 { require amr all_of "hwk" }` needs a hardware key."""
    assert lost(demo, "pwd otp hwk", "pwd otp") == {"docs": True}


@pytest.mark.parametrize(("credentials", "seeded", "expected"), [
    ({}, False, {"pwd"}),
    ({}, True, {"pwd", "otp"}),
    ({"totp": {"kind": "totp"}}, False, {"pwd", "otp"}),
    ({"pk:1": {"kind": "passkey"}}, False, {"pwd", "hwk"}),
    ({"pk:1": {"kind": "passkey", "synced": True}}, False, {"pwd", "swk"}),
    ({"password": {"kind": "password"}}, False, {"pwd"}),
], ids=["password-only", "seeded-totp", "enrolled-totp", "device-bound-passkey", "synced-passkey",
        "password-record-is-no-factor"])
def test_the_methods_a_user_can_present(credentials, seeded, expected):
    assert methods_held(credentials, seeded_totp=seeded) == frozenset(expected)


def test_the_refusal_names_the_apps():
    text = removal_refused_message(["Back office", "Payments"], ["Documentation"])
    assert text == ("This factor cannot be removed: Back office, Payments cannot be signed in to without it, "
                    "and some actions in Documentation need it. Add another factor first.")
    assert text.key == "message.factor_needed_both"  # the page shows it in the reader's language
    assert "some actions in Shop need it" in removal_refused_message([], ["Shop"])
