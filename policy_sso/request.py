"""The evaluator's input: an authorization request reduced to what policy can test.

:func:`AuthRequest.from_params` is the one place that turns OIDC request
parameters (OIDC Core §3.1.2.1) into an :class:`AuthRequest`, for the server
and for ``policy-sso explain`` alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from policy_sso.errors import InvalidRequest
from policy_sso.networks import IPAddress, address_key

PROMPT_VALUES = frozenset({"none", "login", "consent", "select_account"})
# Integer parameters are seconds or counts: ten ASCII digits reach year 2286 as epoch seconds.
# str.isdigit() admits "²" and Arabic-Indic digits, and int() of 4,300 digits raises (CVE-2020-10735).
MAX_INT_DIGITS = 10
_ASCII_INT = re.compile(rf"[0-9]{{1,{MAX_INT_DIGITS}}}")
# JSON a client sends (the claims parameter, API bodies) nests a few levels (OIDC Core §5.5: three);
# 32 leaves room and keeps the C parser far from Python's recursion limit.
MAX_JSON_DEPTH = 32
_JSON_STRUCTURE = re.compile(r'[\[\]{}"\\]')


def parse_int(value: str, name: str, *, maximum: int = 10**MAX_INT_DIGITS - 1) -> int:
    """Return ``value`` as a non-negative integer of ASCII digits at most ``maximum``; raise InvalidRequest.

    The one parser for integer request parameters (``max_age`` and the like).
    """
    if not isinstance(value, str) or not _ASCII_INT.fullmatch(value):
        raise InvalidRequest(f"{name} must be a non-negative integer (at most {MAX_INT_DIGITS} ASCII digits)")
    number = int(value)
    if number > maximum:
        raise InvalidRequest(f"{name} must be at most {maximum}")
    return number


def parameter_member(body: Mapping[str, Any], name: str) -> str | None:
    """Return an authorization parameter of a JSON body as the string a query has; raise InvalidRequest.

    None when absent or empty. ``max_age`` may come as a JSON number and
    ``claims`` as the JSON object itself (OIDC Core §5.5); anything else must
    be a string. A value of another type is refused, never ignored: a
    ``max_age`` of ``0`` sent as a number forces a new sign-in as ``"0"`` does.
    """
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if name == "max_age":  # as text, parse_int refuses a negative, fractional or boolean one as in a query
        return str(value)
    if name == "claims" and isinstance(value, dict):
        return json.dumps(value)
    raise InvalidRequest(f"{name} must be a string" + (" or a JSON object" if name == "claims" else ""))


def _refuse_constant(constant: str) -> Any:
    # RFC 8259 §6: NaN and Infinity are not JSON; Python's parser accepts them unless told not to
    raise InvalidRequest(f"{constant} is not a JSON number (RFC 8259 §6)")


# made once: json.loads() given an option builds a decoder on every call
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def json_depth_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Return whether brackets outside strings in ``text`` nest deeper than ``limit``.

    One pass over the structural characters (linear, whatever the quoting:
    a regular expression for whole strings would rescan from every quote).
    """
    if text.count("[") + text.count("{") <= limit:
        return False  # cannot nest deeper than there are openers: the common case costs two counts
    depth = 0
    in_string = False
    escaped = -1  # the index of the character a backslash in a string escapes
    for match in _JSON_STRUCTURE.finditer(text):
        char, at = match.group(), match.start()
        if in_string:
            if at == escaped:
                continue
            if char == "\\":
                escaped = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def loads_json(text: str | bytes, name: str = "the body") -> Any:
    """Return parsed JSON at most MAX_JSON_DEPTH deep, with no NaN or Infinity; raise InvalidRequest."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest(f"{name} is not UTF-8") from None
    if json_depth_exceeds(text):
        raise InvalidRequest(f"{name} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError):  # ValueError: bad JSON, or an integer of over 4,300 digits
        raise InvalidRequest(f"{name} is not valid JSON") from None
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        # RFC 8259 §8.2: "\ud800" alone is no character; as a str it cannot be encoded, stored or logged
        raise InvalidRequest(f"{name} holds a \\u escape of a lone surrogate, which is not a character")
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    """Return whether a parsed JSON value holds a string (or key) that is not valid Unicode text."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


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
    # The requested acr the hosted pages step up to: the strongest of acr_values the user
    # can reach (set by the interaction, never by a client; None: any requested level).
    step_up_acr: str | None = None
    # The client's address, parsed once at the edge (policy_sso.networks.client_ip): what
    # ``when network in`` tests; None when unknown (every network-testing block then applies).
    client_ip: IPAddress | None = None
    # client_ip as one integer (policy_sso.networks.address_key), what compiled network tests read
    client_key: int | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.client_ip is not None:
            object.__setattr__(self, "client_key", address_key(self.client_ip))

    @property
    def silent(self) -> bool:
        """Return whether the client asked for no interaction (``prompt=none``)."""
        return "none" in self.prompt

    @classmethod
    def from_params(cls, client_id: str, params: Mapping[str, str], *,
                    id_token_hint_sub: str | None = None,
                    login_hint_sub: str | None = None,
                    client_ip: IPAddress | None = None) -> AuthRequest:
        """Return the request for OIDC parameters; raise InvalidRequest for malformed ones."""
        prompt = frozenset(params.get("prompt", "").split())
        unknown = prompt - PROMPT_VALUES
        if unknown:
            raise InvalidRequest(f"unsupported prompt value {sorted(unknown)[0]!r}")
        if "none" in prompt and len(prompt) > 1:
            # OIDC Core §3.1.2.1: none with any other value is an error
            raise InvalidRequest("prompt=none cannot be combined with other prompt values")
        if "select_account" in prompt:
            # OIDC Core §3.1.2.1: the user may pick another account. There is no account chooser:
            # the sign-in page is shown again, as for login, and whoever signs in there is the user
            prompt |= {"login"}
        max_age = None
        if params.get("max_age", "") != "":
            max_age = parse_int(params["max_age"], "max_age")
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
            client_ip=client_ip,
        )


def essential_acr_values(claims: str | None) -> tuple[str, ...]:
    """Return the acr values requested as essential in a ``claims`` parameter (OIDC Core §5.5.1.1)."""
    if not claims:
        return ()
    parsed = loads_json(claims, "claims")
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
