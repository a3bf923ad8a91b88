"""The store goes away under load, and the provider answers instead of leaking (SPEC §7, issue 14).

A real redis-server (started here on a free loopback port, with an append-only
file so a restart keeps the sessions) is paused with SIGSTOP, stopped and
started again, and a SQLite file is locked by another connection, while a few
threads keep signing in silently, exchanging codes and calling /userinfo. Every
answer must be a success or 503 / ``temporarily_unavailable`` (never 400 or
500), no request may wait much past the store timeout, /readyz must say 503
while the store is away and 200 after, and service must come back by itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from live_op import REDIRECTS, BrowserAgent, LiveOP, pkce_pair, serve_op, with_settings
from support import free_port, redis_binary, wait_until_listening

from policy_sso.config import RateLimit
from policy_sso.sessions.store import StoreOptions
from policy_sso.tenant import Tenant

TIMEOUT = 0.5  # the store timeout these tests configure (tenant.yaml store_timeout)
MARGIN = 2.0  # a loaded 2-CPU machine: a request may queue behind others for a while
PHASE = 2.5  # seconds each fault lasts under load


class RedisServer:
    """A throwaway redis-server on 127.0.0.1 that a test can pause, stop and start again."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary, self.workdir, self.port = binary, workdir, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        # appendfsync always: what was written before a stop is there after the start
        self.process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_listening(self.port, self.process, "redis-server")

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(redis_binary(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def tenant_at(demo: Tenant, url: str) -> Tenant:
    """Return the demo tenant at ``url`` with limits no load here reaches (only faults refuse)."""
    limits = {name: RateLimit(1_000_000, limit.window) for name, limit in demo.settings.rate_limits.items()}
    return with_settings(demo, issuer=url, rate_limits=limits, store_options=StoreOptions(timeout=TIMEOUT))


@contextlib.contextmanager
def live(demo: Tenant, keyring: Any, store_url: str) -> Iterator[LiveOP]:
    """Serve the demo tenant on waitress (loopback, free port) over the store at ``store_url``."""
    with serve_op(lambda url: tenant_at(demo, url), store_url, keyring) as op:
        yield op


# --- the load -----------------------------------------------------------------------------

@dataclass
class Outcome:
    """One request of the load: what it was, how it was answered, how long it took."""

    kind: str
    status: int
    seconds: float
    error: str | None = None
    retry_after: str | None = None
    at: float = field(default_factory=time.monotonic)

    @property
    def fault(self) -> bool:
        return self.error == "temporarily_unavailable"


class Load:
    """A few threads signing in silently, exchanging codes and calling /userinfo until stopped."""

    def __init__(self, op: LiveOP, browser: BrowserAgent, access_token: str, threads: int = 3) -> None:
        self.op, self.access_token = op, access_token
        self.cookie = browser.session_cookie
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _record(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def _run(self) -> None:
        http = requests.Session()
        http.cookies.set("psso_session", self.cookie or "")
        while not self.stop.is_set():
            code = self._silent(http)
            if code is not None:
                self._exchange(code)
            self._userinfo()

    def _silent(self, http: requests.Session) -> tuple[str, str] | None:
        verifier, challenge = pkce_pair()
        params = {"client_id": "portal", "redirect_uri": REDIRECTS["portal"], "response_type": "code",
                  "scope": "openid profile", "state": "st-1", "prompt": "none",
                  "code_challenge": challenge, "code_challenge_method": "S256"}
        started = time.monotonic()
        resp = http.get(f"{self.op.url}/authorize", params=params, allow_redirects=False, timeout=30)
        seconds = time.monotonic() - started
        location = resp.headers.get("Location", "")
        answer = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
        error = answer.get("error")
        if resp.status_code in (302, 303) and location.startswith(REDIRECTS["portal"] + "?"):
            # the verified redirect_uri hears of it, with state and iss (RFC 9207)
            assert answer.get("state") == "st-1" and answer.get("iss") == self.op.url, location
            self._record(Outcome("authorize", 200 if "code" in answer else 503, seconds, error))
            return (answer["code"], verifier) if "code" in answer else None
        self._record(Outcome("authorize", resp.status_code, seconds, f"page: {resp.text[:120]}"))
        return None

    def _json(self, kind: str, call: Callable[[], requests.Response]) -> None:
        started = time.monotonic()
        resp = call()
        seconds = time.monotonic() - started
        try:
            body = resp.json()
        except ValueError:
            body = {"error": f"not JSON: {resp.text[:120]}"}
        self._record(Outcome(kind, resp.status_code, seconds, body.get("error") if resp.status_code >= 400
                             else None, resp.headers.get("Retry-After")))

    def _exchange(self, code: tuple[str, str]) -> None:
        self._json("token", lambda: self.op.token(
            "portal", grant_type="authorization_code", code=code[0], redirect_uri=REDIRECTS["portal"],
            code_verifier=code[1]))

    def _userinfo(self) -> None:
        self._json("userinfo", lambda: requests.get(
            f"{self.op.url}/userinfo", headers={"Authorization": f"Bearer {self.access_token}"}, timeout=30))

    def since(self, moment: float) -> list[Outcome]:
        with self.lock:
            return [o for o in self.outcomes if o.at >= moment]


def signed_in(op: LiveOP) -> tuple[BrowserAgent, str]:
    """Return a browser signed in at portal, and an access token issued to it."""
    browser = BrowserAgent(op)
    verifier, challenge = pkce_pair()
    cb = browser.sign_in("portal", code_challenge=challenge, code_challenge_method="S256")
    assert cb.error is None, cb.params
    resp = op.token("portal", grant_type="authorization_code", code=cb.params["code"],
                    redirect_uri=REDIRECTS["portal"], code_verifier=verifier)
    assert resp.status_code == 200, resp.text
    return browser, resp.json()["access_token"]


def assert_answered(outcomes: list[Outcome]) -> None:
    """Every answer is a success or 503 temporarily_unavailable (with Retry-After), in bounded time."""
    assert outcomes, "the load made no request"
    for outcome in outcomes:
        assert outcome.status == 200 or (outcome.status == 503 and outcome.fault), outcome
        if outcome.status == 503 and outcome.kind != "authorize":
            assert outcome.retry_after and int(outcome.retry_after) > 0, outcome
        assert outcome.seconds < TIMEOUT + MARGIN, outcome


def readyz(op: LiveOP) -> tuple[int, dict, float]:
    started = time.monotonic()
    resp = requests.get(f"{op.url}/readyz", timeout=30)
    return resp.status_code, resp.json(), time.monotonic() - started


def wait_for_service(load: Load, deadline: float = 10.0) -> float:
    """Return how long until every kind of request succeeds again (fails past ``deadline``)."""
    started = time.monotonic()
    while time.monotonic() - started < deadline:
        time.sleep(0.25)
        recent = load.since(time.monotonic() - 0.5)
        if {o.kind for o in recent if o.status == 200} >= {"authorize", "token", "userinfo"} \
                and all(o.status == 200 for o in recent):
            return time.monotonic() - started
    pytest.fail(f"service did not resume within {deadline} s: {load.since(started)[-5:]}")


def no_unhandled_errors(caplog: pytest.LogCaptureFixture) -> None:
    assert "unhandled error" not in caplog.text
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text[-2000:]


# --- Redis ----------------------------------------------------------------------------------

def test_redis_paused_stopped_and_restarted_under_load(demo_tenant, keyring, redis_server, caplog):
    caplog.set_level(logging.WARNING)
    with live(demo_tenant, keyring, redis_server.url) as op:
        browser, access_token = signed_in(op)
        assert readyz(op)[0] == 200
        with Load(op, browser, access_token) as load:
            time.sleep(1.0)
            healthy = load.since(0)
            assert healthy and all(o.status == 200 for o in healthy), healthy[:5]

            # paused: every call times out after TIMEOUT; nothing waits much longer
            redis_server.signal(signal.SIGSTOP)
            paused_at = time.monotonic()
            time.sleep(0.3)
            status, body, seconds = readyz(op)
            assert status == 503 and body["store"] == "unavailable", body
            assert seconds < TIMEOUT + MARGIN
            health = requests.get(f"{op.url}/healthz", timeout=30)
            assert health.status_code == 200  # liveness never asks the store
            time.sleep(PHASE)
            redis_server.signal(signal.SIGCONT)
            during_pause = load.since(paused_at)
            assert any(o.status == 503 for o in during_pause), "the pause was never noticed"
            resumed_in = wait_for_service(load)

            # stopped, then started again on the same port: connections refused, then a new
            # server that has forgotten the Lua scripts (NOSCRIPT) and every pooled connection
            stopped_at = time.monotonic()
            redis_server.stop()
            time.sleep(0.3)
            assert readyz(op)[0] == 503
            time.sleep(PHASE)
            redis_server.start()
            restarted_in = wait_for_service(load)
            during_restart = load.since(stopped_at)
            assert any(o.status == 503 for o in during_restart), "the stop was never noticed"
            status, body, _ = readyz(op)
            assert status == 200 and body["store"] == "ok", body
        assert_answered(load.outcomes)
    assert "store unavailable on GET /authorize" in caplog.text  # one warning line per fault
    no_unhandled_errors(caplog)
    print(f"\nredis faults: {len(load.outcomes)} requests, resumed {resumed_in:.2f} s after SIGCONT, "
          f"{restarted_in:.2f} s after the restart")


def test_readyz_and_the_error_shape_while_redis_is_down(demo_tenant, keyring, redis_server, caplog):
    with live(demo_tenant, keyring, redis_server.url) as op:
        browser, access_token = signed_in(op)
        redis_server.stop()
        resp = requests.get(f"{op.url}/userinfo", headers={"Authorization": f"Bearer {access_token}"},
                            timeout=30)
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
        assert resp.json() == {"error": "temporarily_unavailable",
                               "error_description": "the session store is unavailable; try again shortly"}
        status, body, _ = readyz(op)
        assert status == 503 and body["error"] == "temporarily_unavailable"
        assert body["keys"] == "ok" and body["policies"] == "ok"
        # a hosted page answers with a page of its own, not JSON and not a 400
        page = browser.get("/logout")
        assert page.status_code == 503 and "text/html" in page.headers["Content-Type"], page.text[:200]
        assert page.headers["Retry-After"] == "5"
        # the authorization endpoint tells the verified redirect_uri, with state and iss
        cb = browser.silent("portal")
        assert cb.error == "temporarily_unavailable", cb.params
        assert cb.params["state"] == "xyz" and cb.params["iss"] == op.url
        # an unregistered redirect_uri is never redirected to, store fault or not
        bad = browser.get("/authorize", client_id="portal", redirect_uri="http://evil.example/cb",
                          response_type="code", scope="openid", prompt="none")
        assert bad.status_code == 400 and "Location" not in bad.headers
        redis_server.start()
        assert readyz(op)[0] == 200
        assert browser.silent("portal").error is None
    no_unhandled_errors(caplog)


# --- SQLite ---------------------------------------------------------------------------------

def test_sqlite_locked_by_another_connection_under_load(demo_tenant, keyring, tmp_path, caplog):
    import sqlite3

    caplog.set_level(logging.WARNING)
    path = tmp_path / "op.db"
    with live(demo_tenant, keyring, f"sqlite:///{path}") as op:
        browser, access_token = signed_in(op)
        with Load(op, browser, access_token) as load:
            time.sleep(1.0)
            # codes in hand before the lock: the load's own exchanges need a silent sign-in first, and
            # once a rate-limit lease falls due under the lock those fail too, so whether one of its
            # exchanges meets the lock would be up to timing
            http = requests.Session()
            http.cookies.set("psso_session", browser.session_cookie or "")
            spare = [code for code in (load._silent(http) for _ in range(3)) if code is not None]
            assert spare
            locker = sqlite3.connect(path, isolation_level=None)
            locker.execute("BEGIN EXCLUSIVE")  # as a backup or a stray sqlite3 shell would
            locked_at = time.monotonic()
            try:
                time.sleep(0.2)
                status, body, seconds = readyz(op)
                assert status == 503 and body["store"] == "unavailable", body
                assert seconds < TIMEOUT + MARGIN
                for code in spare:
                    load._exchange(code)
                time.sleep(PHASE)
            finally:
                locker.execute("ROLLBACK")
                locker.close()
            during = load.since(locked_at)
            # WAL: reads (/userinfo) go on; writes (redeeming a code) wait, then 503. A silent sign-in
            # goes on until its rate-limit lease needs a write, so whether one lands is up to timing.
            assert any(o.status == 503 and o.kind == "token" for o in during), during[:10]
            assert any(o.status == 200 and o.kind == "userinfo" for o in during), during[:10]
            wait_for_service(load)
            assert readyz(op)[0] == 200
        assert_answered(load.outcomes)
    assert "store unavailable on POST /token" in caplog.text
    no_unhandled_errors(caplog)
