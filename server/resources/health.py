"""GET /healthz: liveness, and the benchmark's floor (a bare Falcon route); GET /readyz; GET /metrics."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import falcon

from policy_sso.errors import StoreUnavailable
from policy_sso.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:
    from policy_sso.oidc.provider import Provider

BODY = '{"status":"ok"}'
CHECKS = ("store", "keys", "policies", "audit")  # each must be "ok" for /readyz to answer 200


class Health:
    """Answers 200 while the process serves requests."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Return ``{"status": "ok"}``."""
        del req
        resp.content_type = falcon.MEDIA_JSON
        resp.text = BODY


class Readiness:
    """GET /readyz: may a load balancer send this instance traffic?

    200 when the store answers a ping within its timeout, the signing keys
    and the policies are loaded and every audit sink can be written (SPEC §7:
    every decision is on record); 503 ``temporarily_unavailable`` otherwise,
    with each check's state. ``/healthz`` stays liveness: it never touches the
    store, so a store fault never gets a healthy process restarted.
    """

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    def checks(self) -> dict[str, Any]:
        """Return each check's state: ``ok`` or why not, and the store's answer time in ms."""
        p = self.provider
        started = time.monotonic()
        try:
            p.store.ping()
            store = "ok"
        except StoreUnavailable:
            store = "unavailable"
        elapsed = round((time.monotonic() - started) * 1000, 1)
        keyring = p.keyring
        keys = "ok" if getattr(keyring, "algorithms", None) and keyring.jwks().get("keys") else "missing"
        policies = "ok" if p.tenant.policies else "missing"
        failing = p.audit.failing_sinks()  # only a sink whose last write failed is asked again
        audit = "failing: " + ", ".join(failing) if failing else "ok"
        return {"store": store, "store_ms": elapsed, "keys": keys, "policies": policies, "audit": audit}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Return ``{"status": "ok", ...}`` or 503 with the failing checks and ``Retry-After``."""
        del req
        checks = self.checks()
        if all(checks[name] == "ok" for name in CHECKS):
            resp.media = {"status": "ok", **checks}
            return
        resp.status = falcon.HTTP_503
        resp.set_header("Retry-After", str(StoreUnavailable.retry_after))
        failing = ", ".join(f"{name} {checks[name]}" for name in CHECKS
                            if checks[name] != "ok")
        resp.media = {"status": "unavailable", "error": "temporarily_unavailable",
                      "error_description": f"not ready: {failing}", **checks}


class MetricsPage:
    """Prometheus metrics in the text exposition format."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Return every metric (requests, decisions, rate limits, signatures, back-channel, process)."""
        del req
        resp.content_type = CONTENT_TYPE
        resp.data = self.metrics.exposition()
