"""What an authorization hands on to the tokens minted for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Grant:
    """What an authorization hands on to the tokens minted for it (code, refresh family)."""

    subject: str
    client_id: str
    scope: str
    auth_time: int | None = None
    acr: str | None = None
    amr: tuple[str, ...] = ()
    sid: str | None = None
    nonce: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the grant as a JSON-safe mapping for the store."""
        return {"sub": self.subject, "client_id": self.client_id, "scope": self.scope,
                "auth_time": self.auth_time, "acr": self.acr, "amr": list(self.amr),
                "sid": self.sid, "nonce": self.nonce}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Grant:
        """Return the grant stored by :meth:`to_json`."""
        return cls(data["sub"], data["client_id"], data["scope"], data.get("auth_time"),
                   data.get("acr"), tuple(data.get("amr") or ()), data.get("sid"),
                   data.get("nonce"))
