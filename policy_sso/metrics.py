"""Prometheus metrics (SPEC §4 ``GET /metrics``): counted cheaply, formatted when scraped.

The request path only adds one to a plain counter under a lock; the
Prometheus families are built from those counters, the signing keys' own
counts and the back-channel notifier's when ``/metrics`` is read (a custom
collector, prometheus-client's way for values kept elsewhere). Labels are
bounded: routes are the app's URI templates, clients the registered ones,
outcomes the evaluator's.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the Prometheus text format


class Tally:
    """Counts by label tuple; safe to add to from any thread, with no lock on the way.

    Each thread counts in a dict of its own (no increment is lost to another
    thread's); a scrape adds them up. Copying a dict is one C call, so a
    scrape never sees one half-updated.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._all: list[dict[tuple[str, ...], int]] = []
        self._lock = threading.Lock()  # guards _all, taken once per thread

    def add(self, *labels: str) -> None:
        """Count one for ``labels``."""
        try:
            counts = self._local.counts
        except AttributeError:
            counts = self._local.counts = {}
            with self._lock:
                self._all.append(counts)
        counts[labels] = counts.get(labels, 0) + 1

    def snapshot(self) -> dict[tuple[str, ...], int]:
        """Return the counts so far, over every thread."""
        with self._lock:
            parts = [dict(counts) for counts in self._all]
        total: Counter[tuple[str, ...]] = Counter()
        for part in parts:
            total.update(part)
        return dict(total)


class CpuMeter:
    """How many times an operation ran and the thread CPU seconds it took, by label (a JWS algorithm).

    What the signatures and the DPoP proof verifications cost the server, measured where they run
    (``time.thread_time``): the figures the benchmarks compare a request's whole cost with.
    """

    def __init__(self) -> None:
        self._by: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def add(self, label: str, seconds: float) -> None:
        """Count one run of ``seconds`` under ``label``."""
        with self._lock:
            count, total = self._by.get(label, (0, 0.0))
            self._by[label] = (count + 1, total + seconds)

    def stats(self) -> dict[str, tuple[int, float]]:
        """Return ``{label: (runs, CPU seconds)}`` so far."""
        with self._lock:
            return dict(self._by)


class Metrics:
    """What the server counts, and the registry that exposes it."""

    def __init__(self) -> None:
        self.requests = Tally()  # route, method, status
        self.decisions = Tally()  # client, outcome
        self.rate_limited = Tally()  # kind
        self._sources: list[Callable[[], Iterator[Metric]]] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, memory, open fds
        _latest[:] = [self]

    def watch_signing(self, stats: Callable[[], Mapping[str, tuple[int, float]]]) -> None:
        """Expose signature counts and their CPU seconds by algorithm, read from ``stats``."""
        self._watch_cpu(stats, ("policy_sso_signatures", "JWS signatures made"),
                        ("policy_sso_signing_cpu_seconds",
                         "CPU time spent making signatures (thread CPU time)"))

    def watch_dpop_verification(self, stats: Callable[[], Mapping[str, tuple[int, float]]]) -> None:
        """Expose DPoP proof signature verifications and their CPU seconds by algorithm (RFC 9449 §4.3)."""
        self._watch_cpu(stats, ("policy_sso_dpop_verifications", "DPoP proof signatures verified"),
                        ("policy_sso_dpop_verification_cpu_seconds",
                         "CPU time spent verifying DPoP proof signatures (thread CPU time)"))

    def _watch_cpu(self, stats: Callable[[], Mapping[str, tuple[int, float]]], runs: tuple[str, str],
                   cpu: tuple[str, str]) -> None:
        def families() -> Iterator[Metric]:
            count = CounterMetricFamily(*runs, labels=["alg"])
            seconds = CounterMetricFamily(*cpu, labels=["alg"])
            for alg, (n, spent) in sorted(stats().items()):
                count.add_metric([alg], n)
                seconds.add_metric([alg], spent)
            yield count
            yield seconds

        self._sources.append(families)

    def watch_backchannel(self, stats: Callable[[], Mapping[str, int]]) -> None:
        """Expose back-channel logout deliveries (delivered, failed, dropped, retried, pending)."""

        def families() -> Iterator[Metric]:
            values = stats()
            deliveries = CounterMetricFamily("policy_sso_backchannel_logouts",
                                             "Back-channel logout tokens by result", labels=["result"])
            for result in ("delivered", "failed", "dropped", "retried"):
                deliveries.add_metric([result], values.get(result, 0))
            yield deliveries
            yield GaugeMetricFamily("policy_sso_backchannel_pending", "Logout tokens waiting to be sent",
                                    value=values.get("pending", 0))

        self._sources.append(families)

    def watch_audit(self, stats: Callable[[], Mapping[str, Any]]) -> None:
        """Expose audit events dropped (queue full) and written or failed per sink, read from ``stats``."""

        def families() -> Iterator[Metric]:
            values = stats()
            yield CounterMetricFamily("policy_sso_audit_events_dropped",
                                      "Audit events dropped because the writer's queue was full",
                                      value=values.get("dropped", 0))
            for name, help_text in (("written", "Audit events written"),
                                    ("failed", "Audit events a sink failed to write")):
                family = CounterMetricFamily(f"policy_sso_audit_events_{name}", help_text, labels=["sink"])
                for sink, count in sorted(values.get(name, {}).items()):
                    family.add_metric([sink], count)
                yield family

        self._sources.append(families)

    def exposition(self) -> bytes:
        """Return every metric in the Prometheus text format (every worker's under ``serve --workers``)."""
        own = generate_latest(self.registry)
        if not _worker:
            return own
        slot, siblings = _worker[0]
        return combine_expositions([(slot, own), *siblings()])

    def own_exposition(self) -> bytes:
        """Return this process's metrics alone (what a worker hands a sibling being scraped)."""
        return generate_latest(self.registry)


# ``serve --workers``: this worker's slot and what fetches its siblings' expositions; the last
# Metrics built in the process (a worker builds one) answers the siblings' scrapes
_worker: list[tuple[str, Callable[[], list[tuple[str, bytes]]]]] = []
_latest: list[Metrics] = []


def share_across_workers(slot: str, siblings: Callable[[], list[tuple[str, bytes]]]) -> Callable[[], bytes]:
    """Make ``/metrics`` cover every worker; return what produces this worker's own exposition."""
    _worker[:] = [(slot, siblings)]
    return lambda: _latest[-1].own_exposition() if _latest else b""


# per-process values that do not add up across workers: the earliest start, the highest limit
_COMBINE = {"process_start_time_seconds": min, "process_max_fds": max}


def combine_expositions(parts: list[tuple[str, bytes]]) -> bytes:
    """Return one exposition from several workers' (slot, text): samples with equal labels summed.

    Counters and gauges add up (requests, decisions, CPU seconds, memory), so
    a scrape reads as one server's; ``policy_sso_worker_http_requests``
    ``{worker=...}`` keeps each worker's own request count and
    ``policy_sso_workers`` says how many answered this scrape.
    """
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    per_worker = CounterMetricFamily("policy_sso_worker_http_requests",
                                     "HTTP requests answered by each worker (serve --workers)",
                                     labels=["worker"])
    for slot, text in parts:
        handled = 0.0
        for family in text_string_to_metric_families(text.decode()):
            families.setdefault(family.name, family)
            table = values.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                if sample.name == "policy_sso_http_requests_total":
                    handled += sample.value
                merge = _COMBINE.get(sample.name)
                old = table.get(key)
                table[key] = sample.value if old is None else (merge or _add)(old, sample.value)
        per_worker.add_metric([slot], handled)
    combined = []
    for name, family in families.items():
        merged = Metric(name, family.documentation, family.type)
        for (sample_name, labels), value in values[name].items():
            merged.add_sample(sample_name, dict(labels), value)
        combined.append(merged)
    combined.append(per_worker)
    combined.append(GaugeMetricFamily("policy_sso_workers", "Worker processes that answered this scrape",
                                      value=len(parts)))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(combined))
    return generate_latest(registry)


def _add(a: float, b: float) -> float:
    return a + b


class _Fixed:
    """A collector yielding families built beforehand (the combined exposition)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


class _Collector:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        yield _family("policy_sso_http_requests", "HTTP requests answered", ["route", "method", "status"],
                      m.requests)
        yield _family("policy_sso_decisions", "Policy decisions on authorization requests by outcome",
                      ["client_id", "outcome"], m.decisions)
        yield _family("policy_sso_rate_limited", "Requests refused by a rate limit", ["kind"], m.rate_limited)
        for source in m._sources:
            yield from source()


def _family(name: str, documentation: str, labels: list[str], tally: Tally) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for values, count in sorted(tally.snapshot().items()):
        family.add_metric(list(values), count)
    return family

