"""``policy-sso validate`` and ``lint`` report every error at once, and take only what is a policy.

Through the CLI (``policy_sso.cli.main``) in a tenant written to a temporary
directory, the working directory, so the paths printed are the short ones:

- every file is checked, and the rules across files run with the parts that
  loaded, without follow-on errors from a part that did not;
- ``lint`` prints exactly the errors ``validate`` prints, and fails on them;
- a directory walk takes policy files, not test files, CI workflows or
  message catalogues, and a directory with nothing to validate fails.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from policy_sso.cli import main

ROOT = Path(__file__).resolve().parents[1]

TENANT = """\
issuer: http://127.0.0.1:8080
session:
  lifetime: 14d
  require_login_after: 30d
  inactivity: 1d
acr_levels:
  - id: loa1
    requires: {amr: {any_of: [pwd, otp]}}
methods: [pwd, otp, sms]
scopes: ["extra:scope"]
default_policy: base
policy_files: ["policies/*.policy"]
"""
CLIENTS = """\
clients:
  - {client_id: app, type: public, redirect_uris: ["http://127.0.0.1:9001/cb"], scopes: [openid]}
  - {client_id: other, type: public, redirect_uris: ["http://127.0.0.1:9002/cb"], policy: default}
"""
APP = """\
policy "app" {
  clients "app"
  require amr any_of "sms"
  require consent "extra:scope"
}
"""
BASE = """\
policy "base" {
  require amr any_of "pwd"
}
"""


def _tenant(root: Path) -> Path:
    (root / "policies").mkdir(parents=True)
    (root / "tenant.yaml").write_text(TENANT)
    (root / "clients.yaml").write_text(CLIENTS)
    (root / "users.yaml").write_text("users: []\n")
    (root / "policies" / "app.policy").write_text(APP)
    (root / "policies" / "base.policy").write_text(BASE)
    return root


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    """Return the exit status, the FILE:LINE:COL lines printed on stdout, and stderr."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, [line for line in out.splitlines() if not line.startswith(" ")], err


@pytest.fixture
def tenant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return _tenant(tmp_path / "t")


def test_the_tenant_written_here_is_valid(tenant: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "validate", "t") == (0, [], "ok: 0 errors, 0 warnings\n")


# --- every error at once ----------------------------------------------------------------

TYPO_AND_SPACE = [
    "t/clients.yaml:3:91: E_UNKNOWN_POLICY: client 'other' names policy 'bsae', which is not defined "
    "(hint: did you mean 'base'?)",
    "t/tenant.yaml:3:3: E_UNKNOWN_KEY: unknown key 'lifetme' (hint: did you mean 'lifetime'?)",
    "t/tenant.yaml:5:15: E_DURATION: invalid duration '30 s': a duration is an integer immediately "
    "followed by its unit s, m, h or d (hint: write 30s)",
]


def test_errors_in_tenant_yaml_do_not_hide_those_of_clients_yaml(tenant: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """tenant.yaml does not load; clients.yaml and the policies (found by its policy_files, which can
    still be read) are checked all the same, and nothing is reported that only a loaded tenant.yaml
    would make right (method sms, scope extra:scope, policies under policies/)."""
    config = tenant / "tenant.yaml"
    config.write_text(config.read_text().replace("  lifetime: 14d", "  lifetme: 14d")
                      .replace("inactivity: 1d", "inactivity: 30 s"))
    clients = tenant / "clients.yaml"
    clients.write_text(clients.read_text().replace("policy: default", "policy: bsae"))
    assert _run(capsys, "validate", "t") == (1, TYPO_AND_SPACE, "3 errors, 0 warnings\n")


def test_a_client_on_the_default_policy_is_not_blamed_when_tenant_yaml_does_not_load(
        tenant: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``policy: default`` means tenant.yaml's default_policy, which is unknown until it loads."""
    config = tenant / "tenant.yaml"
    config.write_text(config.read_text().replace("  lifetime: 14d", "  lifetme: 14d"))
    assert _run(capsys, "validate", "t") == (1, TYPO_AND_SPACE[1:2], "1 error, 0 warnings\n")


def test_a_policy_file_that_does_not_load_takes_no_follow_on_errors_elsewhere(
        tenant: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """base.policy cannot be read as UTF-8: the client whose policy it defines is not reported, and
    the unrelated mistake in clients.yaml (a client named by two policies is not one) still is."""
    (tenant / "policies" / "base.policy").write_bytes(b'policy "base" {\n  require amr any_of "p\xffwd"\n}\n')
    (tenant / "policies" / "app.policy").write_text(APP.replace('"sms"', '"smss"'))
    status, lines, err = _run(capsys, "validate", "t")
    assert (status, lines, err) == (1, [
        "t/policies/app.policy:3:22: E_UNKNOWN_METHOD: unknown authentication method 'smss' "
        "(hint: did you mean 'sms'?)",
        "t/policies/base.policy:2:24: E_ENCODING: not UTF-8 text: invalid start byte (byte 0xff)",
    ], "2 errors, 0 warnings\n")


@pytest.mark.parametrize("alg, code, message", [
    ("none", "E_ALG_NONE", "alg none is never accepted for login_hint_token (hint: sign hints with one of "
     "ES256, EdDSA, HS256, HS384, HS512, PS256, RS256)"),
    ("HS257", "E_ALG_UNSUPPORTED", "unsupported alg 'HS257' (hint: did you mean 'HS256'?)"),
], ids=["E_ALG_NONE", "E_ALG_UNSUPPORTED"])
def test_a_bad_alg_does_not_hide_a_missing_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               alg: str, code: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    Path("t.policy").write_text('policy "t" {\n  clients "portal"\n  trust login_hint_token {\n'
                                f'    issuer "https://x"\n    alg {alg}\n    max_lifetime 2m\n    amr "wia"\n'
                                "  }\n}\n")
    assert _run(capsys, "validate", "t.policy") == (1, [
        't.policy:3:3: E_TRUST_NO_KEY: trust block has no key (hint: add key env "VAR" or key file "path")',
        f"t.policy:5:5: {code}: {message}",
    ], "2 errors, 0 warnings\n")


# --- lint prints the validation errors ----------------------------------------------------

DUP = """\
policy "a" {
  clients "portal"
  require mfa
}
policy "b" {
  clients "portal"
  trust login_hint_token {
    issuer "https://x"
    alg HS256
    max_lifetime 2m
    amr "wia"
  }
}
"""
DUP_ERRORS = [  # the client two policies claim: once, at the later claim
    "dup.policy:6:11: E_DUPLICATE_CLIENT: {}client 'portal' is claimed by 2 policies: 'a' and 'b' "
    "(hint: a client belongs to exactly one policy: remove it from all but one)",
    "dup.policy:2:11: note: also claimed by policy 'a'",
    'dup.policy:7:3: E_TRUST_NO_KEY: {}trust block has no key (hint: add key env "VAR" or key file "path")',
]


def test_lint_of_a_lone_file_prints_what_validate_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    Path("dup.policy").write_text(DUP)
    assert _run(capsys, "validate", "dup.policy") == (
        1, [line.format("") for line in DUP_ERRORS], "2 errors, 0 warnings\n")
    assert _run(capsys, "lint", "dup.policy") == (
        1, [line.format("error: ") for line in DUP_ERRORS], "2 errors, 0 warnings\n")


def test_lint_of_a_tenant_prints_the_errors_of_a_policy_file_it_does_not_load(
        tenant: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A YAML twin below the tenant: validate checks it in the tenant's context, and so does lint."""
    (tenant / "yaml").mkdir()
    (tenant / "yaml" / "app.policy.yaml").write_text(
        "policy: app\nclients: [app]\nrequire:\n  amr: {any_of: [smss]}\n")
    error = ("t/yaml/app.policy.yaml:4:18: E_UNKNOWN_METHOD: {}unknown authentication method 'smss' "
             "(hint: did you mean 'sms'?)")
    assert _run(capsys, "validate", "t") == (1, [error.format("")], "1 error, 0 warnings\n")
    assert _run(capsys, "lint", "t") == (1, [
        "t/yaml/app.policy.yaml:4:9: L_AMR_UNSATISFIABLE: error: this requirement can never be met: none of "
        "smss can be produced (hint: enable the methods in tenant.yaml methods (or trust an issuer that "
        "vouches for them), or relax the requirement)",
        error.format("error: "),
    ], "2 errors, 0 warnings\n")


# --- what a directory walk takes ------------------------------------------------------------

def test_a_directory_walk_takes_policies_and_leaves_test_files_and_other_yaml(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Not a tenant: every policy file on its own. A test file is `policy-sso test`'s; a CI workflow
    is not a policy; a YAML file whose top-level key is a misspelt ``policy:`` is one, and so is a
    YAML file that does not parse (it cannot be told from a broken policy)."""
    monkeypatch.chdir(tmp_path)
    d = Path("d")
    (d / "tests").mkdir(parents=True)
    (d / "ok.policy").write_text('policy "ok" {\n  require amr any_of "pwd"\n}\n')
    (d / "tests" / "ok.test.yaml").write_text("tenant: ..\ncases: []\n")
    shutil.copy(ROOT / "docs" / "ci-example.yml", d / "ci-example.yml")
    shutil.copy(ROOT / "policy_sso" / "messages" / "en.yaml", d / "en.yaml")
    (d / "web.yaml").write_text("polcy: web\nrequire:\n  amr: {any_of: [pwd]}\n")
    (d / "broken.yaml").write_text("policy: [web\n")
    errors = [
        "d/broken.yaml:1:9: E_YAML: {}this '[' is never closed (hint: close it with ']' after its last "
        "entry, or write the entries on indented lines without brackets)",
        "d/broken.yaml:2:1: note: expected ',' or ']' here",
        "d/web.yaml:1:1: E_MISSING_KEY: {}missing 'policy:' key (hint: add 'policy:' at the top)",
        "d/web.yaml:1:1: E_UNKNOWN_KEY: {}unknown key 'polcy' (hint: did you mean 'policy'?)",
    ]
    assert _run(capsys, "validate", "d") == (1, [e.format("") for e in errors], "3 errors, 0 warnings\n")
    assert _run(capsys, "lint", "d") == (1, [e.format("error: ") for e in errors], "3 errors, 0 warnings\n")


def test_a_walk_below_a_tenant_leaves_its_test_files_to_policy_test(capsys: pytest.CaptureFixture[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["validate", "policies/tests"]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", "policy-sso validate: nothing to validate in policies/tests: no tenant.yaml, "
                          "no policy file (*.policy, *.policy.yaml) and no YAML file with a top-level "
                          "policy: key below it; its 5 policy test files (*.test.yaml) run with "
                          "`policy-sso test policies/tests`\n")


def test_an_empty_directory_is_nothing_to_validate_and_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    Path("empty").mkdir()
    assert main(["validate", "empty"]) == 2
    assert capsys.readouterr() == ("", "policy-sso validate: nothing to validate in empty: no tenant.yaml, "
                                   "no policy file (*.policy, *.policy.yaml) and no YAML file with a "
                                   "top-level policy: key below it\n")
    assert main(["lint", "empty"]) == 2  # lint neither
    assert capsys.readouterr() == ("", "policy-sso lint: nothing to lint in empty: no tenant.yaml and no "
                                   "policy file below it\n")


def test_a_walk_takes_a_yaml_file_its_tenant_loads_even_without_a_policy_key(
        tenant: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The tenant's policy_files load more/*.yaml: one without ``policy:`` is that tenant's error."""
    config = tenant / "tenant.yaml"
    config.write_text(config.read_text().replace('"policies/*.policy"', '"policies/*.policy", "more/*.yaml"'))
    (tenant / "more").mkdir()
    (tenant / "more" / "x.yaml").write_text("require:\n  mfa: true\n")
    assert _run(capsys, "validate", "t/more") == (1, [
        "t/more/x.yaml:1:1: E_MISSING_KEY: missing 'policy:' key (hint: add 'policy:' at the top)",
    ], "1 error, 0 warnings\n")


def test_a_link_out_of_the_walked_directory_is_named_and_never_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """CI validates contributors' trees: a link to a file elsewhere (the job's environment, a key) is
    an error that names the link, and none of its text reaches the output."""
    secret = tmp_path / "secret"
    secret.write_text("CI_TOKEN=ghp_do_not_print\n")
    monkeypatch.chdir(tmp_path)
    tree = Path("tree")
    tree.mkdir()
    (tree / "ok.policy").write_text(BASE)
    (tree / "env.yaml").symlink_to(secret)
    (tree / "env.policy").symlink_to(secret)
    assert main(["validate", "tree"]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == ["tree/env.policy:1:1: E_READ: tree/env.policy links outside tree: not read",
                                "tree/env.yaml:1:1: E_READ: tree/env.yaml links outside tree: not read"]
    assert "ghp_do_not_print" not in out + err


def test_a_link_out_of_a_tenant_shows_no_line_of_what_it_links_to(
        tenant: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret"
    secret.write_text("CI_TOKEN=ghp_do_not_print\n")
    (tenant / "policies" / "stray.policy").symlink_to(secret)
    assert main(["validate", str(tenant)]) == 1
    out, err = capsys.readouterr()
    assert "E_POLICY_FILES_PATH" in out and "ghp_do_not_print" not in out + err


def test_a_tenant_yaml_of_nested_merge_keys_is_refused_at_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A page of merge keys would build gigabytes when read without the loader's alias budget."""
    # 2**23 merges: about 6 s and 250 MB without the budget (more with each level), so a regression
    # fails here rather than hanging CI
    lines = ["a0: &a0 {k: v}"] + [f"a{n}: &a{n} {{<<: [*a{n - 1}, *a{n - 1}]}}" for n in range(1, 23)]
    (tmp_path / "tenant.yaml").write_text("\n".join([*lines, "x: {<<: [*a22, *a22]}", "lifetme: 1d", ""]))
    started = time.monotonic()
    assert main(["validate", str(tmp_path)]) == 1
    assert time.monotonic() - started < 3
    assert "E_YAML" in capsys.readouterr().out
