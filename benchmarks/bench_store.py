"""Store throughput against each backend's raw floor, and bytes per session.

Prints, for memory, SQLite, Redis and PostgreSQL: get-and-touch ops/s and code
redemptions/s (a code carries its grant; redeeming records it used); the
floor of SQLite (a primary-key SELECT on the same file), Redis (a bare GET
on the same server) and PostgreSQL (a prepared primary-key SELECT on one
connection); bytes per session for 100,000 sessions (SQLite and Redis).
Starts its own redis-server and PostgreSQL (initdb, as the store tests do) on
free loopback ports; PostgreSQL is skipped, saying why, where it is missing.
Run: python benchmarks/bench_store.py [--sessions 100000] [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis

from policy_sso.sessions import AuthEvent, ClientJoin, SessionLifetime, open_store
from policy_sso.sessions.model import Session, new_session
from policy_sso.sessions.redis import _session_key
from policy_sso.sessions.store import session_key

LIFETIME = SessionLifetime(touch_interval=60)


ROOT = Path(__file__).resolve().parents[1]


def rate(fn: Callable[[int], None], seconds: float, batch: int = 50) -> float:
    """Return calls per second of ``fn(i)`` over about ``seconds`` (bounded in time)."""
    done, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for i in range(done, done + batch):
            fn(i)
        done += batch
    return done / (time.perf_counter() - start)


def paired_rates(ours: Callable[[int], None], floor: Callable[[int], None], seconds: float,
                 slices: int = 40) -> tuple[float, float, list[float]]:
    """Return (ours, floor) calls per second and the sorted per-slice ratios ours/floor.

    Other work on the machine drifts over a run; alternating short slices
    exposes both sides to the same load, and the median of the paired ratios
    is what the comparison rests on, not one unlucky slice.
    """
    ours_rates, floor_rates = [], []
    for _ in range(slices):
        floor_rates.append(rate(floor, seconds / slices / 2))
        ours_rates.append(rate(ours, seconds / slices / 2))
    ratios = sorted(o / f for o, f in zip(ours_rates, floor_rates, strict=True))
    return statistics.fmean(ours_rates), statistics.fmean(floor_rates), ratios


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    process = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                                "--appendonly", "no", "--dir", str(workdir)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    return process, f"redis://127.0.0.1:{port}/0"


def start_postgres(workdir: Path) -> tuple[str, Callable[[], None]] | None:
    """Start a throwaway PostgreSQL as the store tests do; None (and say why) where it cannot."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_test_support", ROOT / "tests" / "support.py")
    fixtures = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(fixtures)  # type: ignore[union-attr]
    pgdir = Path(tempfile.mkdtemp(prefix="bench-store-pg-"))  # the server runs as postgres: not under 0700
    try:
        return fixtures.start_postgres(pgdir)
    except BaseException as err:  # pytest.skip's exception where the binaries or psycopg are missing
        print(f"PostgreSQL skipped: {err}")
        return None


def sample_session(now: int, i: int) -> Session:
    session = new_session(f"u-{i}", (AuthEvent("pwd", now - 600), AuthEvent("otp", now - 300)), now - 600)
    return session


def bench_backend(name: str, url: str, seconds: float, now: int,
                  floor_for: Callable[[list[str]], Callable[[int], None]] | None = None) -> dict[str, float]:
    """Return get-and-touch and code redemption rates (and the floor's, when given)."""
    store = open_store(url, LIFETIME)
    sessions = [sample_session(now, i) for i in range(1000)]
    for s in sessions:
        store.create_session(s)
        store.join_client(s.id, ClientJoin("portal", secrets.token_urlsafe(16), now - 600), now - 600)
        store.grant_consent(s.id, "portal", frozenset({"openid", "profile"}), now - 600)
    ids = [s.id for s in sessions]
    for i in ids:  # the first touch writes; afterwards last-seen moves less than touch_interval
        store.get_and_touch(i, now)

    def get_and_touch(i: int) -> None:
        store.get_and_touch(ids[i % 1000], now + (i % 30))

    out: dict[str, float] = {}
    if floor_for is None:
        out["get_and_touch"] = rate(get_and_touch, seconds)
    else:
        out["get_and_touch"], out["floor"], ratios = paired_rates(get_and_touch, floor_for(ids), seconds)
        quarter = len(ratios) // 4
        out["ratio"], out["ratio_low"], out["ratio_high"] = (
            statistics.median(ratios), ratios[quarter], ratios[-1 - quarter])

    def redeem_code(i: int) -> None:  # what redeeming a code costs the store: one used-identifier record
        store.use_jti("code", f"{now + 60:011d}{name}-{i}", now + 60, now)

    out["code"] = rate(redeem_code, seconds)
    store.close()
    return out


def exchange_write_us(path: Path, now: int, records: int = 12_000, rounds: int = 6_000) -> float:
    """Return the mean CPU microseconds of a DPoP code exchange's store write on SQLite.

    The code's and the proof's single-use records spent together (``use_jtis``),
    with ``records`` of them already in the table and another connection writing
    every tenth exchange (another thread or worker).
    """
    store = open_store(f"sqlite:///{path}", LIFETIME)
    other = open_store(f"sqlite:///{path}", LIFETIME)

    def entries(i: int) -> tuple[tuple[str, str, int], ...]:
        return (("code", f"{now + 60:011d}{secrets.token_hex(16)}", now + 60),
                ("dpop", secrets.token_hex(32), now + 300))

    store.use_jtis([entry for i in range(records // 2) for entry in entries(i)], now)
    spent = 0.0
    for i in range(rounds):
        if i % 10 == 0:
            record = ("other", secrets.token_hex(8), now + 5, now)
            writer = threading.Thread(target=other.use_jti, args=record)
            writer.start()
            writer.join()
        started = time.thread_time()
        store.use_jtis(entries(i), now)
        spent += time.thread_time() - started
    store.close()
    other.close()
    return spent / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    now = int(time.time())
    print("load average before: {:.2f} {:.2f} {:.2f} on {} cores".format(*os.getloadavg(), os.cpu_count()))
    work = Path(tempfile.mkdtemp(prefix="bench-store-"))
    redis_process, redis_url = start_redis(work)
    try:
        db_path = work / "bench.db"

        def sqlite_floor(ids: list[str]) -> Callable[[int], None]:
            db = sqlite3.connect(db_path, check_same_thread=False)
            query = "SELECT data, last_seen FROM sessions WHERE id = ?"
            return lambda i: db.execute(query, (ids[i % len(ids)],)).fetchone()

        raw = redis.Redis.from_url(redis_url)

        def redis_floor(ids: list[str]) -> Callable[[int], None]:
            keys = [_session_key(session_id) for session_id in ids]  # the same stored sessions
            return lambda i: raw.get(keys[i % len(keys)])

        results = {
            "memory": bench_backend("memory", "memory://", args.seconds, now),
            "sqlite": bench_backend("sqlite", f"sqlite:///{db_path}", args.seconds, now, sqlite_floor),
            "redis": bench_backend("redis", redis_url, args.seconds, now, redis_floor),
        }
        postgres = start_postgres(work)
        if postgres is not None:
            import psycopg

            postgres_url, stop_postgres = postgres

            def postgres_floor(ids: list[str]) -> Callable[[int], None]:
                db = psycopg.connect(postgres_url, autocommit=True)  # one connection, prepared, as the pool's
                query = "SELECT data, last_seen FROM sessions WHERE id = %s"
                return lambda i: db.execute(query, (ids[i % len(ids)],), prepare=True).fetchone()

            try:
                results["postgres"] = bench_backend("postgres", postgres_url, args.seconds, now,
                                                    postgres_floor)
            finally:
                stop_postgres()
        print(f"{'backend':<8}{'get+touch ops/s':>17}{'floor ops/s':>13}{'ratio (IQR)':>18}"
              f"{'code redeem ops/s':>26}")
        for name, r in results.items():
            floor = r.get("floor")
            ratio = (f"{r['ratio']:.0%} ({r['ratio_low']:.0%}-{r['ratio_high']:.0%})" if floor else "-")
            floor_text = f"{floor:>13,.0f}" if floor else f"{'-':>13}"
            print(f"{name:<8}{r['get_and_touch']:>17,.0f}{floor_text}{ratio:>18} {r['code']:>25,.0f}")
        print("floors: SQLite = primary-key SELECT of the same row on the same file; "
              "Redis = bare GET of the same session key on the same server; "
              "PostgreSQL = prepared primary-key SELECT of the same row on one connection; "
              "ratio = median of 40 alternating paired slices")
        exchange = statistics.median(exchange_write_us(work / f"exchange-{n}.db", now) for n in range(3))
        print(f"SQLite, a DPoP code exchange's single-use write (its code and proof together, 12,000 "
              f"records, another connection writing): {exchange:.1f} us of CPU on average (median of 3 runs)")

        # bytes per session at scale
        n = args.sessions
        big = work / "size.db"
        sqlite_store = open_store(f"sqlite:///{big}", LIFETIME)
        redis_store = open_store(redis_url, LIFETIME)
        raw.flushdb()
        before = raw.info("memory")["used_memory"]
        batch = 1000
        for start in range(0, n, batch):
            chunk = [sample_session(now, i) for i in range(start, min(start + batch, n))]
            with sqlite_store._write() as db:  # one transaction per thousand: the benchmark measures size
                for s in chunk:
                    sqlite_store._save(db, s)
            with redis_store.redis.pipeline(transaction=False) as pipe:
                for s in chunk:  # create_session's own two scripts, a thousand sessions a round trip
                    redis_store._put(s, now, client=pipe)
                    redis_store._index_add(keys=[redis_store._subject(s.subject)],
                                           args=[session_key(s.id), LIFETIME.absolute + 86400, 100],
                                           client=pipe)
                pipe.execute()
        sqlite_store._db().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        sqlite_bytes = os.path.getsize(big) / n
        redis_bytes = (raw.info("memory")["used_memory"] - before) / n
        print(f"bytes per session ({n:,} sessions, 2 events, subject index): "
              f"SQLite {sqlite_bytes:,.0f}, Redis {redis_bytes:,.0f}")
        sqlite_store.close()
        redis_store.close()
        print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    finally:
        redis_process.terminate()
        redis_process.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
