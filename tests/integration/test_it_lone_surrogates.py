"""A JSON ``\\ud800`` (a lone surrogate: no character) is a request error at every JSON door.

Found by an attack review: such a string went on into a store key, a client
secret's comparison or an audit event, and ended as a traceback, or as a
batch of other users' audit events never written.
"""

from __future__ import annotations

import requests
from live_op import LiveOP

LONE = '"\\ud800"'  # the JSON text of the escape, as a client sends it


def post_raw_json(op: LiveOP, path: str, body: str, token: str | None = None,
                  auth: tuple[str, str] | None = None) -> requests.Response:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    return requests.post(f"{op.url}{path}", data=body.encode(), headers=headers, auth=auth, timeout=10)


def test_the_backend_password_call_refuses_it(op: LiveOP) -> None:
    portal = op.client_token("portal-backend")
    resp = post_raw_json(op, "/v1/auth/password", f'{{"username": {LONE}, "password": "x"}}', portal)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
    assert "lone surrogate" in resp.json()["error_description"]
    fine = op.post_json("/v1/auth/password", portal, {"username": "alice", "password": "wonderland"})
    assert fine.status_code == 200, fine.text


def test_the_api_decision_refuses_it_in_a_secret_and_in_a_scope(op: LiveOP) -> None:
    token = op.client_token("portal-backend")
    secret = post_raw_json(op, "/v1/auth/api-decision",
                           f'{{"client_id": "payments-api", "client_secret": {LONE}, "token": "{token}"}}')
    scope = post_raw_json(op, "/v1/auth/api-decision", f'{{"token": "{token}", "scope": "profile \\ud800"}}',
                          auth=("payments-api", op.secret("payments-api")))
    for resp in (secret, scope):
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", resp.text
