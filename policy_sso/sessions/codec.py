"""Sessions as compact JSON, for the SQLite and Redis stores (one format, written once)."""

from __future__ import annotations

import json
from typing import Any

from policy_sso.sessions.model import AuthEvent, ClientJoin, Device, Session, SessionEnd


def encode(session: Session) -> str:
    """Return the session's durable facts as JSON (``last_seen`` included)."""
    return json.dumps({
        "s": session.subject, "c": session.created_at, "l": session.last_seen,
        "e": [[e.method, e.time] for e in session.events],
        "j": {c: [j.sid, j.joined_at] for c, j in session.clients.items()},
        "g": {c: sorted(scopes) for c, scopes in session.consents.items()},
        **({"o": session.created_for} if session.created_for is not None else {}),
        # when each scope was granted, beside "g" so a reader that predates it still reads "g"
        **({"gt": session.consent_times} if session.consent_times else {}),
        **({"d": [session.device.address, session.device.label]} if session.device is not None else {}),
    }, separators=(",", ":"))


def encode_end(end: SessionEnd) -> str:
    """Return the record of why a session ended as compact JSON."""
    return json.dumps(end.to_json(), separators=(",", ":"))


def decode_end(text: str | bytes) -> SessionEnd:
    """Return the record :func:`encode_end` wrote."""
    return SessionEnd.from_json(json.loads(text))


class DecodedSessions:
    """Sessions decoded from their stored text, kept for a row read again (the stores' session reads).

    Sessions are immutable, so a row read again (same id, same text, same
    last-seen) needs no JSON parsing. Bounded: cleared whole when full; a
    plain dict, whose get and set are atomic under the GIL.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._items: dict[tuple[str, str | bytes, int], Session] = {}

    def decode(self, session_id: str, text: str | bytes, last_seen: int) -> Session:
        """Return the session stored as ``text`` with ``last_seen``, decoded once per distinct row."""
        key = (session_id, text, last_seen)
        session = self._items.get(key)
        if session is None:
            session = decode(session_id, text, last_seen)
            if len(self._items) >= self.size:
                self._items.clear()
            self._items[key] = session
        return session


def decode(session_id: str, text: str | bytes, last_seen: int | None = None) -> Session:
    """Return the session stored as ``text`` (``last_seen`` overrides the stored one)."""
    data: dict[str, Any] = json.loads(text)
    return Session(
        id=session_id, subject=data["s"], created_at=data["c"],
        last_seen=data["l"] if last_seen is None else last_seen,
        events=tuple(AuthEvent(m, t) for m, t in data["e"]),
        clients={c: ClientJoin(c, sid, at) for c, (sid, at) in data["j"].items()},
        consents={c: frozenset(scopes) for c, scopes in data["g"].items()},
        created_for=data.get("o"),  # absent in sessions stored before it was recorded
        consent_times=data.get("gt", {}),  # likewise; such grants count from created_at
        device=Device(*data["d"]) if "d" in data else None,  # likewise
    )
