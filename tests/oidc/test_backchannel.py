"""Back-channel logout: tokens verify against the JWKS; retries; a slow or dead receiver never blocks."""

from __future__ import annotations

import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet

from policy_sso.oidc.backchannel import BackchannelNotifier, LogoutTarget
from policy_sso.oidc.keys import KeyRing
from policy_sso.oidc.logout_token import BACKCHANNEL_EVENT, mint_logout_token

ISS = "http://127.0.0.1:8080"


@pytest.fixture(scope="module")
def ring(tmp_path_factory) -> KeyRing:
    return KeyRing.load_or_create(tmp_path_factory.mktemp("state"), ("RS256",))


class Receiver:
    """A relying party's back-channel endpoint on loopback, with a scripted list of statuses."""

    def __init__(self, statuses: list[int] | None = None, delay: float = 0.0) -> None:
        self.tokens: list[str] = []
        self.statuses = list(statuses or [])
        self.delay = delay
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                outer.tokens.append(urllib.parse.parse_qs(body)["logout_token"][0])
                time.sleep(outer.delay)
                self.send_response(outer.statuses.pop(0) if outer.statuses else 200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/backchannel"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_logout_token_claims(ring):
    token = mint_logout_token(ring, issuer=ISS, audience="portal", subject="u-alice", sid="sid-1",
                              now=100, jti="j")
    claims = jose_jwt.decode(token, KeySet.import_key_set(ring.jwks()), algorithms=["RS256"]).claims
    assert claims["events"] == {BACKCHANNEL_EVENT: {}}
    assert (claims["iss"], claims["aud"], claims["iat"]) == (ISS, "portal", 100)
    assert (claims["sub"], claims["sid"]) == ("u-alice", "sid-1")
    assert "nonce" not in claims and claims["jti"] == "j"
    assert jwt.get_unverified_header(token)["typ"] == "logout+jwt"


def test_a_logout_token_names_sid_or_sub(ring):
    with pytest.raises(ValueError, match="sid, a sub"):
        mint_logout_token(ring, issuer=ISS, audience="c", now=1, jti="j")


def test_delivery_to_a_real_receiver(ring):
    receiver = Receiver()
    try:
        notifier = BackchannelNotifier(ring, ISS, backoff=0.01)
        notifier.notify([LogoutTarget("portal", receiver.url, "sid-9", "u-bob")])
        assert notifier.drain(5)
        keys = KeySet.import_key_set(ring.jwks())
        claims = jose_jwt.decode(receiver.tokens[0], keys, algorithms=["RS256"]).claims
        assert (claims["sid"], claims["sub"], claims["aud"]) == ("sid-9", "u-bob", "portal")
        assert notifier.delivered == 1
    finally:
        receiver.close()


def test_retries_until_the_receiver_recovers(ring):
    receiver = Receiver(statuses=[500, 500, 200])
    try:
        notifier = BackchannelNotifier(ring, ISS, backoff=0.01, attempts=4)
        notifier.notify([LogoutTarget("portal", receiver.url, "sid", "u")])
        assert notifier.drain(5)
        assert len(receiver.tokens) == 3
        assert (notifier.delivered, notifier.failed) == (1, 0)
    finally:
        receiver.close()


def test_gives_up_after_bounded_attempts(ring):
    receiver = Receiver(statuses=[500] * 10)
    try:
        notifier = BackchannelNotifier(ring, ISS, backoff=0.01, attempts=3)
        notifier.notify([LogoutTarget("portal", receiver.url, "sid", "u")])
        assert notifier.drain(5)
        assert len(receiver.tokens) == 3
        assert (notifier.delivered, notifier.failed) == (0, 1)
    finally:
        receiver.close()


@pytest.mark.parametrize("receiver_kind", ["down", "slow"])
def test_a_down_or_slow_receiver_never_blocks_notify(ring, receiver_kind):
    receiver = Receiver(delay=1.5) if receiver_kind == "slow" else None
    url = receiver.url if receiver else "http://127.0.0.1:9/backchannel"  # port 9: discard, nothing listens
    try:
        notifier = BackchannelNotifier(ring, ISS, backoff=0.01, attempts=2, timeout=1.0)
        started = time.perf_counter()
        notifier.notify([LogoutTarget("portal", url, "sid", "u")])
        assert time.perf_counter() - started < 0.05
        assert notifier.drain(10)
    finally:
        if receiver:
            receiver.close()
