"""Several processes writing one FileSink path behave like one writer (``serve --workers N``)."""

from __future__ import annotations

import itertools
import json
import multiprocessing
from collections.abc import Callable
from pathlib import Path

import pytest

from policy_sso.audit.sinks import FileSink

FORK = multiprocessing.get_context("fork")  # children inherit the test's state, as serve's workers do
WRITERS = 4
LINES = 250  # per writer
MAX_BYTES = 1024
KEEP = 500  # large enough to keep every rotated file: nothing may be lost


def _line(writer: int, n: int) -> str:
    # lengths vary (about 40 to 80 bytes) so batches cross max_bytes at varying points
    return json.dumps({"writer": writer, "n": n, "pad": "x" * ((n * 7 + writer) % 40)})


def _write_numbered(sink: FileSink | None, path: Path, writer: int, start: object) -> None:
    """Write LINES numbered lines in batches of 1 to 4, through ``sink`` or a FileSink of our own."""
    sink = sink or FileSink(path, max_bytes=MAX_BYTES, keep=KEEP)
    start.wait(30)  # all writers start together, so they contend for the file
    n = 0
    while n < LINES:
        batch = range(n, min(n + 1 + (n + writer) % 4, LINES))
        sink.write([(None, _line(writer, i)) for i in batch])
        n = batch.stop
    sink.close()


def _run(target: Callable[..., None], *args: object) -> None:
    """Run ``target`` in a forked process and check that it finished cleanly."""
    child = FORK.Process(target=target, args=args)
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0


@pytest.mark.parametrize("inherited", [False, True], ids=["own-sink-per-process", "sink-inherited-by-fork"])
def test_processes_lose_no_line_and_rotate_once_a_crossing(tmp_path: Path, inherited: bool) -> None:
    path = tmp_path / "audit.jsonl"
    parent = FileSink(path, max_bytes=MAX_BYTES, keep=KEEP)
    expected = []
    if inherited:  # the parent has written, so its descriptors (and their flock) pass to the children
        parent.write([(None, _line(-1, 0))])
        expected.append((-1, 0))
    start = FORK.Event()
    children = [FORK.Process(target=_write_numbered, args=(parent if inherited else None, path, w, start))
                for w in range(WRITERS)]
    for child in children:
        child.start()
    start.set()
    for child in children:
        child.join(60)
        if child.is_alive():
            child.kill()
    assert [child.exitcode for child in children] == [0] * WRITERS
    parent.close()

    files = parent.rotated()
    assert [f.name for f in files] == ["audit.jsonl"] + [f"audit.jsonl.{n}" for n in range(1, len(files))]
    assert len(files) < KEEP  # nothing was dropped by rotation
    contents = [f.read_bytes() for f in reversed(files)]  # oldest first
    assert all(len(data) <= MAX_BYTES for data in contents)
    lines = [line for data in contents for line in data.decode().splitlines()]
    events = [json.loads(line) for line in lines]  # a split or interleaved line would not parse
    assert all(line == _line(e["writer"], e["n"]) for line, e in zip(lines, events, strict=True))
    written = [(e["writer"], e["n"]) for e in events]
    expected += [(w, n) for w in range(WRITERS) for n in range(LINES)]
    assert sorted(written) == sorted(expected)  # every line exactly once
    for w in range(WRITERS):  # each writer's lines in its order, across the files
        assert [n for writer, n in written if writer == w] == list(range(LINES))
    # one rotation per crossing: each rotated file was full, its successor's first line did not fit
    for older, newer in itertools.pairwise(contents):
        assert len(older) + len(newer.split(b"\n", 1)[0]) + 1 > MAX_BYTES


def _write_one(path: Path, line: str, keep: int = 1) -> None:
    sink = FileSink(path, max_bytes=100, keep=keep)
    sink.write([(None, line)])
    sink.close()


def test_a_writer_follows_a_rotation_made_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = FileSink(path, max_bytes=100, keep=1)
    first.write([(None, "a" * 49)])  # 50 of 100 bytes
    _run(_write_one, path, "b" * 59)  # 60 more would pass 100: the other process rotates
    first.write([(None, "c" * 29)])  # fits in the new file (60 + 30), not in the rotated one
    assert path.read_text().splitlines() == ["b" * 59, "c" * 29]
    assert (tmp_path / "audit.jsonl.1").read_text().splitlines() == ["a" * 49]
    _run(_write_one, path, "d" * 59)  # the second rotation drops the oldest file, and nothing else
    first.write([(None, "e" * 9)])
    first.close()
    assert path.read_text().splitlines() == ["d" * 59, "e" * 9]
    assert (tmp_path / "audit.jsonl.1").read_text().splitlines() == ["b" * 59, "c" * 29]
    assert oct((tmp_path / "audit.jsonl.lock").stat().st_mode & 0o777) == oct(0o600)


def test_keep_zero_starts_a_new_file_that_the_other_process_follows(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = FileSink(path, max_bytes=100, keep=0)
    first.write([(None, "a" * 49)])
    _run(_write_one, path, "b" * 59, 0)  # rotation with keep=0 deletes the file
    first.write([(None, "c" * 29)])
    first.close()
    assert path.read_text().splitlines() == ["b" * 59, "c" * 29]
    assert first.rotated() == [path]


def test_a_lock_file_that_cannot_be_created_fails_the_write(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    (tmp_path / "audit.jsonl.lock").mkdir()  # a directory cannot be opened for writing
    with pytest.raises(OSError):
        FileSink(path).write([(None, "{}")])
