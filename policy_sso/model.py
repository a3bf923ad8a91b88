"""The policy model: immutable, canonical, with source spans that never affect equality.

Both surface forms (the DSL and YAML) load into these frozen dataclasses.
Spans are kept for diagnostics and decision reasons but are excluded from
comparison, so the DSL and YAML forms of one policy compare equal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

DURATION_RE = re.compile(r"^([0-9]+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Return the number of seconds in a duration such as ``15m``; raise ValueError otherwise."""
    match = DURATION_RE.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r}: expected an integer and one of s, m, h, d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_duration(seconds: int) -> str:
    """Return the shortest exact duration literal for ``seconds`` (``900`` -> ``15m``)."""
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


class Span(NamedTuple):
    """Where a construct is in its source file (1-based line and column).

    ``end_col`` is the column just past the construct on its first line (0: unknown), so a
    diagnostic can underline it. A NamedTuple, not a dataclass: loading a
    large tenant builds one per statement, and a tuple is several times
    cheaper to construct.
    """

    file: str
    line: int
    col: int
    end_col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


NO_SPAN = Span("<builtin>", 0, 0)


def _span() -> Span:
    return field(default=NO_SPAN, compare=False, repr=False)


# --- requirements -----------------------------------------------------------


@dataclass(frozen=True)
class AmrRequirement:
    """``require amr any_of|all_of "m", …``: methods the session must hold."""

    mode: Literal["any_of", "all_of"]
    methods: tuple[str, ...]
    span: Span = _span()
    method_spans: tuple[Span, ...] = field(default=(), compare=False, repr=False)  # one per method

    kind = "amr"


@dataclass(frozen=True)
class MfaRequirement:
    """``require mfa [within D]``: two distinct factors (RFC 8176 ``mfa``), optionally fresh."""

    within: int | None = None
    span: Span = _span()

    kind = "mfa"


@dataclass(frozen=True)
class AcrRequirement:
    """``require acr "level"``: the session reaches at least this tenant-ordered level."""

    level: str
    span: Span = _span()
    value_span: Span = _span()  # where the level itself is written

    kind = "acr"


@dataclass(frozen=True)
class ConsentRequirement:
    """``require consent "scope", … [for D]``: scopes the user must have granted this client.

    ``lifetime``: with ``for D``, a grant counts for D seconds after it was given
    (inclusive, like every limit here); the policy's current value is applied
    to grants already made, so shortening it takes effect at the next reload.
    """

    scopes: tuple[str, ...]
    span: Span = _span()
    scope_spans: tuple[Span, ...] = field(default=(), compare=False, repr=False)  # one per scope
    lifetime: int | None = None
    lifetime_span: Span = _span()  # where ``for D`` is written

    kind = "consent"


Requirement = AmrRequirement | MfaRequirement | AcrRequirement | ConsentRequirement

_KIND_RANK = {"amr": 0, "mfa": 1, "acr": 2, "consent": 3}


def requirement_sort_key(req: Requirement) -> tuple:
    """Return the canonical ordering key: kind, then the requirement's values."""
    if isinstance(req, AmrRequirement):
        return (0, req.mode, req.methods)
    if isinstance(req, MfaRequirement):
        return (1, req.within if req.within is not None else -1)
    if isinstance(req, AcrRequirement):
        return (2, req.level)
    return (3, req.scopes, req.lifetime if req.lifetime is not None else -1)


def canonical_requirements(reqs: list[Requirement] | tuple[Requirement, ...]) -> tuple[Requirement, ...]:
    """Return requirements in canonical order so equal policies compare equal."""
    return tuple(sorted(reqs, key=requirement_sort_key))


# --- conditions -------------------------------------------------------------

TestKind = Literal["scope", "acr_values", "prompt", "client", "session_amr", "network"]
NETWORK_SEPARATOR = ", "  # a network test's value: its entries joined (no CIDR or name holds it)


@dataclass(frozen=True)
class Test:
    """An atomic ``when`` test: ``scope has S``, ``prompt is S``, ``session amr has S``…

    ``network in A, B`` is one test of kind ``network`` whose value is its
    entries (CIDRs and tenant network names) joined by NETWORK_SEPARATOR.
    """

    kind: TestKind
    value: str
    span: Span = _span()
    value_span: Span = _span()  # where the value itself is written (errors about it point there)
    item_spans: tuple[Span, ...] = field(default=(), compare=False, repr=False)  # network: one per entry

    @property
    def networks(self) -> tuple[str, ...]:
        """Return a network test's entries as written (CIDRs and names), in order."""
        return tuple(self.value.split(NETWORK_SEPARATOR)) if self.kind == "network" else ()


@dataclass(frozen=True)
class Not:
    operand: Condition
    span: Span = _span()


@dataclass(frozen=True)
class And:
    operands: tuple[Condition, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Or:
    operands: tuple[Condition, ...]
    span: Span = _span()


Condition = Test | Not | And | Or


@dataclass(frozen=True)
class When:
    """``when COND { require … }``: requirements that apply only when COND holds."""

    condition: Condition
    requirements: tuple[Requirement, ...]
    span: Span = _span()


# --- trust ------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRef:
    """Where a trusted issuer's key comes from: an environment variable or a file."""

    source: Literal["env", "file"]
    name: str
    span: Span = _span()


@dataclass(frozen=True)
class TrustedIssuer:
    """``trust login_hint_token { … }``: an outside system that may vouch for a user."""

    issuer: str
    key: KeyRef | None
    alg: str
    max_lifetime: int
    amr: tuple[str, ...]
    span: Span = _span()
    # where each field was written, so an error about it points there (the block's span otherwise)
    issuer_span: Span = _span()
    alg_span: Span = _span()
    amr_span: Span = _span()
    amr_spans: tuple[Span, ...] = field(default=(), compare=False, repr=False)  # one per method
    # fields written but rejected by the YAML schema (reported there): not reported again as missing
    unchecked: frozenset[str] = field(default=frozenset(), compare=False, repr=False)


# --- policy -----------------------------------------------------------------

OnUnmet = Literal["login_required", "interaction_required", "unmet_authentication_requirements"]
ON_UNMET_VALUES: tuple[str, ...] = ("login_required", "interaction_required",
                                    "unmet_authentication_requirements")


@dataclass(frozen=True)
class SessionRules:
    """``session { inactivity D  max_auth_age D }``."""

    inactivity: int | None = None
    max_auth_age: int | None = None
    inactivity_span: Span = _span()
    max_auth_age_span: Span = _span()


@dataclass(frozen=True)
class Policy:
    """One ``policy "name" { … }`` block in canonical form."""

    name: str
    clients: tuple[str, ...]
    session: SessionRules = SessionRules()
    requirements: tuple[Requirement, ...] = ()
    on_unmet: str = "login_required"
    trust: tuple[TrustedIssuer, ...] = ()
    whens: tuple[When, ...] = ()
    span: Span = _span()
    clients_span: tuple[Span, ...] = field(default=(), compare=False, repr=False)
    on_unmet_span: Span = _span()

    def all_requirements(self) -> tuple[Requirement, ...]:
        """Return top-level and ``when`` requirements together (for static analysis)."""
        return self.requirements + tuple(r for w in self.whens for r in w.requirements)

    def consent_lifetime(self, scope: str) -> int | None:
        """Return the shortest ``require consent … for D`` naming ``scope`` (``when`` blocks too), or None.

        The shortest, because a grant past it is refused for some request (the
        admin API and the account page show that expiry).
        """
        return min((r.lifetime for r in self.all_requirements()
                    if isinstance(r, ConsentRequirement) and r.lifetime is not None and scope in r.scopes),
                   default=None)
