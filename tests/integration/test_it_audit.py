"""Audit events over real HTTP, on SQLite and on Redis (issue 15, acceptance 1-4).

The story: alice signs in at the portal, payments refuses her silently (and
says why, with the policy lines), the portal lets her in silently. The events
are asserted in the stdout sink, the file sink and through the admin API, and
``policy-sso events`` answers "why could alice not get into payments?".
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from backend_support import LogoutReceiver
from live_op import DEMO, PASSWORDS, BrowserAgent, FakeClock, LiveOP, with_issuer
from support import loopback_server, serving

from policy_sso.audit import AuditEvent, AuditLog, AuditSettings
from policy_sso.audit.configure import audit_log
from policy_sso.audit.stores import Record
from policy_sso.cli.main import main as cli
from policy_sso.reload import TenantHolder
from policy_sso.sessions.store import open_store
from policy_sso.tenant import Tenant, load_tenant
from server.app import create_app

ADMIN = "admin-token-for-audit-tests-0123456789"
PAYMENTS_LINES = {line.strip(): n for n, line in
                  enumerate((DEMO / "payments.policy").read_text().splitlines(), 1)}


# --- a live provider with every sink on -----------------------------------------------------------

@dataclass
class Audited:
    op: LiveOP
    audit: AuditLog
    stdout: io.StringIO
    file: Path
    store_url: str

    def events(self, **params: str) -> requests.Response:
        return requests.get(f"{self.op.url}/admin/v1/events", params=params,
                            headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)

    def lines(self) -> list[dict]:
        assert self.audit.flush(), "the audit writer did not catch up"
        return [json.loads(line) for line in self.stdout.getvalue().splitlines()]


def serve(tenant_at: Callable[[str], Tenant | TenantHolder], store_url: str, keyring: Any, tmp_path: Path,
          make_audit: Callable[[FakeClock], tuple[AuditLog, io.StringIO]]) -> Iterator[tuple[LiveOP, AuditLog,
                                                                                          io.StringIO]]:
    server = loopback_server()
    url = f"http://127.0.0.1:{server.effective_port}"
    served = tenant_at(url)
    tenant = served.tenant if isinstance(served, TenantHolder) else served
    clock = FakeClock()
    store = open_store(store_url, tenant.settings.lifetime)
    audit, stdout = make_audit(clock)
    server.application = create_app(served, store, keyring, clock=clock, audit=audit)
    try:
        with serving(server):
            yield LiveOP(url, clock, store, tenant, keyring), audit, stdout
    finally:
        audit.close()
        store.close()


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/op.db"
    url = request.getfixturevalue("redis_url")
    import redis

    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def audited(demo_tenant: Tenant, keyring: Any, tmp_path: Path, store_url: str,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Audited]:
    monkeypatch.setenv("POLICY_SSO_ADMIN_TOKEN", ADMIN)
    settings = AuditSettings(sinks=("stdout", "file", "store"), file="audit.jsonl", rotate_bytes=1 << 20,
                             rotate_keep=2)

    def make(clock: FakeClock) -> tuple[AuditLog, io.StringIO]:
        out = io.StringIO()
        return audit_log(settings, state_dir=tmp_path, store_url=store_url, clock=clock, stdout=out), out

    for op, audit, out in serve(lambda url: with_issuer(demo_tenant, url), store_url, keyring, tmp_path,
                                make):
        yield Audited(op, audit, out, tmp_path / "audit.jsonl", store_url)


def decisions(events: list[dict], client: str) -> list[dict]:
    return [e for e in events if e["type"] == "authorization.decision" and e["client"] == client]


def source(text: str) -> str:
    return f"policies/payments.policy:{PAYMENTS_LINES[text]}"


# --- the story ------------------------------------------------------------------------------------

def test_sign_in_a_refused_and_an_allowed_silent_authorize_are_on_record(audited: Audited) -> None:
    op = audited.op
    browser = BrowserAgent(op)
    portal = browser.sign_in("portal")
    assert portal.error is None
    op.exchange("portal", portal.params["code"])
    refused = browser.silent("payments-web")
    assert (refused.error, refused.codes) == ("interaction_required",
                                              ["mfa_required", "acr_insufficient", "consent_missing"])
    assert browser.silent("portal").params.get("code")

    events = audited.lines()
    # the sign-in: the password factor, never the password
    (sign_in,) = [e for e in events if e["type"] == "sign_in.success"]
    assert (sign_in["subject"], sign_in["outcome"], sign_in["details"]["factor"]) == ("u-alice", "success",
                                                                                     "pwd")
    assert sign_in["endpoint"] == "/login" and sign_in["ip"] == "127.0.0.1" and sign_in["request_id"]
    # the portal: first interactive (no session), then after the interaction, then silently allowed
    portal_events = decisions(events, "portal")
    assert [(e["details"]["silent"], e["outcome"], [r["code"] for r in e["reasons"]])
            for e in portal_events] == [(False, "login_required", ["no_session"]), (False, "allow", []),
                                        (True, "allow", [])]
    assert portal_events[-1]["subject"] == "u-alice" and portal_events[-1]["session"]
    # payments: refused silently, every reason with the policy line behind it
    (payments,) = decisions(events, "payments-web")
    assert (payments["outcome"], payments["subject"], payments["details"]["silent"],
            payments["details"]["policy"]) == ("interaction_required", "u-alice", True, "payments")
    got = [(r["code"], r["source"]) for r in payments["reasons"]]
    assert list(dict.fromkeys(code for code, _ in got)) == refused.codes  # what the client was told
    assert got[:3] == [("mfa_required", source("require mfa")),
                       ("acr_insufficient", source('require acr "urn:policy-sso:loa:2"')),
                       ("consent_missing", source('require consent "openid", "profile"'))]
    # (a decision may add a consent_missing of the requested scopes, at the policy's own line)
    assert all(s.startswith("policies/payments.policy:") for _, s in got)
    assert all(r["required"] and r["observed"] for r in payments["reasons"])
    # the tokens the portal got for the code
    (issued,) = [e for e in events if e["type"] == "token.issued"]
    assert (issued["client"], issued["subject"], issued["details"]["issued"]) == (
        "portal", "u-alice", ["access_token", "id_token"])
    # one session throughout (the sign-in made it; both silent requests used it)
    assert portal_events[-1]["session"] == payments["session"]

    # the file sink holds the same lines; the admin API the same events
    assert [json.loads(line) for line in audited.file.read_text().splitlines()] == events
    answer = audited.events(subject="alice", client="payments-web", type="authorization.decision")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"events": [payments], "next_cursor": None}
    everything = audited.events(limit="500").json()["events"]
    assert everything == sorted(events, key=lambda e: (e["time"], e["id"]), reverse=True)


def test_why_could_alice_not_get_into_payments(audited: Audited, capsys: pytest.CaptureFixture) -> None:
    browser = BrowserAgent(audited.op)
    browser.sign_in("portal")
    assert browser.silent("payments-web").error == "interaction_required"
    audited.lines()
    audited.op.clock.advance(3600 * 5)
    status = cli(["events", "--config", str(DEMO), "--store", audited.store_url, "--subject", "alice",
                  "--client", "payments-web", "--since", "-1d", "--now", str(audited.op.clock.now)])
    out = capsys.readouterr().out
    assert status == 0
    first, *reasons = out.splitlines()
    assert "authorization.decision  interaction_required  client=payments-web  subject=u-alice" in first
    assert "silent" in first and "policy=payments" in first
    assert re.match(r"\s+mfa_required\s+policies/payments.policy:\d+$", reasons[0])
    codes = [line.split()[0] for line in reasons if not line.strip().startswith("required")]
    assert list(dict.fromkeys(codes)) == ["mfa_required", "acr_insufficient", "consent_missing"]
    status = cli(["events", "--config", str(DEMO), "--store", audited.store_url, "--subject", "alice",
                  "--client", "payments-web", "--format", "json", "--since", "-1h",
                  "--now", str(audited.op.clock.now)])
    assert status == 0 and json.loads(capsys.readouterr().out) == {"events": [], "next_cursor": None}


# --- the events API ---------------------------------------------------------------------------------

def test_the_events_api_refuses_without_the_admin_token(audited: Audited) -> None:
    url = f"{audited.op.url}/admin/v1/events"
    for headers in ({}, {"Authorization": "Bearer not-the-admin-token-42"},
                    {"Authorization": f"Basic {ADMIN}"}):
        resp = requests.get(url, headers=headers, timeout=10)
        assert resp.status_code == 401, headers
        assert resp.json()["error"] == "invalid_token" and resp.json()["error_description"]
    refused = [e for e in audited.lines() if e["type"] == "admin.refused"]
    assert len(refused) == 3 and all(e["endpoint"] == "/admin/v1/events" for e in refused)
    assert ADMIN not in audited.stdout.getvalue() and "not-the-admin" not in audited.stdout.getvalue()


def _emit(audit: AuditLog, n: int, start: int, **fields: Any) -> None:
    for i in range(n):
        audit.emit(AuditEvent("token.issued", start + i // 4, outcome="success", **fields))


def test_the_events_api_filters_and_bounds_its_pages(audited: Audited) -> None:
    t0 = audited.op.clock.now
    _emit(audited.audit, 120, t0 - 1000, client="portal", subject="u-alice")
    _emit(audited.audit, 30, t0 - 500, client="docs", subject="u-bob")
    audited.lines()
    page = audited.events().json()
    assert len(page["events"]) == 50 and page["next_cursor"]
    assert len(audited.events(limit="500").json()["events"]) == 150
    for bad in ("0", "501", "-1", "x"):
        resp = audited.events(limit=bad)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", bad
    assert {e["client"] for e in audited.events(subject="u-bob", limit="500").json()["events"]} == {"docs"}
    assert len(audited.events(client="portal", limit="500").json()["events"]) == 120
    assert len(audited.events(type="token.*", limit="500").json()["events"]) == 150
    assert audited.events(type="sign_in.success").json()["events"] == []
    window = audited.events(since=str(t0 - 500), until=str(t0 - 496), limit="500").json()["events"]
    assert len(window) == 20 and all(t0 - 500 <= e["time"] <= t0 - 496 for e in window)
    assert audited.events(cursor="garbage!").status_code == 400


def test_pagination_stays_stable_while_events_are_written(audited: Audited) -> None:
    t0 = audited.op.clock.now
    _emit(audited.audit, 90, t0 - 100, client="portal")
    audited.lines()
    expected = [e["id"] for e in audited.events(limit="500").json()["events"]]
    browser = BrowserAgent(audited.op)
    seen: list[str] = []
    cursor = None
    for _ in range(50):
        params = {"limit": "7", **({"cursor": cursor} if cursor else {})}
        page = audited.events(**params).json()
        seen += [e["id"] for e in page["events"]]
        # meanwhile: requests that are audited, and events at the newest time and later
        assert browser.silent("portal").error == "login_required"
        _emit(audited.audit, 3, t0 + 1, client="docs")
        audited.op.clock.advance(1)
        audited.audit.flush()
        cursor = page["next_cursor"]
        if cursor is None:
            break
    newer = len(audited.events(limit="500").json()["events"]) - len(expected)
    assert seen == expected and newer > 0


# --- no secret in any event or log line ---------------------------------------------------------------

def test_no_secret_appears_in_any_event_or_log_line(audited: Audited,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    op = audited.op
    secrets_seen: set[str] = {PASSWORDS["alice"], op.secret("portal"), op.secret("portal-backend"),
                              op.secret("payments-web"), ADMIN}
    browser = BrowserAgent(op)

    def keep_cookies(resp: requests.Response, *args: Any, **kwargs: Any) -> None:
        secrets_seen.update(c.value for c in resp.cookies if c.value)

    browser.http.hooks["response"].append(keep_cookies)
    caplog.set_level(logging.DEBUG)
    # browser: sign-in with consent, a wrong password, a second factor, code exchanges, refresh, logout
    wrong = browser.follow(browser.authorize_request("portal"))
    browser.submit(wrong, {"username": "alice", "password": "not-her-password-123"})
    secrets_seen.add("not-her-password-123")
    portal = browser.sign_in("portal", scope="openid profile offline_access")
    secrets_seen.add(portal.params["code"])
    tokens = op.exchange("portal", portal.params["code"])
    secrets_seen.update(v for k, v in tokens.items() if k.endswith("_token"))
    refreshed = op.token("portal", grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
    secrets_seen.update(v for k, v in refreshed.items() if k.endswith("_token"))
    reuse = op.token("portal", grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert reuse.status_code == 400
    secrets_seen.add(op.totp("alice"))
    payments = browser.sign_in("payments-web")
    assert payments.error is None, payments.params
    secrets_seen.add(payments.params["code"])
    secrets_seen.update(v for k, v in op.exchange("payments-web", payments.params["code"]).items()
                        if k.endswith("_token"))
    # backend: a client token, a password sign-in, silent authenticate, logout by session id
    backend = op.token("portal-backend", grant_type="client_credentials").json()["access_token"]
    secrets_seen.add(backend)
    headers = {"Authorization": f"Bearer {backend}"}
    signed = requests.post(f"{op.url}/v1/auth/password", headers=headers, timeout=10,
                           json={"username": "bob", "password": PASSWORDS["bob"]}).json()
    secrets_seen.update([PASSWORDS["bob"], signed["session_id"], signed.get("access_token", "x" * 20)])
    authn = requests.post(f"{op.url}/v1/auth/session/authenticate", json={"session_id": signed["session_id"]},
                          headers=headers, timeout=10)
    assert authn.status_code == 200, authn.text
    secrets_seen.update(v for k, v in authn.json().items() if k.endswith("_token"))
    assert requests.post(f"{op.url}/v1/auth/session/logout", json={"session_id": signed["session_id"]},
                         headers=headers, timeout=10).status_code == 204
    gone = requests.post(f"{op.url}/v1/auth/session/authenticate", json={"session_id": signed["session_id"]},
                         headers=headers, timeout=10)
    answer = (gone.status_code, gone.json()["error"], gone.json()["reason"])
    assert answer == (400, "session_not_found", "logged_out"), gone.text
    # RP-initiated logout with the id_token_hint
    browser.get("/logout", id_token_hint=tokens["id_token"])

    events = audited.lines()
    kinds = {e["type"] for e in events}
    assert {"sign_in.failure", "sign_in.success", "second_factor.success", "consent.granted",
            "authorization.decision", "token.issued", "token.refreshed", "token.refresh_reuse",
            "backend.session_authenticate", "logout.backend_session", "logout.rp_initiated"} <= kinds
    refused = [e for e in events if e["type"] == "backend.session_authenticate" and e["outcome"] != "allow"]
    assert [[r["code"] for r in e["reasons"]] for e in refused] == [["logged_out"]]
    (reuse,) = [e for e in events if e["type"] == "token.refresh_reuse"]
    assert (reuse["subject"], reuse["client"]) == ("u-alice", "portal")  # whose family was revoked
    texts = {"stdout": audited.stdout.getvalue(), "file": audited.file.read_text(),
             "api": audited.events(limit="500").text,
             # the server's log lines (urllib3's are the test client's own, the URLs it was asked to get)
             "logs": "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
                                if not r.name.startswith("urllib3"))}
    secrets_seen.discard("")
    for name, text in texts.items():
        for secret in secrets_seen:
            if secret.isdigit():  # a TOTP code: as a number of its own, not inside a timestamp
                assert not re.search(rf"(?<!\d){secret}(?!\d)", text), (name, "TOTP code")
            else:
                assert secret not in text, (name, secret[:6] + "…")


# --- a stalled sink never holds up a request ----------------------------------------------------------

class StalledSink:
    name = "stalled"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()

    def write(self, records: Sequence[Record]) -> None:
        self.entered.set()
        self.release.wait(60)

    def close(self) -> None:
        self.release.set()


def test_a_stalled_sink_never_makes_requests_wait(demo_tenant: Tenant, keyring: Any, tmp_path: Path) -> None:
    sink = StalledSink()

    def make(clock: FakeClock) -> tuple[AuditLog, io.StringIO]:
        return AuditLog([sink], queue_size=8, clock=clock), io.StringIO()

    try:
        for op, audit, _ in serve(lambda url: with_issuer(demo_tenant, url), f"sqlite:///{tmp_path}/op.db",
                                  keyring, tmp_path, make):
            browser = BrowserAgent(op)
            assert browser.silent("portal").error == "login_required"
            assert sink.entered.wait(10)  # the writer is stuck in the sink from here on
            slowest = 0.0
            for _ in range(40):
                started = time.monotonic()
                assert browser.silent("portal").error == "login_required"
                slowest = max(slowest, time.monotonic() - started)
            assert slowest < 5.0  # a request that waited on the sink would hang for a minute
            assert audit.stats()["dropped"] >= 40 - 8
            metrics = requests.get(f"{op.url}/metrics", timeout=10).text
            dropped = re.search(r"^policy_sso_audit_events_dropped_total (\S+)$", metrics, re.M)
            assert dropped and float(dropped.group(1)) >= 32
    finally:
        sink.release.set()


# --- admin actions, reloads, every kind of logout, rate-limit refusals -----------------------------------

def test_admin_actions_reloads_logouts_and_refusals_are_on_record(keyring: Any, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLICY_SSO_ADMIN_TOKEN", ADMIN)
    tenant_dir = tmp_path / "tenant"
    shutil.copytree(DEMO, tenant_dir, ignore=shutil.ignore_patterns("tests", "yaml"))

    receiver = LogoutReceiver()

    def holder_at(url: str) -> TenantHolder:
        clients = tenant_dir / "clients.yaml"
        clients.write_text(clients.read_text().replace(
            "    scopes: [openid, profile, email, offline_access]\n\n  - client_id: portal-backend",
            "    scopes: [openid, profile, email, offline_access]\n"
            f"    backchannel_logout_uri: {receiver.url}\n\n  - client_id: portal-backend", 1))
        config = tenant_dir / "tenant.yaml"
        text = config.read_text().replace("issuer: http://127.0.0.1:8080", f"issuer: {url}")
        config.write_text(text.replace("silent_auth: {requests: 60, window: 1m}",
                                       "silent_auth: {requests: 3, window: 1m}"))
        return TenantHolder(load_tenant(tenant_dir))

    def make(clock: FakeClock) -> tuple[AuditLog, io.StringIO]:
        out = io.StringIO()
        settings = AuditSettings(sinks=("stdout", "store"))
        return audit_log(settings, state_dir=tmp_path, store_url=f"sqlite:///{tmp_path}/op.db", clock=clock,
                         stdout=out), out

    def admin(op: LiveOP, path: str, body: dict | None = None) -> requests.Response:
        return requests.post(f"{op.url}{path}", json=body, headers={"Authorization": f"Bearer {ADMIN}"},
                             timeout=10)

    for op, audit, out in serve(holder_at, f"sqlite:///{tmp_path}/op.db", keyring, tmp_path, make):
        alice, bob = BrowserAgent(op), BrowserAgent(op)
        alice.sign_in("portal")
        bob.sign_in("portal", "bob")
        assert admin(op, "/admin/v1/users/u-alice/sessions/logout").json()["sessions_ended"] == 1
        assert len(receiver.wait_for(1)) == 1  # the portal heard of it
        new_password = {"password": "a brand new secret"}
        assert admin(op, "/admin/v1/users/u-bob/password", new_password).status_code == 200
        assert admin(op, "/admin/v1/policies/reload").status_code == 200
        (tenant_dir / "portal.policy").write_text('policy "portal" {\n  require acr "no-such-level"\n}\n')
        assert admin(op, "/admin/v1/policies/reload").status_code == 422
        carol = BrowserAgent(op)
        carol.sign_in("portal", "carol")
        carol.get("/logout", id_token_hint="not-a-token")  # refused: shown, nothing ends
        answers = [carol.silent("portal").error for _ in range(4)]
        assert answers[-1] == "temporarily_unavailable"
        deadline = time.monotonic() + 10  # deliveries are recorded when the notifier's thread is done
        while out.getvalue().count("backchannel.delivery") < 2 and time.monotonic() < deadline:
            audit.flush()
            time.sleep(0.05)
        assert audit.flush()
        events = [json.loads(line) for line in out.getvalue().splitlines()]
    receiver.close()

    def of(kind: str) -> list[dict]:
        return [e for e in events if e["type"] == kind]

    assert [(e["subject"], e["details"]["reason"], e["details"]["sessions_ended"])
            for e in of("admin.sessions_ended")] == [("u-alice", "ended_by_admin", 1),
                                                     ("u-bob", "password_changed", 1)]
    assert [e["subject"] for e in of("logout.admin")] == ["u-alice"]
    (password,) = of("admin.password_set")
    assert password["subject"] == "u-bob" and "a brand new secret" not in out.getvalue()
    assert [e["subject"] for e in of("logout.password_changed")] == ["u-bob"]
    # the password change reloads users.yaml, then the two reloads asked for
    assert [e["outcome"] for e in of("policy.reload")] == ["accepted", "accepted", "rejected"]
    *_, accepted, rejected = of("policy.reload")
    assert (accepted["outcome"], accepted["details"]["diagnostics_total"]) == ("accepted", 0)
    assert rejected["outcome"] == "rejected" and rejected["details"]["diagnostics"]
    assert all({"file", "line", "code", "message"} <= set(d) for d in rejected["details"]["diagnostics"])
    assert any(d["code"] == "E_UNKNOWN_ACR" for d in rejected["details"]["diagnostics"])
    # alice's sessions ended by the admin, bob's by his password change: the portal heard of both
    assert [(e["client"], e["outcome"]) for e in of("backchannel.delivery")] == [("portal", "delivered")] * 2
    (refused,) = of("rate_limit.refused")
    assert (refused["details"]["kind"], refused["outcome"], refused["endpoint"]) == (
        "silent_auth", "refused", "/authorize")


def test_a_flood_without_a_session_is_bounded_and_its_refusals_sampled(audited: Audited) -> None:
    # one client asking /authorize with no session 350 times a second wrote a row for each (attack review)
    from policy_sso.config import DEFAULT_RATE_LIMITS

    op, limit = audited.op, DEFAULT_RATE_LIMITS["authorize"]  # the demo tenant keeps the default
    assert "authorize" not in op.tenant.settings.rate_limits and (limit.requests, limit.window) == (120, 60)
    http = requests.Session()
    answers = [http.get(f"{op.url}/authorize", allow_redirects=False, timeout=10,
                        params={"client_id": "portal", "redirect_uri": "http://127.0.0.1:9001/callback",
                                "response_type": "code", "scope": "openid", "state": f"s{i}"})
               for i in range(limit.requests + 30)]
    assert all(a.status_code == 302 for a in answers)
    refused = [a for a in answers if "error=temporarily_unavailable" in a.headers["Location"]]
    assert len(refused) == 30 and answers[-1].headers["Location"].startswith("http://127.0.0.1:9001/")
    events = audited.lines()
    assert len(decisions(events, "portal")) == limit.requests  # each request let through is on record
    (first,) = [e for e in events if e["type"] == "rate_limit.refused"]  # 30 refusals, one event
    assert first["details"] == {"kind": "authorize"} and first["ip"] == "127.0.0.1"
    op.clock.advance(limit.window)  # the next window: the next refusal's event counts those not written
    for _ in range(limit.requests + 1):
        http.get(f"{op.url}/authorize", allow_redirects=False, timeout=10,
                 params={"client_id": "portal", "redirect_uri": "http://127.0.0.1:9001/callback",
                         "response_type": "code", "scope": "openid", "state": "t"})
    *_, second = [e for e in audited.lines() if e["type"] == "rate_limit.refused"]
    assert second["details"] == {"kind": "authorize", "suppressed": 29}


def test_a_signed_in_flood_is_bounded_per_session_and_client(audited: Audited) -> None:
    # with a session the address's bucket is not used: a session has its own for each client (attack review)
    from policy_sso.config import DEFAULT_RATE_LIMITS

    op, limit = audited.op, DEFAULT_RATE_LIMITS["authorize"]
    browser = BrowserAgent(op)
    browser.sign_in("portal", "bob")
    answers = [browser.authorize_request("portal", prompt="login", state=f"s{i}")
               for i in range(limit.requests + 5)]
    refused = [a for a in answers if a.status_code == 302
               and "error=temporarily_unavailable" in a.headers.get("Location", "")]
    assert len(refused) == 5 and refused[-1] is answers[-1]
    assert browser.authorize_request("docs", prompt="login").status_code != 429  # another client's bucket
