"""The pre-commit hooks of ``.pre-commit-hooks.yaml`` run on a temporary git repository.

Two ways:

- offline, always: the manifest's hooks become ``repo: local`` hooks run by
  this interpreter (``language: system``), so their ``files``, ``args`` and
  ``pass_filenames`` are exercised exactly as written;
- as a user would, with ``pre-commit try-repo`` on this checkout: pre-commit
  builds a virtualenv and pip-installs the project (``language: python``),
  which needs the package index. Skipped, saying why, when that cannot work.

Without ``pre-commit`` installed both are skipped with the reason; the manual
check is in docs/authoring.md ("Checking the hooks by hand").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / ".pre-commit-hooks.yaml"
PRE_COMMIT = shutil.which("pre-commit")
needs_pre_commit = pytest.mark.skipif(
    PRE_COMMIT is None,
    reason="PRE-COMMIT IS NOT INSTALLED: pip install pre-commit (declare it in the test extra); "
           "see docs/authoring.md for the manual check")


def hooks() -> list[dict]:
    return yaml.safe_load(MANIFEST.read_text())


def test_the_manifest_exposes_the_four_hooks() -> None:
    by_id = {h["id"]: h for h in hooks()}
    assert set(by_id) == {"policy-sso-validate", "policy-sso-fmt", "policy-sso-lint", "policy-sso-test"}
    for hook in by_id.values():
        assert hook["language"] == "python"
        assert hook["entry"] == f"policy-sso {hook['id'].removeprefix('policy-sso-')}"
    assert by_id["policy-sso-test"]["pass_filenames"] is False


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.email=ci@example.com", "-c", "user.name=ci",
                    *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository holding a copy of the demo tenant and a pre-commit config of local hooks."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "policies", repo / "policies")
    local = []
    for hook in hooks():
        entry = hook["entry"].replace("policy-sso", f"{sys.executable} -m policy_sso.cli", 1)
        local.append({**hook, "entry": entry, "language": "system"})
    config = {"repos": [{"repo": "local", "hooks": local}]}
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "demo tenant")
    return repo


def pre_commit(repo: Path, *args: str) -> subprocess.CompletedProcess:
    assert PRE_COMMIT is not None
    env = {**os.environ, "PRE_COMMIT_HOME": str(repo.parent / "pre-commit-home"), "NO_COLOR": "1"}
    return subprocess.run([PRE_COMMIT, *args], cwd=repo, env=env, capture_output=True, text=True,
                          check=False, timeout=300)


@needs_pre_commit
def test_every_hook_passes_on_the_demo_tenant(repo: Path) -> None:
    run = pre_commit(repo, "run", "--all-files")
    assert run.returncode == 0, run.stdout + run.stderr
    passed = [line.split(".")[0] for line in run.stdout.splitlines() if line.endswith("Passed")]
    assert passed == ["policy-sso validate", "policy-sso fmt", "policy-sso lint", "policy-sso test"]


# (id, file, old text, new text, the hooks that fail, a line of their output)
BREAKAGES = [
    ("fmt-rewrites", "policies/portal.policy", '  clients "portal", "portal-backend"',
     '  clients "portal" ,"portal-backend"', ["policy-sso fmt"], "files were modified by this hook"),
    ("validate-unknown-method", "policies/portal.policy", '"pwd", "wia", "hwk"', '"pwd", "wia", "hwkk"',
     ["policy-sso validate", "policy-sso lint", "policy-sso test"],
     "policies/portal.policy:4:36: E_UNKNOWN_METHOD: unknown authentication method 'hwkk'"),
    ("lint-dead-when", "policies/portal.policy", '  require amr any_of "pwd", "wia", "hwk"',
     '  require amr any_of "pwd", "wia", "hwk"\n  when prompt is "none" and prompt is "login" {\n'
     '    require mfa\n  }', ["policy-sso lint"], "policies/portal.policy:5:3: L_WHEN_NEVER: error:"),
    ("test-broken-expectation", "policies/tests/portal.test.yaml",
     "outcome: login_required, reasons: [max_age_exceeded]", "outcome: allow, reasons: [max_age_exceeded]",
     ["policy-sso test"], "outcome  expected: allow"),
]


@needs_pre_commit
@pytest.mark.parametrize(("file", "old", "new", "failing", "message"), [b[1:] for b in BREAKAGES],
                         ids=[b[0] for b in BREAKAGES])
def test_a_hook_stops_the_commit(repo: Path, file: str, old: str, new: str, failing: list[str],
                                 message: str) -> None:
    path = repo / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    git(repo, "add", "-A")
    run = pre_commit(repo, "run", "--all-files")
    assert run.returncode == 1
    failed = [line for line in run.stdout.splitlines() if line.endswith("Failed")]
    assert [line.split(".")[0] for line in failed] == failing, run.stdout
    assert message in run.stdout
    if failing == ["policy-sso fmt"]:  # the formatter fixed the file: the next run passes
        git(repo, "add", "-A")
        assert pre_commit(repo, "run", "--all-files").returncode == 0


@needs_pre_commit
def test_try_repo_installs_the_hooks_like_a_user_would(tmp_path: Path) -> None:
    """``pre-commit try-repo`` with ``language: python``: needs the package index to build the env."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "policies", repo / "policies")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "demo tenant")
    run = pre_commit(repo, "try-repo", str(ROOT), "policy-sso-validate", "--all-files")
    output = run.stdout + run.stderr
    if "CalledProcessError" in output and "pip" in output:
        pytest.skip("PRE-COMMIT COULD NOT INSTALL THE HOOK ENVIRONMENT (no package index reachable?): "
                    "check by hand as docs/authoring.md shows\n" + output[-2000:])
    if ".schema.json" in output and ("FileNotFoundError" in output or "No such file" in output):
        pytest.xfail("the installed (non-editable) package cannot find its JSON Schemas: schemas/ must "
                     "ship as package data (pyproject.toml, policy_sso/parse/yaml_source.py SCHEMA_DIR)")
    assert run.returncode == 0, output
    assert "policy-sso validate" in output and "Passed" in output


def test_the_documented_local_hooks_and_ci_commands_match_the_cli() -> None:
    import re
    import shlex

    from policy_sso.cli import build_parser

    doc = (ROOT / "docs" / "authoring.md").read_text()
    blocks = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", doc, re.S)]
    (local,) = [b for b in blocks if isinstance(b, dict) and b.get("repos", [{}])[0].get("repo") == "local"]
    by_id = {h["id"]: h for h in hooks()}
    for hook in local["repos"][0]["hooks"]:
        assert hook["files"] == by_id[hook["id"]]["files"], hook["id"]
        assert hook["entry"] == by_id[hook["id"]]["entry"]
    workflow = yaml.safe_load((ROOT / "docs" / "ci-example.yml").read_text())
    commands = [line.strip() for step in workflow["jobs"]["policies"]["steps"]
                for line in step.get("run", "").splitlines() if line.strip().startswith("policy-sso ")]
    assert len(commands) == 5
    for command in commands:
        argv = shlex.split(re.sub(r"\s*(\|\||#).*$", "", command))[1:]
        build_parser().parse_args(argv)  # exits (a test failure) on an unknown option


@needs_pre_commit
@pytest.mark.parametrize("name", ["a-payments-fast.policy", "zz-payments-fast.policy"],
                         ids=["sorted-before-the-owner", "sorted-after-the-owner"])
def test_a_new_file_taking_another_policys_client_fails_on_the_new_file(repo: Path, name: str) -> None:
    """Only the new file is staged, as in a commit that adds it: pre-commit passes just that file."""
    new = repo / "policies" / name
    new.write_text('policy "payments-fast" {\n  clients "payments-web"\n  require amr any_of "pwd"\n}\n')
    git(repo, "add", str(new))
    run = pre_commit(repo, "run")  # the staged files, as `git commit` runs it
    assert run.returncode == 1, run.stdout
    failed = [line.split(".")[0] for line in run.stdout.splitlines() if line.endswith("Failed")]
    assert "policy-sso validate" in failed
    assert (f"policies/{name}:2:11: E_DUPLICATE_CLIENT: client 'payments-web' is claimed by 2 policies"
            in run.stdout), run.stdout
    assert "policies/payments.policy:3:11: note: also claimed by policy 'payments'" in run.stdout
