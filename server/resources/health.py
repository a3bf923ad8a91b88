"""GET /healthz: liveness, and the benchmark's floor (a bare Falcon route); GET /metrics."""

from __future__ import annotations

import falcon

from policy_sso.metrics import CONTENT_TYPE, Metrics

BODY = '{"status":"ok"}'


class Health:
    """Answers 200 while the process serves requests."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Return ``{"status": "ok"}``."""
        del req
        resp.content_type = falcon.MEDIA_JSON
        resp.text = BODY


class MetricsPage:
    """Prometheus metrics in the text exposition format."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Return every metric (requests, decisions, rate limits, signatures, back-channel, process)."""
        del req
        resp.content_type = CONTENT_TYPE
        resp.data = self.metrics.exposition()
