"""``policy-sso lint``: every rule fires on a bad policy and stays silent on a correct one.

Each case copies ``tests/lint/base`` (a valid tenant with methods pwd and otp
only), writes one ``lint.policy`` for the ``app`` client and optionally
replaces lines of ``tenant.yaml``, then checks the exact findings.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from policy_sso.authoring.lint import CODES, lint_tenant
from policy_sso.cli import main
from policy_sso.tenant import load_tenant

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "tests" / "lint" / "base"


@dataclass(frozen=True)
class Case:
    """One lint case: the policy body for client ``app``, tenant.yaml replacements, keys to write."""

    body: str
    tenant: tuple[tuple[str, str], ...] = ()
    keys: tuple[tuple[str, str], ...] = ()  # (file name, kind) kind: hmacNN or rsaNNNN


def _key(kind: str) -> bytes:
    if kind.startswith("hmac"):
        return b"k" * int(kind[4:])
    key = rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def make_tenant(tmp_path: Path, case: Case) -> Path:
    directory = tmp_path / "tenant"
    shutil.copytree(BASE, directory)
    tenant_yaml = directory / "tenant.yaml"
    text = tenant_yaml.read_text()
    for old, new in case.tenant:
        assert old in text, old
        text = text.replace(old, new)
    tenant_yaml.write_text(text)
    for name, kind in case.keys:
        (directory / name).write_bytes(_key(kind))
    (directory / "lint.policy").write_text('policy "lint" {\n  clients "app"\n' + case.body + "}\n")
    return directory


def findings(tmp_path: Path, case: Case) -> list[str]:
    directory = make_tenant(tmp_path, case)
    prefix = f"{directory}/"
    return [f"{str(d).removeprefix(prefix)} [{d.severity}]" for d in lint_tenant(load_tenant(directory))]


UNMET = "this requirement can never be met: "
NEVER = "this when block can never fire: no request and session make its condition true"


def when(condition: str, body: str = "    require mfa\n") -> str:
    return f"  when {condition} {{\n{body}  }}\n"


def trust(key: str, alg: str, amr: str = "pwd") -> str:
    return (f'  trust login_hint_token {{\n    issuer "https://idp.example"\n    key {key}\n'
            f'    alg {alg}\n    max_lifetime 2m\n    amr "{amr}"\n  }}\n')


def methods(new: str) -> tuple[tuple[str, str], ...]:
    return (("methods: [pwd, otp]", f"methods: [{new}]"),)


def key_file(name: str, kind: str) -> tuple[tuple[str, str], ...]:
    return ((name, kind),)


REFRESH = "refresh_token_lifetime: 14d"
NETWORKS = (("methods: [pwd, otp]",
             'methods: [pwd, otp]\nnetworks: {office: ["10.0.0.0/8", "192.168.0.0/16"], nowhere: []}'),)
VOLUNTARY = (("methods: [pwd, otp]", "methods: [pwd, otp]\nacr_values: {requested: voluntary}"),)

# (code, bad case, the exact finding it gives, a correct case that gives nothing)
RULES = [
    ("L_AMR_UNSATISFIABLE-all_of", Case('  require amr all_of "pwd", "hwk"\n'),
     f"lint.policy:3:11: L_AMR_UNSATISFIABLE: {UNMET}method hwk cannot be produced",
     Case('  require amr all_of "pwd", "otp"\n')),
    ("L_AMR_UNSATISFIABLE-any_of", Case('  require amr any_of "hwk", "wia"\n'),
     f"lint.policy:3:11: L_AMR_UNSATISFIABLE: {UNMET}none of hwk, wia can be produced",
     Case('  require amr any_of "hwk", "otp"\n')),
    ("L_AMR_UNSATISFIABLE-trusted-issuer-vouches", Case('  require amr all_of "hwk"\n'),
     f"lint.policy:3:11: L_AMR_UNSATISFIABLE: {UNMET}method hwk cannot be produced",
     Case('  require amr all_of "hwk"\n' + trust('file "hint.key"', "HS256", amr="hwk"),
          keys=key_file("hint.key", "hmac32"))),
    ("L_MFA_UNSATISFIABLE", Case("  require mfa\n", tenant=methods("pwd, wia")),
     f"lint.policy:3:11: L_MFA_UNSATISFIABLE: {UNMET}the producible methods (pwd, wia) span one factor",
     Case("  require mfa\n")),
    ("L_ACR_UNSATISFIABLE", Case('  require acr "loa3"\n'),
     f"lint.policy:3:11: L_ACR_UNSATISFIABLE: {UNMET}no level at or above loa3 can be reached with the "
     "enabled methods",
     Case('  require acr "loa3"\n', tenant=methods("pwd, otp, hwk"))),
    ("L_WHEN_NEVER-two-prompts", Case(when('prompt is "none" and prompt is "login"')),
     f"lint.policy:3:3: L_WHEN_NEVER: {NEVER}", Case(when('prompt is "consent" and prompt is "login"'))),
    ("L_WHEN_NEVER-x-and-not-x", Case(when('scope has "x" and not scope has "x"')),
     f"lint.policy:3:3: L_WHEN_NEVER: {NEVER}", Case(when('scope has "x" or not scope has "x"'))),
    ("L_WHEN_NEVER-another-policys-client", Case(when('client is "other"')),
     f"lint.policy:3:3: L_WHEN_NEVER: {NEVER}", Case(when('client is "app"'))),
    ("L_WHEN_NEVER-method-nobody-produces", Case(when('session amr has "hwk"')),
     f"lint.policy:3:3: L_WHEN_NEVER: {NEVER}", Case(when('session amr has "otp"'))),
    ("L_WHEN_SHADOWED", Case("  require mfa within 5m\n" + when('scope has "x"')),
     "lint.policy:4:3: L_WHEN_SHADOWED: this when block adds nothing: "
     "every requirement in it already applies unconditionally",
     Case("  require mfa\n" + when('scope has "x"', "    require mfa within 5m\n"))),
    ("L_WHEN_SHADOWED-empty", Case(when('scope has "x"', "")),
     "lint.policy:3:3: L_WHEN_SHADOWED: this when block adds nothing: it requires nothing",
     Case(when('scope has "x"', '    require consent "x"\n'))),
    ("L_WHEN_SHADOWED-weaker-amr-and-acr",
     Case('  require amr all_of "pwd", "otp"\n  require acr "loa2"\n'
          + when('scope has "x"', '    require amr any_of "otp", "hwk"\n    require acr "loa1"\n')),
     "lint.policy:5:3: L_WHEN_SHADOWED",
     Case('  require amr all_of "pwd"\n  require acr "loa1"\n'
          + when('scope has "x"', '    require amr any_of "otp", "hwk"\n    require acr "loa2"\n'))),
    ("L_INACTIVITY_EXCEEDS_LIFETIME", Case("", tenant=(("lifetime: 14d", "lifetime: 12h"),)),
     "tenant.yaml:7:3: L_INACTIVITY_EXCEEDS_LIFETIME: inactivity 1d is longer than session.lifetime 12h: "
     "the idle window can never end a session",
     Case("", tenant=(("lifetime: 14d", "lifetime: 12h"), ("inactivity: 1d", "inactivity: 1h")))),
    ("L_MAX_AUTH_AGE_BEYOND_LIFETIME", Case("  session {\n    max_auth_age 20d\n  }\n"),
     "lint.policy:4:5: L_MAX_AUTH_AGE_BEYOND_LIFETIME: max_auth_age 20d is not shorter than "
     "session.lifetime 14d in tenant.yaml: no session lives that long, so this limit never applies",
     Case("  session {\n    max_auth_age 8h\n  }\n")),
    ("L_REFRESH_OUTLIVES_SESSION", Case("", tenant=((REFRESH, "refresh_token_lifetime: 60d"),)),
     "tenant.yaml:19:3: L_REFRESH_OUTLIVES_SESSION: refresh_token_lifetime 60d is longer than "
     "session.lifetime 14d: clients keep access after the session is gone",
     Case("", tenant=((REFRESH, "refresh_token_lifetime: 7d"),))),
    ("L_TRUST_KEY_MISSING", Case(trust('env "POLICY_SSO_LINT_UNSET"', "HS256")),
     "lint.policy:5:5: L_TRUST_KEY_MISSING: environment variable POLICY_SSO_LINT_UNSET is not set",
     Case(trust('file "hint.key"', "HS256"), keys=key_file("hint.key", "hmac32"))),
    ("L_WEAK_KEY-hmac", Case(trust('file "hint.key"', "HS512"), keys=key_file("hint.key", "hmac40")),
     "lint.policy:5:5: L_WEAK_KEY: HS512 key is 40 bytes; RFC 7518 §3.2 asks for at least 64",
     Case(trust('file "hint.key"', "HS512"), keys=key_file("hint.key", "hmac64"))),
    ("L_WEAK_KEY-rsa", Case(trust('file "hint.pem"', "RS256"), keys=key_file("hint.pem", "rsa1024")),
     "lint.policy:5:5: L_WEAK_KEY: RSA key has 1024 bits; RFC 7518 §3.3 asks for at least 2048",
     Case(trust('file "hint.pem"', "RS256"), keys=key_file("hint.pem", "rsa2048"))),
    ("L_ACR_VALUES_VOLUNTARY", Case(when('acr_values has "loa2"'), tenant=VOLUNTARY),
     "lint.policy:3:8: L_ACR_VALUES_VOLUNTARY: acr_values has 'loa2': tenant.yaml makes requested "
     "acr_values voluntary, and this block does not require the level",
     Case(when('acr_values has "loa2"', '    require acr "loa2"\n'), tenant=VOLUNTARY)),
    ("L_ACR_VALUES_ENFORCED", Case(when('acr_values has "loa2"', '    require acr "loa2"\n')),
     "lint.policy:3:3: L_ACR_VALUES_ENFORCED: requested acr_values are enforced (tenant.yaml), so "
     "requiring 'loa2' when it is requested repeats that check",
     Case(when('acr_values has "loa2"'))),
    ("L_FRESH_LOGIN_SILENT-max_auth_age", Case("  session {\n    max_auth_age 30s\n  }\n"),
     "lint.policy:4:5: L_FRESH_LOGIN_SILENT: max_auth_age 30s demands a new login on nearly every request, "
     "which prompt=none forbids",
     Case("  session {\n    max_auth_age 5m\n  }\n")),
    ("L_FRESH_LOGIN_SILENT-step-up", Case(when('scope has "x"', "    require mfa within 1m\n")),
     "lint.policy:4:13: L_FRESH_LOGIN_SILENT: mfa within 1m applies to prompt=none requests, "
     "which can never present a second factor that fresh",
     Case(when('scope has "x" and prompt is "login"', "    require mfa within 1m\n"))),
    ("L_CONSENT_OUTLIVES_SESSION", Case('  require consent "openid" for 31d\n'),
     "lint.policy:3:28: L_CONSENT_OUTLIVES_SESSION: consent for 31d is longer than "
     "session.require_login_after 30d: a grant is kept on its session, so this lifetime never expires one",
     Case('  require consent "openid" for 30d\n')),
    ("L_CONSENT_LIFETIME_SHORT", Case('  require consent "openid" for 60s\n'),
     "lint.policy:3:28: L_CONSENT_LIFETIME_SHORT: consent for 1m expires almost at once",
     Case('  require consent "openid" for 1h\n')),
    ("L_NETWORK_OVERLAP", Case(when('network in office, "10.1.0.0/16"'), tenant=NETWORKS),
     'lint.policy:3:27: L_NETWORK_OVERLAP: "10.1.0.0/16" adds nothing to this test: every address in it '
     "is in office already",
     Case(when('network in office, "11.1.0.0/16"'), tenant=NETWORKS)),
    ("L_NETWORK_OVERLAP-ipv6", Case(when('network in "2001:db8:1::/48", "2001:db8::/32"')),
     'lint.policy:3:19: L_NETWORK_OVERLAP: "2001:db8:1::/48" adds nothing to this test',
     Case(when('network in "2001:db8:1::/48", "2001:db9::/32"'))),
    ("L_NETWORK_NEVER", Case(when('network in "10.1.0.0/16" and not network in office'), tenant=NETWORKS),
     "lint.policy:3:3: L_NETWORK_NEVER: no client address makes this condition true",
     Case(when('network in office and not network in "10.1.0.0/16"'), tenant=NETWORKS)),
    ("L_WHEN_NEVER-network-and-not-itself", Case(when("network in office and not network in office"),
                                                  tenant=NETWORKS),
     f"lint.policy:3:3: L_WHEN_NEVER: {NEVER}",
     Case(when("network in office or not network in office"), tenant=NETWORKS)),
    ("L_NETWORK_EMPTY", Case(when('network in nowhere, "10.0.0.0/8"'), tenant=NETWORKS),
     "lint.policy:3:19: L_NETWORK_EMPTY: network 'nowhere' holds no CIDR in tenant.yaml",
     Case(when('network in office, "203.0.113.0/24"'), tenant=NETWORKS)),
    ("L_WHEN_SHADOWED-consent-lifetime",
     Case('  require consent "x" for 1h\n' + when('scope has "x"', '    require consent "x" for 1d\n')),
     "lint.policy:4:3: L_WHEN_SHADOWED",
     Case('  require consent "x"\n' + when('scope has "x"', '    require consent "x" for 1d\n'))),
]


@pytest.mark.parametrize(("case", "expected"), [(bad, exp) for _, bad, exp, _ in RULES],
                         ids=[name for name, *_ in RULES])
def test_rule_fires(tmp_path, case: Case, expected: str) -> None:
    got = findings(tmp_path, case)
    assert len(got) == 1, got
    assert got[0].startswith(expected), got
    code = expected.split(": ")[1]
    assert got[0].endswith(f"[{CODES[code][0]}]")


@pytest.mark.parametrize("case", [good for *_, good in RULES], ids=[name for name, *_ in RULES])
def test_rule_is_silent_on_a_correct_policy(tmp_path, case: Case) -> None:
    assert findings(tmp_path, case) == []


def test_every_code_has_a_case() -> None:
    assert {expected.split(": ")[1] for _, _, expected, _ in RULES} == set(CODES)


# --- silencing ----------------------------------------------------------------------

SHADOWED = '  require mfa\n{above}  when scope has "x" {{{same}\n    require mfa\n  }}\n'


@pytest.mark.parametrize(("above", "same", "silenced"), [
    ("  # policy-sso: ignore[L_WHEN_SHADOWED]\n", "", True),
    ("", "  # policy-sso: ignore[L_WHEN_SHADOWED]", True),
    ("  # policy-sso: ignore[L_WHEN_NEVER, L_WHEN_SHADOWED]\n", "", True),
    ("  #policy-sso:ignore[L_WHEN_SHADOWED] -- a reason\n", "", True),
    ("  # policy-sso: ignore[L_WHEN_NEVER]\n", "", False),
    ("  # policy-sso: ignore[L_WHEN_SHADOWED]\n\n", "", False),
], ids=["line-above", "same-line", "two-codes", "tight-spacing-with-reason", "other-code", "two-lines-above"])
def test_an_ignore_comment_silences_its_code_on_its_line_or_the_next(tmp_path, above, same, silenced) -> None:
    got = findings(tmp_path, Case(SHADOWED.format(above=above, same=same)))
    assert (got == []) == silenced, got


def test_an_ignore_comment_in_tenant_yaml(tmp_path) -> None:
    case = Case("", tenant=(("  refresh_token_lifetime: 14d",
                             "  # offline access on purpose, policy-sso: ignore[L_REFRESH_OUTLIVES_SESSION]\n"
                             "  refresh_token_lifetime: 60d"),))
    assert findings(tmp_path, case) == []


# --- the command ---------------------------------------------------------------------

def test_demo_tenant_lints_clean(capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["lint", "policies/"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "ok: 0 errors, 0 warnings\n"


def test_text_output_exit_codes_and_strict(tmp_path, capsys) -> None:
    warn = make_tenant(tmp_path, Case('  when scope has "x" {\n  }\n'))
    assert main(["lint", str(warn)]) == 0
    out, err = capsys.readouterr()
    assert out == (f"{warn}/lint.policy:3:3: L_WHEN_SHADOWED: warning: this when block adds nothing: it "
                   "requires nothing (hint: delete the block, or make its requirements stricter than the "
                   "policy's)\n"
                   '   3 |   when scope has "x" {\n'
                   "     |   ^^^^\n")
    assert err == "0 errors, 1 warning\n"
    assert main(["lint", "--strict", str(warn)]) == 1


def test_errors_exit_1_in_every_format(tmp_path, capsys) -> None:
    bad = make_tenant(tmp_path, Case('  require amr all_of "hwk"\n'))
    assert main(["lint", "--format", "json", str(bad / "lint.policy")]) == 1
    data = json.loads(capsys.readouterr().out)
    (finding,) = data["diagnostics"]
    assert (finding["code"], finding["severity"], finding["line"]) == ("L_AMR_UNSATISFIABLE", "error", 3)
    assert main(["lint", "--format", "github", str(bad)]) == 1
    github = capsys.readouterr().out
    assert github.startswith(f"::error file={bad}/lint.policy,line=3,col=11,endLine=3,endColumn=26,"
                             "title=L_AMR_UNSATISFIABLE::")


def test_a_lone_policy_file_is_linted_without_a_tenant(capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["lint", "tests/lint/lone/contradiction.policy"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("tests/lint/lone/contradiction.policy:4:3: L_WHEN_NEVER: error:")


def test_a_tenant_that_does_not_validate_reports_why(tmp_path, capsys) -> None:
    bad = make_tenant(tmp_path, Case('  require acr "loa9"\n'))
    assert main(["lint", str(bad)]) == 1
    out, err = capsys.readouterr()
    assert f"{bad}/lint.policy:3:15: E_UNKNOWN_ACR: error: acr level 'loa9' is not defined" in out
    assert "1 tenant did not validate (lint needs a valid tenant)" in err


def test_missing_path_is_a_usage_error_without_traceback() -> None:
    run = subprocess.run([sys.executable, "-m", "policy_sso.cli", "lint", "no/such/dir"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 2
    assert run.stderr == "policy-sso lint: no such file or directory: no/such/dir\n"


def test_policy_files_the_tenant_does_not_load_are_linted_in_its_context(tmp_path, capsys) -> None:
    directory = make_tenant(tmp_path, Case("  require mfa\n"))
    (directory / "yaml").mkdir()
    (directory / "yaml" / "lint.policy.yaml").write_text(
        "policy: lint\nclients: [app]\nrequire: {mfa: true}\n"
        "when:\n  - if: {client_is: other}\n    require: {mfa: {within: 5m}}\n")
    assert main(["lint", str(directory)]) == 1
    assert capsys.readouterr().out.startswith(
        f"{directory}/yaml/lint.policy.yaml:5:5: L_WHEN_NEVER: error: {NEVER} (hint: look for contradictions")


def test_files_of_a_tenant_lint_that_tenant(capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    files = ["policies/tenant.yaml", "policies/clients.yaml", "policies/docs.policy",
             "policies/yaml/docs.policy.yaml"]
    assert main(["lint", *files]) == 0
    assert capsys.readouterr() == ("", "ok: 0 errors, 0 warnings\n")


def test_a_tenant_named_twice_is_linted_once(tmp_path, capsys) -> None:
    bad = make_tenant(tmp_path, Case('  require acr "loa9"\n'))
    (bad / "yaml").mkdir()
    (bad / "yaml" / "x.policy.yaml").write_text("policy: x\n")
    assert main(["lint", str(bad / "lint.policy"), str(bad / "yaml" / "x.policy.yaml"), str(bad)]) == 1
    assert capsys.readouterr().err.endswith("; 1 tenant did not validate (lint needs a valid tenant)\n")


def test_every_code_is_documented_with_its_severity() -> None:
    doc = (ROOT / "docs" / "authoring.md").read_text()
    for code, (severity, _) in CODES.items():
        assert f"| `{code}` | {severity} |" in doc, code
