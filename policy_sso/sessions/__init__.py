"""Sessions: the model, the store interface and its three backends."""

from policy_sso.sessions.model import AuthEvent, ClientJoin, Session, SessionLifetime, new_session
from policy_sso.sessions.store import (
    RefreshRotation,
    Store,
    open_store,
)

__all__ = [
    "AuthEvent",
    "ClientJoin",
    "RefreshRotation",
    "Session",
    "SessionLifetime",
    "Store",
    "new_session",
    "open_store",
]
