"""The device label a session records: a fixed vocabulary made from the User-Agent, never the UA itself."""

from __future__ import annotations

import pytest

from policy_sso.sessions.device import MAX_USER_AGENT, UNKNOWN, describe, device_of

CHROME_LINUX = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/120.0.0.0 Safari/537.36")


@pytest.mark.parametrize(("agent", "label"), [
    (CHROME_LINUX, "Chrome on Linux"),
    (CHROME_LINUX.replace("Chrome/", "HeadlessChrome/"), "Chrome on Linux"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91", "Edge on Windows"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0",
     "Firefox on Windows"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.1 Mobile/15E148 Safari/604.1", "Safari on iOS"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.1 Safari/605.1.15", "Safari on macOS"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Mobile Safari/537.36", "Chrome on Android"),
    ("curl/8.5.0", "curl"),
    ("", UNKNOWN),
    (None, UNKNOWN),
    ("<script>alert(1)</script>", UNKNOWN),
], ids=["chrome-linux", "headless-chrome", "edge-windows", "firefox-windows", "safari-ios", "safari-macos",
        "chrome-android", "curl", "empty", "absent", "hostile"])
def test_the_label_names_browser_and_system(agent, label):
    assert describe(agent) == label


def test_only_the_first_characters_are_read():
    """A token beyond MAX_USER_AGENT characters is not seen: a huge header costs a bounded scan."""
    assert describe("x" * MAX_USER_AGENT + " Firefox/121.0 (Windows)") == UNKNOWN
    assert describe("x" * 100_000) == UNKNOWN


def test_the_record_keeps_the_label_not_the_user_agent():
    device = device_of("192.0.2.1", CHROME_LINUX)
    assert (device.address, device.label) == ("192.0.2.1", "Chrome on Linux")
    assert CHROME_LINUX not in repr(device)
