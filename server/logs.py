"""The server's logs: one access line per request, and every log line with a timestamp and request id.

``policy-sso serve --log-format text|json --log-level LEVEL`` installs one
handler on stderr for the ``policy_sso`` and ``waitress`` loggers
(:func:`configure_logging`). Each line carries the id of the request being
served on its thread (the middleware binds it for the audit events, and the
same binding is read here), so a warning is found next to its access line.

The access line (logger ``policy_sso.access``, level INFO) has the method,
the path, the status, the body's bytes, the time spent in the app in ms, the
request id and the client address. It never has the query string: codes,
states, hints, tokens and passwords travel in it (RFC 6749 §4.1.2, OIDC Core
§3.1.2.1), so the path alone is logged. ``--log-level warning`` turns it off.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

from policy_sso.audit.context import request_fields

ACCESS = logging.getLogger("policy_sso.access")
LOGGERS = ("policy_sso", "waitress")
FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
# the fields of an access line, in order (the JSON keys; the text line shows them in this order too)
ACCESS_FIELDS = ("method", "path", "status", "bytes", "duration_ms", "ip")
PATH_MAX = 512
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def current_request_id() -> str | None:
    """Return the id of the request this thread serves, or None outside a request."""
    return request_fields()[0]


class RequestIdFilter(logging.Filter):
    """Stamps each record with ``request_id``: its own (access lines) or its thread's request's."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Set ``record.request_id`` ("-" outside a request); never drops a record."""
        if getattr(record, "request_id", None) is None:
            record.request_id = current_request_id() or "-"
        return True


class UtcFormatter(logging.Formatter):
    """Text lines: ISO 8601 UTC timestamps with milliseconds, the request id after the logger."""

    converter = time.gmtime

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """Return the record's time as ``2026-12-01T23:01:16.123Z``."""
        del datefmt
        return time.strftime("%Y-%m-%dT%H:%M:%S", self.converter(record.created)) + f".{record.msecs:03.0f}Z"


class JsonFormatter(UtcFormatter):
    """One JSON object a line: time, level, logger, request_id, message, and an access line's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON line (a traceback, if any, under ``exception``)."""
        out: dict[str, Any] = {"time": self.formatTime(record), "level": record.levelname.lower(),
                               "logger": record.name, "request_id": getattr(record, "request_id", "-"),
                               "message": record.getMessage()}
        access = getattr(record, "access", None)
        if access is not None:
            out.update(zip(ACCESS_FIELDS, access, strict=True))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def configure_logging(log_format: str = "text", level: str = "info", stream: IO[str] | None = None) -> None:
    """Send the ``policy_sso`` and ``waitress`` loggers to ``stream`` (stderr) in ``log_format`` at ``level``.

    Replaces handlers an earlier call installed, so calling it twice does not
    double every line.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else UtcFormatter())
    handler.addFilter(RequestIdFilter())
    handler.policy_sso = True  # type: ignore[attr-defined]
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "policy_sso", False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level.upper())
        logger.propagate = False  # one line per record, whatever the root logger does


def access_enabled() -> bool:
    """Return whether access lines are written (INFO on for ``policy_sso.access``; cached by logging)."""
    return ACCESS.isEnabledFor(logging.INFO)


def log_access(request_id: str, line: tuple[str, str, int, int | None, float, str]) -> None:
    """Write the access line of one request (the caller checks :func:`access_enabled` first).

    ``line`` holds :data:`ACCESS_FIELDS`' values. The record is made directly
    and handed to the logger once: no caller lookup (``findCaller`` walks the
    stack), so a line costs little per request.
    """
    method, path, status, size, duration_ms, ip = line
    if len(path) > PATH_MAX or not path.isprintable():  # a decoded path may hold newlines: no forged lines
        path = path[:PATH_MAX].encode("unicode_escape").decode("ascii")
    duration_ms = round(duration_ms, 2)
    record = logging.LogRecord("policy_sso.access", logging.INFO, __file__, 0, "%s %s %s %sB %sms ip=%s",
                               (method, path, status, "-" if size is None else size, duration_ms, ip), None)
    record.request_id = request_id
    record.access = (method, path, status, size, duration_ms, ip)
    ACCESS.handle(record)
