"""Which files a tenant loads, and the errors that keep any from being skipped silently (issue 12)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy_sso.cli import main
from policy_sso.tenant import check_paths, check_tenant


@pytest.fixture
def tenant(tmp_path: Path, demo_dir: Path) -> Path:
    target = tmp_path / "tenant"
    shutil.copytree(demo_dir, target, ignore=shutil.ignore_patterns("tests", "yaml"))
    return target


def _codes(directory: Path) -> set[tuple[str, str]]:
    _, diagnostics = check_tenant(directory)
    return {(Path(d.file).name, d.code) for d in diagnostics if d.severity == "error"}


def _set_policy_files(tenant: Path, value: str) -> None:
    config = tenant / "tenant.yaml"
    text = config.read_text()
    start = text.index("policy_files:")
    end = text.index("\n", start)
    config.write_text(text[:start] + f"policy_files: {value}" + text[end:])


def test_the_demo_tenant_loads_every_policy_file_it_holds(tenant: Path) -> None:
    loaded, diagnostics = check_tenant(tenant)
    assert loaded is not None, [str(d) for d in diagnostics]
    assert sorted(p.name for p in loaded.policy_files) == sorted(p.name for p in tenant.glob("*.policy"))
    assert all(loaded.governs(c) for c in loaded.clients)


@pytest.mark.parametrize("pattern", ['["*.policy", "**x"]', '["*.policy", "/tmp/*.policy"]',
                                     '["*.policy", "../*.policy"]', '["*.policy", "~/*.policy"]'],
                         ids=["not-a-glob", "absolute", "parent", "home"])
def test_a_pattern_outside_the_tenant_or_not_a_glob_is_an_error(tenant: Path, pattern: str) -> None:
    _set_policy_files(tenant, pattern)
    assert _codes(tenant) == {("tenant.yaml", "E_POLICY_FILES_PATH")}


def test_a_link_out_of_the_tenant_is_not_loaded(tenant: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.policy"
    outside.write_text('policy "elsewhere" {\n  require amr any_of "pwd"\n}\n')
    (tenant / "elsewhere.policy").symlink_to(outside)
    assert _codes(tenant) == {("elsewhere.policy", "E_POLICY_FILES_PATH")}


def test_a_policy_file_in_a_subdirectory_loads_only_when_a_pattern_names_it(tenant: Path) -> None:
    (tenant / "teams").mkdir()
    (tenant / "payments.policy").rename(tenant / "teams" / "payments.policy")
    assert ("clients.yaml", "E_NO_POLICY") in _codes(tenant)  # not loaded: its clients have no policy
    _set_policy_files(tenant, '["*.policy", "teams/*.policy"]')
    assert _codes(tenant) == set()


def test_validate_of_the_untouched_file_also_reports_the_claim_made_elsewhere(tenant: Path) -> None:
    (tenant / "zz-new.policy").write_text('policy "new" {\n  clients "docs"\n  require amr any_of "pwd"\n}\n')
    for name in ("zz-new.policy", "docs.policy"):
        found = {(Path(d.file).name, d.code) for d in check_paths([tenant / name])}
        # reported once, worded from the side of the file asked about; the other place is a note
        assert found == {(name, "E_DUPLICATE_CLIENT")}


def test_validate_exits_2_for_a_path_that_does_not_exist(capsys) -> None:
    assert main(["validate", "no/such/tenant"]) == 2
    assert capsys.readouterr().err == "policy-sso validate: no such file or directory: no/such/tenant\n"


PATTERN_PARTS = ["*", "**", "?", "[", "]", "[!a]", "/", "..", ".", "~", "\\", "policies", "*.policy",
                 "x.policy.yaml", "\x00", " ", "é", "{a,b}", "$HOME", "C:", "//", "-"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(patterns=st.lists(st.lists(st.sampled_from(PATTERN_PARTS), min_size=1, max_size=5).map("".join),
                         min_size=1, max_size=3))
def test_any_policy_files_pattern_is_loaded_or_a_diagnostic_never_a_crash(tenant: Path, patterns) -> None:
    _set_policy_files(tenant, json.dumps(patterns))
    loaded, diagnostics = check_tenant(tenant)  # must not raise
    assert loaded is not None or any(d.severity == "error" for d in diagnostics)
    if loaded is not None:
        assert all(p.resolve().is_relative_to(tenant.resolve()) for p in loaded.policy_files)
