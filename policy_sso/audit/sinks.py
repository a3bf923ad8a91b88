"""Where the writer thread puts events: JSON lines on stdout, a rotated JSON-lines file, the store.

Every sink takes a batch of ``(event JSON, JSON line)`` records; the writer
serialises each event once for all of them, and builds the JSON objects only
when a sink reads them (``wants_json``: the line sinks do not).
"""

from __future__ import annotations

import os
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

    def close(self) -> None:
        """Flush and release."""


class StdoutSink:
    """One JSON object a line on standard output (or the stream given), as log shippers read it."""

    name = "stdout"
    wants_json = False

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def write(self, records: Sequence[Record]) -> None:
        """Write the lines and flush."""
        stream = self.stream or sys.stdout  # read at write time: a redirected stdout is honoured
        stream.write("\n".join([line for _, line in records]) + "\n")
        stream.flush()

    def close(self) -> None:
        """Flush."""
        (self.stream or sys.stdout).flush()


class FileSink:
    """JSON lines appended to a file, rotated by size: ``audit.jsonl`` -> ``.1`` … ``.N`` (oldest dropped).

    The file is created mode 0600: events name users and their addresses. A
    batch is encoded once and written with one ``write(2)``, so a reader of
    the file never sees a half-written batch unless the disk fills.
    """

    name = "file"
    wants_json = False

    def __init__(self, path: str | Path, max_bytes: int = 10 * 1024 * 1024, keep: int = 5) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self._fd: int | None = None
        self._size = 0
        self._lock = threading.Lock()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._size = os.fstat(self._fd).st_size

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
        with self._lock:
            if self._fd is None:
                self._open()
            data = ("\n".join([line for _, line in records]) + "\n").encode()
            if self._size + len(data) <= self.max_bytes:
                self._append(data)  # the common case: the whole batch fits
                return
            for _, line in records:  # line by line, rotating where the next one would not fit
                data = f"{line}\n".encode()
                if self._size and self._size + len(data) > self.max_bytes:
                    self._rotate()
                self._append(data)

    def _append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:  # a regular file takes it all at once; a short write is retried for the rest
            view = view[os.write(self._fd, view):]
        self._size += len(data)

    def rotated(self) -> list[Path]:
        """Return the file and its rotated copies that exist, newest first."""
        names = [self.path] + [self.path.with_name(f"{self.path.name}.{n}") for n in range(1, self.keep + 1)]
        return [p for p in names if p.exists()]

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class StoreSink:
    """The store sink: writes to an :class:`EventStore`, which also answers the events queries."""

    name = "store"

    def __init__(self, events: EventStore) -> None:
        self.events = events

    def write(self, records: Sequence[Record]) -> None:
        """Store the batch."""
        self.events.write(records)

    def close(self) -> None:
        """Close the store's connection."""
        self.events.close()
