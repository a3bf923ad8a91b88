"""The backend API's remedy for a request above the policy's level names that level, never a loop.

The reviewer's story: portal-backend asks for ``acr_values=urn:policy-sso:loa:3`` on a password
session. The remedy used to offer otp (and the backend hint ``POST /v1/auth/otp``); after the
otp the session is at loa:2, refused again with the same remedy. A hardware key is what loa:3
needs, so the remedy says loa:3 and hwk, before and after an otp.
"""

from __future__ import annotations

import requests
from live_op import LiveOP

LOA3 = "urn:policy-sso:loa:3"


def call(op: LiveOP, path: str, token: str, body: dict) -> requests.Response:
    return requests.post(f"{op.url}{path}", json=body, headers={"Authorization": f"Bearer {token}"},
                         timeout=10)


def test_a_loa3_request_is_told_loa3_and_hwk_not_otp(op: LiveOP) -> None:
    portal = op.client_token("portal-backend")
    signed_in = call(op, "/v1/auth/password", portal, {"username": "alice", "password": "wonderland"})
    assert signed_in.status_code == 200, signed_in.text
    session_id = signed_in.json()["session_id"]

    def refusal() -> dict:
        refused = call(op, "/v1/auth/session/authenticate", portal,
                       {"session_id": session_id, "scope": "openid", "acr_values": LOA3})
        assert refused.status_code == 400, refused.text
        assert [r["code"] for r in refused.json()["reasons"]] == ["acr_insufficient"]
        return refused.json()["remedy"]

    remedy = refusal()
    assert (remedy["params"], remedy["methods"]) == ({"acr_values": LOA3}, ["hwk"])
    assert "backend" not in remedy  # no POST /v1/auth/otp: it would not help
    # an app that did an otp anyway (loa:2) is told the same: loa:3 needs the hardware key
    stepped = call(op, "/v1/auth/otp", portal, {"session_id": session_id, "code": op.totp("alice")})
    assert stepped.status_code == 200, stepped.text
    session_id = stepped.json()["session_id"]
    assert refusal() == remedy
