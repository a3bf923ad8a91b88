"""Build the Falcon app from its parts, and serve it on waitress.

``create_app(tenant, store, keyring, clock=...)`` is what tests use (memory
store, fake clock); :func:`serve` is what ``policy-sso serve`` runs (SQLite or
Redis, keys in the state directory).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import falcon

from policy_sso import jsonenc
from policy_sso.audit import AuditLog
from policy_sso.audit.configure import server_audit_log
from policy_sso.errors import StoreUnavailable
from policy_sso.oidc.interaction import load_or_create_key
from policy_sso.oidc.logout_token import DEFAULT_ALG, LOGOUT_TOKEN_LIFETIME
from policy_sso.oidc.provider import Provider, state_dir_key
from policy_sso.reload import TenantHolder
from policy_sso.sessions.store import Store
from policy_sso.tenant import Tenant
from server import error_handlers
from server.browser import Browser
from server.client_address import client_address
from server.converge import ReloadFollower
from server.limits import ServerLimits, create_server
from server.logs import flush_access_log
from server.middleware import Envelope, complete_methods
from server.resources.account import Account, EnrolPasskey, EnrolTotp
from server.resources.admin import (
    PoliciesReload,
    UserClientConsent,
    UserConsents,
    UserPassword,
    UserSessionsLogout,
)
from server.resources.api_decision import ApiDecision
from server.resources.authorize import Authorize
from server.resources.backend import (
    Otp,
    Password,
    SessionAuthenticate,
    SessionLogout,
    SessionStatus,
    UserLogout,
)
from server.resources.discovery import Discovery, Jwks
from server.resources.events import Events
from server.resources.health import Health, MetricsPage, Readiness
from server.resources.interaction import Consent, Favicon, Login
from server.resources.logout import Logout
from server.resources.openapi import OpenApi
from server.resources.par import PushedAuthorizationRequest
from server.resources.token import Introspect, Revoke, Token
from server.resources.userinfo import UserInfo

log = logging.getLogger("policy_sso.server")

SWEEP_INTERVAL = 60  # seconds between store sweeps of expired records


def wall_clock() -> int:
    """Return the current time in integer epoch seconds (the server's only clock read)."""
    return int(time.time())


def create_app(tenant: Tenant | TenantHolder, store: Store, keyring: Any, *,
               clock: Callable[[], int] = wall_clock, cookie_key: bytes | None = None,
               audit: AuditLog | None = None) -> falcon.App:
    """Return the WSGI app serving ``tenant`` (or a reloadable holder) with ``store`` and ``keyring``.

    ``clock`` is read once per request; ``cookie_key`` signs pending
    interactions (random per process when omitted, so pass the state
    directory's key when several processes serve the same tenant). ``audit``
    defaults to the sinks tenant.yaml's ``audit:`` block names.
    """
    provider = Provider.build(tenant, store, keyring, cookie_key, audit)
    provider.audit.address_of = lambda req: client_address(req, provider.tenant.settings.trusted_proxies)
    browser = Browser(provider.issuer, provider.tenant.settings.lifetime.sliding)
    app = falcon.App(middleware=[Envelope(clock, provider.metrics.requests, provider.audit.address_of)])
    app.resp_options.secure_cookies_by_default = browser.secure
    # JSON answers compact and UTF-8 (non-ASCII kept), by orjson (policy_sso.jsonenc)
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(dumps=jsonenc.dumps)
    if provider.notifier is not None:  # logout tokens are validated like ID tokens (Back-Channel Logout §2.6)
        provider.notifier.alg_of = lambda client_id: logout_token_alg(provider, client_id)
    discovery = Discovery(provider)
    routes: dict[str, Any] = {
        "/.well-known/openid-configuration": discovery,
        "/.well-known/oauth-authorization-server": discovery,  # RFC 8414 §3: the same metadata
        "/jwks": Jwks(provider),
        "/authorize": Authorize(provider, browser),
        "/login": Login(provider, browser),
        "/consent": Consent(provider, browser),
        "/favicon.ico": Favicon(),
        "/account": Account(provider, browser),
        "/enrol/totp": EnrolTotp(provider, browser),
        "/enrol/passkey": EnrolPasskey(provider, browser),
        "/token": Token(provider),
        "/revoke": Revoke(provider),
        "/introspect": Introspect(provider),
        "/par": PushedAuthorizationRequest(provider),
        "/userinfo": UserInfo(provider),
        "/logout": Logout(provider, browser),
        "/healthz": Health(),
        "/readyz": Readiness(provider),
        "/metrics": MetricsPage(provider.metrics),
        "/openapi.json": OpenApi(),
        "/v1/auth/password": Password(provider),
        "/v1/auth/otp": Otp(provider),
        "/v1/auth/session/authenticate": SessionAuthenticate(provider),
        "/v1/auth/session/logout": SessionLogout(provider),
        "/v1/auth/logout": UserLogout(provider),
        "/v1/auth/api-decision": ApiDecision(provider),
        "/v1/auth/session/status": SessionStatus(provider, browser),
        "/admin/v1/users/{sub}/sessions/logout": UserSessionsLogout(provider),
        "/admin/v1/users/{sub}/password": UserPassword(provider),
        "/admin/v1/users/{sub}/consents": UserConsents(provider),
        "/admin/v1/users/{sub}/consents/{client_id}": UserClientConsent(provider),
        "/admin/v1/policies/reload": PoliciesReload(provider),
        "/admin/v1/events": Events(provider),
    }
    for path, resource in routes.items():
        app.add_route(path, complete_methods(resource))  # HEAD wherever GET; OPTIONS with its real Allow
    pages = frozenset(path for path, resource in routes.items() if getattr(resource, "html_errors", False))
    error_handlers.register(app, browser, pages)
    return app


# The routes served on waitress's I/O loop itself (server.dispatch): quick and bounded, they never hash
# a password, call another server or wait for anything but the store. The hosted pages that take
# passwords, the password and OTP APIs, admin, logout (back-channel calls), /readyz and /metrics
# (every worker's files) run on the worker threads.
LOOP_PATHS = frozenset({
    "/.well-known/openid-configuration", "/.well-known/oauth-authorization-server", "/jwks", "/authorize",
    "/token", "/revoke", "/introspect", "/par", "/userinfo", "/healthz", "/favicon.ico", "/openapi.json",
    "/v1/auth/session/authenticate", "/v1/auth/session/status", "/v1/auth/api-decision",
})


def logout_token_alg(provider: Provider, client_id: str) -> str:
    """Return the algorithm a client's logout tokens are signed with: its ID tokens' (RS256 if unknown)."""
    client = provider.client(client_id)
    return provider.id_token_alg(client) if client is not None else DEFAULT_ALG


def default_threads() -> int:
    """Return the waitress worker threads to run: one per CPU, from 2 to 4 (for the routes off the loop).

    Python runs one thread at a time; a worker beyond the CPUs mostly waits
    for the interpreter lock, and each handover costs CPU (measured with
    ``benchmarks/bench_http.py`` on 2 CPUs: a silent authorize took about 10%
    more server CPU with 4 workers than with 2, and code exchanges ran 15%
    fewer per second). Two at least, so one slow request never holds up the
    rest; RSA signatures release the lock, so they do run in parallel.
    """
    return min(4, max(2, os.cpu_count() or 2))


def _sweeper(store: Store, clock: Callable[[], int], stop: threading.Event) -> None:
    while not stop.wait(SWEEP_INTERVAL):
        try:
            store.sweep(clock())
        except StoreUnavailable as fault:  # the store is away: one line, no traceback, retried
            log.warning("store sweep skipped: %s", fault.reason)
        except Exception:  # a failed sweep is retried next round; serving goes on
            log.exception("store sweep failed")


def keys_follow_reloads(keyring: Any, audit: Any = None) -> Callable[[Tenant], None]:
    """Return the reload hook that brings the signing keys in line with a newly loaded tenant.

    On SIGHUP and ``POST /admin/v1/policies/reload`` the keyring loads keys
    added on disk (``keys rotate``, another instance), makes keys for newly
    configured algorithms, and learns the longest token lifetime (how long a
    retired key stays published, OIDC Core §10.1.1). A key problem is logged;
    the policies are in force either way. Each reload is a ``key.reload`` event
    in ``audit`` (the kids added, or why it failed).
    """
    def on_swap(tenant: Tenant) -> None:
        tokens = tenant.settings.tokens
        try:
            added = keyring.reload(tokens.algorithms, token_lifetime=longest_token_lifetime(tenant))
        except Exception as err:  # e.g. an unreadable new key file: the running keys stay
            log.exception("signing keys not reloaded")
            if audit is not None:
                audit.record("key.reload", wall_clock(), outcome="rejected", error=type(err).__name__)
            return
        if audit is not None:
            audit.record("key.reload", wall_clock(), outcome="accepted", added=list(added or ()))

    return on_swap


def longest_token_lifetime(tenant: Tenant) -> int:
    """Return how long the longest-lived signed token of the tenant lives (access, ID, logout tokens)."""
    tokens = tenant.settings.tokens
    return max(tokens.access_token_lifetime, tokens.id_token_lifetime, LOGOUT_TOKEN_LIFETIME)


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def issuer_port_mismatch(issuer: str, port: int) -> str | None:
    """Return a warning when a loopback issuer names another port than the one listened on, else None.

    Discovery, redirects and every token name the issuer: served on 127.0.0.1:8081 with the issuer at
    :8080, each endpoint a client is sent to is somebody else's port. An issuer on another host is a
    public name in front of a proxy, where the ports differ on purpose.
    """
    url = urlsplit(issuer)
    host = (url.hostname or "").lower()
    if not (host in LOOPBACK_HOSTS or host.startswith("127.")):
        return None
    try:
        named = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        return None
    if named == port:
        return None
    fixed = url._replace(netloc=f"{url.hostname}:{port}" if ":" not in host else f"[{host}]:{port}")
    return (f"ISSUER AND PORT DISAGREE: the issuer {issuer} names port {named} but this server listens "
            f"on port {port}: discovery, "
            f"redirects and tokens all point at :{named}, so clients will not reach this server. "
            f"Start it with --issuer {fixed.geturl()} (or POLICY_SSO_ISSUER), or listen on --port {named}")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def serve(tenant: Tenant, store: Store, keyring: Any, state_dir: Path, *, host: str = "127.0.0.1",
          port: int = 8080, threads: int | None = None, limits: ServerLimits | None = None,
          adjust: Callable[[Tenant], Tenant] | None = None, sock: Any = None,
          worker: Any = None) -> None:
    """Serve the tenant on waitress until interrupted; sweep expired records meanwhile.

    ``limits`` are waitress's body, header, connection and idle limits
    (:class:`server.limits.ServerLimits` defaults when None); ``adjust`` is
    applied to every reloaded tenant (``serve --issuer``). ``sock`` and
    ``worker``: one worker of ``serve --workers`` (:mod:`server.supervisor`),
    accepting on the supervisor's socket; SIGTERM drains it.
    """
    cookie_key = load_or_create_key(state_dir_key(state_dir))
    audit = server_audit_log(tenant.settings.audit, state_dir, store, cookie_key)
    follow_keys = keys_follow_reloads(keyring, audit)
    if worker is not None:
        # a worker starts from the supervisor's last good tenant, which a reload may have given
        # algorithms or keys the key ring loaded at start-up lacks (a worker replaced after a crash)
        follow_keys(tenant)
    # serve --workers: a reload the admin API asked for in this worker is passed on to the others
    holder = TenantHolder(tenant, on_swap=follow_keys, adjust=adjust,
                          tell_others=worker.tell_supervisor if worker is not None else None)
    holder.install_sighup()  # `kill -HUP` re-reads the policies; a bad set is refused whole
    if worker is not None:
        from server.supervisor import reload_if_hung_up_while_starting

        reload_if_hung_up_while_starting(holder)  # the files changed while this worker started
    app = create_app(holder, store, keyring, cookie_key=cookie_key, audit=audit)
    server = create_server(app, host=host, port=port, threads=threads or default_threads(), limits=limits,
                           sock=sock, loop_paths=LOOP_PATHS)
    if worker is not None:
        from server.supervisor import start_worker

        start_worker(server, worker)  # SIGTERM drains; /metrics covers every worker; no banner
    elif threading.current_thread() is threading.main_thread():
        # SIGTERM (systemd, docker stop) ends the serve loop like Ctrl-C, so the store is closed cleanly
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    stop = threading.Event()
    threading.Thread(target=_sweeper, args=(store, wall_clock, stop), daemon=True).start()
    ReloadFollower(store, holder).start(stop)  # a reload on another instance on this store reaches here
    if worker is None:
        print(f"policy-sso serving {tenant.settings.issuer} on http://{server.effective_host}:"
              f"{server.effective_port} (state in {state_dir})", flush=True)
    mismatch = issuer_port_mismatch(tenant.settings.issuer, int(server.effective_port))  # waitress: a str
    if mismatch and (worker is None or worker.slot == 0):  # once per server, not once per worker
        log.warning(mismatch)
    try:
        server.run()  # returns after SIGINT/SIGTERM (waitress catches SystemExit and KeyboardInterrupt)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        stop.set()
        server.close()
        audit.close()  # what is queued is written before the store closes
        store.close()
        flush_access_log()  # a worker of serve --workers ends with os._exit: no atexit to do it
