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
from policy_sso.diagnostics import Diagnostic, did_you_mean, render_text
from policy_sso.errors import ConfigError, InvalidRequest, OAuthError
from policy_sso.model import Condition, Policy, Span
from policy_sso.networks import client_ip
from policy_sso.parse.schema_errors import explain_schema_error
from policy_sso.parse.yaml_source import (
    Path_,
    YamlDocument,
    is_valid,
    load_schema,
    load_yaml_documents,
    validator,
)
from policy_sso.request import PROMPT_VALUES, AuthRequest
from policy_sso.sessions.fixture import FixtureError, ended_from_fixture, parse_time, session_from_fixture
from policy_sso.sessions.model import Session
from policy_sso.tenant import Tenant, display_path, find_tenant_dir, load_tenant, read_source

DEFAULT_AT = 1767268800  # 2026-01-01T12:00:00Z: fixed, so relative times are reproducible
TEST_SUFFIXES = (".test.yaml", ".test.yml")
PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_SUBSTITUTED = ("name", "client", "session", "request", "at", "expect", "ip")
TIME_HINT = "write epoch seconds, ISO 8601 (2026-01-01T12:00:00Z) or an offset such as -1h, -90s, -2d"
_FIXTURE_PATH_RE = re.compile(r"^(?:session: )?([A-Za-z_][\w-]*(?:\[\d+\]|\.[\w:-]+)*): ")


def _fixture_path(message: str) -> Path_:
    """Return the path inside a session fixture a FixtureError names (``events[0].at: …``)."""
    match = _FIXTURE_PATH_RE.match(message)
    if not match:
        return ()
    return tuple(int(part[1:-1]) if part.startswith("[") else part
                 for part in re.findall(r"\[\d+\]|[^.\[\]]+", match.group(1)))


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
    client_end_col: int = 0  # just past the client's value when on one line (the caret's span)


@dataclass(frozen=True)
class ClientUse:
    """Where a case names its client (also a case that is not run): checked against the tenant."""

    client: str
    file: str
    line: int
    col: int
    end_col: int = 0


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
        self.problems: list[tuple[str, str]] = []  # (message, hint)

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
            self.problems.append((f"{{{{{name}}}}} is not a column of the where table "
                                  f"(columns: {', '.join(sorted(self.row))})",
                                  did_you_mean(name, self.row) or f"add {name}: to the row"))
            return None
        self.used.add(name)
        return self.row[name]

    def _text(self, name: str) -> str:
        value = self._value(name)
        if isinstance(value, dict | list):
            self.problems.append((f"{{{{{name}}}}} is a {type(value).__name__} and cannot be spliced "
                                  "into text", "write the placeholder as the whole value"))
            return ""
        return "" if value is None else str(value)


def _placeholders(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set().union(*map(_placeholders, value.values()), *map(_placeholders, value))
    if isinstance(value, list):
        return set().union(*map(_placeholders, value))
    return set(PLACEHOLDER_RE.findall(value)) if isinstance(value, str) else set()


def _walk(node: Any, path: Iterable[Any]) -> Any:
    """Return the value at ``path`` in ``node``, or at the deepest part of it that exists."""
    for key in path:
        if (isinstance(node, dict) and key in node) or \
                (isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)):
            node = node[key]
        else:
            break
    return node


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
    """Builds the cases of one document, collecting every positioned diagnostic it can find.

    Parts the schema already rejected (``broken``: paths of schema errors) are
    not checked again, but the rest of each case still is: one run reports every
    mistake of a file, like the validator.
    """

    def __init__(self, doc: YamlDocument, file: str, broken: Iterable[Path_] = ()) -> None:
        self.doc, self.file = doc, file
        self.errors: list[Diagnostic] = []
        self.broken = list(broken)
        data = doc.data if isinstance(doc.data, dict) else {}
        sessions = data.get("sessions")
        self.sessions: dict[str, Any] = sessions if isinstance(sessions, dict) else {}
        self.at = DEFAULT_AT
        self.concrete = _concrete_validator()
        self.clients: list[ClientUse] = []  # every client a case names, even in a case with errors

    def error(self, path: Path_, message: str, hint: str = "", code: str = "E_TEST", *,
              at_key: bool = False) -> None:
        diagnostic = self.doc.diagnostic(path, code, message, hint, at_key=at_key)
        if diagnostic not in self.errors:  # a named session's mistake, met by several cases
            self.errors.append(diagnostic)

    def is_broken(self, path: Path_) -> bool:
        """Return whether the schema reported an error at ``path`` or inside it."""
        return any(p[:len(path)] == path for p in self.broken)

    def time(self, value: Any, default: int, path: Path_) -> int:
        try:
            return parse_time(value, default, "at")
        except FixtureError as err:
            self.error(path, str(err), TIME_HINT)
            return default

    def cases(self) -> list[Case]:
        data = self.doc.data
        if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
            return []  # the schema said so
        if "at" in data and not self.is_broken(("at",)):
            self.at = self.time(data["at"], DEFAULT_AT, ("at",))
        out: list[Case] = []
        for i, raw in enumerate(data["cases"]):
            if not isinstance(raw, dict):
                continue
            rows = raw.get("where")
            if rows is None:
                unused = _placeholders({k: raw[k] for k in _SUBSTITUTED if k in raw})
                if unused:
                    self.error(("cases", i), f"{{{{{sorted(unused)[0]}}}}} is used but the case has "
                               "no where table", "add where: [{...}, ...] or remove the placeholder")
                    continue
                rows = [None]
            elif not isinstance(rows, list):
                continue
            for j, row in enumerate(rows):
                if row is not None and not isinstance(row, dict):
                    continue
                where: Path_ = ("cases", i, "where", j) if row is not None else ("cases", i)
                case = self.case(raw, row, where, i)
                if case is not None:
                    out.append(case)
        return out

    def field_path(self, raw: dict[str, Any], row: dict[str, Any] | None, where: Path_, index: int,
                   name: str) -> Path_:
        """Return where a field of a case is written: the row's value when the row gives it whole,
        the row when it is spliced from it, else the case's own field."""
        value = raw.get(name)
        if row is not None and _placeholders(value):
            whole = PLACEHOLDER_RE.fullmatch(value.strip()) if isinstance(value, str) else None
            return (*where, whole.group(1)) if whole and whole.group(1) in row else where
        return ("cases", index, name)

    @staticmethod
    def _from_row(raw: dict[str, Any], path: list[Any]) -> bool:
        """Return whether the value at ``path`` of a filled-in case came from its row: the case
        as written holds a placeholder there (or above it)."""
        return bool(_placeholders(_walk(raw, path)))

    def case(self, raw: dict[str, Any], row: dict[str, Any] | None, where: Path_, index: int) -> Case | None:
        """Return one case (one row filled in), or None after recording every reason it is malformed."""
        before = len(self.errors)
        broken = self.is_broken(("cases", index))
        body = {k: raw[k] for k in _SUBSTITUTED if k in raw}
        name = str(raw.get("name", f"case {index}"))
        if row is not None:
            fill = _Substitution(row)
            body = fill.fill(body)
            for problem, hint in fill.problems:
                self.error(where, problem, hint)
            for column in sorted(set(row) - fill.used):
                self.error((*where, column), f"column {column!r} is not used by the case",
                           "use it as {{" + column + "}} or drop it from the row", at_key=True)
            if fill.problems:
                return None  # the filled-in values are not what was meant: nothing more to check
            name = str(body.get("name", name))
            if not _placeholders(raw.get("name", "")):
                name += f" [{_row_text(row)}]"
        def field(key: str) -> Path_:
            return self.field_path(raw, row, where, index, key)

        problems = sorted(self.concrete.iter_errors(body), key=lambda e: list(e.absolute_path))
        bad = {p.absolute_path[0] for p in problems if p.absolute_path}  # fields not checked further
        said = False
        for problem in problems:  # what the schema said of the file already is not said twice
            if row is not None and self._from_row(raw, list(problem.absolute_path)):
                at_path = "/".join(map(str, problem.absolute_path)) or "the case"
                self.error(field(problem.absolute_path[0]) if problem.absolute_path else where,
                           f"after filling in the row: {problem.message} (at {at_path})",
                           "give the column a value of the type this field takes")
                said = True
        if problems and not said and not broken:
            at_path = "/".join(map(str, problems[0].absolute_path)) or "the case"
            self.error(where, f"{problems[0].message} (at {at_path})")
        client = body.get("client")
        client_line, client_col = self.doc.position(field("client"))
        end_line, client_end_col = self.doc.end(field("client"))
        client_end_col = client_end_col if end_line == client_line else 0
        if isinstance(client, str) and client and "client" not in bad:
            self.clients.append(ClientUse(client, self.file, client_line, client_col, client_end_col))
        at = self.at
        if "at" in body and "at" not in bad and not self.is_broken(("cases", index, "at")):
            at = self.time(body["at"], self.at, field("at"))
        session = self.session(body, raw, row, where, index, at=at) if "session" not in bad else None
        ip = body.get("ip")
        if isinstance(ip, str) and "ip" not in bad and not self.is_broken(("cases", index, "ip")) \
                and client_ip(ip) is None:
            self.error(field("ip"), f"ip: {ip!r} is not an IP address",
                       "e.g. ip: 10.1.2.3 or ip: 2001:db8::1")
        if "request" not in bad and "expect" not in bad and not self.is_broken(("cases", index, "request")):
            self.request(body, field("request"), raw.get("request"), where if row is not None else None)
        if broken or problems or len(self.errors) > before:
            return None
        reasons = body["expect"].get("reasons")
        line, _ = self.doc.position(where)
        return Case(
            name=name, file=self.file, line=line, client=body["client"], session=session,
            request=_request_params(body.get("request")), outcome=body["expect"]["outcome"],
            reasons=tuple(reasons) if reasons is not None else None,
            at=at, row=tuple(row.items()) if row is not None else (),
            client_col=client_col, client_line=client_line, ip=ip,
            client_end_col=client_end_col,
        )

    def request(self, body: dict[str, Any], path: Path_, written: Any, row: Path_ | None) -> None:
        """Record a request the server would refuse as invalid_request (``prompt: nonee``) in a case
        that expects another outcome: a typo in the test, reported at the value like one in expect
        (``written``: the request as the case writes it; ``row``: where its where row is)."""
        expect = body.get("expect")
        if not isinstance(expect, dict) or expect.get("outcome") == "invalid_request":
            return  # the case is about the malformed request
        params = _request_params(body.get("request"))
        client = str(body.get("client", ""))
        try:
            AuthRequest.from_params(client, params)
        except InvalidRequest as err:
            problem = err.description
        else:
            return
        name = next((k for k in params if _refused(client, {k: params[k]})), None)
        value = written.get(name) if name is not None and isinstance(written, dict) else None
        whole = PLACEHOLDER_RE.fullmatch(value.strip()) if isinstance(value, str) else None
        if row is not None and whole and (*row, whole.group(1)) in self.doc.positions:
            path = (*row, whole.group(1))  # the row's value
        elif name is not None and (*path, name) in self.doc.positions:
            path = (*path, name)
        hint = "a case about a malformed request expects outcome: invalid_request"
        if name == "prompt":
            unknown = sorted(set(params["prompt"].split()) - PROMPT_VALUES)
            near = did_you_mean(unknown[0], PROMPT_VALUES) if unknown else ""
            hint = f"{near or 'one of ' + ', '.join(sorted(PROMPT_VALUES))} ({hint})"
        self.error(path, f"request: {problem}: the server answers invalid_request", hint)

    def session(self, body: dict[str, Any], raw: dict[str, Any], row: dict[str, Any] | None,
                where: Path_, index: int, *, at: int) -> Any:
        """Return the session fixture of a case (a named one looked up), recording what is wrong with it."""
        session = body.get("session")
        path = self.field_path(raw, row, where, index, "session")
        if self.is_broken(("cases", index, "session")):
            return None
        if isinstance(session, str):
            if session not in self.sessions:
                self.error(path, f"no session named {session!r} under sessions:",
                           did_you_mean(session, self.sessions)
                           or "named sessions: " + (", ".join(sorted(self.sessions)) or "none"))
                return None
            if self.is_broken(("sessions", session)):
                return None  # the schema has said what is wrong with it
            name, session = session, self.sessions[session]
            path = ("sessions", name)
        try:
            session_from_fixture(session, at)
        except (FixtureError, TypeError, AttributeError, OverflowError) as err:
            inside = _fixture_path(str(err))
            if row is not None and path == where:  # written in the case, parts of it from the row
                written = _walk(raw.get("session"), inside)
                whole = PLACEHOLDER_RE.fullmatch(written.strip()) if isinstance(written, str) else None
                path = (*where, whole.group(1)) if whole and whole.group(1) in row \
                    else ("cases", index, "session")
            while inside and (*path, *inside) not in self.doc.positions:
                inside = inside[:-1]
            path = (*path, *inside)
            self.error(path, f"session: {err}",
                       TIME_HINT if "is not epoch seconds" in str(err) or "not a time" in str(err)
                       else "see the session fields in docs/authoring.md")
        return session


def _refused(client: str, params: dict[str, str]) -> bool:
    """Return whether these request parameters alone make an invalid request."""
    try:
        AuthRequest.from_params(client, params)
    except InvalidRequest:
        return True
    return False


def _tenant_dir(path: Path, doc: YamlDocument, broken: bool) -> tuple[Path | None, list[Diagnostic]]:
    if broken:  # tenant: is not a directory name (the schema said so)
        return None, []
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


@dataclass
class LoadedFile:
    """A test file as read: its tenant directory, its cases, the clients they name, and every error.

    ``cases`` holds the cases without errors; a file with ``diagnostics`` is
    not run. ``clients`` also lists the clients of cases with other errors, so
    an unknown client is reported with them (:func:`client_diagnostics`).
    """

    path: Path
    tenant_dir: Path | None = None
    cases: list[Case] = field(default_factory=list)
    clients: list[ClientUse] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def read_test_file(path: Path) -> LoadedFile:
    """Read a test file and check everything that needs no tenant, collecting every error at once."""
    out = LoadedFile(path)
    text, errors = read_source(path)
    if text is None:
        out.diagnostics = errors
        return out
    docs, errors = load_yaml_documents(text, display_path(path))
    if errors:
        out.diagnostics = errors
        return out
    if len(docs) != 1:
        out.diagnostics = [Diagnostic(display_path(path), 1, 1, "E_YAML",
                                      "expected exactly one YAML document")]
        return out
    doc = docs[0]
    doc.data = _plain(doc.data)
    broken: list[Path_] = []
    if not is_valid(doc.data, "policytest"):
        root = load_schema("policytest")
        for raw in validator("policytest").iter_errors(doc.data):
            broken.append(tuple(raw.absolute_path))
            out.diagnostics += explain_schema_error(doc, raw, root)
    if not isinstance(doc.data, dict):
        return out
    out.tenant_dir, errors = _tenant_dir(path, doc, ("tenant",) in broken or () in broken)
    out.diagnostics += errors
    loader = _Loader(doc, str(path), broken)
    out.cases = loader.cases()
    out.clients = loader.clients
    out.diagnostics += loader.errors
    return out


def load_cases(path: Path) -> tuple[Path, list[Case]]:
    """Return the tenant directory and the cases of a test file; raise CaseError with every diagnostic
    (those that need no tenant: see :func:`client_diagnostics` for the clients)."""
    loaded = read_test_file(path)
    if loaded.diagnostics or loaded.tenant_dir is None:
        raise CaseError(loaded.diagnostics)
    return loaded.tenant_dir, loaded.cases


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

    Raises CaseError for a malformed file (every error of it, unknown clients
    included) and ConfigError for a tenant that does not load.
    """
    tenants = {} if tenants is None else tenants
    loaded = read_test_file(path)
    if loaded.tenant_dir is None:
        raise CaseError(loaded.diagnostics)
    key = loaded.tenant_dir.resolve()
    if key not in tenants:
        tenants[key] = load_tenant(loaded.tenant_dir)
    errors = sorted_diagnostics([*loaded.diagnostics, *client_diagnostics(loaded.clients, tenants[key])])
    if errors:
        raise CaseError(errors)
    return [run_case(tenants[key], case) for case in loaded.cases]


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
        self.targeted: set[str] = set()  # policies that decided a case
        self.roots: list[Path] = []  # policies with a file below these count too
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

    def target(self, policy: str) -> None:
        """Count ``policy`` in the coverage: a case was decided by it."""
        self.targeted.add(policy)

    def counted(self, policy: str) -> bool:
        """Return whether a policy is in the coverage: a case targets it or its file is under a root."""
        if policy in self.targeted:
            return True
        if policy not in self.files:
            return False
        file = Path(self.files[policy]).resolve()
        return any(file.is_relative_to(root) for root in self.roots)

    def report(self) -> list[tuple[str, list[tuple[CoverageItem, bool]]]]:
        """Return, per counted policy (by name), its items in source order and whether each was covered."""
        by_policy: dict[str, list[tuple[CoverageItem, bool]]] = {}
        for key, item in self.items.items():
            if self.counted(item.policy):
                by_policy.setdefault(item.policy, []).append((item, key in self.hits))
        return [(name, sorted(items, key=lambda pair: (tuple(pair[0].span), pair[0].kind)))
                for name, items in sorted(by_policy.items())]

    def others(self) -> list[str]:
        """Return the policies of the tested tenants that are not counted (no case targets them)."""
        return sorted(name for name in self.files if not self.counted(name))

    @property
    def totals(self) -> tuple[int, int]:
        """Return (covered, total) items of the counted policies."""
        report = self.report()
        return sum(ok for _, items in report for _, ok in items), sum(len(items) for _, items in report)

    @property
    def percent(self) -> float | None:
        """Return the share of covered items, or None when there are none (no case ran): not 100%."""
        covered, total = self.totals
        return 100.0 * covered / total if total else None


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


def _unknown_client(use: ClientUse, tenant: Tenant) -> Diagnostic:
    registry = display_path(tenant.directory / "clients.yaml")
    return Diagnostic(display_path(Path(use.file)), use.line, use.col, "E_UNKNOWN_CLIENT",
                      f"client {use.client!r} is not registered in {registry}",
                      tenant.client_hint(use.client),
                      end_line=use.line if use.end_col else 0, end_col=use.end_col)


def unknown_client(case: Case, tenant: Tenant) -> Diagnostic:
    """Return the error for a case whose client the tenant does not register (caret under the value)."""
    return _unknown_client(ClientUse(case.client, case.file, case.client_line or case.line, case.client_col,
                                     case.client_end_col), tenant)


def client_diagnostics(uses: Iterable[ClientUse], tenant: Tenant) -> list[Diagnostic]:
    """Return an error for each client named that the tenant does not govern: never run on some default
    (SPEC §7)."""
    return [_unknown_client(use, tenant) for use in uses if not tenant.governs(use.client)]


def sorted_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Return diagnostics by file and position (the order the file is read in), duplicates dropped."""
    return sorted(dict.fromkeys(diagnostics), key=lambda d: (d.file, d.line, d.col, d.code))


def run_paths(files: Iterable[Path], roots: Iterable[Path] = ()) -> TestRun:
    """Run every case of the test files, collecting every error and the coverage.

    A file with errors is not run; all of its errors are reported, each
    client its cases name checked against the tenant too. Coverage counts the
    policies the cases run target and those whose file is under one of
    ``roots`` (the directories given, as ``opa test`` counts the modules it loads).
    """
    run = TestRun()
    tenants: dict[Path, Tenant] = {}
    broken: set[Path] = set()
    run.coverage.roots = [Path(r).resolve() for r in roots]
    for path in files:
        loaded = read_test_file(path)
        errors = list(loaded.diagnostics)
        tenant = None
        if loaded.tenant_dir is not None:
            key = loaded.tenant_dir.resolve()
            if key not in tenants and key not in broken:
                try:
                    tenants[key] = load_tenant(loaded.tenant_dir)
                except ConfigError as err:
                    broken.add(key)
                    run.diagnostics += err.diagnostics
            tenant = tenants.get(key)
        if tenant is not None:
            errors += client_diagnostics(loaded.clients, tenant)
        run.diagnostics += sorted_diagnostics(errors)
        if errors or tenant is None:
            continue
        run.coverage.add_tenant(tenant)
        for case in loaded.cases:
            result = run_case(tenant, case)
            run.results.append((result, tenant))
            run.coverage.target(tenant.policy_for(case.client).name)
            run.coverage.record(tenant, result)
    return run
