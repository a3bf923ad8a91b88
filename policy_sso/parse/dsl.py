"""DSL -> model: a lark LALR parser whose callbacks build the policy model directly.

The grammar (``grammar.lark``) is loaded once per process. Following lark's
``examples/json_parser.py``, a :class:`~lark.Transformer` is passed to the LALR
parser so no parse tree is built; spans come from the keyword tokens, which
carry line and column, instead of ``propagate_positions``.

Tokens come from :class:`FastLexer`, one compiled regular expression over
the grammar's terminals with keywords resolved by a dict lookup: lark's own
lexers try terminal by terminal and cost more than the parse itself here.

A file is parsed in one call. Syntax errors cannot be resumed inside a block
without guessing, so when a file has one it is split into its top-level
``policy`` blocks and each block is parsed alone: every block's first syntax
error and every semantic error of the file are reported at once.
"""

from __future__ import annotations

import re
import threading
from copy import copy
from dataclasses import dataclass, field
from importlib.resources import files

from lark import Lark, Token, Transformer
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

from policy_sso.diagnostics import Diagnostic, Related, did_you_mean, near_names
from policy_sso.model import (
    NETWORK_SEPARATOR,
    NO_SPAN,
    ON_UNMET_VALUES,
    AcrRequirement,
    AmrRequirement,
    And,
    Condition,
    ConsentRequirement,
    KeyRef,
    MfaRequirement,
    Not,
    Or,
    Policy,
    SessionRules,
    Span,
    Test,
    TrustedIssuer,
    When,
    canonical_requirements,
    parse_duration,
)
from policy_sso.networks import is_network_name
from policy_sso.parse.lexer import KEYWORDS, TOKEN_RE, FastLexer, explain_duration

# The semantic rules and the compiler walk conditions recursively; no policy needs more.
MAX_CONDITION_DEPTH = 32

# Terminals that are no keyword, as a human calls them in "expected ..." lists and hints.
_FRIENDLY = {
    "STRING": "a quoted string", "DURATION": "a duration like 15m", "NAME": "a name",
    "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "COMMA": "','",
    "$END": "end of file",
}
_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


# A trust block's max_lifetime that is written but not a valid duration (reported where it is
# written): not 0, which would also report the block as having no max_lifetime.
INVALID_LIFETIME = -1


def _lifetime(fields: dict) -> int:
    """Return a trust block's max_lifetime: 0 when not written, INVALID_LIFETIME when invalid."""
    if "max_lifetime" not in fields:
        return 0
    return fields["max_lifetime"] or INVALID_LIFETIME


def _unquote(token: Token) -> str:
    return token[1:-1].replace('\\"', '"').replace("\\\\", "\\")


@dataclass
class _Context:
    """Per-parse state: the file name, where a split block starts, and diagnostics."""

    file: str = "<string>"
    line_offset: int = 0
    col_offset: int = 0  # a block may start mid-line: its first line's columns are shifted
    diagnostics: list[Diagnostic] = field(default_factory=list)
    depths: dict[int, int] = field(default_factory=dict)  # id(condition) -> nesting depth
    recovered_lines: list[int] = field(default_factory=list)  # where the lexer recovered from a mistake
    text: str = ""  # the whole file, when this context parses one block of it
    start: int = 0  # where the block starts in ``text``

    def position(self, line: int, col: int) -> tuple[int, int]:
        """Return the file position of a (line, column) inside the block."""
        return line + self.line_offset, col + (self.col_offset if line == 1 else 0)

    def offset_position(self, chunk: str, offset: int) -> tuple[int, int]:
        """Return the file position of a character offset into the block's text ``chunk``."""
        return self.position(chunk.count("\n", 0, offset) + 1, offset - chunk.rfind("\n", 0, offset))

    def span(self, token: Token) -> Span:
        """Return the token's span; tokens never cross a line, so its length closes it."""
        line, col = token.line or 1, token.column or 1
        if line == 1:
            col += self.col_offset
        return Span(self.file, line + self.line_offset, col, col + len(token))

    def span_to(self, first: Token, last: Token) -> Span:
        """Return a span from ``first`` to the end of ``last`` when on one line (else ``first``'s)."""
        line, col = first.line or 1, first.column or 1
        if line == 1:
            col += self.col_offset
        end = col + (last.column - first.column + len(last) if last.line == line else len(first))
        return Span(self.file, line + self.line_offset, col, end)

    def lex_error(self, line: int, column: int, width: int, message: str, hint: str, *,
                  code: str = "E_SYNTAX") -> None:
        """Record a mistake the lexer recovered from, at a (line, column) of the block."""
        line, col = self.position(line, column)
        self.recovered_lines.append(line)
        self.diagnostics.append(Diagnostic(self.file, line, col, code, message, hint,
                                           end_line=line, end_col=col + width))

    def twice(self, again: Span, first: Span, what: str, where: str) -> None:
        """Record that ``what`` is set a second time (at ``again``), pointing at the first setting."""
        self.diagnostics.append(Diagnostic(
            again.file, again.line, again.col, "E_DUPLICATE", f"{what} is set twice in {where}",
            "keep one of the two", end_line=again.line if again.end_col else 0, end_col=again.end_col,
            related=(Related(first.file, first.line, first.col, "first set here", first.end_col),)))

    def error(self, token: Token, code: str, message: str, hint: str = "") -> None:
        span = self.span(token)
        self.diagnostics.append(Diagnostic(span.file, span.line, span.col, code, message, hint,
                                           end_line=span.line, end_col=span.end_col))


class _Builder(Transformer):
    """LALR callbacks: each grammar rule returns a model object or a tagged statement."""

    def __init__(self) -> None:
        super().__init__(visit_tokens=False)
        self.ctx = _Context()

    # --- values -------------------------------------------------------------
    def _duration(self, token: Token) -> int | None:
        if "." in token:  # "1.5h": the lexer has reported it
            return None
        try:
            seconds = parse_duration(str(token))
        except ValueError:
            self.ctx.error(token, "E_DURATION", *explain_duration(str(token)))
            return None
        if seconds == 0:
            self.ctx.error(token, "E_DURATION", "a duration must be greater than zero")
            return None
        return seconds

    @staticmethod
    def _strings(children: list) -> tuple[str, ...]:
        return tuple(_unquote(c) for c in children if isinstance(c, Token) and c.type == "STRING")

    def _string_spans(self, children: list) -> tuple[Span, ...]:
        """Return the span of each string among ``children`` (hot: one per listed value)."""
        ctx = self.ctx
        file, lines, shift = ctx.file, ctx.line_offset, ctx.col_offset
        return tuple(Span(file, c.line + lines, c.column + shift * (c.line == 1),
                          c.column + shift * (c.line == 1) + len(c))
                     for c in children if c.type == "STRING")

    # --- policy -------------------------------------------------------------
    def start(self, children: list) -> list[Policy]:
        return children

    def policy(self, children: list) -> Policy:
        keyword, name, *stmts = children
        span = self.ctx.span_to(keyword, name)
        clients: list[str] = []
        clients_span: list[Span] = []
        requirements: list = []
        whens: list[When] = []
        trust: list[TrustedIssuer] = []
        inactivity = max_auth_age = None
        inactivity_span = max_auth_age_span = span
        on_unmet, on_unmet_span = "login_required", span
        for tag, value, where in stmts:
            if tag == "clients":
                clients.extend(value)
                clients_span.extend(where)
            elif tag == "require":
                requirements.append(value)
            elif tag == "when":
                whens.append(value)
            elif tag == "trust":
                trust.append(value)
            elif tag == "on_unmet":
                if on_unmet_span is not span:
                    self.ctx.twice(where, on_unmet_span, "on_unmet", f"policy {_unquote(name)!r}")
                on_unmet, on_unmet_span = value, where
            elif tag == "session":
                for key, seconds, at in value:
                    if key == "inactivity":
                        if inactivity_span is not span:
                            self.ctx.twice(at, inactivity_span, key, f"policy {_unquote(name)!r}")
                        inactivity, inactivity_span = seconds, at
                    else:
                        if max_auth_age_span is not span:
                            self.ctx.twice(at, max_auth_age_span, key, f"policy {_unquote(name)!r}")
                        max_auth_age, max_auth_age_span = seconds, at
        return Policy(
            name=_unquote(name), clients=tuple(clients),
            session=SessionRules(inactivity, max_auth_age, inactivity_span, max_auth_age_span),
            requirements=canonical_requirements(requirements), on_unmet=on_unmet,
            trust=tuple(trust), whens=tuple(whens), span=span,
            clients_span=tuple(clients_span), on_unmet_span=on_unmet_span,
        )

    def clients(self, children: list) -> tuple:
        strings = [c for c in children[1:] if c.type == "STRING"]
        return ("clients", tuple(_unquote(s) for s in strings),
                tuple(self.ctx.span(s) for s in strings))

    def session_block(self, children: list) -> tuple:
        return ("session", children[1:], None)

    def inactivity(self, children: list) -> tuple:
        return ("inactivity", self._duration(children[1]), self.ctx.span_to(children[0], children[1]))

    def max_auth_age(self, children: list) -> tuple:
        return ("max_auth_age", self._duration(children[1]), self.ctx.span_to(children[0], children[1]))

    def on_unmet(self, children: list) -> tuple:
        keyword, value = children
        if str(value) not in ON_UNMET_VALUES:
            self.ctx.error(value, "E_ON_UNMET", f"unknown on_unmet value {str(value)!r}",
                           did_you_mean(str(value), ON_UNMET_VALUES)
                           or "use one of " + ", ".join(ON_UNMET_VALUES))
        return ("on_unmet", str(value), self.ctx.span_to(keyword, value))

    # --- requirements -------------------------------------------------------
    def require(self, children: list) -> tuple:
        requirement = children[1]
        return ("require", requirement, requirement.span)

    def req_amr(self, children: list) -> AmrRequirement:
        return AmrRequirement(str(children[1]), self._strings(children[2:]),
                              self.ctx.span_to(children[0], children[-1]), self._string_spans(children[2:]))

    def req_mfa(self, children: list) -> MfaRequirement:
        within = self._duration(children[2]) if len(children) > 2 and children[2] else None
        return MfaRequirement(within, self.ctx.span_to(children[0], children[-1]))

    def req_acr(self, children: list) -> AcrRequirement:
        return AcrRequirement(_unquote(children[1]), self.ctx.span_to(children[0], children[1]),
                              self.ctx.span(children[1]))

    def req_consent(self, children: list) -> ConsentRequirement:
        lifetime, lifetime_span = None, NO_SPAN
        if children[-2].type == "FOR":  # ``for D``: how long a grant counts
            lifetime = self._duration(children[-1])
            lifetime_span = self.ctx.span_to(children[-2], children[-1])
        return ConsentRequirement(self._strings(children[1:]), self.ctx.span_to(children[0], children[-1]),
                                  self._string_spans(children[1:]), lifetime, lifetime_span)

    # --- trust --------------------------------------------------------------
    def trust_block(self, children: list) -> tuple:
        keyword = children[0]
        fields: dict = {}
        spans: dict[str, Span] = {}
        for name, value, _token, where in children[2:]:
            if name in fields:
                self.ctx.twice(where, spans[name], name, "this trust block")
            fields[name] = value
            spans[name] = where
        span = self.ctx.span_to(keyword, children[1])
        amr, amr_spans = fields.get("amr", ((), ()))  # the methods, and where each is written
        issuer = TrustedIssuer(
            issuer=fields.get("issuer", ""), key=fields.get("key"), alg=fields.get("alg", ""),
            max_lifetime=_lifetime(fields), amr=amr, span=span,
            issuer_span=spans.get("issuer", span), alg_span=spans.get("alg", span),
            amr_span=spans.get("amr", span), amr_spans=amr_spans,
        )
        return ("trust", issuer, span)

    # Each trust field: (name, value, keyword token, span of what an error about it underlines).
    def t_issuer(self, children: list) -> tuple:
        return ("issuer", _unquote(children[1]), children[0], self.ctx.span_to(children[0], children[1]))

    def t_key(self, children: list) -> tuple:
        keyword, source, name = children
        span = self.ctx.span_to(keyword, name)
        return ("key", KeyRef(str(source), _unquote(name), span), keyword, span)

    def t_alg(self, children: list) -> tuple:
        return ("alg", str(children[1]), children[0], self.ctx.span_to(children[0], children[1]))

    def t_max_lifetime(self, children: list) -> tuple:
        return ("max_lifetime", self._duration(children[1]), children[0],
                self.ctx.span_to(children[0], children[1]))

    def t_amr(self, children: list) -> tuple:
        return ("amr", (self._strings(children[1:]), self._string_spans(children[1:])), children[0],
                self.ctx.span_to(children[0], children[-1]))

    # --- when ---------------------------------------------------------------
    def when_block(self, children: list) -> tuple:
        keyword, condition, *requires = children
        span = self.ctx.span(keyword)
        reqs = canonical_requirements([r[1] for r in requires])
        return ("when", When(condition, reqs, span), span)

    def _nested(self, condition: Condition, operands: tuple[Condition, ...]) -> Condition:
        """Return ``condition``, or an operand once nesting passes MAX_CONDITION_DEPTH (an error)."""
        depths = self.ctx.depths
        depth = 1 + max(depths.get(id(o), 0) for o in operands)
        if depth <= MAX_CONDITION_DEPTH:
            depths[id(condition)] = depth
            return condition
        if depth == MAX_CONDITION_DEPTH + 1:
            span = condition.span
            self.ctx.diagnostics.append(Diagnostic(
                span.file, span.line, span.col, "E_NESTING",
                f"condition nested deeper than {MAX_CONDITION_DEPTH} levels"))
        depths[id(operands[0])] = depth  # report once; stop the model growing deeper
        return operands[0]

    def or_cond(self, children: list) -> Condition:
        operands = tuple(c for c in children if not isinstance(c, Token))
        return self._nested(Or(operands, operands[0].span), operands)

    def and_cond(self, children: list) -> Condition:
        operands = tuple(c for c in children if not isinstance(c, Token))
        return self._nested(And(operands, operands[0].span), operands)

    def cond_not(self, children: list) -> Condition:
        return self._nested(Not(children[1], self.ctx.span(children[0])), (children[1],))

    def _test(self, kind: str, children: list) -> Test:
        return Test(kind, _unquote(children[-1]), self.ctx.span_to(children[0], children[-1]),  # type: ignore[arg-type]
                    self.ctx.span(children[-1]))

    def test_scope(self, children: list) -> Test:
        return self._test("scope", children)

    def test_acr_values(self, children: list) -> Test:
        return self._test("acr_values", children)

    def test_prompt(self, children: list) -> Test:
        return self._test("prompt", children)

    def test_client(self, children: list) -> Test:
        return self._test("client", children)

    def test_session_amr(self, children: list) -> Test:
        return self._test("session_amr", children)

    def test_network(self, children: list) -> Test:
        """``network in "10.0.0.0/8", office``: CIDRs quoted, tenant.yaml network names bare."""
        items = [c for c in children[2:] if c.type in ("STRING", "NAME")]
        entries = []
        for item in items:
            entry = _unquote(item) if item.type == "STRING" else str(item)
            if item.type == "STRING" and is_network_name(entry):
                self.ctx.error(item, "E_NETWORK", f"{item} is quoted, so it would be a CIDR, "
                               "but it is written like a network name",
                               f"a name from tenant.yaml networks: is written bare: network in {entry}")
            entries.append(entry)
        return Test("network", NETWORK_SEPARATOR.join(entries), self.ctx.span_to(children[0], items[-1]),
                    self.ctx.span_to(items[0], items[-1]), tuple(self.ctx.span(i) for i in items))


_builder = _Builder()
_parser = Lark(
    files("policy_sso.parse").joinpath("grammar.lark").read_text(),
    parser="lalr", lexer=FastLexer, transformer=_builder, maybe_placeholders=False,
)
_lock = threading.Lock()  # the callbacks and the lexer share one per-parse context


def _keyword_words(pattern: object) -> tuple[str, ...]:
    """Return the words a keyword terminal matches ("any_of", "all_of"), or () for another terminal."""
    value = getattr(pattern, "value", "")
    if getattr(pattern, "type", "") == "str":
        return (value,) if _WORD_RE.fullmatch(value) else ()
    alternatives = re.fullmatch(r"\(\?:([a-z_|]+)\)", value)
    return tuple(sorted(alternatives[1].split("|"))) if alternatives else ()


# Each keyword terminal's words: AMR_MODE is any_of or all_of, never "amr_mode" to a user.
_WORDS = {t.name: words for t in _parser.terminals if (words := _keyword_words(t.pattern))}


def _shown(terminal: str) -> str:
    """Return how a terminal is shown to a user: its keywords, or what it stands for."""
    if terminal in _WORDS:
        return " or ".join(f"'{w}'" for w in _WORDS[terminal])
    return _FRIENDLY.get(terminal, "something else")


# Keywords that start a statement of a policy block, and what opens a block.
_STATEMENT_STARTS = frozenset({"CLIENTS", "SESSION", "REQUIRE", "ON_UNMET", "TRUST", "WHEN", "POLICY"})
_BLOCK_KEYWORDS = {"POLICY": "policy", "SESSION": "session", "TRUST": "trust", "WHEN": "when"}


def _indent(text: str, pos: int) -> int | None:
    """Return the indentation of the line holding ``pos`` when ``pos`` starts it, else None."""
    line_start = text.rfind("\n", 0, pos) + 1
    before = text[line_start:pos]
    return len(before) if not before.strip() else None


def unclosed_block(text: str, upto: int) -> tuple[int, str] | None:
    """Return the offset of the ``{`` left open before ``upto`` and its block's keyword, or None.

    Of the blocks still open, the innermost is blamed, unless a ``}`` earlier
    closed a block at another's indentation (the ``}`` of the block around it):
    then that block is the one missing its ``}`` (rustc's "unclosed delimiter").
    """
    stack, blamed = _open_blocks(text, upto)
    if not stack:
        return None
    return blamed or (stack[-1][0], stack[-1][1])


def _open_blocks(text: str, upto: int) -> tuple[list[tuple[int, str, int | None]], tuple[int, str] | None]:
    """Return the blocks open at ``upto`` (offset of '{', keyword, indentation) and a mis-indented one."""
    stack: list[tuple[int, str, int | None]] = []  # (offset of '{', keyword, indentation of its line)
    opener = ""
    pos = 0
    blamed: tuple[int, str] | None = None
    while pos < upto:
        m = TOKEN_RE.match(text, pos)
        if m is None or m.start(m.lastgroup) >= upto:
            break
        kind, start, pos = m.lastgroup, m.start(m.lastgroup), m.end()
        word = KEYWORDS.get(m.group(kind), "") if kind == "WORD" else ""
        if word in _BLOCK_KEYWORDS and not opener:
            opener = _BLOCK_KEYWORDS[word]
            opener_indent = _indent(text, start)
        elif kind == "LBRACE":
            stack.append((start, opener or "block", opener_indent if opener else None))
            opener = ""
        elif kind == "RBRACE" and stack:
            at, keyword, indent = stack.pop()
            closing = _indent(text, start)
            if (blamed is None and closing is not None and indent is not None and closing != indent
                    and any(outer == closing for _, _, outer in stack)):
                blamed = (at, keyword)
            opener = ""
    return stack, blamed


# Characters people bring from other languages, and what the DSL writes instead.
_CHARACTER_HINTS = {
    ":": "no ':' after a keyword in a policy file: write 'inactivity 15m' (key: value is the YAML form)",
    "=": "no '=' in a policy file: write the keyword, then its value ('inactivity 15m')",
    ";": "statements end with the line: no ';'",
    "'": "strings are double-quoted: \"like this\"",
    "[": "lists are written without brackets: clients \"a\", \"b\"",
}


def _token_width(token: object) -> int:
    return len(token) if isinstance(token, Token) and token.type != "$END" and token else 1


def _syntax_diagnostic(ctx: _Context, err: LarkError, chunk: str) -> Diagnostic:
    """Return the one diagnostic a syntax error deserves, in the user's words.

    No grammar rule or terminal name reaches the user: what may come is said
    with :func:`_shown` (the keywords themselves, "a quoted string", …).
    """
    line, col = ctx.position(max(getattr(err, "line", 1) or 1, 1), max(getattr(err, "column", 1) or 1, 1))
    token = getattr(err, "token", None)
    width = _token_width(token)
    if isinstance(err, UnexpectedCharacters):
        char = err.char if err.char != "\n" else "end of line"
        message = f"unexpected character {char!r}"
        hint = _CHARACTER_HINTS.get(char, "strings are double-quoted; '#' starts a comment")
    elif isinstance(err, UnexpectedToken | UnexpectedEOF):
        expected = _accepted(err)
        at_end = token is None or token.type == "$END"
        found = "end of file" if at_end else repr(str(token))
        names = sorted({_shown(t) for t in expected})
        message = f"unexpected {found}"
        hint = "expected " + ", ".join(names[:8]) + (" …" if len(names) > 8 else "")
        missing = _missing_piece(ctx, chunk, token, expected, at_end)
        if missing is not None:
            return missing
        if "RBRACE" in expected and (at_end or token.type in _STATEMENT_STARTS):
            if at_end or unclosed_block(chunk, len(chunk)) is not None:
                unclosed = _unclosed(ctx, chunk, len(chunk) if at_end else token.start_pos, token, at_end)
                if unclosed is not None:
                    return unclosed
            elif (inside := unclosed_block(chunk, token.start_pos)) is not None:
                message = f"'{token}' cannot be used inside a '{inside[1]}' block"
        if not at_end:
            assert token is not None
            specific = _misplaced_token(ctx, chunk, token, expected)
            if specific is not None:
                return specific
            if token.type not in expected and _WORD_RE.fullmatch(token):
                near = near_names(str(token), [w for t in expected for w in _WORDS.get(t, ())])
                if near:
                    hint = "did you mean " + " or ".join(f"'{n}'" for n in near) + "?"
    else:  # pragma: no cover - lark raises only the above for LALR input
        message, hint = "syntax error", ""
    return Diagnostic(ctx.file, line, col, "E_SYNTAX", message, hint, end_line=line, end_col=col + width)


def _accepted(err: UnexpectedToken | UnexpectedEOF) -> set[str]:
    """Return the terminals that could really come where the error is.

    An LALR state shared by several rules (``"a", "b"`` of clients, consent,
    amr …) lists what follows any of them; feeding each candidate to a copy of
    the parser, without callbacks, keeps only those this input accepts.
    """
    expected = set(err.expected or ())
    parser = getattr(err, "interactive_parser", None)
    if parser is None or len(expected) < 2:
        return expected
    conf = copy(parser.parser_state.parse_conf)
    conf.callbacks = {}  # the model builders record diagnostics: never call them here
    accepted = set()
    for terminal in expected:
        if terminal == "$END":
            accepted.add(terminal)
            continue
        cursor = parser.copy(deepcopy_values=False)
        cursor.parser_state.parse_conf = conf
        try:
            cursor.feed_token(Token(terminal, ""))
        except (UnexpectedToken, AssertionError):
            continue
        accepted.add(terminal)
    return accepted or expected


def _line_rest(chunk: str, start: int) -> str:
    """Return the text from ``start`` to the end of its line, less a comment and trailing blanks."""
    m = _CODE_RE.match(chunk, start)
    return m.group().rstrip() if m else ""


_CODE_RE = re.compile(r'(?:"(?:[^"\\\n]|\\.)*"?|[^#"\n])*')
_BARE_VALUE_RE = re.compile(r'[^\s{}(),#"]+')
# Statements that live in a block of their own, and how to write that block.
_HOMES = {"INACTIVITY": "session { … }", "MAX_AUTH_AGE": "session { … }",
          "ISSUER": "trust login_hint_token { … }", "KEY": "trust login_hint_token { … }",
          "ALG": "trust login_hint_token { … }", "MAX_LIFETIME": "trust login_hint_token { … }"}


def _misplaced_token(ctx: _Context, chunk: str, token: Token, expected: set[str]) -> Diagnostic | None:
    """Return the error for a token that says what was meant, or None.

    A word glued to the string before it (mismatched quotes), ``amr`` without
    any_of/all_of, ``key`` without env/file, a statement outside its block,
    and a value left unquoted.
    """
    line, col = ctx.position(token.line or 1, token.column or 1)

    def at(message: str, hint: str, width: int = len(token)) -> Diagnostic:
        return Diagnostic(ctx.file, line, col, "E_SYNTAX", message, hint, end_line=line, end_col=col + width)

    word = bool(re.match(r"[A-Za-z0-9_]", token))
    previous = _previous_token(chunk, token.start_pos)
    glued = previous is not None and previous[0] + len(previous[1]) == token.start_pos
    if word and glued and previous[1].startswith('"'):  # type: ignore[index]
        offset, string = previous
        s_line, s_col = ctx.offset_position(chunk, offset)
        head = string[1:-1].rstrip(" ,")
        fix = f'"{head}", "{token}"' if head else f'"{token}"'
        return Diagnostic(ctx.file, s_line, s_col, "E_SYNTAX",
                          f"mismatched quotes: the string {string} ends where {token} should start",
                          f"a '\"' is probably missing: close each string, e.g. {fix}",
                          end_line=s_line, end_col=s_col + len(string))
    if expected == {"AMR_MODE"}:
        methods = _line_rest(chunk, token.start_pos) if token.type == "STRING" else '"pwd", "otp"'
        return at("'amr' needs any_of or all_of before its methods",
                  f"write require amr any_of {methods} (any one of them) "
                  f"or require amr all_of {methods} (every one of them)")
    if expected == {"KEY_SOURCE"}:
        return at("'key' needs env or file before its name",
                  'write key env "VARIABLE" (an environment variable) or key file "path" (a file)')
    if token.type in _HOMES and token.type not in expected:
        home = _HOMES[token.type]
        statement = _line_rest(chunk, token.start_pos)
        block = home.replace("…", statement)
        return at(f"'{token}' belongs inside a {home.split(' {')[0]} block",
                  f"write {block}" if home.startswith("session") else f"move it into {home}",
                  len(statement) if statement else len(token))
    if "STRING" in expected and word and token.type not in expected and token.type != "DURATION":
        value = _BARE_VALUE_RE.match(chunk, token.start_pos)
        bare = value.group() if value else str(token)
        quoted = '"' + bare.replace("\\", "\\\\") + '"'
        if previous and previous[1] == "policy":
            return at("the policy name must be quoted", f"write policy {quoted} {{", len(bare))
        hint = (f"quote the whole value: {quoted}" if bare != token
                else f"strings are double-quoted: write {quoted}")
        return at(f"expected a quoted string, found {bare!r}", hint, len(bare))
    return None


def _previous_token(chunk: str, upto: int) -> tuple[int, str] | None:
    """Return the offset and text of the last token that ends before ``upto`` (comments skipped)."""
    last, pos = None, 0
    while pos < upto:
        m = TOKEN_RE.match(chunk, pos)
        if m is None or m.start(m.lastgroup) >= upto:
            break
        last, pos = (m.start(m.lastgroup), m.group(m.lastgroup)), m.end()
    return last


def _missing_piece(ctx: _Context, chunk: str, token: Token | None, expected: set[str],
                   at_end: bool) -> Diagnostic | None:
    """Return the error for a missing ',' or value, or a stray '}', said where the piece is missing."""
    upto = len(chunk) if at_end else token.start_pos  # type: ignore[union-attr]
    if not at_end and token.type == "RBRACE" and ("POLICY" in expected or "$END" in expected):
        return _stray_brace(ctx, chunk, token)
    previous = _previous_token(chunk, upto)
    if previous is None:
        return None
    offset, text = previous
    p_line = chunk.count("\n", 0, offset) + 1  # the block's own line: tokens count lines in the block
    line, col = ctx.offset_position(chunk, offset)
    if not at_end and token.type == "STRING" and "COMMA" in expected and token.line == p_line:
        return Diagnostic(ctx.file, line, col + len(text), "E_SYNTAX", f"missing ',' before {token!s}",
                          f"separate the strings with commas: {text}, {token}",
                          end_line=line, end_col=col + len(text) + 1)
    values = expected & {"STRING", "DURATION", "NAME"}
    if values and (at_end or (token.line or 0) > p_line):  # the line ended where a value was due
        wanted = " or ".join(_FRIENDLY[v] for v in sorted(values))
        if text == ",":
            return Diagnostic(ctx.file, line, col, "E_SYNTAX",
                              "a ',' at the end of the line, with nothing after it",
                              f"remove the ',' or add {wanted} after it", end_line=line, end_col=col + 1)
        return Diagnostic(ctx.file, line, col, "E_SYNTAX",
                          f"'{text}' needs {wanted} after it, on the same line",
                          f"e.g. {_EXAMPLES.get(text, text + ' ' + _FRIENDLY[min(values)])}",
                          end_line=line, end_col=col + len(text))
    return None


def _stray_brace(ctx: _Context, chunk: str, token: Token) -> Diagnostic:
    """Return the error for a '}' that closes no block, at the '}' indented unlike its block if any.

    A ``}`` indented like a block's contents that closes the block is the extra
    one: the ``}`` after it, in the block's column, was meant to close it.
    """
    line, col = ctx.position(token.line or 1, token.column or 1)
    stray = Diagnostic(ctx.file, line, col, "E_SYNTAX", "this '}' closes no block",
                       "remove it, or look for a block closed twice", end_line=line, end_col=col + 1)
    text = ctx.text or chunk  # braces before this chunk are in the file's text
    upto = ctx.start + token.start_pos
    stack: list[int] = []
    culprit = None
    pos = 0
    while pos < upto:
        m = TOKEN_RE.match(text, pos)
        if m is None:
            break
        kind, start, pos = m.lastgroup, m.start(m.lastgroup), m.end()
        if kind == "LBRACE":
            line_start = text.rfind("\n", 0, start) + 1
            stack.append(len(text[line_start:start]) - len(text[line_start:start].lstrip()))
        elif kind == "RBRACE" and stack:
            opener, closing = stack.pop(), _indent(text, start)
            if closing is not None and closing != opener and start < upto:
                culprit = start
    if culprit is None:
        return stray
    c_line = text.count("\n", 0, culprit) + 1
    c_col = culprit - text.rfind("\n", 0, culprit)
    note = Related(ctx.file, line, col, "so this '}' closes nothing", col + 1)
    return Diagnostic(ctx.file, c_line, c_col, "E_SYNTAX",
                      "one '}' too many: this one is indented like the block's contents, "
                      "yet closes the block",
                      "remove it: the '}' below closes the block", end_line=c_line, end_col=c_col + 1,
                      related=(note,))


# What a keyword's value looks like, for "needs a value" hints.
_EXAMPLES = {"within": "within 5m", "inactivity": "inactivity 15m", "max_auth_age": "max_auth_age 8h",
             "max_lifetime": "max_lifetime 2m", "clients": 'clients "web"', "acr": 'acr "loa2"',
             "consent": 'consent "openid"', "alg": "alg HS256", "issuer": 'issuer "https://idp.example.com"',
             "for": "for 30d", "on_unmet": "on_unmet interaction_required", "policy": 'policy "web" {',
             "any_of": 'any_of "pwd", "otp"', "all_of": 'all_of "pwd", "otp"', "has": 'has "openid"',
             "is": 'is "login"', "amr": 'amr "wia"', "env": 'env "VARIABLE"', "file": 'file "path"'}


def _unclosed(ctx: _Context, chunk: str, upto: int, token: Token | None, at_end: bool) -> Diagnostic | None:
    """Return the error for a block left open, at its ``{``, with where it had to close as a note."""
    found = unclosed_block(chunk, upto)
    if found is None:
        return None
    offset, keyword = found
    line, col = ctx.offset_position(chunk, offset)
    if at_end:
        message = f"this '{keyword}' block is never closed: '{{' has no matching '}}'"
        hint = "add '}' where the block ends"
        related: tuple[Related, ...] = ()
    else:
        assert token is not None
        message = f"this '{keyword}' block is not closed before '{token}'"
        hint = f"add '}}' to close the {keyword} block before '{token}'"
        t_line, t_col = ctx.position(token.line or 1, token.column or 1)
        related = (Related(ctx.file, t_line, t_col, f"'{token}' starts here, outside the {keyword} block",
                           t_col + len(token)),)
    return Diagnostic(ctx.file, line, col, "E_SYNTAX", message, hint, end_line=line, end_col=col + 1,
                      related=related)


_STRUCTURE_RE = re.compile(r'"(?:[^"\\\n]|\\.)*"?|#[^\n]*|[{}\n]')


def split_blocks(text: str) -> list[tuple[int, str]]:
    """Return ``(line_offset, chunk)`` pairs, one per top-level ``policy`` block.

    Braces inside strings and comments are ignored. Text outside any block
    (comments, blank lines, stray tokens) goes with the following block so a
    stray token is still reported.
    """
    chunks: list[tuple[int, str]] = []
    depth, start, start_line, line = 0, 0, 0, 0
    for m in _STRUCTURE_RE.finditer(text):
        ch = m.group()
        if ch == "\n":
            line += 1
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth <= 0:
                depth = 0
                chunks.append((start_line, text[start:m.end()]))
                start, start_line = m.end(), line
    if text[start:].strip():
        chunks.append((start_line, text[start:]))
    return chunks


def _parse_chunk(ctx: _Context, chunk: str) -> tuple[list[Policy], list[Diagnostic]]:
    """Return the policies of one chunk and its diagnostics: recoveries, then at most one syntax error.

    A syntax error on a line the lexer already recovered on (or the next) is
    the same mistake seen twice, and is dropped: one mistake, one error.
    """
    _builder.ctx = ctx
    FastLexer.report = ctx.lex_error
    try:
        return list(_parser.parse(chunk)), ctx.diagnostics
    except LarkError as err:
        inner = getattr(err, "orig_exc", None)
        error = _syntax_diagnostic(ctx, inner if isinstance(inner, LarkError) else err, chunk)
        if not any(error.line in (line, line + 1) for line in ctx.recovered_lines):
            ctx.diagnostics.append(error)
        return [], ctx.diagnostics
    finally:
        FastLexer.report = _no_report


def _no_report(line: int, column: int, width: int, message: str, hint: str, *, code: str = "") -> None:
    """Drop a lexer recovery (outside a parse)."""


def parse_dsl(text: str, file: str = "<string>") -> tuple[list[Policy], list[Diagnostic]]:
    """Return the policies in a DSL source and every diagnostic found while parsing it."""
    policies: list[Policy] = []
    diagnostics: list[Diagnostic] = []
    with _lock:
        ctx = _Context(file)
        try:
            _builder.ctx = ctx
            FastLexer.report = ctx.lex_error
            return list(_parser.parse(text)), ctx.diagnostics
        except LarkError:
            pass  # parse block by block to report every block's first syntax error
        finally:
            FastLexer.report = _no_report
        start = 0  # the blocks are consecutive slices of the text
        for offset, chunk in split_blocks(text):
            ctx = _Context(file, offset, start - (text.rfind("\n", 0, start) + 1), text=text, start=start)
            start += len(chunk)
            found, errors = _parse_chunk(ctx, chunk)
            policies.extend(found)
            diagnostics.extend(errors)
    return policies, diagnostics
