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
    "sign_in.success": "a user signed in; details.factor names how (pwd, hwk, login_hint_token)",
    "sign_in.failure": "a sign-in failed; details.factor, details.failure (never the secret or the token)",
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
    "api.decision": "a resource server asked whether an access token may do an operation (RFC 9470)",
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

# The generic encoder: json.dumps with options builds a new JSONEncoder per call.
encode_line = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode

# Details keys whose values are never written, whatever a caller passes (defence in depth).
SECRET_KEYS = frozenset({"password", "otp", "code", "access_token", "refresh_token", "id_token",
                         "client_secret", "session_id", "cookie", "token", "secret"})

# An event as the request thread queues it: AuditEvent's fields in order, as a plain tuple
# (type, time, id, outcome, client, subject, session, request_id, ip, user_agent, endpoint,
# reasons, details). A tuple costs the request thread 0.05 us where the frozen dataclass costs 1.5.
EventFields = tuple[Any, ...]

_quote = json.encoder.encode_basestring  # the C escaper JSONEncoder(ensure_ascii=False) uses itself


@functools.lru_cache(maxsize=64)
def _timestamp(time: int) -> str:
    """Return epoch seconds as RFC 3339 UTC (cached: a busy second has many events)."""
    return datetime.fromtimestamp(time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.lru_cache(maxsize=64)
def _time_members(time: int) -> str:
    """Return the ``"time":…,"timestamp":"…"`` members of a line (cached per second, as _timestamp)."""
    return f'"time":{time!r},"timestamp":{_quote(_timestamp(time))}'


def _value(value: Any) -> str:
    """Return one JSON value as the generic encoder writes it (strings and None without a call to it)."""
    if value.__class__ is str:
        return _quote(value)
    return "null" if value is None else encode_line(value)


def _details_value(value: Any) -> str:
    """Return a details value as JSON, as the generic encoder writes it; a set is written sorted."""
    cls = value.__class__
    if cls is str:
        return _quote(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, frozenset | set):  # scopes: a few strings
        ordered = sorted(value)
        try:
            return "[" + ",".join(map(_quote, ordered)) + "]"
        except TypeError:  # not all strings
            return encode_line(ordered)
    return encode_line(value)


def event_line(fields: EventFields, id_: str) -> str:
    """Return the event's JSON line (no newline), byte for byte what ``encode_line(event_json(…))`` gives.

    Written member by member with the C string escaper rather than by
    building the object and encoding it, which costs the writer thread about
    twice as much (the encoder walks the object in C but sets up per call and
    checks every value's type; benchmarks/bench_audit.py).
    """
    (type_, time, _, outcome, client, subject, session, request_id, ip, agent, endpoint, reasons,
     details) = fields
    if reasons:
        reason_list = "[" + ",".join(
            f'{{"code":{_value(r.code)},"source":{_value(r.source)},"required":{_value(r.required)},'
            f'"observed":{_value(r.observed)}}}' for r in reasons) + "]"
    else:
        reason_list = "[]"
    if details:
        detail_map = "{" + ",".join(
            f"{_quote(k) if k.__class__ is str else encode_line({k: 0})[1:-3]}:{_details_value(v)}"
            for k, v in details.items() if k not in SECRET_KEYS) + "}"
    else:
        detail_map = "{}"
    if time.__class__ is int:
        time_members = _time_members(time)
    else:  # not an epoch integer: let the generic encoder and the formatter say what they make of it
        time_members = f'"time":{encode_line(time)},"timestamp":{_quote(_timestamp(time))}'
    return (f'{{"schema_version":{SCHEMA_VERSION},"id":{_value(id_)},"type":{_value(type_)},{time_members},'
            f'"request_id":{_value(request_id)},"client":{_value(client)},"subject":{_value(subject)},'
            f'"session":{_value(session)},"ip":{_value(ip)},"user_agent":{_value(agent)},'
            f'"endpoint":{_value(endpoint)},"outcome":{_value(outcome)},"reasons":{reason_list},'
            f'"details":{detail_map}}}')


def event_json(fields: EventFields, id_: str) -> dict[str, Any]:
    """Return the event as the JSON object ``schemas/audit-event.schema.json`` describes."""
    (type_, time, _, outcome, client, subject, session, request_id, ip, agent, endpoint, reasons,
     details) = fields
    return {
        "schema_version": SCHEMA_VERSION,
        "id": id_,
        "type": type_,
        "time": time,
        "timestamp": _timestamp(time),
        "request_id": request_id,
        "client": client,
        "subject": subject,
        "session": session,
        "ip": ip,
        "user_agent": agent,
        "endpoint": endpoint,
        "outcome": outcome,
        "reasons": [{"code": r.code, "source": r.source, "required": r.required,
                     "observed": r.observed} for r in reasons],
        "details": {k: sorted(v) if isinstance(v, frozenset | set) else v
                    for k, v in details.items() if k not in SECRET_KEYS},
    }


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

    def fields(self) -> EventFields:
        """Return the event as the plain tuple the writer queues (its fields in order)."""
        return (self.type, self.time, self.id, self.outcome, self.client, self.subject, self.session,
                self.request_id, self.ip, self.user_agent, self.endpoint, self.reasons, self.details)

    def to_json(self) -> dict[str, Any]:
        """Return the event as the JSON object ``schemas/audit-event.schema.json`` describes."""
        return event_json(self.fields(), self.id)

    def to_line(self) -> str:
        """Return the event as one line of compact JSON (no newline)."""
        return event_line(self.fields(), self.id)
