"""The mistakes corpus: each ``tests/mistakes/<case>/`` gets exactly its ``expected.txt``.

See ``tests/mistakes/README.md`` for the format. ``REGENERATE=1`` rewrites the
expected files from the actual output (check every rewritten file by eye).
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from policy_sso.cli import main

MISTAKES = Path(__file__).resolve().parent / "mistakes"
CASES = sorted(p.name for p in MISTAKES.iterdir() if (p / "expected.txt").is_file())
EXIT = re.compile(r"\[exit (\d+)\]")


def _read_case(case: str) -> tuple[list[str], str, int | None]:
    """Return the command's argv (after ``policy-sso``), the expected output and exit status."""
    lines = (MISTAKES / case / "expected.txt").read_text(encoding="utf-8").splitlines(keepends=True)
    command = lines[0].rstrip("\n")
    assert command.startswith("$ policy-sso "), f"{case}: the first line must be '$ policy-sso ARGS…'"
    exit_ = EXIT.fullmatch(lines[-1].strip()) if len(lines) > 1 else None
    status = int(exit_[1]) if exit_ else None
    output = "".join(lines[1:-1] if exit_ else lines[1:])
    return shlex.split(command)[2:], output, status


def test_the_corpus_is_there() -> None:
    assert len(CASES) >= 40  # issue 12, acceptance 1


@pytest.mark.parametrize("case", CASES)
def test_mistake_is_reported_exactly(case: str, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    argv, expected, status = _read_case(case)
    monkeypatch.chdir(MISTAKES / case)
    for name in [n for n in os.environ if n.startswith("POLICY_SSO_")]:
        monkeypatch.delenv(name)  # a case sees the same environment on every machine
    try:
        actual_status = main(argv)
    except SystemExit as exit_:  # argparse's own exits
        actual_status = int(exit_.code or 0)
    out, err = capsys.readouterr()
    actual = out + err
    if os.environ.get("REGENERATE") == "1":
        command = "$ policy-sso " + shlex.join(argv)
        (MISTAKES / case / "expected.txt").write_text(f"{command}\n{actual}[exit {actual_status}]\n",
                                                      encoding="utf-8")
        return
    assert status is not None, f"{case}: expected.txt must end with '[exit N]'"
    assert (actual, actual_status) == (expected, status)
    assert status != 0, "a mistake must fail"
    assert not any(line.startswith("ok") for line in actual.splitlines()), "a mistake is never 'ok'"
    assert "Traceback" not in actual
