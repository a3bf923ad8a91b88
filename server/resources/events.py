"""GET /admin/v1/events: the audit events, filtered and paged (issue 15; Auth0's logs API, Keycloak's events).

Admin token as for the rest of the admin API. ``subject`` takes a subject or
a username; ``since``/``until`` epoch seconds, ISO 8601 or an offset such as
``-1d``; ``limit`` 1 to 500 (default 50); ``cursor`` the ``next_cursor`` of
the page before.
"""

from __future__ import annotations

import falcon

from policy_sso.audit.query import EventQuery, parse_query
from policy_sso.errors import InvalidRequest, OAuthError, StoreUnavailable
from policy_sso.oidc.provider import Provider
from server.hooks import admin_token, query_params


class EventsUnavailable(OAuthError):
    """The store sink is off, so there is nothing to query."""

    error = "not_found"
    status = 404


class Events:
    """GET /admin/v1/events."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    @falcon.before(admin_token)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Answer one page of events, newest first, and the cursor of the next."""
        query = parse_query(query_params(req), req.context.now)
        events = self.provider.audit.events
        if events is None:
            raise EventsUnavailable("audit events are not kept in the store: add 'store' to "
                                    "tenant.yaml audit.sinks")
        user = self.provider.tenant.resolve_user(query.subject)
        if user is not None:
            query = EventQuery(user.sub, query.client, query.type, query.since, query.until, query.limit,
                               query.cursor)
        try:
            page = events.query(query)
        except InvalidRequest:  # the query is wrong (a forged cursor), not the store
            raise
        except Exception as err:  # the store is down or failing: 503, never a 500 (SPEC §7)
            raise StoreUnavailable(f"audit events query: {type(err).__name__}") from None
        resp.media = page.to_json()
