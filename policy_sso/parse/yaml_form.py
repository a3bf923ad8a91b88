"""YAML -> model: validate each document against ``schemas/policy.schema.json``,
then build the same :class:`~policy_sso.model.Policy` the DSL builds."""

from __future__ import annotations

from typing import Any

from policy_sso.diagnostics import Diagnostic
from policy_sso.model import (
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
from policy_sso.parse.yaml_source import Path_, YamlDocument, load_yaml_documents, schema_diagnostics

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
            within = parse_duration(mfa["within"]) if isinstance(mfa, dict) else None
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
                    lifetime = parse_duration(data["consent"]["for"])
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
        lifetime = data.get("max_lifetime")
        return TrustedIssuer(
            issuer=data.get("issuer", ""), key=key, alg=data.get("alg", ""),
            max_lifetime=parse_duration(lifetime) if lifetime else 0,
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
                parse_duration(session["inactivity"]) if "inactivity" in session else None,
                parse_duration(session["max_auth_age"]) if "max_auth_age" in session else None,
                self.span(("session", "inactivity")), self.span(("session", "max_auth_age")),
            ),
            requirements=canonical_requirements(self.requirements(data.get("require", {}), ("require",))),
            on_unmet=data.get("on_unmet", "login_required"),
            trust=trust, whens=whens, span=self.span(()),
            clients_span=tuple(self.span(("clients", i)) for i in range(len(data.get("clients", ())))),
            on_unmet_span=self.span(("on_unmet",)),
        )


def _duration_paths(data: dict[str, Any]) -> list[Path_]:
    """Return the paths of a schema-valid document's durations."""
    paths: list[Path_] = [("session", key) for key in data.get("session", {})]
    requirements = [(("require",), data.get("require", {}))]
    requirements += [(("when", i, "require"), w["require"]) for i, w in enumerate(data.get("when", []))]
    paths += [(*at, "mfa", "within") for at, reqs in requirements if isinstance(reqs.get("mfa"), dict)]
    paths += [(*at, "consent", "for") for at, reqs in requirements
              if isinstance(reqs.get("consent"), dict) and "for" in reqs["consent"]]
    paths += [("trust", "login_hint_token", i, "max_lifetime")
              for i, t in enumerate(data.get("trust", {}).get("login_hint_token", [])) if "max_lifetime" in t]
    return paths


def _zero_durations(doc: YamlDocument) -> list[Diagnostic]:
    """Return an error for each zero duration: the schema's pattern admits ``0m``, the DSL does not."""
    out = []
    for path in _duration_paths(doc.data):
        value = doc.data
        for key in path:
            value = value[key]
        if parse_duration(value) == 0:
            out.append(doc.diagnostic(path, "E_DURATION", "a duration must be greater than zero"))
    return out


def parse_yaml_policies(text: str, file: str = "<string>") -> tuple[list[Policy], list[Diagnostic]]:
    """Return the policies in a YAML source (one per document) and every diagnostic."""
    docs, diagnostics = load_yaml_documents(text, file)
    policies: list[Policy] = []
    for doc in docs:
        errors = list(schema_diagnostics(doc, "policy"))
        if not errors:
            errors = _zero_durations(doc)
        diagnostics.extend(errors)
        if not errors:
            policies.append(_Builder(doc).policy())
    return policies, diagnostics
