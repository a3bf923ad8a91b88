"""HTTP benchmark: silent authorize, code exchange and a bare route, on one live server.

Starts ``policy-sso serve`` (the demo tenant, SQLite in a temporary state
directory) on a free loopback port, signs alice in through the HTML forms,
then measures three phases with a few keep-alive client threads:

- floor: ``GET /healthz``, a bare Falcon route on the same waitress settings;
- silent authorize: ``prompt=none`` with the live session cookie, 302 with a code;
- code exchange: ``POST /token`` (authorization_code, client_secret_basic);
- code exchange with DPoP: the same with an ES256 DPoP proof (RFC 9449), one
  more verification and one more single-use record (the proof's jti, spent
  with the code in the same store call) per request;
  its server CPU is compared with the 2 RS256 signatures and the 1 ES256
  verification it makes (each timed on its own and printed).

The phases take turns in rounds (so a machine that speeds up or slows down
meanwhile weighs on each alike), each bounded in count and time. It prints
requests/s, p50/p99 latency and the server's CPU time per request, read from
the server process's own counters (/proc/<pid>/stat utime+stime), and the
CPU the exchanges' RS256 signatures and ES256 proof verifications took in
the server (its /metrics), next to each timed in this idle process.

    python benchmarks/bench_http.py [--requests 3000] [--rounds 5] [--seconds 10] [--threads 4]
                                    [--workers 1,2]

``--workers 1,2`` runs everything against ``serve --workers 1`` and then
``--workers 2``, and prints the scaling factor; the server CPU per request is
then the supervisor's and every worker's, summed.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the in-process figures (signature, proof check) come from this tree too
REDIRECT = "http://127.0.0.1:9001/callback"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_times(pid: int) -> tuple[float, float]:
    """Return (user, system) CPU seconds of the process and its children (``serve --workers``: the
    supervisor and every worker), from /proc/<pid>/stat (fields 14 and 15)."""
    user = system = 0.0
    for each in (pid, *children(pid)):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a worker that has just exited
            continue
        user, system = user + int(fields[11]) / TICKS, system + int(fields[12]) / TICKS
    return user, system


def children(pid: int) -> list[int]:
    """Return the process's children (the workers under a ``serve --workers`` supervisor)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def cpu_seconds(pid: int) -> float:
    """Return the process's user+system CPU seconds."""
    return sum(cpu_times(pid))


class Conn:
    """A keep-alive HTTP/1.1 connection to the server (lighter than requests)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def request(self, method: str, path: str, body: str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        self.conn.request(method, path, body=body, headers=headers or {})
        resp = self.conn.getresponse()
        data = resp.read().decode()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


class RawConn:
    """A keep-alive connection that sends prepared request bytes and reads just the status and body.

    The load generator shares the machine with the server: the less CPU it
    spends per request (http.client parses every header in Python), the
    less it disturbs what is measured.
    """

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buffer = b""

    def request(self, raw: bytes) -> int:
        """Send one request; return the response's status once its whole body has arrived."""
        self.sock.sendall(raw)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self.buffer += self._recv()
        head, rest = self.buffer[:end], self.buffer[end + 4:]
        found = CONTENT_LENGTH.search(head)
        length = int(found.group(1)) if found else 0
        while len(rest) < length:
            rest += self._recv()
        self.buffer = rest[length:]
        return int(head[9:12])

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        return data


CONTENT_LENGTH = re.compile(rb"(?im)^content-length:[ \t]*(\d+)")


def raw_request(method: str, path: str, headers: dict[str, str] | None = None, body: str = "") -> bytes:
    """Return an HTTP/1.1 request as bytes."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1",
             *(f"{name}: {value}" for name, value in (headers or {}).items())]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body.encode())}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()


# --- setup: sign alice in through the HTML forms -------------------------------------

def hidden(html: str) -> dict[str, str]:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', html))


def form_action(html: str) -> str:
    return re.search(r'<form method="post" action="([^"]+)"', html).group(1).replace("&amp;", "&")


def authorize_path(prompt: str | None = None) -> str:
    params = {"client_id": "portal", "redirect_uri": REDIRECT, "response_type": "code",
              "scope": "openid profile", "state": "s", "nonce": "n"}
    if prompt:
        params["prompt"] = prompt
    return "/authorize?" + urllib.parse.urlencode(params)


def sign_in(port: int) -> str:
    """Return the session cookie header after alice signs in at the portal."""
    c = Conn(port)
    cookies: dict[str, str] = {}

    # http.client folds repeated Set-Cookie headers; read them from the raw response instead
    def request(method: str, path: str, form: dict[str, str] | None = None) -> tuple[int, str, str]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
        body = urllib.parse.urlencode(form) if form is not None else None
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        c.conn.request(method, path, body=body, headers=headers)
        resp = c.conn.getresponse()
        text = resp.read().decode()
        for name, value in resp.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                val = rest.split(";", 1)[0]
                if "Max-Age=0" in value or not val:
                    cookies.pop(key, None)
                else:
                    cookies[key] = val
        return resp.status, resp.getheader("Location", ""), text

    status, location, _ = request("GET", authorize_path())
    _, _, page = request("GET", location)
    status, location, _ = request("POST", form_action(page),
                                  {**hidden(page), "username": "alice", "password": "wonderland"})
    _, _, page = request("GET", location)
    status, location, _ = request("POST", form_action(page), {**hidden(page), "decision": "allow"})
    assert location.startswith(REDIRECT), (status, location)
    return f"psso_session={cookies['psso_session']}"


# --- measurement ---------------------------------------------------------------------

def run_slice(port: int, pid: int, threads: int, count: int, seconds: float,
              make: Callable[[int], tuple[bytes, int]]) -> dict:
    """Send up to ``count`` requests (or for ``seconds``) from ``threads`` connections; return raw figures."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(count))
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        conn = RawConn(port)
        local: list[float] = []
        while time.perf_counter() < deadline:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            raw, expected = make(i)
            t0 = time.perf_counter()
            status = conn.request(raw)
            local.append(time.perf_counter() - t0)
            if status != expected:
                errors.append(f"{status} on {raw[:40]!r}")
        with lock:
            latencies.extend(local)

    (user0, sys0), t0 = cpu_times(pid), time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    user1, sys1 = cpu_times(pid)
    return {"latencies": latencies, "wall": time.perf_counter() - t0, "user": user1 - user0,
            "sys": sys1 - sys0, "errors": errors}


def summarize(slices: list[dict]) -> dict:
    """Return one phase's figures from its slices: totals over every round."""
    latencies = sorted(x for s in slices for x in s["latencies"])
    errors = [e for s in slices for e in s["errors"]]
    n = len(latencies)
    if n == 0:
        raise SystemExit(f"no request completed: {errors[:1]}")
    wall = sum(s["wall"] for s in slices)
    user, system = sum(s["user"] for s in slices), sum(s["sys"] for s in slices)
    return {"n": n, "rps": n / wall, "p50": statistics.median(latencies) * 1000,
            "p99": latencies[min(n - 1, int(n * 0.99))] * 1000, "cpu_ms": (user + system) / n * 1000,
            "sys_share": system / (user + system) if user + system else 0.0,
            "errors": len(errors), "first_error": errors[0] if errors else ""}


def wait_until_idle(pid: int, timeout: float = 3.0) -> None:
    """Return once the server has spent no CPU for 0.1 s (or after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = cpu_seconds(pid)
        if now - last < 1.5 / TICKS:  # the counters move in clock ticks: at most one tick of noise
            return
        last = now


def signing(port: int) -> dict[str, float]:
    """Return the server's RS256 signatures and ES256 proof verifications so far, with their CPU seconds.

    From its /metrics: each is timed where it runs (thread CPU time), under the load it runs in.
    """
    text = Conn(port).request("GET", "/metrics")[2]
    return {name: float(value) for name, value in re.findall(
        r'^policy_sso_(signatures_total|signing_cpu_seconds_total|dpop_verifications_total'
        r'|dpop_verification_cpu_seconds_total)\{alg="(?:RS256|ES256)"\} (\S+)$', text, re.M)}


def signature_ms(state_dir: Path, rounds: int = 200) -> float:
    """Return the time of one RS256 signature with the server's own key (in this process).

    The signature alone, as the server's /metrics counts it (the ring's own meter).
    """
    from policy_sso.oidc.keys import KeyRing

    ring = KeyRing.load_or_create(state_dir)
    claims = {"iss": "http://127.0.0.1:8080", "sub": "u-alice", "aud": "portal", "iat": 1, "exp": 2}
    ring.sign(claims, "RS256")
    batches = []
    for _ in range(5):  # the median of five batches: CPU time on a shared machine is noisy
        count, seconds = ring.signing_stats()["RS256"]
        for _ in range(rounds):
            ring.sign(claims, "RS256")
        after_count, after_seconds = ring.signing_stats()["RS256"]
        batches.append((after_seconds - seconds) / (after_count - count) * 1000)
    return statistics.median(batches)


def dpop_proofs(htu: str, count: int) -> list[str]:
    """Return ``count`` ES256 DPoP proofs for ``POST htu`` by one key (made here, not measured)."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    header = {"typ": "dpop+jwt", "jwk": jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)}
    now = int(time.time())
    return [jwt.encode({"htm": "POST", "htu": htu, "iat": now, "jti": os.urandom(12).hex()},
                       key, algorithm="ES256", headers=header) for _ in range(count)]


def es256_verify_ms(rounds: int = 200) -> float:
    """Return the time of one ES256 signature verification (cryptography, in this process).

    The one verification a DPoP proof adds to a code exchange: the cost the
    exchange is compared with, beside its two RS256 signatures.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    public, data = key.public_key(), b"header.payload" * 20
    signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
    batches = []
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(rounds):
            public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        batches.append((time.process_time() - t0) / rounds * 1000)
    return statistics.median(batches)


def verification_ms(rounds: int = 200) -> float:
    """Return the time of one whole DPoP proof check, ES256 verification included (in this process)."""
    from policy_sso.config import DpopSettings
    from policy_sso.oidc import dpop

    url = "http://127.0.0.1:8080/token"
    proofs = dpop_proofs(url, rounds * 5)
    batches = []
    for batch in range(5):
        t0 = time.process_time()
        for proof in proofs[batch * rounds:(batch + 1) * rounds]:
            dpop.verify_proof(proof, method="POST", url=url, now=int(time.time()), settings=DpopSettings(),
                              use_jti=lambda key, expires: True)
        batches.append((time.process_time() - t0) / rounds * 1000)
    return statistics.median(batches)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per phase (at most)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds the phases take turns in")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per phase (at most)")
    parser.add_argument("--threads", type=int, default=4, help="client threads")
    parser.add_argument("--server-threads", type=int, help="waitress threads (default: serve's own)")
    parser.add_argument("--workers", default="1",
                        help="serve --workers counts to measure in turn, e.g. 1,2 (default 1)")
    parser.add_argument("--audit", metavar="SINKS",
                        help="audit sinks for the run, comma-separated (none, store, file, stdout); "
                             "default: the demo tenant's own")
    parser.add_argument("--audit-phase", metavar="SINKS", default="file",
                        help="after the phases: silent authorize on two servers at once, audit events off "
                             "and on with these sinks, in turns (issue 15); none skips it (default: file)")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    measured = {}
    for workers in counts:
        measured[workers] = measure(args, workers)
        if measured[workers] is None:
            return 1
    if len(counts) > 1:
        base = measured[counts[0]]
        for workers in counts[1:]:
            now = measured[workers]
            print(f"--workers {workers} vs {counts[0]}: silent authorize "
                  f"{now['silent authorize']['rps'] / base['silent authorize']['rps']:.2f}x req/s, "
                  f"code exchange {now['code exchange']['rps'] / base['code exchange']['rps']:.2f}x req/s "
                  f"({args.threads} client connections, load average {os.getloadavg()[0]:.2f})")
    if args.audit_phase != "none":
        import bench_audit_http  # imports this module: loaded only once main() runs

        figures = bench_audit_http.compare(args.audit_phase, threads=args.threads)
        change = figures["on_ms"] / figures["off_ms"] - 1
        print(f"silent authorize with audit events on ({args.audit_phase}): {change:+.1%} server CPU "
              f"against events off (target <= +15%)")
    return 0


def measure(args: argparse.Namespace, workers: int) -> dict | None:
    """Run every phase against ``serve --workers workers``; print and return the figures."""
    per_round = max(1, args.requests // args.rounds)
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="bench-http-"))
    # the demo tenant, with the per-session silent-auth limit raised for a load test: the limiter
    # still counts every request (leasing permits from the store in blocks), it just never refuses
    config = state / "tenant"
    shutil.copytree(ROOT / "policies", config, ignore=shutil.ignore_patterns("tests", "yaml"))
    tenant_yaml = config / "tenant.yaml"
    tenant_yaml.write_text(tenant_yaml.read_text().replace(
        "silent_auth: {requests: 60, window: 1m}", "silent_auth: {requests: 1000000, window: 1m}"))
    if args.audit is not None:
        sinks = [] if args.audit == "none" else args.audit.split(",")
        with tenant_yaml.open("a", encoding="utf-8") as out:
            out.write(f"\naudit: {{sinks: [{', '.join(sinks)}]}}\n")
    threads = ["--threads", str(args.server_threads)] if args.server_threads else []
    server = subprocess.Popen(
        [sys.executable, "-m", "policy_sso.cli", "serve", "--port", str(port), "--state-dir", str(state),
         "--config", str(config), "--workers", str(workers), *threads], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = server.stdout.readline()
        if "serving" not in line:
            print(line + server.stdout.read(), file=sys.stderr)
            return None
        # keep reading the server's output (waitress logs queue depth): a full pipe would block it
        threading.Thread(target=server.stdout.read, daemon=True).start()
        wait_for_workers(port, workers)
        cookie = sign_in(port)
        secret = (ROOT / "policies/secrets/portal.secret").read_text().strip()
        basic = "Basic " + base64.b64encode(f"portal:{secret}".encode()).decode()
        silent = authorize_path("none")
        codes: list[str] = []

        floor_request = raw_request("GET", "/healthz")
        silent_request = raw_request("GET", silent, {"Cookie": cookie})

        def floor(i: int) -> tuple[bytes, int]:
            return floor_request, 200

        def authorize(i: int) -> tuple[bytes, int]:
            return silent_request, 302

        def exchange(i: int) -> tuple[bytes, int]:
            body = urllib.parse.urlencode({"grant_type": "authorization_code", "code": codes[i],
                                           "redirect_uri": REDIRECT})
            return raw_request("POST", "/token", {"Authorization": basic,
                                                  "Content-Type": "application/x-www-form-urlencoded"},
                               body), 200

        token_url = json.loads(Conn(port).request("GET", "/.well-known/openid-configuration")[2])[
            "token_endpoint"]  # the issuer's URL, which a proof's htu names (not this port)
        proofs: list[str] = []

        def exchange_dpop(i: int) -> tuple[bytes, int]:
            body = urllib.parse.urlencode({"grant_type": "authorization_code", "code": codes[i],
                                           "redirect_uri": REDIRECT})
            return raw_request("POST", "/token", {"Authorization": basic, "DPoP": proofs[i],
                                                  "Content-Type": "application/x-www-form-urlencoded"},
                               body), 200

        def mint_codes() -> None:  # codes for an exchange slice, minted just before it (not measured)
            conn = Conn(port)
            codes.clear()
            proofs[:] = dpop_proofs(token_url, per_round)
            for _ in range(per_round):
                _, headers, _ = conn.request("GET", silent, None, {"Cookie": cookie})
                codes.append(urllib.parse.parse_qs(urllib.parse.urlsplit(headers["location"]).query)["code"][0])

        phases = {"floor GET /healthz": floor, "silent authorize": authorize, "code exchange": exchange,
                  "exchange with DPoP": exchange_dpop}
        exchanges = (exchange, exchange_dpop)
        for make in (floor, authorize):  # warm-up
            run_slice(port, server.pid, args.threads, min(200, per_round), 2.0, make)
        # the phases take turns, so a machine that slows down or speeds up meanwhile weighs on each alike
        slices: dict[str, list[dict]] = {name: [] for name in phases}
        counted: dict[str, float] = {}  # what the exchange phases' signatures and verifications took
        for _ in range(args.rounds):
            for name, make in phases.items():
                if make in exchanges:
                    mint_codes()
                    before = signing(port)
                # what the last requests left to the server's background threads (audit events, access
                # log lines: 600 authorizations' worth after mint_codes) is not this phase's to pay for
                wait_until_idle(server.pid)
                slices[name].append(run_slice(port, server.pid, args.threads, per_round,
                                              args.seconds / args.rounds, make))
                if make in exchanges:
                    for metric, value in signing(port).items():
                        counted[metric] = counted.get(metric, 0.0) + value - before.get(metric, 0.0)
        results = {name: summarize(parts) for name, parts in slices.items()}
        idle_sig = signature_ms(state)
        idle_verify = verification_ms()
        idle_es256 = es256_verify_ms()
        # how the kernel spread the connections over the workers (each worker's requests, /metrics)
        shares = re.findall(r'^policy_sso_worker_http_requests_total\{worker="(\d+)"\} (\S+)$',
                            Conn(port).request("GET", "/metrics")[2], re.M)
    finally:
        server.terminate()
        server.wait(timeout=40)

    from server.app import default_threads

    print(f"bench_http: --workers {workers}, {args.threads} client threads, waitress threads="
          f"{args.server_threads or default_threads()} (serve's default: {default_threads()}), "
          f"{args.rounds} rounds of up to {per_round} requests per phase, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    if shares:
        print("requests per worker: " + ", ".join(f"worker {w}: {float(n):.0f}" for w, n in shares))
    print(f"{'phase':<20} {'n':>6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'server CPU ms/req':>18} "
          f"{'(kernel)':>8} errors")
    for name, r in results.items():
        print(f"{name:<20} {r['n']:>6} {r['rps']:>8.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
              f"{r['cpu_ms']:>18.3f} {r['sys_share']:>8.0%} {r['errors']} {r['first_error']}")
    floor_r, auth_r, ex_r, dpop_r = (results[k] for k in results)
    print(f"silent authorize: {auth_r['rps'] / floor_r['rps']:.0%} of the floor's req/s (target >= 60%), "
          f"{auth_r['cpu_ms']:.3f} ms server CPU/request (target <= 0.5)")
    signed, verified = counted.get("signatures_total", 0.0), counted.get("dpop_verifications_total", 0.0)
    in_server = counted.get("signing_cpu_seconds_total", 0.0) / signed * 1000 if signed else float("nan")
    es256 = (counted.get("dpop_verification_cpu_seconds_total", 0.0) / verified * 1000 if verified
             else float("nan"))
    print(f"RS256 signature: {in_server:.3f} ms of CPU in the server under this load (its /metrics, "
          f"{signed:.0f} signatures), {idle_sig:.3f} ms in an idle process")
    print(f"ES256 proof verification: {es256:.3f} ms of CPU in the server under this load (its /metrics, "
          f"{verified:.0f} verifications), {idle_es256:.3f} ms in an idle process")
    ex_ms = ex_r["cpu_ms"]
    print(f"code exchange: server CPU {ex_ms:.3f} ms/request = {ex_ms / (2 * in_server):.2f}x the 2 "
          f"signatures it makes (target <= 1.5x; {ex_ms / (2 * idle_sig):.2f}x at the idle signature's cost)")
    dpop_ms = dpop_r["cpu_ms"]
    # RFC 9449 §4.3: the one more verification a proof costs is its ES256 signature, timed in the server
    # as the signatures are; the rest of the proof check (parsing, thumbprint, the jti write) is
    # overhead the 1.5x target has to absorb
    made = 2 * in_server + es256
    print(f"exchange with DPoP: server CPU {dpop_ms:.3f} ms/request = {dpop_ms / made:.2f}x the 2 RS256 "
          f"signatures and 1 ES256 verification it makes (2 x {in_server:.3f} + {es256:.3f} = "
          f"{made:.3f} ms; target <= 1.5x; {dpop_ms / (2 * in_server + idle_es256):.2f}x with the "
          f"verification's idle cost; plain exchange {ex_ms / (2 * in_server):.2f}x)")
    print(f"  the DPoP proof: +{dpop_ms - ex_ms:.3f} ms server CPU over the plain exchange; the whole proof "
          f"check {idle_verify:.3f} ms in an idle process, its ES256 verification {idle_es256:.3f} ms; "
          f"{(dpop_ms - floor_r['cpu_ms']) / made:.2f}x with the floor's per-request cost set aside")
    return results


def wait_for_workers(port: int, workers: int, timeout: float = 60) -> None:
    """Return once ``workers`` workers answer one /metrics scrape (all of them serve)."""
    if workers < 2:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = Conn(port).request("GET", "/metrics")[2]
        found = re.search(r"^policy_sso_workers (\S+)$", text, re.M)
        if found and float(found.group(1)) >= workers:
            return
        time.sleep(0.2)
    raise SystemExit(f"{workers} workers did not all start within {timeout:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
