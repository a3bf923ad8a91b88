"""GET /healthz: liveness, and the benchmark's floor (a bare Falcon route)."""

from __future__ import annotations

import falcon

BODY = '{"status":"ok"}'


class Health:
    """Answers 200 while the process serves requests."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Return ``{"status": "ok"}``."""
        del req
        resp.content_type = falcon.MEDIA_JSON
        resp.text = BODY
