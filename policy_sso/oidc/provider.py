"""The OpenID Provider's parts in one place, and the one way a session ends.

:class:`Provider` holds what every endpoint needs: the tenant, the store, the
signing keys, the interaction codec, the code sealer and the client secrets. Secrets (client
secrets, TOTP seeds) are read once, here, never per request.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policy_sso.audit import AuditLog, logout_type
from policy_sso.audit.configure import server_audit_log
from policy_sso.config import DEFAULT_RATE_LIMITS, Client, User
from policy_sso.errors import OAuthError
from policy_sso.metrics import Metrics
from policy_sso.oidc import dpop
from policy_sso.oidc.authorize import RequestShapes
from policy_sso.oidc.backchannel import BackchannelNotifier, LogoutTarget
from policy_sso.oidc.client_auth import ClientAuthenticator
from policy_sso.oidc.codes import CodeSealer
from policy_sso.oidc.interaction import InteractionCodec
from policy_sso.ratelimit import RateLimiter
from policy_sso.reload import TenantHolder
from policy_sso.sessions.model import LOGGED_OUT, ClientJoin, Session, SessionEnd
from policy_sso.sessions.store import Store
from policy_sso.tenant import Tenant

# The use_jti namespace that records spent TOTP codes, so a code works once (RFC 6238 §5.2).
SPENT_TOTP_CODES = "totp"

log = logging.getLogger("policy_sso.provider")


@dataclass
class Provider:
    """Everything the endpoints share; built once per server (or per test).

    The tenant comes from a :class:`TenantHolder`, so a policy reload takes
    effect on the next request; the secrets read from the tenant directory are
    re-read once when a new tenant is swapped in.
    """

    holder: TenantHolder
    store: Store
    keyring: Any
    codec: InteractionCodec
    codes: CodeSealer
    notifier: BackchannelNotifier | None = None
    metrics: Metrics = field(default_factory=Metrics)
    audit: AuditLog = field(default_factory=AuditLog.disabled)
    clients: ClientAuthenticator = field(init=False)
    hint_verifiers: dict[tuple[int, str], Any] = field(init=False, default_factory=dict)
    totp_secrets: dict[str, str] = field(init=False, default_factory=dict)
    _limiter: RateLimiter = field(init=False, repr=False)
    _shapes: RequestShapes = field(init=False, repr=False)
    _loaded_for: Tenant | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self._load_secrets(self.holder.tenant)

    def _load_secrets(self, tenant: Tenant) -> None:
        totp: dict[str, str] = {}
        for user in tenant.users.values():
            if user.totp_secret is not None:
                value = user.totp_secret.read(tenant.directory)
                if value:
                    totp[user.sub] = value.decode().strip()
        self.clients = ClientAuthenticator(tenant.clients, tenant.directory)
        self._shapes = RequestShapes(tenant.clients, tenant.settings.issuer)
        self.totp_secrets = totp
        limits = {**DEFAULT_RATE_LIMITS, **tenant.settings.rate_limits}
        guessing = tenant.settings.guessing
        if (getattr(self, "_limiter", None) is None or self._limiter.limits != limits
                or self._limiter.guessing.settings != guessing):
            # a reload with the same limits keeps the limiter, and the permits it holds
            self._limiter = RateLimiter(self.store, limits, self.audit.refusals(self.metrics.rate_limited),
                                        guessing)
        self._loaded_for = tenant

    @property
    def tenant(self) -> Tenant:
        """Return the tenant in force (secrets reloaded with it when it was swapped)."""
        tenant = self.holder.tenant
        if tenant is not self._loaded_for:
            self._load_secrets(tenant)
        return tenant

    @classmethod
    def build(cls, tenant: Tenant | TenantHolder, store: Store, keyring: Any,
              cookie_key: bytes | None = None, audit: AuditLog | None = None) -> Provider:
        """Return a provider; ``cookie_key`` signs interactions and seals codes (random when omitted).

        ``audit`` defaults to the sinks of ``tenant.yaml``'s ``audit:`` block.

        Instances sharing a store must share this key (the state directory's
        ``interaction.key``): a code sealed by one is redeemed at another.
        """
        holder = tenant if isinstance(tenant, TenantHolder) else TenantHolder(tenant)
        notifier = BackchannelNotifier(keyring, holder.tenant.settings.issuer)
        secret = cookie_key or secrets.token_bytes(32)
        metrics = Metrics()
        metrics.watch_backchannel(notifier.stats)
        if hasattr(keyring, "signing_stats"):
            metrics.watch_signing(keyring.signing_stats)
        metrics.watch_dpop_verification(dpop.VERIFICATIONS.stats)
        if audit is None:
            settings = holder.tenant.settings
            audit = server_audit_log(settings.audit, Path(settings.state_dir), store, secret)
        metrics.watch_audit(audit.stats)
        holder.listeners.append(audit.reload_listener())
        hooks = getattr(store, "on_replaced", None)
        if isinstance(hooks, list):  # a Redis that lost its data: users.yaml holds what outlives it
            hooks.append(lambda: holder.reload(tell_others=False))
        if notifier.on_result is None:
            notifier.on_result = audit.backchannel_listener()
        return cls(holder, store, keyring, InteractionCodec(secret), CodeSealer(secret), notifier, metrics,
                   audit)

    @property
    def issuer(self) -> str:
        """Return the tenant's issuer identifier (no trailing slash)."""
        return self.tenant.settings.issuer

    def client(self, client_id: str) -> Client | None:
        """Return a registered client."""
        return self.tenant.clients.get(client_id)

    def user(self, subject: str) -> User | None:
        """Return the user with this subject."""
        return self.tenant.users.get(subject)

    def second_factors(self, subject: str) -> tuple[str, ...]:
        """Return the second-factor methods the hosted pages can offer this user.

        A factor enrolled at run time lives in the store (:mod:`policy_sso.oidc.enrolment`).
        """
        from policy_sso.oidc import enrolment

        return enrolment.enrolled_factors(self, subject)

    @property
    def limiter(self) -> RateLimiter:
        """Return the rate limiter of the tenant in force (limits change with a reload)."""
        _ = self.tenant  # a swapped-in tenant brings its own limits
        return self._limiter

    @property
    def request_shapes(self) -> RequestShapes:
        """Return the authorization-request validator of the tenant in force."""
        _ = self.tenant  # a swapped-in tenant brings its own clients
        return self._shapes

    def id_token_alg(self, client: Client) -> str:
        """Return the client's ID token algorithm; raise server_error when the tenant does not enable it.

        OIDC Registration §2: the OP signs with the registered algorithm, and
        SPEC §7 has nothing quietly replaced by a default. ``policy-sso
        validate`` (and so start and reload) refuses a client whose algorithm
        ``tokens.algorithms`` does not list, so this refusal is the last line,
        never a substitution.
        """
        alg = client.id_token_signed_response_alg
        if alg not in self.tenant.settings.tokens.algorithms:
            log.error("client %r has id_token_signed_response_alg %s, which tenant.yaml tokens.algorithms "
                      "does not list: nothing is signed for it (run policy-sso validate)",
                      client.client_id, alg)
            raise OAuthError("this client's ID token algorithm is not enabled on this server",
                             error="server_error", status=503)  # never a 500 (SPEC §7)
        return alg


def end_session(provider: Provider, session_id: str, now: int,
                reason: str = LOGGED_OUT, *, client: str | None = None) -> Session | None:
    """End one IdP session; return it as it was, or None when it was not live.

    ``client`` is the client_id that ended it (the app whose logout request,
    token or sign-in it was), recorded in its ``logout.*`` event.

    Every path that ends a session (RP-initiated logout, a different user
    signing in, admin and backend logout) goes through here, so back-channel
    logout (OIDC Back-Channel Logout 1.0 §2.5) is added in one place. The
    store keeps ``reason`` for a while, so the next silent sign-in with this
    session is told why it ended.
    """
    session = provider.store.end_session(session_id, reason, now)  # logout tokens carry their own iat
    if session is not None:
        session_ended(provider, session, now, reason, client=client)
    return session


# Why a session ended when its user signed in once more than ``session.max_per_user`` allows.
SESSION_LIMIT = "session_limit"


def start_session(provider: Provider, session: Session, now: int) -> Session:
    """Store a new session; return it. The user's oldest sessions beyond the bound end.

    Each session the store pushed out (``session.max_per_user``, issue 14) ends
    as any other does: its reason kept, audited, and back-channel logout to its
    clients (OIDC Back-Channel Logout 1.0 §2.5).
    """
    for old in provider.store.create_session(session) or ():
        provider.store.record_session_end(old.id, SessionEnd(SESSION_LIMIT, now))
        session_ended(provider, old, now, SESSION_LIMIT, client=session.created_for)
    return session


def session_ended(provider: Provider, session: Session, now: int, reason: str, *,
                  client: str | None = None) -> None:
    """Audit an ended session and send back-channel logout tokens to its clients.

    ``client`` is the client_id that ended it, when one did (the event's ``client``).
    """
    provider.audit.record(logout_type(reason), now, outcome="ended", client=client, subject=session.subject,
                          session_id=session.id, reason=reason, clients=sorted(session.clients))
    if provider.notifier is not None:
        clients = provider.tenant.clients
        provider.notifier.notify(
            LogoutTarget(join.client_id, uri, join.sid, session.subject)
            for join in session.clients.values()
            if (uri := getattr(clients.get(join.client_id), "backchannel_logout_uri", None)))


def reusable_for(provider: Provider, session: Session, client_id: str) -> bool:
    """Return whether a new sign-in at ``client_id`` may re-authenticate ``session`` in place.

    With single sign-on off (``sso.active: false``) a session serves only the
    client it was created for, so a sign-in at another client makes that client
    its own new session (IBM App ID: with SSO off each app signs the user in).
    """
    return provider.tenant.settings.sso_active or session.created_for == client_id


def join_client(provider: Provider, session: Session, client_id: str, now: int) -> ClientJoin:
    """Return the client's join of the session (its OIDC ``sid``), recording it on first use."""
    join = session.clients.get(client_id)
    if join is None:
        join = ClientJoin(client_id, secrets.token_urlsafe(16), now)
        joined = provider.store.join_client(session.id, join, now)
        join = joined.clients.get(client_id, join) if joined else join
    return join


def state_dir_key(state_dir: Path) -> Path:
    """Return where the interaction-cookie key lives in a state directory."""
    return state_dir / "interaction.key"
