"""The audit event (schema version 1) and the registry of event types.

An event is what happened, to whom, by which client, and why: the decision's
reason codes with the policy line behind each (SPEC §7 "every decision is on
record"). The JSON form is ``schemas/audit-event.schema.json``; its fields are
documented in ``docs/audit-events.md``. A session is named by a keyed digest,
never by its id; secrets (passwords, one-time codes, codes, tokens, client
secrets, cookies) never enter an event.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 1

# type -> what it records. Adding a type is adding a row (and a line in docs/audit-events.md).
EVENT_TYPES: dict[str, str] = {
    "sign_in.success": "a password was verified; details.factor names it (pwd)",
    "sign_in.failure": "a password sign-in failed; details.factor, details.failure (never the secret)",
    "second_factor.success": "a second factor was verified; details.factor (otp)",
    "second_factor.failure": "a second factor was refused; details.factor, details.failure",
    "consent.granted": "the user granted scopes to a client; details.scopes",
    "consent.denied": "the user refused consent to a client",
    "consent.revoked": "a consent was withdrawn",
    "factor.enrolled": "the user enrolled a second factor; details.factor (otp, hwk)",
    "factor.removed": "the user removed a second factor; details.factor",
    "account.password_changed": "the user changed their password on /account (the password never appears)",
    "authorization.decision": "a policy decision: outcome, reasons with their policy lines; details.silent",
    "backend.session_authenticate": "a backend silent sign-in by session id: outcome and reasons",
    "token.issued": "tokens issued at /token; details.grant_type and what was issued",
    "token.refreshed": "a refresh token was rotated",
    "token.refresh_reuse": "a spent refresh token was presented; its family is revoked",
    "token.revoked": "a token was revoked (RFC 7009)",
    "logout.rp_initiated": "RP-initiated logout ended a session",
    "logout.backend_session": "a backend app ended a session by id",
    "logout.backend_token": "a user's access token ended its session (POST /v1/auth/logout)",
    "logout.admin": "an admin ended a user's sessions",
    "logout.user_switch": "another user signed in on the same browser, ending the session",
    "logout.hint_token": "a login_hint_token for another user ended the session",
    "logout.password_changed": "a password change ended the user's sessions",
    "logout.session_limit": "the user's oldest session ended: more sessions than session.max_per_user",
    "logout.ended": "a session ended by another path",
    "backchannel.delivery": "a back-channel logout token was delivered or failed",
    "admin.password_set": "an admin set a user's password (the password never appears)",
    "admin.sessions_ended": "an admin ended every session of a user",
    "admin.refused": "an admin API call without the admin token",
    "policy.reload": "a policy reload: outcome accepted or rejected, details.diagnostics",
    "key.reload": "signing keys were reloaded or rotated",
    "rate_limit.refused": "a request was refused by a rate limit; details.kind",
}

# One encoder for every event: json.dumps with options builds a new JSONEncoder per call.
encode_line = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode

# Details keys whose values are never written, whatever a caller passes (defence in depth).
SECRET_KEYS = frozenset({"password", "otp", "code", "access_token", "refresh_token", "id_token",
                         "client_secret", "session_id", "cookie", "token", "secret"})


@functools.lru_cache(maxsize=64)
def _timestamp(time: int) -> str:
    """Return epoch seconds as RFC 3339 UTC (cached: a busy second has many events)."""
    return datetime.fromtimestamp(time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class ReasonRecord:
    """One reason of a decision as recorded: code, the policy line (``FILE:LINE``), required, observed."""

    code: str
    source: str
    required: str = ""
    observed: str = ""


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit event. ``reasons`` holds objects with ``code``, ``source``, ``required`` and ``observed``.

    A decision's own :class:`~policy_sso.decision.Reason` objects may be passed
    as they are: their text is formatted by the writer thread, off the request.
    """

    type: str
    time: int
    id: str = ""
    outcome: str = ""
    client: str | None = None
    subject: str | None = None
    session: str | None = None  # keyed digest of the session id
    request_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    endpoint: str | None = None  # the route the request came in on, e.g. /v1/auth/session/logout
    reasons: tuple[Any, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the event as the JSON object ``schemas/audit-event.schema.json`` describes."""
        return {
            "schema_version": SCHEMA_VERSION,
            "id": self.id,
            "type": self.type,
            "time": self.time,
            "timestamp": _timestamp(self.time),
            "request_id": self.request_id,
            "client": self.client,
            "subject": self.subject,
            "session": self.session,
            "ip": self.ip,
            "user_agent": self.user_agent,
            "endpoint": self.endpoint,
            "outcome": self.outcome,
            "reasons": [{"code": r.code, "source": r.source, "required": r.required,
                         "observed": r.observed} for r in self.reasons],
            "details": {k: sorted(v) if isinstance(v, frozenset | set) else v
                        for k, v in self.details.items() if k not in SECRET_KEYS},
        }

    def to_line(self) -> str:
        """Return the event as one line of compact JSON (no newline)."""
        return encode_line(self.to_json())
