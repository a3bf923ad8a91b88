"""``policy-sso serve --workers 2`` over HTTP: one service across two processes.

The server runs as a real process tree (a supervisor and two waitress
workers on one socket, SQLite in a temporary state directory). Which worker
answered is read from ``/metrics`` (each worker's request count) and the
process list, never from a header a production server would not send.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from live_op import DEMO, BrowserAgent, FakeClock, LiveOP
from support import free_port, postgres_server

ROOT = Path(__file__).resolve().parents[2]


class Workers:
    """A ``serve --workers 2`` process tree; its output lines collected as they come."""

    def __init__(self, tmp_path: Path, count: int = 2, store: list[str] | None = None,
                 issuer: str | None = None) -> None:
        self.config = tmp_path / "tenant"
        self.state = tmp_path / "state"
        if not self.config.exists():
            shutil.copytree(DEMO, self.config, ignore=shutil.ignore_patterns("tests", "yaml"))
            tenant_yaml = self.config / "tenant.yaml"
            # many silent requests from one session in a few seconds: the per-session limit raised
            tenant_yaml.write_text(tenant_yaml.read_text().replace(
                "silent_auth: {requests: 60, window: 1m}", "silent_auth: {requests: 100000, window: 1m}"))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "policy_sso.cli", "serve", "--workers", str(count), "--port", str(port),
             "--issuer", issuer or self.url, "--config", str(self.config), "--state-dir",
             str(self.state), "--log-level", "info", *(store or [])],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        banner = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert "serving" in banner and (count == 1 or f"{count} workers" in banner), banner
        threading.Thread(target=self._collect, daemon=True).start()
        self.wait_for_workers(count)

    def _collect(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.put(line)

    def output(self) -> list[str]:
        out = []
        while not self.lines.empty():
            out.append(self.lines.get())
        return out

    def worker_pids(self) -> set[int]:
        """Return the supervisor's child processes (the workers), from /proc."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return {int(pid) for pid in children.read_text().split()} if children.exists() else set()

    def wait_for_workers(self, count: int, timeout: float = 60) -> None:
        """Wait until ``count`` workers answer one /metrics scrape together (one: until it answers)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.scrape().get("policy_sso_workers", 1) == count:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{count} workers never answered together: {self.output()}")

    def scrape(self) -> dict[str, float]:
        """Return /metrics as {sample with labels: value}, read on a new connection."""
        text = requests.get(f"{self.url}/metrics", headers={"Connection": "close"}, timeout=10).text
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def per_worker(self) -> dict[str, float]:
        return {re.search(r'worker="(\d+)"', k)[1]: v for k, v in self.scrape().items()  # type: ignore[index]
                if k.startswith("policy_sso_worker_http_requests_total")}

    def op(self) -> LiveOP:
        return LiveOP(self.url, FakeClock(int(time.time())), None, None, None)  # type: ignore[arg-type]

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise


@contextlib.contextmanager
def _serving(tmp_path: Path) -> Iterator[Workers]:
    served = Workers(tmp_path)
    try:
        yield served
    finally:
        if served.proc.poll() is None:
            served.stop()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    with _serving(tmp_path) as served:
        yield served


def _signed_in(served: Workers) -> BrowserAgent:
    browser = BrowserAgent(served.op())
    answer = browser.sign_in("portal")
    assert answer.error is None and answer.params.get("code"), answer
    # a new connection per request, so the kernel hands requests to either worker; the keep-alive
    # connections the sign-in left in the pool go too (one may be held by a worker a test kills)
    browser.http.headers["Connection"] = "close"
    browser.http.close()
    return browser


def _wait_until_dead(pid: int, timeout: float = 10) -> None:
    """Return once ``pid`` has exited (gone, or a zombie its parent has not reaped yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} still alive {timeout}s after SIGKILL")


def _silent_ok(browser: BrowserAgent, count: int) -> list[str | None]:
    return [browser.silent("portal").error for _ in range(count)]


def test_sso_works_across_workers_and_one_scrape_covers_both(workers: Workers) -> None:
    assert len(workers.worker_pids()) == 2
    browser = _signed_in(workers)
    before = workers.per_worker()
    assert _silent_ok(browser, 60) == [None] * 60  # the session made on one worker is seen by both
    after = workers.per_worker()
    served = {slot: after[slot] - before.get(slot, 0) for slot in after}
    assert set(served) == {"0", "1"} and all(n >= 3 for n in served.values()), served
    totals = workers.scrape()
    authorize = sum(v for k, v in totals.items()
                    if k.startswith("policy_sso_http_requests_total") and 'route="/authorize"' in k)
    assert authorize >= 61  # one scrape counts the silent requests both workers answered


def test_a_code_is_redeemed_once_across_workers(workers: Workers) -> None:
    browser = _signed_in(workers)
    op = workers.op()
    for _ in range(3):
        code = browser.silent("portal").params["code"]
        barrier, statuses = threading.Barrier(6), []

        def redeem(code: str = code, barrier: threading.Barrier = barrier,
                   statuses: list[int] = statuses) -> None:
            barrier.wait()
            statuses.append(op.token("portal", grant_type="authorization_code", code=code,
                                     redirect_uri="http://127.0.0.1:9001/callback").status_code)

        threads = [threading.Thread(target=redeem) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(statuses) == [200] + [400] * 5, statuses


def test_a_killed_worker_is_replaced_and_service_continues(workers: Workers) -> None:
    browser = _signed_in(workers)
    victims = workers.worker_pids()
    victim = min(victims)
    os.kill(victim, signal.SIGKILL)
    _wait_until_dead(victim)  # kill() returns before the process is gone: it could still accept a connection
    # the survivor answers meanwhile: connections wait in the shared socket's queue, not the dead one's
    assert _silent_ok(browser, 20) == [None] * 20
    _replaced(workers, victim)
    assert _silent_ok(browser, 20) == [None] * 20
    assert any("was killed by SIGKILL" in line for line in workers.output())


def test_sighup_after_a_policy_edit_reaches_every_worker(workers: Workers) -> None:
    browser = _signed_in(workers)
    assert _silent_ok(browser, 10) == [None] * 10
    policy = workers.config / "portal.policy"
    policy.write_text(policy.read_text().replace('require amr any_of "pwd", "wia", "hwk"',
                                                 'require amr any_of "hwk"'))
    workers.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    lines: list[str] = []
    while time.monotonic() < deadline and sum("policies reloaded" in line for line in lines) < 3:
        with contextlib.suppress(queue.Empty):
            lines.append(workers.lines.get(timeout=0.5))
    assert sum("policies reloaded" in line for line in lines) == 3, lines  # the supervisor, each worker
    before = workers.per_worker()
    errors = _silent_ok(browser, 30)
    assert None not in errors, errors  # no worker still runs the old policy
    served = {slot: n - before.get(slot, 0) for slot, n in workers.per_worker().items()}
    assert all(n > 0 for n in served.values()) and len(served) == 2, served


ADMIN = "admin-token-for-worker-tests-0123456789"
NEW_SCOPE = "reports:read"  # added to the portal's scopes: discovery's scopes_supported names it once loaded


@pytest.fixture
def admin_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workers]:
    """``serve --workers 2`` with the admin API on (the token in the environment the processes inherit)."""
    monkeypatch.setenv("POLICY_SSO_ADMIN_TOKEN", ADMIN)
    with _serving(tmp_path) as served:
        yield served


def _add_scope(served: Workers) -> None:
    clients = served.config / "clients.yaml"
    text = clients.read_text()
    old = "scopes: [openid, profile, email, offline_access]\n"  # the portal's, first in the file
    assert old in text
    clients.write_text(text.replace(old, old.replace("]", f', "{NEW_SCOPE}"]'), 1))


def _wait_for_lines(served: Workers, text: str, count: int, timeout: float = 10) -> list[str]:
    """Return the output lines read until ``count`` of them contain ``text`` (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline and sum(text in line for line in lines) < count:
        with contextlib.suppress(queue.Empty):
            lines.append(served.lines.get(timeout=0.2))
    return lines


def _every_worker_answers(served: Workers, path: str, check: Callable[[dict], None]) -> None:
    """GET ``path`` on new connections until both workers have answered; ``check`` each JSON answer."""
    before = served.per_worker()
    for _ in range(20):
        for _ in range(10):
            check(requests.get(f"{served.url}{path}", headers={"Connection": "close"}, timeout=10).json())
        served_by = {slot: n - before.get(slot, 0) for slot, n in served.per_worker().items()}
        if len(served_by) == 2 and all(n >= 3 for n in served_by.values()):  # a scrape counts one too
            return
    raise AssertionError(f"one worker never answered: {served_by}")


def _every_worker_names_the_scope(served: Workers) -> None:
    def names_it(discovery: dict) -> None:
        assert NEW_SCOPE in discovery["scopes_supported"], discovery["scopes_supported"]

    _every_worker_answers(served, "/.well-known/openid-configuration", names_it)


def _replaced(served: Workers, victim: int, timeout: float = 30) -> None:
    """Wait until the supervisor has replaced the dead ``victim`` and both workers answer together."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = served.worker_pids()
        if len(pids) == 2 and victim not in pids:
            break
        time.sleep(0.1)
    assert len(served.worker_pids()) == 2 and victim not in served.worker_pids()
    served.wait_for_workers(2)


def _replace_a_worker(served: Workers) -> None:
    """Kill one worker with SIGKILL and wait until its replacement answers with its sibling."""
    victim = min(served.worker_pids())
    os.kill(victim, signal.SIGKILL)
    _wait_until_dead(victim)
    _replaced(served, victim)


def test_an_admin_reload_reaches_every_worker(admin_workers: Workers) -> None:
    _add_scope(admin_workers)
    answer = requests.post(f"{admin_workers.url}/admin/v1/policies/reload", timeout=30,
                           headers={"Authorization": f"Bearer {ADMIN}", "Connection": "close"})
    assert answer.status_code == 200 and answer.json()["applied"] is True, answer.text  # this worker's own
    # the worker that answered, then the supervisor, then each worker as the supervisor forwards SIGHUP
    lines = _wait_for_lines(admin_workers, "policies reloaded", 4)
    _every_worker_names_the_scope(admin_workers)
    lines += admin_workers.output()  # what came while discovery was fetched: a loop would keep reloading
    assert sum("policies reloaded" in line for line in lines) == 4, lines  # passed on once


def test_an_admin_reload_at_one_server_reaches_another_on_the_same_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SPEC §7: instances converge after a reload. The second server (its own process, the same tenant
    directory and store) follows the first's reload within a few seconds, without being told."""
    monkeypatch.setenv("POLICY_SSO_ADMIN_TOKEN", ADMIN)
    first = Workers(tmp_path, count=1)
    second = Workers(tmp_path, count=1, issuer=first.url)
    try:
        _add_scope(first)
        answer = requests.post(f"{first.url}/admin/v1/policies/reload", timeout=30,
                               headers={"Authorization": f"Bearer {ADMIN}", "Connection": "close"})
        assert answer.status_code == 200 and answer.json()["applied"] is True, answer.text
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            scopes = requests.get(f"{second.url}/.well-known/openid-configuration", timeout=10).json()[
                "scopes_supported"]
            if NEW_SCOPE in scopes:
                break
            time.sleep(0.2)
        assert NEW_SCOPE in scopes
        assert any("another instance reloaded" in line for line in _wait_for_lines(second, "reloaded", 1))
    finally:
        for served in (second, first):
            if served.proc.poll() is None:
                served.stop()


def test_a_worker_replaced_after_a_sighup_serves_the_reloaded_tenant(workers: Workers) -> None:
    _add_scope(workers)
    workers.proc.send_signal(signal.SIGHUP)
    _wait_for_lines(workers, "policies reloaded", 3)  # the supervisor, each worker
    _every_worker_names_the_scope(workers)
    _replace_a_worker(workers)
    _every_worker_names_the_scope(workers)  # not the tenant loaded when the supervisor started


def test_a_worker_replaced_after_a_key_rotation_publishes_the_new_key(workers: Workers) -> None:
    rotated = subprocess.run([sys.executable, "-m", "policy_sso.cli", "keys", "rotate", "--state-dir",
                              str(workers.state), "--alg", "RS256"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60, check=True)
    kid = re.search(r"new signing key (\S+)", rotated.stdout).group(1)

    def publishes_it(jwks: dict) -> None:
        assert kid in [key["kid"] for key in jwks["keys"]], jwks

    workers.proc.send_signal(signal.SIGHUP)
    _wait_for_lines(workers, "policies reloaded", 3)
    _every_worker_answers(workers, "/jwks", publishes_it)
    _replace_a_worker(workers)  # forked from the supervisor, whose key ring predates the rotation
    _every_worker_answers(workers, "/jwks", publishes_it)


def test_a_broken_set_is_refused_by_the_supervisor_and_a_new_worker_gets_the_last_good_one(
        workers: Workers) -> None:
    _add_scope(workers)
    workers.proc.send_signal(signal.SIGHUP)
    _wait_for_lines(workers, "policies reloaded", 3)
    (workers.config / "portal.policy").write_text("")  # caught between truncate and write
    workers.proc.send_signal(signal.SIGHUP)
    lines = _wait_for_lines(workers, "policy reload rejected", 3)
    assert sum("policy reload rejected" in line for line in lines) == 3, lines  # the supervisor, each worker
    _replace_a_worker(workers)
    _every_worker_names_the_scope(workers)
    browser = _signed_in(workers)  # the portal still runs the policy its emptied file had
    assert _silent_ok(browser, 5) == [None] * 5


def test_sigterm_drains_a_request_in_flight(workers: Workers) -> None:
    host, port = workers.url.removeprefix("http://").split(":")
    body = b"grant_type=client_credentials&scope=openid"
    slow = socket.create_connection((host, int(port)), timeout=30)
    # a request half sent: the worker holding it is busy with it until the rest arrives
    slow.sendall(b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])
    time.sleep(0.5)
    workers.proc.send_signal(signal.SIGTERM)
    time.sleep(1.5)
    assert workers.proc.poll() is None  # still draining
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=5).close()  # no longer accepting
    slow.sendall(body[10:])
    answer = b""
    while chunk := slow.recv(65536):
        answer += chunk
        if b"\r\n\r\n" in answer and b"}" in answer:
            break
    slow.close()
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]  # answered in full: no client credentials
    assert b'"error":' in answer
    assert workers.proc.wait(timeout=40) == 0


def test_the_memory_store_with_several_workers_is_refused(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "policy_sso.cli", "serve", "--workers", "2", "--store",
                           "memory://", "--port", "0", "--state-dir", str(tmp_path / "state")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "memory:// keeps sessions inside one process" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """Yield the URL of a throwaway PostgreSQL (started as the session store tests start theirs)."""
    with postgres_server() as url:
        yield url


def _two_servers_share_sessions_and_codes(tmp_path: Path, store_url: str, first_workers: int) -> None:
    """A session made at one server signs in silently at the other; its code is redeemed once, at either."""
    first = Workers(tmp_path, count=first_workers, store=["--store", store_url])
    second = Workers(tmp_path, count=1, store=["--store", store_url], issuer=first.url)
    try:
        browser = _signed_in(first)
        at_second = BrowserAgent(second.op())
        at_second.http.cookies.update(browser.http.cookies)  # one browser: cookies are per host, not port
        answer = at_second.silent("portal")
        assert answer.error is None, answer  # the session made at the first server
        redeem = {"grant_type": "authorization_code", "code": answer.params["code"],
                  "redirect_uri": "http://127.0.0.1:9001/callback"}
        assert first.op().token("portal", **redeem).status_code == 200
        assert second.op().token("portal", **redeem).status_code == 400  # used once, whichever server
    finally:
        for served in (second, first):
            if served.proc.poll() is None:
                served.stop()


def test_two_servers_on_one_postgresql_share_sessions_and_codes(tmp_path: Path, postgres_url: str) -> None:
    _two_servers_share_sessions_and_codes(tmp_path, postgres_url, 2)


def test_two_servers_on_one_redis_cluster_share_sessions_and_codes(tmp_path: Path,
                                                                   redis_cluster_url: str) -> None:
    # issue 16: the Redis store unchanged on a 3-master cluster (each script's keys in one slot)
    _two_servers_share_sessions_and_codes(tmp_path, redis_cluster_url, 1)
