"""The running tenant, swapped whole on reload (``POST /admin/v1/policies/reload``, SIGHUP).

A reload loads the tenant directory again; a set with any error is rejected
with all its diagnostics and the running tenant stays in force. Readers take
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

from policy_sso.diagnostics import Diagnostic
from policy_sso.tenant import Tenant, check_tenant

log = logging.getLogger("policy_sso.reload")


@dataclass(frozen=True)
class ReloadResult:
    """What a reload did: whether the new tenant is in force, and every diagnostic."""

    applied: bool
    diagnostics: tuple[Diagnostic, ...]
    policies: int = 0


class TenantHolder:
    """Holds the tenant in force; ``reload`` replaces it only with a complete, valid one."""

    def __init__(self, tenant: Tenant, directory: Path | None = None,
                 on_swap: Callable[[Tenant], None] | None = None) -> None:
        self._tenant = tenant
        self.directory = Path(directory or tenant.directory)
        self._lock = threading.Lock()
        self._on_swap = on_swap

    @property
    def tenant(self) -> Tenant:
        """Return the tenant in force (one attribute read: the swap is atomic)."""
        return self._tenant

    def reload(self) -> ReloadResult:
        """Load the directory again; swap the tenant in only if it has no error."""
        with self._lock:
            tenant, diagnostics = check_tenant(self.directory)
            errors = tuple(d for d in diagnostics if d.severity == "error")
            if tenant is None:
                log.warning("policy reload rejected: %d errors; the running policies stay", len(errors))
                return ReloadResult(False, errors or tuple(diagnostics))
            if tenant.settings.issuer != self._tenant.settings.issuer:
                problem = Diagnostic(str(self.directory / "tenant.yaml"), 1, 1, "E_RELOAD_ISSUER",
                                     "the issuer cannot change while the server runs; restart instead")
                return ReloadResult(False, (problem,))
            self._tenant = tenant
            if self._on_swap is not None:
                self._on_swap(tenant)
            log.info("policies reloaded: %d policies", len(tenant.policies))
            return ReloadResult(True, tuple(diagnostics), len(tenant.policies))

    def install_sighup(self) -> None:
        """Reload on SIGHUP (main thread only, where Python delivers signals)."""
        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
            return
        signal.signal(signal.SIGHUP, lambda signum, frame: self.reload())
