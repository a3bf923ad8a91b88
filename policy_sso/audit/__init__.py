"""Audit events (SPEC §7 "every decision is on record"): the event schema, the writer, sinks and queries.

- :mod:`event`: :class:`AuditEvent` (schema version 1) and the registry of event types;
- :mod:`writer`: :class:`AuditLog`, the non-blocking writer and its background thread;
- :mod:`context`: the request an event belongs to (bound per request by the server's middleware);
- :mod:`sinks`: JSON lines on stdout, a size-rotated file, the store;
- :mod:`stores`: the store sink per backend (SQLite table, Redis stream, memory deque);
- :mod:`query`: the events query and its keyset cursor;
- :mod:`settings`: ``tenant.yaml``'s ``audit:`` block; :mod:`configure`: an AuditLog from it.
"""

from policy_sso.audit.context import bind_request, logout_type
from policy_sso.audit.event import EVENT_TYPES, SCHEMA_VERSION, AuditEvent, ReasonRecord
from policy_sso.audit.query import EventPage, EventQuery, parse_query
from policy_sso.audit.settings import AuditSettings, audit_settings
from policy_sso.audit.writer import AuditLog

__all__ = ["EVENT_TYPES", "SCHEMA_VERSION", "AuditEvent", "AuditLog", "AuditSettings", "EventPage",
           "EventQuery", "ReasonRecord", "audit_settings", "bind_request", "logout_type",
           "parse_query"]
