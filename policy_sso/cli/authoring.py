"""Policy authoring commands: ``test``, ``fmt``, ``lint`` and ``diff`` (docs/authoring.md).

Registered into the ``policy-sso`` parser by :func:`register`. Exit status:
0 on success, 1 on findings (failing tests, files to reformat, lint errors,
changed decisions, broken input files), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from policy_sso.diagnostics import RENDERERS, Diagnostic, render_text, sort_diagnostics

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def _usage(command: str, message: str) -> int:
    print(f"policy-sso {command}: {message}", file=sys.stderr)
    return EXIT_USAGE


class _SourceLines:
    """Reads ``FILE:LINE`` locations back to the text written there (for failure reports)."""

    def __init__(self) -> None:
        self._files: dict[str, list[str]] = {}

    def line(self, source: str) -> str:
        file, _, number = source.rpartition(":")
        if not number.isdigit():
            return ""
        if file not in self._files:
            try:
                self._files[file] = Path(file).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                self._files[file] = []
        lines = self._files[file]
        index = int(number) - 1
        return lines[index].strip() if 0 <= index < len(lines) else ""


# --- test -------------------------------------------------------------------------------

def _reason_lines(decision: Any, expected: tuple[str, ...] | None, sources: _SourceLines) -> list[str]:
    """Return the decision's reasons, each with its policy line and what was required and observed;
    against ``expected``, marked + (produced, not expected) and followed by - (expected, not produced)."""
    width = max([len(c) for c in (*(expected or ()), *decision.codes)] or [0])
    extra = Counter(decision.codes) - Counter(expected or ())
    lines = []
    for reason in decision.reasons:
        mark = " "
        if expected is not None and extra[reason.code]:
            extra[reason.code] -= 1
            mark = "+"
        text = sources.line(reason.source)
        where = f"{reason.source}  {text}" if text else reason.source
        lines.append(f"    {mark} {reason.code:<{width}}  {where}")
        lines.append(f"      {'':<{width}}  required {reason.required}; observed {reason.observed}")
    if expected is not None:
        missing = Counter(expected) - Counter(decision.codes)
        lines += [f"    - {code}" for code in sorted(missing.elements())]
    return lines


def _failure_text(result: Any, tenant: Any, sources: _SourceLines) -> str:
    case, decision = result.case, result.decision
    lines = [f"FAIL {case.file}:{case.line}: {case.name}"]
    if result.error:
        return "\n".join([*lines, f"  error: {result.error}"])
    policy = decision.policy or tenant.policy_for(case.client).name
    lines.append(f"  client {case.client} -> policy {policy}")
    if decision.outcome != case.outcome:
        lines += [f"  outcome  expected: {case.outcome}", f"           actual:   {decision.outcome}"]
    else:
        lines.append(f"  outcome  {decision.outcome} (as expected)")
    if case.reasons is not None:
        lines.append("  reasons  (- expected, not produced; + produced, not expected)")
    elif decision.reasons:  # the case checks the outcome only: still show why the decision is what it is
        lines.append("  reasons  (actual; the case has no expect.reasons)")
    else:
        lines.append("  reasons  none (the case has no expect.reasons)")
    lines += _reason_lines(decision, case.reasons, sources)
    if decision.remedy is not None:
        lines.append(f"  remedy   {decision.remedy.message}")
    return "\n".join(lines)


def _coverage_text(run: Any, sources: _SourceLines) -> list[str]:
    coverage = run.coverage
    if not run.results:
        return ["coverage: n/a (no case ran)"]
    report = coverage.report()
    covered, total = coverage.totals
    if not total:
        return ["coverage: n/a (the policies tested have no requirement checks or when blocks)"]
    lines = [f"coverage: {covered}/{total} requirement checks and when blocks ({coverage.percent:.1f}%)"]
    width = max([len(name) for name, _ in report] or [0])
    for name, items in report:
        done = sum(ok for _, ok in items)
        percent = 100.0 * done / len(items) if items else 100.0
        lines.append(f"  {name:<{width}}  {done}/{len(items)}  {percent:5.1f}%  {coverage.files[name]}")
        for item, ok in items:
            if not ok:
                what = ("when guard never held" if item.kind == "when"
                        else f"{item.label} never failed")
                text = sources.line(item.source)
                lines.append(f"      not covered: {item.source}  {text}  ({what})")
    others = coverage.others()
    if others:
        names = ", ".join(others[:8]) + (f", … ({len(others) - 8} more)" if len(others) > 8 else "")
        lines.append(f"  not counted: {names} (no case run targets {'it' if len(others) == 1 else 'them'}; "
                     "give the tenant directory to count every policy)")
    return lines


def _result_json(result: Any, tenant: Any) -> dict[str, Any]:
    case, decision = result.case, result.decision
    out: dict[str, Any] = {
        "name": case.name, "file": case.file, "line": case.line, "client": case.client,
        "passed": result.passed,
        "expected": {"outcome": case.outcome,
                     "reasons": list(case.reasons) if case.reasons is not None else None},
    }
    if result.error:
        out["error"] = result.error
    if decision is not None:
        out["policy"] = decision.policy or tenant.policy_for(case.client).name
        out["actual"] = {"outcome": decision.outcome,
                         "reasons": [{"code": r.code, "source": r.source, "required": r.required,
                                      "observed": r.observed} for r in decision.reasons]}
    return out


def _coverage_json(coverage: Any) -> dict[str, Any]:
    policies = []
    for name, items in coverage.report():
        policies.append({
            "policy": name, "file": coverage.files[name],
            "covered": sum(ok for _, ok in items), "total": len(items),
            "items": [{"kind": i.kind, "source": i.source, "reason": i.label if i.kind == "check" else None,
                       "covered": ok} for i, ok in items],
        })
    percent = coverage.percent
    return {"percent": None if percent is None else round(percent, 2),
            "covered": sum(p["covered"] for p in policies),
            "total": sum(p["total"] for p in policies), "policies": policies,
            "not_counted": coverage.others()}


def cmd_test(args: argparse.Namespace) -> int:
    """Run policy test files; report failures with a diff, a summary and the coverage."""
    from policy_sso.authoring.policytest import find_test_files, run_paths

    if args.min_coverage is not None and not 0 <= args.min_coverage <= 100:
        return _usage("test", "--min-coverage is a percentage between 0 and 100")
    files, missing = find_test_files(args.paths)
    if missing:
        return _usage("test", f"no such file or directory: {', '.join(missing)}")
    if not files:
        return _usage("test", "no test files (*.test.yaml) found in " + ", ".join(args.paths))
    run = run_paths(files, roots=[Path(p) for p in args.paths if Path(p).is_dir()])
    percent = run.coverage.percent
    below = args.min_coverage is not None and (percent is None or percent + 1e-9 < args.min_coverage)
    if args.format == "json":
        out = {"summary": {"passed": run.passed, "failed": run.failed, "files": len(files)},
               "results": [_result_json(r, t) for r, t in run.results],
               "errors": [dataclasses.asdict(d) for d in run.diagnostics],
               "coverage": _coverage_json(run.coverage), "min_coverage": args.min_coverage}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        sources = _SourceLines()
        sys.stderr.write(render_text(run.diagnostics))
        blocks = [_failure_text(r, t, sources) for r, t in run.results if not r.passed]
        if args.verbose:
            for result, _ in run.results:
                if result.passed:
                    print(f"ok   {result.case.file}:{result.case.line}: {result.case.name}")
        if blocks:
            print("\n\n".join(blocks) + "\n")
        errors = len(run.diagnostics)
        print(f"{run.passed} passed, {run.failed} failed"
              + (f", {errors} error{'s' * (errors != 1)} in test files or tenants" if errors else ""))
        print("\n".join(_coverage_text(run, sources)))
        if below and percent is None:
            print(f"coverage n/a does not meet --min-coverage {args.min_coverage:g}%")
        elif below:
            print(f"coverage {percent:.1f}% is below --min-coverage {args.min_coverage:g}%")
    return EXIT_FINDINGS if run.failed or run.diagnostics or below else EXIT_OK


# --- fmt --------------------------------------------------------------------------------

def _dsl_files(paths: list[str]) -> tuple[list[Path], list[str]]:
    found: dict[Path, None] = {}
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.update((p, None) for p in sorted(path.rglob("*.policy")) if p.is_file())
        elif path.is_file():
            if path.name.endswith((".yaml", ".yml")):
                problems.append(f"{raw}: fmt formats DSL files (*.policy); YAML is left as written")
            else:
                found[path] = None
        else:
            problems.append(f"{raw}: no such file or directory")
    return list(found), problems


def cmd_fmt(args: argparse.Namespace) -> int:
    """Rewrite DSL files in the canonical layout (``--check``: show the diff, change nothing)."""
    from policy_sso.authoring.fmt import format_source
    from policy_sso.tenant import display_path, read_source

    if args.paths == ["-"]:
        formatted, errors = format_source(sys.stdin.read(), "<stdin>")
        if formatted is None:
            sys.stderr.write(render_text(errors))
            return EXIT_FINDINGS
        sys.stdout.write(formatted)
        return EXIT_OK
    files, problems = _dsl_files(args.paths)
    if problems:
        return _usage("fmt", "; ".join(problems))
    errors: list[Diagnostic] = []
    changed = 0
    for path in files:
        name = display_path(path)
        text, read_errors = read_source(path)
        if text is None:
            errors += read_errors
            continue
        raw = path.read_bytes().decode("utf-8", "replace")
        formatted, syntax = format_source(text, name)
        if formatted is None:
            errors += syntax
            continue
        if formatted == raw:
            continue
        changed += 1
        if args.check:
            sys.stdout.writelines(difflib.unified_diff(
                text.splitlines(keepends=True), formatted.splitlines(keepends=True),
                f"{name} (original)", f"{name} (formatted)"))
            if text == formatted:  # only line ends or a byte order mark differ
                print(f"{name}: line ends or byte order mark would change")
        else:
            _write(path, formatted)
            print(name)
    sys.stderr.write(render_text(errors))
    if args.check and changed:
        print(f"{changed} file{'s' * (changed != 1)} would be reformatted", file=sys.stderr)
    return EXIT_FINDINGS if errors or (args.check and changed) else EXIT_OK


def _write(path: Path, text: str) -> None:
    """Replace a file's content atomically, keeping its mode."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- lint -------------------------------------------------------------------------------

def _lint_targets(paths: list[str]) -> tuple[dict[Path, list[Path]], list[Path], list[str]]:
    """Return the tenants to lint (each with extra policy files to lint in its context),
    lone policy files outside any tenant, and paths that do not exist."""
    from policy_sso.tenant import POLICY_SUFFIXES, files_to_validate, find_tenant_dir

    tenants: dict[Path, list[Path]] = {}
    lone: dict[Path, None] = {}
    missing: list[str] = []

    def policy_files(directory: Path) -> list[Path]:
        root = directory.resolve()  # a link out of the directory is not read (tenant.files_to_validate)
        return [p for p in sorted(directory.rglob("*")) if p.name.endswith(POLICY_SUFFIXES) and p.is_file()
                and not (p.is_symlink() and not p.resolve().is_relative_to(root))]

    for raw in paths:
        path = Path(raw)
        if not path.exists():
            missing.append(raw)
            continue
        home = find_tenant_dir(path)
        if home is not None:
            extra = tenants.setdefault(home.resolve(), [])
            given = policy_files(path) if path.is_dir() else [path]
            extra += [p for p in given if p.name.endswith(POLICY_SUFFIXES) and p not in extra]
        elif path.is_dir():
            below = sorted(p.parent.resolve() for p in path.rglob("tenant.yaml"))
            for directory in below:
                tenants.setdefault(directory, []).extend(policy_files(directory))
            if not below:  # the files validate takes below a directory (not test files, not other YAML)
                lone.update((p, None) for p in files_to_validate(path)[0])
        else:
            lone[path] = None
    return tenants, list(lone), missing


def cmd_lint(args: argparse.Namespace) -> int:
    """Run the lint rules over tenants and policy files; print every finding.

    The validation errors come first-hand from ``validate``'s check of the same tenants and files
    (same codes, same positions), so lint never passes what validate fails.
    """
    from policy_sso.authoring.lint import LintContext, lint_in_tenant, lint_policies, lint_tenant
    from policy_sso.tenant import check_paths_tenants, display_path, parse_policy_file

    tenants, lone, missing = _lint_targets(args.paths)
    if missing:
        return _usage("lint", f"no such file or directory: {', '.join(missing)}")
    if not tenants and not lone:  # as validate: a mistyped path in CI is not a pass
        return _usage("lint", f"nothing to lint in {' '.join(args.paths)}: no tenant.yaml and no policy file "
                              "below it")
    shown = [display_path(directory) for directory in tenants] + [str(path) for path in lone]
    validation, checked = check_paths_tenants(shown)
    findings: list[Diagnostic] = [d for d in validation if d.severity == "error"]
    blocked = 0
    for directory, files in tenants.items():
        tenant = checked.get(directory)
        if tenant is None:
            blocked += 1
            continue
        findings += lint_tenant(tenant)
        loaded = {p.resolve() for p in tenant.policy_files}
        for path in files:
            if path.resolve() not in loaded:  # e.g. YAML twins below the tenant directory
                policies, errors = parse_policy_file(path)
                findings += [] if errors else lint_in_tenant(tenant, policies)
    for path in lone:
        policies, errors = parse_policy_file(path)
        findings += [] if errors else lint_policies(LintContext(policies, base_dir=path.parent))
    findings = sort_diagnostics(findings)
    sys.stdout.write(RENDERERS[args.format](findings) if args.format != "text" else _lint_text(findings))
    errors_ = sum(d.severity == "error" for d in findings)
    warnings = len(findings) - errors_
    if args.format == "text":
        summary = f"{errors_} error{'s' * (errors_ != 1)}, {warnings} warning{'s' * (warnings != 1)}"
        if blocked:
            summary += (f"; {blocked} tenant{'s' * (blocked != 1)} did not validate "
                        "(lint needs a valid tenant)")
        print(("ok: " if not findings else "") + summary, file=sys.stderr)
    return EXIT_FINDINGS if errors_ or (args.strict and warnings) else EXIT_OK


def _lint_text(findings: list[Diagnostic]) -> str:
    return render_text(findings, severity_label=True)


# --- diff -------------------------------------------------------------------------------

def _recorded_sessions(path: str, at: int) -> list[tuple[str, Any]]:
    """Return ``(name, fixture)`` pairs from a YAML/JSON list; raise ValueError with the reason."""
    import yaml

    from policy_sso.sessions.fixture import session_from_fixture

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err.strerror}") from None
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path} is not valid YAML/JSON text: {err}") from None
    if isinstance(data, dict) and isinstance(data.get("sessions"), list):
        data = data["sessions"]
    elif isinstance(data, dict) and "subject" in data:
        data = [data]  # one session, as explain's --session takes it
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: expected a non-empty list of session fixtures")
    out = []
    for i, entry in enumerate(data):
        name, fixture = f"recorded #{i + 1}", entry
        if isinstance(entry, dict) and "session" in entry and "subject" not in entry:
            name, fixture = str(entry.get("name", name)), entry["session"]
        elif isinstance(entry, dict) and "name" in entry:
            name = str(entry["name"])
        try:
            session_from_fixture(fixture, at)
        except (ValueError, TypeError, AttributeError, OverflowError) as err:
            raise ValueError(f"{path}: session {i + 1}: {err}") from None
        out.append((name, fixture))
    return out


def cmd_diff(args: argparse.Namespace) -> int:
    """Compare the decisions of two tenants over a session x request matrix."""
    from policy_sso.authoring.diff import diff_tenants, render_table, unknown_session_clients
    from policy_sso.authoring.policytest import DEFAULT_AT
    from policy_sso.networks import client_ip
    from policy_sso.sessions.fixture import FixtureError, parse_time
    from policy_sso.tenant import check_tenant

    for raw in (args.old, args.new):
        if not (Path(raw) / "tenant.yaml").is_file():
            return _usage("diff", f"{raw} is not a tenant directory (no tenant.yaml)")
    ips = None
    if args.ips is not None:
        ips = [client_ip(text) for text in args.ips.split(",") if text.strip()]
        bad = [text.strip() for text, ip in zip(args.ips.split(","), ips, strict=False) if ip is None]
        if bad or not ips:
            return _usage("diff", f"--ips {bad[0] if bad else args.ips!r} is not an IP address "
                          "(a comma-separated list, e.g. 10.0.0.1,203.0.113.5)")
    try:
        at = parse_time(int(args.at) if args.at and args.at.isdigit() else args.at or DEFAULT_AT,
                        DEFAULT_AT, "--at")
        recorded = _recorded_sessions(args.sessions, at) if args.sessions else []
    except (FixtureError, ValueError) as err:
        return _usage("diff", str(err))
    loaded = []
    for raw in (args.old, args.new):
        tenant, diagnostics = check_tenant(raw)
        if tenant is None:
            sys.stderr.write(render_text([d for d in diagnostics if d.severity == "error"]))
            print(f"policy-sso diff: {raw} does not validate", file=sys.stderr)
            return EXIT_FINDINGS
        loaded.append(tenant)
    for i, (name, fixture) in enumerate(recorded, 1):
        for client, hint in unknown_session_clients(fixture, loaded[0], loaded[1]):
            return _usage("diff", f"{args.sessions}: session {i} ({name}) names client {client!r}, "
                          "which neither tenant registers" + (f" ({hint})" if hint else ""))
    result = diff_tenants(loaded[0], loaded[1], at, recorded, ips)
    if args.format == "json":
        sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(render_table(result))
    return EXIT_FINDINGS if result.changes else EXIT_OK


# --- wiring -----------------------------------------------------------------------------

Command = Callable[[argparse.Namespace], int]


def _closed_pipe_is_quiet(command: Command) -> Command:
    """Return ``command`` made to stop quietly when its reader goes away (``| head``)."""
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except BrokenPipeError:
            # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_FINDINGS
    return run


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``test``, ``fmt``, ``lint`` and ``diff`` commands to the CLI."""
    p = sub.add_parser("test", help="run policy test cases (*.test.yaml) with coverage")
    p.add_argument("paths", nargs="+", metavar="PATH", help="test files, or directories searched recursively")
    p.add_argument("--min-coverage", type=float, metavar="N",
                   help="fail when less than N percent of requirement checks and when blocks are covered")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("-v", "--verbose", action="store_true", help="list passing cases too")
    p.set_defaults(func=_closed_pipe_is_quiet(cmd_test))

    p = sub.add_parser("fmt", help="canonical formatting of DSL policy files (in place)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="*.policy files or directories; - for stdin")
    p.add_argument("--check", action="store_true", help="change nothing; show the diff, exit 1 if any")
    p.set_defaults(func=_closed_pipe_is_quiet(cmd_fmt))

    p = sub.add_parser("lint", help="static analysis of tenants and policies")
    p.add_argument("paths", nargs="+", metavar="PATH", help="tenant directories or policy files")
    p.add_argument("--format", choices=sorted(RENDERERS), default="text")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.set_defaults(func=_closed_pipe_is_quiet(cmd_lint))

    p = sub.add_parser("diff", help="which decisions change between two tenant directories")
    p.add_argument("old", metavar="OLD", help="tenant directory before the change")
    p.add_argument("new", metavar="NEW", help="tenant directory after the change")
    p.add_argument("--sessions", metavar="FILE", help="recorded session fixtures (a YAML/JSON list)")
    p.add_argument("--at", metavar="TIME", help="evaluation time (default 2026-01-01T12:00:00Z)")
    p.add_argument("--ips", metavar="A,B,…",
                   help="client addresses to ask from where a policy tests the network, besides an unknown "
                   "one (default: the first address of each network it names and the one just past it)")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=_closed_pipe_is_quiet(cmd_diff))
