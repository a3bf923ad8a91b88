"""Random and mutated sources never raise: every outcome is policies or a list of Diagnostics.

The demo tenant's files (DSL, YAML twins, tenant/clients/users YAML) are
mutated line by line and token by token (deleted, duplicated and swapped lines;
quotes, braces, NUL, non-ASCII, YAML tags and aliases inserted; truncation),
then fed to ``parse_dsl``, ``parse_yaml_policies``, the semantic rules, the
compiler and a whole tenant load. Besides "no exception", positions must lie in
the file, and a syntax error must point at the very token it names.

Deterministic for CI: derandomized, no example database; about 1,300 examples.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy_sso.compile import compile_policy
from policy_sso.diagnostics import Diagnostic, SourceLines, render_github, render_json, render_text
from policy_sso.model import Policy
from policy_sso.parse.dsl import parse_dsl
from policy_sso.parse.yaml_form import parse_yaml_policies
from policy_sso.tenant import Tenant, check_paths, check_tenant, load_tenant
from policy_sso.validate import Context, validate_policies

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "policies"
CASES_TENANT = ROOT / "tests" / "cases" / "tenant"

DSL_SOURCES = [p.read_text() for p in sorted(DEMO.glob("*.policy")) + sorted(CASES_TENANT.glob("*.policy"))]
YAML_SOURCES = [p.read_text() for p in sorted((DEMO / "yaml").glob("*.policy.yaml"))]
TENANT_FILES = sorted(p.relative_to(DEMO).as_posix() for p in DEMO.rglob("*")
                      if p.is_file() and p.name.endswith((".policy", ".yaml")))

# Pieces that stress a lexer or a YAML reader: delimiters, escapes, control and
# non-ASCII characters, keywords of the DSL, YAML indicators, tags and aliases.
TOKENS = [
    '"', '\\"', "\\", "{", "}", "(", ")", ",", "#", "\x00", "\x07", "\t", "\r", "\r\n", "\n",
    "\ufeff", "\u2028", "\x85", "é", "日本", "🔑", " ",
    "policy", '"p"', "clients", "session", "inactivity", "require", "amr", "any_of", "mfa",
    "within", "acr", "consent", "on_unmet", "trust", "login_hint_token", "key", "env", "file",
    "alg", "none", "HS256", "when", "not", "and", "or", "scope", "has", "prompt", "is", "client",
    "0s", "15m", "15x", "99999999999999999999999d", "-1m",
    ":", ": ", "- ", "[", "]", "? ", "|", ">", "&a ", "*a", "!!int ", "!!binary ", "!!python/object ",
    "!foo ", "---\n", "...\n", "%YAML 1.1\n", "~", "null", "2024-13-01", "'", "`", "@", "*",
]

# YAML values that only a tag, an anchor or the timestamp resolver makes special.
VALUE_PREFIXES = ["!!int ", "!!float ", "!!bool ", "!!timestamp ", "!!binary ", "!!null ", "!!map ",
                  "!!seq ", "!!set ", "!!omap ", "!!str ", "!!python/name:os.system ", "!local ", "&a "]
VALUES = ["*a", "[*a]", "{k: *a}", "2024-13-01", "2024-02-30T25:00:00", "0x_", "0o9", "1e999", ".nan"]

PROFILE = {"derandomize": True, "database": None, "deadline": None,
           "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


@st.composite
def mutated(draw: st.DrawFn, sources: list[str]) -> str:
    """Return one source with one to five line or token mutations applied."""
    lines = draw(st.sampled_from(sources)).split("\n")
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "token", "chars", "truncate", "value"]))
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        if op == "delete" and lines:
            del lines[i]
        elif op == "duplicate" and lines:
            lines.insert(i, lines[i])
        elif op == "swap" and lines:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op in ("token", "chars"):
            line = lines[i] if lines else ""
            at = draw(st.integers(0, len(line)))
            piece = draw(st.sampled_from(TOKENS) if op == "token" else st.text(max_size=6))
            lines[i:i + 1] = [line[:at] + piece + line[at:]]
        elif op == "value" and lines:
            # a YAML value gets a tag or an anchor, or becomes an alias or a near-timestamp
            line = lines[i]
            at = line.find(": ") + 2 if ": " in line else line.find("- ") + 2 if "- " in line else len(line)
            piece = draw(st.sampled_from(VALUE_PREFIXES) | st.sampled_from(VALUES).map(lambda v: v + " #"))
            lines[i] = line[:at] + piece + line[at:]
        elif op == "truncate":
            text = "\n".join(lines)
            lines = text[:draw(st.integers(0, len(text)))].split("\n")
    return "\n".join(lines)


random_text = st.lists(st.sampled_from(TOKENS) | st.text(max_size=8), max_size=40).map("".join)


@cache
def demo_tenant() -> Tenant:
    """Return the demo tenant: its settings and clients are the context of the semantic rules."""
    return load_tenant(DEMO)


def _check_diagnostics(diagnostics: object, sources: dict[str, str] | None = None) -> list[Diagnostic]:
    """Every diagnostic is well formed, its span closes after it starts, and it renders in every format."""
    assert isinstance(diagnostics, list)
    for d in diagnostics:
        assert isinstance(d, Diagnostic), d
        assert re.fullmatch(r"[EW]_[A-Z_]+", d.code), d
        assert d.line >= 1 and d.col >= 1, d
        assert d.severity in ("error", "warning"), d
        assert d.end_line == 0 or d.end_line >= d.line, d
        assert d.end_line != d.line or d.end_col > d.col, d
        assert all(r.line >= 1 and r.col >= 1 and r.label for r in d.related), d
    text = render_text(diagnostics, sources)
    assert text.count("\n") >= len(diagnostics)
    if sources:  # each header is followed by its source line and the carets under the span
        lines = SourceLines(sources)
        shown = [d for d in diagnostics if lines.line(d.file, d.line) is not None]
        assert all(f"{d.line:>4} |" in text for d in shown), text
    json.loads(render_json(diagnostics))
    assert render_github(diagnostics).count("\n") == len(diagnostics)
    return diagnostics


def _check_policies(policies: object) -> None:
    """Policies pass through the semantic rules, and error-free ones compile, without raising."""
    tenant = demo_tenant()
    assert isinstance(policies, list)
    assert all(isinstance(p, Policy) for p in policies)
    ctx = Context(tenant.settings, tenant.clients, tenant.directory)
    diagnostics = _check_diagnostics(validate_policies(policies, ctx))
    if not any(d.severity == "error" for d in diagnostics):
        for policy in policies:
            compile_policy(policy, tenant.settings)


_NAMED_TOKEN = re.compile(r"^unexpected (?:character )?('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")$")


def _check_dsl_positions(text: str, diagnostics: list[Diagnostic]) -> None:
    """Every position is inside the text; a syntax error points at the token it names."""
    lines = text.split("\n")  # the DSL counts "\n" only
    for d in diagnostics:
        assert d.line <= len(lines), d
        line = lines[d.line - 1]
        assert d.col <= len(line) + 1, d
        named = _NAMED_TOKEN.match(d.message) if d.code == "E_SYNTAX" else None
        if named:
            assert line[d.col - 1:].startswith(ast.literal_eval(named[1])), (d, line)


def _check_yaml_positions(text: str, diagnostics: list[Diagnostic]) -> None:
    lines = re.split(r"\r\n|[\r\n\x85\u2028\u2029]", text)  # YAML's line breaks
    for d in diagnostics:
        assert d.line <= len(lines) + 1, d


# --- the DSL ----------------------------------------------------------------------------

@settings(max_examples=400, **PROFILE)
@given(text=mutated(DSL_SOURCES))
def test_mutated_dsl_gives_policies_or_diagnostics(text: str) -> None:
    policies, diagnostics = parse_dsl(text, "fuzz.policy")
    _check_dsl_positions(text, _check_diagnostics(diagnostics, {"fuzz.policy": text}))
    _check_policies(policies)


@settings(max_examples=200, **PROFILE)
@given(text=random_text)
def test_random_dsl_gives_policies_or_diagnostics(text: str) -> None:
    policies, diagnostics = parse_dsl(text, "fuzz.policy")
    _check_dsl_positions(text, _check_diagnostics(diagnostics, {"fuzz.policy": text}))
    _check_policies(policies)


# --- the YAML form ----------------------------------------------------------------------

@settings(max_examples=400, **PROFILE)
@given(text=mutated(YAML_SOURCES))
def test_mutated_yaml_gives_policies_or_diagnostics(text: str) -> None:
    policies, diagnostics = parse_yaml_policies(text, "fuzz.policy.yaml")
    _check_yaml_positions(text, _check_diagnostics(diagnostics, {"fuzz.policy.yaml": text}))
    _check_policies(policies)


@settings(max_examples=150, **PROFILE)
@given(text=random_text)
def test_random_yaml_gives_policies_or_diagnostics(text: str) -> None:
    policies, diagnostics = parse_yaml_policies(text, "fuzz.policy.yaml")
    _check_yaml_positions(text, _check_diagnostics(diagnostics, {"fuzz.policy.yaml": text}))
    _check_policies(policies)


# --- a whole tenant directory -----------------------------------------------------------

@pytest.fixture(scope="module")
def tenant_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("fuzz") / "tenant"
    shutil.copytree(DEMO, directory)
    return directory


@st.composite
def tenant_mutation(draw: st.DrawFn) -> tuple[str, bytes]:
    """Return (file in the tenant, new content): mutated text, or bytes that may not be UTF-8."""
    name = draw(st.sampled_from(TENANT_FILES))
    text = draw(mutated([(DEMO / name).read_text()]))
    data = text.encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    return name, data


@settings(max_examples=150, **PROFILE)
@given(change=tenant_mutation())
def test_mutated_tenant_loads_or_reports_errors(change: tuple[str, bytes], tenant_copy: Path) -> None:
    name, data = change
    target = tenant_copy / name
    original = target.read_bytes()
    target.write_bytes(data)
    try:
        tenant, diagnostics = check_tenant(tenant_copy)
        _check_diagnostics(diagnostics)
        if tenant is None:
            assert any(d.severity == "error" for d in diagnostics)
        else:
            assert isinstance(tenant, Tenant)
            for client_id in tenant.clients:
                tenant.evaluator(client_id)
        _check_diagnostics(check_paths([tenant_copy]))
    finally:
        target.write_bytes(original)
