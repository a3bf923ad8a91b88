"""Authorization requests and responses.

Validation follows RFC 6749 §4.1.1/§4.1.2.1 and OIDC Core §3.1.2.1-§3.1.2.2:
the client and its exact redirect_uri are checked first, and an error there is
shown by the server itself (RFC 9700 §4.1.1: never redirect to an unverified
URI). Every later error is sent to the client's redirect_uri. Responses are
encoded per OAuth 2.0 Multiple Response Type Encoding Practices (query,
fragment) and OAuth 2.0 Form Post Response Mode, and always carry ``iss``
(RFC 9207 §2).
"""

from __future__ import annotations

import functools
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from policy_sso.config import Client
from policy_sso.errors import (
    InvalidRequest,
    InvalidScope,
    OAuthError,
    PolicySSOError,
    UnauthorizedClient,
    UnsupportedResponseType,
)
from policy_sso.oidc.claims import NO_CLAIMS, ClaimsRequest, parse_claims_request
from policy_sso.request import AuthRequest

# The response types this provider implements, keyed by their unordered value set
# (Multiple Response Types §5: "code id_token" == "id_token code").
RESPONSE_TYPES: dict[frozenset[str], str] = {
    frozenset({"code"}): "code",
    frozenset({"id_token"}): "id_token",
    frozenset({"id_token", "token"}): "id_token token",
    frozenset({"code", "id_token"}): "code id_token",
}
RESPONSE_PARTS = {name: parts for parts, name in RESPONSE_TYPES.items()}  # canonical name -> its values
RESPONSE_MODES = ("query", "fragment", "form_post")
# Parameters that must not appear twice (RFC 6749 §3.1); we refuse any repeat.
UNSUPPORTED_PARAMS = {"request": "request_not_supported", "request_uri": "request_uri_not_supported",
                      "registration": "registration_not_supported"}


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")
_JKT = re.compile(r"[A-Za-z0-9_-]{43}")


def form_urlencode(params: Mapping[str, str]) -> str:
    """Return ``params`` as application/x-www-form-urlencoded text (what urlencode gives, faster).

    Codes, tokens and parameter names are base64url or plain words: they are
    passed through as they are, and only other values pay for percent-encoding.
    """
    return "&".join(f"{_quote(k)}={v if _UNRESERVED.fullmatch(v) else _quote(v)}" for k, v in params.items())


# parameter names, the issuer and redirect-bound values repeat from request to request; a long value
# (a client's state can be anything) is quoted afresh, so the cache holds at most 256 x 2 x 128 characters
_quote_short = functools.lru_cache(maxsize=256)(urllib.parse.quote_plus)
MAX_QUOTE_CACHED = 128


def _quote(value: str) -> str:
    return _quote_short(value) if len(value) <= MAX_QUOTE_CACHED else urllib.parse.quote_plus(value)


@functools.lru_cache(maxsize=256)
def _query_joiner(redirect_uri: str) -> str:
    # RFC 6749 §3.1.2: a registered URI's own query component is kept
    return "&" if urllib.parse.urlsplit(redirect_uri).query else "?"


def canonical_response_type(value: str) -> str | None:
    """Return the canonical spelling of a response_type value, or None when unsupported."""
    return RESPONSE_TYPES.get(frozenset(value.split()))


@dataclass(frozen=True, slots=True)
class ResponseTarget:
    """Where and how an authorization response is delivered to the client."""

    redirect_uri: str
    response_mode: str
    state: str | None
    issuer: str

    def response(self, params: Mapping[str, str]) -> AuthorizationResponse:
        """Return the response carrying ``params`` plus ``state`` and ``iss`` (RFC 9207 §2)."""
        out = dict(params)
        if self.state is not None:
            out["state"] = self.state
        out["iss"] = self.issuer
        return AuthorizationResponse(self.redirect_uri, self.response_mode, out)

    def error(self, err: OAuthError) -> AuthorizationResponse:
        """Return the error response for ``err`` (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6)."""
        # the description is in RFC 6749's characters (policy_sso.errors.error_description): a lone
        # surrogate a client sent is a "?" there, so the redirect always encodes
        return self.response({"error": err.error, "error_description": err.description})


@dataclass(frozen=True, slots=True)
class AuthorizationResponse:
    """An authorization response: the redirect_uri, the response mode and the parameters."""

    redirect_uri: str
    response_mode: str
    params: dict[str, str]

    @property
    def location(self) -> str | None:
        """Return the redirect URL for query/fragment mode, None for form_post."""
        encoded = form_urlencode(self.params)
        if self.response_mode == "fragment":
            return f"{self.redirect_uri}#{encoded}"
        if self.response_mode == "query":
            return f"{self.redirect_uri}{_query_joiner(self.redirect_uri)}{encoded}"
        return None


class AuthorizationError(PolicySSOError):
    """An error the server sends to the client's redirect_uri instead of showing it."""

    def __init__(self, error: OAuthError, target: ResponseTarget) -> None:
        super().__init__(error.description)
        self.error = error
        self.target = target

    @property
    def response(self) -> AuthorizationResponse:
        """Return the error response to deliver."""
        return self.target.error(self.error)


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A validated authorization request: the client, where to answer and what was asked."""

    client: Client
    target: ResponseTarget
    response_type: str
    scopes: tuple[str, ...]
    policy_request: AuthRequest
    nonce: str | None = None
    code_challenge: str | None = None
    claims: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    claims_request: ClaimsRequest = NO_CLAIMS  # the user claims asked for (OIDC Core §5.5)

    @property
    def consent_scopes(self) -> tuple[str, ...]:
        """Return the scopes the user consents to: those requested, then those of claims asked for by name."""
        return tuple(dict.fromkeys([*self.scopes, *sorted(self.policy_request.scopes)]))

    @property
    def wants_code(self) -> bool:
        """Return whether the response carries an authorization code."""
        return "code" in RESPONSE_PARTS[self.response_type]

    @property
    def wants_id_token(self) -> bool:
        """Return whether the response carries an ID token (implicit or hybrid flow)."""
        return "id_token" in RESPONSE_PARTS[self.response_type]

    @property
    def wants_access_token(self) -> bool:
        """Return whether the response carries an access token (``id_token token``)."""
        return "token" in RESPONSE_PARTS[self.response_type]


_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")


def named(value: str) -> str:
    """Return a client-sent name quoted for an error message, or a stand-in when it is not a short name.

    Error pages show the message on the provider's own page: a value sent
    verbatim would let anyone put their sentence there (phishing text).
    """
    return repr(value) if _NAME.fullmatch(value) else "(a name that is not a plain identifier)"


def single_valued(params: Mapping[str, str | list[str]]) -> dict[str, str]:
    """Return the parameters as single strings; raise InvalidRequest for a repeated one (RFC 6749 §3.1)."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if isinstance(value, list):
            raise InvalidRequest(f"parameter {named(key)} is included more than once")
        out[key] = value
    return out


def without_blanks(params: Mapping[str, str]) -> dict[str, str]:
    """Return the parameters without those sent with no value: they count as omitted (RFC 6749 §3.1, §3.2)."""
    return {key: value for key, value in params.items() if value != ""}


def single_valued_authorization(params: Mapping[str, str | list[str]], clients: Mapping[str, Client],
                                issuer: str) -> dict[str, str]:
    """Return an authorization request's parameters as single strings; refuse a repeated one.

    RFC 6749 §3.1: no parameter may be repeated. A repeated ``client_id`` or
    ``redirect_uri`` is shown on the provider's page (InvalidRequest); any
    other, once those two are verified, goes to the redirect_uri as
    ``invalid_request`` (§4.1.2.1: only they stop the redirect).
    """
    repeated = [key for key, value in params.items() if isinstance(value, list)]
    if not repeated:
        return dict(params)  # type: ignore[arg-type]
    if "client_id" in repeated or "redirect_uri" in repeated:
        single_valued({k: params[k] for k in ("client_id", "redirect_uri") if k in params})
    first = {key: value[0] if isinstance(value, list) else value for key, value in params.items()}
    _, redirect_uri = resolve_client(first, clients)
    mode, _ = response_mode_for(first, canonical_response_type(first.get("response_type", "")))
    target = ResponseTarget(redirect_uri, mode, first.get("state"), issuer)
    raise AuthorizationError(InvalidRequest(f"parameter {named(repeated[0])} is included more than once"),
                             target)


def resolve_client(params: Mapping[str, str], clients: Mapping[str, Client]) -> tuple[Client, str]:
    """Return the client and its exactly registered redirect_uri; raise an error the server shows.

    RFC 9700 §2.1 and §4.1.1: redirect URIs are compared by exact string match.
    """
    client_id = params.get("client_id", "")
    if not client_id:
        raise InvalidRequest("client_id is missing")
    client = clients.get(client_id)
    if client is None:
        raise InvalidRequest("unknown client_id: no client is registered with the one sent")
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri:
        # OIDC Core §3.1.2.1: redirect_uri is REQUIRED
        raise InvalidRequest("redirect_uri is missing")
    if redirect_uri not in client.redirect_uris:
        raise InvalidRequest("redirect_uri is not registered for this client (exact match required)")
    return client, redirect_uri


def response_mode_for(params: Mapping[str, str], response_type: str | None) -> tuple[str, str | None]:
    """Return the response mode and, when the requested one is not allowed, why.

    Multiple Response Types §5: the default is ``query`` for ``code`` and
    ``fragment`` otherwise; tokens are never sent in the query.
    """
    default = "query" if response_type in (None, "code") else "fragment"
    mode = params.get("response_mode")
    if mode is None:
        return default, None
    if mode not in RESPONSE_MODES:
        return default, f"unsupported response_mode {mode!r}"
    if mode == "query" and default == "fragment":
        return default, "response_mode=query cannot carry tokens (use fragment or form_post)"
    return mode, None


HintResolver = Callable[[Mapping[str, str], Client], tuple[str | None, str | None]]

_SCOPES_OF: list[tuple[Mapping[str, Client], dict[str, None]]] = []  # the clients mapping last asked about


def tenant_scopes(clients: Mapping[str, Client]) -> dict[str, None]:
    """Return every scope some client of the tenant may ask for, in the clients' order (a dict: a set
    that keeps it), worked out once per clients mapping."""
    cached = _SCOPES_OF[0] if _SCOPES_OF else None
    if cached is not None and cached[0] is clients:
        return cached[1]
    scopes = dict.fromkeys(s for client in clients.values() for s in client.scopes)
    _SCOPES_OF[:] = [(clients, scopes)]
    return scopes


def _understood_scopes(scopes: tuple[str, ...], client: Client,
                       clients: Mapping[str, Client]) -> tuple[tuple[str, ...], str | None]:
    """Return the scopes without those no client may ask for, and the first this client may not ask for.

    OIDC Core §3.1.2.1: a scope value not understood is ignored. One the
    tenant knows (another client may ask for it) but this client may not is
    an error (RFC 6749 §4.1.2.1).
    """
    known = tenant_scopes(clients)
    kept = tuple(s for s in scopes if s in client.scopes or s in known)
    return kept, next((s for s in kept if s not in client.scopes), None)


def validate_authorization_request(
    params: Mapping[str, str], clients: Mapping[str, Client], issuer: str, *,
    resolve_hints: HintResolver | None = None,
    verify_challenge: Callable[[str], object] | None = None,
) -> AuthorizationRequest:
    """Return the validated request; raise InvalidRequest (shown) or AuthorizationError (redirected).

    ``verify_challenge`` raises for a malformed PKCE ``code_challenge`` (RFC
    7636 §4.2); ``resolve_hints`` returns the subjects named by id_token_hint and
    login_hint (OIDC Core §3.1.2.1), raising OAuthError for an unusable hint.
    """
    client, redirect_uri = resolve_client(params, clients)
    response_type = canonical_response_type(params.get("response_type", ""))
    mode, mode_problem = response_mode_for(params, response_type)
    target = ResponseTarget(redirect_uri, mode, params.get("state"), issuer)

    def fail(err: OAuthError) -> AuthorizationError:
        return AuthorizationError(err, target)

    if mode_problem:
        raise fail(InvalidRequest(mode_problem))
    for name, error in UNSUPPORTED_PARAMS.items():
        if name in params:
            raise fail(InvalidRequest(f"the {name} parameter is not supported", error=error))
    if not params.get("response_type"):
        raise fail(InvalidRequest("response_type is missing"))
    if response_type is None:
        raise fail(UnsupportedResponseType(f"response_type {params['response_type']!r} is not supported"))
    if not any(frozenset(r.split()) == frozenset(response_type.split()) for r in client.response_types):
        raise fail(UnauthorizedClient(f"the client may not use response_type {response_type!r}"))

    scopes = tuple(dict.fromkeys(params.get("scope", "").split()))
    if "openid" not in scopes:
        raise fail(InvalidScope("scope must include openid"))
    if any(s not in client.scopes for s in scopes):
        scopes, refused = _understood_scopes(scopes, client, clients)
        if refused is not None:
            raise fail(InvalidScope(f"scope {refused!r} is not allowed for this client"))
        params = {**params, "scope": " ".join(scopes)}  # what the policy and the grant see

    nonce = params.get("nonce") or None
    if "id_token" in response_type.split() and nonce is None:
        # OIDC Core §3.2.2.1 / §3.3.2.11: nonce is REQUIRED when the response carries an ID token
        raise fail(InvalidRequest("nonce is required for response types that return an ID token"))

    challenge = params.get("code_challenge") or None
    try:
        _pkce(challenge, params.get("code_challenge_method"), "code" in response_type.split(), client)
    except InvalidRequest as err:
        raise fail(err) from None
    if challenge is not None and verify_challenge is not None:
        _check_challenge(verify_challenge, challenge, target)
    jkt = params.get("dpop_jkt")
    if jkt is not None and not _JKT.fullmatch(jkt):
        # RFC 9449 §10: the base64url SHA-256 thumbprint of the key (RFC 7638)
        raise fail(InvalidRequest("dpop_jkt must be a base64url SHA-256 JWK thumbprint"))

    try:
        id_token_hint_sub, login_hint_sub = (resolve_hints(params, client) if resolve_hints
                                             else (None, None))
        policy_request = AuthRequest.from_params(client.client_id, params,
                                                 id_token_hint_sub=id_token_hint_sub,
                                                 login_hint_sub=login_hint_sub)
        claims_request = parse_claims_request(params.get("claims")).within(client.scopes)
        if claims_request.consent_scopes() - policy_request.scopes:
            # OIDC Core §3.1.2.4: claims asked for by name are released with consent to their scopes,
            # which the policy's consent check then asks for (the tokens' scope stays as requested)
            policy_request = replace(policy_request,
                                     scopes=policy_request.scopes | claims_request.consent_scopes())
    except OAuthError as err:
        raise fail(err) from None
    return AuthorizationRequest(
        client=client, target=target, response_type=response_type, scopes=scopes,
        policy_request=policy_request, nonce=nonce, code_challenge=challenge,
        claims=params.get("claims") or None, params=dict(params), claims_request=claims_request,
    )


def _pkce(challenge: str | None, method: str | None, returns_code: bool, client: Client) -> None:
    """Raise InvalidRequest unless the request's PKCE parameters are usable (RFC 7636, RFC 9700 §2.1.1)."""
    if not returns_code:
        if challenge is not None or method is not None:
            raise InvalidRequest("code_challenge is only allowed when a code is returned")
        return
    if challenge is None:
        if client.is_public:  # RFC 9700 §2.1.1: public clients MUST use PKCE
            raise InvalidRequest("code_challenge is required for public clients (PKCE S256)")
        if method is not None:  # RFC 7636 §4.3: a method alone binds nothing; the client only thinks it does
            raise InvalidRequest("code_challenge_method without code_challenge")
    elif method != "S256":  # RFC 9700 §2.1.1: only S256; "plain" is refused, and so is a missing method
        raise InvalidRequest("code_challenge_method must be S256")


def _check_challenge(verify: Callable[[str], object], challenge: str, target: ResponseTarget) -> None:
    try:
        verify(challenge)
    except (ValueError, OAuthError) as err:
        raise AuthorizationError(InvalidRequest(f"malformed code_challenge: {err}"), target) from None


class RequestShapes:
    """Authorization requests validated once per shape, then completed per request.

    A relying party sends the same request over and over, changing only
    ``state``, ``nonce`` and the PKCE challenge. Everything validation decides
    follows from the other parameters and from whether those three are
    present, so the first request of a shape is validated in full and later
    ones of the same shape reuse its result, checking only what is new (the
    challenge's form). Requests with hints (resolved against users and
    tokens) or request objects are always validated in full; refused shapes
    are never kept. Build one per tenant: it holds that tenant's clients.

    Memory (SPEC §7): only a request whose parameters come to at most
    MAX_SHAPE_CHARS characters is kept, and at most LIMIT of them, so the
    cache holds at most LIMIT x SHAPE_ENTRY_BYTES (8 MiB; measured in
    tests/test_ratelimit.py); a larger request is validated in full.
    Only a request that passed validation is kept, so its client and
    redirect_uri are registered ones.
    """

    SHAPE = ("client_id", "redirect_uri", "response_type", "response_mode", "scope", "prompt", "max_age",
             "acr_values", "claims", "code_challenge_method")
    UNSHAPED = frozenset({"id_token_hint", "login_hint", "dpop_jkt", *UNSUPPORTED_PARAMS})
    LIMIT = 512  # shapes kept; past it the cache starts over
    MAX_SHAPE_CHARS = 1024  # a request's parameters, names and values, for it to be kept
    # one kept shape at MAX_SHAPE_CHARS, at worst ~11 KB (acr_values of 1-character values, each
    # parsed into its own string): the key, the validated request, the parameters' copy
    SHAPE_ENTRY_BYTES = 16 * 1024

    def __init__(self, clients: Mapping[str, Client], issuer: str) -> None:
        self.clients = clients
        self.issuer = issuer
        self._shapes: dict[tuple, AuthorizationRequest] = {}

    def __len__(self) -> int:
        """Return how many shapes are kept."""
        return len(self._shapes)

    def validate(self, params: Mapping[str, str], *, resolve_hints: HintResolver | None = None,
                 verify_challenge: Callable[[str], object] | None = None) -> AuthorizationRequest:
        """Return the validated request, as :func:`validate_authorization_request` would."""
        def in_full() -> AuthorizationRequest:
            return validate_authorization_request(params, self.clients, self.issuer,
                                                  resolve_hints=resolve_hints,
                                                  verify_challenge=verify_challenge)

        if not self.UNSHAPED.isdisjoint(params):
            return in_full()
        nonce = params.get("nonce") or None
        challenge = params.get("code_challenge") or None
        key = (*map(params.get, self.SHAPE), nonce is None, challenge is None)
        known = self._shapes.get(key)
        if known is None:
            areq = in_full()
            if sum(map(len, params.values())) + sum(map(len, params)) > self.MAX_SHAPE_CHARS:
                return areq  # too large to keep: memory stays bounded in bytes, not only in entries
            if len(self._shapes) >= self.LIMIT:
                self._shapes.clear()
            self._shapes[key] = areq
            return areq
        target = ResponseTarget(known.target.redirect_uri, known.target.response_mode, params.get("state"),
                                self.issuer)
        if challenge is not None and verify_challenge is not None:
            _check_challenge(verify_challenge, challenge, target)
        return AuthorizationRequest(known.client, target, known.response_type, known.scopes,
                                    known.policy_request, nonce, challenge, known.claims, dict(params),
                                    known.claims_request)
