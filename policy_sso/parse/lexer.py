"""The DSL's lexer: one compiled regular expression over the grammar's terminals.

lark's own lexers try terminal by terminal and cost more than the parse itself
here, so :class:`FastLexer` scans with one regex and resolves keywords by a
dict lookup.

It also recovers from the mistakes a person makes while typing, so that one
mistake gives one error and the rest of the file is still checked (rustc's
lexer does the same): an unterminated string is closed at the end of its line,
``30 m`` is read as ``30m``, and a misspelt keyword is read as the keyword it
is nearest to. Each recovery is reported through :attr:`FastLexer.report`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from lark import Token
from lark.exceptions import UnexpectedCharacters
from lark.lexer import Lexer

from policy_sso.diagnostics import near_names

# One match per token: the whitespace and comments before it are part of the match
# (group 1), so a file costs one regex call per token, not two.
TOKEN_RE = re.compile(r"""
    (?:[ \t\r\n\f]++|\#[^\n]*+)*+   # possessive: a comment is never given back to match a token
    (?:
      (?P<STRING>"(?:[^"\\\n]|\\["\\])*")
    | (?P<DURATION>[0-9]+[A-Za-z]*)
    | (?P<WORD>[A-Za-z_][A-Za-z0-9_\-]*)
    | (?P<LBRACE>\{) | (?P<RBRACE>\}) | (?P<LPAR>\() | (?P<RPAR>\)) | (?P<COMMA>,)
    )
""", re.VERBOSE)
SKIP_RE = re.compile(r"(?:[ \t\r\n\f]++|\#[^\n]*+)*+")
# A string the STRING terminal refused: closed but with an unknown escape, or never closed.
_LOOSE_STRING_RE = re.compile(r'"(?:[^"\\\n]|\\.)*("?)')
_ESCAPE_RE = re.compile(r"\\.")
# "30 m", "15 minutes": a number, then blanks, then a word on the same line.
_SPACED_UNIT_RE = re.compile(r"[ \t]+([A-Za-z]+)\b")

# Words for a unit a person may write, and the unit letter the DSL takes.
UNIT_WORDS = {
    "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m",
    "h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h",
    "d": "d", "day": "d", "days": "d",
}

# Words that are keywords; any other word is a NAME (on_unmet values, algs).
KEYWORDS: dict[str, str] = {"any_of": "AMR_MODE", "all_of": "AMR_MODE",
                            "env": "KEY_SOURCE", "file": "KEY_SOURCE"}
# A NAME is expected only after these (and after a ',' in a network list: names of tenant.yaml
# networks); anywhere else a word that is no keyword is a mistake (a misspelt keyword, below).
_NAME_AFTER = frozenset({"ON_UNMET", "ALG", "IN"})
# Keywords whose text is the value the model keeps: a misspelling is read as the keyword itself.
_VALUE_KEYWORDS = frozenset({"AMR_MODE", "KEY_SOURCE"})
# After these only a value comes (a quoted string, or a network name after ','), never a keyword:
# a bare word there is an unquoted value (``policy hr {``), not a misspelt keyword.
_VALUE_AFTER = frozenset({"POLICY", "CLIENTS", "ACR", "CONSENT", "ISSUER", "HAS", "IS", "AMR_MODE",
                          "KEY_SOURCE", "COMMA"})

_TOKEN_SLOTS = ("type", "start_pos", "value", "line", "column", "end_line", "end_column", "end_pos")

# report(line, column, width, message, hint, code=...): one recovered mistake, at a (line, column)
# of the text; the code is E_SYNTAX unless given
Report = Callable[..., None]


# The rest of "1.5h" after its "1": a decimal point, digits, and a unit written right after them.
_FRACTION_RE = re.compile(r"\.[0-9]+[A-Za-z]*")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def explain_fraction(text: str) -> tuple[str, str]:
    """Return the message and hint for a duration with a decimal point (``1.5h``): the same time
    in whole units where there is one (``90m``)."""
    number, unit = re.fullmatch(r"([0-9]+\.[0-9]+)([A-Za-z]*)", text).groups()  # type: ignore[union-attr]
    message = f"{text!r} is not a duration: a duration is a whole number with its unit s, m, h or d"
    letter = UNIT_WORDS.get(unit.lower())
    seconds = float(number) * _UNIT_SECONDS[letter] if letter else 0.0
    if seconds >= 1 and seconds.is_integer():
        whole = int(seconds)
        unit_of = next(u for u in "dhms" if whole % _UNIT_SECONDS[u] == 0)
        return message, f"write {whole // _UNIT_SECONDS[unit_of]}{unit_of}"
    return message, "write a whole number followed by s, m, h or d, e.g. 90m for an hour and a half"


_NUMBER_AND_WORD_RE = re.compile(r"\s*([0-9]+)\s*([A-Za-z]*)\s*")


def explain_duration(text: str) -> tuple[str, str]:
    """Return the message and hint for a duration that does not parse, in the user's words."""
    m = _NUMBER_AND_WORD_RE.fullmatch(text)
    if m and not m.group(2):
        n = m.group(1)
        return (f"duration {text!r} has no unit",
                f"write the unit right after the number: {n}s, {n}m, {n}h or {n}d")
    if m and m.group(2).lower() in UNIT_WORDS:
        written = m.group(1) + UNIT_WORDS[m.group(2).lower()]
        return (f"invalid duration {text!r}: a duration is an integer immediately followed by "
                "its unit s, m, h or d", f"write {written}")
    return f"invalid duration {text!r}", "write an integer followed by s, m, h or d, e.g. 15m"


def _direct_token(kind: str, value: str, start: int, line: int, column: int) -> Token:
    """Return the Token lark's constructor would, without its two wrapper calls (hot: one per token)."""
    token = str.__new__(Token, value)
    token.type, token.start_pos, token.value, token.line, token.column = kind, start, value, line, column
    token.end_line = token.end_column = token.end_pos = None
    return token


# lark's Token keeps exactly these slots today; with any other layout, use its constructor
make_token = _direct_token if getattr(Token, "__slots__", None) == _TOKEN_SLOTS else Token


def _ignore(line: int, column: int, width: int, message: str, hint: str, *, code: str = "E_SYNTAX") -> None:
    """Drop a recovery report (no parse is listening)."""


class FastLexer(Lexer):
    """Tokens for the policy grammar from one regex scan (same terminals as grammar.lark)."""

    __future_interface__ = 2
    # Set by the parser around each parse (under its lock): where recoveries are reported.
    report: Report = staticmethod(_ignore)

    def __init__(self, lexer_conf: object) -> None:
        for terminal in getattr(lexer_conf, "terminals", ()):
            if terminal.pattern.type == "str" and re.fullmatch(r"[a-z_]+", terminal.pattern.value):
                KEYWORDS.setdefault(terminal.pattern.value, terminal.name)

    def lex(self, lexer_state: object, parser_state: object) -> Iterator[Token]:
        """Yield the tokens of the text; recover from unterminated strings, spaced units and typos."""
        source = lexer_state.text  # type: ignore[attr-defined]
        text: str = getattr(source, "text", source)  # a lark TextSlice over the whole text
        match = TOKEN_RE.match
        keywords = KEYWORDS
        make = make_token
        report = FastLexer.report
        pos, line, line_start, end = 0, 1, 0, len(text)
        previous = ""
        while pos < end:
            m = match(text, pos)
            if m is None:  # only whitespace and comments left, or a character no token starts with
                skipped = SKIP_RE.match(text, pos).end()
                line += text.count("\n", pos, skipped)
                line_start = text.rfind("\n", 0, skipped) + 1
                if skipped == end:
                    return
                column = skipped - line_start + 1
                if text[skipped] != '"':
                    raise UnexpectedCharacters(text, skipped, line, column)
                value, length = _read_loose_string(text, skipped, line, column, report)
                yield make("STRING", value, skipped, line, column)
                previous, pos = "STRING", skipped + length
                continue
            kind = m.lastgroup
            start = m.start(kind)
            if start != pos:  # whitespace or comments came first: keep line and column right
                newlines = text.count("\n", pos, start)
                if newlines:
                    line += newlines
                    line_start = text.rfind("\n", pos, start) + 1
            value = m.group(kind)
            pos = m.end()
            if kind == "WORD":
                kind = keywords.get(value, "NAME")
                if kind == "NAME" and previous not in _NAME_AFTER and previous not in _VALUE_AFTER:
                    kind, value = _misspelt_keyword(value, line, start - line_start + 1, report)
            elif kind == "DURATION" and value[-1].isdigit():
                unit = _SPACED_UNIT_RE.match(text, pos)
                fraction = _FRACTION_RE.match(text, pos)
                if fraction:  # "1.5h": read as one (invalid) duration, reported here once
                    value += fraction.group()
                    report(line, start - line_start + 1, len(value), *explain_fraction(value),
                           code="E_DURATION")
                    pos = fraction.end()
                elif unit and unit.group(1).lower() in UNIT_WORDS:
                    written = text[start:unit.end()]
                    value += UNIT_WORDS[unit.group(1).lower()]
                    report(line, start - line_start + 1, len(written),
                           f"{written!r} is not a duration: the unit must follow the number without a space",
                           f"write {value}")
                    pos = unit.end()
            previous = kind
            yield make(kind, value, start, line, start - line_start + 1)


def _read_loose_string(text: str, start: int, line: int, column: int, report: Report) -> tuple[str, int]:
    """Return a refused string as a STRING token's text (quotes included) and the characters it
    takes up, reporting why it was refused.

    A string never closed runs to the end of its line (less a block's brace
    there), so the lines after it still parse: one error, at its opening quote.
    """
    m = _LOOSE_STRING_RE.match(text, start)
    value = m.group()
    if m.group(1):  # closed: an escape other than \" and \\ inside
        at = next((e.start() for e in _ESCAPE_RE.finditer(value) if e.group() not in ('\\"', "\\\\")), 0)
        report(line, column + at, 2, f"unknown escape '{value[at:at + 2]}' in a string",
               "only \\\" and \\\\ are escapes; write a backslash as \\\\")
        return value, len(value)
    body = value.rstrip(" \t\r")
    if body.endswith(("{", "}")) and len(body) > 1:
        body = body[:-1].rstrip(" \t")
    report(line, column, len(body), "unterminated string", "close it with '\"' on the same line")
    return body + '"', len(body)


def _misspelt_keyword(word: str, line: int, column: int, report: Report) -> tuple[str, str]:
    """Return the token type and value to read ``word`` as: its nearest keyword (reported), else NAME."""
    near = near_names(word, KEYWORDS)
    if not near:
        return "NAME", word
    report(line, column, len(word), f"unknown keyword {word!r}",
           "did you mean " + " or ".join(f"'{n}'" for n in near) + "?")
    kind = KEYWORDS[near[0]]
    return kind, near[0] if kind in _VALUE_KEYWORDS else word
