"""``policy-sso validate`` on broken inputs: every error at once, exact lines, exit 1, no traceback.

``tests/broken/`` holds one small file per kind of error (``dsl/``, ``yaml/``)
and two tenant directories whose errors need the tenant (``tenant-policies/``:
acr levels, clients, names across files; ``tenant-config/``: tenant.yaml,
clients.yaml, users.yaml). :data:`EXPECTED` is exactly what

    cd tests/broken && policy-sso validate dsl yaml tenant-config tenant-policies

prints; each case below must print exactly its own lines of it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from policy_sso.cli import main

ROOT = Path(__file__).resolve().parents[1]
BROKEN = ROOT / "tests" / "broken"
UNSET_KEY_VAR = "POLICY_SSO_TEST_UNSET_HINT_KEY"  # named by dsl/env-key-unset.policy
UNSET_TOTP_VAR = "POLICY_SSO_BROKEN_UNSET_TOTP"  # named by tenant-config/users.yaml

EXPECTED = """\
dsl/alg-none.policy:3:3: E_ALG_NONE: alg none is never accepted for login_hint_token
dsl/bad-duration-unit.policy:4:16: E_DURATION: invalid duration '2w' (hint: write an integer followed by s, m, h or d, e.g. 15m)
dsl/bad-prompt.policy:3:8: E_VALUE: unknown prompt value 'never' (hint: one of consent, login, none, select_account)
dsl/client-in-two-policies.policy:7:11: E_DUPLICATE_CLIENT: client 'docs' already belongs to a policy at dsl/client-in-two-policies.policy:3 (hint: a client belongs to at most one policy)
dsl/deep-condition.policy:3:36: E_NESTING: condition nested deeper than 32 levels
dsl/duplicate-policy.policy:6:1: E_DUPLICATE_POLICY: policy 'twice' is defined twice (hint: first defined at dsl/duplicate-policy.policy:2)
dsl/env-key-unset.policy:5:5: W_KEY_UNRESOLVED: environment variable POLICY_SSO_TEST_UNSET_HINT_KEY is not set (hint: the server refuses to start without it)
dsl/es256-with-rsa.policy:5:5: E_ALG_KEY_MISMATCH: alg ES256 needs a EC P-256 public key, found RSA
dsl/hs256-with-pem.policy:5:5: E_ALG_KEY_MISMATCH: alg HS256 with a RSA key: a public key must never be used as an HMAC secret (hint: use the alg that fits the key (RS256/PS256))
dsl/inactivity-over-7d.policy:4:5: E_INACTIVITY_MAX: inactivity 8d exceeds the maximum of 7d (604800 s)
dsl/latin1.policy:3:15: E_ENCODING: not UTF-8 text: invalid continuation byte (byte 0xe9)
dsl/many-errors.policy:6:5: E_INACTIVITY_MAX: inactivity 10d exceeds the maximum of 7d (604800 s)
dsl/many-errors.policy:7:18: E_DURATION: a duration must be greater than zero
dsl/many-errors.policy:9:11: E_UNKNOWN_METHOD: unknown authentication method 'carrier-pigeon' (hint: use an RFC 8176 amr value (pwd, otp, hwk, wia, …) or enable it in tenant.yaml methods)
dsl/many-errors.policy:10:12: E_ON_UNMET: unknown on_unmet value 'later' (hint: use one of login_required, interaction_required, unmet_authentication_requirements)
dsl/many-errors.policy:15:24: E_SYNTAX: unexpected 'm' (hint: expected 'clients', 'on_unmet', 'require', 'session', 'trust', 'when', '}')
dsl/many-errors.policy:19:3: E_TRUST_NO_LIFETIME: trust block has no max_lifetime (hint: add e.g. max_lifetime 2m: hint tokens must be short-lived)
dsl/many-errors.policy:19:3: E_UNKNOWN_METHOD: unknown authentication method 'telepathy' (hint: use an RFC 8176 amr value (pwd, otp, hwk, wia, …) or enable it in tenant.yaml methods)
dsl/many-errors.policy:21:5: E_ALG_KEY_MISMATCH: alg RS256 needs a RSA public key, found EC P-256
dsl/many-errors.policy:25:8: E_VALUE: unknown prompt value 'silent' (hint: one of consent, login, none, select_account)
dsl/many-errors.policy:25:30: E_UNKNOWN_METHOD: unknown authentication method 'smoke-signal' (hint: use an RFC 8176 amr value (pwd, otp, hwk, wia, …) or enable it in tenant.yaml methods)
dsl/many-errors.policy:26:24: E_DURATION: invalid duration '90x' (hint: write an integer followed by s, m, h or d, e.g. 15m)
dsl/many-errors.policy:32:5: E_SYNTAX: unexpected 'clients' (hint: expected 'require', '}')
dsl/many-errors.policy:36:1: E_DUPLICATE_POLICY: policy 'many' is defined twice (hint: first defined at dsl/many-errors.policy:3)
dsl/many-errors.policy:37:11: E_DUPLICATE_CLIENT: client 'portal' already belongs to a policy at dsl/many-errors.policy:4 (hint: a client belongs to at most one policy)
dsl/missing-key-file.policy:5:5: E_KEY_UNREADABLE: key file '../keys/no-such.key' cannot be read
dsl/one-line.policy:2:65: E_SYNTAX: unexpected 'docs' (hint: expected a quoted string)
dsl/syntax.policy:3:11: E_SYNTAX: unexpected character '"' (hint: strings are double-quoted; '#' starts a comment)
dsl/trust-incomplete.policy:3:3: E_ALG_UNSUPPORTED: unsupported alg 'HS1' (hint: one of ES256, EdDSA, HS256, HS384, HS512, PS256, RS256)
dsl/trust-incomplete.policy:3:3: E_TRUST_NO_AMR: trust block declares no amr (hint: say what a valid hint proves, e.g. amr "wia")
dsl/trust-incomplete.policy:3:3: E_TRUST_NO_ISSUER: trust block has no issuer
dsl/trust-incomplete.policy:3:3: E_TRUST_NO_LIFETIME: trust block has no max_lifetime (hint: add e.g. max_lifetime 2m: hint tokens must be short-lived)
dsl/trust-no-key.policy:3:3: E_TRUST_NO_KEY: trust block has no key (hint: add key env "VAR" or key file "path")
dsl/unknown-method.policy:3:11: E_UNKNOWN_METHOD: unknown authentication method 'magic-link' (hint: use an RFC 8176 amr value (pwd, otp, hwk, wia, …) or enable it in tenant.yaml methods)
dsl/unknown-on-unmet.policy:4:12: E_ON_UNMET: unknown on_unmet value 'access_denied' (hint: use one of login_required, interaction_required, unmet_authentication_requirements)
dsl/unknown-requirement.policy:3:11: E_SYNTAX: unexpected 'biometrics' (hint: expected 'acr', 'amr', 'consent', 'mfa')
dsl/weak-hmac-key.policy:5:5: E_WEAK_KEY: HMAC key is 16 bytes; at least 32 required (hint: generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')
dsl/zero-duration.policy:3:22: E_DURATION: a duration must be greater than zero
tenant-config/clients.yaml:3:5: E_CLIENT_SECRET: confidential client 'backend' has no secret (hint: add secret: {env: VAR} or {file: path})
tenant-config/clients.yaml:6:5: E_CLIENT_SECRET: public client 'spa' must not have a secret
tenant-config/clients.yaml:11:5: E_GRANT: public client 'mobile' cannot use client_credentials
tenant-config/clients.yaml:16:5: E_REDIRECT_URIS: client 'worker' has no redirect_uris
tenant-config/clients.yaml:19:5: E_DUPLICATE: client_id 'worker' is registered twice
tenant-config/tenant.yaml:6:3: E_INACTIVITY_MAX: inactivity 10d exceeds 7d (604800 s)
tenant-config/tenant.yaml:8:5: E_UNKNOWN_METHOD: unknown authentication method 'voice-print'
tenant-config/tenant.yaml:12:5: E_DUPLICATE: acr level 'loa1' is defined twice
tenant-config/tenant.yaml:15:1: E_UNKNOWN_POLICY: default_policy 'standard' is not defined
tenant-config/users.yaml:6:5: E_DUPLICATE: subject 'u-1' appears twice
tenant-config/users.yaml:6:5: E_DUPLICATE: username 'alice' appears twice
tenant-config/users.yaml:13:5: E_WEAK_KEY: the TOTP secret of 'short' is 80 bits; at least 128 required (RFC 4226 §4) (hint: generate one with: python -c 'import pyotp; print(pyotp.random_base32())')
tenant-config/users.yaml:18:5: E_TOTP_SECRET: the TOTP secret of 'garbled' is not base32 (RFC 4648 §6) (hint: generate one with: python -c 'import pyotp; print(pyotp.random_base32())')
tenant-config/users.yaml:23:5: E_KEY_UNREADABLE: TOTP secret file 'secrets/lost.totp' cannot be read
tenant-config/users.yaml:28:5: W_KEY_UNRESOLVED: environment variable POLICY_SSO_BROKEN_UNSET_TOTP is not set (hint: until it is, 'elsewhere' cannot complete a second factor)
tenant-policies/app.policy.yaml:3:1: E_DUPLICATE_POLICY: policy 'web' is defined twice (hint: first defined at tenant-policies/web.policy:2)
tenant-policies/app.policy.yaml:4:16: E_DUPLICATE_CLIENT: client 'web' already belongs to a policy at tenant-policies/web.policy:3 (hint: a client belongs to at most one policy)
tenant-policies/web.policy:3:18: E_UNKNOWN_CLIENT: client 'ghost' is not registered in clients.yaml
tenant-policies/web.policy:5:5: E_INACTIVITY_LONGER: inactivity 2h is longer than the tenant's 1h (hint: a policy may only shorten the tenant's inactivity window)
tenant-policies/web.policy:7:11: E_UNKNOWN_ACR: acr level 'urn:example:loa:9' is not defined in tenant.yaml (hint: defined levels: urn:example:loa:1, urn:example:loa:2)
tenant-policies/web.policy:8:8: E_UNKNOWN_CLIENT: client 'phantom' is not registered
yaml/alias-bomb.policy.yaml:2:25: E_YAML: aliases expand this document far beyond its size
yaml/amr-typo.policy.yaml:4:9: E_UNKNOWN_KEY: unknown key 'one_of' (hint: allowed: all_of, any_of)
yaml/bad-duration.policy.yaml:4:15: E_DURATION: invalid duration '15 minutes' (hint: write an integer followed by s, m, h or d, e.g. 15m)
yaml/bad-scalar.policy.yaml:3:11: E_YAML: invalid scalar 'portal' (as !!int) (hint: quote the value to keep it a string)
yaml/bad-scalar.policy.yaml:5:17: E_DURATION: invalid duration '2024-13-01' (hint: write an integer followed by s, m, h or d, e.g. 15m)
yaml/bad-scalar.policy.yaml:5:17: E_YAML: invalid scalar '2024-13-01' (as !!timestamp) (hint: quote the value to keep it a string)
yaml/duplicate-key.policy.yaml:5:1: E_DUPLICATE_KEY: key 'require' appears twice in this mapping
yaml/latin1.policy.yaml:3:14: E_ENCODING: not UTF-8 text: invalid continuation byte (byte 0xe9)
yaml/malformed.policy.yaml:4:8: E_YAML: did not find expected ',' or '}'
yaml/many-errors.policy.yaml:3:10: E_TYPE: 'portal' is not of type 'array' (at /clients)
yaml/many-errors.policy.yaml:5:15: E_DURATION: invalid duration '15x' (hint: write an integer followed by s, m, h or d, e.g. 15m)
yaml/many-errors.policy.yaml:6:3: E_UNKNOWN_KEY: unknown key 'idle' (hint: allowed: inactivity, max_auth_age)
yaml/many-errors.policy.yaml:8:8: E_TYPE: 'sometimes' is not of type 'boolean' (at /require/mfa)
yaml/many-errors.policy.yaml:9:8: E_EMPTY: '' should be non-empty (at /require/acr)
yaml/many-errors.policy.yaml:10:12: E_EMPTY: [] should be non-empty (at /require/consent)
yaml/many-errors.policy.yaml:11:11: E_VALUE: 'later' is not one of ['login_required', 'interaction_required', 'unmet_authentication_requirements'] (at /on_unmet)
yaml/many-errors.policy.yaml:15:12: E_SCHEMA: {'env': 'A', 'file': 'b'} has too many properties (at /trust/login_hint_token/0/key)
yaml/many-errors.policy.yaml:17:21: E_DURATION: invalid duration '2 minutes' (hint: write an integer followed by s, m, h or d, e.g. 15m)
yaml/many-errors.policy.yaml:19:9: E_SCHEMA: {'scope_has': 'x', 'prompt_is': 'login'} has too many properties (at /when/0/if)
yaml/many-errors.policy.yaml:21:5: E_MISSING_KEY: 'if' is a required property (at /when/1)
yaml/missing-name.policy.yaml:2:1: E_MISSING_KEY: 'policy' is a required property (at the document)
yaml/recursive-alias.policy.yaml:3:10: E_TYPE: None is not of type 'string' (at /clients/1)
yaml/recursive-alias.policy.yaml:3:10: E_YAML: recursive alias
yaml/unknown-key.policy.yaml:4:1: E_UNKNOWN_KEY: unknown key 'required' (hint: allowed: clients, on_unmet, policy, require, session, trust, when)
yaml/unknown-method.policy.yaml:4:9: E_UNKNOWN_METHOD: unknown authentication method 'magic-link' (hint: use an RFC 8176 amr value (pwd, otp, hwk, wia, …) or enable it in tenant.yaml methods)
yaml/unknown-method.policy.yaml:6:16: E_VALUE: unknown prompt value 'never' (hint: one of consent, login, none, select_account)
yaml/wrong-type.policy.yaml:3:10: E_TYPE: 'portal' is not of type 'array' (at /clients)
yaml/zero-duration.policy.yaml:3:23: E_DURATION: a duration must be greater than zero
yaml/zero-duration.policy.yaml:6:29: E_DURATION: a duration must be greater than zero
"""  # noqa: E501

LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<code>[EW]_[A-Z_]+): (?P<rest>.*)$")
TENANT_CASES = ("tenant-config", "tenant-policies")


def _case_of(line: str) -> str:
    file = line.split(":", 1)[0]
    top = file.split("/", 1)[0]
    return top if top in TENANT_CASES else file


def _expected_by_case() -> dict[str, list[str]]:
    cases: dict[str, list[str]] = {}
    for line in EXPECTED.splitlines():
        cases.setdefault(_case_of(line), []).append(line)
    return cases


BY_CASE = _expected_by_case()


def _case_id(case: str) -> str:
    codes = sorted({LINE.match(line)["code"] for line in BY_CASE[case]})
    label = ",".join(codes) if len(codes) <= 2 else f"{len(BY_CASE[case])} errors"
    return f"{label}:{case}"


@pytest.fixture
def in_broken(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from tests/broken (paths print as dsl/…, as in EXPECTED), with the test key unset."""
    monkeypatch.chdir(BROKEN)
    monkeypatch.delenv(UNSET_KEY_VAR, raising=False)
    monkeypatch.delenv(UNSET_TOTP_VAR, raising=False)
    return BROKEN


def _validate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["validate", *argv])
    out, err = capsys.readouterr()
    return status, out, err


# --- one case, exact lines ----------------------------------------------------------

@pytest.mark.parametrize("case", sorted(BY_CASE), ids=_case_id)
def test_each_broken_input_prints_exactly_its_errors(case: str, in_broken: Path, capsys) -> None:
    status, out, err = _validate(capsys, case)
    expected = BY_CASE[case]
    assert out.splitlines() == expected
    assert (status, err) == _outcome(expected)
    assert "Traceback" not in out + err


def _outcome(lines: list[str]) -> tuple[int, str]:
    """Return the exit status and the summary line that ``validate`` prints for these diagnostics."""
    errors = sum(LINE.match(line)["code"].startswith("E_") for line in lines)
    warnings = len(lines) - errors
    counts = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}\n"
    return (1, counts) if errors else (0, "ok: " + counts)  # a warning alone does not fail CI


TENANT_FILES = sorted(f"{case}/{p.name}" for case in TENANT_CASES
                      for p in (BROKEN / case).iterdir() if p.is_file())


@pytest.mark.parametrize("file", TENANT_FILES)
def test_a_tenant_file_alone_prints_its_lines_of_the_tenant(file: str, in_broken: Path, capsys) -> None:
    """As pre-commit runs it, one file at a time: the tenant's rules apply, those across files too."""
    status, out, err = _validate(capsys, file)
    expected = [line for line in EXPECTED.splitlines() if line.startswith(f"{file}:")]
    assert out.splitlines() == expected
    assert (status, err) == _outcome(expected)


def test_every_broken_file_has_its_expected_lines() -> None:
    """A file added to tests/broken/ without an expectation (or one left over) fails here."""
    files = {p.relative_to(BROKEN).as_posix() for sub in ("dsl", "yaml") for p in (BROKEN / sub).iterdir()}
    lone = {case for case in BY_CASE if case not in TENANT_CASES}
    assert files == lone


def test_error_kinds_cover_both_forms() -> None:
    codes = {LINE.match(line)["code"] for line in EXPECTED.splitlines()}
    dsl_codes = {LINE.match(line)["code"] for line in EXPECTED.splitlines() if line.startswith("dsl/")}
    yaml_codes = {LINE.match(line)["code"] for line in EXPECTED.splitlines() if ".yaml:" in line}
    assert len(codes) >= 30
    assert len(dsl_codes) >= 15
    assert len(yaml_codes) >= 10


def test_all_errors_of_a_dsl_file_at_once(in_broken: Path, capsys) -> None:
    """Syntax errors in two blocks do not hide each other nor the other blocks' semantic errors."""
    status, out, _ = _validate(capsys, "dsl/many-errors.policy")
    codes = [LINE.match(line)["code"] for line in out.splitlines()]
    assert status == 1
    assert codes.count("E_SYNTAX") == 2
    assert {"E_INACTIVITY_MAX", "E_DURATION", "E_UNKNOWN_METHOD", "E_ON_UNMET", "E_ALG_KEY_MISMATCH",
            "E_TRUST_NO_LIFETIME", "E_VALUE", "E_DUPLICATE_POLICY", "E_DUPLICATE_CLIENT"} <= set(codes)
    assert len(codes) == 14


def test_all_schema_errors_of_a_yaml_file_at_once(in_broken: Path, capsys) -> None:
    status, out, _ = _validate(capsys, "yaml/many-errors.policy.yaml")
    lines = out.splitlines()
    assert status == 1
    assert len(lines) == 11
    assert len({LINE.match(line)["line"] for line in lines}) == 11  # one per offending node


# --- whole runs -------------------------------------------------------------------------

def test_everything_at_once_in_one_run(in_broken: Path, capsys) -> None:
    status, out, err = _validate(capsys, "dsl", "yaml", *TENANT_CASES)
    assert out == EXPECTED
    assert (status, err) == _outcome(EXPECTED.splitlines()) == (1, "86 errors, 2 warnings\n")


def _policy_sso_command() -> list[str]:
    script = Path(sys.executable).with_name("policy-sso")
    return [str(script)] if script.exists() else [sys.executable, "-m", "policy_sso.cli"]


def test_real_subprocess_prints_every_line_and_exits_1() -> None:
    env = {k: v for k, v in os.environ.items() if k not in (UNSET_KEY_VAR, UNSET_TOTP_VAR)}
    run = subprocess.run([*_policy_sso_command(), "validate", "dsl", "yaml", *TENANT_CASES],
                         cwd=BROKEN, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert run.stdout == EXPECTED
    assert (run.returncode, run.stderr) == _outcome(EXPECTED.splitlines())


def test_paths_print_relative_to_the_working_directory(monkeypatch, capsys) -> None:
    monkeypatch.chdir(ROOT)
    status, out, _ = _validate(capsys, "tests/broken/dsl/duplicate-policy.policy")
    assert status == 1
    assert out.splitlines() == [
        "tests/broken/dsl/duplicate-policy.policy:6:1: E_DUPLICATE_POLICY: policy 'twice' is defined twice "
        "(hint: first defined at tests/broken/dsl/duplicate-policy.policy:2)"]


def test_demo_tenant_validates_clean(monkeypatch, capsys) -> None:
    monkeypatch.chdir(ROOT)
    status, out, err = _validate(capsys, "policies/")
    assert (status, out, err) == (0, "", "ok: 0 errors, 0 warnings\n")
    status, out, _ = _validate(capsys, "policies/", "--format", "json")
    assert status == 0
    assert json.loads(out) == {"diagnostics": [], "count": 0}


# --- the other renderings ---------------------------------------------------------------

def test_json_format_lists_every_diagnostic_with_its_fields(in_broken: Path, capsys) -> None:
    status, out, err = _validate(capsys, "dsl/many-errors.policy", "--format", "json")
    assert status == 1
    assert err == ""  # the summary line belongs to the text format only
    document = json.loads(out)
    items = document["diagnostics"]
    assert document["count"] == len(items) == len(BY_CASE["dsl/many-errors.policy"])
    for item, line in zip(items, BY_CASE["dsl/many-errors.policy"], strict=True):
        assert set(item) == {"file", "line", "col", "code", "message", "hint", "severity"}
        assert isinstance(item["line"], int)
        assert isinstance(item["col"], int)
        assert item["severity"] == "error"
        text = f"{item['file']}:{item['line']}:{item['col']}: {item['code']}: {item['message']}"
        assert line == (f"{text} (hint: {item['hint']})" if item["hint"] else text)
    assert items[4] == {
        "file": "dsl/many-errors.policy", "line": 15, "col": 24, "code": "E_SYNTAX",
        "message": "unexpected 'm'",
        "hint": "expected 'clients', 'on_unmet', 'require', 'session', 'trust', 'when', '}'",
        "severity": "error",
    }


def test_json_format_marks_warnings(in_broken: Path, capsys) -> None:
    status, out, _ = _validate(capsys, "dsl/env-key-unset.policy", "--format", "json")
    assert status == 0
    [item] = json.loads(out)["diagnostics"]
    assert (item["code"], item["severity"], item["line"]) == ("W_KEY_UNRESOLVED", "warning", 5)


def _github_line(text_line: str) -> str:
    m = LINE.match(text_line)
    level = "warning" if m["code"].startswith("W_") else "error"
    return (f"::{level} file={m['file']},line={m['line']},col={m['col']},title={m['code']}::"
            f"{m['code']}: {m['rest']}")


def test_github_format_annotates_each_error(in_broken: Path, capsys) -> None:
    status, out, err = _validate(capsys, "tenant-config", "dsl/env-key-unset.policy", "--format", "github")
    assert status == 1
    assert err == ""
    lines = out.splitlines()
    expected = BY_CASE["dsl/env-key-unset.policy"] + BY_CASE["tenant-config"]
    assert lines == [_github_line(line) for line in expected]
    assert lines[0] == (
        "::warning file=dsl/env-key-unset.policy,line=5,col=5,title=W_KEY_UNRESOLVED::W_KEY_UNRESOLVED: "
        "environment variable POLICY_SSO_TEST_UNSET_HINT_KEY is not set "
        "(hint: the server refuses to start without it)")
    assert lines[1] == (
        "::error file=tenant-config/clients.yaml,line=3,col=5,title=E_CLIENT_SECRET::E_CLIENT_SECRET: "
        "confidential client 'backend' has no secret (hint: add secret: {env: VAR} or {file: path})")


def test_github_format_escapes_property_separators(tmp_path: Path, monkeypatch, capsys) -> None:
    """A ',' or ':' in a file name would end the annotation's property early."""
    (tmp_path / "odd,name:1.policy").write_text('policy "p" {\n  clients portal\n}\n')
    monkeypatch.chdir(tmp_path)
    status, out, _ = _validate(capsys, "odd,name:1.policy", "--format", "github")
    assert status == 1
    assert out == ("::error file=odd%2Cname%3A1.policy,line=2,col=11,title=E_SYNTAX::E_SYNTAX: "
                   "unexpected 'portal' (hint: expected a quoted string)\n")


# --- edges of the command ---------------------------------------------------------------

def test_missing_path_is_a_finding(in_broken: Path, capsys) -> None:
    status, out, _ = _validate(capsys, "no/such.policy")
    assert status == 1
    assert out == "no/such.policy:1:1: E_READ: no such file or directory\n"


@pytest.mark.parametrize("argv", [[], ["policies", "--format", "xml"]], ids=["no-path", "bad-format"])
def test_usage_errors_exit_2(argv: list[str], capsys) -> None:
    assert main(["validate", *argv]) == 2
    assert "usage: policy-sso validate" in capsys.readouterr().err


def test_bom_and_crlf_keep_line_numbers(tmp_path: Path, monkeypatch, capsys) -> None:
    """Editors on Windows write a BOM and CRLF: neither is an error nor shifts a position."""
    (tmp_path / "bom.policy").write_bytes(
        b'\xef\xbb\xbfpolicy "bom" {\r\n  clients "x"\r\n  require mfa within 0m\r\n}\r\n')
    (tmp_path / "bom.policy.yaml").write_bytes(b"\xef\xbb\xbfpolicy: bom\r\nsession: {inactivity: 0}\r\n")
    monkeypatch.chdir(tmp_path)
    status, out, _ = _validate(capsys, "bom.policy", "bom.policy.yaml")
    assert status == 1
    assert out.splitlines() == [
        "bom.policy:3:22: E_DURATION: a duration must be greater than zero",
        "bom.policy.yaml:2:23: E_TYPE: 0 is not of type 'string' (at /session/inactivity)",
    ]


def test_every_code_is_documented() -> None:
    reference = (ROOT / "docs" / "policy-language.md").read_text()
    codes = {LINE.match(line)["code"] for line in EXPECTED.splitlines()} | {"E_READ"}
    assert {code for code in codes if f"| `{code}` |" not in reference} == set()
