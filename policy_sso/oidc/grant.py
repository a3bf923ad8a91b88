"""What an authorization hands on to the tokens minted for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policy_sso.oidc.claims import ClaimsRequest


@dataclass(frozen=True, slots=True)
class Grant:
    """What an authorization hands on to the tokens minted for it (code, refresh family)."""

    subject: str
    client_id: str
    scope: str
    auth_time: int | None = None
    acr: str | None = None
    amr: tuple[str, ...] = ()
    sid: str | None = None
    nonce: str | None = None
    # the user claims the ``claims`` parameter asked for, per member (OIDC Core §5.5)
    userinfo_claims: tuple[str, ...] = ()
    id_token_claims: tuple[str, ...] = ()
    # when the session's latest second factor was presented (amr lists methods of several moments,
    # auth_time is the latest): what ``require mfa within`` is judged by at an API (RFC 9470)
    second_factor_time: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the grant as a JSON-safe mapping for the store."""
        return {"sub": self.subject, "client_id": self.client_id, "scope": self.scope,
                "auth_time": self.auth_time, "acr": self.acr, "amr": list(self.amr),
                "sid": self.sid, "nonce": self.nonce,
                **({"userinfo_claims": list(self.userinfo_claims)} if self.userinfo_claims else {}),
                **({"id_token_claims": list(self.id_token_claims)} if self.id_token_claims else {}),
                **({"second_factor_time": self.second_factor_time}
                   if self.second_factor_time is not None else {})}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Grant:
        """Return the grant stored by :meth:`to_json`."""
        return cls(data["sub"], data["client_id"], data["scope"], data.get("auth_time"),
                   data.get("acr"), tuple(data.get("amr") or ()), data.get("sid"),
                   data.get("nonce"), tuple(data.get("userinfo_claims") or ()),
                   tuple(data.get("id_token_claims") or ()), data.get("second_factor_time"))

    def with_scope(self, scope: str) -> Grant:
        """Return the grant for a refreshed token: ``scope`` (RFC 6749 §6) and no nonce (OIDC Core §12.2).

        A narrower scope narrows the claims the ``claims`` parameter asked for
        with it: the refreshed tokens name only those the new scope releases
        (:meth:`ClaimsRequest.within`), as RFC 6749 §6 limits a narrowed token
        to its scope. The same scope keeps them all, those asked for by name
        under consent to a scope outside it included (OIDC Core §5.5).
        """
        claims = ClaimsRequest(self.userinfo_claims, self.id_token_claims)
        if set(scope.split()) != set(self.scope.split()):
            claims = claims.within(scope.split())
        return Grant(self.subject, self.client_id, scope, self.auth_time, self.acr, self.amr, self.sid,
                     None, claims.userinfo, claims.id_token, self.second_factor_time)
