"""What audit events cost a silent authorize: two servers at once, events off and on, measured in turns.

Issue 15: with events on (the file sink) a silent authorize must cost the
server within 15% of the CPU it costs with them off. ``bench_http.py
--audit none`` and ``--audit file`` run one after the other measure two
different minutes of a shared machine (+-15% between runs here), so this
starts two ``policy-sso serve`` processes from the same demo tenant, one
with ``audit: {sinks: []}`` and one with the sinks given, signs alice in on
each, and sends them slices of silent authorizes (and of ``GET /healthz``)
in turns, the first of each pair alternating. CPU is each server's threads'
run time from /proc/<pid>/task/*/schedstat (nanoseconds; the audit writer
thread included), as ``bench_access_log.py`` reads it. The events the
server with events on wrote are read back from its /metrics, so a run that
wrote none (or dropped some) says so. Last, each server thread's CPU per
silent authorize: the audit writer's own share stands apart from waitress's
I/O thread and its workers.

    python benchmarks/bench_audit_http.py [--sinks file] [--rounds 6] [--requests 600] [--threads 4]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_access_log import cpu_ns
from bench_http import Conn, authorize_path, free_port, raw_request, run_slice, sign_in

ROOT = Path(__file__).resolve().parents[1]


def start(sinks: list[str]) -> tuple[int, subprocess.Popen, bytes]:
    """Start a server on the demo tenant with these audit sinks; return its port, process, silent request."""
    state = Path(tempfile.mkdtemp(prefix="bench-audit-http-"))
    config = state / "tenant"
    shutil.copytree(ROOT / "policies", config, ignore=shutil.ignore_patterns("tests", "yaml"))
    tenant_yaml = config / "tenant.yaml"
    # the per-session silent-auth limit raised for a load test (it still counts, it never refuses)
    text = tenant_yaml.read_text().replace("silent_auth: {requests: 60, window: 1m}",
                                           "silent_auth: {requests: 1000000, window: 1m}")
    tenant_yaml.write_text(text + f"\naudit: {{sinks: [{', '.join(sinks)}]}}\n")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "policy_sso.cli", "serve", "--port", str(port), "--state-dir", str(state),
         "--config", str(config), "--workers", "1"], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = server.stdout.readline()
    if "serving" not in line:
        raise SystemExit(line + server.stdout.read())
    threading.Thread(target=server.stdout.read, daemon=True).start()  # keep its pipe drained
    cookie = sign_in(port)
    return port, server, raw_request("GET", authorize_path("none"), {"Cookie": cookie})


def thread_ns(pid: int) -> dict[int, int]:
    """Return the nanoseconds each live thread of ``pid`` has run, by thread id."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            times[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):  # a thread that ended meanwhile
            continue
    return times


def audit_counts(port: int) -> dict[str, float]:
    """Return the server's audit counters from its /metrics: written per sink, and dropped."""
    text = Conn(port).request("GET", "/metrics")[2]
    counts = {f"written {sink}": float(n) for sink, n in re.findall(
        r'^policy_sso_audit_events_written(?:_total)?\{sink="([^"]+)"\} (\S+)$', text, re.M)}
    dropped = re.search(r"^policy_sso_audit_events_dropped(?:_total)? (\S+)$", text, re.M)
    counts["dropped"] = float(dropped.group(1)) if dropped else 0.0
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sinks", default="file", help="the audit sinks of the server with events on")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=600, help="requests per slice (at most)")
    parser.add_argument("--seconds", type=float, default=5.0, help="time per slice (at most)")
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    args = parser.parse_args()
    compare(args.sinks, args.rounds, args.requests, args.seconds, args.threads)
    return 0


def compare(sinks: str, rounds_count: int = 6, requests: int = 600, seconds: float = 5.0,
            threads: int = 4) -> dict[str, float]:
    """Measure silent authorize with events off and on (``sinks``); print and return the figures.

    Returns the median of rounds (``on_ms``, ``off_ms``), the CPU over every
    round (``on_us``, ``off_us``) and the events written and dropped.
    """
    servers = {"off": start([]), "on": start(sinks.split(","))}
    floor = raw_request("GET", "/healthz")
    # per mode and phase: the ms of server CPU per request of each round
    rounds: dict[str, dict[str, list[float]]] = {mode: {"floor": [], "silent": []} for mode in servers}
    # per mode: each thread's ns during the silent slices, and the requests they served
    by_thread: dict[str, dict[int, int]] = {mode: {} for mode in servers}
    silent_requests = dict.fromkeys(servers, 0)
    try:
        for port, server, silent in servers.values():  # warm-up
            run_slice(port, server.pid, threads, 300, 2.0, lambda i, s=silent: (s, 302))
        for round_ in range(rounds_count):
            # each round the other server goes first: the first of a pair must not always be the same one
            for mode in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                port, server, silent = servers[mode]
                phases = (("floor", lambda i: (floor, 200)), ("silent", lambda i, s=silent: (s, 302)))
                for phase, make in phases:
                    before, threads_before = cpu_ns(server.pid), thread_ns(server.pid)
                    done = run_slice(port, server.pid, threads, requests, seconds, make)
                    time.sleep(0.1)  # the writer lingers 50 ms: the last batch is this slice's to pay for
                    if done["errors"]:
                        raise SystemExit(f"{mode} {phase}: {done['errors'][0]}")
                    rounds[mode][phase].append((cpu_ns(server.pid) - before) / len(done["latencies"]) / 1e6)
                    if phase == "silent":
                        silent_requests[mode] += len(done["latencies"])
                        spent = by_thread[mode]
                        for tid, ns in thread_ns(server.pid).items():
                            spent[tid] = spent.get(tid, 0) + ns - threads_before.get(tid, 0)
        time.sleep(0.5)  # the writer lingers 50 ms for a batch: let it write the last one before counting
        counts = audit_counts(servers["on"][0])
    finally:
        for _, server, _ in servers.values():
            server.terminate()
            server.wait(timeout=10)
    print(f"audit events on ({sinks}) vs off, {rounds_count} rounds of up to {requests} requests, "
          f"{threads} client threads, both servers at once; events on: "
          + ", ".join(f"{k} {v:.0f}" for k, v in counts.items()))
    for phase, label in (("floor", "GET /healthz"), ("silent", "silent authorize")):
        on, off = rounds["on"][phase], rounds["off"][phase]
        ratios = [a / b - 1 for a, b in zip(on, off, strict=True)]
        on_ms, off_ms = statistics.median(on), statistics.median(off)
        print(f"{label:<17} server CPU ms/req, median of rounds: on {on_ms:.3f}, off {off_ms:.3f} "
              f"({on_ms / off_ms - 1:+.1%}); per round on/off: " + " ".join(f"{r:+.0%}" for r in ratios))
    totals = {mode: sum(by_thread[mode].values()) / silent_requests[mode] / 1000 for mode in servers}
    on_us, off_us = totals["on"], totals["off"]
    print(f"silent authorize  server CPU us/req over every round: on {on_us:.1f}, off {off_us:.1f} "
          f"({on_us / off_us - 1:+.1%})")
    for mode in servers:  # where the CPU went: waitress's I/O thread, its workers, the audit writer
        shares = sorted((ns / silent_requests[mode] / 1000 for ns in by_thread[mode].values()), reverse=True)
        print(f"  events {mode}: us/request by server thread: "
              + " ".join(f"{us:.1f}" for us in shares if us >= 0.05))
    silent_on, silent_off = rounds["on"]["silent"], rounds["off"]["silent"]
    return {"on_ms": statistics.median(silent_on), "off_ms": statistics.median(silent_off), "on_us": on_us,
            "off_us": off_us, **{k.replace(" ", "_"): v for k, v in counts.items()}}


if __name__ == "__main__":
    sys.exit(main())
