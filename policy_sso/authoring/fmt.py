"""Canonical layout of DSL policy files (``policy-sso fmt``), like ``terraform fmt``.

Formatting works on tokens, never on the model, so every comment survives:
the text is scanned into the grammar's tokens plus comments and line breaks,
and laid out again.

The canonical layout:

- two spaces of indentation a block level, one statement a line, ``{`` on
  the statement's line, ``}`` alone on its line (``{}`` for an empty block);
- one space between tokens, none before ``,`` and ``)`` or after ``(``;
- one blank line between top-level ``policy`` blocks; inside a block, one
  blank line is kept where the source had one or more, none after ``{`` or
  before ``}``;
- a comment on its own line stays on its own line, indented with the block;
  a comment after a statement stays after it, two spaces from the code; a
  comment written inside a statement (which would swallow the rest of the
  line) moves to its own line just above the statement;
- line ends are LF, trailing whitespace is dropped, the file ends with one
  line break.

A file with a syntax error is not formatted: :func:`format_source` returns
its diagnostics instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from policy_sso.diagnostics import Diagnostic
from policy_sso.parse.dsl import parse_dsl

INDENT = "  "

# The same terminals as grammar.lark / dsl.FastLexer, plus what they skip.
_SCAN_RE = re.compile(r"""
    (?P<NL>\n)
  | (?P<WS>[ \t\r\f\v]+)
  | (?P<COMMENT>\#[^\n]*)
  | (?P<STRING>"(?:[^"\\\n]|\\["\\])*")
  | (?P<WORD>[0-9]+[A-Za-z]*|[A-Za-z_][A-Za-z0-9_\-]*)
  | (?P<PUNCT>[{}(),])
""", re.VERBOSE)

# Keywords that start a statement, by the block they appear in.
_STATEMENTS = {
    "top": {"policy"},
    "policy": {"clients", "session", "require", "on_unmet", "trust", "when"},
    "session": {"inactivity", "max_auth_age"},
    "trust": {"issuer", "key", "alg", "max_lifetime", "amr"},
    "when": {"require"},
}
# The block a statement opens, by its first keyword.
_BLOCK_OF = {"policy": "policy", "session": "session", "trust": "trust", "when": "when"}


@dataclass
class _Item:
    """A token or a comment, with how many line breaks precede it."""

    kind: str  # "token" or "comment"
    text: str
    breaks: int  # line breaks since the previous item (or the start of the file)


def _scan(text: str) -> list[_Item]:
    items: list[_Item] = []
    breaks = 0
    pos = 0
    while pos < len(text):
        m = _SCAN_RE.match(text, pos)
        if m is None:  # parse_dsl has already refused such a file
            raise ValueError(f"unexpected character at offset {pos}")
        kind = m.lastgroup
        if kind == "NL":
            breaks += 1
        elif kind == "COMMENT":
            items.append(_Item("comment", m.group().rstrip(), breaks))
            breaks = 0
        elif kind != "WS":
            items.append(_Item("token", m.group(), breaks))
            breaks = 0
        pos = m.end()
    return items


def _join(tokens: list[str]) -> str:
    out = ""
    for i, token in enumerate(tokens):
        if i and token not in (",", ")") and tokens[i - 1] != "(":
            out += " "
        out += token
    return out


class _Printer:
    """Lays out a scanned file block by block."""

    def __init__(self, items: list[_Item]) -> None:
        self.items = items
        self.pos = 0
        self.lines: list[str] = []

    def peek(self) -> _Item | None:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def emit(self, depth: int, text: str) -> None:
        self.lines.append(f"{INDENT * depth}{text}" if text else "")

    def blank(self) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    def block(self, context: str, depth: int) -> None:
        """Print the statements and comments of one block, up to (not including) its ``}``."""
        first = True
        after_block = False  # the previous top-level item was a policy block
        while (item := self.peek()) is not None and not (item.kind == "token" and item.text == "}"):
            if not first and (item.breaks >= 2 or (context == "top" and after_block)):
                self.blank()
            if item.kind == "comment":
                self.emit(depth, item.text)
                self.pos += 1
                after_block = False
            else:
                after_block = self.statement(context, depth)
            first = False

    def statement(self, context: str, depth: int) -> bool:
        """Print one statement (with its block, if it opens one); return whether it had a block."""
        starts = _STATEMENTS[context]
        keyword = self.items[self.pos].text
        tokens: list[str] = []
        hoisted: list[str] = []  # comments written between the statement's tokens
        pending: list[_Item] = []
        while (item := self.peek()) is not None:
            if item.kind == "comment":
                pending.append(item)
                self.pos += 1
                continue
            if item.text == "}" or (tokens and keyword != "when" and item.text in starts):
                break
            if pending and item.text != "{":
                hoisted += [c.text for c in pending]
                pending = []
            tokens.append(item.text)
            self.pos += 1
            if item.text == "{":
                break
        opens = bool(tokens) and tokens[-1] == "{"
        for comment in hoisted + [c.text for c in pending if opens]:
            self.emit(depth, comment)
        if opens:
            return self._block_statement(tokens, keyword, depth)
        self._line(depth, _join(tokens), pending)
        return False

    def _block_statement(self, tokens: list[str], keyword: str, depth: int) -> bool:
        header = _join(tokens[:-1])
        trailing = self._trailing()
        inner_start = len(self.lines)
        self.emit(depth, header + " {" + (f"  {trailing}" if trailing else ""))
        self.block(_BLOCK_OF.get(keyword, "policy"), depth + 1)
        closing = self.peek()
        if closing is not None:  # the closing brace
            self.pos += 1
        close_comment = self._trailing()
        if len(self.lines) == inner_start + 1 and not trailing:
            self.lines[-1] += "}" + (f"  {close_comment}" if close_comment else "")
        else:
            self.emit(depth, "}" + (f"  {close_comment}" if close_comment else ""))
        return True

    def _trailing(self) -> str:
        """Consume and return a comment on the same line as what was just printed."""
        item = self.peek()
        if item is not None and item.kind == "comment" and item.breaks == 0:
            self.pos += 1
            return item.text
        return ""

    def _line(self, depth: int, code: str, after: list[_Item]) -> None:
        """Print a statement line; the first comment after it on the same line trails it."""
        trailing = after[0].text if after and after[0].breaks == 0 else ""
        self.emit(depth, code + (f"  {trailing}" if trailing else ""))
        rest = after[1:] if trailing else after
        for comment in rest:  # comments on the following lines, before the next statement
            if comment.breaks >= 2:
                self.blank()
            self.emit(depth, comment.text)


def format_text(text: str) -> str:
    """Return ``text`` (a syntactically valid DSL source) in the canonical layout."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    printer = _Printer(_scan(text))
    printer.block("top", 0)
    lines = [line.rstrip() for line in printer.lines]
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""


def format_source(text: str, file: str = "<string>") -> tuple[str | None, list[Diagnostic]]:
    """Return the formatted text, or None and the syntax errors that prevent formatting."""
    normalized = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    _, diagnostics = parse_dsl(normalized, file)
    errors = [d for d in diagnostics if d.code == "E_SYNTAX"]
    if errors:
        return None, errors
    return format_text(normalized), []
