"""The provider's metadata document (OpenID Connect Discovery 1.0 §3, RFC 8414 §2)."""

from __future__ import annotations

from typing import Any

from policy_sso.oidc.authorize import RESPONSE_MODES, RESPONSE_TYPES, tenant_scopes
from policy_sso.oidc.claims import supported_claims
from policy_sso.request import PROMPT_VALUES

ENDPOINTS = {
    "authorization_endpoint": "/authorize",
    "token_endpoint": "/token",
    "userinfo_endpoint": "/userinfo",
    "jwks_uri": "/jwks",
    "end_session_endpoint": "/logout",
    "revocation_endpoint": "/revoke",
    "introspection_endpoint": "/introspect",
    "pushed_authorization_request_endpoint": "/par",  # RFC 9126 §5
}
# The same three at /token, /revoke and /introspect: a public client names itself (``none``) and
# sees or revokes only its own tokens (policy_sso/oidc/revocation.py, RFC 7662 §2.1 and §4).
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
# implicit: the id_token and "id_token token" response types (RFC 8414 §2, OIDC Discovery §3)
GRANT_TYPES = ["authorization_code", "implicit", "refresh_token", "client_credentials"]
# OIDC Core §3.1.2.1, in its order; select_account shows the sign-in page again (policy_sso/request.py)
PROMPTS = [value for value in ("none", "login", "consent", "select_account") if value in PROMPT_VALUES]


def discovery_document(tenant: Any) -> dict[str, Any]:
    """Return the ``/.well-known/openid-configuration`` document for a tenant.

    Every value listed is one the provider implements: the scopes some
    client may request (``openid`` and the union of the clients' ``scopes``;
    any other is ignored at /authorize), response types and modes, PKCE S256 only
    (RFC 9700 §2.1.1), the acr levels of ``tenant.yaml``,
    the configured signing algorithms (never ``none``), RP-Initiated and
    Back-Channel Logout, ``iss`` in authorization responses (RFC 9207 §3),
    every user claim a ``claims`` parameter can name (the tenant's custom
    ones too, OIDC Core §5.5), pushed authorization requests (RFC 9126 §5)
    and DPoP (RFC 9449 §5.1).
    """
    settings = tenant.settings
    issuer = settings.issuer
    scopes = dict.fromkeys(["openid", *tenant_scopes(tenant.clients)])
    claims = dict.fromkeys(["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr",
                            "sid", "at_hash", "c_hash", *supported_claims(tenant.users.values())])
    algorithms = [a for a in settings.tokens.algorithms if a != "none"]
    return {
        "issuer": issuer,
        **{name: issuer + path for name, path in ENDPOINTS.items()},
        "scopes_supported": list(scopes),
        "response_types_supported": list(RESPONSE_TYPES.values()),
        "response_modes_supported": list(RESPONSE_MODES),
        "grant_types_supported": GRANT_TYPES,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algorithms,
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "code_challenge_methods_supported": ["S256"],
        "claims_parameter_supported": True,
        "claims_supported": list(claims),
        "claim_types_supported": ["normal"],
        "acr_values_supported": [level.id for level in settings.acr_levels],
        "prompt_values_supported": PROMPTS,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
        "authorization_response_iss_parameter_supported": True,
        "require_pushed_authorization_requests": settings.par.required,
        "dpop_signing_alg_values_supported": list(settings.dpop.algorithms),
    }
