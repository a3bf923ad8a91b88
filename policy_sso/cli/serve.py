"""``policy-sso serve``: run the OpenID Provider on waitress (SPEC §6).

Defaults serve the demo tenant from ``policies/`` with state (signing keys,
the interaction key, the SQLite store) in ``./var`` on 127.0.0.1:8080, so the
README's first command works from the repository root with no arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def store_url(args_store: str | None, args_state_dir: str | None, tenant_store: str,
              state_dir: Path) -> str:
    """Return the store URL: ``--store``, else SQLite in ``--state-dir``, else tenant.yaml's."""
    if args_store:
        return args_store
    if args_state_dir:
        # sqlite:///relative or sqlite:////absolute (SQLAlchemy's convention, see store.open_store)
        return f"sqlite:///{state_dir / 'policy-sso.db'}"
    return tenant_store


def cmd_serve(args: argparse.Namespace) -> int:
    """Load the tenant, open the store and keys, and serve until interrupted."""
    from policy_sso.diagnostics import RENDERERS
    from policy_sso.errors import PolicySSOError
    from policy_sso.oidc.keys import KeyRing
    from policy_sso.sessions.store import open_store
    from policy_sso.tenant import check_tenant
    from server.app import longest_token_lifetime, serve
    from server.limits import ServerLimits

    tenant, diagnostics = check_tenant(args.config)
    if tenant is None:
        sys.stderr.write(RENDERERS["text"](diagnostics))
        return EXIT_FINDINGS
    _report_reloads()
    state_dir = Path(args.state_dir or tenant.settings.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)  # keys and the session database live here
    url = store_url(args.store, args.state_dir, tenant.settings.store, state_dir)
    try:
        store = open_store(url, tenant.settings.lifetime, tenant.settings.store_options)
        keyring = KeyRing.load_or_create(state_dir, tenant.settings.tokens.algorithms,
                                         token_lifetime=longest_token_lifetime(tenant))
    except (PolicySSOError, OSError) as err:
        print(f"policy-sso serve: {err}", file=sys.stderr)
        return EXIT_FINDINGS
    try:
        limits = ServerLimits(**{name: value for name in LIMIT_FLAGS
                                 if (value := getattr(args, name, None)) is not None})
        serve(tenant, store, keyring, state_dir, host=args.host, port=args.port, threads=args.threads,
              limits=limits)
    except OSError as err:  # e.g. the port is taken
        print(f"policy-sso serve: cannot listen on {args.host}:{args.port}: {err.strerror}",
              file=sys.stderr)
        return EXIT_FINDINGS
    return EXIT_OK


# waitress limits (server/limits.py ServerLimits, docs/security.md "Server limits"): flag -> help
LIMIT_FLAGS = {
    "max_request_body_size": "bytes of request body; 413 before a longer one is read (default 65536)",
    "max_request_header_size": "bytes of request line and headers; 431 beyond (default 32768)",
    "connection_limit": "open connections; when reached the longest-idle ones are closed (default 1000)",
    "channel_timeout": "seconds a connection may stay idle (default 30)",
}


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 10) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def _report_reloads() -> None:
    """Send what a reload did to stderr: SIGHUP has no one else to tell which policies are in force,
    which clients changed policy, or why a set was refused."""
    import logging

    log = logging.getLogger("policy_sso.reload")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` command to the CLI."""
    p = subparsers.add_parser("serve", help="run the OpenID Provider (waitress)")
    p.add_argument("--config", default="policies", metavar="DIR", help="tenant directory (policies/)")
    p.add_argument("--state-dir", metavar="DIR",
                   help="keys and the SQLite store (default: tenant.yaml state_dir, ./var)")
    p.add_argument("--store", metavar="URL",
                   help="memory://, sqlite:///PATH or redis://HOST:PORT/DB "
                   "(default: SQLite in the state dir)")
    p.add_argument("--host", default="127.0.0.1", metavar="H")
    p.add_argument("--port", default=8080, type=int, metavar="P")
    p.add_argument("--threads", type=int, metavar="N",
                   help="waitress worker threads (default: one per CPU, from 2 to 4)")
    for name, text in LIMIT_FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=_positive, metavar="N",
                       help=text)
    p.set_defaults(func=cmd_serve)
