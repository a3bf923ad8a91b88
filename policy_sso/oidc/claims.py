"""Which user claims a scope releases (OIDC Core §5.4), and those the ``claims`` parameter asks for (§5.5)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from policy_sso.config import User
from policy_sso.errors import InvalidRequest
from policy_sso.messages import Message
from policy_sso.request import loads_json

# OIDC Core §5.4: the standard claims each scope value requests.
CLAIMS_OF_SCOPE: dict[str, tuple[str, ...]] = {
    "profile": ("name", "family_name", "given_name", "middle_name", "nickname",
                "preferred_username", "profile", "picture", "website", "gender", "birthdate",
                "zoneinfo", "locale", "updated_at"),
    "email": ("email", "email_verified"),
    "address": ("address",),
    "phone": ("phone_number", "phone_number_verified"),
}

# The scope whose consent releases each standard claim; the tenant's own claims are profile data.
_SCOPE_OF_CLAIM = {claim: scope for scope, claims in CLAIMS_OF_SCOPE.items() for claim in claims}


def releasing_scope(claim: str) -> str:
    """Return the scope a user consents to for ``claim`` to be released: its §5.4 scope, else ``profile``."""
    return _SCOPE_OF_CLAIM.get(claim, "profile")


# Human descriptions shown on the consent page.
SCOPE_DESCRIPTIONS: dict[str, Message] = {  # the words are policy_sso/messages' scope.* keys
    scope: Message(f"scope.{scope}") for scope in ("openid", "profile", "email", "address", "phone",
                                                   "offline_access")
}


def user_claims(user: User, scopes: Iterable[str]) -> dict[str, Any]:
    """Return the user's claims released by ``scopes``; ``sub`` is always included."""
    profile = {"preferred_username": user.username, **user.claims}
    out: dict[str, Any] = {"sub": user.sub}
    for scope in scopes:
        for name in CLAIMS_OF_SCOPE.get(scope, ()):
            if name in profile:
                out[name] = profile[name]
    return out


# Claims the provider sets itself in an ID token or an access token: a request naming one changes
# nothing (OIDC Core §5.5: the OP returns them as the protocol defines), and a user's profile can
# never supply one.
PROTOCOL_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "nonce", "auth_time",
                             "acr", "amr", "sid", "azp", "at_hash", "c_hash", "cnf", "client_id",
                             "scope", "s_hash", "userinfo_claims", "second_factor_time"})
CLAIMS_MEMBERS = ("userinfo", "id_token")


@dataclass(frozen=True, slots=True)
class ClaimsRequest:
    """The user claims a ``claims`` parameter asks for, per member (OIDC Core §5.5).

    A claim is released with the user's consent to the scope that releases
    it (:func:`releasing_scope`): asking for ``email`` by name asks for
    consent to ``email`` (node-oidc-provider asks for consent to claims too),
    and a claim of a scope the client may not ask for is not released at all.

    Only names are kept: ``essential`` changes nothing for a claim the user
    has (it is released either way) nor for one the user lacks (OIDC Core
    §5.5.1: the OP is not to fail the request), and ``value``/``values`` ask
    for a value, while the released claim is always the user's true one. The
    ``acr`` member is read by the policy (:func:`policy_sso.request.essential_acr_values`),
    an ID token's ``sub`` value by :func:`subject_value`.
    """

    userinfo: tuple[str, ...] = ()
    id_token: tuple[str, ...] = ()

    def consent_scopes(self) -> frozenset[str]:
        """Return the scopes whose consent releases the claims asked for (OIDC Core §3.1.2.4)."""
        return frozenset(releasing_scope(name) for name in (*self.userinfo, *self.id_token))

    def within(self, scopes: Iterable[str]) -> ClaimsRequest:
        """Return the request without the claims none of ``scopes`` (what the client may ask for) releases."""
        allowed = frozenset(scopes)
        return ClaimsRequest(*(tuple(n for n in names if releasing_scope(n) in allowed)
                               for names in (self.userinfo, self.id_token)))


NO_CLAIMS = ClaimsRequest()


def parse_claims_request(claims: str | None) -> ClaimsRequest:
    """Return the user claims asked for by a ``claims`` parameter; raise InvalidRequest when malformed.

    JSON is read depth-bounded (:func:`policy_sso.request.loads_json`); each
    member must be an object whose values are null or objects (§5.5.1).
    Protocol claims are left out, unknown names kept (they release nothing:
    "unknown claims ignored", §5.5.1).
    """
    if not claims:
        return NO_CLAIMS
    parsed = loads_json(claims, "claims")
    if not isinstance(parsed, dict):
        raise InvalidRequest("claims must be a JSON object")
    names: dict[str, tuple[str, ...]] = {}
    for member in CLAIMS_MEMBERS:
        section = parsed.get(member)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise InvalidRequest(f"claims.{member} must be a JSON object")
        for name, spec in section.items():
            if spec is not None and not isinstance(spec, dict):
                raise InvalidRequest(f"claims.{member}.{name} must be null or a JSON object")
            if isinstance(spec, dict) and "values" in spec and not isinstance(spec["values"], list):
                raise InvalidRequest(f"claims.{member}.{name}.values must be a JSON array")
            if isinstance(spec, dict) and "essential" in spec and not isinstance(spec["essential"], bool):
                raise InvalidRequest(f"claims.{member}.{name}.essential must be true or false")
        names[member] = tuple(n for n in section if n not in PROTOCOL_CLAIMS)
    return ClaimsRequest(names.get("userinfo", ()), names.get("id_token", ()))


def subject_value(claims: str | None) -> str | None:
    """Return the ``sub`` an ID token is asked for with ``value`` (OIDC Core §5.5.1), or None.

    The OP must answer only for that user: it stands for an ``id_token_hint``.
    """
    if not claims or '"sub"' not in claims:
        return None
    parsed = loads_json(claims, "claims")
    section = parsed.get("id_token") if isinstance(parsed, dict) else None
    spec = section.get("sub") if isinstance(section, dict) else None
    value = spec.get("value") if isinstance(spec, dict) else None
    return value if isinstance(value, str) else None


def requested_claims(user: User, names: Iterable[str]) -> dict[str, Any]:
    """Return the user's claims among ``names``: standard and custom ones the user has; the rest omitted."""
    profile = {"preferred_username": user.username, **user.claims}
    return {name: profile[name] for name in names if name in profile and name not in PROTOCOL_CLAIMS}


def supported_claims(users: Iterable[User]) -> list[str]:
    """Return every user claim a request can name: the standard ones by scope and the tenant's custom ones."""
    names = dict.fromkeys(["preferred_username"])
    for scoped in CLAIMS_OF_SCOPE.values():
        names.update(dict.fromkeys(scoped))
    for user in users:
        names.update(dict.fromkeys(n for n in user.claims if n not in PROTOCOL_CLAIMS))
    return list(names)
