"""Microseconds per audit event: what ``AuditLog.decision`` costs the request thread and the writer thread.

Issue 15 asks that a silent authorize with events on (file sink) costs the
server within 15% of the CPU it costs with them off; a silent authorize is
0.3-0.5 ms of server CPU, so an event must cost well under 40 us in all.
This times, in one process, what the server does per decision event:

- request thread: ``AuditLog.decision`` for a silent authorize (allowed, no
  reasons) and for a refusal with three reasons, with a falcon request
  bound to the thread as the middleware binds it; CPU from ``time.thread_time``;
- writer thread: the CPU the background thread spends to encode and write
  those events (its own CPU clock, ``pthread_getcpuclockid``), per event.

for each sink: none (events off), file, stdout (to /dev/null) and store (SQLite).

    python benchmarks/bench_audit.py [--events 20000] [--rounds 5] [--sinks none,file,stdout,store]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import falcon.testing

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policy_sso.audit import AuditLog, bind_request  # noqa: E402 - after the path is set
from policy_sso.audit.sinks import FileSink, Sink, StdoutSink, StoreSink  # noqa: E402
from policy_sso.audit.stores import SQLiteEventStore  # noqa: E402
from policy_sso.decision import Decision, Reason  # noqa: E402
from policy_sso.request import AuthRequest  # noqa: E402
from policy_sso.sessions.model import AuthEvent, Session  # noqa: E402
from server.client_address import client_address  # noqa: E402

NOW = 1_800_000_000
AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def bound_request() -> falcon.Request:
    """Return a request for ``GET /authorize`` shaped as the middleware leaves it, bound to this thread."""
    req = falcon.testing.create_req(path="/authorize", query_string="client_id=portal&prompt=none",
                                    headers={"User-Agent": AGENT}, remote_addr="127.0.0.1")
    req.uri_template = "/authorize"
    req.context.request_id = "5f0c2a9e-1a2b"
    req.context.now = NOW
    bind_request(req)
    return req


def decisions() -> dict[str, tuple[Decision, AuthRequest]]:
    """Return the two decisions timed: a silent allow, and a silent refusal with three reasons."""
    silent = AuthRequest.from_params("portal", {"scope": "openid profile", "prompt": "none"})
    refusal = Decision("interaction_required", (
        Reason("mfa_required", "two distinct factors (mfa)", "session amr pwd (factors: knowledge)",
               "policies/payments.policy:10"),
        Reason("acr_insufficient", "acr at least urn:policy-sso:loa:2", "session acr urn:policy-sso:loa:1",
               "policies/payments.policy:11"),
        Reason("consent_missing", "granted scopes openid, profile",
               "granted nothing; missing openid, profile", "policies/payments.policy:12")), None, "payments")
    allow = Decision("allow", (), None, "portal")
    return {"allow": (allow, silent), "refusal (3 reasons)": (refusal, silent)}


def make_log(sink: str, workdir: Path) -> AuditLog:
    """Return an AuditLog writing to ``sink`` (``none``: events off), with a queue no run fills."""
    sinks: list[Sink] = []
    events = None
    if sink == "file":
        sinks.append(FileSink(workdir / "audit.jsonl", max_bytes=1 << 30))
    elif sink == "stdout":
        sinks.append(StdoutSink(open("/dev/null", "w", encoding="utf-8")))  # noqa: SIM115 - closed by the sink
    elif sink == "store":
        events = SQLiteEventStore(workdir / "store.db")
        sinks.append(StoreSink(events))
    log = AuditLog(sinks, events=events, queue_size=1_000_000, session_key=secrets.token_bytes(32),
                   retention=0)
    log.address_of = client_address
    return log


def writer_cpu(log: AuditLog) -> float:
    """Return the CPU seconds the log's writer thread has used (0 for a disabled log)."""
    thread = getattr(log, "_thread", None)
    if thread is None:
        return 0.0
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def time_events(log: AuditLog, decision: Decision, request: AuthRequest, sessions: list[Session],
                count: int) -> tuple[float, float]:
    """Return (request-thread us, writer-thread us) per event for ``count`` decision events."""
    assert log.flush(60)
    writer0 = writer_cpu(log)
    t0 = time.thread_time()
    for i in range(count):
        log.decision("authorization.decision", "portal", sessions[i % len(sessions)], decision, NOW,
                     request=request)
    t1 = time.thread_time()
    assert log.flush(60)
    writer1 = writer_cpu(log)
    return (t1 - t0) / count * 1e6, (writer1 - writer0) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20000, help="events per round (at most 200000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sinks", default="none,file,stdout,store")
    args = parser.parse_args()
    count = min(args.events, 200_000)
    bound_request()
    # a few sessions, as a busy server's silent authorizes come from many: the digest cache sees each
    sessions = [Session(secrets.token_urlsafe(32), "u-alice", NOW - 60, NOW - 60,
                        (AuthEvent("pwd", NOW - 60),), {}, {}) for _ in range(64)]
    print(f"bench_audit: {count} events a round, median of {args.rounds} rounds, us of CPU per event")
    print(f"{'sink':<8} {'decision':<20} {'request thread':>15} {'writer thread':>14} {'total':>8}")
    for sink in args.sinks.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
            log = make_log(sink, Path(tmp))
            try:
                for name, (decision, request) in decisions().items():
                    time_events(log, decision, request, sessions, min(count, 2000))  # warm-up
                    runs = [time_events(log, decision, request, sessions, count) for _ in range(args.rounds)]
                    req_us = statistics.median(r[0] for r in runs)
                    writer_us = statistics.median(r[1] for r in runs)
                    total = req_us + writer_us
                    print(f"{sink:<8} {name:<20} {req_us:>15.2f} {writer_us:>14.2f} {total:>8.2f}")
                stats = log.stats()
                if stats["dropped"] or any(stats["failed"].values()):
                    print(f"  {sink}: {stats}")
            finally:
                log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
