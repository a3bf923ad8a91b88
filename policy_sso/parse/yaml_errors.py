"""YAML syntax errors explained in the user's words.

PyYAML (and libyaml under it) says what its scanner could not do: "mapping
values are not allowed in this context", "did not find expected key". A person
needs what they did: a second ``key: value`` on one line, a missing space after
``:``, a tab, a line indented to no mapping's column, a ``{`` never closed. The
scanner's marks and the source line are enough to tell these apart (Elm's
error catalogue is the model: say what was seen, what was meant, and a hint).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import yaml

from policy_sso.diagnostics import Diagnostic, Related

_BREAKS = re.compile(r"\r\n|[\r\n\x85\u2028\u2029]")
_KEY_RE = re.compile(r"\s*(?:-\s+)?([^\s:#][^:#]*?):(?:\s|$)")
_SQUASHED_RE = re.compile(r"[^\s:]:(?=[^\s:/])")  # "key:value": a colon with no space after it


# at(line, col, message, hint, width=1, related=()): the diagnostic for a place in the file
At = Callable[..., Diagnostic]


def _lines(text: str) -> list[str]:
    return _BREAKS.split(text)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _significant(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def explain_yaml_error(err: yaml.MarkedYAMLError, text: str, file: str) -> Diagnostic:
    """Return one diagnostic for a YAML syntax error: where the mistake is, what it is, how to fix it."""
    problem = err.problem or err.context or "invalid YAML"
    context = err.context or ""
    mark = err.problem_mark or err.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    ctx_line, ctx_col = ((err.context_mark.line + 1, err.context_mark.column + 1)
                         if err.context_mark else (line, col))
    lines = _lines(text)
    source = lines[line - 1] if 0 < line <= len(lines) else ""

    def at(at_line: int, at_col: int, message: str, hint: str, width: int = 1, *,
           related: tuple[Related, ...] = ()) -> Diagnostic:
        return Diagnostic(file, at_line, at_col, "E_YAML", message, hint,
                          end_line=at_line, end_col=at_col + width, related=related)

    if "\t" in source[:max(col, _indent(source) + 1)] or "tab" in problem:
        tab = source.find("\t")
        return at(line, tab + 1 if tab >= 0 else col,
                  "a tab in the indentation: YAML indents with spaces only", "replace the tab with spaces")
    if "quoted scalar" in context:
        opening = lines[ctx_line - 1][ctx_col - 1:ctx_col] if ctx_line <= len(lines) else '"'
        hint = f"close it with {opening!r} where the string ends" if opening in "'\"" else "close the quotes"
        return at(ctx_line, ctx_col, "unterminated quoted string", hint)
    if "flow mapping" in context or "flow sequence" in context:
        brace, closer = ("{", "}") if "mapping" in context else ("[", "]")
        note = Related(file, line, col, f"expected ',' or '{closer}' here", col + 1)
        return at(ctx_line, ctx_col, f"this '{brace}' is never closed",
                  f"close it with '{closer}' after its last entry, or write the entries on indented lines "
                  "without brackets", related=(note,))
    if problem.startswith("mapping values are not allowed"):
        return _colon_in_value(at, lines, line, col, source)
    if "could not find expected ':'" in problem:
        return _key_without_colon(at, lines, ctx_line)
    if "did not find expected key" in problem or "did not find expected '-'" in problem \
            or "expected <block end>" in problem:
        return _bad_indentation(at, lines, line)
    if "undefined alias" in problem:
        name = re.match(r"\*?[^\s,\]}]*", source[col - 1:]).group()
        return at(line, col, f"the alias {name or '*'} names no anchor",
                  "a value starting with '*' is an alias: define the &anchor before it, or quote the value",
                  max(1, len(name)))
    if "expected node content" in problem:
        return at(line, col, "a value is missing here",
                  "write a value, or quote text that starts with a YAML indicator (- : [ { & * ! | > %)")
    if "cannot start any token" in problem:
        char = source[col - 1:col] or "?"
        return at(line, col, f"a plain value cannot start with {char!r}", "quote the value")
    return at(line, col, problem, "")


def _colon_in_value(at: At, lines: list[str], line: int, col: int, source: str) -> Diagnostic:
    """``key: inner: value`` on one line, or a key indented deeper than its siblings."""
    before = source[:col - 1]
    key = _KEY_RE.match(source)
    if key and key.end() <= col - 1 and before[key.end():].strip():
        inner = before[key.end():].strip()
        outer = key.group(1).strip()
        return at(line, key.end() + 1 + (len(before[key.end():]) - len(before[key.end():].lstrip())),
                  f"a second 'key: value' on one line: the value of '{outer}' cannot itself be "
                  f"'{inner}: …'",
                  f"put '{inner}:' on its own line indented under '{outer}:', write {outer}: "
                  f"{{{inner}: …}}, or quote the value", len(inner))
    return _bad_indentation(at, lines, line)


def _key_without_colon(at: At, lines: list[str], line: int) -> Diagnostic:
    """A line inside a mapping that is no ``key: value``: a missing space after ':' or a missing ':'."""
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    squashed = _SQUASHED_RE.search(source)
    start = _indent(source) + 1
    if squashed:
        colon = squashed.start() + 2
        key, value = source[start - 1:colon - 1], source[colon:].strip()
        return at(line, colon, f"missing space after ':' in '{source.strip()}'",
                  f"write '{key.strip()}: {value}': YAML needs a space after the ':' of a key")
    word = source.strip()
    return at(line, start, f"'{word}' is neither 'key: value' nor a list item",
              f"write '{word}:' if it is a key, or '- {word}' if it is an item of a list", max(1, len(word)))


def _bad_indentation(at: At, lines: list[str], line: int) -> Diagnostic:
    """A line indented to a column where no mapping or list above it starts."""
    # The problem mark may sit on the line after the culprit; the culprit is the
    # first significant line (from the mark back) whose indentation breaks the chain.
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    column = _indent(source) + 1
    parents: list[tuple[int, int, str]] = []  # (column, line, key) of the lines above, outermost last
    limit = column
    for number in range(line - 1, 0, -1):
        above = lines[number - 1]
        if not _significant(above):
            continue
        indent = _indent(above) + 1
        if indent < limit or not parents:
            key = _KEY_RE.match(above)
            parents.append((indent, number, key.group(1).strip() if key else above.strip()))
            limit = min(limit, indent)
        if indent == 1:
            break
    word = source.strip().split(":")[0] if source.strip() else "this line"
    choices = " or ".join(f"column {c} like '{k}' (line {n})" for c, n, k in parents[:2])
    return at(line, column,
              f"'{word}' is indented to column {column}, where no mapping or list above it starts",
              f"line it up with the keys it belongs with: {choices}" if choices
              else "indent keys of one mapping by the same number of spaces", max(1, len(word)))
