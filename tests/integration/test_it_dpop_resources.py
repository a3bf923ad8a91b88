"""A DPoP-bound access token is used only with the DPoP scheme and a proof, at every endpoint that takes
one from its holder (RFC 9449 §7.1, §7.2): over real HTTP, proofs made and tokens read with joserfc.

The story: the SPA holds a DPoP-bound token from the PAR + DPoP flow. Whoever steals the token cannot
sign alice out with it as a Bearer token at POST /v1/auth/logout, nor with a proof made for another
call, by another key or replayed: each is 401 with a DPoP challenge and her session lives on. The SPA,
with a proof of that very call, signs her out: 204, the session is gone and the token is revoked.
Introspection stays a client's question: a resource server asks about the bound token without a proof.
"""

from __future__ import annotations

import base64

import pytest
import requests
from live_op import BrowserAgent, LiveOP
from test_it_par_dpop import CALLBACK, Prover, access_claims, sign_in_pushed, tenant_for

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")  # joserfc: RFC 9864 renames EdDSA
__all__ = ["tenant_for"]  # the fixture: a demo tenant with the PAR + DPoP public client
LOGOUT = "/v1/auth/logout"


def bound_token(op: LiveOP, browser: BrowserAgent) -> tuple[Prover, str]:
    """Return the SPA's prover and a DPoP-bound access token for alice's browser session."""
    cb, verifier, _ = sign_in_pushed(op, browser)
    app = Prover(op)
    resp = app.token(grant_type="authorization_code", code=cb.params["code"], redirect_uri=CALLBACK,
                     code_verifier=verifier)
    assert resp.status_code == 200 and resp.json()["token_type"] == "DPoP", resp.text
    token = resp.json()["access_token"]
    claims = access_claims(op, token)
    assert claims["cnf"] == {"jkt": app.jkt} and claims.get("sid"), claims
    return app, token


def logout(op: LiveOP, token: str, *, scheme: str = "DPoP", proof: str | None = None) -> requests.Response:
    headers = {"Authorization": f"{scheme} {token}"}
    if proof is not None:
        headers["DPoP"] = proof
    return requests.post(f"{op.url}{LOGOUT}", headers=headers, timeout=10)


def session_alive(browser: BrowserAgent) -> bool:
    status = browser.get("/v1/auth/session/status", client_id="portal")
    assert status.status_code == 200, status.text
    return status.json()["active"]


def assert_dpop_refusal(resp: requests.Response, case: str) -> None:
    assert resp.status_code == 401, (case, resp.status_code, resp.text)
    assert resp.json()["error"] in ("invalid_token", "invalid_dpop_proof"), (case, resp.json())
    assert resp.json()["error_description"], case
    challenge = resp.headers["WWW-Authenticate"]
    # RFC 9449 §7.1: the DPoP scheme's challenge, with the algorithms a proof may use and the error
    assert challenge.startswith("DPoP "), (case, challenge)
    assert 'algs="' in challenge and f'error="{resp.json()["error"]}"' in challenge, (case, challenge)


def test_a_bound_token_signs_out_only_with_the_dpop_scheme_and_a_proof_of_that_call(
        op: LiveOP, browser: BrowserAgent) -> None:
    app, token = bound_token(op, browser)
    assert session_alive(browser)

    thief = Prover(op)
    used = app.proof("POST", LOGOUT, access_token=token)
    refused = {
        # RFC 9449 §7.2: a bound token presented as a Bearer token, with or without a proof beside it
        "bearer": logout(op, token, scheme="Bearer"),
        "bearer_with_a_proof": logout(op, token, scheme="Bearer", proof=app.proof("POST", LOGOUT,
                                                                                   access_token=token)),
        "dpop_without_a_proof": logout(op, token),
        "proof_for_userinfo": logout(op, token, proof=app.proof("POST", "/userinfo", access_token=token)),
        "proof_for_get": logout(op, token, proof=app.proof("GET", LOGOUT, access_token=token)),
        "proof_without_ath": logout(op, token, proof=app.proof("POST", LOGOUT)),
        "proof_by_another_key": logout(op, token, proof=thief.proof("POST", LOGOUT, access_token=token)),
        "proof_too_old": logout(op, token, proof=app.proof("POST", LOGOUT, access_token=token,
                                                            iat=op.clock.now - 300)),
    }
    for case, resp in refused.items():
        assert_dpop_refusal(resp, case)
        assert session_alive(browser), case  # nothing refused ended the session
    assert refused["bearer"].json()["error"] == "invalid_token"
    assert "DPoP scheme" in refused["bearer"].json()["error_description"]
    assert app.userinfo(token).status_code == 200  # nor revoked the token

    # the holder, with a proof of this call: 204, the session ends and the token is revoked
    assert logout(op, token, proof=used).status_code == 204
    assert not session_alive(browser)
    after = app.userinfo(token)
    assert after.status_code == 401 and after.headers["WWW-Authenticate"].startswith("DPoP ")
    # the spent proof is not accepted twice (RFC 9449 §11.1)
    assert_dpop_refusal(logout(op, token, proof=used), "replayed")


def test_a_bound_token_is_refused_as_bearer_at_userinfo_and_the_backend_client_api(
        op: LiveOP, browser: BrowserAgent) -> None:
    app, token = bound_token(op, browser)
    for method in ("GET", "POST"):
        resp = requests.request(method, f"{op.url}/userinfo", headers={"Authorization": f"Bearer {token}"},
                                timeout=10)
        assert_dpop_refusal(resp, f"userinfo {method}")
        assert resp.json()["error"] == "invalid_token"
    in_body = requests.post(f"{op.url}/userinfo", data={"access_token": token}, timeout=10)
    assert_dpop_refusal(in_body, "userinfo form body")
    # the backend client API takes client_credentials tokens only: a user's bound token is no client's
    api = requests.post(f"{op.url}/v1/auth/session/authenticate", json={"session_id": "x"}, timeout=10,
                        headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 401 and api.json()["error"] == "invalid_token"
    assert session_alive(browser)
    assert app.userinfo(token).status_code == 200  # the holder, with the DPoP scheme and a proof


def test_introspection_is_the_clients_question_and_needs_no_proof(op: LiveOP, browser: BrowserAgent) -> None:
    app, token = bound_token(op, browser)
    seen = op.post_as("portal", "/introspect", token=token).json()
    assert seen["active"] is True and seen["token_type"] == "DPoP" and seen["cnf"] == {"jkt": app.jkt}


def test_a_client_credentials_token_is_bound_by_a_proof_and_the_backend_api_holds_it_to_it(
        op: LiveOP) -> None:
    """RFC 9449 §5: a proof in any token request is checked and binds what is issued; the backend
    client API then takes that token with the DPoP scheme and a proof of the call only (§7.1, §7.2)."""
    basic = "Basic " + base64.b64encode(f"portal-backend:{op.secret('portal-backend')}".encode()).decode()

    def token(proof: str) -> requests.Response:
        return requests.post(f"{op.url}/token", data={"grant_type": "client_credentials"}, timeout=10,
                             headers={"Authorization": basic, "DPoP": proof})

    for garbage in ("garbage", "a.b.c"):
        refused = token(garbage)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_dpop_proof", refused.text
    app = Prover(op)
    issued = token(app.proof("POST", "/token"))
    assert issued.status_code == 200 and issued.json()["token_type"] == "DPoP", issued.text
    bound = issued.json()["access_token"]
    assert access_claims(op, bound)["cnf"] == {"jkt": app.jkt}

    path = "/v1/auth/session/logout"  # 204 for a session that is not there: the call is the client's
    as_bearer = requests.post(f"{op.url}{path}", json={"session_id": "gone"}, timeout=10,
                              headers={"Authorization": f"Bearer {bound}"})
    assert_dpop_refusal(as_bearer, "backend API, Bearer")
    proved = requests.post(f"{op.url}{path}", json={"session_id": "gone"}, timeout=10,
                           headers={"Authorization": f"DPoP {bound}",
                                    "DPoP": app.proof("POST", path, access_token=bound)})
    assert proved.status_code == 204, proved.text
    wrong_call = requests.post(f"{op.url}{path}", json={"session_id": "gone"}, timeout=10,
                               headers={"Authorization": f"DPoP {bound}",
                                        "DPoP": app.proof("POST", "/v1/auth/password", access_token=bound)})
    assert_dpop_refusal(wrong_call, "backend API, a proof of another call")
    unbound = op.token("portal-backend", grant_type="client_credentials")  # no proof: Bearer, as before
    assert unbound.json()["token_type"] == "Bearer"
    plain = requests.post(f"{op.url}{path}", json={"session_id": "gone"}, timeout=10,
                          headers={"Authorization": f"Bearer {unbound.json()['access_token']}"})
    assert plain.status_code == 204, plain.text
