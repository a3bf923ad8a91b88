"""``policy-sso validate`` on broken inputs: every error at once, exact lines, exit 1, no traceback.

``tests/broken/`` holds one small file per kind of error (``dsl/``, ``yaml/``)
and two tenant directories whose errors need the tenant (``tenant-policies/``:
acr levels, clients, names across files; ``tenant-config/``: tenant.yaml,
clients.yaml, users.yaml). :data:`EXPECTED` is exactly what

    cd tests/broken && policy-sso validate dsl yaml tenant-config tenant-policies

prints: each diagnostic's ``FILE:LINE:COL: CODE: message`` line, then the
source line with carets under the span, then any related place as a
``FILE:LINE:COL: note: …`` line with its own snippet. Each case below must print
exactly its own diagnostics of it.
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
dsl/alg-none.policy:6:5: E_ALG_NONE: alg none is never accepted for login_hint_token (hint: sign hints with one of ES256, EdDSA, HS256, HS384, HS512, PS256, RS256)
   6 |     alg none
     |     ^^^^^^^^
dsl/bad-duration-unit.policy:4:16: E_DURATION: invalid duration '2w' (hint: write an integer followed by s, m, h or d, e.g. 15m)
   4 |     inactivity 2w
     |                ^^
dsl/bad-prompt.policy:3:18: E_VALUE: unknown prompt value 'never' (hint: one of consent, login, none, select_account)
   3 |   when prompt is "never" {
     |                  ^^^^^^^
dsl/client-in-two-policies.policy:7:11: E_DUPLICATE_CLIENT: client 'docs' is claimed by 2 policies: 'first' and 'second' (hint: a client belongs to exactly one policy: remove it from all but one)
   7 |   clients "docs"
     |           ^^^^^^
dsl/client-in-two-policies.policy:3:21: note: also claimed by policy 'first'
   3 |   clients "portal", "docs"
     |                     ^^^^^^
dsl/deep-condition.policy:3:36: E_NESTING: condition nested deeper than 32 levels
   3 |   when not not not not not not not not not not not not not not not not not not not not not not not not not not not not not not not not not not not not not not not not scope has "x" {
     |                                    ^
dsl/duplicate-policy.policy:6:1: E_DUPLICATE_POLICY: policy 'twice' is defined twice (hint: first defined at dsl/duplicate-policy.policy:2)
   6 | policy "twice" {
     | ^^^^^^^^^^^^^^
dsl/duplicate-policy.policy:2:1: note: first defined here
   2 | policy "twice" {
     | ^^^^^^^^^^^^^^
dsl/env-key-unset.policy:5:5: W_KEY_UNRESOLVED: environment variable POLICY_SSO_TEST_UNSET_HINT_KEY is not set (hint: set it where the server runs: without it the server still starts, but refuses every login_hint_token for this policy's clients (server_error))
   5 |     key env "POLICY_SSO_TEST_UNSET_HINT_KEY"
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
dsl/es256-with-rsa.policy:5:5: E_ALG_KEY_MISMATCH: alg ES256 needs a EC P-256 public key, found RSA
   5 |     key file "../keys/rsa-public.pem"
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
dsl/hs256-with-pem.policy:5:5: E_ALG_KEY_MISMATCH: alg HS256 with a RSA key: a public key must never be used as an HMAC secret (hint: use the alg that fits the key (RS256/PS256))
   5 |     key file "../keys/rsa-public.pem"
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
dsl/inactivity-over-7d.policy:4:5: E_INACTIVITY_MAX: inactivity 8d exceeds the maximum of 7d (604800 s)
   4 |     inactivity 8d
     |     ^^^^^^^^^^^^^
dsl/latin1.policy:3:15: E_ENCODING: not UTF-8 text: invalid continuation byte (byte 0xe9)
   3 |   clients "caf�"
     |               ^
dsl/many-errors.policy:6:5: E_INACTIVITY_MAX: inactivity 10d exceeds the maximum of 7d (604800 s)
   6 |     inactivity 10d
     |     ^^^^^^^^^^^^^^
dsl/many-errors.policy:7:18: E_DURATION: a duration must be greater than zero
   7 |     max_auth_age 0h
     |                  ^^
dsl/many-errors.policy:9:29: E_UNKNOWN_METHOD: unknown authentication method 'carrier-pigeon' (hint: use an RFC 8176 amr value (pwd, otp, hwk, wia, …))
   9 |   require amr all_of "pwd", "carrier-pigeon"
     |                             ^^^^^^^^^^^^^^^^
dsl/many-errors.policy:10:12: E_ON_UNMET: unknown on_unmet value 'later' (hint: use one of login_required, interaction_required, unmet_authentication_requirements)
  10 |   on_unmet later
     |            ^^^^^
dsl/many-errors.policy:15:22: E_SYNTAX: '5 m' is not a duration: the unit must follow the number without a space (hint: write 5m)
  15 |   require mfa within 5 m
     |                      ^^^
dsl/many-errors.policy:19:3: E_TRUST_NO_LIFETIME: trust block has no max_lifetime (hint: add e.g. max_lifetime 2m: hint tokens must be short-lived)
  19 |   trust login_hint_token {
     |   ^^^^^^^^^^^^^^^^^^^^^^
dsl/many-errors.policy:21:5: E_ALG_KEY_MISMATCH: alg RS256 needs a RSA public key, found EC P-256
  21 |     key file "../keys/ec-p256-public.pem"
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
dsl/many-errors.policy:23:16: E_UNKNOWN_METHOD: unknown authentication method 'telepathy' (hint: use an RFC 8176 amr value (pwd, otp, hwk, wia, …))
  23 |     amr "wia", "telepathy"
     |                ^^^^^^^^^^^
dsl/many-errors.policy:25:18: E_VALUE: unknown prompt value 'silent' (hint: one of consent, login, none, select_account)
  25 |   when prompt is "silent" or session amr has "smoke-signal" {
     |                  ^^^^^^^^
dsl/many-errors.policy:25:46: E_UNKNOWN_METHOD: unknown authentication method 'smoke-signal' (hint: use an RFC 8176 amr value (pwd, otp, hwk, wia, …))
  25 |   when prompt is "silent" or session amr has "smoke-signal" {
     |                                              ^^^^^^^^^^^^^^
dsl/many-errors.policy:26:24: E_DURATION: invalid duration '90x' (hint: write an integer followed by s, m, h or d, e.g. 15m)
  26 |     require mfa within 90x
     |                        ^^^
dsl/many-errors.policy:32:5: E_SYNTAX: 'clients' cannot be used inside a 'when' block (hint: expected 'require', '}')
  32 |     clients "late"
     |     ^^^^^^^
dsl/many-errors.policy:36:1: E_DUPLICATE_POLICY: policy 'many' is defined twice (hint: first defined at dsl/many-errors.policy:3)
  36 | policy "many" {
     | ^^^^^^^^^^^^^
dsl/many-errors.policy:3:1: note: first defined here
   3 | policy "many" {
     | ^^^^^^^^^^^^^
dsl/many-errors.policy:37:11: E_DUPLICATE_CLIENT: client 'portal' is claimed by 2 policies: 'many' at dsl/many-errors.policy:4 and 'many' at dsl/many-errors.policy:37 (hint: a client belongs to exactly one policy: remove it from all but one)
  37 |   clients "portal"
     |           ^^^^^^^^
dsl/many-errors.policy:4:11: note: also claimed by policy 'many'
   4 |   clients "portal"
     |           ^^^^^^^^
dsl/missing-key-file.policy:5:5: E_KEY_UNREADABLE: key file '../keys/no-such.key' cannot be read
   5 |     key file "../keys/no-such.key"
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
dsl/one-line.policy:2:65: E_SYNTAX: expected a quoted string, found 'docs' (hint: strings are double-quoted: write "docs")
   2 | policy "one-line" { clients "portal" } policy "other" { clients docs }
     |                                                                 ^^^^
dsl/syntax.policy:3:11: E_SYNTAX: unterminated string (hint: close it with '"' on the same line)
   3 |   clients "portal
     |           ^^^^^^^
dsl/trust-incomplete.policy:3:3: E_TRUST_NO_AMR: trust block declares no amr (hint: say what a valid hint proves, e.g. amr "wia")
   3 |   trust login_hint_token {
     |   ^^^^^^^^^^^^^^^^^^^^^^
dsl/trust-incomplete.policy:3:3: E_TRUST_NO_ISSUER: trust block has no issuer
   3 |   trust login_hint_token {
     |   ^^^^^^^^^^^^^^^^^^^^^^
dsl/trust-incomplete.policy:3:3: E_TRUST_NO_LIFETIME: trust block has no max_lifetime (hint: add e.g. max_lifetime 2m: hint tokens must be short-lived)
   3 |   trust login_hint_token {
     |   ^^^^^^^^^^^^^^^^^^^^^^
dsl/trust-incomplete.policy:5:5: E_ALG_UNSUPPORTED: unsupported alg 'HS1' (hint: one of ES256, EdDSA, HS256, HS384, HS512, PS256, RS256)
   5 |     alg HS1
     |     ^^^^^^^
dsl/trust-no-key.policy:3:3: E_TRUST_NO_KEY: trust block has no key (hint: add key env "VAR" or key file "path")
   3 |   trust login_hint_token {
     |   ^^^^^^^^^^^^^^^^^^^^^^
dsl/unknown-method.policy:3:29: E_UNKNOWN_METHOD: unknown authentication method 'magic-link' (hint: use an RFC 8176 amr value (pwd, otp, hwk, wia, …))
   3 |   require amr any_of "pwd", "magic-link"
     |                             ^^^^^^^^^^^^
dsl/unknown-on-unmet.policy:4:12: E_ON_UNMET: unknown on_unmet value 'access_denied' (hint: use one of login_required, interaction_required, unmet_authentication_requirements)
   4 |   on_unmet access_denied
     |            ^^^^^^^^^^^^^
dsl/unknown-requirement.policy:3:11: E_SYNTAX: unexpected 'biometrics' (hint: expected 'acr', 'amr', 'consent', 'mfa')
   3 |   require biometrics
     |           ^^^^^^^^^^
dsl/weak-hmac-key.policy:5:5: E_WEAK_KEY: HMAC key is 16 bytes; at least 32 required (hint: generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')
   5 |     key file "../keys/short-hmac.key"
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
dsl/zero-duration.policy:3:22: E_DURATION: a duration must be greater than zero
   3 |   require mfa within 0m
     |                      ^^
tenant-config/clients.yaml:3:5: E_CLIENT_SECRET: confidential client 'backend' has no secret (hint: add secret: {env: VAR} or {file: path})
   3 |   - client_id: backend
     |     ^^^^^^^^^^^^^^^^^^
tenant-config/clients.yaml:6:5: E_CLIENT_SECRET: public client 'spa' must not have a secret
   6 |   - client_id: spa
     |     ^^^^^^^^^^^^^^
tenant-config/clients.yaml:11:5: E_GRANT: public client 'mobile' cannot use client_credentials
  11 |   - client_id: mobile
     |     ^^^^^^^^^^^^^^^^^
tenant-config/clients.yaml:16:5: E_REDIRECT_URIS: client 'worker' has no redirect_uris
  16 |   - client_id: worker
     |     ^^^^^^^^^^^^^^^^^
tenant-config/clients.yaml:19:5: E_DUPLICATE: client_id 'worker' is registered twice
  19 |   - client_id: worker
     |     ^^^^^^^^^^^^^^^^^
tenant-config/tenant.yaml:6:3: E_INACTIVITY_MAX: inactivity 10d exceeds 7d (604800 s)
   6 |   inactivity: 10d
     |   ^^^^^^^^^^^^^^^
tenant-config/tenant.yaml:8:5: E_UNKNOWN_METHOD: unknown authentication method 'voice-print' (hint: use an RFC 8176 amr value (pwd, otp, hwk, wia, …))
   8 |   - id: loa1
     |     ^
tenant-config/tenant.yaml:12:5: E_DUPLICATE: acr level 'loa1' is defined twice
  12 |   - id: loa1
     |     ^
tenant-config/tenant.yaml:15:1: E_UNKNOWN_POLICY: default_policy 'standard' is not defined
  15 | default_policy: standard
     | ^^^^^^^^^^^^^^^^^^^^^^^^
tenant-config/users.yaml:6:5: E_DUPLICATE: subject 'u-1' appears twice
   6 |   - sub: u-1
     |     ^^^^^^^^
tenant-config/users.yaml:6:5: E_DUPLICATE: username 'alice' appears twice
   6 |   - sub: u-1
     |     ^^^^^^^^
tenant-config/users.yaml:13:5: E_WEAK_KEY: the TOTP secret of 'short' is 80 bits; at least 128 required (RFC 4226 §4) (hint: generate one with: python -c 'import pyotp; print(pyotp.random_base32())')
  13 |     totp_secret: {file: secrets/short.totp}
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
tenant-config/users.yaml:18:5: E_TOTP_SECRET: the TOTP secret of 'garbled' is not base32 (RFC 4648 §6) (hint: generate one with: python -c 'import pyotp; print(pyotp.random_base32())')
  18 |     totp_secret: {file: secrets/garbled.totp}
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
tenant-config/users.yaml:23:5: E_KEY_UNREADABLE: TOTP secret file 'secrets/lost.totp' cannot be read
  23 |     totp_secret: {file: secrets/lost.totp}
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
tenant-config/users.yaml:28:5: W_KEY_UNRESOLVED: environment variable POLICY_SSO_BROKEN_UNSET_TOTP is not set (hint: until it is, 'elsewhere' cannot complete a second factor)
  28 |     totp_secret: {env: POLICY_SSO_BROKEN_UNSET_TOTP}
     |     ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
tenant-policies/app.policy.yaml:3:1: E_DUPLICATE_POLICY: policy 'web' is defined twice (hint: first defined at tenant-policies/web.policy:2)
   3 | policy: web
     | ^
tenant-policies/web.policy:2:1: note: first defined here
   2 | policy "web" {
     | ^^^^^^^^^^^^
tenant-policies/app.policy.yaml:4:16: E_DUPLICATE_CLIENT: client 'web' is claimed by 2 policies: 'web' at tenant-policies/web.policy:3 and 'web' at tenant-policies/app.policy.yaml:4 (hint: a client belongs to exactly one policy: remove it from all but one)
   4 | clients: [app, web]
     |                ^^^
tenant-policies/web.policy:3:11: note: also claimed by policy 'web'
   3 |   clients "web", "ghost"
     |           ^^^^^
tenant-policies/web.policy:3:18: E_UNKNOWN_CLIENT: client 'ghost' is not registered in clients.yaml (hint: register it in clients.yaml)
   3 |   clients "web", "ghost"
     |                  ^^^^^^^
tenant-policies/web.policy:5:5: E_INACTIVITY_LONGER: inactivity 2h is longer than the tenant's 1h (hint: a policy may only shorten the tenant's inactivity window)
   5 |     inactivity 2h
     |     ^^^^^^^^^^^^^
tenant-policies/web.policy:7:15: E_UNKNOWN_ACR: acr level 'urn:example:loa:9' is not defined in tenant.yaml (hint: did you mean 'urn:example:loa:1' or 'urn:example:loa:2'?)
   7 |   require acr "urn:example:loa:9"
     |               ^^^^^^^^^^^^^^^^^^^
tenant-policies/web.policy:8:18: E_UNKNOWN_CLIENT: client 'phantom' is not registered (hint: register it in clients.yaml)
   8 |   when client is "phantom" {
     |                  ^^^^^^^^^
yaml/alias-bomb.policy.yaml:2:25: E_YAML: aliases expand this document far beyond its size
   2 | policy: &a [x, x, x, x, x, x, x, x, x, x]
     |                         ^
yaml/amr-typo.policy.yaml:4:9: E_UNKNOWN_KEY: unknown key 'one_of' (hint: did you mean 'any_of'?)
   4 |   amr: {one_of: [pwd, otp]}
     |         ^^^^^^
yaml/bad-duration.policy.yaml:4:15: E_DURATION: invalid duration '15 minutes': a duration is an integer immediately followed by its unit s, m, h or d (hint: write 15m)
   4 |   inactivity: 15 minutes
     |               ^^^^^^^^^^
yaml/bad-scalar.policy.yaml:3:11: E_YAML: invalid scalar 'portal' (as !!int) (hint: quote the value to keep it a string)
   3 | clients: [!!int "portal"]
     |           ^
yaml/bad-scalar.policy.yaml:5:17: E_DURATION: invalid duration '2024-13-01' (hint: write an integer followed by s, m, h or d, e.g. 15m)
   5 |   max_auth_age: 2024-13-01
     |                 ^^^^^^^^^^
yaml/bad-scalar.policy.yaml:5:17: E_YAML: invalid scalar '2024-13-01' (as !!timestamp) (hint: quote the value to keep it a string)
   5 |   max_auth_age: 2024-13-01
     |                 ^
yaml/duplicate-key.policy.yaml:5:1: E_DUPLICATE_KEY: key 'require' appears twice in this mapping (hint: YAML keeps only one of the two: merge them into one)
   5 | require:
     | ^^^^^^^
yaml/duplicate-key.policy.yaml:3:1: note: first written here
   3 | require:
     | ^^^^^^^
yaml/latin1.policy.yaml:3:14: E_ENCODING: not UTF-8 text: invalid continuation byte (byte 0xe9)
   3 | clients: [caf�]
     |              ^
yaml/malformed.policy.yaml:3:10: E_YAML: this '{' is never closed (hint: close it with '}' after its last entry, or write the entries on indented lines without brackets)
   3 | session: {inactivity: 15m
     |          ^
yaml/malformed.policy.yaml:4:8: note: expected ',' or '}' here
   4 | require:
     |        ^
yaml/many-errors.policy.yaml:3:10: E_TYPE: 'clients' must be a list, not the text 'portal' (hint: write clients: [portal])
   3 | clients: portal
     |          ^^^^^^
yaml/many-errors.policy.yaml:5:15: E_DURATION: invalid duration '15x' (hint: write an integer followed by s, m, h or d, e.g. 15m)
   5 |   inactivity: 15x
     |               ^^^
yaml/many-errors.policy.yaml:6:3: E_UNKNOWN_KEY: unknown key 'idle' (hint: allowed: inactivity, max_auth_age)
   6 |   idle: 5m
     |   ^^^^
yaml/many-errors.policy.yaml:8:8: E_TYPE: 'mfa' must be true or false, not the text 'sometimes'
   8 |   mfa: sometimes
     |        ^^^^^^^^^
yaml/many-errors.policy.yaml:9:8: E_EMPTY: 'acr' is empty (hint: give it a value)
   9 |   acr: ""
     |        ^^
yaml/many-errors.policy.yaml:10:12: E_EMPTY: 'consent' is empty (hint: list at least one item)
  10 |   consent: []
     |            ^^
yaml/many-errors.policy.yaml:11:11: E_VALUE: 'later' is not a valid value for 'on_unmet' (hint: one of login_required, interaction_required, unmet_authentication_requirements)
  11 | on_unmet: later
     |           ^^^^^
yaml/many-errors.policy.yaml:14:7: E_TRUST_NO_AMR: trust block declares no amr (hint: say what a valid hint proves, e.g. amr "wia")
  14 |     - issuer: https://partner.example.com
     |       ^
yaml/many-errors.policy.yaml:15:12: E_SCHEMA: 'key' takes a single entry, but has 2: env, file (hint: keep one of them)
  15 |       key: {env: A, file: b}
     |            ^^^^^^^^^^^^^^^^^
yaml/many-errors.policy.yaml:17:21: E_DURATION: invalid duration '2 minutes': a duration is an integer immediately followed by its unit s, m, h or d (hint: write 2m)
  17 |       max_lifetime: 2 minutes
     |                     ^^^^^^^^^
yaml/many-errors.policy.yaml:19:9: E_SCHEMA: 'if' takes a single entry, but has 2: scope_has, prompt_is (hint: keep one of them; combine conditions with all: [...] or any: [...])
  19 |   - if: {scope_has: "x", prompt_is: login}
     |         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
yaml/many-errors.policy.yaml:21:5: E_MISSING_KEY: item 2 of 'when' has no 'if:' (hint: add 'if:' to it)
  21 |   - require: {mfa: true}
     |     ^^^^^^^^^^^^^^^^^^^^
yaml/missing-name.policy.yaml:2:1: E_MISSING_KEY: missing 'policy:' key (hint: add 'policy:' at the top)
   2 | clients: [portal]
     | ^^^^^^^^^^^^^^^^^
yaml/recursive-alias.policy.yaml:3:10: E_TYPE: item 2 of 'clients' must be a string, not empty
   3 | clients: &self [portal, *self]
     |          ^^^^^^^^^^^^^^^^^^^^^
yaml/recursive-alias.policy.yaml:3:10: E_YAML: recursive alias
   3 | clients: &self [portal, *self]
     |          ^
yaml/unknown-key.policy.yaml:4:1: E_UNKNOWN_KEY: unknown key 'required' (hint: did you mean 'require'?)
   4 | required:
     | ^^^^^^^^
yaml/unknown-method.policy.yaml:4:23: E_UNKNOWN_METHOD: unknown authentication method 'magic-link' (hint: use an RFC 8176 amr value (pwd, otp, hwk, wia, …))
   4 |   amr: {all_of: [pwd, magic-link]}
     |                       ^^^^^^^^^^
yaml/unknown-method.policy.yaml:6:27: E_VALUE: unknown prompt value 'never' (hint: one of consent, login, none, select_account)
   6 |   - if: {not: {prompt_is: never}}
     |                           ^^^^^
yaml/wrong-type.policy.yaml:3:10: E_TYPE: 'clients' must be a list, not the text 'portal' (hint: write clients: [portal])
   3 | clients: portal
     |          ^^^^^^
yaml/zero-duration.policy.yaml:3:23: E_DURATION: a duration must be greater than zero
   3 | session: {inactivity: 0m}
     |                       ^^
yaml/zero-duration.policy.yaml:6:29: E_DURATION: a duration must be greater than zero
   6 |     require: {mfa: {within: 0s}}
     |                             ^^
"""  # noqa: E501

LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<code>[EW]_[A-Z_]+): (?P<rest>.*)$")
TENANT_CASES = ("tenant-config", "tenant-policies")
CONFIG_FILES = ("tenant.yaml", "clients.yaml", "users.yaml")


def _case_of(line: str) -> str:
    file = line.split(":", 1)[0]
    top = file.split("/", 1)[0]
    return top if top in TENANT_CASES else file


def blocks(text: str) -> list[list[str]]:
    """Return the text output cut into diagnostics: a header line and the snippet and notes under it."""
    out: list[list[str]] = []
    for line in text.splitlines():
        if LINE.match(line):
            out.append([line])
        else:
            assert out, f"output starts with a line that is not a diagnostic: {line!r}"
            out[-1].append(line)
    return out


HEADERS = [block[0] for block in blocks(EXPECTED)]


def _expected_by_case() -> dict[str, list[list[str]]]:
    cases: dict[str, list[list[str]]] = {}
    for block in blocks(EXPECTED):
        cases.setdefault(_case_of(block[0]), []).append(block)
    return cases


BY_CASE = _expected_by_case()


def _lines(case_blocks: list[list[str]]) -> list[str]:
    return [line for block in case_blocks for line in block]


def _case_id(case: str) -> str:
    codes = sorted({LINE.match(block[0])["code"] for block in BY_CASE[case]})
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
    assert out.splitlines() == _lines(expected)
    assert (status, err) == _outcome([block[0] for block in expected])
    assert "Traceback" not in out + err


def _outcome(headers: list[str]) -> tuple[int, str]:
    """Return the exit status and the summary line that ``validate`` prints for these diagnostics."""
    errors = sum(LINE.match(line)["code"].startswith("E_") for line in headers)
    warnings = len(headers) - errors
    counts = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}\n"
    return (1, counts) if errors else (0, "ok: " + counts)  # a warning alone does not fail CI


TENANT_FILES = sorted(f"{case}/{p.name}" for case in TENANT_CASES
                      for p in (BROKEN / case).iterdir() if p.is_file() and p.name not in CONFIG_FILES)
TENANT_CONFIG_FILES = sorted(f"{case}/{name}" for case in TENANT_CASES for name in CONFIG_FILES)


def _message(header: str) -> str:
    return header.split(": ", 1)[1].split(" (hint: ", 1)[0]  # "CODE: message", without place and hint


@pytest.mark.parametrize("file", TENANT_FILES)
def test_a_tenant_file_alone_prints_its_lines_of_the_tenant(file: str, in_broken: Path, capsys) -> None:
    """As pre-commit runs it, one file at a time: the tenant's rules apply, those across files too,
    and only lines of this file are printed; a mistake reported elsewhere whose other half (a note)
    is in this file is told once, from this file's place, the other place a note."""
    status, out, err = _validate(capsys, file)
    own = [block for block in blocks(EXPECTED) if block[0].startswith(f"{file}:")]
    halves = [block for block in blocks(EXPECTED) if not block[0].startswith(f"{file}:")
              and any(line.startswith(f"{file}:") for line in block)]
    printed = blocks(out)
    assert all(block[0].startswith(f"{file}:") for block in printed)
    assert [block for block in printed if block in own] == own
    told = [block for block in printed if block not in own]
    assert sorted(_message(b[0]) for b in told) == sorted(_message(b[0]) for b in halves)
    for block in told:  # the place the mistake is reported at is the note
        [half] = [h for h in halves if _message(h[0]) == _message(block[0])]
        assert any(line.startswith(half[0].split(": ", 1)[0] + ": note: ") for line in block)
    assert (status, err) == _outcome([block[0] for block in printed])


@pytest.mark.parametrize("file", TENANT_CONFIG_FILES)
def test_a_tenant_config_file_alone_prints_every_line_of_its_tenant(
        file: str, in_broken: Path, capsys) -> None:
    """tenant.yaml, clients.yaml and users.yaml define the names the rest of the tenant refers to:
    validating one alone (pre-commit on a changed file) prints what validating the tenant prints."""
    status, out, err = _validate(capsys, file)
    expected = BY_CASE[file.split("/", 1)[0]]
    assert out.splitlines() == _lines(expected)
    assert (status, err) == _outcome([block[0] for block in expected])


def test_every_broken_file_has_its_expected_lines() -> None:
    """A file added to tests/broken/ without an expectation (or one left over) fails here."""
    files = {p.relative_to(BROKEN).as_posix() for sub in ("dsl", "yaml") for p in (BROKEN / sub).iterdir()}
    lone = {case for case in BY_CASE if case not in TENANT_CASES}
    assert files == lone


def test_error_kinds_cover_both_forms() -> None:
    codes = {LINE.match(line)["code"] for line in HEADERS}
    dsl_codes = {LINE.match(line)["code"] for line in HEADERS if line.startswith("dsl/")}
    yaml_codes = {LINE.match(line)["code"] for line in HEADERS if ".yaml:" in line}
    assert len(codes) >= 30
    assert len(dsl_codes) >= 15
    assert len(yaml_codes) >= 10


def test_all_errors_of_a_dsl_file_at_once(in_broken: Path, capsys) -> None:
    """Syntax errors in two blocks do not hide each other nor the other blocks' semantic errors."""
    status, out, _ = _validate(capsys, "dsl/many-errors.policy")
    codes = [LINE.match(block[0])["code"] for block in blocks(out)]
    assert status == 1
    assert codes.count("E_SYNTAX") == 2
    assert {"E_INACTIVITY_MAX", "E_DURATION", "E_UNKNOWN_METHOD", "E_ON_UNMET", "E_ALG_KEY_MISMATCH",
            "E_TRUST_NO_LIFETIME", "E_VALUE", "E_DUPLICATE_POLICY", "E_DUPLICATE_CLIENT"} <= set(codes)
    assert len(codes) == 14  # the client both policies claim is reported once, at the later claim


def test_all_errors_of_a_yaml_file_at_once(in_broken: Path, capsys) -> None:
    """Every schema error, and the checks on the well-formed members (the trust block has no amr),
    each mistake once: the key written wrong is not missing as well."""
    status, out, _ = _validate(capsys, "yaml/many-errors.policy.yaml")
    lines = [block[0] for block in blocks(out)]
    assert status == 1
    assert len(lines) == 12
    assert len({LINE.match(line)["line"] for line in lines}) == 12  # one per offending node
    assert [LINE.match(line)["code"] for line in lines].count("E_TRUST_NO_AMR") == 1
    assert "E_TRUST_NO_KEY" not in out and "E_TRUST_NO_LIFETIME" not in out


# --- whole runs -------------------------------------------------------------------------

def test_everything_at_once_in_one_run(in_broken: Path, capsys) -> None:
    status, out, err = _validate(capsys, "dsl", "yaml", *TENANT_CASES)
    assert out == EXPECTED
    assert (status, err) == _outcome(HEADERS) == (1, f"{len(HEADERS) - 2} errors, 2 warnings\n")


def _policy_sso_command() -> list[str]:
    script = Path(sys.executable).with_name("policy-sso")
    return [str(script)] if script.exists() else [sys.executable, "-m", "policy_sso.cli"]


def test_real_subprocess_prints_every_line_and_exits_1() -> None:
    env = {k: v for k, v in os.environ.items() if k not in (UNSET_KEY_VAR, UNSET_TOTP_VAR)}
    run = subprocess.run([*_policy_sso_command(), "validate", "dsl", "yaml", *TENANT_CASES],
                         cwd=BROKEN, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert run.stdout == EXPECTED
    assert (run.returncode, run.stderr) == _outcome(HEADERS)


def test_paths_print_relative_to_the_working_directory(monkeypatch, capsys) -> None:
    monkeypatch.chdir(ROOT)
    status, out, _ = _validate(capsys, "tests/broken/dsl/duplicate-policy.policy")
    assert status == 1
    assert out.splitlines() == [
        "tests/broken/dsl/duplicate-policy.policy:6:1: E_DUPLICATE_POLICY: policy 'twice' is defined twice "
        "(hint: first defined at tests/broken/dsl/duplicate-policy.policy:2)",
        '   6 | policy "twice" {',
        "     | ^^^^^^^^^^^^^^",
        "tests/broken/dsl/duplicate-policy.policy:2:1: note: first defined here",
        '   2 | policy "twice" {',
        "     | ^^^^^^^^^^^^^^",
    ]


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
    for item, block in zip(items, BY_CASE["dsl/many-errors.policy"], strict=True):
        assert set(item) == {"file", "line", "col", "code", "message", "hint", "severity",
                             "end_line", "end_col", "related"}
        assert isinstance(item["line"], int)
        assert isinstance(item["col"], int)
        assert item["severity"] == "error"
        text = f"{item['file']}:{item['line']}:{item['col']}: {item['code']}: {item['message']}"
        assert block[0] == (f"{text} (hint: {item['hint']})" if item["hint"] else text)
        # the carets of the text format cover the same columns as end_col
        if item["end_line"] == item["line"]:
            assert block[2].index("^") - block[2].index("|") - 2 == item["col"] - 1
            assert block[2].count("^") == item["end_col"] - item["col"]
        notes = [line for line in block if ": note: " in line]
        assert notes == [f"{r['file']}:{r['line']}:{r['col']}: note: {r['label']}" for r in item["related"]]
    [syntax, _] = [item for item in items if item["code"] == "E_SYNTAX"]
    assert syntax == {
        "file": "dsl/many-errors.policy", "line": 15, "col": 22, "code": "E_SYNTAX",
        "message": "'5 m' is not a duration: the unit must follow the number without a space",
        "hint": "write 5m", "severity": "error", "end_line": 15, "end_col": 25, "related": [],
    }


def test_json_format_marks_warnings(in_broken: Path, capsys) -> None:
    status, out, _ = _validate(capsys, "dsl/env-key-unset.policy", "--format", "json")
    assert status == 0
    [item] = json.loads(out)["diagnostics"]
    assert (item["code"], item["severity"], item["line"]) == ("W_KEY_UNRESOLVED", "warning", 5)


def _github_line(text_line: str, item: dict) -> str:
    """Return the annotation for a text header line and the same diagnostic's JSON span."""
    m = LINE.match(text_line)
    level = "warning" if m["code"].startswith("W_") else "error"
    span = f",endLine={item['end_line']}" if item["end_line"] else ""
    if item["end_line"] == item["line"] and item["end_col"]:
        span += f",endColumn={item['end_col'] - 1}"
    notes = "".join(f"%0A{r['file']}:{r['line']}:{r['col']}: {r['label']}" for r in item["related"])
    return (f"::{level} file={m['file']},line={m['line']},col={m['col']}{span},title={m['code']}::"
            f"{m['code']}: {m['rest']}{notes}")


def test_github_format_annotates_each_error(in_broken: Path, capsys) -> None:
    argv = ("tenant-config", "dsl/env-key-unset.policy")
    status, out, err = _validate(capsys, *argv, "--format", "github")
    assert status == 1
    assert err == ""
    lines = out.splitlines()
    items = json.loads(_validate(capsys, *argv, "--format", "json")[1])["diagnostics"]
    expected = [block[0] for block in BY_CASE["dsl/env-key-unset.policy"] + BY_CASE["tenant-config"]]
    assert lines == [_github_line(line, item) for line, item in zip(expected, items, strict=True)]
    assert lines[0] == (
        "::warning file=dsl/env-key-unset.policy,line=5,col=5,endLine=5,endColumn=44,title=W_KEY_UNRESOLVED::"
        "W_KEY_UNRESOLVED: "
        "environment variable POLICY_SSO_TEST_UNSET_HINT_KEY is not set "
        "(hint: set it where the server runs: without it the server still starts, but refuses every "
        "login_hint_token for this policy's clients (server_error))")
    assert lines[1] == (
        "::error file=tenant-config/clients.yaml,line=3,col=5,endLine=3,endColumn=22,title=E_CLIENT_SECRET::"
        "E_CLIENT_SECRET: "
        "confidential client 'backend' has no secret (hint: add secret: {env: VAR} or {file: path})")


def test_github_format_escapes_property_separators(tmp_path: Path, monkeypatch, capsys) -> None:
    """A ',' or ':' in a file name would end the annotation's property early."""
    (tmp_path / "odd,name:1.policy").write_text('policy "p" {\n  clients portal\n}\n')
    monkeypatch.chdir(tmp_path)
    status, out, _ = _validate(capsys, "odd,name:1.policy", "--format", "github")
    assert status == 1
    assert out == ("::error file=odd%2Cname%3A1.policy,line=2,col=11,endLine=2,endColumn=16,title=E_SYNTAX::"
                   "E_SYNTAX: expected a quoted string, found 'portal' (hint: strings are double-quoted: "
                   'write "portal")\n')


# --- edges of the command ---------------------------------------------------------------

def test_missing_path_is_a_finding(in_broken: Path, capsys) -> None:
    status, out, err = _validate(capsys, "no/such.policy")
    assert (status, out) == (2, "")  # a usage error, as for any command given a path that is not there
    assert "no such file or directory: no/such.policy" in err


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
        "   3 |   require mfa within 0m",
        "     |                      ^^",
        "bom.policy.yaml:2:23: E_TYPE: 'inactivity' must be a duration like 15m, not the number 0 "
        "(hint: a duration has a unit right after the number: write 0m (or s, h, d))",
        "   2 | session: {inactivity: 0}",
        "     |                       ^",
    ]


def test_every_code_is_documented() -> None:
    reference = (ROOT / "docs" / "policy-language.md").read_text()
    codes = {LINE.match(line)["code"] for line in HEADERS} | {"E_READ"}
    assert {code for code in codes if f"| `{code}` |" not in reference} == set()
