"""Operator commands: ``keys rotate``, ``users add`` and ``hint mint``."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import secrets
import sys
import time
from pathlib import Path

from policy_sso.cli.serve import ENV_PREFIX, environment_default, issuer_override, issuer_url
from policy_sso.diagnostics import render_text
from policy_sso.errors import ConfigError
from policy_sso.model import parse_duration
from policy_sso.tenant import load_tenant

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
TENANT_HELP = "tenant directory (default: the nearest one holding tenant.yaml here or above, else policies/)"


def _fail(message: str, status: int = EXIT_USAGE) -> int:
    print(f"policy-sso: {message}", file=sys.stderr)
    return status


# --- keys rotate ------------------------------------------------------------------

def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """Add a new key for each algorithm the tenant signs with (or ``--alg``); old keys stay published.

    The new key is only written here: a server publishes it when it reloads
    (SIGHUP, ``POST /admin/v1/policies/reload``) or next looks at the key
    directory, and signs with it PUBLISH_AHEAD seconds after that, once every
    relying party's cached JWKS holds it (OIDC Core §10.1.1).
    """
    from policy_sso.cli.main import tenant_directory
    from policy_sso.oidc.keys import (
        PUBLISH_AHEAD,
        RESCAN_INTERVAL,
        create_key,
        key_directory,
        mark_legacy_keys,
        thumbprint_of,
    )

    try:
        tenant = load_tenant(tenant_directory(args.config))
    except ConfigError as err:
        sys.stderr.write(render_text(err.diagnostics))
        return EXIT_FINDINGS
    configured = tenant.settings.tokens.algorithms
    algs = list(dict.fromkeys(args.alg or configured))
    unknown = [alg for alg in algs if alg not in configured]
    if unknown:
        return _fail(f"{unknown[0]} is not among the tenant's algorithms ({', '.join(configured)}); "
                     "add it to tokens.algorithms in tenant.yaml first")
    state_dir = Path(args.state_dir or tenant.settings.state_dir)
    if not state_dir.is_dir():
        # a mistyped path would otherwise get keys no server reads, and the rotation would seem done
        return _fail(f"no state directory {state_dir}: give the one the servers use (--state-dir), "
                     "or run `policy-sso serve` once to create it")
    directory = key_directory(state_dir)
    mark_legacy_keys(directory)  # keys made before publication markers keep signing as they did
    for alg in algs:
        path = create_key(directory, alg)
        print(f"{alg}: new signing key {thumbprint_of(path, alg)} ({path.name})")
    print(f"reload the servers (SIGHUP or POST /admin/v1/policies/reload) to publish it now, or they do "
          f"within {RESCAN_INTERVAL}s; it signs {PUBLISH_AHEAD}s after it is published", file=sys.stderr)
    return EXIT_OK


# --- users add --------------------------------------------------------------------

def _yaml_scalar(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar


def _read_password(args: argparse.Namespace) -> str:
    """Return the new user's password: ``--password-file``, else stdin when it is not a terminal
    (or ``--password-stdin``), else a prompt. Only the first line counts."""
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as handle:
                return handle.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as err:
            raise _Usage(f"cannot read --password-file {args.password_file}: "
                         f"{getattr(err, 'strerror', None) or err}") from None
    if args.password_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    return getpass.getpass(f"password for {args.username}: ")


class _Usage(Exception):
    """A bad argument of ``users add``: exit status 2."""


_EMPTY_USERS = re.compile(r"^users:[ \t]*(\[[ \t]*\])?[ \t]*(#.*)?$", re.MULTILINE)
USERS_HEADER = ("# yaml-language-server: $schema=../schemas/users.schema.json\n"
                "# Users of this tenant. Add one with `policy-sso users add`.\n")


def _append_user(text: str, entry: list[str]) -> str:
    """Return users.yaml's text with ``entry`` appended to its ``users:`` list (``users: []`` opened)."""
    if not text.strip():
        text = USERS_HEADER + "users:\n"
    text = _EMPTY_USERS.sub("users:", text, count=1)
    return text + ("" if text.endswith("\n") else "\n") + "\n".join(entry) + "\n"


def _given_totp_secret(value: str | None) -> str | None:
    """Return ``--totp-secret`` normalized, or None; raise _Usage unless it is base32 of 128 bits or more."""
    from policy_sso.credentials import MIN_TOTP_SECRET_BITS, totp_secret_bits

    if value is None:
        return None
    seed = value.replace(" ", "").upper()
    bits = totp_secret_bits(seed) if seed else None
    if bits is None:
        raise _Usage("--totp-secret is not base32 (RFC 4648 §6: letters A-Z and digits 2-7)")
    if bits < MIN_TOTP_SECRET_BITS:
        raise _Usage(f"--totp-secret has {bits} bits; at least {MIN_TOTP_SECRET_BITS} required (RFC 4226 §4)")
    return seed


def _write_totp_secret(path: Path, seed: str | None, username: str, issuer: str) -> None:
    """Write the TOTP secret (a new one when ``seed`` is None, then printing its enrolment URI once)."""
    import pyotp

    from policy_sso.oidc.enrolment import totp_uri

    path.parent.mkdir(mode=0o700, exist_ok=True)
    generated = seed is None
    seed = seed or pyotp.random_base32()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(seed + "\n")
    if generated:  # a given secret is already in the user's authenticator
        uri = totp_uri(issuer, username, seed)
        print(f"TOTP enrolment URI (show it once, as a QR code): {uri}", file=sys.stderr)


def cmd_users_add(args: argparse.Namespace) -> int:
    """Append a user with an argon2 password hash to users.yaml (comments are kept; created if absent)."""
    from policy_sso.cli.main import tenant_directory
    from policy_sso.credentials import hash_password

    config = tenant_directory(args.config)
    if not args.username.strip():  # users.yaml's schema: a username has at least one character
        return _fail("--username must not be empty")
    users_file = config / "users.yaml"
    created = not users_file.exists()
    original = "" if created else users_file.read_text(encoding="utf-8")
    if created:
        users_file.write_text(USERS_HEADER + "users: []\n", encoding="utf-8")
    try:
        tenant = load_tenant(config)
    except ConfigError:
        if created:
            users_file.unlink()
        raise
    if args.username in tenant.users_by_name:
        return _fail(f"username {args.username!r} already exists", EXIT_FINDINGS)
    sub = args.sub or f"u-{secrets.token_hex(8)}"
    if sub in tenant.users:
        return _fail(f"subject {sub!r} already exists", EXIT_FINDINGS)
    try:
        seed = _given_totp_secret(args.totp_secret)
        password = _read_password(args)
    except _Usage as err:
        return _fail(str(err))
    if len(password) < 8:
        return _fail("the password must have at least 8 characters")
    lines = [f"  - sub: {_yaml_scalar(sub)}", f"    username: {_yaml_scalar(args.username)}",
             f"    password_hash: {_yaml_scalar(hash_password(password))}"]
    secret_file = None
    if args.totp or seed is not None:
        secret_file = config / "secrets" / f"{args.username}.totp"
        if secret_file.exists():
            return _fail(f"{secret_file} already exists; remove it or choose another username", EXIT_FINDINGS)
        _write_totp_secret(secret_file, seed, args.username, tenant.settings.issuer)
        lines.append(f"    totp_secret: {{file: {_yaml_scalar(str(secret_file.relative_to(config)))}}}")
    claims = {k: v for k, v in (("name", args.name), ("email", args.email)) if v}
    if claims:
        lines.append(f"    claims: {json.dumps(claims)}")
    before = users_file.read_text(encoding="utf-8")
    users_file.write_text(_append_user(before, lines), encoding="utf-8")
    try:
        load_tenant(config)
    except ConfigError as err:
        # never leave a half-valid users.yaml (or an orphan secret) behind
        if created:
            users_file.unlink()
        else:
            users_file.write_text(original, encoding="utf-8")
        if secret_file is not None:
            secret_file.unlink(missing_ok=True)
        # the positions are where the new entry stood: the file is back as it was
        print(f"policy-sso users add: {args.username} was not added, {users_file} is unchanged; "
              "with the new entry it read:", file=sys.stderr)
        sys.stderr.write(render_text(err.diagnostics))
        return EXIT_FINDINGS
    print(f"added {args.username} ({sub}) to {users_file}" + (" (created)" if created else ""))
    print("reload the servers (SIGHUP or POST /admin/v1/policies/reload) so the user can sign in",
          file=sys.stderr)
    return EXIT_OK


# --- hint mint --------------------------------------------------------------------

def cmd_hint_mint(args: argparse.Namespace) -> int:
    """Print a login_hint_token signed for a trusted issuer (for testing and for apps)."""
    from policy_sso.cli.main import tenant_directory
    from policy_sso.oidc.hint_token import mint_hint_token

    tenant = load_tenant(tenant_directory(args.config))
    trusted = [t for p in tenant.policies.values() for t in p.trust if t.issuer == args.issuer]
    if args.key:
        key_path = Path(args.key)
    elif args.key_env:
        key_path = None
    else:
        return _fail("give --key FILE (an HMAC secret or a private key PEM) or --key-env VAR")
    if key_path is not None and not key_path.is_file():
        return _fail(f"--key {args.key}: no such file")
    key = (key_path.read_bytes().strip() if key_path is not None
           else os.environ.get(args.key_env, "").encode())
    if not key:
        return _fail("the signing key is empty or missing")
    alg = args.alg or (trusted[0].alg if trusted else None)
    if not alg:
        return _fail(f"no policy trusts issuer {args.issuer!r}; give --alg")
    try:
        lifetime = parse_duration(args.lifetime) if args.lifetime else (
            trusted[0].max_lifetime if trusted else 120)
    except ValueError as err:
        return _fail(f"--lifetime: {err}")
    # the audience is the provider's issuer, decided as serve decides it (docs/forced-sso.md)
    audience = issuer_override(args.audience)(tenant).settings.issuer
    token = mint_hint_token(key, alg, issuer=args.issuer, audience=audience,
                            subject=args.sub, lifetime=lifetime, now=int(time.time()))
    print(token)
    if not trusted:
        print(f"warning: no policy trusts issuer {args.issuer!r}", file=sys.stderr)
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add the operator commands to the CLI."""
    keys = sub.add_parser("keys", help="signing keys").add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser("rotate", help="add a new signing key per configured algorithm; old keys stay "
                        "published")
    p.add_argument("--config", metavar="DIR", help=TENANT_HELP)
    p.add_argument("--state-dir", metavar="DIR", help="default: tenant.yaml state_dir")
    p.add_argument("--alg", action="append", choices=["RS256", "ES256", "EdDSA"],
                   help="only this algorithm (repeatable; default: every one tenant.yaml configures)")
    p.set_defaults(func=cmd_keys_rotate)

    users = sub.add_parser("users", help="the user directory").add_subparsers(dest="users_command",
                                                                              required=True)
    p = users.add_parser("add", help="add a user to users.yaml with an argon2 password hash",
                         description="Add a user to the tenant's users.yaml (created when absent). The "
                         "password comes from --password-file, else from stdin when stdin is not a "
                         "terminal, else from a prompt.")
    p.add_argument("--config", metavar="DIR", help=TENANT_HELP)
    p.add_argument("--username", required=True)
    p.add_argument("--sub", help="subject identifier (default: generated)")
    p.add_argument("--name", help="the name claim")
    p.add_argument("--email", help="the email claim")
    p.add_argument("--totp", action="store_true",
                   help="enrol a new TOTP second factor (prints the enrolment URI once)")
    p.add_argument("--totp-secret", metavar="BASE32",
                   help="enrol this existing TOTP secret (base32, at least 128 bits); kept in "
                   "secrets/USERNAME.totp, never in users.yaml")
    p.add_argument("--password-file", metavar="FILE", help="read the password from the first line of FILE")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password from the first line of stdin (the default when stdin is "
                   "not a terminal)")
    p.set_defaults(func=cmd_users_add)

    hint = sub.add_parser("hint", help="login_hint_tokens").add_subparsers(dest="hint_command",
                                                                         required=True)
    p = hint.add_parser("mint", help="print a login_hint_token for testing and for apps")
    p.add_argument("--config", metavar="DIR", help=TENANT_HELP)
    p.add_argument("--issuer", required=True)
    p.add_argument("--sub", required=True)
    p.add_argument("--key", metavar="FILE", help="HMAC secret or private key PEM")
    p.add_argument("--key-env", metavar="VAR", help="environment variable holding the HMAC secret")
    p.add_argument("--alg", help="default: the trusting policy's alg")
    audience = p.add_argument("--audience", type=issuer_url, metavar="URL",
                              help="the issuer policy-sso serves, as serve --issuer: give the same URL "
                              "(default: tenant.yaml issuer)")
    environment_default(audience, ENV_PREFIX + "ISSUER", os.environ)  # as serve reads it
    p.add_argument("--lifetime", help="default: the trusting policy's max_lifetime")
    p.set_defaults(func=cmd_hint_mint)
