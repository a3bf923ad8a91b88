"""Error hints a new user met: each names the fix in the user's words, never the grammar's.

Each case is ``policy-sso validate FILE`` on a copy of the demo tenant with one
policy file replaced, so clients, acr levels and scopes resolve as they do for
a user. A YAML policy whose only schema mistakes are durations is still built,
so its other errors are reported in the same run, as the DSL form does.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from policy_sso.cli import main
from policy_sso.parse import dsl
from policy_sso.parse.dsl import parse_dsl
from policy_sso.parse.lexer import KEYWORDS, TOKEN_RE
from policy_sso.parse.yaml_form import parse_yaml_policies

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "policies"

# What a user would have written instead of policies/portal.policy.
PORTAL = 'policy "portal" {\n  clients "portal", "portal-backend"\n  %s\n}\n'


@pytest.fixture
def tenant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Return a copy of the demo tenant that also loads *.policy.yaml, as the working directory."""
    copy = tmp_path / "tenant"
    shutil.copytree(DEMO, copy, ignore=shutil.ignore_patterns("yaml", "tests"))
    settings = copy / "tenant.yaml"
    settings.write_text(settings.read_text().replace('policy_files: ["*.policy"]',
                                                     'policy_files: ["*.policy", "*.policy.yaml"]'))
    monkeypatch.chdir(copy)
    for name in [n for n in os.environ if n.startswith("POLICY_SSO_")]:
        monkeypatch.delenv(name)
    return copy


def _validate(tenant: Path, name: str, text: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Return the ``FILE:LINE:COL: CODE: message (hint: …)`` lines of validating ``text`` as ``name``."""
    (tenant / "portal.policy").unlink()
    (tenant / name).write_text(text)
    status = main(["validate", name])
    out, err = capsys.readouterr()
    assert status == 1, out + err
    assert "Traceback" not in out + err
    return [line for line in (out + err).splitlines() if line.startswith(f"{name}:")]


CASES = [
    pytest.param('require amr "pwd", "otp"', "3:15: E_SYNTAX: 'amr' needs any_of or all_of",
                 'require amr any_of "pwd", "otp"', id="amr-without-mode"),
    pytest.param("require acr urn:policy-sso:loa:2",
                 "3:15: E_SYNTAX: expected a quoted string, found 'urn:policy-sso:loa:2'",
                 'quote the whole value: "urn:policy-sso:loa:2"', id="acr-unquoted"),
    pytest.param("require mfa within 1.5h", "3:22: E_DURATION: '1.5h' is not a duration",
                 "whole number with its unit", id="duration-with-decimals"),
    pytest.param("inactivity 10m", "3:3: E_SYNTAX: 'inactivity' belongs inside a session block",
                 "write session { inactivity 10m }", id="inactivity-outside-session"),
    pytest.param('require amr any_of "pwd, "otp"', '3:22: E_SYNTAX: mismatched quotes: the string "pwd, "',
                 'a \'"\' is probably missing: close each string, e.g. "pwd", "otp"', id="missing-quote"),
]


@pytest.mark.parametrize(("statement", "error", "hint"), CASES)
def test_dsl_statement_gets_a_hint_at_the_fix(statement: str, error: str, hint: str, tenant: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    lines = _validate(tenant, "portal.policy", PORTAL % statement, capsys)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"portal.policy:{error}"), lines
    assert hint in lines[0], lines


def test_unquoted_policy_name_is_said_to_need_quotes(tenant: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    text = 'policy hr {\n  clients "portal", "portal-backend"\n}\n'
    lines = _validate(tenant, "portal.policy", text, capsys)
    assert lines == ['portal.policy:1:8: E_SYNTAX: the policy name must be quoted '
                     '(hint: write policy "hr" {)'], lines


def test_client_for_clients_gets_did_you_mean(tenant: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = 'policy "portal" {\n  client "portal", "portal-backend"\n}\n'
    lines = _validate(tenant, "portal.policy", text, capsys)
    assert lines == ["portal.policy:2:3: E_SYNTAX: unexpected 'client' "
                     "(hint: did you mean 'clients'?)"], lines


def test_decimal_duration_is_one_error_and_the_rest_is_still_checked(
        tenant: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = PORTAL.replace('"portal-backend"', '"portal-backend", "hrr"') % "require mfa within 1.5h"
    lines = _validate(tenant, "portal.policy", text, capsys)
    assert [line.split(": ")[1] for line in lines] == ["E_UNKNOWN_CLIENT", "E_DURATION"], lines
    assert lines[1].endswith("(hint: write 90m)")


def test_statement_of_a_trust_block_outside_it(tenant: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _validate(tenant, "portal.policy", PORTAL % "alg HS256", capsys)
    assert lines == ["portal.policy:3:3: E_SYNTAX: 'alg' belongs inside a trust login_hint_token block "
                     "(hint: move it into trust login_hint_token { … })"], lines


YAML_MANY = """\
policy: portal
clients: [portal, portal-backend, hrr]
require:
  mfa: {within: %s}
  acr: "loa:9"
when:
  - if: {scope_has: emial}
    require: {mfa: true}
"""


@pytest.mark.parametrize(("within", "duration_error"), [
    ("0m", "4:17: E_DURATION: a duration must be greater than zero"),
    ("2w", "4:17: E_DURATION: invalid duration '2w'"),
    ("15", "4:17: E_TYPE: 'within' must be a duration like 15m, not the number 15"),
])
def test_yaml_duration_error_does_not_hide_the_others(within: str, duration_error: str, tenant: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    lines = _validate(tenant, "portal.policy.yaml", YAML_MANY % within, capsys)
    assert [line.removeprefix("portal.policy.yaml:").split(" (hint")[0] for line in lines] == [
        "2:35: E_UNKNOWN_CLIENT: client 'hrr' is not registered in clients.yaml",
        duration_error,
        "5:8: E_UNKNOWN_ACR: acr level 'loa:9' is not defined in tenant.yaml",
        "7:21: E_UNKNOWN_SCOPE: condition on scope 'emial', which no client of policy 'portal' "
        "(portal, portal-backend) may request",
    ], lines


TRUST_ZERO = {
    "portal.policy": PORTAL % """session { inactivity 0m }
  trust login_hint_token {
    issuer "https://intranet.example.com"
    key file "secrets/intranet-hint.key"
    alg HS256
    max_lifetime 0m
    amr "wia"
  }""",
    "portal.policy.yaml": """\
policy: portal
clients: [portal, portal-backend]
session: {inactivity: 0m}
trust:
  login_hint_token:
    - issuer: https://intranet.example.com
      key: {file: secrets/intranet-hint.key}
      alg: HS256
      max_lifetime: 0m
      amr: [wia]
""",
}


@pytest.mark.parametrize("name", sorted(TRUST_ZERO))
def test_zero_durations_get_no_follow_on_error(name: str, tenant: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A zero max_lifetime is one error: not also "trust block has no max_lifetime"."""
    lines = _validate(tenant, name, TRUST_ZERO[name], capsys)
    assert [line.split(": ")[1] for line in lines] == ["E_DURATION", "E_DURATION"], lines


def test_yaml_with_schema_errors_is_built_from_what_the_schema_accepts() -> None:
    """The parts the schema refuses are left out, so the rest is checked in the same run."""
    policies, errors = parse_yaml_policies("policy: p\nclients: [a]\nsession: {inactivity: 0m, foo: 1}\n")
    assert [(p.name, p.clients) for p in policies] == [("p", ("a",))]
    assert [e.code for e in errors] == ["E_UNKNOWN_KEY", "E_DURATION"]


# --- no grammar name reaches a user ---------------------------------------------------------------

_TERMINALS = {t.name for t in dsl._parser.terminals} | {"$END"}
# Rule names (and aliases), and terminal names as lark lowers them ("amr_mode" for AMR_MODE).
_RULES = ({str(r.origin.name) for r in dsl._parser.rules} | {r.alias for r in dsl._parser.rules if r.alias}
          | {t.lower() for t in _TERMINALS})
_INTERNAL = re.compile(r"[$\w]+")
# Names that are also words of the language (keywords) or of English may appear.
_SAYABLE = set(KEYWORDS) | {"start", "test", "string", "name", "duration", "comment", "$end"}


def _internal_names(text: str) -> set[str]:
    return {w for w in _INTERNAL.findall(text) if w in _TERMINALS or (w in _RULES and w not in _SAYABLE)}


def test_every_terminal_is_shown_in_words() -> None:
    for terminal in _TERMINALS:
        shown = dsl._shown(terminal)
        assert not _internal_names(shown), (terminal, shown)
    assert dsl._shown("AMR_MODE") == "'all_of' or 'any_of'"


def _mutants() -> list[str]:
    """Return each demo policy with one token deleted, and with one token replaced by each keyword."""
    out = []
    words = sorted(set(KEYWORDS) | {'"x"', "15m", "{", "}", ",", "name"})
    for path in sorted(DEMO.glob("*.policy")):
        text = path.read_text()
        spans, pos = [], 0
        while (m := TOKEN_RE.match(text, pos)) is not None:
            spans.append((m.start(m.lastgroup), m.end()))
            pos = m.end()
        for i, (start, end) in enumerate(spans):
            out.append(text[:start] + text[end:])
            out.append(text[:start] + words[i % len(words)] + text[end:])
            out.append(text[:start] + words[(i * 7 + 3) % len(words)] + " " + text[start:])
    return out


def test_no_grammar_name_in_any_syntax_error() -> None:
    seen = 0
    for text in _mutants():
        for d in parse_dsl(text, "m.policy")[1]:
            seen += 1
            leaked = _internal_names(f"{d.message} {d.hint}")
            assert not leaked, (leaked, d, text)
    assert seen > 500
