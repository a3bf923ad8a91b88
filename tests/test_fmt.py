"""``policy-sso fmt``: canonical layout from tokens, comments kept, idempotent, the model unchanged.

Every file of ``tests/fmt_corpus/`` (hand-written layouts: odd spacing, one
line, tabs, CRLF, a byte order mark, comments everywhere, ...) formats to its
``.golden`` twin, parses to the same model as before, and formats to itself
again. A hypothesis test generates policies from the model, renders them,
scrambles the whitespace and comments, and checks formatting keeps the model.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy_sso.authoring.fmt import format_source, format_text
from policy_sso.cli import main
from policy_sso.model import (
    ON_UNMET_VALUES,
    AcrRequirement,
    AmrRequirement,
    And,
    ConsentRequirement,
    KeyRef,
    MfaRequirement,
    Not,
    Or,
    Policy,
    SessionRules,
    TrustedIssuer,
    When,
    canonical_requirements,
    format_duration,
)
from policy_sso.model import Test as Atom
from policy_sso.parse.dsl import parse_dsl

ROOT = Path(__file__).resolve().parents[1]
CORPUS = sorted((ROOT / "tests" / "fmt_corpus").glob("*.policy"))
DEMO = sorted((ROOT / "policies").glob("*.policy"))


def read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def model(text: str) -> tuple[list[Policy], list[str]]:
    policies, diagnostics = parse_dsl(text.removeprefix("\ufeff").replace("\r\n", "\n"))
    return policies, [d.code for d in diagnostics]


def test_the_corpus_has_at_least_30_variants() -> None:
    assert len(CORPUS) >= 30
    assert all(p.with_suffix(".golden").is_file() for p in CORPUS)


@pytest.mark.parametrize("path", CORPUS + DEMO, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_formatting_keeps_the_model_and_is_idempotent(path: Path) -> None:
    source = read(path)
    formatted, errors = format_source(source, path.name)
    assert errors == []
    assert formatted is not None
    assert model(formatted) == model(source)
    assert format_text(formatted) == formatted
    assert not formatted or (formatted.endswith("\n") and not formatted.endswith("\n\n"))
    assert "\t" not in formatted.replace('"tab\tinside"', "")
    assert "\r" not in formatted
    assert all(line == line.rstrip() for line in formatted.splitlines())


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_corpus_formats_to_its_golden_layout(path: Path) -> None:
    assert format_text(read(path)) == read(path.with_suffix(".golden"))


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_line_ends_and_indentation_do_not_change_the_layout(path: Path) -> None:
    golden = read(path.with_suffix(".golden"))
    tabbed = "\n".join("\t" * ((len(line) - len(line.lstrip(" "))) // 2) + line.lstrip(" ")
                       for line in golden.splitlines())
    assert format_text(golden.replace("\n", "\r\n")) == golden
    assert format_text("\ufeff" + tabbed) == golden


@pytest.mark.parametrize("path", DEMO, ids=lambda p: p.stem)
def test_demo_policies_are_already_canonical(path: Path) -> None:
    assert format_text(read(path)) == read(path)


def test_every_comment_survives() -> None:
    source = read(ROOT / "tests" / "fmt_corpus" / "06-comments-everywhere.policy")
    comments = [line[line.index("#"):].rstrip() for line in source.splitlines() if "#" in line]
    formatted = format_text(source)
    assert [line[line.index("#"):] for line in formatted.splitlines() if "#" in line] == comments


@pytest.mark.parametrize(("source", "message"), [
    ('policy "a" {\n  require mfa\n', "1:12: E_SYNTAX: this 'policy' block is never closed"),
    ('policy "a" {\n  requir mfa\n}\n', "2:3: E_SYNTAX: unknown keyword 'requir'"),
    ('policy "a" { clients "x }\n', "1:22: E_SYNTAX: unterminated string"),
], ids=["unclosed-block", "misspelt-keyword", "unterminated-string"])
def test_a_syntax_error_is_not_formatted(source: str, message: str) -> None:
    formatted, errors = format_source(source, "f.policy")
    assert formatted is None
    assert any(str(e).startswith(f"f.policy:{message}") for e in errors), errors


# --- the command ---------------------------------------------------------------------

UGLY = 'policy "a" {clients "a"   # app\nrequire  mfa}\n'
PRETTY = 'policy "a" {\n  clients "a"  # app\n  require mfa\n}\n'


def test_check_shows_a_diff_changes_nothing_and_exits_1(tmp_path, capsys) -> None:
    (tmp_path / "a.policy").write_text(UGLY)
    (tmp_path / "b.policy").write_text(PRETTY)
    status = main(["fmt", "--check", str(tmp_path)])
    out, err = capsys.readouterr()
    assert status == 1
    assert (tmp_path / "a.policy").read_text() == UGLY
    assert out.startswith(f"--- {tmp_path}/a.policy (original)\n+++ {tmp_path}/a.policy (formatted)\n")
    assert '-policy "a" {clients "a"   # app\n' in out
    assert '+  clients "a"  # app\n' in out
    assert "b.policy" not in out
    assert "1 file would be reformatted" in err


def test_fmt_rewrites_in_place_then_has_nothing_to_do(tmp_path, capsys) -> None:
    path = tmp_path / "a.policy"
    path.write_bytes(UGLY.replace("\n", "\r\n").encode())
    path.chmod(0o640)
    assert main(["fmt", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}\n"
    assert path.read_bytes() == PRETTY.encode()
    assert path.stat().st_mode & 0o777 == 0o640
    assert main(["fmt", str(path)]) == 0
    assert main(["fmt", "--check", str(path)]) == 0
    assert capsys.readouterr().out == ""


def test_check_reports_line_ends_alone(tmp_path, capsys) -> None:
    path = tmp_path / "a.policy"
    path.write_bytes(PRETTY.replace("\n", "\r\n").encode())
    assert main(["fmt", "--check", str(path)]) == 1
    assert "line ends or byte order mark would change" in capsys.readouterr().out


def test_demo_tenant_passes_fmt_check(capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["fmt", "--check", "policies/"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(("args", "status", "message"), [
    (["nowhere.policy"], 2, "nowhere.policy: no such file or directory"),
    (["policies/yaml/docs.policy.yaml"], 2, "fmt formats DSL files (*.policy); YAML is left as written"),
], ids=["missing-path", "yaml-file"])
def test_usage_errors(capsys, monkeypatch, args, status, message) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["fmt", *args]) == status
    assert message in capsys.readouterr().err


def test_a_file_with_a_syntax_error_is_left_alone_and_reported(tmp_path, capsys) -> None:
    path = tmp_path / "bad.policy"
    path.write_text('policy "a" {\n  requir mfa\n}\n')
    assert main(["fmt", str(path)]) == 1
    assert path.read_text() == 'policy "a" {\n  requir mfa\n}\n'
    assert f"{path}:2:3: E_SYNTAX: unknown keyword 'requir'" in capsys.readouterr().err


def test_stdin_to_stdout_without_traceback(tmp_path) -> None:
    run = subprocess.run([sys.executable, "-m", "policy_sso.cli", "fmt", "-"], input=UGLY,
                         capture_output=True, text=True, check=False)
    assert (run.returncode, run.stdout) == (0, PRETTY)
    run = subprocess.run([sys.executable, "-m", "policy_sso.cli", "fmt", "-"], input='policy "a" {',
                         capture_output=True, text=True, check=False)
    assert run.returncode == 1
    assert "<stdin>:1:12: E_SYNTAX: this 'policy' block is never closed" in run.stderr
    assert "Traceback" not in run.stderr


def test_a_directory_is_searched_recursively_for_dsl_files(tmp_path, capsys) -> None:
    shutil.copytree(ROOT / "tests" / "fmt_corpus", tmp_path / "corpus")
    assert main(["fmt", str(tmp_path)]) == 0
    changed = capsys.readouterr().out.split()
    assert len(changed) == len(CORPUS) - sum(read(p) == read(p.with_suffix(".golden")) for p in CORPUS)
    assert main(["fmt", "--check", str(tmp_path)]) == 0


# --- hypothesis: formatting never changes the model --------------------------------------

TEXT = st.text(alphabet='abcXYZ019 -_:/.#{}(),"\\\t', min_size=0, max_size=12)
DURATION = st.sampled_from([1, 59, 60, 90, 300, 3600, 7200, 86400, 172800])


def requirement() -> st.SearchStrategy:
    return st.one_of(
        st.builds(AmrRequirement, st.sampled_from(["any_of", "all_of"]),
                  st.lists(TEXT, min_size=1, max_size=3).map(tuple)),
        st.builds(MfaRequirement, st.none() | DURATION),
        st.builds(AcrRequirement, TEXT),
        st.builds(ConsentRequirement, st.lists(TEXT, min_size=1, max_size=3).map(tuple)),
    )


TESTS = st.builds(Atom, st.sampled_from(["scope", "acr_values", "prompt", "client", "session_amr"]), TEXT)
CONDITIONS = st.recursive(
    TESTS,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.builds(And, st.lists(inner, min_size=2, max_size=3).map(tuple)),
        st.builds(Or, st.lists(inner, min_size=2, max_size=3).map(tuple)),
    ),
    max_leaves=6,
)
REQUIREMENTS = st.lists(requirement(), max_size=4).map(canonical_requirements)
TRUST = st.builds(
    TrustedIssuer, TEXT, st.builds(KeyRef, st.sampled_from(["env", "file"]), TEXT),
    st.sampled_from(["HS256", "HS512", "RS256", "ES256", "EdDSA", "PS256"]), DURATION,
    st.lists(TEXT, min_size=1, max_size=2).map(tuple))
POLICIES = st.builds(
    Policy, TEXT, st.lists(TEXT, max_size=3).map(tuple),
    st.builds(SessionRules, st.none() | DURATION, st.none() | DURATION), REQUIREMENTS,
    st.sampled_from(ON_UNMET_VALUES), st.lists(TRUST, max_size=2).map(tuple),
    st.lists(st.builds(When, CONDITIONS, REQUIREMENTS), max_size=3).map(tuple))


def q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def listed(values: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for i, value in enumerate(values):
        out += [",", q(value)] if i else [q(value)]
    return out


def condition_tokens(cond, nested: bool = False) -> list[str]:
    if isinstance(cond, Atom):
        words = {"scope": ["scope", "has"], "acr_values": ["acr_values", "has"], "prompt": ["prompt", "is"],
                 "client": ["client", "is"], "session_amr": ["session", "amr", "has"]}[cond.kind]
        return [*words, q(cond.value)]
    if isinstance(cond, Not):
        return ["not", *condition_tokens(cond.operand, nested=True)]
    joiner = "and" if isinstance(cond, And) else "or"
    tokens: list[str] = []
    for i, operand in enumerate(cond.operands):
        tokens += ([joiner] if i else []) + condition_tokens(operand, nested=True)
    return ["(", *tokens, ")"] if nested else tokens


def requirement_tokens(req) -> list[str]:
    if isinstance(req, AmrRequirement):
        return ["require", "amr", req.mode, *listed(req.methods)]
    if isinstance(req, MfaRequirement):
        return ["require", "mfa"] + (["within", format_duration(req.within)] if req.within else [])
    if isinstance(req, AcrRequirement):
        return ["require", "acr", q(req.level)]
    return ["require", "consent", *listed(req.scopes)]


def policy_tokens(p: Policy) -> list[str]:
    tokens = ["policy", q(p.name), "{"]
    if p.clients:
        tokens += ["clients", *listed(p.clients)]
    if p.session.inactivity or p.session.max_auth_age:
        tokens += ["session", "{"]
        if p.session.inactivity:
            tokens += ["inactivity", format_duration(p.session.inactivity)]
        if p.session.max_auth_age:
            tokens += ["max_auth_age", format_duration(p.session.max_auth_age)]
        tokens.append("}")
    for req in p.requirements:
        tokens += requirement_tokens(req)
    tokens += ["on_unmet", p.on_unmet]
    for t in p.trust:
        assert t.key is not None
        tokens += ["trust", "login_hint_token", "{", "issuer", q(t.issuer), "key", t.key.source,
                   q(t.key.name), "alg", t.alg, "max_lifetime", format_duration(t.max_lifetime),
                   "amr", *listed(t.amr), "}"]
    for when in p.whens:
        tokens += ["when", *condition_tokens(when.condition), "{"]
        for req in when.requirements:
            tokens += requirement_tokens(req)
        tokens.append("}")
    return [*tokens, "}"]


SEPARATORS = [" ", "  ", "\t", "\n", "\r\n", "\n\n\n", " # c\n", "\t#{x}\r\n", "\n# own line\n", "\f"]
PUNCTUATION = {"{", "}", "(", ")", ","}


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(policies=st.lists(POLICIES, min_size=1, max_size=3), rng=st.randoms(use_true_random=False))
def test_formatting_scrambled_sources_keeps_the_generated_model(policies, rng) -> None:
    tokens = [t for p in policies for t in policy_tokens(p)]
    source = ""
    for i, token in enumerate(tokens):
        optional = i and (token in PUNCTUATION or tokens[i - 1] in PUNCTUATION)
        choices = ["", *SEPARATORS] if optional else SEPARATORS
        source += (rng.choice(choices) if i else "") + token
    formatted, errors = format_source(source)
    assert errors == []
    assert formatted is not None
    parsed, diagnostics = parse_dsl(formatted)
    assert diagnostics == []
    assert parsed == policies
    assert format_text(formatted) == formatted
