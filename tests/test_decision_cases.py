"""The decision compliance suite: every case in tests/cases/*.test.yaml, one test each.

The cases use the same format as ``policy-sso test`` (policy_sso/authoring/policytest.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from policy_sso.authoring.policytest import load_cases, run_case
from policy_sso.tenant import load_tenant

CASES_DIR = Path(__file__).parent / "cases"
SPEC_OUTCOMES = {"allow", "login_required", "consent_required", "interaction_required",
                 "unmet_authentication_requirements", "invalid_request"}
SPEC_REASONS = {"no_session", "session_expired", "absolute_lifetime_exceeded", "inactivity_timeout",
                "max_age_exceeded", "prompt_login", "subject_mismatch", "amr_missing", "mfa_required",
                "step_up_required", "acr_insufficient", "consent_missing"}


def _all_cases():
    for path in sorted(CASES_DIR.glob("*.test.yaml")):
        tenant_dir, cases = load_cases(path)
        for case in cases:
            codes = ",".join(case.reasons) if case.reasons else case.outcome
            yield pytest.param(tenant_dir, case, id=f"{path.stem}:{case.name}[{codes}]")


ALL = list(_all_cases())
_tenants: dict[Path, object] = {}


@pytest.mark.parametrize(("tenant_dir", "case"), ALL)
def test_case(tenant_dir, case):
    tenant = _tenants.setdefault(tenant_dir, load_tenant(tenant_dir))
    result = run_case(tenant, case)
    assert result.passed, f"{case.file}:{case.line}: " + "; ".join(result.mismatches or [result.error])


def test_suite_covers_every_outcome_and_reason_of_the_spec():
    cases = [p.values[1] for p in ALL]
    assert {c.outcome for c in cases} >= SPEC_OUTCOMES
    assert {code for c in cases for code in (c.reasons or ())} >= SPEC_REASONS


def test_a_wrong_expectation_fails(cases_tenant_dir):
    tenant = load_tenant(cases_tenant_dir)
    name = "strict policy with pwd only fails mfa and acr (default on_unmet login_required)"
    case = next(p.values[1] for p in ALL if p.values[1].name == name)
    wrong = type(case)(**{**case.__dict__, "outcome": "allow", "reasons": ("mfa_required",)})
    result = run_case(tenant, wrong)
    assert not result.passed
    assert result.mismatches == [
        "outcome: expected allow, got login_required",
        "reasons: expected ['mfa_required'], got ['acr_insufficient', 'mfa_required']",
    ]
