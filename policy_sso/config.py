"""Tenant settings, clients and users: frozen records built from schema-valid YAML."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from policy_sso.audit.settings import AuditSettings, audit_settings
from policy_sso.model import AmrRequirement, MfaRequirement, Requirement, Span, parse_duration
from policy_sso.sessions.model import SessionLifetime
from policy_sso.sessions.store import DEFAULT_MAX_SESSIONS_PER_USER, DEFAULT_TIMEOUT, StoreOptions

MAX_INACTIVITY = 604800  # SPEC §3 / IBM App ID: at most 7 days
DEFAULT_INACTIVITY = 86400
MAX_SECRET_BYTES = 65536  # a key or secret file larger than this is not a key
DEFAULT_POLICY_FILES = ("*.policy", "*.policy.yaml", "*.policy.yml")
DEFAULT_CLIENT_SCOPES = ("openid", "profile", "email", "offline_access")


@dataclass(frozen=True)
class SecretRef:
    """A secret kept outside the YAML: an environment variable or a file."""

    source: Literal["env", "file"]
    name: str
    span: Span = field(default=Span("<builtin>", 0, 0), compare=False)

    def read(self, base: Path) -> bytes | None:
        """Return the secret's bytes, or None when the variable or file is absent."""
        if self.source == "env":
            value = os.environ.get(self.name)
            return value.encode() if value else None
        path = (base / self.name) if not os.path.isabs(self.name) else Path(self.name)
        try:
            if not path.is_file():  # not a device or a FIFO: reading one could block forever
                return None
            with path.open("rb") as handle:
                data = handle.read(MAX_SECRET_BYTES + 1)
        except OSError:
            return None
        return data.strip() if len(data) <= MAX_SECRET_BYTES else None

    def describe(self) -> str:
        """Return ``env VAR`` or ``file PATH`` for messages (never the value)."""
        return f"{self.source} {self.name}"


def secret_ref(data: dict[str, str] | None, span: Span | None = None) -> SecretRef | None:
    """Return the SecretRef for ``{env: X}`` / ``{file: Y}``, or None."""
    if not data:
        return None
    (source, name), = data.items()
    return SecretRef(source, name, span or Span("<builtin>", 0, 0))  # type: ignore[arg-type]


@dataclass(frozen=True)
class AcrLevel:
    """An assurance level and the requirements a session meets to reach it."""

    id: str
    rank: int
    requires: tuple[Requirement, ...]
    description: str = ""
    span: Span = field(default=Span("<builtin>", 0, 0), compare=False)


@dataclass(frozen=True)
class RateLimit:
    """At most ``requests`` (or, for the guessing throttle, failures) per fixed ``window`` seconds."""

    requests: int
    window: int


# docs/security.md "Guessing and rate limits": what each default protects. A tenant's rate_limits
# replace these kind by kind; a kind it leaves out keeps its default.
DEFAULT_RATE_LIMITS = {
    "silent_auth": RateLimit(60, 60),  # per known session and client, else per client address
    "status": RateLimit(30, 60),  # the same keys
    "login": RateLimit(30, 60),  # password attempts per client address, checked before hashing
    "authorize": RateLimit(120, 60),  # interactive authorization requests, the same keys as silent_auth
}


@dataclass(frozen=True)
class GuessingSettings:
    """``tenant.yaml`` ``guessing``: the throttle on wrong passwords and one-time codes.

    Failures are counted per (account, client address) and per client address,
    each in escalating windows (the later tiers are the backoff: NIST SP 800-63B
    §5.2.2, RFC 4226 §7.3, Authelia's regulation), never per account alone, so
    a guesser elsewhere cannot lock the owner out.
    """

    per_account_address: tuple[RateLimit, ...] = (RateLimit(5, 60), RateLimit(20, 3600),
                                                  RateLimit(100, 86400))
    per_address: tuple[RateLimit, ...] = (RateLimit(30, 60), RateLimit(300, 86400))
    concurrent_hashes: int = 0  # 0: one less than the CPUs, at least 1
    # how long a password check waits for a hashing slot before 503: a waiting worker thread serves
    # no one else, so 0 unless serve runs more worker threads than hashing slots and one spare
    hash_wait_ms: int = 0


@dataclass(frozen=True)
class TokenSettings:
    access_token_lifetime: int = 600
    id_token_lifetime: int = 600
    refresh_token_lifetime: int = 14 * 86400
    code_lifetime: int = 60
    algorithms: tuple[str, ...] = ("RS256", "ES256", "EdDSA")


# RFC 9449 §3.1: asymmetric algorithms only; never "none" nor a MAC (HS*), whose key a proof cannot carry
DPOP_ALGORITHMS = ("ES256", "EdDSA", "RS256", "PS256")


@dataclass(frozen=True)
class ParSettings:
    """``tenant.yaml`` ``par``: pushed authorization requests (RFC 9126)."""

    required: bool = False  # every client must push its requests (RFC 9126 §5)
    request_uri_lifetime: int = 60  # how long a request_uri is usable (RFC 9126 §2.2 expires_in)


@dataclass(frozen=True)
class DpopSettings:
    """``tenant.yaml`` ``dpop``: what a DPoP proof may be signed with and how fresh it must be (RFC 9449)."""

    algorithms: tuple[str, ...] = DPOP_ALGORITHMS
    proof_lifetime: int = 60  # a proof's iat may be this old (RFC 9449 §11.1)
    nonce: bool = False  # require server-provided nonces (RFC 9449 §8, §9)


@dataclass(frozen=True)
class EnrolmentSettings:
    """``tenant.yaml`` ``enrolment``: which factors users may add themselves, and after what.

    ``factors``: the methods a user may enrol (``otp``: an authenticator app,
    ``hwk``: a passkey). ``after``: the amr a session must hold to enrol one
    (any of them; ``pwd`` lets a password alone add the first factor, as
    Keycloak's "configure OTP" required action does). ``within``: how recent
    that authentication must be, in seconds. ``users``: the subjects allowed,
    empty for everyone.
    """

    factors: frozenset[str] = frozenset({"otp", "hwk"})
    after: frozenset[str] = frozenset({"pwd"})
    within: int = 600
    users: frozenset[str] = frozenset()

    def allows(self, subject: str, factor: str) -> bool:
        """Return whether ``subject`` may enrol ``factor`` at all (the authentication is checked apart)."""
        return factor in self.factors and (not self.users or subject in self.users)


def enrolment_settings(data: dict[str, Any]) -> EnrolmentSettings:
    """Return the EnrolmentSettings of a schema-valid ``enrolment:`` block."""
    default = EnrolmentSettings()
    return EnrolmentSettings(
        factors=frozenset(data.get("factors", default.factors)),
        after=frozenset(data.get("after", default.after)),
        within=_dur(data, "within", default.within),
        users=frozenset(data.get("users", ())),
    )


def _scope_name(item: str | dict[str, Any]) -> str:
    return item["name"] if isinstance(item, dict) else item


@dataclass(frozen=True)
class TenantSettings:
    """``tenant.yaml``."""

    issuer: str
    default_policy: str = "default"  # what a client's ``policy: default`` stands for; governs no one alone
    sso_active: bool = True
    # acr_values in a request (OIDC Core §3.1.2.1): "enforced" (a silent sign-in must reach a
    # requested level; the Transmit SSO seed) or "voluntary" (served as voluntary claims)
    acr_values_requested: Literal["enforced", "voluntary"] = "enforced"
    lifetime: SessionLifetime = SessionLifetime()
    acr_levels: tuple[AcrLevel, ...] = ()
    methods: frozenset[str] = frozenset({"pwd", "otp"})
    policy_files: tuple[str, ...] = DEFAULT_POLICY_FILES
    scopes: frozenset[str] = frozenset()  # scopes policies may name beyond those the clients request
    # what the consent page says a scope is for (``scopes:`` items written {name, description})
    scope_descriptions: dict[str, str] = field(default_factory=dict)
    enrolment: EnrolmentSettings = EnrolmentSettings()
    rate_limits: dict[str, RateLimit] = field(default_factory=dict)
    guessing: GuessingSettings = GuessingSettings()
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-For names the client address
    # named client networks policies test with ``when network in NAME`` (name -> CIDRs)
    networks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tokens: TokenSettings = TokenSettings()
    store: str = "sqlite:///var/policy-sso.db"
    # store_timeout and session.max_per_user (issue 14): how long a store call may wait, and
    # how many sessions one user keeps before the oldest ends
    store_options: StoreOptions = StoreOptions()
    state_dir: str = "var"
    admin_token: SecretRef | None = None
    clock_skew: int = 30
    audit: AuditSettings = AuditSettings()
    par: ParSettings = ParSettings()
    dpop: DpopSettings = DpopSettings()
    spans: dict[str, Span] = field(default_factory=dict, compare=False, repr=False)

    def span(self, key: str) -> Span:
        """Return where setting ``key`` (dotted path) is written, else the file's start."""
        return self.spans.get(key) or self.spans.get("", Span("tenant.yaml", 1, 1))

    def acr_level(self, level_id: str) -> AcrLevel | None:
        """Return the level named ``level_id``, or None."""
        return next((lvl for lvl in self.acr_levels if lvl.id == level_id), None)


def _dur(data: dict[str, Any], key: str, default: int) -> int:
    return parse_duration(data[key]) if key in data else default


def _level_requirements(requires: dict[str, Any], span: Span) -> tuple[Requirement, ...]:
    reqs: list[Requirement] = []
    amr = requires.get("amr", {})
    for mode in ("any_of", "all_of"):
        if mode in amr:
            reqs.append(AmrRequirement(mode, tuple(amr[mode]), span))
    if requires.get("mfa"):
        reqs.append(MfaRequirement(None, span))
    return tuple(reqs)


def guessing_settings(data: dict[str, Any]) -> GuessingSettings:
    """Return the guessing throttle for a schema-valid ``guessing`` mapping (defaults for what is absent)."""
    default = GuessingSettings()

    def tiers(key: str, fallback: tuple[RateLimit, ...]) -> tuple[RateLimit, ...]:
        if key not in data:
            return fallback
        return tuple(RateLimit(t["failures"], parse_duration(t["window"])) for t in data[key])

    return GuessingSettings(
        per_account_address=tiers("per_account_address", default.per_account_address),
        per_address=tiers("per_address", default.per_address),
        concurrent_hashes=data.get("concurrent_hashes", default.concurrent_hashes),
        hash_wait_ms=data.get("hash_wait_ms", default.hash_wait_ms),
    )


def tenant_settings(data: dict[str, Any], spans: dict[str, Span]) -> TenantSettings:
    """Return the settings for a schema-valid ``tenant.yaml`` mapping."""
    session = data.get("session", {})
    inactivity = _dur(session, "inactivity", DEFAULT_INACTIVITY)
    lifetime = SessionLifetime(
        sliding=_dur(session, "lifetime", 14 * 86400),
        absolute=_dur(session, "require_login_after", 30 * 86400),
        inactivity=inactivity,
        touch_interval=max(1, min(60, inactivity // 20)),
    )
    start = spans.get("", Span("tenant.yaml", 1, 1))
    levels = tuple(
        AcrLevel(lvl["id"], rank,
                 _level_requirements(lvl.get("requires", {}), spans.get(f"acr_levels.{rank}", start)),
                 lvl.get("description", ""), spans.get(f"acr_levels.{rank}", start))
        for rank, lvl in enumerate(data.get("acr_levels", []))
    )
    tokens = data.get("tokens", {})
    return TenantSettings(
        issuer=data["issuer"].rstrip("/"),
        default_policy=data.get("default_policy", "default"),
        sso_active=data.get("sso", {}).get("active", True),
        acr_values_requested=data.get("acr_values", {}).get("requested", "enforced"),
        lifetime=lifetime,
        acr_levels=levels,
        methods=frozenset(data.get("methods", ["pwd", "otp"])),
        policy_files=tuple(data.get("policy_files", DEFAULT_POLICY_FILES)),
        scopes=frozenset(_scope_name(item) for item in data.get("scopes", ())),
        scope_descriptions={item["name"]: item["description"] for item in data.get("scopes", ())
                            if isinstance(item, dict) and item.get("description")},
        enrolment=enrolment_settings(data.get("enrolment", {})),
        rate_limits={k: RateLimit(v["requests"], parse_duration(v["window"]))
                     for k, v in data.get("rate_limits", {}).items()},
        guessing=guessing_settings(data.get("guessing", {})),
        trusted_proxies=tuple(data.get("trusted_proxies", ())),
        networks={name: tuple(cidrs) for name, cidrs in data.get("networks", {}).items()},
        tokens=TokenSettings(
            access_token_lifetime=_dur(tokens, "access_token_lifetime", 600),
            id_token_lifetime=_dur(tokens, "id_token_lifetime", 600),
            refresh_token_lifetime=_dur(tokens, "refresh_token_lifetime", 14 * 86400),
            code_lifetime=_dur(tokens, "code_lifetime", 60),
            algorithms=tuple(tokens.get("algorithms", ["RS256", "ES256", "EdDSA"])),
        ),
        store=data.get("store", "sqlite:///var/policy-sso.db"),
        store_options=StoreOptions(float(data.get("store_timeout", DEFAULT_TIMEOUT)),
                                   int(session.get("max_per_user", DEFAULT_MAX_SESSIONS_PER_USER))),
        state_dir=data.get("state_dir", "var"),
        admin_token=secret_ref(data.get("admin_token"), spans.get("admin_token")),
        clock_skew=_dur(data, "clock_skew", 30),
        audit=audit_settings(data.get("audit")),
        par=ParSettings(required=bool(data.get("par", {}).get("required", False)),
                        request_uri_lifetime=_dur(data.get("par", {}), "request_uri_lifetime", 60)),
        dpop=DpopSettings(algorithms=tuple(data.get("dpop", {}).get("algorithms", DPOP_ALGORITHMS)),
                          proof_lifetime=_dur(data.get("dpop", {}), "proof_lifetime", 60),
                          nonce=bool(data.get("dpop", {}).get("nonce", False))),
        spans=spans,
    )


@dataclass(frozen=True)
class Client:
    """A registered relying party (``clients.yaml``)."""

    client_id: str
    name: str = ""
    type: Literal["confidential", "public"] = "confidential"
    secret: SecretRef | None = None
    token_endpoint_auth_method: str = "client_secret_basic"  # noqa: S105 - a method name, not a secret
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    backchannel_logout_uri: str | None = None
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token")
    response_types: tuple[str, ...] = ("code",)
    scopes: tuple[str, ...] = DEFAULT_CLIENT_SCOPES
    id_token_signed_response_alg: str = "RS256"  # noqa: S105 - an algorithm name
    first_party: bool = False
    client_name: str | None = None  # what people see on the hosted pages (RFC 7591 §2); ``name`` is a note
    require_pushed_authorization_requests: bool = False  # RFC 9126 §6
    dpop_bound_access_tokens: bool = False  # RFC 9449 §5.2: every token request carries a DPoP proof
    policy: str | None = None  # as written in clients.yaml; see governing_policy_name()
    span: Span = field(default=Span("<builtin>", 0, 0), compare=False)
    policy_span: Span | None = field(default=None, compare=False)

    def governing_policy_name(self, settings: TenantSettings | None) -> str | None:
        """Return the policy its ``policy:`` key names (``default``: tenant.yaml's default_policy)."""
        if self.policy == "default" and settings is not None:
            return settings.default_policy
        return self.policy

    @property
    def is_public(self) -> bool:
        """Return whether the client cannot keep a secret (PKCE required, RFC 9700 §2.1.1)."""
        return self.type == "public"


def client_record(data: dict[str, Any], span: Span, policy_span: Span | None = None) -> Client:
    """Return the Client for one schema-valid ``clients.yaml`` entry (``policy_span``: its policy key)."""
    public = data.get("type") == "public"
    return Client(
        client_id=data["client_id"], name=data.get("name", data["client_id"]),
        type="public" if public else "confidential",
        secret=secret_ref(data.get("secret"), span),
        token_endpoint_auth_method=data.get(
            "token_endpoint_auth_method", "none" if public else "client_secret_basic"),
        redirect_uris=tuple(data.get("redirect_uris", ())),
        post_logout_redirect_uris=tuple(data.get("post_logout_redirect_uris", ())),
        backchannel_logout_uri=data.get("backchannel_logout_uri"),
        grant_types=tuple(data.get("grant_types", ("authorization_code", "refresh_token"))),
        response_types=tuple(data.get("response_types", ("code",))),
        scopes=tuple(data.get("scopes", DEFAULT_CLIENT_SCOPES)),
        id_token_signed_response_alg=data.get("id_token_signed_response_alg", "RS256"),
        first_party=bool(data.get("first_party", False)),
        client_name=data.get("client_name"),
        require_pushed_authorization_requests=bool(data.get("require_pushed_authorization_requests", False)),
        dpop_bound_access_tokens=bool(data.get("dpop_bound_access_tokens", False)),
        policy=data.get("policy"),
        span=span,
        policy_span=policy_span if "policy" in data else None,
    )


@dataclass(frozen=True)
class User:
    """A user of the tenant's directory (``users.yaml``)."""

    sub: str
    username: str
    password_hash: str
    totp_secret: SecretRef | None = None
    methods: tuple[str, ...] = ()
    claims: dict[str, Any] = field(default_factory=dict, compare=False)
    span: Span = field(default=Span("<builtin>", 0, 0), compare=False)


def user_record(data: dict[str, Any], span: Span, secret_span: Span | None = None) -> User:
    """Return the User for one schema-valid ``users.yaml`` entry; ``secret_span`` locates its totp_secret."""
    return User(
        sub=data["sub"], username=data["username"], password_hash=data["password_hash"],
        totp_secret=secret_ref(data.get("totp_secret"), secret_span or span),
        methods=tuple(data.get("methods", ())), claims=dict(data.get("claims", {})), span=span,
    )
