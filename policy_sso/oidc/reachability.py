"""Which apps a user could still sign in to with the factors they hold (issue 18).

``/account`` refuses to remove a factor (an authenticator app, a passkey)
when afterwards some app's policy could no longer be met by this user: a
policy with ``require amr any_of "hwk"`` and the user's only passkey, or
``require mfa`` and their only second factor.

The answer comes from the compiled evaluator itself (STYLE: one semantics),
not from a second reading of the policy: for each policy governing a
registered client, a session holding every method the user can present,
all at ``now``, is decided by the policy's check table restricted to the
method checks (amr, mfa, step-up freshness, acr level). ``when`` blocks are
included conservatively: each block is tried as if its condition held
(base requirements plus the block's), so a factor that only a step-up needs
(``when scope has "docs:admin" { require amr all_of "hwk" }``) is protected
too. A policy the user could not meet before the removal is not blamed on it.

Methods the user can present: ``pwd`` (every user has a password), ``otp``
with an enrolled or seeded authenticator app, and per passkey ``hwk`` (or
``swk`` when the authenticator said it is synced; :func:`passkeys.amr_of`).
Methods only a trusted issuer vouches for (``wia`` through a
``login_hint_token``) are not counted: whether the user can reach that issuer
is not known here, so a removal is refused rather than risked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from policy_sso.compile import compile_policy
from policy_sso.decision import ALLOW
from policy_sso.model import Policy
from policy_sso.request import AuthRequest
from policy_sso.sessions.model import AuthEvent, Session
from policy_sso.tenant import Tenant

# the reasons of the checks a held factor decides; session validity and consent are not about factors
METHOD_REASONS = frozenset({"amr_missing", "mfa_required", "step_up_required", "acr_insufficient"})


@dataclass(frozen=True, slots=True)
class Need:
    """An app the user could no longer sign in to, and whether only a ``when`` block of its policy does."""

    client_id: str
    only_sometimes: bool


def methods_held(credentials: Mapping[str, Mapping[str, Any]], *, seeded_totp: bool) -> frozenset[str]:
    """Return the RFC 8176 methods a user can present with these store credentials (and a seeded TOTP)."""
    methods = {"pwd"}
    if seeded_totp:
        methods.add("otp")
    for record in credentials.values():
        if record.get("kind") == "totp":
            methods.add("otp")
        elif record.get("kind") == "passkey":
            methods.add("swk" if record.get("synced") else "hwk")
    return frozenset(methods)


def _situations(policy: Policy) -> list[tuple[Policy, bool]]:
    """Return the policy as always applied, then once per ``when`` block as if its condition held."""
    base = replace(policy, whens=())
    return [(base, False)] + [(replace(base, requirements=(*policy.requirements, *when.requirements)), True)
                              for when in policy.whens]


def _meets(policy: Policy, tenant: Tenant, client_id: str, methods: frozenset[str], now: int) -> bool:
    """Return whether a session holding ``methods`` (all at ``now``) passes the policy's method checks."""
    compiled = compile_policy(policy, tenant.settings, tenant.clients.get(client_id),
                              applies=lambda check: check.reason in METHOD_REASONS)
    session = Session("reachability", "-", now, now, tuple(AuthEvent(m, now) for m in sorted(methods)))
    return compiled.decide(AuthRequest(client_id=client_id), session, now).outcome == ALLOW


def lost_apps(tenant: Tenant, before: frozenset[str], after: frozenset[str], now: int) -> list[Need]:
    """Return the clients a user holding ``before`` could sign in to and holding ``after`` could not.

    One entry per client (sorted by id), ``only_sometimes`` when only a
    ``when`` block of its policy becomes unreachable.
    """
    if before <= after:
        return []
    governed = [c for c in sorted(tenant.clients) if tenant.governs(c)]
    probes: dict[str, str] = {}  # policy name -> a client it governs (the one its checks are compiled for)
    for client_id in governed:
        probes.setdefault(tenant.policy_for(client_id).name, client_id)
    lost: dict[str, bool] = {}  # policy name -> whether only a when block becomes unreachable
    for name, probe in probes.items():
        for situation, conditional in _situations(tenant.policies[name]):
            met_before = _meets(situation, tenant, probe, before, now)
            if met_before and not _meets(situation, tenant, probe, after, now):
                lost[name] = lost.get(name, True) and conditional
    return [Need(c, lost[tenant.policy_for(c).name]) for c in governed if tenant.policy_for(c).name in lost]
