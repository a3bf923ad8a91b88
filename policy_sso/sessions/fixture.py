"""Session fixtures: sessions written by hand in JSON or YAML, for ``explain`` and policy tests.

Times may be epoch seconds, ISO 8601 timestamps, or offsets from ``now``
such as ``-9h`` or ``-90s``::

    subject: u-alice
    created: -2h             # default: the earliest event
    last_seen: -5m           # default: the latest event
    events: [{method: pwd, at: -2h}, {method: otp, at: -10m}]
    consents: {payments-web: [openid, profile]}   # or, with when each was granted:
    # consents: {payments-web: {openid: -29d, profile: {granted_at: 2026-01-01T00:00:00Z}}}
    created_for: payments-web  # the client it was signed in at (matters with sso.active: false)

A session that has ended is written by why, as the store remembers it::

    ended: {reason: inactivity_timeout, at: -5m, limit: 1d}
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from policy_sso.model import parse_duration
from policy_sso.sessions.model import END_REASONS, AuthEvent, ClientJoin, Session, SessionEnd

MAX_EPOCH = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second datetime can show
_RELATIVE = re.compile(r"^([+-])([0-9]+[smhd])$")


class FixtureError(ValueError):
    """A session fixture is malformed; the message says where."""


def parse_time(value: Any, now: int, where: str = "time") -> int:
    """Return epoch seconds for an int, an ISO 8601 string or an offset like ``-9h``."""
    if isinstance(value, bool):
        raise FixtureError(f"{where}: expected a time, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or abs(value) > MAX_EPOCH:  # NaN and Infinity are not times
            raise FixtureError(f"{where}: {value!r} is not a time")
        return int(value)
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, str):
        match = _RELATIVE.match(value.strip())
        if match:
            delta = parse_duration(match.group(2))
            return now - delta if match.group(1) == "-" else now + delta
        try:
            return int(datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp())
        except ValueError:
            pass
    raise FixtureError(f"{where}: {value!r} is not epoch seconds, ISO 8601 or an offset like -9h")


def ended_from_fixture(data: Any, now: int) -> SessionEnd | None:
    """Return why a fixture's session ended (its ``ended`` mapping), or None; raise FixtureError."""
    if not isinstance(data, dict) or "ended" not in data:
        return None
    ended = data["ended"]
    if not isinstance(ended, dict) or ended.get("reason") not in END_REASONS:
        raise FixtureError("ended: expected {reason: CODE, at: TIME, limit: DURATION}, CODE one of "
                           + ", ".join(sorted(END_REASONS)))
    limit = ended.get("limit")
    if limit is not None and not (isinstance(limit, int) and not isinstance(limit, bool)):
        try:
            limit = parse_duration(str(limit))
        except ValueError:
            raise FixtureError(f"ended.limit: {limit!r} is not a duration such as 1d or 3600s") from None
    return SessionEnd(ended["reason"], parse_time(ended.get("at", now), now, "ended.at"), limit)


def session_from_fixture(data: Any, now: int, session_id: str = "fixture") -> Session | None:
    """Return the session a fixture describes (None for ``null`` or an ended one); raise FixtureError."""
    if data is None or (isinstance(data, dict) and "ended" in data):
        return None
    if not isinstance(data, dict):
        raise FixtureError("a session fixture is a mapping (or null for no session)")
    subject = data.get("subject")
    if subject is None:
        raise FixtureError("session fixture needs a subject (the user's sub, e.g. \"u-alice\")")
    if not isinstance(subject, str) or not subject:
        raise FixtureError(f"subject must be a non-empty string (the user's sub), not {subject!r}")
    raw_events = data.get("events", [])
    if not isinstance(raw_events, list) or not raw_events:
        raise FixtureError("session fixture needs a non-empty list of events")
    events = []
    for i, event in enumerate(raw_events):
        if not isinstance(event, dict) or not isinstance(event.get("method"), str):
            raise FixtureError(f"events[{i}]: expected {{method: NAME, at: TIME}}")
        events.append(AuthEvent(event["method"], parse_time(event.get("at", now), now, f"events[{i}].at")))
    created = parse_time(data.get("created", min(e.time for e in events)), now, "created")
    last_seen = parse_time(data.get("last_seen", max(e.time for e in events)), now, "last_seen")
    consents_raw = data.get("consents", {}) or {}
    if not isinstance(consents_raw, dict):
        raise FixtureError("consents: expected a mapping of client_id to scopes")
    consents, consent_times = _consents(consents_raw, now)
    clients = {str(c): ClientJoin(str(c), f"sid-{c}", created) for c in data.get("clients", []) or []}
    created_for = data.get("created_for")
    if created_for is not None and not isinstance(created_for, str):
        raise FixtureError("created_for: expected a client_id")
    return Session(session_id, subject, created, last_seen, tuple(events), clients, consents, created_for,
                   consent_times=consent_times)


def _consents(raw: dict[Any, Any], now: int) -> tuple[dict[str, frozenset[str]], dict[str, dict[str, int]]]:
    """Return a fixture's consents and when each was granted (a list of scopes has no times)."""
    consents: dict[str, frozenset[str]] = {}
    times: dict[str, dict[str, int]] = {}
    for key, granted in raw.items():
        client = str(key)
        if isinstance(granted, dict):  # scope -> time, or scope -> {granted_at: time}
            times[client] = {}
            for scope, written in granted.items():
                when = written
                if isinstance(written, dict):
                    if set(written) != {"granted_at"}:
                        raise FixtureError(f"consents.{client}.{scope}: expected {{granted_at: TIME}}")
                    when = written["granted_at"]
                times[client][str(scope)] = parse_time(when, now, f"consents.{client}.{scope}")
            consents[client] = frozenset(times[client])
        elif granted is None or isinstance(granted, list):
            consents[client] = frozenset(str(s) for s in (granted or []))
        else:
            raise FixtureError(f"consents.{client}: expected a list of scopes or scope -> granted time")
    return consents, times
