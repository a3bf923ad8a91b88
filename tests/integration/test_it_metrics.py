"""GET /metrics over real HTTP, read with prometheus-client's own parser."""

from __future__ import annotations

import requests
from live_op import REDIRECTS, BrowserAgent, LiveOP
from prometheus_client.parser import text_string_to_metric_families


def scrape(op: LiveOP) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = requests.get(f"{op.url}/metrics", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(resp.text) for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_decisions_and_signatures_are_counted(op: LiveOP, browser: BrowserAgent) -> None:
    before = scrape(op)
    cb = browser.sign_in("portal")  # one decision (consent missing), then the pages
    assert cb.error is None
    for _ in range(3):
        assert browser.silent("portal").error is None
    assert browser.silent("docs").error == "consent_required"
    resp = op.token("portal", grant_type="authorization_code", code=browser.silent("portal").params["code"],
                    redirect_uri=REDIRECTS["portal"])
    assert resp.status_code == 200
    after = scrape(op)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("policy_sso_decisions_total", client_id="portal", outcome="allow") == 4
    assert grew("policy_sso_decisions_total", client_id="docs", outcome="consent_required") == 1
    assert grew("policy_sso_http_requests_total", route="/authorize", method="GET", status="302") >= 6
    assert grew("policy_sso_http_requests_total", route="/token", method="POST", status="200") == 1
    # the exchange signed an access token and an ID token with the portal's RS256 key
    assert grew("policy_sso_signatures_total", alg="RS256") == 2
    assert grew("policy_sso_signing_cpu_seconds_total", alg="RS256") > 0
    assert value(after, "process_cpu_seconds_total") > 0


def test_rate_limit_refusals_are_counted(op: LiveOP, browser: BrowserAgent) -> None:
    page = browser.follow(browser.authorize_request("portal"))
    before = value(scrape(op), "policy_sso_rate_limited_total", kind="password")
    allowed = op.tenant.settings.guessing.per_account_address[0].requests
    statuses = [browser.submit(page, {"username": "bob", "password": "x"}).status_code
                for _ in range(allowed + 2)]
    assert statuses.count(429) == 2
    assert value(scrape(op), "policy_sso_rate_limited_total", kind="password") - before == 2


def test_labels_stay_bounded_whatever_is_sent(op: LiveOP) -> None:
    for path in ("/no-such-page", "/no/such/page/either", "/x?y=z"):
        assert requests.get(op.url + path, timeout=10).status_code == 404
    brew = requests.request("BREW", f"{op.url}/healthz", timeout=10)
    assert brew.status_code in (400, 405) and brew.json()["error"]
    samples = scrape(op)
    counted = [dict(labels) for name, labels in samples if name == "policy_sso_http_requests_total"]
    routes, methods = {c["route"] for c in counted}, {c["method"] for c in counted}
    assert "unmatched" in routes and not any(r.startswith("/no") for r in routes)
    assert "BREW" not in methods and "other" in methods
