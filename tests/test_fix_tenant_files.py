"""Validate and the server agree on a tenant's files (SPEC §7, fail closed): a config file validated
alone reports what it breaks elsewhere, a YAML policy under any name and a broken link are never
passed over, and a reload does not claim to apply what the server only takes at start."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from policy_sso.cli import main
from policy_sso.reload import TenantHolder
from policy_sso.tenant import check_paths, check_tenant, load_tenant


@pytest.fixture
def tenant(tmp_path: Path, demo_dir: Path) -> Path:
    target = tmp_path / "tenant"
    shutil.copytree(demo_dir, target, ignore=shutil.ignore_patterns("tests"))
    return target


def _found(paths: list[Path]) -> list[tuple[str, str]]:
    """Return (file name, code) of each error ``validate PATHS`` reports, in its order."""
    return [(Path(d.file).name, d.code) for d in check_paths(paths) if d.severity == "error"]


def _tenant_errors(directory: Path) -> set[tuple[str, str]]:
    return set(_whole(directory))


def _whole(directory: Path) -> list[tuple[str, str]]:
    """Return (file name, code) of each error of the tenant, in order (what the server refuses)."""
    _, diagnostics = check_tenant(directory)
    return [(Path(d.file).name, d.code) for d in diagnostics if d.severity == "error"]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _delete_client(tenant: Path, client_id: str) -> None:
    clients = tenant / "clients.yaml"
    text = clients.read_text()
    start = text.index(f"  - client_id: {client_id}\n")
    end = text.find("  - client_id:", start + 1)
    clients.write_text(text[:start] + (text[end:] if end != -1 else ""))


# --- #3: a config file validated alone reports every error of its tenant ----------------------

def test_validating_clients_yaml_reports_the_policy_naming_a_deleted_client(tenant: Path) -> None:
    _delete_client(tenant, "portal-backend")
    whole = _whole(tenant)
    assert ("portal.policy", "E_UNKNOWN_CLIENT") in whole
    assert _found([tenant / "clients.yaml"]) == whole  # pre-commit passes only the changed file


def test_validating_tenant_yaml_reports_the_policies_using_a_renamed_acr_level(tenant: Path) -> None:
    _edit(tenant / "tenant.yaml", "- id: urn:policy-sso:loa:2", "- id: urn:policy-sso:loa:two")
    found = _found([tenant / "tenant.yaml"])
    assert ("payments.policy", "E_UNKNOWN_ACR") in found
    assert found == _whole(tenant)


@pytest.mark.parametrize("given", [["clients.yaml", "portal.policy", "users.yaml"],
                                   ["portal.policy", "clients.yaml", "tenant.yaml"],
                                   [".", "clients.yaml", "portal.policy"]],
                         ids=["config-first", "policy-first", "directory-first"])
def test_an_error_is_reported_once_when_several_files_of_a_tenant_are_given(
        tenant: Path, given: list[str]) -> None:
    _delete_client(tenant, "portal-backend")
    found = _found([tenant / name for name in given])
    assert found == sorted(_found([tenant]) if "." in given else _whole(tenant))
    assert found.count(("portal.policy", "E_UNKNOWN_CLIENT")) == 1


def test_validating_a_policy_file_alone_still_reports_only_its_lines(tenant: Path) -> None:
    _delete_client(tenant, "portal-backend")
    _edit(tenant / "docs.policy", '"pwd"', '"pwdd"')
    assert {name for name, _ in _found([tenant / "docs.policy"])} == {"docs.policy"}


# --- #4: a YAML policy named *.yaml is loaded or reported, never skipped ----------------------

EXTRA = "policy: p2\nclients: [wiki]\nrequire:\n  amr: {any_of: [pwdd]}\n"
NEWAPP = "policy: newapp\nclients: [newapp]\nrequire:\n  amr: {any_of: [pwd]}\n"
NEWAPP_CLIENT = ("  - client_id: newapp\n    type: public\n    redirect_uris: [http://127.0.0.1:9009/cb]\n"
                 "    scopes: [openid]\n")


def test_a_yaml_policy_not_named_policy_yaml_is_not_loaded_and_says_so(tenant: Path) -> None:
    (tenant / "extra.yaml").write_text(EXTRA)
    expected = {("extra.yaml", "E_POLICY_NOT_LOADED"), ("extra.yaml", "E_UNKNOWN_METHOD")}
    assert _tenant_errors(tenant) == expected  # what the server refuses (start and reload)
    assert set(_found([tenant])) == expected
    [diagnostic] = [d for d in check_paths([tenant]) if d.code == "E_POLICY_NOT_LOADED"]
    assert diagnostic.hint == ('rename it "extra.policy.yaml" and add "*.policy.yaml" to policy_files in '
                               "tenant.yaml, or move the file out of the tenant directory")


def test_a_valid_yaml_policy_for_a_new_client_is_named_not_only_its_client(tenant: Path) -> None:
    clients = tenant / "clients.yaml"
    clients.write_text(clients.read_text() + NEWAPP_CLIENT)
    (tenant / "newapp.yaml").write_text(NEWAPP)
    # newapp left without a policy is not reported on its own: the file not loaded may be its policy
    assert _tenant_errors(tenant) == {("newapp.yaml", "E_POLICY_NOT_LOADED")}
    # pre-commit passes the new file alone: it fails as the tenant does, not "ok" as a lone policy
    assert _found([tenant / "newapp.yaml"]) == [("newapp.yaml", "E_POLICY_NOT_LOADED")]


def test_a_yaml_policy_the_patterns_match_is_loaded(tenant: Path) -> None:
    clients = tenant / "clients.yaml"
    clients.write_text(clients.read_text() + NEWAPP_CLIENT)
    (tenant / "newapp.yaml").write_text(NEWAPP)
    _edit(tenant / "tenant.yaml", 'policy_files: ["*.policy"]', 'policy_files: ["*.policy", "newapp.yaml"]')
    assert load_tenant(tenant).policy_for("newapp").name == "newapp"


def test_yaml_that_declares_no_policy_is_not_read_as_one(tenant: Path) -> None:
    (tenant / "messages.yaml").write_text("greeting: hello\n")
    (tenant / "portal.test.yaml").write_text("cases: []\n")
    assert _tenant_errors(tenant) == set()


def test_a_yaml_policy_in_a_subdirectory_is_checked_like_the_twins(tenant: Path) -> None:
    assert _found([tenant]) == []  # the demo's yaml/ twins: checked in the tenant's context, no error
    (tenant / "yaml" / "extra.yaml").write_text(EXTRA)
    assert _found([tenant]) == [("extra.yaml", "E_UNKNOWN_METHOD")]
    assert load_tenant(tenant).policy_files  # a subdirectory is loaded only when a pattern names it


# --- #10: a broken link named like a policy file -----------------------------------------------

@pytest.mark.parametrize("name", ["extra.policy", "extra.policy.yaml", "extra.yaml"])
def test_a_broken_link_named_like_a_policy_file_is_an_error(tenant: Path, name: str) -> None:
    (tenant / name).symlink_to(tenant / "gone.policy")
    assert (name, "E_READ") in _tenant_errors(tenant)
    assert (name, "E_READ") in _found([tenant])


def test_a_broken_link_in_a_subdirectory_is_an_error(tenant: Path) -> None:
    (tenant / "yaml" / "extra.policy.yaml").symlink_to("extra.policy.yaml")  # a link to itself
    assert _found([tenant]) == [("extra.policy.yaml", "E_READ")]


def test_validate_prints_the_broken_link(tenant: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tenant)
    Path("extra.policy").symlink_to("nowhere.policy")
    assert main(["validate", "."]) == 1
    assert capsys.readouterr().out.splitlines()[0] == (
        "extra.policy:1:1: E_READ: cannot read file: it is a symbolic link to nowhere.policy, which is not "
        "a file (hint: point the link at the file, or delete it)")


# --- #6: a reload cannot change what the server takes only at start ---------------------------

@pytest.mark.parametrize(("old", "new", "code"), [
    ("store: sqlite:///var/policy-sso.db", "store: memory://", "E_RELOAD_STORE"),
    ("state_dir: var", "state_dir: var2", "E_RELOAD_STATE_DIR"),
    ("clock_skew: 30s", "clock_skew: 30s\nstore_timeout: 5", "E_RELOAD_STORE"),
    ("clock_skew: 30s", "clock_skew: 30s\naudit: {sinks: [stdout]}", "E_RELOAD_AUDIT"),
], ids=["E_RELOAD_STORE", "E_RELOAD_STATE_DIR", "E_RELOAD_STORE-timeout", "E_RELOAD_AUDIT"])
def test_a_reload_changing_the_store_or_state_dir_is_refused(tenant: Path, old: str, new: str,
                                                              code: str) -> None:
    holder = TenantHolder(load_tenant(tenant))
    before = holder.tenant
    _edit(tenant / "tenant.yaml", old, new)
    result = holder.reload()
    assert not result.applied
    assert [(Path(d.file).name, d.code) for d in result.diagnostics] == [("tenant.yaml", code)]
    assert "restart instead" in result.diagnostics[0].message
    assert holder.tenant is before


def test_a_reload_of_an_unchanged_tenant_yaml_applies_under_serve_flags(tenant: Path) -> None:
    """serve --store/--state-dir/--issuer override tenant.yaml outside the tenant: the reload compares
    tenant.yaml with itself, so a policy change still applies."""
    from policy_sso.cli.serve import issuer_override

    adjust = issuer_override("http://127.0.0.1:9999")
    holder = TenantHolder(adjust(load_tenant(tenant)), adjust=adjust)
    _edit(tenant / "portal.policy", '"pwd", "wia", "hwk"', '"hwk"')
    assert holder.reload().applied
