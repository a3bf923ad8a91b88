"""What the access log costs: two servers at once, one with it on and one off, measured in turns.

Running ``bench_http.py`` once with the access log and once without
compares two different minutes of a shared machine's load (runs here moved
by 20% between minutes). This starts two ``policy-sso serve`` processes from
the same tenant (one with ``--log-level warning``: no access log), signs
alice in on each, and sends them slices of ``GET /healthz`` and of silent
authorizes in turns, so the load weighs on both alike. It prints each
server's CPU per request and the difference. CPU is read from
/proc/<pid>/task/*/schedstat (nanoseconds each thread ran), not from the
utime/stime ticks bench_http reads: those are 10 ms samples, and a slice
of a few hundred requests is a few dozen ticks, +-15% by chance alone.

    python benchmarks/bench_access_log.py [--rounds 6] [--requests 600] [--log-format text|json]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench_http import authorize_path, free_port, raw_request, run_slice, sign_in

ROOT = Path(__file__).resolve().parents[1]


def cpu_ns(pid: int) -> int:
    """Return the nanoseconds every live thread of ``pid`` has run (schedstat's first field)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):  # a thread that ended meanwhile
            continue
    return total


def start(log_args: list[str]) -> tuple[int, subprocess.Popen, bytes]:
    """Start a server on the demo tenant (silent-auth limit raised); return its port, process, request."""
    state = Path(tempfile.mkdtemp(prefix="bench-access-"))
    config = state / "tenant"
    shutil.copytree(ROOT / "policies", config, ignore=shutil.ignore_patterns("tests", "yaml"))
    tenant_yaml = config / "tenant.yaml"
    tenant_yaml.write_text(tenant_yaml.read_text().replace(
        "silent_auth: {requests: 60, window: 1m}", "silent_auth: {requests: 1000000, window: 1m}"))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "policy_sso.cli", "serve", "--port", str(port), "--state-dir", str(state),
         "--config", str(config), "--workers", "1", *log_args], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = server.stdout.readline()
    if "serving" not in line:
        raise SystemExit(line + server.stdout.read())
    threading.Thread(target=server.stdout.read, daemon=True).start()  # a log shipper reading stderr
    cookie = sign_in(port)
    return port, server, raw_request("GET", authorize_path("none"), {"Cookie": cookie})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=600, help="requests per slice")
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    args = parser.parse_args()
    servers = {"on": start(["--log-format", args.log_format]), "off": start(["--log-level", "warning"])}
    floor = raw_request("GET", "/healthz")
    # per mode and phase: [requests, CPU ns]
    totals: dict[str, dict[str, list[int]]] = {mode: {"floor": [0, 0], "silent": [0, 0]} for mode in servers}
    try:
        for port, server, silent in servers.values():  # warm-up
            run_slice(port, server.pid, args.threads, 300, 2.0, lambda i, s=silent: (s, 302))
        for round_ in range(args.rounds):
            # each round the other server goes first: the first of a pair must not always be the same one
            for mode in ("on", "off") if round_ % 2 == 0 else ("off", "on"):
                port, server, silent = servers[mode]
                phases = (("floor", lambda i: (floor, 200)), ("silent", lambda i, s=silent: (s, 302)))
                for phase, make in phases:
                    before = cpu_ns(server.pid)
                    done = run_slice(port, server.pid, args.threads, args.requests, 5.0, make)
                    totals[mode][phase][0] += len(done["latencies"])
                    totals[mode][phase][1] += cpu_ns(server.pid) - before
    finally:
        for _, server, _ in servers.values():
            server.terminate()
            server.wait(timeout=10)
    print(f"access log ({args.log_format}) on vs off, {args.rounds} rounds of {args.requests} requests, "
          f"{args.threads} client threads, both servers at once")
    for phase, label in (("floor", "GET /healthz"), ("silent", "silent authorize")):
        on, off = (totals[mode][phase][1] / totals[mode][phase][0] / 1e6 for mode in ("on", "off"))
        print(f"{label:<17} server CPU on {on:.3f} ms/req, off {off:.3f} ms/req ({(on - off) / off:+.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
