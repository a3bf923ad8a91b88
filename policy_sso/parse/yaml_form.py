"""YAML -> model: validate each document against ``schemas/policy.schema.json``,
then build the same :class:`~policy_sso.model.Policy` the DSL builds."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jsonschema.exceptions import ValidationError

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
    MAX_DEPTH,
    Path_,
    YamlDocument,
    is_valid,
    load_schema,
    load_yaml_documents,
    schema_diagnostics,
    validator,
)

_TEST_KEYS = {"scope_has": "scope", "acr_values_has": "acr_values", "prompt_is": "prompt",
              "client_is": "client", "session_amr_has": "session_amr"}


_TRUST_FIELDS = frozenset({"issuer", "key", "alg", "max_lifetime", "amr"})


class _Builder:
    """Builds the model from a schema-valid document, spans from its positions.

    ``left_out``: per mapping, the keys of members the schema rejected and
    that were left out of the document (see :func:`_well_formed_part`).
    """

    def __init__(self, doc: YamlDocument, left_out: dict[Path_, set[str | int]] | None = None) -> None:
        self.doc = doc
        self.left_out = left_out or {}

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
        # a field written wrong is reported by the schema, not again as missing; a misspelt key
        # may be any of them
        left_out = {str(k) for k in self.left_out.get(path, ())}
        unchecked = frozenset(_TRUST_FIELDS if left_out - _TRUST_FIELDS else left_out)
        return TrustedIssuer(
            issuer=data.get("issuer", ""), key=key, alg=data.get("alg", ""),
            max_lifetime=lifetime,
            amr=tuple(data.get("amr", ())), span=self.span(path),
            issuer_span=self.span((*path, "issuer")), alg_span=self.span((*path, "alg")),
            amr_span=self.span((*path, "amr")),
            amr_spans=self.item_spans((*path, "amr"), len(data.get("amr", ()))),
            unchecked=unchecked,
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


def _drops(error: ValidationError) -> Iterator[Path_]:
    """Yield the paths to leave out so that ``error`` goes: the unknown keys, the repeated items,
    else the offending node itself (the object that lacks a required key)."""
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        yield from ((*path, key) for key in error.instance if key not in allowed)
    elif error.validator == "uniqueItems" and isinstance(error.instance, list):
        seen: list[Any] = []
        for i, item in enumerate(error.instance):
            if item in seen:
                yield (*path, i)
            seen.append(item)
    else:
        yield path


# A guard only: a parent a removal breaks goes in the same round (see _with_broken_parents), so
# a document of this schema takes one round of removals, then one validation that finds none.
_MAX_PRUNING_ROUNDS = 3 * MAX_DEPTH


def _well_formed_part(doc: YamlDocument) -> _Pruned | None:
    """Return the document without its members the schema rejects, or None when nothing is left
    to build (no valid name, or not a mapping).

    Members are left out (never changed), so the checks that follow see only
    what is written as the schema wants it. A parent a removal leaves
    invalid (an ``if:`` with no test, an ``all: []``, a ``when`` with no
    ``if``) goes in the same round, and so on upward: a round validates the
    whole document, so one round a nesting level made a file of deep
    conditions take 15 times as long to read. Durations stay as written:
    the builder leaves an invalid one out, as the DSL does.
    """
    pruned = _Pruned(doc, {})
    for _ in range(_MAX_PRUNING_ROUNDS):
        data = pruned.doc.data
        fixed = copy.deepcopy(data)  # each invalid duration valid, so its error drops nothing
        for path, value in _durations(data):
            if _duration(value) is None:
                _set(fixed, path, "1s")
        if is_valid(fixed, "policy"):
            return pruned
        drops = {p for err in validator("policy").iter_errors(fixed) for p in _drops(err)}
        drops = _with_broken_parents(fixed, drops, "policy")
        if () in drops or not drops:
            return None
        pruned = pruned.without(drops)
    return None


# Keywords by which a schema applies other schemas to the same node: where one is met, which
# constraints hold at a path is no longer known from the path alone.
_IN_PLACE = frozenset({"allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas",
                       "$dynamicRef", "unevaluatedProperties", "unevaluatedItems"})


def _with_broken_parents(data: Any, drops: set[Path_], schema_name: str) -> set[Path_]:
    """Return ``drops`` with each parent their removal leaves invalid, deepest first, upward.

    A removal breaks its parent when the parent then misses a key it
    requires, or has fewer members than its minProperties or minItems. The
    next round's validation would report such a parent at the parent and
    leave it out; it is left out now instead, with the same result. Where
    the schema at a path is not known from the path alone (under a oneOf)
    nothing is added: the next round finds it, as it finds anything else a
    removal may break (a oneOf or a uniqueItems further up). With the
    policy schema no removal happens under either, so one round does.
    """
    result = set(drops)
    removed: dict[Path_, set[str | int]] = {}  # per parent, its members left out
    for path in drops:
        if path:
            removed.setdefault(path[:-1], set()).add(path[-1])
    pending: dict[int, set[Path_]] = {}  # parents to check, by depth
    for parent in removed:
        pending.setdefault(len(parent), set()).add(parent)
    for depth in range(max(pending, default=-1), -1, -1):
        for parent in pending.get(depth, ()):
            if parent in result:
                continue
            schemas = _schemas_at(schema_name, tuple(0 if isinstance(k, int) else k for k in parent))
            if schemas is None or not _broken(_node(data, parent), schemas, removed[parent]):
                continue
            result.add(parent)
            if parent:
                removed.setdefault(parent[:-1], set()).add(parent[-1])
                pending.setdefault(depth - 1, set()).add(parent[:-1])
    return result


def _broken(node: Any, schemas: tuple[dict[str, Any], ...], removed: set[str | int]) -> bool:
    """Return whether ``node`` without its members ``removed`` misses a required key, or has
    fewer members than one of ``schemas`` asks (the constraints a removal can break)."""
    if isinstance(node, dict):
        kept = node.keys() - removed
        return any(len(kept) < s.get("minProperties", 0) or not kept >= set(s.get("required", ()))
                   for s in schemas)
    if isinstance(node, list):
        return any(len(node) - len(removed) < s.get("minItems", 0) for s in schemas)
    return False


@lru_cache(maxsize=4096)  # paths seen: conditions may nest many ways
def _schemas_at(schema_name: str, path: Path_) -> tuple[dict[str, Any], ...] | None:
    """Return the schemas that apply to the node at ``path`` (each list index 0: ``items``
    applies alike to all), following ``properties``, ``items`` and local ``$ref`` from the
    named schema's root; None when anything else decides it."""
    root = load_schema(schema_name)
    schemas = _applying(root, root)
    if schemas is None:
        return None
    for key in path:
        children: list[dict[str, Any]] = []
        for schema in schemas:
            if isinstance(key, int):
                if "prefixItems" in schema:
                    return None
                child = schema.get("items", True)
            elif key in schema.get("properties", {}):
                child = schema["properties"][key]
            elif "patternProperties" in schema:
                return None
            else:
                child = schema.get("additionalProperties", True)
            more = _applying(root, child)
            if more is None:
                return None
            children += more
        schemas = children
    return tuple(schemas)


def _applying(root: dict[str, Any], schema: Any, hops: int = 0) -> list[dict[str, Any]] | None:
    """Return ``schema`` and the schemas its local ``$ref`` chain applies with it (none for a
    boolean schema), or None when it applies others in another way."""
    if not isinstance(schema, dict):
        return []
    if _IN_PLACE & schema.keys() or hops > 16:
        return None
    ref = schema.get("$ref")
    if ref is None:
        return [schema]
    # "#/$defs/x" as written; fastjsonschema rewrites it in place, in the cached schema, to
    # the same with the schema's $id in front
    base, hash_, pointer = ref.partition("#") if isinstance(ref, str) else ("?", "", "")
    if not hash_ or base not in ("", root.get("$id")):
        return None
    target: Any = root
    for token in filter(None, pointer.split("/")):
        part = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(target, dict) or part not in target:
            return None
        target = target[part]
    more = _applying(root, target, hops + 1)
    return None if more is None else [schema, *more]


def _node(data: Any, path: Path_) -> Any:
    for key in path:
        data = data[key]
    return data


def _set(data: Any, path: Path_, value: Any) -> None:
    _node(data, path[:-1])[path[-1]] = value


@dataclass
class _Pruned:
    """A document with members left out, and per mapping the keys left out of it (by new paths)."""

    doc: YamlDocument
    left_out: dict[Path_, set[str | int]]

    def without(self, drops: set[Path_]) -> _Pruned:
        """Return this document without the nodes at ``drops``; list items after one renumbered,
        with every position, end and left-out record following its node to its new path."""
        old = self.doc
        new = YamlDocument(old.file, None, {}, {}, {}, {})
        left_out: dict[Path_, set[str | int]] = {}

        def walk(value: Any, at: Path_, to: Path_) -> Any:
            for table, source in ((new.positions, old.positions), (new.ends, old.ends),
                                  (new.key_positions, old.key_positions), (new.key_ends, old.key_ends)):
                if at in source:
                    table[to] = source[at]
            if at in self.left_out:
                left_out.setdefault(to, set()).update(self.left_out[at])
            if isinstance(value, dict):
                out: dict[str, Any] = {}
                for key, item in value.items():
                    if (*at, key) in drops:
                        left_out.setdefault(to, set()).add(key)
                    else:
                        out[key] = walk(item, (*at, key), (*to, key))
                return out
            if isinstance(value, list):
                kept: list[Any] = []
                for i, item in enumerate(value):
                    if (*at, i) in drops:
                        left_out.setdefault(to, set()).add(i)
                    else:
                        kept.append(walk(item, (*at, i), (*to, len(kept))))
                return kept
            return value

        new.data = walk(old.data, (), ())
        return _Pruned(new, left_out)


def parse_yaml_policies(text: str, file: str = "<string>") -> tuple[list[Policy], list[Diagnostic]]:
    """Return the policies in a YAML source (one per document) and every diagnostic.

    A document with schema errors is still built from its well-formed
    members (invalid durations left out, as the DSL does; a misspelt key, a
    value of the wrong type left out), so the checks against the tenant run
    on the rest: every error of the file is reported in one run, each once.
    """
    docs, diagnostics = load_yaml_documents(text, file)
    policies: list[Policy] = []
    for doc in docs:
        errors = list(schema_diagnostics(doc, "policy"))
        diagnostics.extend(errors)
        diagnostics.extend(_zero_durations(doc))
        if not errors:
            policies.append(_Builder(doc).policy())
        elif (part := _well_formed_part(doc)) is not None:
            policies.append(_Builder(part.doc, part.left_out).policy())
    return policies, diagnostics
