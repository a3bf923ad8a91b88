"""OpenID Connect and OAuth 2.0, one specification a module."""
