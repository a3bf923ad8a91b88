"""The policy-sso exception tree.

Every error the library raises derives from :class:`PolicySSOError`. Protocol
errors carry their OAuth 2.0 / OIDC error code and HTTP status as data, so the
HTTP layer renders them without guessing (the shape authlib uses in
``oidc/core/errors.py``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from policy_sso.diagnostics import Diagnostic


class PolicySSOError(Exception):
    """Root of every error policy-sso raises on purpose."""


class ConfigError(PolicySSOError):
    """A tenant, client, user or policy file set failed to load; carries every diagnostic."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        self.diagnostics = tuple(diagnostics)
        count = len(self.diagnostics)
        super().__init__(f"{count} error{'s' if count != 1 else ''} in the configuration")


class StoreError(PolicySSOError):
    """The session store could not be reached or answered unexpectedly."""


# RFC 6749 §4.1.2.1, §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E (printable ASCII but " and \)
_NOT_IN_DESCRIPTIONS = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_SPELLED = str.maketrans({'"': "'", "\\": "/", "§": "section ", "…": "...", "\n": " ", "\t": " "})


def error_description(text: str) -> str:
    """Return ``text`` in the characters an error_description may hold; any other is ``?``.

    A value a client sent and a message quotes ("response_type 'é'") stays
    recognisable; our own messages keep their meaning ("§6" reads "section 6").
    """
    return _NOT_IN_DESCRIPTIONS.sub("?", text.translate(_SPELLED))


class OAuthError(PolicySSOError):
    """An error with an OAuth 2.0 / OIDC error code (RFC 6749 §4.1.2.1, §5.2; OIDC Core §3.1.2.6)."""

    error = "invalid_request"
    status = 400

    def __init__(self, description: str, *, error: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None, extra: dict | None = None) -> None:
        super().__init__(description)
        self.description = error_description(description)
        if error is not None:
            self.error = error
        if status is not None:
            self.status = status
        self.headers = headers or {}
        self.extra = extra or {}

    def to_json(self) -> dict:
        """Return the JSON error body: ``error``, ``error_description`` and any extra members."""
        return {"error": self.error, "error_description": self.description, **self.extra}


class InvalidRequest(OAuthError):
    error = "invalid_request"


class InvalidClient(OAuthError):
    error = "invalid_client"
    status = 401


class InvalidGrant(OAuthError):
    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class UnsupportedResponseType(OAuthError):
    error = "unsupported_response_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"


class InvalidToken(OAuthError):
    """RFC 6750 §3.1: the bearer token is missing, expired, revoked or malformed."""

    error = "invalid_token"
    status = 401


class AccessDenied(OAuthError):
    error = "access_denied"
    status = 403


class RateLimited(OAuthError):
    error = "temporarily_unavailable"
    status = 429

    def __init__(self, description: str, retry_after: int) -> None:
        super().__init__(description, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


class StoreUnavailable(StoreError, OAuthError):
    """The store did not answer within its timeout, or failed (SPEC §7: faults are answered, not leaked).

    Every backend raises this, and only this, for a fault of the store itself
    (Redis down, restarting, loading or paused; SQLite locked or failing I/O).
    It is an :class:`OAuthError` with RFC 6749 §4.1.2.1's ``temporarily_unavailable``,
    so a caller that already delivers OAuth errors to a verified redirect_uri
    delivers this one too; the HTTP layer answers 503 with ``Retry-After``.
    ``reason`` names the fault for the log (never a key or a value).
    """

    error = "temporarily_unavailable"
    status = 503
    retry_after = 5

    def __init__(self, reason: str) -> None:
        OAuthError.__init__(self, "the session store is unavailable; try again shortly",
                            headers={"Retry-After": str(self.retry_after)})
        self.reason = reason
