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
