"""Where the writer thread puts events: JSON lines on stdout, a rotated JSON-lines file, the store.

Every sink takes a batch of ``(event JSON, JSON line)`` records; the writer
serialises each event once for all of them, and builds the JSON objects only
when a sink reads them (``wants_json``: the line sinks do not).
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TextIO

from policy_sso.audit.stores import EventStore, Record


class Sink(Protocol):
    """A destination of audit events."""

    name: str
    # A sink may also say ``wants_json = False``: it reads only the lines, and the records' JSON
    # objects are then None. A sink without the attribute gets both.

    def write(self, records: Sequence[Record]) -> None:
        """Write a batch of events."""

    def check(self) -> None:
        """Raise (OSError, a store's error) when the sink cannot be written now; change nothing.

        Run by ``serve`` before it starts, and by ``/readyz`` for a sink whose
        last write failed, so a sink that works again makes the server ready again.
        """

    def close(self) -> None:
        """Flush and release."""


def write_lines(stream: TextIO, text: str) -> None:
    """Write ``text`` (whole lines, newline-ended) to ``stream`` in writes a pipe keeps whole; flush.

    ``serve --workers N`` gives every worker the same stdout and stderr.
    On a pipe (journald, docker, kubernetes) POSIX keeps a write(2) of at
    most ``PIPE_BUF`` bytes whole, and a larger one may be cut and mixed
    with another process's write, in the middle of a line. A text stream
    hands a big write to write(2) as it is (or cuts it at its buffer size,
    anywhere in a line), so the text is encoded here and written to the
    descriptor in chunks of whole lines of at most ``PIPE_BUF`` bytes,
    one write(2) each. The access log writes through here too. A stream
    without a descriptor (``io.StringIO``) takes the text as it is.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # none: io.StringIO (UnsupportedOperation), a stand-in
        stream.write(text)
        stream.flush()
        return
    stream.flush()  # what the text layer holds (a logging handler's line) goes out first
    encoding, errors = getattr(stream, "encoding", None), getattr(stream, "errors", None)
    data = text.encode(encoding or "utf-8", errors or "strict")
    start, size = 0, len(data)
    while start < size:
        end = start + select.PIPE_BUF
        if end < size:  # cut after the last newline that fits; a line longer than PIPE_BUF
            # cannot be kept whole by any write: it goes alone, up to its own newline
            end = data.rfind(b"\n", start, end) + 1 or data.find(b"\n", end) + 1 or size
        chunk = memoryview(data)[start:end]
        while chunk:  # a pipe takes <= PIPE_BUF bytes at once; a socket or tty may take less
            chunk = chunk[os.write(fd, chunk):]
        start = end


class StdoutSink:
    """One JSON object a line on standard output (or the stream given), as log shippers read it."""

    name = "stdout"
    wants_json = False

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def write(self, records: Sequence[Record]) -> None:
        """Write the lines and flush."""
        stream = self.stream or sys.stdout  # read at write time: a redirected stdout is honoured
        write_lines(stream, "\n".join([line for _, line in records]) + "\n")

    def check(self) -> None:
        """Raise OSError when there is no standard output to write to (closed, or a pipe nobody reads)."""
        stream = self.stream or sys.stdout
        if stream is None:  # started with stdout closed
            raise OSError("standard output is closed")
        stream.flush()

    def close(self) -> None:
        """Flush."""
        (self.stream or sys.stdout).flush()


class FileSink:
    """JSON lines appended to a file, rotated by size: ``audit.jsonl`` -> ``.1`` … ``.N`` (oldest dropped).

    The file is created mode 0600: events name users and their addresses. A
    batch is encoded once and written with one ``write(2)``, so a reader of
    the file never sees a half-written batch unless the disk fills.

    Several processes (``serve --workers N``) and threads may write one path and
    behave like one writer: each batch is written under an exclusive ``flock`` on
    ``<path>.lock``, after reopening the path if another process rotated it away,
    and the size that decides a rotation is the file's own (``fstat``), not what
    this process appended. A process that dies holding the lock releases it.
    """

    name = "file"
    wants_json = False

    def __init__(self, path: str | Path, max_bytes: int = 10 * 1024 * 1024, keep: int = 5) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(f"{self.path.name}.lock")
        self.max_bytes = max_bytes
        self.keep = keep
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._pid = 0  # the process that opened the descriptors
        self._lock = threading.Lock()  # flock does not exclude this process's own threads

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _close_fds(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._lock_fd = None

    def _open_lock(self) -> None:
        if self._pid != os.getpid():
            # a forked child shares its parent's open file descriptions, and with them the
            # parent's flock: it needs descriptors of its own to be excluded from the parent
            self._close_fds()
        if self._lock_fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()

    def _current_size(self) -> int:
        """Return the size of the file at ``path``, reopened first if another writer rotated it away."""
        if self._fd is not None:
            held = os.fstat(self._fd)
            try:
                if os.path.samestat(held, os.stat(self.path)):
                    return held.st_size  # the common case: still the file at the path
            except FileNotFoundError:
                pass  # rotated with keep=0, or removed: start a new file
            os.close(self._fd)
            self._fd = None
        self._open()
        return os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = None
        oldest = self.path.with_name(f"{self.path.name}.{self.keep}")
        oldest.unlink(missing_ok=True)
        for n in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.rename(self.path.with_name(f"{self.path.name}.{n + 1}"))
        if self.keep >= 1:
            self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._open()

    def write(self, records: Sequence[Record]) -> None:
        """Append the lines; rotate first when they would take the file past ``max_bytes``."""
        data = ("\n".join([line for _, line in records]) + "\n").encode()
        with self._lock:
            self._open_lock()
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            try:
                size = self._current_size()
                if size + len(data) <= self.max_bytes:
                    self._append(data)  # the common case: the whole batch fits
                    return
                for _, line in records:  # line by line, rotating where the next one would not fit
                    data = f"{line}\n".encode()
                    if size and size + len(data) > self.max_bytes:
                        self._rotate()
                        size = 0
                    self._append(data)
                    size += len(data)
            finally:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def check(self) -> None:
        """Open the file (and its lock file) for appending, as a write would; raise OSError when it cannot."""
        parent = self.path.parent
        if parent.exists() and not parent.is_dir():  # mkdir would say only "File exists"
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(parent))
        with self._lock:
            self._open_lock()
            self._current_size()

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:  # a regular file takes it all at once; a short write is retried for the rest
            view = view[os.write(self._fd, view):]

    def rotated(self) -> list[Path]:
        """Return the file and its rotated copies that exist, newest first."""
        names = [self.path] + [self.path.with_name(f"{self.path.name}.{n}") for n in range(1, self.keep + 1)]
        return [p for p in names if p.exists()]

    def close(self) -> None:
        """Close the file and the lock file."""
        with self._lock:
            self._close_fds()  # in a forked child this closes only its copies: the parent's stay open


class StoreSink:
    """The store sink: writes to an :class:`EventStore`, which also answers the events queries."""

    name = "store"

    def __init__(self, events: EventStore) -> None:
        self.events = events

    def write(self, records: Sequence[Record]) -> None:
        """Store the batch."""
        self.events.write(records)

    def check(self) -> None:
        """Ask the store whether it answers (a query of nothing)."""
        self.events.ping()

    def close(self) -> None:
        """Close the store's connection."""
        self.events.close()
