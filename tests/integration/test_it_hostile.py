"""Hostile traffic over real HTTP (issue 14, acceptance 1): floods, guessing, limiter keys.

Loopback only, every loop bounded in count and time. Client addresses are
simulated by binding client sockets to other loopback addresses (127.0.0.2,
127.0.0.3, …: all of 127.0.0.0/8 is local on Linux) and, for the trusted-proxy
path, by ``X-Forwarded-For`` from 127.0.0.1, which this module's tenant
trusts. The memory and latency tests run ``policy-sso serve`` in a
subprocess, so the server's RSS and CPU are its own.
"""

from __future__ import annotations

import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pyotp
import pytest
import requests
from live_op import (
    DEMO,
    PASSWORDS,
    REDIRECTS,
    BrowserAgent,
    FakeClock,
    LiveOP,
    forms_of,
    page_kind,
    with_issuer,
)
from support import FromAddress, free_port

from policy_sso.credentials import HashGate, HashingBusy
from policy_sso.tenant import Tenant

ROOT = Path(__file__).resolve().parents[2]
ATTACKER, OWNER, NEIGHBOUR = "127.0.0.2", "127.0.0.3", "127.0.0.4"


# --- clients at other addresses ---------------------------------------------------------------

def http_from(address: str) -> requests.Session:
    session = requests.Session()
    session.mount("http://", FromAddress(address))
    return session


def browser_from(op: LiveOP, address: str) -> BrowserAgent:
    browser = BrowserAgent(op)
    browser.http.mount("http://", FromAddress(address))
    return browser


@pytest.fixture
def tenant_for(demo_tenant: Tenant) -> Callable[[str], Tenant]:
    """The demo tenant behind a reverse proxy on 127.0.0.1: its X-Forwarded-For names the client."""

    def served(url: str) -> Tenant:
        t = with_issuer(demo_tenant, url)
        settings = replace(t.settings, trusted_proxies=("127.0.0.1/32",))
        return Tenant(t.directory, settings, t.clients, t.users, t.policies, t.policy_files)

    return served


def wrong_codes(op: LiveOP, count: int) -> list[str]:
    """Return codes that are not valid for alice now (nor one step either side, RFC 6238 §5.2)."""
    seed = (DEMO / "secrets" / "alice.totp").read_text().strip()
    valid = {pyotp.TOTP(seed).at(op.clock.now + step * 30) for step in (-1, 0, 1)}
    return [c for c in (f"{n:06d}" for n in range(100, 200)) if c not in valid][:count]


def first_tier(op: LiveOP) -> int:
    return op.tenant.settings.guessing.per_account_address[0].requests


def api(op: LiveOP, http: requests.Session, path: str, token: str, body: dict,
        forwarded_for: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    return http.post(f"{op.url}{path}", json=body, headers=headers, timeout=10)


# --- guessing: throttled, the owner still signs in from elsewhere -----------------------------

def test_password_guessing_on_the_form_is_throttled_while_the_owner_signs_in_elsewhere(op: LiveOP) -> None:
    attacker = browser_from(op, ATTACKER)
    page = attacker.follow(attacker.authorize_request("portal"))
    tier = first_tier(op)
    wrong = [attacker.submit(page, {"username": "alice", "password": f"guess-{i}"}) for i in range(tier)]
    assert all(r.status_code == 200 and "Wrong username or password" in r.text for r in wrong)
    throttled = attacker.submit(page, {"username": "alice", "password": PASSWORDS["alice"]})
    # the right password is refused too while throttled: the throttle stops guessing, not only misses
    assert throttled.status_code == 429 and "Location" not in throttled.headers
    assert page_kind(throttled) == "login" and "Too many attempts" in throttled.text
    assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    assert attacker.session_cookie is None

    owner = browser_from(op, OWNER)
    assert owner.sign_in("portal").params.get("code")  # alice, from her own address, is not locked out


def test_password_guessing_on_the_api_is_throttled_while_the_owner_signs_in_elsewhere(op: LiveOP) -> None:
    token, attacker, owner = op.client_token("portal-backend"), http_from(ATTACKER), http_from(OWNER)
    for i in range(first_tier(op)):
        wrong = api(op, attacker, "/v1/auth/password", token, {"username": "alice", "password": f"g{i}"})
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    throttled = api(op, attacker, "/v1/auth/password", token, {"username": "alice", "password": "wonderland"})
    assert throttled.status_code == 429 and throttled.json()["error"] == "temporarily_unavailable"
    assert throttled.json()["error_description"] and int(throttled.headers["Retry-After"]) >= 1
    signed_in = api(op, owner, "/v1/auth/password", token, {"username": "alice", "password": "wonderland"})
    assert signed_in.status_code == 200, signed_in.text


def test_one_time_code_guessing_on_the_form_is_throttled_while_the_owner_signs_in_elsewhere(
        op: LiveOP) -> None:
    attacker = browser_from(op, ATTACKER)  # knows alice's password; guesses her second factor
    page = attacker.follow(attacker.authorize_request("payments-web"))
    page = attacker.follow(attacker.submit(page, {"username": "alice", "password": PASSWORDS["alice"]}))
    assert page_kind(page) == "otp"
    for code in wrong_codes(op, first_tier(op)):
        wrong = attacker.submit(page, {"otp": code})
        assert wrong.status_code == 200 and "not valid" in wrong.text
    throttled = attacker.submit(page, {"otp": op.totp("alice")})
    assert throttled.status_code == 429 and page_kind(throttled) == "otp"
    assert "Too many attempts" in throttled.text and int(throttled.headers["Retry-After"]) >= 1

    owner = browser_from(op, OWNER)
    callback = owner.sign_in("payments-web")  # password, then the code the attacker could not use
    assert callback.error is None and callback.params.get("code")


def test_one_time_code_guessing_on_the_api_is_throttled_while_the_owner_signs_in_elsewhere(
        op: LiveOP) -> None:
    token, attacker, owner = op.client_token("payments-api"), http_from(ATTACKER), http_from(OWNER)
    creds = {"username": "alice", "password": "wonderland"}
    session_id = api(op, attacker, "/v1/auth/password", token, creds).json()["session_id"]
    for code in wrong_codes(op, first_tier(op)):
        wrong = api(op, attacker, "/v1/auth/otp", token, {"session_id": session_id, "code": code})
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    throttled = api(op, attacker, "/v1/auth/otp", token, {"session_id": session_id, "code": op.totp("alice")})
    assert throttled.status_code == 429 and throttled.json()["error"] == "temporarily_unavailable"
    assert int(throttled.headers["Retry-After"]) >= 1

    own_session = api(op, owner, "/v1/auth/password", token, creds).json()["session_id"]
    stepped = api(op, owner, "/v1/auth/otp", token, {"session_id": own_session, "code": op.totp("alice")})
    assert stepped.status_code == 200 and "otp" in stepped.json()["amr"]


def test_the_throttle_lifts_when_its_window_ends(op: LiveOP) -> None:
    token, attacker = op.client_token("portal-backend"), http_from(ATTACKER)
    for i in range(first_tier(op)):
        api(op, attacker, "/v1/auth/password", token, {"username": "bob", "password": f"g{i}"})
    refused = api(op, attacker, "/v1/auth/password", token, {"username": "bob", "password": "builder"})
    assert refused.status_code == 429
    op.clock.advance(int(refused.headers["Retry-After"]))
    allowed = api(op, attacker, "/v1/auth/password", token, {"username": "bob", "password": "builder"})
    assert allowed.status_code == 200, allowed.text


def test_behind_a_trusted_proxy_the_forwarded_address_counts(op: LiveOP) -> None:
    token, proxy = op.client_token("portal-backend"), http_from("127.0.0.1")
    for i in range(first_tier(op)):
        api(op, proxy, "/v1/auth/password", token, {"username": "carol", "password": f"g{i}"},
            forwarded_for="198.51.100.1, 203.0.113.9")  # the proxy appended the attacker's address
    creds = {"username": "carol", "password": PASSWORDS["carol"]}
    assert api(op, proxy, "/v1/auth/password", token, creds, forwarded_for="203.0.113.9").status_code == 429
    # carol through the same proxy, from her own address
    assert api(op, proxy, "/v1/auth/password", token, creds, forwarded_for="192.0.2.44").status_code == 200


def test_an_untrusted_peer_cannot_pick_its_address_with_x_forwarded_for(op: LiveOP) -> None:
    token, attacker = op.client_token("portal-backend"), http_from(ATTACKER)
    for i in range(first_tier(op)):
        api(op, attacker, "/v1/auth/password", token, {"username": "carol", "password": f"g{i}"},
            forwarded_for=f"192.0.2.{i + 1}")  # a fresh made-up address each time: ignored
    creds = {"username": "carol", "password": PASSWORDS["carol"]}
    refused = api(op, attacker, "/v1/auth/password", token, creds, forwarded_for="192.0.2.200")
    assert refused.status_code == 429


def test_a_sign_in_that_finds_every_hashing_slot_busy_is_answered_503(op: LiveOP,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def busy(self: HashGate, password_hash: str | None, password: str) -> bool:
        raise HashingBusy()  # every slot taken by other sign-ins (the gate itself: tests/test_credentials.py)

    monkeypatch.setattr(HashGate, "verify", busy)
    browser = browser_from(op, NEIGHBOUR)
    page = browser.follow(browser.authorize_request("portal"))
    shown = browser.submit(page, {"username": "alice", "password": PASSWORDS["alice"]})
    assert shown.status_code == 503 and "Location" not in shown.headers and page_kind(shown) == "login"
    assert "busy" in shown.text and shown.headers["Retry-After"] == "1"
    token = op.client_token("portal-backend")
    answer = api(op, http_from(NEIGHBOUR), "/v1/auth/password", token,
                 {"username": "alice", "password": PASSWORDS["alice"]})
    assert answer.status_code == 503 and answer.json()["error"] == "temporarily_unavailable"
    assert answer.headers["Retry-After"] == "1"


# --- limiter keys: floods without a known session are limited per address ----------------------

def test_cookieless_and_random_cookie_silent_floods_are_limited_per_address(op: LiveOP) -> None:
    limit = op.tenant.settings.rate_limits["silent_auth"].requests
    alice = browser_from(op, ATTACKER)  # a real user behind the flooder's address (a shared NAT)
    assert alice.sign_in("portal").params.get("code")
    flooder = http_from(ATTACKER)
    params = {"client_id": "portal", "redirect_uri": REDIRECTS["portal"], "response_type": "code",
              "scope": "openid profile", "prompt": "none", "nonce": "n", "state": "s"}
    errors = []
    for i in range(limit + 5):
        cookies = {"psso_session": secrets.token_urlsafe(32)} if i % 2 else {}  # random, then none
        answer = flooder.get(f"{op.url}/authorize", params=params, cookies=cookies, allow_redirects=False,
                             timeout=10)
        assert answer.status_code == 302
        errors.append(answer.headers["Location"].split("error=")[1].split("&")[0])
    assert set(errors[:limit]) == {"login_required"}
    assert errors[limit:] == ["temporarily_unavailable"] * 5  # random cookies do not skip the limit

    newcomer = browser_from(op, NEIGHBOUR)  # a first visit from elsewhere is not refused
    assert newcomer.silent("portal").error == "login_required"
    assert alice.silent("portal").error is None  # nor the signed-in user at the flooded address


def test_status_polls_with_unknown_cookies_or_client_ids_are_limited_per_address(op: LiveOP) -> None:
    limit = op.tenant.settings.rate_limits["status"].requests
    flooder = http_from(ATTACKER)
    answers = [flooder.get(f"{op.url}/v1/auth/session/status", timeout=10,
                           params={"client_id": f"nobody-{i}"},
                           cookies={"psso_session": secrets.token_urlsafe(32)})
               for i in range(limit + 1)]
    assert [a.status_code for a in answers] == [200] * limit + [429]
    assert answers[-1].json()["error"] == "temporarily_unavailable" and answers[-1].headers["Retry-After"]
    elsewhere = http_from(NEIGHBOUR).get(f"{op.url}/v1/auth/session/status", params={"client_id": "portal"},
                                         timeout=10)
    assert elsewhere.status_code == 200 and elsewhere.json()["active"] is False


# --- the server in its own process: memory and latency under floods ----------------------------

@dataclass
class Served:
    url: str
    process: subprocess.Popen

    def rss(self) -> int:
        """Return the server process's resident set size in bytes (/proc/<pid>/status VmRSS)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def op(self) -> LiveOP:
        return LiveOP(self.url, FakeClock(int(time.time())), None, None, None)  # type: ignore[arg-type]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """``policy-sso serve`` on a free loopback port: the demo tenant, SQLite, the silent limit raised.

    The per-session silent-auth limit is raised (as in benchmarks/bench_http.py) so a latency
    sample is not cut short by it; every other limit is the demo's.
    """
    config = tmp_path / "tenant"
    shutil.copytree(DEMO, config, ignore=shutil.ignore_patterns("tests", "yaml"))
    tenant_yaml = config / "tenant.yaml"
    text = tenant_yaml.read_text()
    assert "silent_auth: {requests: 60, window: 1m}" in text
    tenant_yaml.write_text(text.replace("silent_auth: {requests: 60, window: 1m}",
                                        "silent_auth: {requests: 1000000, window: 1m}"))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "policy_sso.cli", "serve", "--port", str(port), "--config", str(config),
         # one process: rss() reads the serving process, not a supervisor of several
         "--state-dir", str(tmp_path / "state"), "--workers", "1"], cwd=ROOT, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()  # type: ignore[union-attr]
        assert "serving" in line, line + process.stdout.read()  # type: ignore[union-attr]
        threading.Thread(target=process.stdout.read, daemon=True).start()  # type: ignore[union-attr]
        yield Served(f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def flood(count: int, threads: int, send: Callable[[requests.Session, int], requests.Response],
          address: str = "127.0.0.1", deadline: float = 60.0,
          stop: threading.Event | None = None, pause: float = 0.0) -> list[int]:
    """Send ``count`` requests over ``threads`` keep-alive clients; return the status codes.

    ``pause``: seconds each client waits between its requests.
    """
    statuses: list[int] = []
    lock = threading.Lock()
    numbers = iter(range(count))
    end = time.monotonic() + deadline

    def worker() -> None:
        http = http_from(address)
        while time.monotonic() < end and not (stop and stop.is_set()):
            with lock:
                i = next(numbers, None)
            if i is None:
                return
            status = send(http, i).status_code
            with lock:
                statuses.append(status)
            if pause:
                time.sleep(pause)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(deadline + 10)
    return statuses


RSS_CEILING = 32 * 1024 * 1024  # growth allowed over the warmed-up server; the floods carry ~75 MB of keys
KEY_CHARS = 28_000  # unique values just under the server's 32 KiB header limit (server/limits.py)


def test_unique_key_floods_leave_memory_under_a_ceiling(served: Served) -> None:
    op = served.op()
    browser = BrowserAgent(op)
    assert browser.sign_in("portal").params.get("code")  # warm up every code path the floods take
    login_page = browser.follow(browser.authorize_request("portal", prompt="login"))
    assert page_kind(login_page) == "login"
    form = forms_of(login_page.text)[0]
    silent = {"client_id": "portal", "redirect_uri": REDIRECTS["portal"], "response_type": "code",
              "scope": "openid profile", "prompt": "none", "nonce": "n", "state": "s"}
    baseline = served.rss()
    peak = baseline

    def cookie_of(size: int) -> Callable[[requests.Session, int], requests.Response]:
        def send(http: requests.Session, i: int) -> requests.Response:
            cookie = f"{i:08d}" + secrets.token_urlsafe(size * 3 // 4)  # base64url: 4 characters a 3 bytes
            return http.get(f"{op.url}/authorize", params=silent, allow_redirects=False, timeout=30,
                            headers={"Cookie": f"psso_session={cookie}"})
        return send

    def big_client_id(http: requests.Session, i: int) -> requests.Response:
        return http.get(f"{op.url}/v1/auth/session/status", timeout=30,
                        params={"client_id": f"{i:08d}" + secrets.token_hex(KEY_CHARS // 2)})

    def new_username(http: requests.Session, i: int) -> requests.Response:  # ~60 KB, within the form limit
        data = {**form.fields, "username": f"{i:08d}" + secrets.token_hex(30_000), "password": "x"}
        return http.post(f"{op.url}{form.action}", data=data, cookies=browser.http.cookies.get_dict(),
                         allow_redirects=False, timeout=30)

    floods = ((cookie_of(200_000), 50, {302, 431}),  # 200 KB cookies: the header limit refuses them, or not
              (cookie_of(KEY_CHARS), 1000, {302}),
              (big_client_id, 1000, {200, 429}),
              (new_username, 300, {200, 429, 503}))
    for send, count, ok in floods:
        statuses = flood(count, 4, send)
        assert len(statuses) == count and set(statuses) <= ok, set(statuses)
        peak = max(peak, served.rss())
    assert 429 in statuses  # the username flood met the per-address limit
    print(f"RSS {baseline / 2**20:.0f} MiB before the floods, peak {peak / 2**20:.0f} MiB")
    assert peak - baseline < RSS_CEILING, f"RSS grew {(peak - baseline) / 2**20:.0f} MiB"
    assert browser.silent("portal").params.get("code")  # and the signed-in user is still served


def _silent_latencies(op: LiveOP, cookie: str, count: int) -> list[float]:
    http = http_from("127.0.0.1")
    params = {"client_id": "portal", "redirect_uri": REDIRECTS["portal"], "response_type": "code",
              "scope": "openid profile", "prompt": "none", "nonce": "n", "state": "s"}
    out = []
    for _ in range(count):
        started = time.perf_counter()
        answer = http.get(f"{op.url}/authorize", params=params, cookies={"psso_session": cookie},
                          allow_redirects=False, timeout=10)
        out.append(time.perf_counter() - started)
        assert answer.status_code == 302 and "code=" in answer.headers["Location"], answer.headers
    return out


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def _flood_logins(op: LiveOP, addresses: tuple[str, ...], stop: threading.Event) -> tuple[list, list[int]]:
    """Start one flooder per address (two clients each, new usernames); return the threads and statuses."""
    statuses: list[int] = []

    def flooder(address: str) -> None:
        agent = BrowserAgent(op)
        agent.http.mount("http://", FromAddress(address))
        page = agent.follow(agent.authorize_request("portal"))
        form = forms_of(page.text)[0]

        def post(http: requests.Session, i: int) -> requests.Response:
            data = {**form.fields, "username": f"user-{address}-{i}", "password": "guess"}
            return http.post(f"{op.url}{form.action}", data=data, cookies=agent.http.cookies.get_dict(),
                             allow_redirects=False, timeout=30)

        statuses.extend(flood(2000, 2, post, address=address, deadline=60, stop=stop, pause=0.05))

    threads = [threading.Thread(target=flooder, args=(address,)) for address in addresses]
    for t in threads:
        t.start()
    return threads, statuses


def test_a_flood_of_new_usernames_leaves_silent_sign_in_on_time(served: Served) -> None:
    """p99 of 300 silent authorizes during the flood stays under 2x the unloaded p99.

    The flood: two addresses, two clients each, ~40 login POSTs a second with a
    new username every time (the issue saw 4 a second take silent sign-in from
    4 ms to 1.5 s). Paced, because this measures what password hashing costs
    everyone else, not how a server shares its CPU with an unbounded request
    flood. The machine is shared with other jobs, so the unloaded p99 is the
    larger of the ones measured just before and just after the flood, floored
    at 20 ms (a few-millisecond p99 moves by more than itself from run to
    run), and a run may be repeated twice with fresh flooding addresses (their
    per-address budgets unspent, so each run hashes again). Before issue 14
    this flood took the p99 to over a second.
    """
    op = served.op()
    browser = BrowserAgent(op)
    assert browser.sign_in("portal").params.get("code")
    cookie = browser.session_cookie
    assert cookie
    _silent_latencies(op, cookie, 50)  # warm-up
    before = p99(_silent_latencies(op, cookie, 300))
    runs = []
    for addresses in (("127.0.0.5", "127.0.0.6"), ("127.0.0.7", "127.0.0.8"), ("127.0.0.9", "127.0.0.10")):
        stop = threading.Event()
        flooders, statuses = _flood_logins(op, addresses, stop)
        time.sleep(0.5)  # the flood is under way
        try:
            loaded = p99(_silent_latencies(op, cookie, 300))
        finally:
            stop.set()
            for t in flooders:
                t.join(90)
        unloaded = max(before, p99(_silent_latencies(op, cookie, 300)))
        answers = {code: statuses.count(code) for code in set(statuses)}
        runs.append(f"{loaded * 1000:.1f} ms under the flood, {unloaded * 1000:.1f} ms without; {answers}")
        print("silent p99", runs[-1])
        assert statuses.count(200) >= 1  # wrong passwords were really checked (hashed) during the flood
        assert statuses.count(429) > statuses.count(200)  # and most of the flood was refused before hashing
        if loaded < 2 * max(unloaded, 0.020):
            break
    else:
        raise AssertionError("silent p99 over twice the unloaded value in every run: " + "; ".join(runs))
