"""Client authentication at the token, revocation and introspection endpoints.

RFC 6749 §2.3.1 (client_secret_basic, client_secret_post), OIDC Core §9
(``none`` for public clients). Secrets are read once, when the provider is
built, and compared in constant time (RFC 9700 §2.5).
"""

from __future__ import annotations

import binascii
import hmac
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from policy_sso.config import Client
from policy_sso.errors import InvalidClient, InvalidRequest

BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="policy-sso", charset="UTF-8"'}
# Compared against when the client is unknown, so a miss costs the same as a wrong secret.
_DUMMY_SECRET = b"\0" * 32


class ClientAuthenticator:
    """Authenticates clients against the secrets loaded at startup."""

    def __init__(self, clients: Mapping[str, Client], base: Path) -> None:
        self._clients = dict(clients)
        self._secrets: dict[str, bytes] = {}
        for client in clients.values():
            if client.secret is not None and not client.is_public:
                value = client.secret.read(base)
                if value:
                    self._secrets[client.client_id] = value

    def has_secret(self, client_id: str) -> bool:
        """Return whether a secret was loaded for the client."""
        return client_id in self._secrets

    def authenticate(self, authorization: str | None, form: Mapping[str, str]) -> Client:
        """Return the authenticated client; raise InvalidClient (401) or InvalidRequest."""
        basic = _basic_credentials(authorization)
        posted_secret = form.get("client_secret")
        if basic is not None and posted_secret is not None:
            # RFC 6749 §2.3: a client MUST NOT use more than one authentication method
            raise InvalidRequest("use one client authentication method, not several")
        if basic is not None:
            client_id, secret = basic
            if form.get("client_id", client_id) != client_id:
                raise InvalidRequest("client_id does not match the authenticated client")
            return self._by_secret(client_id, secret, challenge=True)
        client_id = form.get("client_id")
        if not client_id:
            raise InvalidClient("client authentication is required", headers=BASIC_CHALLENGE)
        if posted_secret is not None:
            return self._by_secret(client_id, posted_secret.encode(), challenge=False)
        client = self._clients.get(client_id)
        if client is None or not client.is_public:
            raise InvalidClient("client authentication failed", headers=BASIC_CHALLENGE)
        return client

    def _by_secret(self, client_id: str, secret: bytes, *, challenge: bool) -> Client:
        expected = self._secrets.get(client_id)
        ok = hmac.compare_digest(secret, expected if expected is not None else _DUMMY_SECRET)
        if not ok or expected is None:
            raise InvalidClient("client authentication failed",
                                headers=BASIC_CHALLENGE if challenge else None)
        return self._clients[client_id]


def _basic_credentials(header: str | None) -> tuple[str, bytes] | None:
    """Return (client_id, secret) from an HTTP Basic header (RFC 6749 §2.3.1 form-encoding)."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        # strict: standard alphabet and padding only (binascii.Error); a header byte past ASCII
        # is malformed too (ValueError from encode), not a fault
        decoded = binascii.a2b_base64(header[6:].strip().encode("ascii"), strict_mode=True).decode()
    except ValueError:  # binascii.Error and UnicodeError are ValueErrors
        raise InvalidClient("malformed Basic credentials", headers=BASIC_CHALLENGE) from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise InvalidClient("malformed Basic credentials", headers=BASIC_CHALLENGE)
    return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password).encode()
