"""A client's governing policy is never an accident (issue 12, acceptance 2).

For generated tenants (clients named by a policy, opting in with ``policy:``
in clients.yaml, named by two policies, or by none), a set that validates
clean governs every client exactly as written and leaves no client on the
default policy unless clients.yaml says so; a set that breaks those rules does
not validate. And the policy ``explain`` reports for a client is the one
``/authorize`` enforces: the generated policies answer a password-only silent
sign-in differently, so an answer from any other policy would show.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import falcon.testing
import pytest
import yaml
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from policy_sso.cli import main
from policy_sso.compile import compile_policy
from policy_sso.oidc.keys import KeyRing
from policy_sso.request import AuthRequest
from policy_sso.sessions.model import AuthEvent, Session
from policy_sso.sessions.store import open_store
from policy_sso.tenant import check_tenant
from server.app import create_app

ISSUER = "http://127.0.0.1:8080"
NOW = 1_800_000_000
TENANT = f"""\
issuer: {ISSUER}
acr_levels:
  - {{id: loa1, requires: {{amr: {{any_of: [pwd, otp, hwk]}}}}}}
  - {{id: loa2, requires: {{mfa: true}}}}
methods: [pwd, otp, hwk]
"""
_DEMO_USERS = yaml.safe_load((Path(__file__).resolve().parents[1] / "policies" / "users.yaml").read_text())
USERS = yaml.safe_dump({"users": [u for u in _DEMO_USERS["users"] if u["sub"] == "u-bob"]})  # no TOTP file
# What a policy may require; each policy of a tenant takes a different combination.
FEATURES = ('  require amr any_of "hwk"\n', "  require mfa\n", '  require consent "openid", "email"\n',
            '  require acr "loa2"\n')
ON_UNMET = ("login_required", "interaction_required", "unmet_authentication_requirements")
SIGNATURES = [(features, on_unmet) for on_unmet in ON_UNMET
              for features in range(1, 1 << len(FEATURES))]

# How a client gets (or fails to get) its policy.
NAMED, OPTS_IN_DEFAULT, OPTS_IN_NAMED, NOTHING, NAMED_TWICE, NAMED_AND_KEY = (
    "named", "policy: default", "policy: NAME", "nothing", "named twice", "named and a key")


def _policy(name: str, signature: tuple[int, str], clients: list[str]) -> str:
    features, on_unmet = signature
    body = "".join(f for i, f in enumerate(FEATURES) if features >> i & 1)
    listed = f"  clients {', '.join(repr(c).replace(chr(39), chr(34)) for c in clients)}\n" if clients else ""
    return f'policy "{name}" {{\n{listed}{body}  on_unmet {on_unmet}\n}}\n'


@st.composite
def tenants(draw: st.DrawFn) -> tuple[dict[str, str], dict[str, str | None]]:
    """Return a tenant's files and, per client, the policy it should be governed by (None: an error)."""
    count = draw(st.integers(1, 3))
    signatures = draw(st.lists(st.sampled_from(SIGNATURES), min_size=count + 1, max_size=count + 1,
                               unique=True))
    names = [f"p{i}" for i in range(count)]
    ways = draw(st.lists(st.sampled_from([NAMED, NAMED, OPTS_IN_DEFAULT, OPTS_IN_NAMED, NOTHING,
                                          NAMED_TWICE, NAMED_AND_KEY]), min_size=1, max_size=5))
    listed: dict[str, list[str]] = {name: [] for name in names}
    clients_yaml = ["clients:"]
    expected: dict[str, str | None] = {}
    for i, way in enumerate(ways):
        client = f"c{i}"
        key = ""
        target = draw(st.sampled_from(names))
        if way in (NAMED, NAMED_TWICE, NAMED_AND_KEY):
            listed[target].append(client)
        if way == NAMED_TWICE:
            others = [n for n in names if n != target]
            assume(others)
            listed[draw(st.sampled_from(others))].append(client)
        if way == OPTS_IN_DEFAULT:
            key = ", policy: default"
        elif way == OPTS_IN_NAMED:
            key = f", policy: {target}"
        elif way == NAMED_AND_KEY:
            key = f", policy: {draw(st.sampled_from(names))}"  # agrees with the list, or conflicts
        clients_yaml.append(f'  - {{client_id: {client}, type: public, redirect_uris: ["http://127.0.0.1:9{i:03d}/cb"]'
                            f", scopes: [openid, profile, email]{key}}}")
        expected[client] = {NAMED: target, OPTS_IN_DEFAULT: "default", OPTS_IN_NAMED: target,
                            NOTHING: None, NAMED_TWICE: None,
                            NAMED_AND_KEY: target if key.endswith(f" {target}") else None}[way]
    files = {"tenant.yaml": TENANT, "clients.yaml": "\n".join(clients_yaml) + "\n", "users.yaml": USERS,
             "default.policy": _policy("default", signatures[-1], [])}
    for name, signature in zip(names, signatures, strict=False):
        files[f"{name}.policy"] = _policy(name, signature, listed[name])
    return files, expected


@pytest.fixture(scope="module")
def keyring() -> Iterator[KeyRing]:
    with tempfile.TemporaryDirectory() as state:
        yield KeyRing.load_or_create(Path(state), ("RS256", "ES256", "EdDSA"))


def _session() -> Session:
    return Session(secrets.token_urlsafe(32), "u-bob", NOW - 600, NOW - 60, (AuthEvent("pwd", NOW - 600),))


def _authorize(client: falcon.testing.TestClient, client_id: str, index: int, session_id: str) -> tuple:
    """Return (error, codes) of a silent sign-in at /authorize: what the client's redirect_uri receives."""
    params = {"client_id": client_id, "redirect_uri": f"http://127.0.0.1:9{index:03d}/cb",
              "response_type": "code", "scope": "openid", "state": "s", "nonce": "n", "prompt": "none",
              "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",  # public clients: PKCE
              "code_challenge_method": "S256"}
    resp = client.simulate_get("/authorize", params=params, cookies={"psso_session": session_id})
    assert resp.status_code in (302, 303), resp.text
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(resp.headers["Location"]).query))
    return query.get("error", "allow"), tuple(query.get("error_description", "").split())


def _explained_policy(directory: Path, client_id: str, session_file: Path, capsys) -> str:
    status = main(["explain", "--config", str(directory), "--client", client_id,
                   "--session", str(session_file), "--request", "scope=openid&prompt=none", "--at", str(NOW)])
    out = capsys.readouterr().out
    assert status in (0, 1), out
    first = out.splitlines()[0]  # "client c0 -> policy p1 (p1.policy:1)"
    return first.split(" -> policy ")[1].split(" ")[0]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(example=tenants())
def test_explain_reports_the_policy_authorize_enforces_and_nothing_is_governed_by_accident(
        example, keyring, capsys) -> None:
    files, expected = example
    with tempfile.TemporaryDirectory() as raw:
        directory = Path(raw)
        for name, text in files.items():
            (directory / name).write_text(text)
        tenant, diagnostics = check_tenant(directory)
        errors = [d for d in diagnostics if d.severity == "error"]
        event("refused" if None in expected.values() else "served")
        if None in expected.values():
            # a client with no policy, or with two: never loaded, never served
            assert tenant is None and errors, files
            assert {d.code for d in errors} <= {"E_NO_POLICY", "E_DUPLICATE_CLIENT", "E_POLICY_CONFLICT"}
            return
        assert tenant is not None, [str(d) for d in errors]
        governed = {c: tenant.policy_for(c).name for c in tenant.clients}
        assert governed == expected
        on_default = {c for c, p in governed.items() if p == "default"}
        assert on_default == {c for c, p in expected.items() if p == "default"}  # only those that opted in

        # the policies answer this silent sign-in differently: any other policy's answer would show
        session = _session()
        answers = {}
        for name, policy in tenant.policies.items():
            request = AuthRequest("c0", frozenset({"openid"}), prompt=frozenset({"none"}))
            decision = compile_policy(policy, tenant.settings, tenant.clients["c0"]).decide(
                request, replace(session, consents={"c0": frozenset({"openid"})}), NOW)
            answers[name] = (decision.outcome, decision.codes)
        assume(len(set(answers.values())) == len(answers))

        store = open_store("memory://", tenant.settings.lifetime)
        app = falcon.testing.TestClient(create_app(tenant, store, keyring, clock=lambda: NOW))
        session_file = directory / "session.json"
        for index, client_id in enumerate(sorted(tenant.clients, key=lambda c: int(c[1:]))):
            browser_session = replace(_session(), consents={client_id: frozenset({"openid"})})
            store.create_session(browser_session)
            session_file.write_text(json.dumps({
                "subject": "u-bob", "events": [{"method": "pwd", "at": NOW - 600}], "last_seen": NOW - 60,
                "consents": {client_id: ["openid"]}}))
            explained = _explained_policy(directory, client_id, session_file, capsys)
            assert explained == expected[client_id]
            enforced = _authorize(app, client_id, index, browser_session.id)
            policy = tenant.policies[explained]
            request = AuthRequest(client_id, frozenset({"openid"}), prompt=frozenset({"none"}))
            own = compile_policy(policy, tenant.settings, tenant.clients[client_id]).decide(
                request, browser_session, NOW)
            assert enforced == (own.outcome, own.codes), (client_id, explained)
        store.close()
