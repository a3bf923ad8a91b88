"""``policy-sso serve``: run the OpenID Provider on waitress (SPEC §6).

Defaults serve the demo tenant from ``policies/`` with state (signing keys,
the interaction key, the SQLite store) in ``./var`` on 127.0.0.1:8080, so the
README's first command works from the repository root with no arguments.

Every option can also come from the environment, ``POLICY_SSO_`` and the
option's name (``--port`` is ``POLICY_SSO_PORT``, ``--max-request-body-size``
``POLICY_SSO_MAX_REQUEST_BODY_SIZE``). Precedence, as in docs/operations.md:
the flag, then the environment, then tenant.yaml (issuer, store, state_dir),
then the default.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policy_sso.tenant import Tenant

ENV_PREFIX = "POLICY_SSO_"

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
    from policy_sso.audit.configure import check_sinks
    from policy_sso.diagnostics import RENDERERS
    from policy_sso.errors import PolicySSOError
    from policy_sso.oidc.admin import weak_admin_token
    from policy_sso.oidc.keys import KeyRing
    from policy_sso.sessions.store import open_store
    from policy_sso.tenant import check_tenant
    from server.app import longest_token_lifetime, serve
    from server.limits import ServerLimits
    from server.logs import configure_logging

    configure_logging(args.log_format or "text", args.log_level or "info")
    if not (Path(args.config) / "tenant.yaml").is_file():  # a mistyped --config: usage, not findings
        print(f"policy-sso serve: {args.config} is not a tenant directory (no tenant.yaml)", file=sys.stderr)
        return EXIT_USAGE
    tenant, diagnostics = check_tenant(args.config)
    if tenant is None:
        sys.stderr.write(RENDERERS["text"](diagnostics))
        return EXIT_FINDINGS
    adjust = issuer_override(args.issuer)
    tenant = adjust(tenant)
    if weak := weak_admin_token(tenant):
        print(f"policy-sso serve: {weak}", file=sys.stderr)
        return EXIT_FINDINGS
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
    try:  # SPEC §7: a server whose audit events would go nowhere does not start
        check_sinks(tenant.settings.audit, state_dir=state_dir, store=store)
    except PolicySSOError as err:
        store.close()
        print(f"policy-sso serve: {err} (tenant.yaml audit:)", file=sys.stderr)
        return EXIT_FINDINGS
    workers = worker_count(args.workers, url)
    if isinstance(workers, str):
        store.close()
        print(f"policy-sso serve: {workers}", file=sys.stderr)
        return EXIT_USAGE
    if workers > 1:
        from server.supervisor import serve_workers

        store.close()  # opened to check it; each worker opens its own after the fork
        return serve_workers(workers, args, tenant, url, keyring, state_dir, adjust)
    try:
        limits = ServerLimits(**{name: value for name in LIMIT_FLAGS
                                 if (value := getattr(args, name, None)) is not None})
        serve(tenant, store, keyring, state_dir, host=args.host, port=args.port, threads=args.threads,
              limits=limits, adjust=adjust)
    except OSError as err:  # e.g. the port is taken
        print(f"policy-sso serve: cannot listen on {args.host}:{args.port}: {err.strerror}",
              file=sys.stderr)
        return EXIT_FINDINGS
    return EXIT_OK


def worker_count(flag: int | None, url: str) -> int | str:
    """Return how many worker processes to run (``--workers``, else one per CPU), or why not.

    The memory store lives in one process: several workers would each have
    their own sessions, so it runs one worker unless more are asked for,
    which is refused.
    """
    if url.startswith("memory:"):
        if flag is not None and flag > 1:
            return (f"--workers {flag} needs a store the workers share (sqlite:///PATH, redis://, "
                    "postgresql://); memory:// keeps sessions inside one process")
        return 1
    return flag if flag is not None else max(1, os.cpu_count() or 1)


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


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535; 0: any free port)")
    return int(text)


def issuer_url(text: str) -> str:
    """Return ``text`` as an issuer URL without a trailing slash (``--issuer``); argparse type."""
    # tenant.yaml's rule (schemas/tenant.schema.json): an http(s) URL without query or fragment
    # (OIDC Discovery §3: the issuer is compared as a string, so no trailing slash either)
    if not text.startswith(("https://", "http://")) or "?" in text or "#" in text or len(text) < 9:
        raise argparse.ArgumentTypeError(f"{text!r} is not an issuer URL (http(s)://host[:port][/path], "
                                         "no query or fragment)")
    return text.rstrip("/")


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.lower() not in choices:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(choices)}")
        return text.lower()

    return parse


def issuer_override(issuer: str | None) -> Callable[[Tenant], Tenant]:
    """Return what makes a loaded tenant serve ``issuer`` (``--issuer``); the identity when None.

    The server's holder applies it to every reloaded tenant as well, so a
    reload never finds the issuer changed.
    """
    def adjust(tenant: Tenant) -> Tenant:
        if issuer is None or issuer == tenant.settings.issuer:
            return tenant
        from policy_sso.tenant import Tenant

        return Tenant(tenant.directory, replace(tenant.settings, issuer=issuer), tenant.clients,
                      tenant.users, tenant.policies, tenant.policy_files)

    return adjust


def _from_environment(parser: argparse.ArgumentParser, environ: dict[str, str] | Any) -> None:
    """Make ``POLICY_SSO_<OPTION>`` each option's default (the flag still wins), and say so in --help.

    argparse converts a string default with the option's type when the flag is
    absent, so a bad value in the environment is a usage error (exit 2) naming
    the variable, like a bad flag.
    """
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            environment_default(action, ENV_PREFIX + action.dest.upper(), environ)


def environment_default(action: argparse.Action, var: str, environ: dict[str, str] | Any) -> None:
    """Make the variable ``var`` the option's default (the flag still wins), and say so in its help."""
    action.help = f"{action.help or ''} [env {var}]".strip()
    if environ.get(var, "") == "":
        return
    if action.nargs == 0:  # a switch (--flag): on for 1, true, yes, on
        action.default = environ[var].strip().lower() in {"1", "true", "yes", "on"}
        return
    if action.type is not None:
        action.type = _naming(var, action.type)
    action.default = environ[var]


def _naming(var: str, convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as err:
            raise argparse.ArgumentTypeError(f"{err} (from the command line or {var})") from None

    return parse


def _store_url(text: str) -> str:
    from policy_sso.sessions.store import store_url  # the store package loads only for commands that use it

    try:
        return store_url(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` command to the CLI, every option also read from ``POLICY_SSO_<OPTION>``."""
    p = subparsers.add_parser("serve", help="run the OpenID Provider (waitress)")
    p.add_argument("--config", default="policies", metavar="DIR", help="tenant directory (policies/)")
    p.add_argument("--state-dir", metavar="DIR",
                   help="keys and the SQLite store (default: tenant.yaml state_dir, ./var)")
    p.add_argument("--store", type=_store_url, metavar="URL",
                   help="memory://, sqlite:///PATH, redis://HOST:PORT/DB, redis+cluster://HOST:PORT[,...] "
                   "or postgresql://USER@HOST/DB "
                   "(default: SQLite in --state-dir if given, else tenant.yaml store)")
    p.add_argument("--issuer", type=issuer_url, metavar="URL",
                   help="the issuer every token and discovery names (default: tenant.yaml issuer); "
                   "behind a TLS proxy, its public https URL")
    p.add_argument("--host", default="127.0.0.1", metavar="H", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", default=8080, type=_port, metavar="P", help="port to listen on (8080)")
    p.add_argument("--workers", type=_positive, metavar="N",
                   help="server processes on one listening socket, under a supervisor that restarts "
                   "them (default: one per CPU; 1 with the memory store)")
    p.add_argument("--threads", type=_positive, metavar="N",
                   help="waitress worker threads, for the routes off the I/O loop (default: one per CPU, "
                   "from 2 to 4)")
    for name, text in LIMIT_FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=_positive, metavar="N",
                       help=text)
    p.add_argument("--log-format", type=_one_of("text", "json"), metavar="text|json",
                   help="log lines on stderr as text or JSON objects (default text)")
    p.add_argument("--log-level", type=_one_of("debug", "info", "warning", "error"), metavar="LEVEL",
                   help="debug, info (an access line per request), warning or error (default info)")
    p.set_defaults(func=cmd_serve)
    _from_environment(p, os.environ)
