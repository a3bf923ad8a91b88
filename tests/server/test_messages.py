"""The hosted pages' message catalogue: every key a template or the code uses exists, no template
holds text of its own, and Accept-Language picks the language (with English behind each key)."""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import falcon.testing
import pytest
from support import app_client
from test_http_app import PORTAL, interaction_cookie, post_login, start_login

import server.browser
import server.resources.account
from policy_sso.messages import FALLBACK, HERE, Catalogue, Message, default_catalogue, negotiate
from policy_sso.oidc.claims import SCOPE_DESCRIPTIONS

ROOT = Path(__file__).parent.parent.parent
TEMPLATES = sorted((ROOT / "server" / "templates").glob("*.html"))
TEST_ONLY = Path(__file__).parent / "messages_de"
ENGLISH = default_catalogue().keys()

_T_CALL = re.compile(r"""\bt\(\s*["']([^"']+)["'](?!\s*~)""")  # a whole key, not a prefix
_T_PREFIX = re.compile(r"""\bt(?:\.has)?\(\s*["']([a-z_.]+\.)["']\s*~""")  # t("error." ~ code ~ ".title")
_MESSAGE = re.compile(r"""\bMessage\(\s*["']([^"']+)["']""")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_every_key_a_template_uses_is_in_the_english_catalogue(template: Path) -> None:
    text = template.read_text()
    missing = sorted(set(_T_CALL.findall(text)) - ENGLISH)
    assert not missing, f"{template.name} uses keys not in policy_sso/messages/en.yaml: {missing}"
    for prefix in _T_PREFIX.findall(text):  # a key built at run time: its family must exist
        assert any(key.startswith(prefix) for key in ENGLISH), prefix


def test_every_message_the_code_shows_is_in_the_english_catalogue() -> None:
    used = {key for folder in ("policy_sso", "server") for path in (ROOT / folder).rglob("*.py")
            for key in _MESSAGE.findall(path.read_text())}
    used |= set(server.resources.account.DONE.values())
    used |= {message.key for message in SCOPE_DESCRIPTIONS.values()}
    assert used and not sorted(used - ENGLISH)


def test_every_error_code_has_a_title_and_a_text() -> None:
    codes = {key.split(".")[1] for key in ENGLISH if key.startswith("error.") and key.count(".") == 2}
    assert {"invalid_request", "access_denied", "temporarily_unavailable", "default"} <= codes
    for code in codes:
        assert {f"error.{code}.title", f"error.{code}.text"} <= ENGLISH, code


def _visible_text(html: str) -> str:
    """Return what a template shows that is not an expression, a tag, a script or a style."""
    for pattern in (r"{#.*?#}", r"<script\b.*?</script>", r"<style\b.*?</style>", r"{%.*?%}", r"{{.*?}}",
                    r"<[^>]*>", r"&\w+;"):
        html = re.sub(pattern, " ", html, flags=re.DOTALL)
    return html


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_no_template_holds_text_of_its_own(template: Path) -> None:
    """Words between tags, and in attributes people read, come from the catalogue."""
    html = template.read_text()
    words = re.findall(r"[^\W\d_]{2,}", _visible_text(html))
    assert not words, f"{template.name} shows text outside the catalogue: {words}"
    for attribute in re.findall(r'\b(?:aria-label|placeholder|title|alt)="([^"]*)"', html):
        assert re.fullmatch(r"\s*{{.*}}\s*", attribute), f"{template.name}: {attribute!r}"
    for literal in re.findall(r"""\bset\s+\w+\s*=\s*["']([^"']*)["']""", html):  # {% set label = "…" %}
        assert not re.search(r"\s", literal), f"{template.name} sets a text literal: {literal!r}"


def test_the_scan_sees_hard_coded_text() -> None:
    """The scan above can fail: plain words, an aria-label and a script-free sentence are found."""
    assert re.findall(r"[^\W\d_]{2,}", _visible_text("<p>Sign in</p>{{ t('x') }}")) == ["Sign", "in"]
    assert not re.findall(r"[^\W\d_]{2,}", _visible_text("<p>{{ t('x') }}</p><script>alert('hi')</script>"))


def test_plain_text_messages_carry_no_markup_and_translations_keep_the_placeholders() -> None:
    catalogue = Catalogue.load(HERE, TEST_ONLY)
    english = catalogue.languages[FALLBACK]
    for key, text in english.items():
        if key.startswith(("message.", "error.")):
            assert "<" not in text, key  # also read as plain text (logs, the backend API)
    for language, strings in catalogue.languages.items():
        extra = set(strings) - set(english)
        assert not extra, f"{language} has keys English lacks: {extra}"
        for key, text in strings.items():
            assert set(_PLACEHOLDER.findall(text)) == set(_PLACEHOLDER.findall(english[key])), (language, key)


@pytest.mark.parametrize(("header", "expected"), [
    ("de", "de"), ("de-CH, en;q=0.5", "de"), ("fr, de;q=0.8", "de"), ("en, de;q=0.8", "en"),
    ("de;q=0, en", "en"), ("fr", "en"), ("", "en"), (None, "en"), ("*", "en"), ("de;q=bogus, fr", "en"),
    ("x" * 100_000 + ",de", "en"),
], ids=["exact", "regional-range", "second-choice", "english-first", "refused", "unavailable", "empty",
        "absent", "wildcard", "bad-quality", "huge-header-not-read"])
def test_accept_language_picks_a_language_we_have(header: str | None, expected: str) -> None:
    assert negotiate(header, ["en", "de"]) == expected


def test_a_message_is_english_text_and_its_key() -> None:
    message = Message("message.too_many_attempts", seconds=7)
    assert message == "Too many attempts. Try again in 7 seconds."
    assert message.key == "message.too_many_attempts"
    german = Catalogue.load(HERE, TEST_ONLY).translator("de")
    assert german(Message("message.wrong_password")) == "Benutzername oder Passwort falsch."
    assert german("login.to_continue", client="<b>") == "weiter zu <strong>&lt;b&gt;</strong>"  # escaped
    assert german(message) == "Too many attempts. Try again in 7 seconds."  # English behind each key
    assert german("Not a key <b>") == "Not a key &lt;b&gt;"
    nested = german("login.to_continue", client=Message("message.wrong_password"))
    assert nested == "weiter zu <strong>Benutzername oder Passwort falsch.</strong>"


@pytest.fixture
def german_client(demo, ring, clock, monkeypatch) -> falcon.testing.TestClient:
    """The demo app with the test-only German catalogue beside the shipped one."""
    monkeypatch.setattr(server.browser, "default_catalogue", lambda: Catalogue.load(HERE, TEST_ONLY))
    return app_client(demo, ring, clock)


def test_the_login_page_speaks_the_language_asked_for(german_client) -> None:
    resp = german_client.simulate_get("/authorize", params=PORTAL)
    cookie = interaction_cookie(resp)
    path, query = resp.headers["Location"].split("?")
    german = german_client.simulate_get(path, query_string=query, cookies=cookie,
                                        headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"})
    assert german.headers["Content-Language"] == "de" and '<html lang="de">' in german.text
    assert "<h1>Anmelden</h1>" in german.text and "weiter zu <strong>Employee portal</strong>" in german.text
    assert '<label for="password">Password</label>' in german.text  # untranslated: English
    french = german_client.simulate_get(path, query_string=query, cookies=cookie,
                                        headers={"Accept-Language": "fr"})
    assert french.headers["Content-Language"] == "en" and "<h1>Sign in</h1>" in french.text
    assert "Accept-Language" in german.headers["Vary"]


def test_a_message_from_the_library_is_shown_in_the_page_language(german_client) -> None:
    location, cookie, fields = start_login(german_client)
    path, query = location.split("?")
    wrong = german_client.simulate_post(
        path, query_string=query, cookies=cookie,
        body=urllib.parse.urlencode({**fields, "username": "bob", "password": "nope"}),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept-Language": "de"})
    assert "Benutzername oder Passwort falsch." in wrong.text
    english = post_login(german_client, location, cookie, fields, username="bob", password="nope")
    assert "Wrong username or password." in english.text


def test_error_pages_speak_the_language_asked_for(german_client) -> None:
    page = german_client.simulate_get("/login", params={"interaction": "gone"},
                                      headers={"Accept": "text/html", "Accept-Language": "de"})
    assert page.headers["Content-Language"] == "de"
    assert "This sign-in link does not work" in page.text  # no German for it: English behind the key
