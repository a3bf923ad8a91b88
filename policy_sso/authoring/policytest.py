"""Policy test cases: session + request -> expected outcome and reasons (like ``opa test``).

A test file (``*.test.yaml``, ``schemas/policytest.schema.json``) holds cases
against a tenant::

    tenant: ..                    # optional: default is the nearest dir with tenant.yaml
    at: 2026-01-01T12:00:00Z      # optional: the evaluation time (default 1767268800)
    sessions:                     # optional: named fixtures a case may refer to
      pwd_only: {subject: u-alice, events: [{method: pwd, at: -1h}]}
    cases:
      - name: payments needs mfa
        client: payments-web
        session: pwd_only                                # a name, a fixture, or null
        request: {scope: openid profile, prompt: none}   # or a query string
        expect:
          outcome: interaction_required
          reasons: [mfa_required, acr_insufficient]      # every reason code, any order

``session: null`` means no session. ``expect.reasons`` may be omitted to check
the outcome only; ``[]`` asserts there are none. ``ip:`` is the client
address (what ``when network in`` tests); absent, it is unknown.

A case with a ``where:`` table runs once per row. Each ``{{column}}`` in the
case's name, client, session, request, at and expect is replaced by the row's
value: a string that is exactly one placeholder takes the value whole (a list,
a mapping, null), a placeholder inside a longer string (or a mapping key) is
spliced in as text.
Every placeholder must be a column and every column must be used. A name
without placeholders gets the row appended (``[session=pwd_only]``).

The same format drives the decision compliance suite in ``tests/cases/`` and
``policy-sso test``. :class:`Coverage` records which requirement checks and
``when`` blocks the cases exercised (defined in docs/authoring.md).
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from jsonschema import Draft202012Validator

from policy_sso import checks as C  # noqa: N812 - the check table, as compile.py reads it
from policy_sso.compile import compile_guard, compile_policy
from policy_sso.decision import Decision
from policy_sso.diagnostics import Diagnostic, render_text
from policy_sso.errors import ConfigError, OAuthError
from policy_sso.model import Condition, Policy, Span
from policy_sso.networks import client_ip
from policy_sso.parse.yaml_source import (
    Path_,
    YamlDocument,
    load_schema,
    load_yaml_documents,
    schema_diagnostics,
)
from policy_sso.request import AuthRequest
from policy_sso.sessions.fixture import FixtureError, ended_from_fixture, parse_time, session_from_fixture
from policy_sso.sessions.model import Session
from policy_sso.tenant import Tenant, display_path, find_tenant_dir, load_tenant, read_source

DEFAULT_AT = 1767268800  # 2026-01-01T12:00:00Z: fixed, so relative times are reproducible
TEST_SUFFIXES = (".test.yaml", ".test.yml")
PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_SUBSTITUTED = ("name", "client", "session", "request", "at", "expect", "ip")


class CaseError(ValueError):
    """A test file or case is malformed; ``diagnostics`` say where, the message renders them."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__(render_text(diagnostics).rstrip("\n"))
        self.diagnostics = diagnostics


@dataclass(frozen=True)
class Case:
    """One test case (one row of a ``where`` table), its inputs still as written."""

    name: str
    file: str
    line: int
    client: str
    session: Any
    request: dict[str, str]
    outcome: str
    reasons: tuple[str, ...] | None
    at: int
    row: tuple[tuple[str, Any], ...] = ()
    client_col: int = 1  # where ``client:`` is written (on ``line`` or, in a table row, its column)
    client_line: int = 0
    ip: str | None = None  # the client address (``ip:``); None: unknown


@dataclass
class CaseResult:
    """The outcome of running one case, with the inputs it was evaluated on."""

    case: Case
    decision: Decision | None
    error: str = ""
    mismatches: list[str] = field(default_factory=list)
    request: AuthRequest | None = None
    session: Session | None = None

    @property
    def passed(self) -> bool:
        """Return whether the decision matched the expectation."""
        return not self.error and not self.mismatches


# --- loading ------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """Return ``value`` with YAML timestamps as ISO text (the schema speaks JSON types)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _request_params(raw: Any) -> dict[str, str]:
    if raw is None:
        return {"scope": "openid"}
    if isinstance(raw, str):
        return dict(parse_qsl(raw, keep_blank_values=True))
    return {str(k): " ".join(map(str, v)) if isinstance(v, list) else str(v) for k, v in raw.items()}


class _Substitution:
    """Fills one ``where`` row into a case, remembering which columns were used."""

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.used: set[str] = set()
        self.problems: list[str] = []

    def fill(self, value: Any) -> Any:
        if isinstance(value, dict):  # keys too: consents are keyed by client_id
            return {PLACEHOLDER_RE.sub(lambda m: self._text(m.group(1)), k): self.fill(v)
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        if not isinstance(value, str):
            return value
        whole = PLACEHOLDER_RE.fullmatch(value.strip())
        if whole:
            return copy.deepcopy(self._value(whole.group(1)))
        return PLACEHOLDER_RE.sub(lambda m: self._text(m.group(1)), value)

    def _value(self, name: str) -> Any:
        if name not in self.row:
            self.problems.append(f"{{{{{name}}}}} is not a column of the where table "
                                 f"(columns: {', '.join(sorted(self.row))})")
            return None
        self.used.add(name)
        return self.row[name]

    def _text(self, name: str) -> str:
        value = self._value(name)
        if isinstance(value, dict | list):
            self.problems.append(f"{{{{{name}}}}} is a {type(value).__name__} and cannot be spliced "
                                 "into text: write the placeholder as the whole value")
            return ""
        return "" if value is None else str(value)


def _placeholders(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set().union(*map(_placeholders, value.values()), *map(_placeholders, value))
    if isinstance(value, list):
        return set().union(*map(_placeholders, value))
    return set(PLACEHOLDER_RE.findall(value)) if isinstance(value, str) else set()


def _row_text(row: dict[str, Any]) -> str:
    def short(v: Any) -> str:
        text = v if isinstance(v, str) else repr(v)
        return text if len(text) <= 24 else text[:21] + "..."
    return ", ".join(f"{k}={short(v)}" for k, v in row.items())


@cache
def _concrete_validator() -> Draft202012Validator:
    """Return the validator of a case after its row is filled in (``$defs/concrete_case``)."""
    schema = load_schema("policytest")
    return Draft202012Validator({"$id": schema["$id"], "$defs": schema["$defs"],
                                 "$ref": "#/$defs/concrete_case"})


class _Loader:
    """Builds the cases of one schema-valid document, collecting positioned diagnostics."""

    def __init__(self, doc: YamlDocument, file: str) -> None:
        self.doc, self.file = doc, file
        self.errors: list[Diagnostic] = []
        self.sessions: dict[str, Any] = doc.data.get("sessions", {})
        self.at = DEFAULT_AT
        self.concrete = _concrete_validator()

    def error(self, path: Path_, message: str, hint: str = "", code: str = "E_TEST") -> None:
        self.errors.append(self.doc.diagnostic(path, code, message, hint))

    def time(self, value: Any, default: int, path: Path_) -> int:
        try:
            return parse_time(value, default, "at")
        except FixtureError as err:
            self.error(path, str(err))
            return default

    def cases(self) -> list[Case]:
        data = self.doc.data
        if "at" in data:
            self.at = self.time(data["at"], DEFAULT_AT, ("at",))
        out: list[Case] = []
        for i, raw in enumerate(data["cases"]):
            rows = raw.get("where")
            if rows is None:
                unused = _placeholders({k: raw[k] for k in _SUBSTITUTED if k in raw})
                if unused:
                    self.error(("cases", i), f"{{{{{sorted(unused)[0]}}}}} is used but the case has "
                               "no where table", "add where: [{...}, ...] or remove the placeholder")
                    continue
                rows = [None]
            for j, row in enumerate(rows):
                where: Path_ = ("cases", i, "where", j) if row is not None else ("cases", i)
                case = self.case(raw, row, where, i)
                if case is not None:
                    out.append(case)
        return out

    def case(self, raw: dict[str, Any], row: dict[str, Any] | None, where: Path_, index: int) -> Case | None:
        """Return one case (one row filled in), or None after recording why it is malformed."""
        sessions, at = self.sessions, self.at
        body = {k: raw[k] for k in _SUBSTITUTED if k in raw}
        name = str(raw.get("name", f"case {index}"))
        if row is not None:
            fill = _Substitution(row)
            body = fill.fill(body)
            unused = set(row) - fill.used
            for problem in fill.problems:
                self.error(where, problem)
            if unused:
                self.error(where, f"column {sorted(unused)[0]!r} is not used by the case",
                           "use it as {{" + sorted(unused)[0] + "}} or drop it from the row")
            if fill.problems or unused:
                return None
            name = str(body.get("name", name))
            if not _placeholders(raw.get("name", "")):
                name += f" [{_row_text(row)}]"
        problems = sorted(self.concrete.iter_errors(body), key=lambda e: list(e.absolute_path))
        if problems:
            first = problems[0]
            at_path = "/".join(map(str, first.absolute_path)) or "the case"
            self.error(where, f"after filling in the row: {first.message} (at {at_path})")
            return None
        session = body.get("session")
        if isinstance(session, str):
            if session not in sessions:
                self.error(where if row is not None else (*where, "session"),
                           f"no session named {session!r} under sessions:",
                           "named sessions: " + (", ".join(sorted(sessions)) or "none"))
                return None
            session = sessions[session]
        case_at = self.time(body["at"], at, (*where, "at")) if "at" in body else at
        try:
            session_from_fixture(session, case_at)
        except (FixtureError, TypeError, AttributeError, OverflowError) as err:
            self.error(where if row is not None or isinstance(body.get("session"), str)
                       else (*where, "session"), f"session: {err}")
            return None
        ip = body.get("ip")
        if ip is not None and client_ip(ip) is None:
            self.error(where if row is not None else (*where, "ip"), f"ip: {ip!r} is not an IP address",
                       "e.g. ip: 10.1.2.3 or ip: 2001:db8::1")
            return None
        reasons = body["expect"].get("reasons")
        line, _ = self.doc.position(where)
        client_line, client_col = self.doc.position((*where, "client") if "client" in raw else where)
        return Case(
            name=name, file=self.file, line=line, client=body["client"], session=session,
            request=_request_params(body.get("request")), outcome=body["expect"]["outcome"],
            reasons=tuple(reasons) if reasons is not None else None,
            at=case_at, row=tuple(row.items()) if row is not None else (),
            client_col=client_col, client_line=client_line, ip=ip,
        )


def _tenant_dir(path: Path, doc: YamlDocument) -> tuple[Path | None, list[Diagnostic]]:
    if doc.data.get("tenant"):
        tenant_dir = path.parent / doc.data["tenant"]
        if not (tenant_dir / "tenant.yaml").is_file():
            return None, [doc.diagnostic(("tenant",), "E_TEST", f"{display_path(tenant_dir)} holds no "
                                         "tenant.yaml", "tenant: is relative to this file")]
        return tenant_dir, []
    tenant_dir = find_tenant_dir(path)
    if tenant_dir is None:
        return None, [Diagnostic(doc.file, 1, 1, "E_TEST", "no tenant for this test file",
                                 "set tenant: DIR or put the file below a tenant directory")]
    return tenant_dir, []


def load_cases(path: Path) -> tuple[Path, list[Case]]:
    """Return the tenant directory and the cases of a test file; raise CaseError with diagnostics."""
    text, errors = read_source(path)
    if text is None:
        raise CaseError(errors)
    docs, errors = load_yaml_documents(text, display_path(path))
    if errors:
        raise CaseError(errors)
    if len(docs) != 1:
        raise CaseError([Diagnostic(display_path(path), 1, 1, "E_YAML",
                                    "expected exactly one YAML document")])
    doc = docs[0]
    doc.data = _plain(doc.data)
    errors = list(schema_diagnostics(doc, "policytest"))
    if errors:
        raise CaseError(errors)
    tenant_dir, errors = _tenant_dir(path, doc)
    loader = _Loader(doc, str(path))
    cases = loader.cases()
    errors += loader.errors
    if errors or tenant_dir is None:
        raise CaseError(errors)
    return tenant_dir, cases


def find_test_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    """Return the test files named or found below directories, and paths that do not exist."""
    found: dict[Path, None] = {}
    missing: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for candidate in sorted(path.rglob("*")):
                if candidate.name.endswith(TEST_SUFFIXES) and candidate.is_file():
                    found[candidate] = None
        elif path.is_file():
            found[path] = None
        else:
            missing.append(str(raw))
    return list(found), missing


# --- running ------------------------------------------------------------------------

def run_case(tenant: Tenant, case: Case) -> CaseResult:
    """Evaluate one case against a tenant and compare with its expectation."""
    try:
        session = session_from_fixture(case.session, case.at)
        hinted = tenant.resolve_user(case.request.get("login_hint"))
        request = AuthRequest.from_params(
            case.client, case.request, id_token_hint_sub=case.request.get("id_token_hint_sub"),
            login_hint_sub=hinted.sub if hinted else case.request.get("login_hint"),
            client_ip=client_ip(case.ip))
    except (FixtureError, TypeError, AttributeError, OverflowError) as err:
        return CaseResult(case, None, f"bad session fixture: {err}")
    except OAuthError as err:
        return _compare(CaseResult(case, Decision(err.error, (), None, "")))
    decision = tenant.decide(request, session, case.at)
    try:
        ended = ended_from_fixture(case.session, case.at) if session is None else None
    except FixtureError as err:
        return CaseResult(case, None, f"bad session fixture: {err}")
    if ended is not None:  # why the session ended, as the store would say (issue 13)
        decision = tenant.evaluator(case.client).ended(ended)
    return _compare(CaseResult(case, decision, request=request, session=session))


def _compare(result: CaseResult) -> CaseResult:
    case, decision = result.case, result.decision
    assert decision is not None
    if decision.outcome != case.outcome:
        result.mismatches.append(f"outcome: expected {case.outcome}, got {decision.outcome}")
    if case.reasons is not None and Counter(case.reasons) != Counter(decision.codes):
        result.mismatches.append(
            f"reasons: expected {sorted(case.reasons)}, got {sorted(decision.codes)}")
    return result


def run_file(path: Path, tenants: dict[Path, Tenant] | None = None) -> list[CaseResult]:
    """Run every case of a test file (tenants are loaded once and cached in ``tenants``).

    Raises CaseError for a malformed file and ConfigError for a tenant that does not load.
    """
    tenants = {} if tenants is None else tenants
    tenant_dir, cases = load_cases(path)
    key = tenant_dir.resolve()
    if key not in tenants:
        tenants[key] = load_tenant(tenant_dir)
    unknown = [unknown_client(case, tenants[key]) for case in cases if not tenants[key].governs(case.client)]
    if unknown:
        raise CaseError(unknown)
    return [run_case(tenants[key], case) for case in cases]


# --- coverage -----------------------------------------------------------------------

def condition_holds(cond: Condition, r: AuthRequest, s: Session,
                    named: Mapping[str, tuple[str, ...]] | None = None) -> bool:
    """Return whether a ``when`` condition holds for a request and session, by the evaluator's own code.

    ``named`` are tenant.yaml's networks (an unknown client address makes a
    network test hold whenever that lets the guard hold, as in ``decide``).
    """
    return _guard(cond, tuple(sorted((named or {}).items())))(r, s)


Guard = Callable[[AuthRequest, Session], bool]


@lru_cache(maxsize=4096)  # a tenant's when conditions, each generated once
def _guard(cond: Condition, named: tuple[tuple[str, tuple[str, ...]], ...]) -> Guard:
    return compile_guard(cond, dict(named))


Predicate = Callable[[AuthRequest, Session, int], bool]


def check_predicate(check: C.Check) -> Predicate:
    """Return a function true when ``check`` fails, built from its ``fails``/``consts`` like compile.py."""
    names = {f"k{i}": value for i, value in enumerate(check.consts)}
    expression = check.fails.format(*names)
    code = compile(f"lambda r, s, now, m, g: ({expression})", f"<coverage {check.reason}>", "eval")
    # Same trust as compile.py: the expression comes from the check table, values are bound by name.
    fails = eval(code, {**names, "EMPTY": C.EMPTY})  # noqa: S307

    def predicate(r: AuthRequest, s: Session, now: int) -> bool:
        return bool(fails(r, s, now, s.methods, s.consents.get(r.client_id, C.EMPTY)))

    return predicate


@dataclass(frozen=True)
class CoverageItem:
    """A requirement check or ``when`` block of a policy that tests should exercise."""

    policy: str
    kind: str  # "check" or "when"
    span: Span
    label: str  # the reason code of a check; "when" for a when block

    @property
    def source(self) -> str:
        """Return ``FILE:LINE`` of the statement."""
        return f"{self.span.file}:{self.span.line}"


def _policy_spans(policy: Policy) -> set[Span]:
    spans = {req.span for req in policy.all_requirements()}
    if policy.session.inactivity is not None:
        spans.add(policy.session.inactivity_span)
    if policy.session.max_auth_age is not None:
        spans.add(policy.session.max_auth_age_span)
    return spans


class Coverage:
    """Which requirement checks failed and which ``when`` guards held, per policy.

    A check counts as covered once a case with a session, evaluated under the
    check's policy, made it fail while its ``when`` guard (if any) held: the
    test shows the requirement is enforced. A ``when`` block counts once its
    guard held in such a case. Items are the checks compiled from the
    policy's ``require`` statements (top level and in ``when`` blocks) and its
    ``session`` limits, and its ``when`` blocks.
    """

    def __init__(self) -> None:
        self.items: dict[tuple, CoverageItem] = {}
        self.hits: set[tuple] = set()
        self.files: dict[str, str] = {}  # policy -> file
        self._tenants: set[int] = set()
        self._predicates: dict[int, list[tuple[tuple, Predicate, Condition | None]]] = {}

    @staticmethod
    def _check_key(policy: str, check: C.Check) -> tuple:
        return (policy, "check", check.reason, tuple(check.span))

    def add_tenant(self, tenant: Tenant) -> None:
        """Register every policy of a tenant: untested policies count as uncovered."""
        if id(tenant) in self._tenants:
            return
        self._tenants.add(id(tenant))
        for policy in tenant.policies.values():
            self.files[policy.name] = policy.span.file
            spans = _policy_spans(policy)
            for guarded in compile_policy(policy, tenant.settings).checks:
                if guarded.check.span in spans:
                    key = self._check_key(policy.name, guarded.check)
                    self.items[key] = CoverageItem(policy.name, "check", guarded.check.span,
                                                   guarded.check.reason)
            for when in policy.whens:
                key = (policy.name, "when", "when", tuple(when.span))
                self.items[key] = CoverageItem(policy.name, "when", when.span, "when")

    def record(self, tenant: Tenant, result: CaseResult) -> None:
        """Mark what one evaluated case exercised."""
        r, s = result.request, result.session
        if r is None or s is None:
            return  # no session: the policy's checks were never reached
        compiled = tenant.evaluator(r.client_id)
        name = compiled.policy.name
        named = tenant.settings.networks
        if id(compiled) not in self._predicates:
            spans = _policy_spans(compiled.policy)
            self._predicates[id(compiled)] = [
                (self._check_key(name, g.check), check_predicate(g.check), g.when)
                for g in compiled.checks if g.check.span in spans]
        for key, fails, when in self._predicates[id(compiled)]:
            if key not in self.hits and (when is None or condition_holds(when, r, s, named)) \
                    and fails(r, s, result.case.at):
                self.hits.add(key)
        for when_block in compiled.policy.whens:
            if condition_holds(when_block.condition, r, s, named):
                self.hits.add((name, "when", "when", tuple(when_block.span)))

    def report(self) -> list[tuple[str, list[tuple[CoverageItem, bool]]]]:
        """Return, per policy (by name), its items in source order and whether each was covered."""
        by_policy: dict[str, list[tuple[CoverageItem, bool]]] = {}
        for key, item in self.items.items():
            by_policy.setdefault(item.policy, []).append((item, key in self.hits))
        return [(name, sorted(items, key=lambda pair: (tuple(pair[0].span), pair[0].kind)))
                for name, items in sorted(by_policy.items())]

    @property
    def percent(self) -> float:
        """Return the share of covered items (100 when there are none)."""
        if not self.items:
            return 100.0
        return 100.0 * len(self.hits & set(self.items)) / len(self.items)


@dataclass
class TestRun:
    """Every result of a ``policy-sso test`` run, the files that failed to load, and coverage."""

    results: list[tuple[CaseResult, Tenant]] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    coverage: Coverage = field(default_factory=Coverage)

    @property
    def passed(self) -> int:
        """Return the number of passing cases."""
        return sum(r.passed for r, _ in self.results)

    @property
    def failed(self) -> int:
        """Return the number of failing cases."""
        return len(self.results) - self.passed


def unknown_client(case: Case, tenant: Tenant) -> Diagnostic:
    """Return the error for a case whose client the tenant does not register."""
    registry = display_path(tenant.directory / "clients.yaml")
    return Diagnostic(display_path(Path(case.file)), case.client_line or case.line, case.client_col,
                      "E_UNKNOWN_CLIENT", f"client {case.client!r} is not registered in {registry}",
                      tenant.client_hint(case.client))


def run_paths(files: Iterable[Path]) -> TestRun:
    """Run every case of the test files, collecting load errors and coverage."""
    run = TestRun()
    tenants: dict[Path, Tenant] = {}
    broken: set[Path] = set()
    for path in files:
        try:
            tenant_dir, cases = load_cases(path)
        except CaseError as err:
            run.diagnostics += err.diagnostics
            continue
        key = tenant_dir.resolve()
        if key in broken:
            continue
        if key not in tenants:
            try:
                tenants[key] = load_tenant(tenant_dir)
            except ConfigError as err:
                broken.add(key)
                run.diagnostics += err.diagnostics
                continue
        tenant = tenants[key]
        run.coverage.add_tenant(tenant)
        for case in cases:
            if not tenant.governs(case.client):  # never evaluated against some default (SPEC §7)
                run.diagnostics.append(unknown_client(case, tenant))
                continue
            result = run_case(tenant, case)
            run.results.append((result, tenant))
            run.coverage.record(tenant, result)
    return run
