"""The admin API (SPEC §4): end a user's sessions, set a password, reload policies."""

from __future__ import annotations

from dataclasses import asdict

import falcon

from policy_sso.oidc import admin, consents
from policy_sso.oidc.provider import Provider
from server.hooks import admin_token, json_body


class _AdminEndpoint:
    def __init__(self, provider: Provider) -> None:
        self.provider = provider


class UserSessionsLogout(_AdminEndpoint):
    """POST /admin/v1/users/{sub}/sessions/logout."""

    @falcon.before(admin_token)
    def on_post(self, req: falcon.Request, resp: falcon.Response, sub: str) -> None:
        """End every session of the user, with back-channel logout."""
        ended = admin.end_user_sessions(self.provider, sub, req.context.now)
        resp.media = {"sub": sub, "sessions_ended": ended}


class UserPassword(_AdminEndpoint):
    """POST /admin/v1/users/{sub}/password."""

    @falcon.before(admin_token)
    @falcon.before(json_body)
    def on_post(self, req: falcon.Request, resp: falcon.Response, sub: str) -> None:
        """Set the password (users.yaml), then end every session of the user."""
        ended = admin.set_password(self.provider, sub, req.context.json, req.context.now)
        resp.media = {"sub": sub, "password_set": True, "sessions_ended": ended}


class PoliciesReload(_AdminEndpoint):
    """POST /admin/v1/policies/reload."""

    @falcon.before(admin_token)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Reload; a set with any error is rejected with every diagnostic and the old set stays."""
        result = admin.reload_policies(self.provider, req.context.now)
        diagnostics = [asdict(d) for d in result.diagnostics]
        if result.applied:
            resp.media = {"applied": True, "policies": result.policies, "diagnostics": diagnostics,
                          "governance_changes": [c.to_json() for c in result.changes]}
            return
        resp.status = falcon.HTTP_422
        count = len(diagnostics)
        first = f": {result.diagnostics[0]}" if result.diagnostics else ""
        resp.media = {"error": "invalid_policies", "applied": False, "diagnostics": diagnostics,
                      "error_description": f"{count} error{'s' * (count != 1)}{first}; "
                      "the running policies stay in force"}


class UserConsents(_AdminEndpoint):
    """GET and DELETE /admin/v1/users/{sub}/consents (issue 19)."""

    @falcon.before(admin_token)
    def on_get(self, req: falcon.Request, resp: falcon.Response, sub: str) -> None:
        """List what the user granted each client: scopes, granted_at and expires_at (epoch s)."""
        now = req.context.now
        listed = consents.list_user_consents(self.provider, sub, now)
        resp.media = {"sub": sub, "consents": [c.to_json(now) for c in listed]}

    @falcon.before(admin_token)
    def on_delete(self, req: falcon.Request, resp: falcon.Response, sub: str) -> None:
        """Withdraw everything the user granted, in every session of theirs."""
        withdrawn = consents.withdraw_user_consents(self.provider, sub, req.context.now)
        resp.media = {"sub": sub, "withdrawn": withdrawn}


class UserClientConsent(_AdminEndpoint):
    """DELETE /admin/v1/users/{sub}/consents/{client_id} (issue 19)."""

    @falcon.before(admin_token)
    def on_delete(self, req: falcon.Request, resp: falcon.Response, sub: str, client_id: str) -> None:
        """Withdraw what the user granted one client, in every session of theirs."""
        withdrawn = consents.withdraw_user_consents(self.provider, sub, req.context.now, client_id)
        resp.media = {"sub": sub, "withdrawn": withdrawn}
