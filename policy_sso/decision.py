"""Decisions: the outcome, every failing reason, and a remedy the app can act on (SPEC §2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policy_sso.compile import CompiledPolicy
    from policy_sso.request import AuthRequest
    from policy_sso.sessions.model import Session

ALLOW = "allow"
LOGIN_REQUIRED = "login_required"
CONSENT_REQUIRED = "consent_required"
INTERACTION_REQUIRED = "interaction_required"
UNMET_AUTHENTICATION_REQUIREMENTS = "unmet_authentication_requirements"

# Which outcome wins when several checks fail: the one the user must resolve first.
OUTCOME_RANK = {LOGIN_REQUIRED: 0, INTERACTION_REQUIRED: 1,
                UNMET_AUTHENTICATION_REQUIREMENTS: 1, CONSENT_REQUIRED: 2}


@dataclass(frozen=True, slots=True)
class Reason:
    """One failed check: a stable code, what was required, what was observed, and where."""

    code: str
    message: str
    required: str
    observed: str
    source: str  # "FILE:LINE" of the policy line (or tenant setting) behind the check

    def to_json(self) -> dict[str, str]:
        """Return the reason as a JSON object."""
        return {"code": self.code, "message": self.message, "required": self.required,
                "observed": self.observed, "source": self.source}


@dataclass(frozen=True, slots=True)
class Remedy:
    """What the app can do next: drop ``prompt=none`` and retry with ``params``."""

    action: str  # "login", "step_up", "consent", "switch_user"
    message: str
    params: dict[str, str] = field(default_factory=dict)
    methods: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return the remedy as a JSON object."""
        out: dict[str, Any] = {"action": self.action, "message": self.message, "params": self.params}
        if self.methods:
            out["methods"] = list(self.methods)
        if self.scopes:
            out["scopes"] = list(self.scopes)
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to "may this client sign this session in silently?"."""

    outcome: str
    reasons: tuple[Reason, ...] = ()
    remedy: Remedy | None = None
    policy: str = ""

    @property
    def allowed(self) -> bool:
        """Return whether the outcome is ``allow``."""
        return self.outcome == ALLOW

    @property
    def codes(self) -> tuple[str, ...]:
        """Return the reason codes in order."""
        return tuple(r.code for r in self.reasons)

    def to_json(self) -> dict[str, Any]:
        """Return the decision as documented in docs/decision-json.md."""
        return {
            "outcome": self.outcome,
            "policy": self.policy,
            "reasons": [r.to_json() for r in self.reasons],
            "remedy": self.remedy.to_json() if self.remedy else None,
        }


def evaluate(compiled: CompiledPolicy, request: AuthRequest, session: Session | None,
             now: int) -> Decision:
    """Return the decision of a compiled policy for a request and session at ``now``."""
    return compiled.decide(request, session, now)
