"""The ``policy-sso`` command line: exit 0 on success, 1 on findings, 2 on usage errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from policy_sso.compile import network_tests
from policy_sso.decision import Decision
from policy_sso.diagnostics import RENDERERS
from policy_sso.errors import ConfigError, OAuthError, PolicySSOError
from policy_sso.networks import client_ip
from policy_sso.request import AuthRequest
from policy_sso.sessions.fixture import FixtureError, ended_from_fixture, parse_time, session_from_fixture
from policy_sso.sessions.model import Session, SessionEnd
from policy_sso.tenant import (
    Tenant,
    check_paths,
    check_tenant,
    files_to_validate,
    find_tenant_dir,
    loaded_by_a_tenant,
)

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
DESCRIPTION = """policy-sso: an OpenID Provider whose single sign-on is governed by declarative policy.
Exit status: 0 success, 1 findings (errors, a refused decision, failing tests), 2 usage errors."""


class UsageError(Exception):
    """Bad arguments: reported on stderr with exit status 2."""


# --- validate -------------------------------------------------------------------

def cmd_validate(args: argparse.Namespace) -> int:
    """Check tenants and policy files; print every diagnostic."""
    missing = [raw for raw in args.paths if not Path(raw).exists()]
    if missing:
        raise UsageError("no such file or directory: " + ", ".join(missing))
    tests = [raw for raw in args.paths if raw.endswith((".test.yaml", ".test.yml"))]
    if tests:  # a policy test file is not a policy: its own command checks and runs it
        raise UsageError(f"{tests[0]} is a policy test file: check and run it with "
                         f"`policy-sso test {' '.join(tests)}`")
    for raw in args.paths:  # nothing to check below a directory: a mistyped path in CI, not a pass
        path = Path(raw)
        if path.is_dir() and not (path / "tenant.yaml").is_file():
            files, test_files, outside = files_to_validate(path)
            if not files and not outside and not files_to_validate(path, loaded_by_a_tenant)[0]:
                raise UsageError(f"nothing to validate in {raw}: no tenant.yaml, no policy file (*.policy, "
                                 "*.policy.yaml) and no YAML file with a top-level policy: key below it"
                                 + (f"; its {len(test_files)} policy test file{'s' * (len(test_files) != 1)} "
                                    f"(*.test.yaml) run with `policy-sso test {raw}`" if test_files else ""))
    diagnostics = check_paths(args.paths)
    sys.stdout.write(RENDERERS[args.format](diagnostics))
    errors = sum(d.severity == "error" for d in diagnostics)
    if args.format == "text":
        warnings = len(diagnostics) - errors
        summary = f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
        print(("ok: " if not errors else "") + summary, file=sys.stderr)
    return EXIT_FINDINGS if errors else EXIT_OK


# --- explain --------------------------------------------------------------------

def _load_fixture(path: str, now: int) -> Session | None:
    data = _fixture_data(path)
    try:
        return session_from_fixture(data, now)
    # FixtureError is a ValueError; the others come from values of the wrong type
    # the fixture reader does not check (consents: {app: 5}, at: .inf).
    except (ValueError, TypeError, AttributeError, OverflowError) as err:
        raise UsageError(f"session file {path}: {err}") from None


def _load_ended(path: str, now: int) -> SessionEnd | None:
    """Return why the fixture's session ended (``ended: {reason, at, limit}``), or None."""
    try:
        return ended_from_fixture(_fixture_data(path), now)
    except (ValueError, TypeError, OverflowError) as err:
        raise UsageError(f"session file {path}: {err}") from None


def _fixture_data(path: str) -> object:
    if path == "null" and not Path(path).exists():  # --session null: no session at all
        return None
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise UsageError(f"cannot read session file {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise UsageError(f"session file {path} is not UTF-8 text: {err.reason}") from None
    except yaml.YAMLError as err:
        raise UsageError(f"session file {path} is not valid JSON/YAML: {err}") from None
    if isinstance(data, dict) and "session" in data and "subject" not in data:
        data = data["session"]
    return data


def _explain_text(client: str, decision: Decision, request: AuthRequest, tenant: Tenant) -> str:
    policy = tenant.policy_for(client)
    lines = [f"client {client} -> policy {policy.name} ({policy.span})",
             f"outcome: {decision.outcome}"]
    if any(network_tests(w.condition) for w in policy.whens):  # what its network blocks were decided on
        lines.append(f"client address: {request.client_ip or 'unknown (every network block applies)'}")
    if decision.reasons:
        lines.append("reasons:")
        width = max(len(r.code) for r in decision.reasons)
        for r in decision.reasons:
            lines.append(f"  {r.code:<{width}}  {r.source}")
            lines.append(f"  {'':<{width}}  required: {r.required}")
            lines.append(f"  {'':<{width}}  observed: {r.observed}")
    if request.acr_values:
        mode = tenant.settings.acr_values_requested
        lines.append(f"requested acr_values {' '.join(request.acr_values)}: {mode} "
                     f"(tenant.yaml acr_values.requested)")
    if decision.remedy:
        lines.append(f"remedy: {decision.remedy.message}")
    if request.silent and not decision.allowed:
        desc = " ".join(decision.codes)
        lines.append("under prompt=none the client's redirect_uri receives: "
                     f"error={decision.outcome}&error_description={urllib.parse.quote(desc)}")
    return "\n".join(lines) + "\n"


def tenant_directory(config: str | None, near: str | None = None) -> Path:
    """Return the tenant to use, found as ``policy-sso test`` finds it; raise UsageError when there is none.

    ``--config DIR`` when given; else the nearest directory holding a
    tenant.yaml at or above the session file, then at or above the working
    directory; else ``policies/`` (the demo tenant, from the repository root).
    """
    if config is not None:
        if not (Path(config) / "tenant.yaml").is_file():
            raise UsageError(f"{config} is not a tenant directory (no tenant.yaml)")
        return Path(config)
    for start in ([Path(near)] if near else []) + [Path.cwd()]:
        found = find_tenant_dir(start) if start.exists() else None
        if found is not None:
            return Path(os.path.relpath(found)) if not os.path.relpath(found).startswith("..") else found
    if (Path("policies") / "tenant.yaml").is_file():
        return Path("policies")
    raise UsageError("no tenant found (no tenant.yaml here or above); give --config DIR")


def cmd_explain(args: argparse.Namespace) -> int:
    """Print the decision for a client, a session fixture and a request."""
    directory = tenant_directory(args.config, args.session)
    tenant, diagnostics = check_tenant(directory)
    if tenant is None:
        sys.stderr.write(RENDERERS["text"](diagnostics))
        print(f"policy-sso explain: the tenant in {directory} does not validate", file=sys.stderr)
        return EXIT_FINDINGS
    if not tenant.governs(args.client):  # never an answer from a default policy (fail closed)
        raise UsageError(f"client {args.client!r} is not registered in {directory / 'clients.yaml'} "
                         f"({tenant.client_hint(args.client)})")
    try:
        at = int(args.at) if args.at and args.at.isdigit() else args.at  # epoch seconds arrive as text
        now = parse_time(at, int(time.time()), "--at") if at else int(time.time())
    except FixtureError as err:
        raise UsageError(str(err)) from None
    address = client_ip(args.ip)
    if args.ip is not None and address is None:
        raise UsageError(f"--ip {args.ip!r} is not an IP address (e.g. 10.1.2.3 or 2001:db8::1)")
    session = _load_fixture(args.session, now)
    params = dict(urllib.parse.parse_qsl(args.request or "", keep_blank_values=True))
    params.setdefault("scope", "openid")
    hinted = tenant.resolve_user(params.get("login_hint"))
    try:
        request = AuthRequest.from_params(
            args.client, params, id_token_hint_sub=params.get("id_token_hint_sub"),
            login_hint_sub=(hinted.sub if hinted else params.get("login_hint")), client_ip=address)
    except OAuthError as err:
        print(f"invalid request: {err.error}: {err.description}", file=sys.stderr)
        return EXIT_FINDINGS
    decision = tenant.decide(request, session, now)
    ended = _load_ended(args.session, now) if session is None else None
    if ended is not None:  # the store's record of why the session ended (issue 13)
        decision = tenant.evaluator(args.client).ended(ended)
    if args.format == "json":
        out = {"client_id": args.client, "at": now, **({"ip": str(address)} if address else {}),
               **decision.to_json()}
        if request.acr_values:
            out["acr_values"] = {"requested": tenant.settings.acr_values_requested}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        sys.stdout.write(_explain_text(args.client, decision, request, tenant))
    return EXIT_OK if decision.allowed else EXIT_FINDINGS


# --- wiring ---------------------------------------------------------------------

def package_version() -> str:
    """Return the installed package's version (from its metadata), or ``unknown`` in a bare checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("policy-sso")
    except PackageNotFoundError:
        return "unknown"


Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="policy-sso", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"policy-sso {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="schema, syntax and semantic checks of tenants and policies",
                       description="Check tenant directories and policy files; print every error at once. "
                       "A file of a tenant gets every error that involves it (what pre-commit runs). Exit "
                       "status: 0 no error, 1 errors, 2 usage errors (a path that does not exist).")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="tenant directories, policy files, or files of a tenant (checked with their tenant)")
    p.add_argument("--format", choices=sorted(RENDERERS), default="text",
                   help="text (with the source line), json, or github (Actions annotations)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("explain", help="the decision for a client, a session and a request",
                       description="Print the decision a client's policy makes for a session and an "
                       "authorization request: the policy, the outcome, every reason with its policy line, "
                       "and the remedy. Exit status: 0 allowed, 1 refused (or the tenant does not "
                       "validate), 2 usage errors (including a client the tenant does not register).")
    p.add_argument("--client", required=True, metavar="ID", help="a client_id registered in clients.yaml")
    p.add_argument("--session", required=True, metavar="FILE",
                   help="session fixture (JSON/YAML: subject, events, last_seen, consents), or the word "
                        "null for a browser with no session")
    p.add_argument("--request", default="", metavar="QUERY",
                   help="authorization request query string (default: scope=openid)")
    p.add_argument("--at", metavar="TIME", help="evaluate at this time (epoch, ISO 8601 or -1h)")
    p.add_argument("--ip", metavar="ADDRESS",
                   help="the client address the request comes from, for `when network in` (default: unknown, "
                   "so every block that tests the network applies)")
    p.add_argument("--config", metavar="DIR",
                   help="tenant directory (default: the nearest one holding tenant.yaml at or above the "
                   "session file or here, else policies/)")
    p.add_argument("--format", choices=["text", "json"], default="text", help="output format (default: text)")
    p.set_defaults(func=cmd_explain)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[argparse._SubParsersAction], None]]:
    """Return the register functions of commands that live in their own modules."""
    import importlib

    registers = []
    for module in ("policy_sso.cli.serve", "policy_sso.cli.tools", "policy_sso.cli.authoring",
                   "policy_sso.cli.events"):
        try:
            registers.append(importlib.import_module(module).register)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
    return registers


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # an unknown option before any command: argparse would only say the command is missing
    if argv and argv[0].startswith("-") and argv[0] not in parser._option_string_actions:
        parser.print_usage(sys.stderr)
        print(f"policy-sso: error: unrecognized option {argv[0]} (options go after the command: "
              f"policy-sso COMMAND {argv[0]})", file=sys.stderr)
        return EXIT_USAGE
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0) and EXIT_USAGE
    try:
        return int(args.func(args))
    except UsageError as err:
        print(f"policy-sso {args.command}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as err:  # a command that needs a valid tenant met an invalid one
        sys.stderr.write(RENDERERS["text"](err.diagnostics))
        print(f"policy-sso {args.command}: {err}", file=sys.stderr)
        return EXIT_FINDINGS
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly, like other Unix tools
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush cannot fail again
        return EXIT_FINDINGS
    except (PolicySSOError, OSError) as err:  # e.g. a file that cannot be written
        print(f"policy-sso {args.command}: {err}", file=sys.stderr)
        return EXIT_FINDINGS


if __name__ == "__main__":
    sys.exit(main())
