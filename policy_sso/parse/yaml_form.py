"""YAML -> model: validate each document against ``schemas/policy.schema.json``,
then build the same :class:`~policy_sso.model.Policy` the DSL builds."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from policy_sso.diagnostics import Diagnostic
from policy_sso.model import (
    DURATION_RE,
    NETWORK_SEPARATOR,
    AcrRequirement,
    AmrRequirement,
    And,
    Condition,
    ConsentRequirement,
    KeyRef,
    MfaRequirement,
    Not,
    Or,
    Policy,
    Requirement,
    SessionRules,
    Span,
    Test,
    TrustedIssuer,
    When,
    canonical_requirements,
    parse_duration,
)
from policy_sso.parse.dsl import INVALID_LIFETIME
from policy_sso.parse.yaml_source import (
    Path_,
    YamlDocument,
    is_valid,
    load_yaml_documents,
    schema_diagnostics,
)

_TEST_KEYS = {"scope_has": "scope", "acr_values_has": "acr_values", "prompt_is": "prompt",
              "client_is": "client", "session_amr_has": "session_amr"}


class _Builder:
    """Builds the model from a schema-valid document, spans from its positions."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc

    def span(self, path: Path_) -> Span:
        return Span(self.doc.file, *self.doc.span(path))

    def item_spans(self, path: Path_, count: int) -> tuple[Span, ...]:
        """Return the span of each item of the list at ``path`` (each value, not its key)."""
        return tuple(Span(self.doc.file, *self.doc.node_span((*path, i))) for i in range(count))

    def requirements(self, data: dict[str, Any], path: Path_) -> list[Requirement]:
        reqs: list[Requirement] = []
        amr = data.get("amr")
        groups = amr if isinstance(amr, list) else [amr] if amr else []
        for i, group in enumerate(groups):
            at = (*path, "amr", i) if isinstance(amr, list) else (*path, "amr")
            for mode in ("any_of", "all_of"):
                if mode in group:
                    reqs.append(AmrRequirement(mode, tuple(group[mode]), self.span((*at, mode)),
                                               self.item_spans((*at, mode), len(group[mode]))))
        mfa = data.get("mfa")
        if mfa:
            within = _duration(mfa["within"]) if isinstance(mfa, dict) else None
            reqs.append(MfaRequirement(within, self.span((*path, "mfa"))))
        if "acr" in data:
            reqs.append(AcrRequirement(data["acr"], self.span((*path, "acr")),
                                       Span(self.doc.file, *self.doc.node_span((*path, "acr")))))
        if "consent" in data:
            consent, at = data["consent"], (*path, "consent")
            lifetime, lifetime_span = None, self.span(at)
            if isinstance(consent, dict):  # {scopes: [...], for: D}
                consent, at = consent["scopes"], (*at, "scopes")
                if "for" in data["consent"]:
                    lifetime = _duration(data["consent"]["for"])
                    lifetime_span = self.span((*path, "consent", "for"))
            reqs.append(ConsentRequirement(tuple(consent), self.span((*path, "consent")),
                                           self.item_spans(at, len(consent)), lifetime, lifetime_span))
        return reqs

    def condition(self, data: dict[str, Any], path: Path_) -> Condition:
        (key, value), = data.items()
        at = (*path, key)
        if key == "not":
            return Not(self.condition(value, at), self.span(at))
        if key in ("all", "any"):
            operands = tuple(self.condition(c, (*at, i)) for i, c in enumerate(value))
            if len(operands) == 1:
                return operands[0]
            return (And if key == "all" else Or)(operands, operands[0].span)
        if key == "network_in":  # one entry or a list, as ``network in a, b`` in the DSL
            entries = [value] if isinstance(value, str) else list(value)
            spans = ((Span(self.doc.file, *self.doc.node_span(at)),) if isinstance(value, str)
                     else self.item_spans(at, len(entries)))
            return Test("network", NETWORK_SEPARATOR.join(entries), self.span(at),
                        Span(self.doc.file, *self.doc.node_span(at)), spans)
        return Test(_TEST_KEYS[key], value, self.span(at),  # type: ignore[arg-type]
                    Span(self.doc.file, *self.doc.node_span(at)))

    def trusted_issuer(self, data: dict[str, Any], path: Path_) -> TrustedIssuer:
        key = None
        if data.get("key"):
            (source, name), = data["key"].items()
            key = KeyRef(source, name, self.span((*path, "key")))
        lifetime = 0  # not written; written but no valid duration: INVALID_LIFETIME (reported)
        if "max_lifetime" in data:
            lifetime = _duration(data["max_lifetime"]) or INVALID_LIFETIME
        return TrustedIssuer(
            issuer=data.get("issuer", ""), key=key, alg=data.get("alg", ""),
            max_lifetime=lifetime,
            amr=tuple(data.get("amr", ())), span=self.span(path),
            issuer_span=self.span((*path, "issuer")), alg_span=self.span((*path, "alg")),
            amr_span=self.span((*path, "amr")),
            amr_spans=self.item_spans((*path, "amr"), len(data.get("amr", ()))),
        )

    def policy(self) -> Policy:
        data = self.doc.data
        session = data.get("session", {})
        whens = tuple(
            When(self.condition(w["if"], ("when", i, "if")),
                 canonical_requirements(self.requirements(w["require"], ("when", i, "require"))),
                 self.span(("when", i)))
            for i, w in enumerate(data.get("when", []))
        )
        trust = tuple(self.trusted_issuer(t, ("trust", "login_hint_token", i))
                      for i, t in enumerate(data.get("trust", {}).get("login_hint_token", [])))
        return Policy(
            name=data["policy"], clients=tuple(data.get("clients", ())),
            session=SessionRules(
                _duration(session.get("inactivity")), _duration(session.get("max_auth_age")),
                self.span(("session", "inactivity")), self.span(("session", "max_auth_age")),
            ),
            requirements=canonical_requirements(self.requirements(data.get("require", {}), ("require",))),
            on_unmet=data.get("on_unmet", "login_required"),
            trust=trust, whens=whens, span=self.span(()),
            clients_span=tuple(self.span(("clients", i)) for i in range(len(data.get("clients", ())))),
            on_unmet_span=self.span(("on_unmet",)),
        )


def _durations(data: Any) -> Iterator[tuple[Path_, Any]]:
    """Yield the path and value of each duration of a document, schema-valid or not."""
    if not isinstance(data, dict):
        return
    session = data.get("session")
    if isinstance(session, dict):
        for key in ("inactivity", "max_auth_age"):
            if key in session:
                yield ("session", key), session[key]
    requirements: list[tuple[Path_, Any]] = [(("require",), data.get("require"))]
    whens = data.get("when")
    if isinstance(whens, list):
        requirements += [(("when", i, "require"), w.get("require")) for i, w in enumerate(whens)
                         if isinstance(w, dict)]
    for at, reqs in requirements:
        if not isinstance(reqs, dict):
            continue
        for key, field in (("mfa", "within"), ("consent", "for")):
            if isinstance(reqs.get(key), dict) and field in reqs[key]:
                yield (*at, key, field), reqs[key][field]
    trust = data.get("trust")
    issuers = trust.get("login_hint_token") if isinstance(trust, dict) else None
    for i, issuer in enumerate(issuers if isinstance(issuers, list) else ()):
        if isinstance(issuer, dict) and "max_lifetime" in issuer:
            yield ("trust", "login_hint_token", i, "max_lifetime"), issuer["max_lifetime"]


def _duration(value: Any) -> int | None:
    """Return a duration's seconds; None when it is zero or no duration (reported where it is)."""
    if not isinstance(value, str) or not DURATION_RE.match(value):
        return None
    return parse_duration(value) or None


def _zero_durations(doc: YamlDocument) -> list[Diagnostic]:
    """Return an error for each zero duration: the schema's pattern admits ``0m``, the DSL does not."""
    return [doc.diagnostic(path, "E_DURATION", "a duration must be greater than zero")
            for path, value in _durations(doc.data)
            if isinstance(value, str) and DURATION_RE.match(value) and parse_duration(value) == 0]


def _only_durations_wrong(data: Any) -> bool:
    """Return whether a schema-invalid document would be valid with its durations fixed.

    Then the policy is built with those durations left out (as the DSL does),
    so the checks against the tenant still run: every error is reported at once.
    """
    bad = [path for path, value in _durations(data) if _duration(value) is None]
    if not bad:
        return False
    fixed = copy.deepcopy(data)
    for path in bad:
        node = fixed
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = "1s"
    return is_valid(fixed, "policy")


def parse_yaml_policies(text: str, file: str = "<string>") -> tuple[list[Policy], list[Diagnostic]]:
    """Return the policies in a YAML source (one per document) and every diagnostic.

    A document whose only mistakes are durations (zero, ``2w``, ``15``) is
    still built, without them, so that its other errors are reported too.
    """
    docs, diagnostics = load_yaml_documents(text, file)
    policies: list[Policy] = []
    for doc in docs:
        errors = list(schema_diagnostics(doc, "policy"))
        buildable = not errors or _only_durations_wrong(doc.data)
        diagnostics.extend(errors)
        diagnostics.extend(_zero_durations(doc))
        if buildable:
            policies.append(_Builder(doc).policy())
    return policies, diagnostics
