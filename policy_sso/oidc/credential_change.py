"""A changed password revokes what the old one granted (issue 14; RFC 9700 §4.14.2, §4.13), and a
withdrawn consent what it let the client have.

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


def _keep_cut_off_until(p: Provider, now: int) -> int:
    """Return until when a cut-off made ``now`` matters: as long as a token issued before it can live."""
    settings = p.tenant.settings
    tokens = settings.tokens
    longest = max(tokens.refresh_token_lifetime, tokens.access_token_lifetime, tokens.code_lifetime,
                  tokens.id_token_lifetime)
    return now + longest + settings.clock_skew + 1


def revoke_grants_of(p: Provider, subject: str, now: int) -> None:
    """Record that every grant ``subject`` holds from an authentication before ``now`` is revoked."""
    p.store.set_not_before(subject, now, _keep_cut_off_until(p, now))


def _consent_key(subject: str, client_id: str) -> str:
    # the store's per-subject cut-off, keyed by a name no subject has (a unit separator starts it)
    return f"\x1fconsent\x1f{client_id}\x1f{subject}"


def revoke_consented_grants(p: Provider, subject: str, client_id: str, now: int) -> None:
    """Record that the tokens ``client_id`` was issued for ``subject`` before ``now`` are revoked.

    A withdrawn consent takes back what it let the client have (as Hydra's
    consent revocation does): refresh token families issued before the
    withdrawal are refused and revoked, and so are access tokens issued
    before it. Tokens issued after a new consent are not affected.
    """
    p.store.set_not_before(_consent_key(subject, client_id), now, _keep_cut_off_until(p, now))


def consent_withdrawn(p: Provider, subject: Any, client_id: Any, issued_at: Any, now: int) -> bool:
    """Return whether a token of ``client_id`` issued at ``issued_at`` predates a withdrawal."""
    if not isinstance(subject, str) or not isinstance(client_id, str) or isinstance(issued_at, bool) \
            or not isinstance(issued_at, int):
        return False
    return issued_at < p.store.not_before(_consent_key(subject, client_id), now)


def grant_revoked(p: Provider, subject: Any, authenticated_at: Any, now: int) -> bool:
    """Return whether a grant of ``subject`` authenticated at ``authenticated_at`` predates its cut-off."""
    if not isinstance(subject, str) or isinstance(authenticated_at, bool) \
            or not isinstance(authenticated_at, int):
        return False  # no time to judge by: the signature and expiry checks stand alone
    return authenticated_at < p.store.not_before(subject, now)


def issued_before_store_loss(p: Provider, issued_at: Any) -> bool:
    """Return whether something issued at ``issued_at`` predates the store's last loss of records.

    Its single-use or revocation record may have gone with the rest (``Store.intact_since``: a
    Redis restarted empty), so it is refused until it expires. Call after the store call that
    spent or looked up its record.
    """
    return not isinstance(issued_at, int) or isinstance(issued_at, bool) or issued_at < p.store.intact_since()


def token_revoked(p: Provider, claims: Mapping[str, Any], now: int) -> bool:
    """Return whether an access token predates its subject's cut-off (``auth_time``, else ``iat``),
    the withdrawal of its user's consent to its client (``iat``), or the store's last loss of
    records (its revocation may have been among them)."""
    if issued_before_store_loss(p, claims.get("iat")):
        return True
    authenticated_at = claims.get("auth_time", claims.get("iat"))
    if grant_revoked(p, claims.get("sub"), authenticated_at, now):
        return True
    return consent_withdrawn(p, claims.get("sub"), claims.get("client_id"), claims.get("iat"), now)


def family_revoked(p: Provider, data: Mapping[str, Any], now: int) -> bool:
    """Return whether a refresh token family was revoked by a password change or consent withdrawal since.

    ``granted_at`` is when the family was issued (older families lack it:
    their ``auth_time`` is earlier still, so the check errs towards refusing).
    """
    subject, auth_time = data.get("sub"), data.get("auth_time")
    if grant_revoked(p, subject, auth_time, now):
        return True
    return consent_withdrawn(p, subject, data.get("client_id"), data.get("granted_at", auth_time), now)


def changed_passwords(before: Mapping[str, User], after: Mapping[str, User]) -> list[str]:
    """Return the subjects whose password hash differs between two loads of ``users.yaml``."""
    return [sub for sub, user in after.items()
            if (old := before.get(sub)) is not None and old.password_hash != user.password_hash]
