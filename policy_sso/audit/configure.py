"""Build the server's :class:`AuditLog` from ``tenant.yaml``'s ``audit:`` block."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from policy_sso.audit.settings import AuditSettings
from policy_sso.audit.sinks import FileSink, Sink, StdoutSink, StoreSink
from policy_sso.audit.stores import EventStore, event_store_for, open_event_store
from policy_sso.audit.writer import AuditLog, wall_clock
from policy_sso.errors import PolicySSOError


class AuditSinkError(PolicySSOError):
    """A configured audit sink cannot be written (``serve`` refuses to start)."""


def audit_log(settings: AuditSettings, *, state_dir: Path, store: Any = None, store_url: str | None = None,
              clock: Callable[[], int] = wall_clock, session_key: bytes | None = None,
              stdout: TextIO | None = None) -> AuditLog:
    """Return the AuditLog the settings describe.

    The store sink opens its own connection: from ``store_url`` when given,
    else beside the session ``store`` object (same SQLite file or Redis server).
    A relative ``file`` is under ``state_dir``.
    """
    sinks: list[Sink] = []
    events: EventStore | None = None
    for name in settings.sinks:
        if name == "stdout":
            sinks.append(StdoutSink(stdout))
        elif name == "file":
            path = Path(settings.file)
            sinks.append(FileSink(path if path.is_absolute() else state_dir / path, settings.rotate_bytes,
                                  settings.rotate_keep))
        elif name == "store":
            events = (open_event_store(store_url, settings.max_events) if store_url
                      else event_store_for(store, settings.max_events))
            sinks.append(StoreSink(events))
    return AuditLog(sinks, events=events, queue_size=settings.queue_size, clock=clock,
                    session_key=session_key, retention=settings.retention)


def check_sinks(settings: AuditSettings, *, state_dir: Path, store: Any = None) -> None:
    """Raise AuditSinkError naming the first configured sink that cannot be written now.

    ``serve`` runs this before it starts (SPEC §7 fail closed): a file sink
    whose path is not writable, or a store sink whose backend refuses its
    table, stops the start with that message, rather than a server that
    answers ready while its events go nowhere. It writes no event.
    """
    for name in settings.sinks:
        sink: Sink
        if name == "file":
            path = Path(settings.file)
            sink = FileSink(path if path.is_absolute() else state_dir / path)
            where = f"file {sink.path}"
        elif name == "store":
            where = "store (the audit_events beside the session store)"
            try:
                sink = StoreSink(event_store_for(store, settings.max_events))
            except Exception as err:  # sqlite3, Redis and psycopg errors alike
                raise AuditSinkError(f"audit sink {where} cannot be opened: {_reason(err)}") from None
        else:
            sink, where = StdoutSink(), "stdout"
        try:
            sink.check()
        except Exception as err:
            raise AuditSinkError(f"audit sink {where} cannot be written: {_reason(err)}") from None
        finally:
            sink.close()


def _reason(err: BaseException) -> str:
    """Return an error as a person reads it: an OSError's strerror, else its type and message."""
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename}: {err.strerror}" if err.filename else err.strerror
    return f"{type(err).__name__}: {err}"[:300]


def server_audit_log(settings: AuditSettings, state_dir: Path, store: Any, secret: bytes) -> AuditLog:
    """Return the server's AuditLog; session digests are keyed from ``secret`` (the interaction key).

    Instances that share the state directory's key name a session by the same
    digest, so its events correlate across them.
    """
    return audit_log(settings, state_dir=state_dir, store=store,
                     session_key=hmac.digest(secret, b"policy-sso audit session digest", "sha256"))
