"""Every error of a policy file in one run, each mistake once (``policy-sso validate``).

- A YAML policy with schema errors is still checked against the tenant on its
  well-formed members, as the DSL is: no schema error hides an unknown acr or
  client, and nothing the schema reported is reported again as missing.
- A policy file the tenant's globs leave out gets its own errors with
  E_POLICY_NOT_LOADED, checked in the tenant's context.
- A mistake with two places (a client two policies claim, a policy defined
  twice, a client whose policy key names another policy) is reported once, at
  one place with the other as a note; a file validated alone prints only lines
  of its own, such a mistake told from its place.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy_sso.cli import main
from policy_sso.parse.yaml_form import parse_yaml_policies
from policy_sso.tenant import check_paths

TENANT = """\
issuer: http://127.0.0.1:8080
session: {inactivity: 1h}
acr_levels:
  - id: loa1
    requires: {amr: {any_of: [pwd, otp]}}
  - id: loa2
    requires: {mfa: true}
methods: [pwd, otp]
default_policy: default
policy_files: ["*.policy"]
"""
CLIENTS = """\
clients:
  - {client_id: portal, type: public, redirect_uris: ["http://127.0.0.1:9001/cb"], scopes: [openid]}
  - {client_id: docs, type: public, redirect_uris: ["http://127.0.0.1:9002/cb"], scopes: [openid]}
"""
POLICIES = {
    "default.policy": 'policy "default" {\n  require amr any_of "pwd"\n}\n',
    "portal.policy": 'policy "portal" {\n  clients "portal"\n  require amr any_of "pwd"\n}\n',
    "docs.policy": 'policy "docs" {\n  clients "docs"\n  require mfa\n}\n',
}
# the new user's file: a misspelt key, and an acr level the tenant does not define
HR = "policy: hr\nclients: [portl]\nsesion: {inactivity: 15m}\nrequire:\n  acr: loa9\n"
HR_ERRORS = [
    "E_UNKNOWN_CLIENT: client 'portl' is not registered in clients.yaml (hint: did you mean 'portal'?)",
    "E_UNKNOWN_KEY: unknown key 'sesion' (hint: did you mean 'session'?)",
    "E_UNKNOWN_ACR: acr level 'loa9' is not defined in tenant.yaml (hint: did you mean 'loa1' or 'loa2'?)",
]


@pytest.fixture
def tenant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A valid tenant in ./t (the working directory is tmp_path: paths print as t/…)."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "t"
    root.mkdir()
    (root / "tenant.yaml").write_text(TENANT)
    (root / "clients.yaml").write_text(CLIENTS)
    (root / "users.yaml").write_text("users: []\n")
    for name, text in POLICIES.items():
        (root / name).write_text(text)
    return root


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], str]:
    """Return the exit status, the FILE:LINE:COL lines printed, and the summary line."""
    status = main(["validate", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return status, [line for line in out.splitlines() if not line.startswith(" ")], err


def test_the_tenant_written_here_is_valid(tenant: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "t") == (0, [], "ok: 0 errors, 0 warnings\n")


# --- item 3: a YAML schema error does not hide the file's other errors ----------------------

def test_a_yaml_schema_error_does_not_hide_the_checks_against_the_tenant(
        tenant: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tenant / "yaml").mkdir()
    (tenant / "yaml" / "hr.policy.yaml").write_text(HR)
    lines = [f"t/yaml/hr.policy.yaml:{at}: {e}"
             for at, e in zip(("2:11", "3:1", "5:8"), HR_ERRORS, strict=True)]
    assert _run(capsys, "t/yaml/hr.policy.yaml") == (1, lines, "3 errors, 0 warnings\n")


def test_the_yaml_form_reports_what_its_dsl_twin_reports(tenant: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (tenant / "twins").mkdir()
    (tenant / "twins" / "hr.policy.yaml").write_text(HR)
    (tenant / "twins" / "hr.policy").write_text(
        'policy "hr" {\n  clients "portl"\n  sesion { inactivity 15m }\n  require acr "loa9"\n}\n')
    _, yaml_lines, _ = _run(capsys, "t/twins/hr.policy.yaml")
    _, dsl_lines, _ = _run(capsys, "t/twins/hr.policy")
    codes = [line.split(": ")[1] for line in yaml_lines]
    assert codes == ["E_UNKNOWN_CLIENT", "E_UNKNOWN_KEY", "E_UNKNOWN_ACR"]
    assert [c for c in codes if c != "E_UNKNOWN_KEY"] == [
        line.split(": ")[1] for line in dsl_lines if ": E_SYNTAX: " not in line]


SHAPES = [  # (the YAML policy below ``policy: x``, the codes reported, each at its line)
    ("clients: [portl, 5, docs, docs]\n",
     [("2", "E_UNKNOWN_CLIENT"), ("2", "E_TYPE"), ("2", "E_DUPLICATE")]),
    ("clients: portal\nrequire: {acr: loa9}\n", [("2", "E_TYPE"), ("3", "E_UNKNOWN_ACR")]),
    ("require:\n  amr: {one_of: [pwd]}\n  acr: loa9\n", [("3", "E_UNKNOWN_KEY"), ("4", "E_UNKNOWN_ACR")]),
    ("on_unmet: later\nrequire: {amr: {any_of: [pwdd]}}\n", [("2", "E_VALUE"), ("3", "E_UNKNOWN_METHOD")]),
    ("session: {inactivity: 2w, idle: 5m, max_auth_age: 8h}\nrequire: {acr: loa9}\n",
     [("2", "E_DURATION"), ("2", "E_UNKNOWN_KEY"), ("3", "E_UNKNOWN_ACR")]),
    # a `when` whose condition is malformed is left out whole; the next one is still checked
    ("when:\n  - if: {scope_has: a, prompt_is: none}\n    require: {acr: loa8}\n"
     "  - if: {prompt_is: nonee}\n    require: {acr: loa9}\n",
     [("3", "E_SCHEMA"), ("5", "E_VALUE"), ("6", "E_UNKNOWN_ACR")]),
    ("when:\n  - if: {not: {bogus: 1}}\n    require: {mfa: true}\n  - {if: {client_is: portl}}\n",
     [("3", "E_UNKNOWN_KEY"), ("5", "E_MISSING_KEY")]),
    # a malformed operand deep in a condition goes, up to the compound it leaves empty; its
    # well-formed sibling stays, and is checked
    ("when:\n  - if: {any: [{all: [{not: {all: [{bogus: 1}]}}]}, {client_is: portl}]}\n"
     "    require: {acr: loa9}\n",
     [("3", "E_UNKNOWN_KEY"), ("3", "E_UNKNOWN_CLIENT"), ("4", "E_UNKNOWN_ACR")]),
    # trust blocks: a field written wrong is not missing as well; a misspelt key may be any field
    ("trust:\n  login_hint_token:\n"
     "    - {issuer: '', key: {env: A, file: b}, alg: none, max_lifetime: 2m, amr: []}\n",
     [("4", "E_EMPTY"), ("4", "E_SCHEMA"), ("4", "E_ALG_NONE"), ("4", "E_EMPTY")]),
    ("trust:\n  login_hint_token:\n    - {issuer: 'https://x', algo: HS256, max_lifetime: 2m}\n",
     [("4", "E_UNKNOWN_KEY")]),
    # an item left out of a list: the items after it keep their own lines
    ("trust:\n  login_hint_token:\n    - just text\n"
     "    - {issuer: 'https://y', key: {env: UNSET_TOOLING_KEY}, alg: HS256, max_lifetime: 2m}\n",
     [("4", "E_TYPE"), ("5", "E_TRUST_NO_AMR"), ("5", "W_KEY_UNRESOLVED")]),
]


@pytest.mark.parametrize(("body", "expected"), [(b, e) for b, e in SHAPES],
                         ids=["-".join(dict.fromkeys(c for _, c in e)) for _, e in SHAPES])
def test_each_error_of_a_malformed_yaml_policy_once(tenant: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     body: str, expected: list[tuple[str, str]]) -> None:
    monkeypatch.delenv("UNSET_TOOLING_KEY", raising=False)
    (tenant / "yaml").mkdir()
    (tenant / "yaml" / "x.policy.yaml").write_text("policy: x\n" + body)
    status, lines, _ = _run(capsys, "t/yaml/x.policy.yaml")
    found = [(line.split(":")[1], line.split(": ")[1]) for line in lines if ": note: " not in line]
    assert found == expected
    assert status == 1


VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from(
    ["", "pwd", "loa9", "15m", "2w", "none", "portl", "HS256"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["any_of", "if", "require", "scope_has", "not", "issuer", "amr", "x"]),
        inner, max_size=3), max_leaves=8)
KEYS = ["clients", "session", "require", "on_unmet", "trust", "when", "sesion"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4))
def test_any_shape_gives_policies_or_diagnostics_never_a_traceback(members: dict) -> None:
    import yaml

    text = yaml.safe_dump({"policy": "x", **members})
    policies, diagnostics = parse_yaml_policies(text, "x.policy.yaml")
    assert len(policies) <= 1
    assert all(d.line >= 1 and d.col >= 1 for d in diagnostics)
    assert len(set(diagnostics)) == len(diagnostics)  # each mistake once


def _nested(depth: int, inner: str) -> str:
    """Return ``inner`` as the operands of ``depth`` nested ``all`` conditions (flow YAML)."""
    return "{all: [" * depth + inner + "]}" * depth


def _pruning_rounds(monkeypatch: pytest.MonkeyPatch, depth: int) -> tuple[int, list, list[str]]:
    """Parse 10 ``when`` blocks whose condition nests a misspelt test ``depth`` levels deep (the
    last beside a valid one); return the whole-document validations the pruning made, the
    ``when`` conditions built, and the diagnostics' codes."""
    from policy_sso.parse import yaml_form

    calls = 0
    real = yaml_form.is_valid

    def counting(data: object, schema_name: str) -> bool:
        nonlocal calls
        calls += 1
        return real(data, schema_name)

    monkeypatch.setattr(yaml_form, "is_valid", counting)
    inners = ["{bogus: 1}"] * 9 + ["{bogus: 1}, {client_is: portal}"]
    text = "policy: x\nwhen:\n" + "".join(
        f"  - if: {_nested(depth, inner)}\n    require: {{mfa: true}}\n" for inner in inners)
    policies, diagnostics = parse_yaml_policies(text, "x.policy.yaml")
    [policy] = policies
    return calls, [w.condition for w in policy.whens], [d.code for d in diagnostics]


def test_a_mistake_nested_deep_is_pruned_in_as_few_rounds_as_one_at_the_top(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each pruning round validates the whole document. A compound a removal leaves empty goes
    in the same round, not the next: one round a level made a 91 KB file of conditions 29 deep
    take 30 s instead of 2 (attack review)."""
    shallow, shallow_conditions, shallow_codes = _pruning_rounds(monkeypatch, 1)
    deep, deep_conditions, deep_codes = _pruning_rounds(monkeypatch, 25)
    assert 1 <= deep == shallow <= 2  # one round of removals, one validation that finds none
    assert shallow_codes == deep_codes == ["E_UNKNOWN_KEY"] * 10
    # nine `when` blocks left out whole; the tenth is its one valid test
    for conditions in (shallow_conditions, deep_conditions):
        assert [(c.kind, c.value) for c in conditions] == [("client", "portal")]


# --- item 4: a policy file the globs leave out gets its own errors too ------------------------

@pytest.mark.parametrize("target", ["t", "t/hr.policy.yaml"])
def test_a_policy_file_the_globs_leave_out_is_checked_in_the_tenants_context(
        tenant: Path, capsys: pytest.CaptureFixture[str], target: str) -> None:
    (tenant / "hr.policy.yaml").write_text(HR)
    status, lines, err = _run(capsys, target)
    assert lines == [
        't/hr.policy.yaml:1:1: E_POLICY_NOT_LOADED: this policy file is not loaded: policy_files '
        '["*.policy"] in tenant.yaml does not match it (hint: add "*.policy.yaml" to policy_files in '
        "tenant.yaml, or move the file out of the tenant directory)",
        *(f"t/hr.policy.yaml:{at}: {e}" for at, e in zip(("2:11", "3:1", "5:8"), HR_ERRORS, strict=True)),
    ]
    assert (status, err) == (1, "4 errors, 0 warnings\n")


# --- item 8: a mistake of two places once; a file alone prints its own lines -------------------

CLAIM = ("t/{}:2:11: E_DUPLICATE_CLIENT: client 'docs' is claimed by 2 policies: 'docs' and 'hr' "
         "(hint: a client belongs to exactly one policy: remove it from all but one)")


@pytest.mark.parametrize(("argv", "expected"), [
    (["t"], [CLAIM.format("hr.policy"), "t/docs.policy:2:11: note: also claimed by policy 'docs'"]),
    (["t/hr.policy"], [CLAIM.format("hr.policy"), "t/docs.policy:2:11: note: also claimed by policy 'docs'"]),
    (["t/docs.policy"], [CLAIM.format("docs.policy"), "t/hr.policy:2:11: note: also claimed by policy 'hr'"]),
    (["t/docs.policy", "t/hr.policy"],
     [CLAIM.format("docs.policy"), "t/hr.policy:2:11: note: also claimed by policy 'hr'"]),
    (["t", "t/docs.policy", "t/hr.policy"],
     [CLAIM.format("hr.policy"), "t/docs.policy:2:11: note: also claimed by policy 'docs'"]),
    (["t/portal.policy"], []),
], ids=["tenant", "the-new-file", "the-owner-file", "both-files", "tenant-and-files", "another-file"])
def test_a_client_two_policies_claim_is_one_error(tenant: Path, capsys: pytest.CaptureFixture[str],
                                                  argv: list[str], expected: list[str]) -> None:
    (tenant / "hr.policy").write_text('policy "hr" {\n  clients "docs"\n  require amr any_of "pwd"\n}\n')
    status, lines, err = _run(capsys, *argv)
    assert lines == expected
    assert (status, err) == ((1, "1 error, 0 warnings\n") if expected else (0, "ok: 0 errors, 0 warnings\n"))


def test_a_policy_defined_in_two_files_is_one_error_told_from_each(tenant: Path) -> None:
    (tenant / "zz.policy").write_text('policy "docs" {\n  require amr any_of "pwd"\n}\n')
    whole = [(Path(d.file).name, d.line, d.code) for d in check_paths([tenant])]
    assert whole == [("zz.policy", 1, "E_DUPLICATE_POLICY")]
    [own] = check_paths([tenant / "docs.policy"])
    assert (Path(own.file).name, own.line, own.code) == ("docs.policy", 1, "E_DUPLICATE_POLICY")
    assert [(Path(r.file).name, r.label) for r in own.related] == [("zz.policy", "defined again here")]


def test_a_policy_key_naming_another_policy_is_one_error(tenant: Path) -> None:
    portal = "redirect_uris: [\"http://127.0.0.1:9001/cb\"], scopes: [openid]"
    (tenant / "clients.yaml").write_text(CLIENTS.replace(portal, portal + ", policy: docs"))
    whole = [(Path(d.file).name, d.code) for d in check_paths([tenant])]
    assert whole == [("clients.yaml", "E_POLICY_CONFLICT")]
    assert [(Path(d.file).name, d.code) for d in check_paths([tenant / "portal.policy"])] == [
        ("portal.policy", "E_POLICY_CONFLICT")]
