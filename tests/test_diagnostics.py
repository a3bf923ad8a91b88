"""The three renderings of a Diagnostic: text with snippets (rustc-style), JSON and GitHub annotations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policy_sso.diagnostics import (
    Diagnostic,
    Related,
    did_you_mean,
    edit_distance,
    render_github,
    render_json,
    render_text,
    with_span,
)

SOURCE = 'policy "web" {\n  clients "docs", "web"\n}\n'
DUPLICATE = Diagnostic("web.policy", 2, 11, "E_DUPLICATE_CLIENT", "client 'docs' is claimed twice",
                       "a client belongs to exactly one policy", end_line=2, end_col=17,
                       related=(Related("docs.policy", 2, 11, "first named here", 17),))


@pytest.fixture
def two_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "web.policy").write_text(SOURCE)
    (tmp_path / "docs.policy").write_text('policy "docs" {\n  clients "docs"\n}\n')
    monkeypatch.chdir(tmp_path)  # files are read by the path the diagnostic prints
    return tmp_path


def test_text_shows_the_line_the_carets_and_the_related_place(two_files: Path) -> None:
    assert render_text([DUPLICATE]) == (
        "web.policy:2:11: E_DUPLICATE_CLIENT: client 'docs' is claimed twice "
        "(hint: a client belongs to exactly one policy)\n"
        '   2 |   clients "docs", "web"\n'
        "     |           ^^^^^^\n"
        "docs.policy:2:11: note: first named here\n"
        '   2 |   clients "docs"\n'
        "     |           ^^^^^^\n")


def test_an_unreadable_file_gives_the_header_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert render_text([DUPLICATE]) == (
        f"{DUPLICATE}\n"
        "docs.policy:2:11: note: first named here\n")


@pytest.mark.parametrize(("diagnostic", "carets"), [
    (Diagnostic("f.policy", 2, 3, "E_X", "m"), "     |   ^"),  # no end: one caret
    (Diagnostic("f.policy", 2, 3, "E_X", "m", end_line=2, end_col=10), "     |   ^^^^^^^"),
    (Diagnostic("f.policy", 2, 3, "E_X", "m", end_line=4, end_col=2), "     |   ^^^^^^^^^^^^^^^^^^^^^"),
    (Diagnostic("f.policy", 2, 20, "E_X", "m", end_line=2, end_col=99), "     |                    ^^^^"),
], ids=["start-only", "one-line", "several-lines-underline-the-rest", "clamped-to-the-line"])
def test_carets_cover_the_span(diagnostic: Diagnostic, carets: str) -> None:
    lines = render_text([diagnostic], {"f.policy": SOURCE}).splitlines()
    assert lines[1:] == ['   2 |   clients "docs", "web"', carets]


def test_tabs_are_shown_as_spaces_and_the_carets_stay_under_their_text() -> None:
    text = "a:\n\tb: 1\n"
    lines = render_text([Diagnostic("t.yaml", 2, 2, "E_X", "m", end_line=2, end_col=3)], {"t.yaml": text})
    assert lines.splitlines()[1:] == ["   2 |     b: 1", "     |     ^"]


def test_a_line_past_the_end_of_the_file_has_no_snippet() -> None:
    past_the_end = Diagnostic("f.policy", 9, 1, "E_X", "m")
    assert render_text([past_the_end], {"f.policy": SOURCE}) == "f.policy:9:1: E_X: m\n"


def test_yaml_lines_break_as_yaml_breaks_them() -> None:
    text = "a: 1\r\nb: 2\x85c: 3\n"
    out = render_text([Diagnostic("t.yaml", 3, 1, "E_X", "m")], {"t.yaml": text})
    assert out.splitlines()[1] == "   3 | c: 3"


def test_json_carries_the_span_and_the_related_places() -> None:
    [item] = json.loads(render_json([DUPLICATE]))["diagnostics"]
    assert (item["end_line"], item["end_col"]) == (2, 17)
    assert item["related"] == [{"file": "docs.policy", "line": 2, "col": 11, "label": "first named here",
                                "end_col": 17}]


def test_github_carries_the_span_and_lists_related_places_in_the_message() -> None:
    assert render_github([DUPLICATE]) == (
        "::error file=web.policy,line=2,col=11,endLine=2,endColumn=16,title=E_DUPLICATE_CLIENT::"
        "E_DUPLICATE_CLIENT: client 'docs' is claimed twice (hint: a client belongs to exactly one policy)"
        "%0Adocs.policy:2:11: first named here\n")


def test_with_span_closes_a_diagnostic_and_adds_related_places() -> None:
    plain = Diagnostic("f.policy", 2, 11, "E_X", "m")
    spanned = with_span(plain, 17, related=(Related("g.policy", 1, 1, "here"),))
    assert (spanned.end_line, spanned.end_col, len(spanned.related)) == (2, 17, 1)
    assert str(spanned) == str(plain)  # the first line tools grep never changes


@pytest.mark.parametrize(("a", "b", "distance"), [
    ("wai", "wia", 1), ("requir", "require", 1), ("polciy", "policy", 1), ("kitten", "sitting", 3),
    ("", "ab", 2),
])
def test_edit_distance_counts_a_swapped_pair_as_one_slip(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b) == edit_distance(b, a) == distance


def test_did_you_mean_names_the_near_names_only() -> None:
    assert did_you_mean("sesion", ["session", "require"]) == "did you mean 'session'?"
    assert did_you_mean("biometrics", ["amr", "mfa", "acr", "consent"]) == ""
