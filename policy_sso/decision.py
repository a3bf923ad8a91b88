"""Decisions: the outcome, every failing reason, and a remedy the app can act on (SPEC §2)."""

from __future__ import annotations

from collections.abc import Callable
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


class Reason:
    """One failed check: a stable code, what was required, what was observed, and where.

    ``observed`` may be given as ``(observe, request, session, now)``: a denial
    then costs no string formatting until someone reads the reason.
    """

    __slots__ = ("_observed", "code", "description", "required", "source")

    def __init__(self, code: str, required: str, observed: str | tuple[Callable[..., str], Any, Any, int],
                 source: str,
                 description: str = "") -> None:
        self.code = code
        self.required = required
        self._observed = observed
        self.source = source  # "FILE:LINE" of the policy line (or tenant setting) behind the check
        self.description = description

    @property
    def observed(self) -> str:
        """Return what the session or request has, e.g. ``session amr pwd``."""
        if not isinstance(self._observed, str):
            observe, *args = self._observed
            self._observed = observe(*args)
        return self._observed

    @property
    def message(self) -> str:
        """Return the human sentence: description, requirement and observation."""
        head = f"{self.description}: " if self.description else ""
        return f"{head}required {self.required}; {self.observed}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Reason) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash((self.code, self.required, self.source))

    def __repr__(self) -> str:
        return (f"Reason({self.code!r}, required={self.required!r}, observed={self.observed!r}, "
                f"source={self.source!r})")

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
