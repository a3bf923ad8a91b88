"""Diagnostics: errors and findings with positions, and their three renderings.

A :class:`Diagnostic` is data, like python-jsonschema's ``ValidationError`` or
lark's ``UnexpectedInput``: every loader and checker returns them in lists, and
this module alone turns them into text, JSON or GitHub Actions annotations.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One finding at a place in a file: ``FILE:LINE:COL: CODE: message``."""

    file: str
    line: int
    col: int
    code: str
    message: str
    hint: str = ""
    severity: str = "error"

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.col}: {self.code}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


def edit_distance(a: str, b: str) -> int:
    """Return the Levenshtein distance between ``a`` and ``b`` (insertions, deletions, substitutions)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def near_names(name: str, candidates: Iterable[str], limit: int = 3) -> list[str]:
    """Return the candidates close enough to ``name`` to be what was meant, nearest first.

    Close enough, as rustc and Elm judge it: at most a third of the longer name
    differs (and at least one edit is allowed), or the names differ only in case.
    """
    folded = name.casefold()
    scored = []
    for candidate in set(candidates):
        if candidate == name:
            continue
        distance = edit_distance(folded, candidate.casefold())
        if distance <= max(1, max(len(name), len(candidate)) // 3):
            scored.append((distance, candidate))
    return [candidate for _, candidate in sorted(scored)[:limit]]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return a hint ``did you mean 'x'?`` naming the nearest candidates, or ``""`` when none is near."""
    near = near_names(name, candidates)
    if not near:
        return ""
    return "did you mean " + " or ".join(f"'{n}'" for n in near) + "?"


def sort_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Return diagnostics ordered by file and position, duplicates dropped."""
    return sorted(set(diagnostics))


def render_text(diagnostics: Iterable[Diagnostic]) -> str:
    """Render one ``FILE:LINE:COL: CODE: message`` line per diagnostic."""
    return "".join(f"{d}\n" for d in diagnostics)


def render_json(diagnostics: Iterable[Diagnostic]) -> str:
    """Render a JSON document ``{"diagnostics": [...]}``."""
    items = [asdict(d) for d in diagnostics]
    return json.dumps({"diagnostics": items, "count": len(items)}, indent=2) + "\n"


def _escape_github(value: str, *, property_: bool = False) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property_:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def render_github(diagnostics: Iterable[Diagnostic]) -> str:
    """Render GitHub Actions workflow commands (``::error file=…,line=…,col=…::…``)."""
    lines = []
    for d in diagnostics:
        level = "error" if d.severity == "error" else "warning"
        props = (f"file={_escape_github(d.file, property_=True)},line={d.line},"
                 f"col={d.col},title={_escape_github(d.code, property_=True)}")
        message = f"{d.code}: {d.message}" + (f" (hint: {d.hint})" if d.hint else "")
        lines.append(f"::{level} {props}::{_escape_github(message)}\n")
    return "".join(lines)


RENDERERS = {"text": render_text, "json": render_json, "github": render_github}
