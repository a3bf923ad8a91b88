"""Audit fixes over real HTTP (ops review #2, #4, #5; attack review #4; author review #1).

A login_hint_token sign-in and its refusals are on record; factor and logout
events name the client that acted; a sink that cannot be written stops
``serve`` at start and makes ``/readyz`` say not ready; a query before 1970
is the caller's mistake (400), not a store fault; an ID token is never signed
with another algorithm than the client's.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import requests
from live_op import DEMO, REDIRECTS, BrowserAgent, FakeClock, LiveOP, copy_demo, with_issuer, with_settings
from support import loopback_server, serving

from policy_sso.audit import AuditLog, AuditSettings
from policy_sso.audit.configure import audit_log
from policy_sso.cli.main import main as cli
from policy_sso.oidc.hint_token import mint_hint_token
from policy_sso.sessions.store import open_store
from policy_sso.tenant import Tenant
from server.app import create_app

ADMIN = "admin-token-for-audit-fix-tests-0123456789"
INTRANET = "https://intranet.example.com"
HS_KEY = (DEMO / "secrets" / "intranet-hint.key").read_bytes().strip()
SIGNED_OUT = "http://127.0.0.1:9001/signed-out"


@dataclass
class Audited:
    op: LiveOP
    audit: AuditLog
    stdout: io.StringIO

    def lines(self) -> list[dict]:
        assert self.audit.flush(), "the audit writer did not catch up"
        return [json.loads(line) for line in self.stdout.getvalue().splitlines()]

    def of(self, type_: str) -> list[dict]:
        return [e for e in self.lines() if e["type"] == type_]

    def readyz(self) -> requests.Response:
        return requests.get(f"{self.op.url}/readyz", timeout=10)

    def events(self, **params: str) -> requests.Response:
        return requests.get(f"{self.op.url}/admin/v1/events", params=params,
                            headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)


def audited_op(tenant_at: Callable[[str], Tenant], store_url: str, keyring: Any, settings: AuditSettings,
               tmp_path: Path, audit_store_url: str | None = None) -> Iterator[Audited]:
    """Serve ``tenant_at(url)`` with an audit log of ``settings`` (its stdout sink read back by the test)."""
    server = loopback_server()
    url = f"http://127.0.0.1:{server.effective_port}"
    tenant = tenant_at(url)
    clock = FakeClock()
    store = open_store(store_url, tenant.settings.lifetime)
    stdout = io.StringIO()
    audit = audit_log(settings, state_dir=tmp_path, store_url=audit_store_url or store_url, clock=clock,
                      stdout=stdout)
    server.application = create_app(tenant, store, keyring, clock=clock, audit=audit)
    try:
        with serving(server):
            yield Audited(LiveOP(url, clock, store, tenant, keyring), audit, stdout)
    finally:
        audit.close()
        store.close()


@pytest.fixture
def audited(demo_tenant: Tenant, keyring: Any, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Audited]:
    monkeypatch.setenv("POLICY_SSO_ADMIN_TOKEN", ADMIN)
    settings = AuditSettings(sinks=("stdout", "store"))
    yield from audited_op(lambda url: with_issuer(demo_tenant, url), f"sqlite:///{tmp_path}/op.db", keyring,
                          settings, tmp_path)


def call(op: LiveOP, path: str, token: str | None, body: dict | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{op.url}{path}", json=body, headers=headers, timeout=10)


# --- ops #2: login_hint_token sign-ins and refusals -------------------------------------------------

def hint(op: LiveOP, subject: str = "u-alice", key: bytes = HS_KEY) -> str:
    return mint_hint_token(key, "HS256", issuer=INTRANET, audience=op.url, subject=subject, lifetime=60,
                           now=op.clock.now)


def with_hint(browser: BrowserAgent, token: str) -> Any:
    return browser.follow(browser.authorize_request("intranet-bridge", prompt="none", login_hint_token=token))


def test_a_hint_sign_in_and_each_refused_hint_are_on_record_without_the_token(audited: Audited) -> None:
    op, browser = audited.op, BrowserAgent(audited.op)
    token = hint(op)
    answer = with_hint(browser, token)
    assert "code" in answer.params, answer.params
    (success,) = audited.of("sign_in.success")
    assert (success["client"], success["subject"], success["outcome"], success["endpoint"]) == (
        "intranet-bridge", "u-alice", "success", "/authorize")
    assert success["details"] == {"factor": "login_hint_token", "issuer": INTRANET, "amr": ["wia"]}
    assert success["session"]  # the session it signed in (its digest)

    replayed = with_hint(browser, token)
    forged = hint(op, "u-bob", key=b"not the intranet's key, but as long as one")
    refused = with_hint(browser, forged)
    assert replayed.error == refused.error == "invalid_request"
    failures = audited.of("sign_in.failure")
    assert [(e["client"], e["subject"], e["outcome"], e["details"]["factor"], e["details"]["failure"])
            for e in failures] == [("intranet-bridge", None, "failure", "login_hint_token",
                                    "invalid_hint_token")] * 2
    assert "replay" in failures[0]["details"]["description"]
    assert "signature is invalid" in failures[1]["details"]["description"]
    text = audited.stdout.getvalue()
    assert token not in text and forged not in text
    assert token.rsplit(".", 1)[1] not in text and forged.rsplit(".", 1)[1] not in text


# --- ops #4: the client that acted ------------------------------------------------------------------

def test_factor_and_backend_logout_events_name_the_client_that_acted(audited: Audited) -> None:
    op = audited.op
    portal, payments = op.client_token("portal-backend"), op.client_token("payments-api")
    signed_in = call(op, "/v1/auth/password", portal, {"username": "alice", "password": "wonderland"}).json()
    wrong = call(op, "/v1/auth/otp", payments, {"session_id": signed_in["session_id"], "code": "000000"})
    assert wrong.status_code == 400
    stepped = call(op, "/v1/auth/otp", payments, {"session_id": signed_in["session_id"], "code": op.totp()})
    assert stepped.status_code == 200, stepped.text
    factors = [(e["type"], e["client"], e["subject"]) for e in audited.lines()
               if e["type"].startswith("second_factor.")]
    assert factors == [("second_factor.failure", "payments-api", "u-alice"),
                       ("second_factor.success", "payments-api", "u-alice")]

    # ended by id: the app that asks is the one on record
    ended = call(op, "/v1/auth/session/logout", portal, {"session_id": stepped.json()["session_id"]})
    assert ended.status_code == 204
    (by_id,) = audited.of("logout.backend_session")
    assert (by_id["client"], by_id["subject"]) == ("portal-backend", "u-alice")


def test_a_logout_by_access_token_names_the_app_it_was_issued_to(audited: Audited) -> None:
    op, browser = audited.op, BrowserAgent(audited.op)
    code = with_hint(browser, hint(op, "u-bob")).params["code"]  # a session without a password's hashing
    tokens = op.exchange("intranet-bridge", code)
    assert call(op, "/v1/auth/logout", tokens["access_token"]).status_code == 204
    (by_token,) = audited.of("logout.backend_token")
    assert (by_token["client"], by_token["subject"]) == ("intranet-bridge", "u-bob")


def test_rp_initiated_logout_names_the_relying_party(audited: Audited) -> None:
    op, browser = audited.op, BrowserAgent(audited.op)
    code = browser.sign_in("portal").params["code"]
    tokens = op.exchange("portal", code)
    resp = browser.get("/logout", id_token_hint=tokens["id_token"], post_logout_redirect_uri=SIGNED_OUT)
    assert resp.status_code == 302
    (ended,) = audited.of("logout.rp_initiated")
    assert (ended["client"], ended["subject"], ended["details"]["clients"]) == ("portal", "u-alice",
                                                                                ["portal"])


def test_a_sign_in_as_another_user_names_the_client_in_the_user_switch(audited: Audited) -> None:
    op, browser = audited.op, BrowserAgent(audited.op)
    assert "code" in with_hint(browser, hint(op)).params  # alice, signed in by the intranet's hint
    assert "code" in browser.sign_in("portal", "bob", prompt="login").params
    (switched,) = audited.of("logout.user_switch")
    assert (switched["client"], switched["subject"]) == ("portal", "u-alice")


# --- ops #5: a sink that cannot be written ----------------------------------------------------------

def test_readyz_is_not_ready_while_the_file_sink_fails_and_ready_again_after(
        demo_tenant: Tenant, keyring: Any, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    settings = AuditSettings(sinks=("file", "stdout"), file=str(logs / "audit.jsonl"))
    for audited in audited_op(lambda url: with_issuer(demo_tenant, url), f"sqlite:///{tmp_path}/op.db",
                              keyring, settings, tmp_path):
        browser = BrowserAgent(audited.op)
        assert browser.silent("portal").codes == ["no_session"]  # one event, written
        assert audited.audit.flush() and (logs / "audit.jsonl").stat().st_size
        assert audited.readyz().status_code == 200
        assert audited.readyz().json()["audit"] == "ok"

        logs.rename(tmp_path / "logs.away")
        logs.write_text("not a directory")  # every write to logs/audit.jsonl fails now
        assert browser.silent("portal").codes == ["no_session"]
        assert audited.audit.flush()
        failing = audited.readyz()
        assert failing.status_code == 503, failing.text
        assert failing.json()["audit"] == "failing: file"
        assert "audit failing: file" in failing.json()["error_description"]
        assert failing.json()["store"] == "ok"  # stdout and the store go on: only the file failed

        logs.unlink()
        (tmp_path / "logs.away").rename(logs)
        assert audited.readyz().status_code == 200  # asked again: writable, so ready at once
        assert browser.silent("portal").codes == ["no_session"]
        assert audited.audit.flush()
        assert len((logs / "audit.jsonl").read_text().splitlines()) == 2  # the one in between is lost


@pytest.mark.parametrize("file", ["notadir/audit.jsonl", "readonly/audit.jsonl"], ids=["parent_is_a_file",
                                                                                      "read_only_dir"])
def test_serve_refuses_to_start_when_an_audit_sink_cannot_be_written(
        tmp_path: Path, file: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[Any] = []
    monkeypatch.setattr("server.app.serve", lambda *args, **kwargs: served.append(args))  # never listens
    monkeypatch.setattr("server.logs.configure_logging", lambda *args, **kwargs: None)  # the loggers stay
    if file.startswith("readonly") and os.geteuid() == 0:
        pytest.skip("root writes to a read-only directory")
    tenant = copy_demo(tmp_path / "tenant")
    (tmp_path / "notadir").write_text("a file")
    (tmp_path / "readonly").mkdir(mode=0o500)
    path = tmp_path / file
    with (tenant / "tenant.yaml").open("a") as config:
        config.write(f"audit:\n  sinks: [file, store]\n  file: {path}\n")
    try:
        status = cli(["serve", "--config", str(tenant), "--state-dir", str(tmp_path / "var"), "--port", "0"])
    finally:
        (tmp_path / "readonly").chmod(0o700)
    err = capsys.readouterr().err
    assert status == 1 and not served, err
    assert f"audit sink file {path} cannot be written" in err
    assert ("Not a directory" if file.startswith("notadir") else "Permission denied") in err
    assert "Traceback" not in err


# --- attack #4: times before 1970 -------------------------------------------------------------------

@pytest.mark.parametrize("store", ["sqlite", "redis"])
@pytest.mark.parametrize(("name", "value"), [("since", "1960-01-01T00:00:00Z"),
                                             ("until", "1969-12-31T23:59:59Z"), ("since", "-30000d")],
                         ids=["since_1960", "until_1969", "offset"])
def test_a_time_before_1970_is_invalid_request_on_every_store(
        demo_tenant: Tenant, keyring: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest, store: str, name: str, value: str) -> None:
    monkeypatch.setenv("POLICY_SSO_ADMIN_TOKEN", ADMIN)
    url = f"sqlite:///{tmp_path}/op.db" if store == "sqlite" else request.getfixturevalue("redis_url")
    for audited in audited_op(lambda issuer: with_issuer(demo_tenant, issuer), url, keyring,
                              AuditSettings(sinks=("store",)), tmp_path):
        BrowserAgent(audited.op).silent("portal")
        assert audited.audit.flush()
        refused = audited.events(**{name: value})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"] == "invalid_request"
        assert "1970-01-01T00:00:00Z" in refused.json()["error_description"]
        assert audited.events(since="0").status_code == 200  # the epoch itself is a time
        if store == "redis":  # a cursor that names no stream entry is forged, not a store fault
            forged = audited.events(cursor="MTAwOmFiYw")  # "100:abc"
            assert forged.status_code == 400 and forged.json()["error"] == "invalid_request", forged.text


def test_the_events_command_says_a_time_before_1970_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli(["events", "--store", f"sqlite:///{tmp_path}/op.db", "--since", "1960-01-01T00:00:00Z"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("policy-sso events: since must be from 1970-01-01T00:00:00Z"), err
    assert "Traceback" not in err and "ResponseError" not in err


# --- author #1: no algorithm but the client's -------------------------------------------------------

def test_an_id_token_is_never_signed_with_another_algorithm_than_the_clients(
        demo_tenant: Tenant, keyring: Any, tmp_path: Path) -> None:
    """docs registers EdDSA; a tenant that enables only RS256 (validate refuses it) signs nothing for it."""
    def only_rs256(url: str) -> Tenant:
        tenant = with_issuer(demo_tenant, url)
        return with_settings(tenant, tokens=replace(tenant.settings.tokens, algorithms=("RS256",)))

    for audited in audited_op(only_rs256, f"sqlite:///{tmp_path}/op.db", keyring,
                              AuditSettings(sinks=("stdout",)), tmp_path):
        op, browser = audited.op, BrowserAgent(audited.op)
        code = browser.sign_in("docs").params["code"]
        resp = op.token("docs", grant_type="authorization_code", code=code, redirect_uri=REDIRECTS["docs"])
        assert resp.status_code == 503, resp.text  # never a 500
        assert resp.json()["error"] == "server_error" and "id_token" not in resp.json()
        # the portal's RS256 is enabled: its ID tokens are as before
        portal = op.exchange("portal", browser.sign_in("portal").params["code"])
        assert op.verify_id_token(portal["id_token"], "portal")["sub"] == "u-alice"
