"""``validate`` fails closed on names the server cannot honour (SPEC §7), and ``diff`` takes what it accepts.

Each case edits a copy of the demo tenant the way a policy author would and
runs the CLI: an ID token algorithm the tenant does not sign with, a
misspelt enabled method, an ``acr_values has`` on an undefined level, an
unset trusted-issuer key (a warning that says what the server then does),
and a consent lifetime beyond any clock ``diff`` can show.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from policy_sso.cli import main
from policy_sso.errors import OAuthError
from policy_sso.oidc.forced_sso import verifier_for
from policy_sso.tenant import check_tenant

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "policies"


def edited(tmp_path: Path, *edits: tuple[str, str, str]) -> Path:
    """Return a copy of the demo tenant with each ``(file, old, new)`` replacement made (old must occur)."""
    directory = tmp_path / "tenant"
    shutil.copytree(DEMO, directory, ignore=shutil.ignore_patterns("var", "tests"))
    for name, old, new in edits:
        path = directory / name
        text = path.read_text()
        assert old in text, (name, old)
        path.write_text(text.replace(old, new))
    return directory


def validate(directory: Path, capsys: pytest.CaptureFixture[str], *more: str) -> tuple[int, str]:
    status = main(["validate", str(directory), *more])
    return status, capsys.readouterr().out


ALGORITHMS = "algorithms: [RS256, ES256, EdDSA]"


# --- #1: a client's ID token algorithm must be one the tenant signs with -------------------------

def test_a_client_alg_the_tenant_does_not_sign_with_is_an_error_at_the_client(tmp_path, capsys) -> None:
    directory = edited(tmp_path, ("tenant.yaml", ALGORITHMS, "algorithms: [RS256]"))
    status, out = validate(directory, capsys)
    assert status == 1
    assert ("clients.yaml:25:5: E_CLIENT_ALG: client 'payments-web' has id_token_signed_response_alg ES256, "
            "which tenant.yaml tokens.algorithms does not list (hint: configured algorithms: RS256; set "
            "id_token_signed_response_alg to one of them, or add ES256 to tokens.algorithms)") in out
    assert "clients.yaml:53:5: E_CLIENT_ALG: client 'docs' has id_token_signed_response_alg EdDSA" in out
    assert "tenant.yaml:44:3: note: the algorithms the tenant signs with" in out
    assert check_tenant(directory)[0] is None  # what serve and reload load: refused as well


def test_rs256_is_always_among_the_tenants_algorithms(tmp_path, capsys) -> None:
    """OpenID Connect Discovery requires RS256 in id_token_signing_alg_values_supported (SPEC §4: always
    supported), and a client that names no algorithm gets it."""
    directory = edited(tmp_path, ("tenant.yaml", ALGORITHMS, "algorithms: [ES256, EdDSA]"))
    status, out = validate(directory, capsys)
    assert status == 1
    assert "tenant.yaml:44:15: E_SCHEMA: 'algorithms' must include RS256 (hint: add RS256 to the list)" in out
    assert check_tenant(directory)[0] is None


def test_the_demo_algorithms_fit_every_client(capsys) -> None:
    status, out = validate(DEMO, capsys)
    assert status == 0, out
    assert "E_CLIENT_ALG" not in out


# --- #5: tenant.yaml methods are methods a session can hold ------------------------------------

def test_a_misspelt_enabled_method_is_an_error_with_the_near_name(tmp_path, capsys) -> None:
    directory = edited(
        tmp_path, ("tenant.yaml", "methods: [pwd, otp, wia, hwk]", "methods: [pwd, otp, wia, hwk, pwdd]"),
        ("portal.policy", 'require amr any_of "pwd", "wia", "hwk"', 'require amr any_of "pwdd"'))
    status, out = validate(directory, capsys)
    assert status == 1
    assert ("tenant.yaml:23:31: E_UNKNOWN_METHOD: methods: unknown authentication method 'pwdd' "
            "(hint: did you mean 'pwd'?)") in out
    # enabling a name no longer makes it known: the policy's requirement is an error of its own
    assert ("portal.policy:4:22: E_UNKNOWN_METHOD: unknown authentication method 'pwdd' "
            "(hint: did you mean 'pwd'?)") in out
    status = main(["lint", str(directory)])
    assert status == 1 and "E_UNKNOWN_METHOD" in capsys.readouterr().out


def test_an_acr_level_requiring_an_unknown_method_gets_the_near_name(tmp_path, capsys) -> None:
    directory = edited(tmp_path, ("tenant.yaml", "any_of: [pwd, wia, otp, hwk]",
                                  "any_of: [pwd, wia, otpp, hwk]"))
    status, out = validate(directory, capsys)
    assert status == 1
    assert "E_UNKNOWN_METHOD: unknown authentication method 'otpp' (hint: did you mean 'otp'?)" in out


# --- #9: acr_values has names a defined level ---------------------------------------------------

LOA3 = 'when acr_values has "urn:policy-sso:loa:3"'


@pytest.mark.parametrize(("written", "hint"), [
    ("urn:policy-sso:loa:9", "did you mean 'urn:policy-sso:loa:1' or 'urn:policy-sso:loa:2' or "
                             "'urn:policy-sso:loa:3'?"),
    ("urn:policy-sso:loa:2 urn:policy-sso:loa:3",
     'acr_values has tests one level: write one test each, e.g. acr_values has "urn:policy-sso:loa:2" or '
     'acr_values has "urn:policy-sso:loa:3"'),
], ids=["E_UNKNOWN_ACR-undefined", "E_UNKNOWN_ACR-two-levels-in-one"])
def test_acr_values_has_an_undefined_level_is_an_error(tmp_path, capsys, written: str, hint: str) -> None:
    directory = edited(tmp_path, ("docs.policy", LOA3, f'when acr_values has "{written}"'))
    status, out = validate(directory, capsys)
    assert status == 1
    assert (f"docs.policy:9:23: E_UNKNOWN_ACR: acr level {written!r} is not defined in tenant.yaml "
            f"(hint: {hint})") in out


def test_the_yaml_form_of_acr_values_has_is_checked_the_same(tmp_path, capsys) -> None:
    directory = edited(tmp_path, ("yaml/docs.policy.yaml", '{acr_values_has: "urn:policy-sso:loa:3"}',
                                  '{acr_values_has: "urn:policy-sso:loa:4"}'))
    status, out = validate(directory, capsys)
    assert status == 1
    assert ("yaml/docs.policy.yaml:9:33: E_UNKNOWN_ACR: acr level 'urn:policy-sso:loa:4' is not defined in "
            "tenant.yaml") in out


# --- #7: an unset trusted-issuer key: the warning says what the server does ---------------------

KEY_FILE = 'key file "secrets/intranet-hint.key"\n    alg HS256\n    max_lifetime 2m\n    amr "wia"\n  }\n\n'
UNSET = "POLICY_SSO_FIX_VALIDATE_UNSET_KEY"


def test_an_unset_key_is_a_warning_that_tells_what_the_server_does(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv(UNSET, raising=False)
    directory = edited(tmp_path, ("intranet.policy", KEY_FILE, KEY_FILE.replace(
        'file "secrets/intranet-hint.key"', f'env "{UNSET}"')))
    status, out = validate(directory, capsys)
    told = (f"W_KEY_UNRESOLVED: environment variable {UNSET} is not set (hint: set it where the server "
            "runs: without it the server still starts, but refuses every login_hint_token for this "
            "policy's clients (server_error))")
    assert status == 0 and told in out
    assert main(["lint", str(directory)]) == 0
    linted = capsys.readouterr().out
    assert "L_TRUST_KEY_MISSING" in linted and told.split("(hint: ")[1] in linted
    # and that is what happens: the tenant loads (serve and reload start it) ...
    tenant, _ = check_tenant(directory)
    assert tenant is not None
    # ... and a hint token for the policy's client is answered with server_error
    provider = SimpleNamespace(tenant=tenant, hint_verifiers={})  # what verifier_for reads of the provider
    with pytest.raises(OAuthError) as refused:
        verifier_for(provider, "intranet-bridge")  # type: ignore[arg-type]
    assert refused.value.error == "server_error"


# --- #8: diff takes every consent lifetime validate accepts ----------------------------------

def test_diff_of_a_consent_lifetime_beyond_any_date_has_no_traceback(tmp_path, capsys) -> None:
    directory = edited(tmp_path, ("payments.policy", 'require consent "openid", "profile"\n',
                                  'require consent "openid", "profile" for 10000000d\n'))
    assert main(["validate", str(directory)]) == 0
    capsys.readouterr()
    assert main(["diff", str(DEMO), str(directory)]) == 1
    out = capsys.readouterr().out
    assert "consent granted 10000000d 1s ago" in out
    assert "login_required [consent_missing, max_age_exceeded]" in out
