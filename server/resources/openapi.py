"""GET /openapi.json: the OpenAPI 3.1 document of the JSON APIs (server/openapi.json, issue 15)."""

from __future__ import annotations

from importlib import resources

import falcon

DOCUMENT = "openapi.json"


def load_document() -> bytes:
    """Return the OpenAPI document's bytes, as shipped in the ``server`` package."""
    return resources.files("server").joinpath(DOCUMENT).read_bytes()


class OpenApi:
    """Serves the document, read once at start: it describes the code that is running."""

    def __init__(self) -> None:
        self.body = load_document()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Return the OpenAPI document (cacheable: it changes only with a new release)."""
        del req
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.body
        resp.set_header("Cache-Control", "public, max-age=3600")
        resp.set_header("Access-Control-Allow-Origin", "*")  # API explorers fetch it from other origins
