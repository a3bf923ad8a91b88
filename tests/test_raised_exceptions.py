"""No module raises an exception object it keeps at module level.

A raised exception keeps its ``__traceback__``, and with it every frame of
the request that raised it (the form, the cookies, the session) until it is
raised again: a shared instance would hold one request's data for the life
of the process. Each raise makes a new exception.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p for package in ("policy_sso", "server") for p in (ROOT / package).rglob("*.py"))


def shared_raises(source: str) -> list[tuple[int, str]]:
    """Return (line, name) of each ``raise NAME`` where NAME is bound at module level to a call's result."""
    tree = ast.parse(source)
    shared = {target.id for node in tree.body
              if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
              for target in node.targets if isinstance(target, ast.Name)}
    return [(node.lineno, node.exc.id) for node in ast.walk(tree)
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Name) and node.exc.id in shared]


def test_the_check_finds_a_shared_exception() -> None:
    source = 'FORGED = ValueError("csrf")\n\ndef check(ok):\n    if not ok:\n        raise FORGED\n'
    assert shared_raises(source) == [(5, "FORGED")]
    assert shared_raises(source.replace("raise FORGED", "raise ValueError('csrf')")) == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_raises_a_shared_exception(path: Path) -> None:
    assert shared_raises(path.read_text()) == []
