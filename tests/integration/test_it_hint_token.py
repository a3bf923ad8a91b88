"""Forced SSO with a login_hint_token over real HTTP (issue 6, SPEC §5, the Authway seed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from live_op import DEMO, USERS_OF_TESTS, BrowserAgent, LiveOP

from policy_sso.oidc.hint_token import mint_hint_token
from policy_sso.reload import TenantHolder
from policy_sso.tenant import load_tenant

INTRANET, PARTNER, RSA_PARTNER = ("https://intranet.example.com", "https://partner.example.com",
                                  "https://rsa-partner.example.com")
HS_KEY = (DEMO / "secrets" / "intranet-hint.key").read_bytes().strip()
ES_KEY = (DEMO / "secrets" / "partner-hint.key.pem").read_bytes()
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def tenant_for(tmp_path: Path) -> Callable[[str], TenantHolder]:
    """The demo tenant plus an RS256 partner the intranet bridge trusts (for the alg-confusion case)."""
    directory = tmp_path / "tenant"
    shutil.copytree(DEMO, directory, ignore=shutil.ignore_patterns("tests", "yaml"))
    (directory / "keys" / "rsa-partner.pub.pem").write_bytes(RSA_PUBLIC)
    policy = directory / "intranet.policy"
    policy.write_text(policy.read_text().rstrip()[:-1] + f'''
  trust login_hint_token {{
    issuer "{RSA_PARTNER}"
    key file "keys/rsa-partner.pub.pem"
    alg RS256
    max_lifetime 1m
    amr "pwd"
  }}
}}
''')

    def build(url: str) -> TenantHolder:
        config = directory / "tenant.yaml"
        config.write_text(config.read_text().replace("issuer: http://127.0.0.1:8080", f"issuer: {url}"))
        return TenantHolder(load_tenant(directory))

    return build


def hint(op: LiveOP, *, issuer: str = INTRANET, subject: str = "u-alice", lifetime: int = 60,
         offset: int = 0, audience: str | None = None, jti: str | None = None) -> str:
    key, alg = {INTRANET: (HS_KEY, "HS256"), PARTNER: (ES_KEY, "ES256")}[issuer]
    return mint_hint_token(key, alg, issuer=issuer, audience=audience or op.url, subject=subject,
                           lifetime=lifetime, now=op.clock.now + offset, jti=jti)


def store_snapshot(op: LiveOP) -> dict:
    """Every user's sessions as they are (ids, events, clients): what a refusal must not change."""
    return {sub: sorted((s.id, s.events, tuple(sorted(s.clients)))
                        for s in op.store.sessions_of(sub, op.clock.now))
            for sub in USERS_OF_TESTS}


@pytest.mark.parametrize(("issuer", "amr"), [(INTRANET, ["wia"]), (PARTNER, ["pwd"])], ids=["HS256", "ES256"])
def test_a_valid_hint_signs_the_user_in(op: LiveOP, browser: BrowserAgent, issuer: str,
                                       amr: list[str]) -> None:
    answer = browser.follow(browser.authorize_request("intranet-bridge", prompt="none",
                                                      login_hint_token=hint(op, issuer=issuer)))
    assert "code" in answer.params, answer.params
    assert answer.params["iss"] == op.url
    tokens = op.token("intranet-bridge", grant_type="authorization_code", code=answer.params["code"],
                      redirect_uri="http://127.0.0.1:9004/callback").json()
    claims = op.verify_id_token(tokens["id_token"], "intranet-bridge", nonce="n-0S6")
    assert claims["sub"] == "u-alice" and claims["amr"] == amr


def test_a_hint_sign_in_records_the_device(op: LiveOP, browser: BrowserAgent) -> None:
    """The account page shows where a forced sign-in came from, as for any browser sign-in (issue 18)."""
    browser.http.headers["User-Agent"] = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Firefox/121.0"
    answer = browser.follow(browser.authorize_request("intranet-bridge", prompt="none",
                                                      login_hint_token=hint(op)))
    assert "code" in answer.params
    (session,) = op.store.sessions_of("u-alice", op.clock.now)
    assert (session.device.address, session.device.label) == ("127.0.0.1", "Firefox on Windows")


def test_the_legacy_sso_token_name(op: LiveOP, browser: BrowserAgent) -> None:
    answer = browser.follow(browser.authorize_request("intranet-bridge", prompt="none", sso_token=hint(op)))
    assert "code" in answer.params


def _hs256(claims: dict, secret: bytes, alg: str = "HS256") -> str:
    def b64(raw: bytes) -> bytes:
        return base64.urlsafe_b64encode(raw).rstrip(b"=")
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    signing_input = header + b"." + b64(json.dumps(claims).encode())
    return (signing_input + b"." + b64(hmac.new(secret, signing_input, hashlib.sha256).digest())).decode()


def _refusals(op: LiveOP) -> dict[str, tuple[str, str]]:
    now = op.clock.now
    base = {"aud": op.url, "sub": "u-alice", "iat": now, "exp": now + 60, "jti": "j"}
    return {
        "expired": (hint(op, offset=-600), "expired"),
        "not-yet-valid": (hint(op, offset=600), "not yet valid"),
        "lifetime-too-long": (hint(op, lifetime=300), "exceeds the allowed"),
        "wrong-aud": (hint(op, audience="https://elsewhere.example.com"), "aud is not this provider"),
        "untrusted-iss": (jwt.encode({**base, "iss": "https://evil.example.com"}, HS_KEY, algorithm="HS256"),
                          "is not trusted"),
        "unknown-sub": (hint(op, subject="u-mallory"), "sub does not name a known user"),
        "alg-none": (jwt.encode({**base, "iss": INTRANET}, None, algorithm="none"), "alg none"),
        "rs256-issuer-sent-hs256-with-its-public-key": (_hs256({**base, "iss": RSA_PARTNER}, RSA_PUBLIC),
                                                        "alg 'HS256' is not the configured RS256"),
        "bad-signature": (jwt.encode({**base, "iss": INTRANET}, b"k" * 48, algorithm="HS256"),
                          "signature is invalid"),
    }


REFUSAL_IDS = ["expired", "not-yet-valid", "lifetime-too-long", "wrong-aud", "untrusted-iss", "unknown-sub",
               "alg-none", "rs256-issuer-sent-hs256-with-its-public-key", "bad-signature"]


@pytest.mark.parametrize("case", REFUSAL_IDS)
def test_a_refused_hint_is_an_invalid_request_and_changes_no_session(op: LiveOP, browser: BrowserAgent,
                                                                    case: str) -> None:
    browser.sign_in("portal", "bob")
    before, cookie = store_snapshot(op), browser.session_cookie
    token, message = _refusals(op)[case]
    answer = browser.follow(browser.authorize_request("intranet-bridge", prompt="none",
                                                      login_hint_token=token))
    assert answer.error == "invalid_request"
    assert message in answer.params["error_description"]
    assert answer.params["state"] == "xyz"
    assert store_snapshot(op) == before and browser.session_cookie == cookie


def test_a_replayed_jti_is_refused(op: LiveOP, browser: BrowserAgent, new_browser) -> None:
    token = hint(op, jti="once-only")
    first = browser.follow(browser.authorize_request("intranet-bridge", login_hint_token=token))
    assert "code" in first.params
    other: BrowserAgent = new_browser()
    before = store_snapshot(op)
    replay = other.follow(other.authorize_request("intranet-bridge", login_hint_token=token))
    assert replay.error == "invalid_request" and "replay" in replay.params["error_description"]
    assert store_snapshot(op) == before and other.session_cookie is None


def test_a_client_whose_policy_trusts_no_issuer(op: LiveOP, browser: BrowserAgent) -> None:
    before = store_snapshot(op)
    answer = browser.follow(browser.authorize_request("portal", prompt="none", login_hint_token=hint(op)))
    assert answer.error == "invalid_request" and "trusts no issuer" in answer.params["error_description"]
    assert store_snapshot(op) == before


def test_an_unregistered_redirect_uri_is_never_redirected_to(op: LiveOP, browser: BrowserAgent) -> None:
    response = browser.get("/authorize", client_id="intranet-bridge", response_type="code", scope="openid",
                           redirect_uri="https://evil.example.com/cb", login_hint_token="garbage")
    assert response.status_code == 400 and "Location" not in response.headers


def test_a_policy_that_needs_more_than_the_hint_proves(op: LiveOP, browser: BrowserAgent) -> None:
    # payments trusts the intranet, but a hint proves only wia and payments requires MFA
    answer = browser.follow(browser.authorize_request("payments-web", prompt="none", scope="openid profile",
                                                      login_hint_token=hint(op)))
    assert answer.error == "interaction_required"
    assert "mfa_required" in answer.codes and "code" not in answer.params
