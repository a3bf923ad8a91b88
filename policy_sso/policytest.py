"""Policy test cases: session + request -> expected outcome and reasons (like ``opa test``).

A test file (``*.test.yaml``) holds cases against a tenant::

    tenant: ..                    # optional: default is the nearest dir with tenant.yaml
    at: 2026-01-01T12:00:00Z      # optional: the evaluation time (default 1767268800)
    cases:
      - name: payments needs mfa
        client: payments-web
        session: {subject: u-alice, events: [{method: pwd, at: -1h}]}
        request: {scope: openid profile, prompt: none}   # or a query string
        expect:
          outcome: interaction_required
          reasons: [mfa_required, acr_insufficient]      # every reason code, any order

``session: null`` means no session. ``expect.reasons`` may be omitted to check
the outcome only; ``[]`` asserts there are none. The same format drives the
decision compliance suite in ``tests/cases/`` and ``policy-sso test``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import yaml

from policy_sso.decision import Decision
from policy_sso.errors import OAuthError
from policy_sso.request import AuthRequest
from policy_sso.sessions.fixture import FixtureError, parse_time, session_from_fixture
from policy_sso.tenant import Tenant, find_tenant_dir, load_tenant

DEFAULT_AT = 1767268800  # 2026-01-01T12:00:00Z: fixed, so relative times are reproducible


class CaseError(ValueError):
    """A test file or case is malformed; the message says where."""


@dataclass(frozen=True)
class Case:
    """One test case, its inputs still as written."""

    name: str
    file: str
    line: int
    client: str
    session: Any
    request: dict[str, str]
    outcome: str
    reasons: tuple[str, ...] | None
    at: int


@dataclass
class CaseResult:
    """The outcome of running one case."""

    case: Case
    decision: Decision | None
    error: str = ""
    mismatches: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.error and not self.mismatches


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that records each mapping's line as ``__line__``."""


def _mapping_with_line(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    data = loader.construct_mapping(node, deep=True)
    data["__line__"] = node.start_mark.line + 1
    return data


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k != "__line__"}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _request_params(raw: Any, where: str) -> dict[str, str]:
    if raw is None:
        return {"scope": "openid"}
    if isinstance(raw, str):
        return dict(parse_qsl(raw, keep_blank_values=True))
    if isinstance(raw, dict):
        return {str(k): " ".join(v) if isinstance(v, list) else str(v) for k, v in _strip(raw).items()}
    raise CaseError(f"{where}: request is a mapping of parameters or a query string")


def load_cases(path: Path) -> tuple[Path, list[Case]]:
    """Return the tenant directory and the cases of a test file; raise CaseError."""
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise CaseError(f"{path}: cannot load: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("cases"), list):
        raise CaseError(f"{path}: expected a mapping with a list of cases")
    tenant_dir = (path.parent / doc["tenant"]) if doc.get("tenant") else find_tenant_dir(path)
    if tenant_dir is None:
        raise CaseError(f"{path}: no tenant: set 'tenant:' or put the file below a tenant directory")
    try:
        at = parse_time(doc.get("at", DEFAULT_AT), DEFAULT_AT, "at")
    except FixtureError as err:
        raise CaseError(f"{path}: {err}") from None
    cases = []
    for i, raw in enumerate(doc["cases"]):
        where = f"{path}:{raw.get('__line__', 0) if isinstance(raw, dict) else 0}"
        if not isinstance(raw, dict) or not isinstance(raw.get("expect"), dict):
            raise CaseError(f"{where}: case {i} needs client, session, request and expect")
        if "client" not in raw or "outcome" not in raw["expect"]:
            raise CaseError(f"{where}: case {i} needs a client and expect.outcome")
        reasons = raw["expect"].get("reasons")
        cases.append(Case(
            name=str(raw.get("name", f"case {i}")), file=str(path), line=raw["__line__"],
            client=str(raw["client"]), session=_strip(raw.get("session")),
            request=_request_params(raw.get("request"), where),
            outcome=str(raw["expect"]["outcome"]),
            reasons=tuple(str(r) for r in reasons) if reasons is not None else None,
            at=parse_time(raw["at"], at, f"{where}: at") if "at" in raw else at,
        ))
    return Path(tenant_dir), cases


def run_case(tenant: Tenant, case: Case) -> CaseResult:
    """Evaluate one case against a tenant and compare with its expectation."""
    try:
        session = session_from_fixture(case.session, case.at)
        hinted = tenant.resolve_user(case.request.get("login_hint"))
        request = AuthRequest.from_params(
            case.client, case.request, id_token_hint_sub=case.request.get("id_token_hint_sub"),
            login_hint_sub=hinted.sub if hinted else case.request.get("login_hint"))
    except FixtureError as err:
        return CaseResult(case, None, f"bad session fixture: {err}")
    except OAuthError as err:
        decision = Decision(err.error, (), None, "")
        return _compare(case, decision)
    return _compare(case, tenant.decide(request, session, case.at))


def _compare(case: Case, decision: Decision) -> CaseResult:
    result = CaseResult(case, decision)
    if decision.outcome != case.outcome:
        result.mismatches.append(f"outcome: expected {case.outcome}, got {decision.outcome}")
    if case.reasons is not None and Counter(case.reasons) != Counter(decision.codes):
        result.mismatches.append(
            f"reasons: expected {sorted(case.reasons)}, got {sorted(decision.codes)}")
    return result


def run_file(path: Path, tenants: dict[Path, Tenant] | None = None) -> list[CaseResult]:
    """Run every case of a test file (tenants are loaded once and cached in ``tenants``)."""
    tenants = {} if tenants is None else tenants
    tenant_dir, cases = load_cases(path)
    key = tenant_dir.resolve()
    if key not in tenants:
        tenants[key] = load_tenant(tenant_dir)
    return [run_case(tenants[key], case) for case in cases]
