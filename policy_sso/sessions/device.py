"""A session's device: the client address and a short label made from the User-Agent.

The account page lists each session with where it was signed in from
(issue 18), as Keycloak's and Google's account pages do. Only a label is
kept, never the User-Agent itself: the label comes from a fixed vocabulary
("Chrome on Linux", "Firefox on Windows", "Safari on iOS", "Unknown browser"),
so what is stored is short and bounded whatever a client sends, holds no
request text an attacker chose, and identifies a browser family, not a
fingerprint. Only the first :data:`MAX_USER_AGENT` characters are read.
"""

from __future__ import annotations

from policy_sso.sessions.model import Device

MAX_USER_AGENT = 256  # characters of the User-Agent read; real ones are shorter (RFC 9110 §10.1.5)
UNKNOWN = "Unknown browser"

# (token in the User-Agent, name) in order: the first match wins. Order matters because
# browsers claim each other's tokens: Edge and Opera say "Chrome", Chrome says "Safari".
_BROWSERS: tuple[tuple[str, str], ...] = (
    ("edg/", "Edge"), ("edga/", "Edge"), ("edgios/", "Edge"), ("opr/", "Opera"),
    ("samsungbrowser/", "Samsung Internet"), ("firefox/", "Firefox"), ("fxios/", "Firefox"),
    ("chromium/", "Chromium"), ("crios/", "Chrome"), ("chrome/", "Chrome"), ("version/", "Safari"),
    ("curl/", "curl"), ("python-requests/", "Python"), ("python-urllib/", "Python"),
)
_SYSTEMS: tuple[tuple[str, str], ...] = (
    ("android", "Android"), ("iphone", "iOS"), ("ipad", "iPadOS"), ("cros", "ChromeOS"),
    ("windows", "Windows"), ("mac os x", "macOS"), ("macintosh", "macOS"), ("linux", "Linux"),
    ("freebsd", "FreeBSD"),
)


def _first(text: str, table: tuple[tuple[str, str], ...]) -> str | None:
    return next((name for token, name in table if token in text), None)


def describe(user_agent: str | None) -> str:
    """Return a short label for a User-Agent, such as "Chrome on Linux", or "Unknown browser"."""
    text = (user_agent or "")[:MAX_USER_AGENT].lower()
    browser = _first(text, _BROWSERS)
    system = _first(text, _SYSTEMS)
    if browser is None:
        return f"Browser on {system}" if system else UNKNOWN
    return f"{browser} on {system}" if system else browser


def device_of(address: str, user_agent: str | None) -> Device:
    """Return the device record for a request from ``address`` sending ``user_agent``."""
    return Device(address, describe(user_agent))
