"""The evaluator's input: an authorization request reduced to what policy can test.

:func:`AuthRequest.from_params` is the one place that turns OIDC request
parameters (OIDC Core §3.1.2.1) into an :class:`AuthRequest`, for the server
and for ``policy-sso explain`` alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from policy_sso.errors import InvalidRequest

PROMPT_VALUES = frozenset({"none", "login", "consent", "select_account"})


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """What a silent-auth decision looks at (subjects of hints already resolved)."""

    client_id: str
    scopes: frozenset[str] = frozenset()
    acr_values: tuple[str, ...] = ()
    essential_acr: tuple[str, ...] = ()
    max_age: int | None = None
    prompt: frozenset[str] = frozenset()
    id_token_hint_sub: str | None = None
    login_hint: str | None = None
    login_hint_sub: str | None = None

    @property
    def silent(self) -> bool:
        """Return whether the client asked for no interaction (``prompt=none``)."""
        return "none" in self.prompt

    @classmethod
    def from_params(cls, client_id: str, params: Mapping[str, str], *,
                    id_token_hint_sub: str | None = None,
                    login_hint_sub: str | None = None) -> AuthRequest:
        """Return the request for OIDC parameters; raise InvalidRequest for malformed ones."""
        prompt = frozenset(params.get("prompt", "").split())
        unknown = prompt - PROMPT_VALUES
        if unknown:
            raise InvalidRequest(f"unsupported prompt value {sorted(unknown)[0]!r}")
        if "none" in prompt and len(prompt) > 1:
            # OIDC Core §3.1.2.1: none with any other value is an error
            raise InvalidRequest("prompt=none cannot be combined with other prompt values")
        max_age = None
        if params.get("max_age", "") != "":
            raw = params["max_age"]
            if not raw.isdigit():
                raise InvalidRequest("max_age must be a non-negative integer number of seconds")
            max_age = int(raw)
        return cls(
            client_id=client_id,
            scopes=frozenset(params.get("scope", "").split()),
            acr_values=tuple(params.get("acr_values", "").split()),
            essential_acr=essential_acr_values(params.get("claims")),
            max_age=max_age,
            prompt=prompt,
            id_token_hint_sub=id_token_hint_sub,
            login_hint=params.get("login_hint") or None,
            login_hint_sub=login_hint_sub,
        )


def essential_acr_values(claims: str | None) -> tuple[str, ...]:
    """Return the acr values requested as essential in a ``claims`` parameter (OIDC Core §5.5.1.1)."""
    if not claims:
        return ()
    try:
        parsed = json.loads(claims)
    except ValueError:
        raise InvalidRequest("claims is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("claims must be a JSON object")
    values: list[str] = []
    for member in ("id_token", "userinfo"):
        section = parsed.get(member)
        if section is None:
            continue
        if not isinstance(section, dict):
            raise InvalidRequest(f"claims.{member} must be a JSON object")
        acr = section.get("acr")
        if isinstance(acr, dict) and acr.get("essential") is True:
            if isinstance(acr.get("value"), str):
                values.append(acr["value"])
            elif isinstance(acr.get("values"), list):
                values.extend(v for v in acr["values"] if isinstance(v, str))
    return tuple(dict.fromkeys(values))
