"""Metrics counters: exact under threads, formatted by prometheus-client's own exposition."""

from __future__ import annotations

import sys
import threading

import pytest
from prometheus_client.parser import text_string_to_metric_families

from policy_sso.metrics import Metrics, Tally


@pytest.fixture
def eager_thread_switches():
    """Switch threads as often as the interpreter can: a racy counter then loses counts."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def test_a_tally_loses_no_count_under_threads(eager_thread_switches):
    tally = Tally()
    start = threading.Barrier(8)

    def count(n: int) -> None:
        start.wait()
        for i in range(20_000):
            tally.add("route", "GET", str(i % 2 + n % 2))

    threads = [threading.Thread(target=count, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    snapshots = [tally.snapshot() for _ in range(20)]  # reading while they count never fails
    for thread in threads:
        thread.join()
    assert tally.snapshot() == {("route", "GET", "0"): 40_000, ("route", "GET", "1"): 80_000,
                                ("route", "GET", "2"): 40_000}
    assert all(sum(s.values()) <= 160_000 for s in snapshots)


def test_exposition_carries_every_family():
    metrics = Metrics()
    metrics.requests.add("/authorize", "GET", "302")
    metrics.decisions.add("portal", "allow")
    metrics.rate_limited.add("silent_auth")
    metrics.watch_signing(lambda: {"RS256": (3, 0.0021)})
    metrics.watch_dpop_verification(lambda: {"ES256": (2, 0.0002)})
    metrics.watch_backchannel(lambda: {"delivered": 2, "pending": 1})
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(metrics.exposition().decode()) for s in f.samples}
    assert samples[("policy_sso_http_requests_total",
                    (("method", "GET"), ("route", "/authorize"), ("status", "302")))] == 1
    assert samples[("policy_sso_decisions_total", (("client_id", "portal"), ("outcome", "allow")))] == 1
    assert samples[("policy_sso_rate_limited_total", (("kind", "silent_auth"),))] == 1
    assert samples[("policy_sso_signatures_total", (("alg", "RS256"),))] == 3
    assert samples[("policy_sso_signing_cpu_seconds_total", (("alg", "RS256"),))] == 0.0021
    assert samples[("policy_sso_dpop_verifications_total", (("alg", "ES256"),))] == 2
    assert samples[("policy_sso_dpop_verification_cpu_seconds_total", (("alg", "ES256"),))] == 0.0002
    assert samples[("policy_sso_backchannel_logouts_total", (("result", "delivered"),))] == 2
    assert samples[("policy_sso_backchannel_logouts_total", (("result", "failed"),))] == 0
    assert samples[("policy_sso_backchannel_pending", ())] == 1
