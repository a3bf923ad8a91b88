"""The events query shared by ``GET /admin/v1/events`` and ``policy-sso events``.

Pages run newest first and are cut by a keyset cursor on ``(time, id)``
(Auth0's log API and Keycloak's event queries page the same way): the cursor
names the last event of a page, and the next page holds only events strictly
older. Events written while someone pages are newer than every cursor, so
they never shift, repeat or hide an event of a later page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from policy_sso import b64url
from policy_sso.audit.event import EVENT_TYPES
from policy_sso.diagnostics import did_you_mean
from policy_sso.errors import InvalidRequest
from policy_sso.request import parse_int
from policy_sso.sessions.fixture import FixtureError, parse_time

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
FILTERS = ("subject", "client", "type", "since", "until", "limit", "cursor")
MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z: the last second ISO 8601 (and datetime) can write


def _names_a_type(kind: str) -> bool:
    """Return whether ``kind`` is an event type, or a prefix (``logout.*``) of one."""
    if kind.endswith(".*"):
        return any(t.startswith(kind[:-1]) for t in EVENT_TYPES)
    return kind in EVENT_TYPES


_TYPE_RE = re.compile(r"^[a-z_]+(\.[a-z_]+)?(\.\*)?$|^[a-z_]+\.\*$")
_CURSOR_RE = re.compile(r"^(-?\d{1,12}):([A-Za-z0-9_.:-]{1,64})$")
_VALUE_MAX = 256


@dataclass(frozen=True)
class Cursor:
    """Where a page ended: the last event's ``time`` and ``key`` (its id, or its Redis stream id)."""

    time: int
    key: str

    def encode(self) -> str:
        """Return the opaque cursor string (URL-safe base64)."""
        return b64url.encode(f"{self.time}:{self.key}".encode())

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Return the cursor a string encodes; raise InvalidRequest for anything else."""
        try:
            raw = b64url.decode(text).decode("ascii")
        except ValueError:
            raise InvalidRequest("cursor is not one this server returned") from None
        match = _CURSOR_RE.match(raw)
        if match is None:
            raise InvalidRequest("cursor is not one this server returned")
        return cls(int(match.group(1)), match.group(2))


@dataclass(frozen=True)
class EventQuery:
    """Filters and a page: every given filter must hold (``type`` ending in ``.*`` is a prefix)."""

    subject: str | None = None
    client: str | None = None
    type: str | None = None
    since: int | None = None  # inclusive, epoch seconds
    until: int | None = None  # inclusive
    limit: int = DEFAULT_LIMIT
    cursor: Cursor | None = None

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Return whether an event's JSON passes the filters (the cursor aside)."""
        if self.subject is not None and event.get("subject") != self.subject:
            return False
        if self.client is not None and event.get("client") != self.client:
            return False
        if self.type is not None:
            kind = str(event.get("type"))
            if self.type.endswith(".*"):
                if not kind.startswith(self.type[:-1]):
                    return False
            elif kind != self.type:
                return False
        time = int(event.get("time", 0))
        if self.since is not None and time < self.since:
            return False
        return self.until is None or time <= self.until


@dataclass(frozen=True)
class EventPage:
    """One page of events, newest first, and the cursor of the next (None at the end)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the page as the events API answers it."""
        return {"events": self.events, "next_cursor": self.next_cursor}


def parse_query(params: Mapping[str, str], now: int) -> EventQuery:
    """Return the query for request parameters; raise InvalidRequest naming the bad one.

    ``since``/``until`` take epoch seconds, ISO 8601 or an offset such as ``-1d``.
    """
    unknown = sorted(set(params) - set(FILTERS))
    if unknown:
        raise InvalidRequest(f"unknown parameter {unknown[0]!r}; known: {', '.join(FILTERS)}")
    for name, value in params.items():
        if len(value) > _VALUE_MAX:
            raise InvalidRequest(f"{name} is too long")
    kind = params.get("type") or None
    if kind is not None and not _TYPE_RE.match(kind):
        raise InvalidRequest("type must be an event type such as authorization.decision, or a prefix "
                             "such as logout.*")
    if kind is not None and not _names_a_type(kind):  # it could only ever match nothing: say so
        hint = did_you_mean(kind.removesuffix(".*"), [*EVENT_TYPES, *{t.split(".")[0] for t in EVENT_TYPES}])
        raise InvalidRequest(f"no event type is {kind!r}" + (f" ({hint})" if hint else "")
                             + "; docs/audit-events.md lists them")
    limit = DEFAULT_LIMIT
    if params.get("limit"):
        limit = parse_int(params["limit"], "limit", maximum=MAX_LIMIT)  # ASCII digits: isdigit() takes "²"
        if limit < 1:
            raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}")
    times: dict[str, int | None] = {}
    for name in ("since", "until"):
        value = params.get(name)
        try:
            if value and value.isascii() and value.isdigit():  # epoch seconds
                times[name] = parse_int(value, name)
            else:
                times[name] = parse_time(value, now, name) if value else None
        except FixtureError as err:
            raise InvalidRequest(str(err)) from None
        # every store takes the same range: before 1970 a Redis stream id would be negative (a store
        # error, answered as a fault), and no event is ever older than the epoch or past year 9999
        if times[name] is not None and not 0 <= times[name] <= MAX_TIME:  # type: ignore[operator]
            raise InvalidRequest(f"{name} must be from 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z "
                                 f"(epoch seconds 0 to {MAX_TIME})")
    cursor = Cursor.decode(params["cursor"]) if params.get("cursor") else None
    return EventQuery(params.get("subject") or None, params.get("client") or None, kind,
                      times["since"], times["until"], limit, cursor)
