"""The Falcon app serving policy-sso's OpenID Provider (SPEC §4)."""
