"""Operator commands: ``keys rotate``, ``users add`` and ``hint mint`` (SPEC §6)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import secrets
import sys
import time
from pathlib import Path

from policy_sso.diagnostics import render_text
from policy_sso.errors import ConfigError
from policy_sso.model import parse_duration
from policy_sso.tenant import load_tenant

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


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
    from policy_sso.oidc.keys import (
        PUBLISH_AHEAD,
        RESCAN_INTERVAL,
        create_key,
        key_directory,
        mark_legacy_keys,
        thumbprint_of,
    )

    try:
        tenant = load_tenant(Path(args.config))
    except ConfigError as err:
        sys.stderr.write(render_text(err.diagnostics))
        return EXIT_FINDINGS
    configured = tenant.settings.tokens.algorithms
    algs = list(dict.fromkeys(args.alg or configured))
    unknown = [alg for alg in algs if alg not in configured]
    if unknown:
        return _fail(f"{unknown[0]} is not among the tenant's algorithms ({', '.join(configured)}); "
                     "add it to tokens.algorithms in tenant.yaml first")
    directory = key_directory(args.state_dir or tenant.settings.state_dir)
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


def cmd_users_add(args: argparse.Namespace) -> int:
    """Append a user with an argon2 password hash to users.yaml (comments are kept)."""
    from policy_sso.credentials import hash_password

    config = Path(args.config)
    users_file = config / "users.yaml"
    tenant = load_tenant(config)
    if args.username in tenant.users_by_name:
        return _fail(f"username {args.username!r} already exists", EXIT_FINDINGS)
    sub = args.sub or f"u-{secrets.token_hex(8)}"
    if sub in tenant.users:
        return _fail(f"subject {sub!r} already exists", EXIT_FINDINGS)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.username}: ")
    if len(password) < 8:
        return _fail("the password must have at least 8 characters")
    lines = [f"  - sub: {_yaml_scalar(sub)}", f"    username: {_yaml_scalar(args.username)}",
             f"    password_hash: {_yaml_scalar(hash_password(password))}"]
    if args.totp:
        secret_file = config / "secrets" / f"{args.username}.totp"
        secret_file.parent.mkdir(mode=0o700, exist_ok=True)
        import pyotp

        seed = pyotp.random_base32()
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(seed + "\n")
        lines.append(f"    totp_secret: {{file: {_yaml_scalar(str(secret_file.relative_to(config)))}}}")
        uri = pyotp.TOTP(seed).provisioning_uri(name=args.username, issuer_name=tenant.settings.issuer)
        print(f"TOTP enrolment URI (show it once, as a QR code): {uri}", file=sys.stderr)
    claims = {k: v for k, v in (("name", args.name), ("email", args.email)) if v}
    if claims:
        lines.append(f"    claims: {json.dumps(claims)}")
    text = users_file.read_text(encoding="utf-8")
    users_file.write_text(text + ("" if text.endswith("\n") else "\n") + "\n".join(lines) + "\n",
                          encoding="utf-8")
    try:
        load_tenant(config)
    except ConfigError as err:
        users_file.write_text(text, encoding="utf-8")  # never leave a half-valid users.yaml behind
        sys.stderr.write(render_text(err.diagnostics))
        return EXIT_FINDINGS
    print(f"added {args.username} ({sub}) to {users_file}")
    return EXIT_OK


# --- hint mint --------------------------------------------------------------------

def cmd_hint_mint(args: argparse.Namespace) -> int:
    """Print a login_hint_token signed for a trusted issuer (for testing and for apps)."""
    from policy_sso.oidc.hint_token import mint_hint_token

    config = Path(args.config)
    tenant = load_tenant(config)
    trusted = [t for p in tenant.policies.values() for t in p.trust if t.issuer == args.issuer]
    if args.key:
        key_path = Path(args.key)
    elif args.key_env:
        key_path = None
    else:
        return _fail("give --key FILE (an HMAC secret or a private key PEM) or --key-env VAR")
    key = (key_path.read_bytes().strip() if key_path is not None
           else os.environ.get(args.key_env, "").encode())
    if not key:
        return _fail("the signing key is empty or missing")
    alg = args.alg or (trusted[0].alg if trusted else None)
    if not alg:
        return _fail(f"no policy trusts issuer {args.issuer!r}; give --alg")
    lifetime = parse_duration(args.lifetime) if args.lifetime else (
        trusted[0].max_lifetime if trusted else 120)
    token = mint_hint_token(key, alg, issuer=args.issuer,
                            audience=args.audience or tenant.settings.issuer,
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
    p.add_argument("--config", default="policies", metavar="DIR", help="tenant directory (policies/)")
    p.add_argument("--state-dir", metavar="DIR", help="default: tenant.yaml state_dir")
    p.add_argument("--alg", action="append", choices=["RS256", "ES256", "EdDSA"],
                   help="only this algorithm (repeatable; default: every one tenant.yaml configures)")
    p.set_defaults(func=cmd_keys_rotate)

    users = sub.add_parser("users", help="the user directory").add_subparsers(dest="users_command",
                                                                              required=True)
    p = users.add_parser("add", help="add a user to users.yaml with an argon2 password hash")
    p.add_argument("--config", default="policies", metavar="DIR")
    p.add_argument("--username", required=True)
    p.add_argument("--sub", help="subject identifier (default: generated)")
    p.add_argument("--name")
    p.add_argument("--email")
    p.add_argument("--totp", action="store_true", help="enrol a TOTP second factor")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=cmd_users_add)

    hint = sub.add_parser("hint", help="login_hint_tokens").add_subparsers(dest="hint_command",
                                                                         required=True)
    p = hint.add_parser("mint", help="print a login_hint_token for testing and for apps")
    p.add_argument("--config", default="policies", metavar="DIR")
    p.add_argument("--issuer", required=True)
    p.add_argument("--sub", required=True)
    p.add_argument("--key", metavar="FILE", help="HMAC secret or private key PEM")
    p.add_argument("--key-env", metavar="VAR", help="environment variable holding the HMAC secret")
    p.add_argument("--alg", help="default: the trusting policy's alg")
    p.add_argument("--audience", help="default: the tenant's issuer")
    p.add_argument("--lifetime", help="default: the trusting policy's max_lifetime")
    p.set_defaults(func=cmd_hint_mint)
