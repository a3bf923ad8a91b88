"""Shared pieces for the backend-API, logout-everywhere and hint-token integration tests."""

from __future__ import annotations

import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from joserfc import jwt
from joserfc.jwk import KeySet


class LogoutReceiver:
    """A relying party's back-channel logout endpoint on loopback (OIDC Back-Channel Logout §2.5)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.tokens: list[str] = []
        self.delay = delay
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                time.sleep(outer.delay)
                outer.tokens.append(urllib.parse.parse_qs(body)["logout_token"][0])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/backchannel"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.tokens) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.tokens)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verified_logout_token(op_url: str, token: str) -> dict:
    """Return a logout token's claims, verified against the provider's /jwks with joserfc."""
    keys = KeySet.import_key_set(requests.get(f"{op_url}/jwks", timeout=10).json())
    decoded = jwt.decode(token, keys, algorithms=["RS256"])
    assert decoded.header["typ"] == "logout+jwt"
    assert "http://schemas.openid.net/event/backchannel-logout" in decoded.claims["events"]
    assert "nonce" not in decoded.claims
    return decoded.claims
