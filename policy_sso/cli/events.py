"""``policy-sso events``: the audit events query (``GET /admin/v1/events``) run against the store.

"Why could alice not get into payments yesterday?"::

    policy-sso events --subject alice --client payments-web --since -1d

prints each authorization decision with its outcome, reason codes and the
policy line behind each.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def _store_url(args: argparse.Namespace) -> tuple[str, Any]:
    """Return the store URL (``--store``, else the tenant's, as ``serve`` picks it) and the tenant."""
    from policy_sso.cli.serve import store_url
    from policy_sso.tenant import check_tenant

    tenant = None
    if not args.store or Path(args.config, "tenant.yaml").is_file():
        tenant, _ = check_tenant(args.config)
    if args.store:
        return args.store, tenant
    if tenant is None:
        raise ValueError(f"cannot load the tenant in {args.config}: run `policy-sso validate {args.config}`"
                         " or pass --store URL")
    state_dir = Path(args.state_dir or tenant.settings.state_dir)
    return store_url(None, args.state_dir, tenant.settings.store, state_dir), tenant


def render_text(events: list[dict[str, Any]]) -> str:
    """Return one line per event, each reason indented under it with its policy line."""
    lines = []
    for e in events:
        head = [e.get("timestamp", ""), e.get("type", ""), e.get("outcome") or "-"]
        head += [f"{name}={e[name]}" for name in ("client", "subject") if e.get(name)]
        details = e.get("details") or {}
        if "silent" in details:
            head.append("silent" if details["silent"] else "interactive")
        if details.get("policy"):
            head.append(f"policy={details['policy']}")
        # the rest of what a type adds, when it is one value (kind=authorize, factor=otp, suppressed=29)
        head += [f"{k}={v}" for k, v in details.items()
                 if k not in ("silent", "policy") and isinstance(v, str | int | float) and v != ""]
        if e.get("ip"):
            head.append(f"ip={e['ip']}")
        if e.get("request_id"):
            head.append(f"request={e['request_id']}")
        lines.append("  ".join(str(part) for part in head))
        reasons = e.get("reasons") or []
        width = max((len(r.get("code", "")) for r in reasons), default=0)
        for r in reasons:
            lines.append(f"    {r.get('code', ''):<{width}}  {r.get('source', '')}")
            if r.get("required") or r.get("observed"):
                lines.append(f"    {'':<{width}}  required {r.get('required', '')}; {r.get('observed', '')}")
        for d in details.get("diagnostics") or []:
            where = f"{d.get('file')}:{d.get('line')}:{d.get('col')}"
            lines.append(f"    {where}: {d.get('code')}: {d.get('message')}")
    return "".join(f"{line}\n" for line in lines)


def cmd_events(args: argparse.Namespace) -> int:
    """Print one page of audit events, newest first; the next page's cursor on stderr."""
    from policy_sso.audit.query import EventQuery, parse_query
    from policy_sso.audit.stores import open_event_store
    from policy_sso.errors import InvalidRequest, PolicySSOError

    params = {name: value for name in ("subject", "client", "type", "since", "until", "limit", "cursor")
              if (value := getattr(args, name)) is not None}
    try:
        query = parse_query({k: str(v) for k, v in params.items()}, int(args.now or time.time()))
        url, tenant = _store_url(args)
        if url.startswith("memory:"):
            raise ValueError("a memory:// store lives inside the server: query GET /admin/v1/events instead")
        events = open_event_store(url, read_only=True)  # SQLite: a missing file is a StoreError
    except (PolicySSOError, ValueError, OSError) as err:
        print(f"policy-sso events: {err}", file=sys.stderr)
        return EXIT_USAGE
    user = tenant.resolve_user(query.subject) if tenant is not None else None
    if user is not None:  # a username names its subject
        query = EventQuery(user.sub, query.client, query.type, query.since, query.until, query.limit,
                           query.cursor)
    try:
        page = events.query(query)
    except InvalidRequest as err:  # the query is wrong (a forged cursor), not the store
        print(f"policy-sso events: {err}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as err:  # sqlite3 and Redis errors alike: the store is unreadable, not a bug here
        print(f"policy-sso events: cannot read events from the store: {type(err).__name__}: {err}",
              file=sys.stderr)
        return EXIT_FINDINGS
    finally:
        events.close()
    if not page.events and query.client and tenant is not None and query.client not in tenant.clients:
        from policy_sso.diagnostics import did_you_mean

        hint = did_you_mean(query.client, tenant.clients)
        print(f"policy-sso events: no events; {query.client!r} is not a client of this tenant"
              + (f" ({hint})" if hint else ""), file=sys.stderr)
    if args.format == "json":
        print(json.dumps(page.to_json(), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(render_text(page.events))
        if page.next_cursor:
            print(f"more: --cursor {page.next_cursor}", file=sys.stderr)
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``events`` command to the CLI."""
    p = subparsers.add_parser("events", help="query the audit events (who signed in, what was decided, why)")
    p.add_argument("--config", default="policies", metavar="DIR", help="tenant directory (policies/)")
    p.add_argument("--state-dir", metavar="DIR", help="the state directory `serve` used")
    p.add_argument("--store", metavar="URL",
                   help="sqlite:///PATH, redis://HOST:PORT/DB, redis+cluster://HOST:PORT[,...] or "
                   "postgresql://USER@HOST/DB (default: the one serve uses)")
    p.add_argument("--subject", metavar="SUB", help="a subject or a username")
    p.add_argument("--client", metavar="ID", help="a client_id: the events of that app")
    p.add_argument("--type", metavar="TYPE", help="an event type, or a prefix such as logout.*")
    p.add_argument("--since", metavar="TIME", help="epoch seconds, ISO 8601 or an offset such as -1d")
    p.add_argument("--until", metavar="TIME", help="the end of the period, as --since (default: now)")
    p.add_argument("--limit", type=int, metavar="N", help="events per page, 1 to 500 (default 50)")
    p.add_argument("--cursor", metavar="C", help="the cursor a previous page printed")
    p.add_argument("--now", type=int, metavar="EPOCH", help=argparse.SUPPRESS)  # tests: relative times
    p.add_argument("--format", choices=("text", "json"), default="text")
    # `--since -1d` reads as an offset, not as an option: argparse takes a dash-and-digits word for a
    # value only when it looks like a negative number, so the durations are taught to look like one
    p._negative_number_matcher = re.compile(r"^-\d+[smhd]?$|^-\d*\.\d+$")
    p.set_defaults(func=cmd_events)
