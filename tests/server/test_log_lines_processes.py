"""Log lines from several processes sharing one pipe arrive whole (server/logs.py, audit/sinks.py).

Under ``serve --workers N`` every worker inherits the same stderr and stdout.
When that is a pipe (journald, docker, kubernetes), POSIX makes a write(2) of
at most ``PIPE_BUF`` bytes atomic and nothing larger: a batch written in one
big write can be cut by another worker's batch in the middle of a line.
Each test forks writers into one ``os.pipe()``, reads it in the parent and
checks that every line arrives intact, exactly once.
"""

from __future__ import annotations

import collections
import io
import os
import select
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from policy_sso.audit.sinks import StdoutSink
from server.logs import AccessWriter

PROCESSES = 3
LINES = 300  # a process's lines: a batch of AccessWriter.FLUSH_LINES (~160 KB) and the rest
DEADLINE = 60.0

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="forks writer processes")


def _path(worker: int, n: int) -> str:
    """Return a distinct ~230-byte path: a cut line shows as a path that is not one of these."""
    return f"/w{worker}/n{n:04d}/" + "x" * 220


def _access_lines(worker: int, stream: object) -> None:
    writer = AccessWriter(stream, "json")  # type: ignore[arg-type]
    writer.flusher_pid = os.getpid()  # no flusher thread: the batches are the ones write() and flush() make
    for n in range(LINES):
        writer.write(f"r{worker}-{n}", ("GET", _path(worker, n), 200, 10, 1.5, "127.0.0.1"))
    writer.flush()


def _audit_lines(worker: int, stream: object) -> None:
    sink = StdoutSink(stream)  # type: ignore[arg-type]
    for start in (0, 256):  # the writer thread's batches: up to 256 events
        ns = range(start, min(start + 256, LINES))
        sink.write([(None, f'{{"path":"{_path(worker, n)}"}}') for n in ns])
    sink.close()


def _read_all(read_fd: int, pids: list[int]) -> tuple[bytes, list[int]]:
    """Return what the writers wrote until all closed the pipe (killed at DEADLINE), and their statuses."""
    chunks = []
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        ready, _, _ = select.select([read_fd], [], [], 0.5)
        if ready:
            chunk = os.read(read_fd, 4096)  # a slow reader, so the pipe fills and writers wait inside a write
            if not chunk:
                break
            chunks.append(chunk)
    else:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    return b"".join(chunks), [os.waitpid(pid, 0)[1] for pid in pids]


def _write_from_processes(write_lines: Callable[[int, object], None]) -> list[bytes]:
    """Return the lines PROCESSES forked writers wrote through ``write_lines`` into one pipe."""
    read_fd, write_fd = os.pipe()
    pids = []
    for worker in range(PROCESSES):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                os.close(read_fd)
                # a stream like sys.stderr (line-buffered text over a buffered writer) on the pipe
                stream = open(write_fd, "w", buffering=1, encoding="utf-8",  # noqa: SIM115
                              errors="backslashreplace", closefd=False)
                write_lines(worker, stream)
                stream.flush()
                code = 0
            finally:
                os._exit(code)  # never run the parent's pytest teardown in a child
        pids.append(pid)
    os.close(write_fd)
    try:
        data, statuses = _read_all(read_fd, pids)
    finally:
        os.close(read_fd)
    assert statuses == [0] * PROCESSES, "every writer finished (a child's traceback is on stderr)"
    return data.split(b"\n")


@pytest.mark.parametrize("write_lines", [_access_lines, _audit_lines], ids=["access_log", "audit_stdout"])
def test_lines_from_several_processes_on_one_pipe_arrive_whole_and_once(
        write_lines: Callable[[int, object], None]) -> None:
    lines = _write_from_processes(write_lines)
    assert lines.pop() == b"", "the output ends with a newline"
    expected = {_path(worker, n).encode() for worker in range(PROCESSES) for n in range(LINES)}
    found = collections.Counter()
    cut = []
    for line in lines:
        start = line.find(b'"path":"') + len(b'"path":"')
        path = line[start:line.find(b'"', start)]
        if path in expected and line.startswith(b"{") and line.endswith(b"}") and line.count(b"{") == 1:
            found[path] += 1
        else:
            cut.append(line[:80])
    assert not cut, f"{len(cut)} lines cut or mixed, e.g. {cut[:3]}"
    assert set(found) == expected and set(found.values()) == {1}, "each line exactly once"


def test_a_stream_without_a_descriptor_gets_the_lines_through_its_write() -> None:
    out = io.StringIO()
    writer = AccessWriter(out, "text")
    writer.flusher_pid = os.getpid()
    writer.write("r-1", ("GET", "/a", 200, 1, 0.5, "127.0.0.1"))
    writer.flush()
    StdoutSink(out).write([(None, "{}")])
    assert out.getvalue().endswith(" GET /a 200 1B 0.5ms ip=127.0.0.1\n{}\n")


def test_each_write_is_whole_lines_within_pipe_buf_and_a_longer_line_goes_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[bytes] = []
    real_write = os.write

    def record(fd: int, data: bytes) -> int:
        writes.append(bytes(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", record)
    long = "L" * (select.PIPE_BUF + 100)
    lines = [f"short {n} " + "s" * 100 for n in range(60)] + [long] + [f"after {n}" for n in range(3)]
    with open(tmp_path / "out", "w", encoding="utf-8") as stream:
        StdoutSink(stream).write([(None, line) for line in lines])
    assert (tmp_path / "out").read_text().splitlines() == lines
    assert len(writes) > 1 and all(chunk.endswith(b"\n") for chunk in writes)
    assert [chunk for chunk in writes if len(chunk) > select.PIPE_BUF] == [long.encode() + b"\n"]
