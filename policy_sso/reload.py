"""The running tenant, swapped whole on reload (``POST /admin/v1/policies/reload``, SIGHUP).

A reload loads the tenant directory again; a set with any error (a policy
file emptied or not loaded, a client left without a governing policy, an
unknown name, a policy_files pattern outside the tenant…) is rejected with
all its diagnostics and the running tenant stays in force, as is one that
changes what the server takes only at start (the issuer, the store and its
options, the state directory). A reload that applies reports which clients
changed governing policy. Readers take
``holder.tenant`` once per request and use that object throughout, so a
request never sees half of one tenant and half of another.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from policy_sso.config import TenantSettings
from policy_sso.diagnostics import Diagnostic
from policy_sso.tenant import Tenant, check_tenant

log = logging.getLogger("policy_sso.reload")


@dataclass(frozen=True)
class GovernanceChange:
    """A client whose governing policy differs between two tenants (None: not registered there)."""

    client_id: str
    old: str | None
    new: str | None

    def to_json(self) -> dict[str, str | None]:
        """Return ``{"client_id", "from", "to"}`` for the admin API."""
        return {"client_id": self.client_id, "from": self.old, "to": self.new}

    def __str__(self) -> str:
        return f"{self.client_id}: {self.old or '(not registered)'} -> {self.new or '(not registered)'}"


def governance_changes(old: Tenant, new: Tenant) -> tuple[GovernanceChange, ...]:
    """Return the clients whose governing policy differs from ``old`` to ``new``, by client_id."""
    def policy_of(tenant: Tenant, client_id: str) -> str | None:
        return tenant.policy_for(client_id).name if tenant.governs(client_id) else None

    changes = []
    for client_id in sorted(set(old.clients) | set(new.clients)):
        before, after = policy_of(old, client_id), policy_of(new, client_id)
        if before != after:
            changes.append(GovernanceChange(client_id, before, after))
    return tuple(changes)


# tenant.yaml settings the server takes once, at start (beside the issuer): the store it opened and
# how (store_timeout, session.max_per_user are the store's options), the directory of its keys. A
# reload that changes one is refused, never reported applied while the old one runs (SPEC §7).
START_ONLY_SETTINGS: tuple[tuple[str, str, Callable[[TenantSettings], object]], ...] = (
    ("store", "E_RELOAD_STORE", lambda s: s.store),
    ("store_timeout", "E_RELOAD_STORE", lambda s: s.store_options.timeout),
    ("session.max_per_user", "E_RELOAD_STORE", lambda s: s.store_options.max_sessions_per_user),
    ("state_dir", "E_RELOAD_STATE_DIR", lambda s: s.state_dir),
    ("audit", "E_RELOAD_AUDIT", lambda s: s.audit),  # the sinks are opened once, at start
)


@dataclass(frozen=True)
class ReloadResult:
    """What a reload did: whether the new tenant is in force, every diagnostic, and which clients
    changed governing policy (only when applied)."""

    applied: bool
    diagnostics: tuple[Diagnostic, ...]
    policies: int = 0
    changes: tuple[GovernanceChange, ...] = ()


class TenantHolder:
    """Holds the tenant in force; ``reload`` replaces it only with a complete, valid one."""

    def __init__(self, tenant: Tenant, directory: Path | None = None,
                 on_swap: Callable[[Tenant], None] | None = None,
                 adjust: Callable[[Tenant], Tenant] | None = None,
                 tell_others: Callable[[], None] | None = None) -> None:
        self._tenant = tenant
        # serve --workers: asks the supervisor to make every worker reload after a reload the admin
        # API asked for applied here (the API reaches one worker; SIGHUP reaches them all)
        self._tell_others = tell_others
        # what serve's flags override in every tenant loaded (``--issuer``): a reload keeps the override
        self._adjust = adjust
        self.directory = Path(directory or tenant.directory)
        self._lock = threading.Lock()
        self._on_swap = on_swap
        self.listeners: list[Callable[[ReloadResult], None]] = []  # told every result (the audit log)

    @property
    def tenant(self) -> Tenant:
        """Return the tenant in force (one attribute read: the swap is atomic)."""
        return self._tenant

    def reload(self, *, tell_others: bool = True) -> ReloadResult:
        """Load the directory again; swap the tenant in only if it has no error; tell the listeners.

        A refused set is logged one diagnostic a line, whether SIGHUP or the admin API asked. An
        applied one is passed on to the other processes (``tell_others`` of the constructor) unless
        ``tell_others`` is False: a reload that SIGHUP started, since the supervisor sent it to all.
        """
        result = self._reload()
        for diagnostic in result.diagnostics if not result.applied else ():  # SIGHUP or the admin API
            log.warning("policy reload refused: %s", diagnostic)
        if result.applied and tell_others and self._tell_others is not None:
            self._tell_others()  # a refused set is not passed on: the others keep what they run
        for listener in list(self.listeners):
            listener(result)
        return result

    def _reload(self) -> ReloadResult:
        with self._lock:
            try:
                tenant, diagnostics = check_tenant(self.directory)
            except Exception as err:  # a loader bug must never take the running set (or the server) down
                log.exception("policy reload failed; the running policies stay")
                problem = Diagnostic(str(self.directory), 1, 1, "E_RELOAD",
                                     f"the tenant could not be loaded: {type(err).__name__}")
                return ReloadResult(False, (problem,))
            errors = tuple(d for d in diagnostics if d.severity == "error")
            if tenant is None:
                log.warning("policy reload rejected: %d errors; the running policies stay", len(errors))
                return ReloadResult(False, errors or tuple(diagnostics))
            if self._adjust is not None:
                tenant = self._adjust(tenant)
            refused = self._start_only_changes(tenant.settings)
            if refused:
                return ReloadResult(False, refused)
            changes = governance_changes(self._tenant, tenant)
            self._tenant = tenant
            if self._on_swap is not None:
                self._on_swap(tenant)
            log.info("policies reloaded: %d policies", len(tenant.policies))
            for change in changes:
                log.info("governing policy changed: %s", change)
            return ReloadResult(True, tuple(diagnostics), len(tenant.policies), changes)

    def _start_only_changes(self, new: TenantSettings) -> tuple[Diagnostic, ...]:
        """Return an error for each setting the server takes only at start that ``new`` changes.

        Both sides are tenant.yaml's values (``serve --store`` and ``--state-dir`` override them
        outside the tenant), so a reload of an unchanged tenant.yaml applies whatever the flags say.
        """
        old = self._tenant.settings
        problems = []
        if new.issuer != old.issuer:
            problems.append(Diagnostic(str(self.directory / "tenant.yaml"), 1, 1, "E_RELOAD_ISSUER",
                                       "the issuer cannot change while the server runs; restart instead"))
        for key, code, value in START_ONLY_SETTINGS:
            if value(new) != value(old):
                at = new.span(key)  # the file's start when the key was removed
                # no value in the message: a store URL may hold a password
                problems.append(Diagnostic(at.file, at.line, at.col, code,
                                           f"{key} cannot change while the server runs (it keeps the one "
                                           "it started with); restart instead"))
        return tuple(problems)

    def install_sighup(self) -> None:
        """Reload on SIGHUP (main thread only, where Python delivers signals).

        The reload runs in its own thread: the handler returns at once, so the
        serving loop is never blocked by loading a large tenant, and nothing a
        reload raises can unwind the main thread and stop the server.
        """
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
            return
        signal.signal(signal.SIGHUP, lambda signum, frame: self.reload_in_background())

    def reload_in_background(self) -> None:
        """Reload in a thread of its own, as on SIGHUP (the outcome is logged, not returned)."""
        threading.Thread(target=self._reload_logged, name="policy-reload", daemon=True).start()

    def _reload_logged(self) -> None:
        """Reload and log the outcome (SIGHUP has no one to answer): each diagnostic as one line."""
        try:
            self.reload(tell_others=False)  # logs a refused set's diagnostics itself
        except Exception:  # a listener failed: the reload itself has been decided already
            log.exception("policy reload: a listener failed")
