"""What the access log costs a request: CPU per request with it off, in text and in JSON, in turns.

The app (demo tenant, memory store) is driven in this process through
Falcon's test client; the access lines go to a pipe that a thread drains,
as a log shipper would read serve's stderr. The three modes take turns in
rounds, so the load of a shared machine weighs on each alike (running
``bench_http.py`` once with the log on and once off compares two different
minutes of that load).

    python benchmarks/bench_access_log.py [--requests 5000] [--rounds 3] [--path /healthz]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import falcon.testing  # noqa: E402

import server.logs as logs  # noqa: E402
from policy_sso.oidc.keys import KeyRing  # noqa: E402
from policy_sso.sessions.store import open_store  # noqa: E402
from policy_sso.tenant import load_tenant  # noqa: E402
from server.app import create_app  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--path", default="/healthz")
    args = parser.parse_args()
    tenant = load_tenant(ROOT / "policies")
    app = create_app(tenant, open_store("memory://", tenant.settings.lifetime),
                     KeyRing.load_or_create(Path(tempfile.mkdtemp()), tenant.settings.tokens.algorithms))
    client = falcon.testing.TestClient(app)
    read, write = os.pipe()

    def drain() -> None:
        while os.read(read, 65536):
            pass

    threading.Thread(target=drain, daemon=True).start()
    pipe = os.fdopen(write, "w", buffering=1)

    def cpu_us() -> float:
        started = time.process_time()
        for _ in range(args.requests):
            client.simulate_get(args.path)
        return (time.process_time() - started) / args.requests * 1e6

    results: dict[str, list[float]] = {"off": [], "text": [], "json": []}
    for _ in range(args.rounds):
        for mode, values in results.items():
            if mode == "off":
                logs._writer = None
                logging.getLogger("policy_sso.access").setLevel(logging.WARNING)
            else:
                logs.configure_logging(mode, "info", pipe)
            values.append(cpu_us())
    off = statistics.median(results["off"])
    for mode, values in results.items():
        median = statistics.median(values)
        print(f"{mode:<5} {median:8.1f} us CPU/request ({(median - off) / off:+.1%} vs off), GET {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
