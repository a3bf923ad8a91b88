"""The ``audit:`` block of ``tenant.yaml``: which sinks, the file's rotation, retention, queue size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policy_sso.model import parse_duration

SINKS = ("stdout", "file", "store")


@dataclass(frozen=True)
class AuditSettings:
    """Where audit events go; the defaults are documented in docs/operations.md "Audit events"."""

    sinks: tuple[str, ...] = ("store",)
    file: str = "audit.jsonl"  # relative paths are under the state directory
    rotate_bytes: int = 10 * 1024 * 1024
    rotate_keep: int = 5
    retention: int = 30 * 86400
    queue_size: int = 10000
    max_events: int = 100000  # the Redis stream's cap (XADD MAXLEN ~); the memory store keeps 10000


def audit_settings(data: dict[str, Any] | None) -> AuditSettings:
    """Return the settings for a schema-valid ``audit:`` mapping (absent keys take the defaults)."""
    data = data or {}
    default = AuditSettings()
    return AuditSettings(
        sinks=tuple(dict.fromkeys(data.get("sinks", default.sinks))),
        file=data.get("file", default.file),
        rotate_bytes=int(data.get("rotate_bytes", default.rotate_bytes)),
        rotate_keep=int(data.get("rotate_keep", default.rotate_keep)),
        retention=parse_duration(data["retention"]) if "retention" in data else default.retention,
        queue_size=int(data.get("queue_size", default.queue_size)),
        max_events=int(data.get("max_events", default.max_events)),
    )
