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

import atexit
import collections
import json
import logging
import os
import sys
import threading
import time
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import IO, Any

from policy_sso.audit.context import request_fields
from policy_sso.audit.sinks import write_lines

ACCESS = logging.getLogger("policy_sso.access")
LOGGERS = ("policy_sso", "waitress")
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


class EveryInterval:
    """Lets one warning through per ``interval`` seconds and counts the ones it held back.

    waitress warns "Task queue depth is N" on every request queued while its
    threads are busy: under a burst that is a line (and its formatting and
    write) per request, so the log floods exactly when the server has the
    least time to spare. Asked before the record is made, so a held-back
    warning costs a clock read; the next one let through says how many were held.
    """

    def __init__(self, interval: float = 10.0, clock: Any = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.next_at = float("-inf")
        self.held = 0

    def admit(self) -> str | None:
        """Return None to hold this warning back, else the note to end it with ("" or the count held)."""
        now = self.clock()
        if now < self.next_at:
            self.held += 1  # a lost increment under a race only undercounts a log note
            return None
        self.next_at = now + self.interval
        held, self.held = self.held, 0
        return f" ({held} such warnings held back in the last {self.interval:g} s)" if held else ""


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


class AccessWriter:
    """Writes access lines to the log stream in the handler's format, in batches, without logging's machinery.

    An access line is written on every request. Through ``logging`` (a
    record, filters, a formatter, a handler lock and a flush) it cost about
    30 us of CPU in text and 65 us in JSON on the benchmark machine; and a
    write per request is a system call that hands the interpreter lock to
    another worker thread, which under load cost more than the line itself
    (``benchmarks/bench_http.py``: silent authorize +20% with a write per
    line). Here a line is one f-string (JSON strings escaped by json's C
    function) put on a queue, and a flusher thread writes what has queued every
    ``FLUSH_SECONDS`` (one write per 4 KiB of whole lines), or the request thread does once
    ``FLUSH_LINES`` are waiting (memory stays bounded under any load). Lines
    of a process that dies abruptly may be lost for the last fraction of a
    second, as with nginx's ``access_log … buffer= flush=``.
    """

    FLUSH_SECONDS = 0.2
    FLUSH_LINES = 256

    def __init__(self, stream: IO[str], log_format: str) -> None:
        self.stream = stream
        self.json = log_format == "json"
        self.lock = threading.Lock()
        self.queue: collections.deque[str] = collections.deque()
        self.second = -1
        self.stamp = ""
        self.flusher_pid = 0  # the flusher runs in the process that writes (serve --workers forks)

    def write(self, request_id: str, line: tuple[str, str, int, int | None, float, str]) -> None:
        """Queue one access line (fields as :data:`ACCESS_FIELDS`)."""
        now = time.time()
        second = int(now)
        if second != self.second:  # racing threads both format the same second: harmless
            self.stamp, self.second = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)), second
        stamp = f"{self.stamp}.{int((now - second) * 1000):03d}Z"
        method, path, status, size, duration_ms, ip = line
        shown = "-" if size is None else size
        message = f"{method} {path} {status} {shown}B {duration_ms}ms ip={ip}"
        if self.json:  # the keys of JsonFormatter's lines; strings escaped by json's C function
            q = encode_basestring
            text = (f'{{"time":"{stamp}","level":"info","logger":"policy_sso.access","request_id":'
                    f'{q(request_id)},"message":{q(message)},"method":{q(method)},"path":{q(path)},'
                    f'"status":{status},"bytes":{"null" if size is None else size},'
                    f'"duration_ms":{duration_ms},"ip":{q(ip)}}}')
        else:
            text = f"{stamp} INFO policy_sso.access [{request_id}] {message}"
        self.queue.append(text)  # deque.append is atomic: no lock on the request path
        if len(self.queue) >= self.FLUSH_LINES:
            self.flush()
        elif self.flusher_pid != os.getpid():
            self._start_flusher()

    def flush(self) -> None:
        """Write every queued line: in writes of whole lines that a pipe shared by the workers keeps whole."""
        with self.lock:
            lines = []
            try:
                while True:
                    lines.append(self.queue.popleft())
            except IndexError:
                pass
            if lines:  # one write(2) per PIPE_BUF bytes of whole lines, not one per line
                write_lines(self.stream, "\n".join(lines) + "\n")

    def _start_flusher(self) -> None:
        with self.lock:
            if self.flusher_pid == os.getpid():
                return
            self.flusher_pid = os.getpid()
        threading.Thread(target=self._flush_forever, name="access-log", daemon=True).start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.FLUSH_SECONDS)
            try:
                self.flush()
            except (OSError, ValueError):  # stderr closed or gone: nothing to tell, nowhere to write
                self.queue.clear()


_writer: AccessWriter | None = None  # set by configure_logging; None: access lines go through logging


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
    global _writer  # noqa: PLW0603 (one writer a process, as the handler it stands in for)
    if _writer is not None:
        _writer.flush()
    _writer = AccessWriter(handler.stream, log_format) if ACCESS.isEnabledFor(logging.INFO) else None
    if _writer is not None:
        atexit.register(_writer.flush)  # SIGTERM ends serve through SystemExit: the last lines are written


def flush_access_log() -> None:
    """Write the access lines still queued (tests; serve's exit does it through atexit)."""
    if _writer is not None:
        _writer.flush()


def access_enabled() -> bool:
    """Return whether access lines are written (INFO on for ``policy_sso.access``; cached by logging)."""
    return _writer is not None or ACCESS.isEnabledFor(logging.INFO)


def log_access(request_id: str, line: tuple[str, str, int, int | None, float, str]) -> None:
    """Write the access line of one request (the caller checks :func:`access_enabled` first).

    ``line`` holds :data:`ACCESS_FIELDS`' values. Under :func:`configure_logging`
    the :class:`AccessWriter` writes it; otherwise (an embedding application's
    own handlers) a record is made directly and handed to the logger once.
    """
    method, path, status, size, duration_ms, ip = line
    if len(path) > PATH_MAX or not path.isprintable():  # a decoded path may hold newlines: no forged lines
        path = path[:PATH_MAX].encode("unicode_escape").decode("ascii")
    duration_ms = round(duration_ms, 2)
    writer = _writer
    if writer is not None:
        writer.write(request_id, (method, path, status, size, duration_ms, ip))
        return
    record = logging.LogRecord("policy_sso.access", logging.INFO, __file__, 0, "%s %s %s %sB %sms ip=%s",
                               (method, path, status, "-" if size is None else size, duration_ms, ip), None)
    record.request_id = request_id
    record.access = (method, path, status, size, duration_ms, ip)
    ACCESS.handle(record)
