"""Diagnostics: errors and findings with positions, and their three renderings.

A :class:`Diagnostic` is data, like python-jsonschema's ``ValidationError`` or
lark's ``UnexpectedInput``: every loader and checker returns them in lists, and
this module alone turns them into text, JSON or GitHub Actions annotations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path


@dataclass(frozen=True, order=True)
class Related:
    """A second place that belongs to a diagnostic (rustc's "note"): ``FILE:LINE:COL: note: label``."""

    file: str
    line: int
    col: int
    label: str
    end_col: int = 0  # exclusive; 0 when only the start is known


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One finding at a place in a file: ``FILE:LINE:COL: CODE: message``.

    ``end_line``/``end_col`` close the span (``end_col`` exclusive, as in rustc's
    JSON); 0 means only the start is known. ``related`` lists the other places
    that make the mistake, e.g. where a duplicated name was first given.
    """

    file: str
    line: int
    col: int
    code: str
    message: str
    hint: str = ""
    severity: str = "error"
    end_line: int = 0
    end_col: int = 0
    related: tuple[Related, ...] = ()

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.col}: {self.code}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


def edit_distance(a: str, b: str) -> int:
    """Return the edit distance between ``a`` and ``b``: insertions, deletions, substitutions and
    transpositions of two adjacent characters ("wai" for "wia" is one slip, not two)."""
    if len(a) < len(b):
        a, b = b, a
    before: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, before[j - 2] + 1)
            current.append(cost)
        before, previous = previous, current
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


def with_span(diagnostic: Diagnostic, end_col: int = 0, end_line: int = 0,
              related: tuple[Related, ...] = ()) -> Diagnostic:
    """Return ``diagnostic`` with its span closed at ``end_col`` and ``related`` places added."""
    return replace(diagnostic, end_line=end_line or (diagnostic.line if end_col else 0), end_col=end_col,
                   related=diagnostic.related + related)


# YAML counts these as line breaks too (YAML 1.2 §5.4); the DSL counts only "\n".
_YAML_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")


class SourceLines:
    """Reads the files diagnostics point at, once each, when a snippet is rendered.

    Paths are as the diagnostics print them (relative to the working directory).
    A file that cannot be read (gone, not a file, ``<stdin>``) gives no snippet.
    """

    def __init__(self, sources: dict[str, str] | None = None) -> None:
        self._lines: dict[str, list[str] | None] = {}
        self._sources = sources or {}

    def line(self, file: str, number: int) -> str | None:
        """Return line ``number`` (1-based) of ``file`` without its break, or None."""
        if file not in self._lines:
            self._lines[file] = self._read(file)
        lines = self._lines[file]
        if lines is None or not 1 <= number <= len(lines):
            return None
        return lines[number - 1]

    def _read(self, file: str) -> list[str] | None:
        text = self._sources.get(file)
        if text is None:
            if Path(file).is_symlink():
                # a link is not followed to show a line of it: it may lead out of the tree checked,
                # which is then its error (validate reads no such link, and a tenant loads none);
                # a link to /proc/self/environ would print a CI job's secrets
                return None
            try:
                # the loaders skip a BOM and report undecodable bytes themselves
                text = Path(file).read_bytes().decode("utf-8-sig", errors="replace")
            except (OSError, ValueError):
                return None
        if file.endswith((".yaml", ".yml", ".json")):
            return _YAML_BREAKS.split(text)
        return [line.removesuffix("\r") for line in text.split("\n")]


def _snippet(lines: SourceLines, file: str, line: int, col: int, *, end_line: int, end_col: int) -> list[str]:
    """Return the source line and a caret line under the span, rustc-style (none if unreadable)."""
    source = lines.line(file, line)
    if source is None or col < 1:
        return []
    # Tabs shown as four spaces, so the carets stay under their characters.
    before = source[:col - 1]
    shown_before = before.replace("\t", "    ")
    # a span over several lines: underline the rest of the first
    end = len(source) + 1 if end_line > line else end_col if end_col > col else col + 1
    end = min(end, max(len(source) + 1, col + 1))
    width = max(1, len(source[col - 1:end - 1].replace("\t", "    ")))
    number = str(line)
    gutter = " " * max(4, len(number) + 1)
    return [f"{number:>{len(gutter)}} | {source.replace(chr(9), '    ')}".rstrip(),
            f"{gutter} | {' ' * len(shown_before)}{'^' * width}"]


def render_text(diagnostics: Iterable[Diagnostic], sources: dict[str, str] | None = None, *,
                severity_label: bool = False) -> str:
    """Render each diagnostic as its ``FILE:LINE:COL: CODE: message`` line, the source line with a
    caret under the span, and each related place as a ``note`` with its own snippet.

    Files are read here, lazily, by the path each diagnostic prints (``sources``
    may supply texts that are not files); an unreadable file just has no snippet.
    ``severity_label`` writes ``CODE: error: message`` (lint's findings mix both).
    """
    lines = SourceLines(sources)
    out: list[str] = []
    for d in diagnostics:
        if severity_label:
            out.append(f"{d.file}:{d.line}:{d.col}: {d.code}: {d.severity}: {d.message}"
                       + (f" (hint: {d.hint})" if d.hint else ""))
        else:
            out.append(str(d))
        out.extend(_snippet(lines, d.file, d.line, d.col, end_line=d.end_line, end_col=d.end_col))
        for r in d.related:
            out.append(f"{r.file}:{r.line}:{r.col}: note: {r.label}")
            out.extend(_snippet(lines, r.file, r.line, r.col, end_line=r.line, end_col=r.end_col))
    return "".join(f"{line}\n" for line in out)


def render_json(diagnostics: Iterable[Diagnostic]) -> str:
    """Render a JSON document ``{"diagnostics": [...]}``: every field, spans and ``related`` too."""
    items = [asdict(d) for d in diagnostics]
    return json.dumps({"diagnostics": items, "count": len(items)}, indent=2) + "\n"


def _escape_github(value: str, *, property_: bool = False) -> str:
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if property_:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def render_github(diagnostics: Iterable[Diagnostic]) -> str:
    """Render GitHub Actions workflow commands (``::error file=…,line=…,col=…,endColumn=…::…``).

    Related places follow the message on lines of their own (``%0A``).
    """
    lines = []
    for d in diagnostics:
        level = "error" if d.severity == "error" else "warning"
        props = f"file={_escape_github(d.file, property_=True)},line={d.line},col={d.col}"
        if d.end_line:
            props += f",endLine={d.end_line}"
            if d.end_col and d.end_line == d.line:  # GitHub takes endColumn on one line only
                props += f",endColumn={d.end_col - 1}"  # inclusive there: the span's last column
        props += f",title={_escape_github(d.code, property_=True)}"
        message = f"{d.code}: {d.message}" + (f" (hint: {d.hint})" if d.hint else "")
        message += "".join(f"\n{r.file}:{r.line}:{r.col}: {r.label}" for r in d.related)
        lines.append(f"::{level} {props}::{_escape_github(message)}\n")
    return "".join(lines)


RENDERERS = {"text": render_text, "json": render_json, "github": render_github}
