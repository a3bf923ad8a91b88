"""What the hosted pages say to people, in one catalogue per language (issue 18).

Each language is a YAML file of this package named by its language tag
(``en.yaml``, ``fr.yaml``, ``pt-BR.yaml``): flat keys to strings with
``{name}`` placeholders (:meth:`str.format` fields). English is complete and
is the fallback, key by key: another catalogue may translate only some keys.
Catalogues are read once per process (:func:`default_catalogue`).

Templates call ``t(key, **params)``; the result is safe HTML: a catalogue
string may hold markup (``<strong>{name}</strong>``), the parameters are
escaped. The library's own messages for people (a wrong password, a refused
passkey) are :class:`Message` values: English text (what logs, the backend
API and tests read) that also carries its key and parameters, so a page
shows it in the reader's language. The language is chosen from the
request's ``Accept-Language`` (RFC 9110 §12.5.4), by :func:`negotiate`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from markupsafe import Markup

FALLBACK = "en"
HERE = Path(__file__).parent
MAX_ACCEPT_LANGUAGE = 512  # characters of the header read; real ones are a few dozen
MAX_LANGUAGE_RANGES = 16  # language ranges considered; more is not a browser


class Message(str):
    """A message for people: its English text, with the catalogue key and parameters to translate it."""

    key: str
    params: Mapping[str, Any]

    def __new__(cls, key: str, **params: Any) -> Message:
        """Return the message ``key`` with ``params``, its text in English."""
        self = super().__new__(cls, default_catalogue().text(FALLBACK, key, params))
        self.key = key
        self.params = params
        return self


class Catalogue:
    """Every language's strings, by language tag then key; English the fallback for each key."""

    def __init__(self, languages: Mapping[str, Mapping[str, str]]) -> None:
        self.languages = {tag.lower(): dict(strings) for tag, strings in languages.items()}
        if FALLBACK not in self.languages:
            raise ValueError("a message catalogue needs English (en), the fallback")

    @classmethod
    def load(cls, *directories: Path) -> Catalogue:
        """Return the catalogue of every ``*.yaml`` in ``directories`` (a later file adds to earlier ones)."""
        languages: dict[str, dict[str, str]] = {}
        for directory in directories:
            for path in sorted(Path(directory).glob("*.yaml")):
                data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
                languages.setdefault(path.stem.lower(), {}).update({str(k): str(v) for k, v in data.items()})
        return cls(languages)

    def keys(self, language: str = FALLBACK) -> frozenset[str]:
        """Return the keys a language defines."""
        return frozenset(self.languages.get(language.lower(), {}))

    def text(self, language: str, key: str, params: Mapping[str, Any] | None = None) -> str:
        """Return the plain text of ``key`` in ``language`` (else English's; else the key itself)."""
        template = self.languages.get(language, {}).get(key) or self.languages[FALLBACK].get(key)
        if template is None:
            return key  # a message nobody wrote: shown as its key rather than failing the page
        return template.format(**params) if params else template

    def markup(self, language: str, key: str | Message, params: Mapping[str, Any]) -> Markup:
        """Return ``key`` in ``language`` as safe HTML, its parameters escaped.

        A :class:`Message` is translated by its own key and parameters; any
        other text that is not a key is shown as it is (escaped).
        """
        if isinstance(key, Message):
            key, params = key.key, {**key.params, **params}
        # a message given as a parameter is said in the same language
        params = {k: self.markup(language, v, {}) if isinstance(v, Message) else v for k, v in params.items()}
        template = self.languages.get(language, {}).get(key) or self.languages[FALLBACK].get(key)
        if template is None:
            return Markup.escape(key)
        return Markup(template).format(**params) if params else Markup(template)  # noqa: S704 - our own files

    def negotiate(self, accept_language: str | None) -> str:
        """Return the language to answer in: the best of ``Accept-Language`` we have, else English."""
        return negotiate(accept_language, self.languages)

    def translator(self, language: str) -> Translator:
        """Return the ``t`` function templates call, for one language."""
        return Translator(self, language)


class Translator:
    """``t(key, **params)`` for one language: what a template calls."""

    def __init__(self, catalogue: Catalogue, language: str) -> None:
        self.catalogue = catalogue
        self.language = language

    def __call__(self, key: str | Message, **params: Any) -> Markup:
        """Return the message ``key`` with ``params`` as safe HTML in this language."""
        return self.catalogue.markup(self.language, key, params)

    def has(self, key: str) -> bool:
        """Return whether the catalogue (this language or English) has ``key``."""
        languages = self.catalogue.languages
        return key in languages[FALLBACK] or key in languages.get(self.language, {})


def negotiate(accept_language: str | None, available: Iterable[str]) -> str:
    """Return the available language the header prefers most, else English (RFC 9110 §12.5.4).

    A range matches a tag equal to it or starting with it and ``-`` (``de``
    matches ``de-CH``), and a tag matches a range it starts (``de-CH`` asks, ``de``
    answers; RFC 4647 §3.3.1 lookup). ``q=0`` refuses; ``*`` is English. Ties keep the header's order.
    """
    tags = {tag.lower() for tag in available}
    best: tuple[float, int, str] | None = None
    ranges = (accept_language or "")[:MAX_ACCEPT_LANGUAGE].split(",")[:MAX_LANGUAGE_RANGES]
    for position, item in enumerate(ranges):
        name, _, rest = item.strip().partition(";")
        name = name.strip().lower()
        quality = 1.0
        if rest.strip().startswith("q="):
            try:
                quality = float(rest.strip()[2:])
            except ValueError:
                continue
        if not name or not 0 < quality <= 1:
            continue
        match = _match(name, tags)
        if match is not None and (best is None or (-quality, position) < (-best[0], best[1])):
            best = (quality, position, match)
    return best[2] if best else FALLBACK


def _match(name: str, tags: set[str]) -> str | None:
    if name == "*":
        return FALLBACK
    if name in tags:
        return name
    longer = sorted(t for t in tags if t.startswith(name + "-"))
    if longer:
        return longer[0]
    primary = name.split("-", maxsplit=1)[0]
    return primary if primary in tags else None


@functools.cache
def default_catalogue() -> Catalogue:
    """Return the catalogue shipped with policy-sso (read once per process)."""
    return Catalogue.load(HERE)
