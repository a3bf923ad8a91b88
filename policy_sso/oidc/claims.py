"""Which user claims a scope releases (OIDC Core §5.4) and the claims of a user for a scope set."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from policy_sso.config import User

# OIDC Core §5.4: the standard claims each scope value requests.
CLAIMS_OF_SCOPE: dict[str, tuple[str, ...]] = {
    "profile": ("name", "family_name", "given_name", "middle_name", "nickname",
                "preferred_username", "profile", "picture", "website", "gender", "birthdate",
                "zoneinfo", "locale", "updated_at"),
    "email": ("email", "email_verified"),
    "address": ("address",),
    "phone": ("phone_number", "phone_number_verified"),
}

# Human descriptions shown on the consent page.
SCOPE_DESCRIPTIONS: dict[str, str] = {
    "openid": "Sign you in and know who you are",
    "profile": "Your name and profile",
    "email": "Your email address",
    "address": "Your postal address",
    "phone": "Your phone number",
    "offline_access": "Stay signed in while you are away (refresh tokens)",
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
