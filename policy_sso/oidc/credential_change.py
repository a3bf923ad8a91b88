"""A changed password revokes what the old one granted (issue 14; RFC 9700 §4.14.2, §4.13).

Changing a user's password (the admin API, or ``users.yaml`` edited and
reloaded through the admin API) records a per-subject cut-off in the store,
"tokens not valid before", as Keycloak's not-before does. Every grant that
rests on an authentication older than the cut-off is refused from then on, on
every instance sharing the store:

- refresh tokens: ``invalid_grant``, and their whole family is revoked;
- access tokens: 401 at ``/userinfo``, ``active: false`` at ``/introspect``;
- codes issued before the change: the tokens they yield carry the old
  ``auth_time`` and are refused the same way.

What a grant rests on is its ``auth_time`` (OIDC Core §2), kept in every
refresh family's data and every user access token; a token without one
(client_credentials) is judged by its ``iat``. One store read per check; no
index of refresh families by subject is needed. The cut-off is kept as long as
a token issued before it can live: the longest token lifetime plus the clock
skew. A token authenticated in the very second of the change is kept (the
comparison is strict, as Keycloak's ``iat < notBefore``), so a user who signs
in again at once is not refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policy_sso.config import User
from policy_sso.oidc.provider import Provider


def revoke_grants_of(p: Provider, subject: str, now: int) -> None:
    """Record that every grant ``subject`` holds from an authentication before ``now`` is revoked."""
    settings = p.tenant.settings
    tokens = settings.tokens
    longest = max(tokens.refresh_token_lifetime, tokens.access_token_lifetime, tokens.code_lifetime,
                  tokens.id_token_lifetime)
    p.store.set_not_before(subject, now, now + longest + settings.clock_skew + 1)


def grant_revoked(p: Provider, subject: Any, authenticated_at: Any, now: int) -> bool:
    """Return whether a grant of ``subject`` authenticated at ``authenticated_at`` predates its cut-off."""
    if not isinstance(subject, str) or isinstance(authenticated_at, bool) \
            or not isinstance(authenticated_at, int):
        return False  # no time to judge by: the signature and expiry checks stand alone
    return authenticated_at < p.store.not_before(subject, now)


def token_revoked(p: Provider, claims: Mapping[str, Any], now: int) -> bool:
    """Return whether an access token's claims predate its subject's cut-off (``auth_time``, else ``iat``)."""
    authenticated_at = claims.get("auth_time", claims.get("iat"))
    return grant_revoked(p, claims.get("sub"), authenticated_at, now)


def changed_passwords(before: Mapping[str, User], after: Mapping[str, User]) -> list[str]:
    """Return the subjects whose password hash differs between two loads of ``users.yaml``."""
    return [sub for sub, user in after.items()
            if (old := before.get(sub)) is not None and old.password_hash != user.password_hash]
