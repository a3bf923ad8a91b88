"""The non-blocking audit writer: ``emit`` queues, a background thread writes to the sinks.

A request never waits for a sink: ``emit`` puts the event on a bounded queue
and returns; when the queue is full (a sink stalled, or a burst larger than
the queue) the event is dropped and counted, and ``/metrics`` reports the
count (``policy_sso_audit_events_dropped``). OPA's decision logger makes the
same trade: the decision path never blocks on the log.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from queue import Empty, SimpleQueue
from typing import Any

from policy_sso.audit.context import (  # noqa: F401 - bind_request, logout_type: the server imports them here
    bind_request,
    logout_type,
    request_fields,
    request_now,
    wall_clock,
)
from policy_sso.audit.event import AuditEvent, EventFields, event_json, event_line
from policy_sso.audit.sinks import Sink
from policy_sso.audit.stores import EventStore, Record
from policy_sso.metrics import Tally
from policy_sso.sessions.store import session_key as store_key

log = logging.getLogger("policy_sso.audit")

BATCH = 1024  # events written per sink call at most
# After the first event of a batch the writer waits this long for more, so under load it wakes a few
# times a second instead of once an event: a thread handover per request (the interpreter lock, a
# context switch) cost more server CPU than writing the event (bench_http: silent authorize went from
# 0.32 to 0.61 ms/request with one wake-up per event).
LINGER = 0.05
IDLE_WAKE = 10.0  # seconds an idle writer sleeps between retention checks
PRUNE_INTERVAL = 3600  # seconds between retention prunes of the store sink
_FAILURE_LOG_INTERVAL = 60.0  # a failing sink is reported at most once a minute
DIGEST_CACHE = 4096  # session digests remembered (the ids are in the store's caches already)
MAX_DIAGNOSTICS = 50  # of a rejected reload, recorded in its event (the count says how many in all)

class AuditedTally:
    """A metrics tally that also records its counts as audit events (rate-limit refusals).

    A flood is what a rate limit refuses, so its refusals are sampled: one
    event per kind and client address per SAMPLE_WINDOW seconds, carrying in
    ``details.suppressed`` how many were refused since the last one recorded.
    The metric counts every one. Without sampling one address wrote a row per
    refused request, about 350 a second (the attack review).
    """

    SAMPLE_WINDOW = 60
    MAX_KEYS = 4096  # addresses remembered at once; past it the table starts afresh (a flood of addresses)

    def __init__(self, tally: Tally, audit: AuditLog, type_: str) -> None:
        self.tally = tally
        self.audit = weakref.ref(audit)
        self.type = type_
        self._sampled: dict[tuple[str, str | None], list[int]] = {}  # key -> [window start, suppressed]

    def add(self, *labels: str) -> None:
        """Count one for ``labels``; record it unless this kind from this address was recorded lately."""
        self.tally.add(*labels)
        audit = self.audit()
        if audit is None:
            return
        now, kind = request_now(), labels[0] if labels else ""
        key = (kind, request_fields(audit.address_of)[1])
        seen = self._sampled.get(key)
        if seen is not None and now - seen[0] < self.SAMPLE_WINDOW:
            seen[1] += 1
            return
        suppressed = seen[1] if seen is not None else 0
        if len(self._sampled) >= self.MAX_KEYS:
            self._sampled.clear()
        self._sampled[key] = [now, 0]
        details = {"kind": kind, **({"suppressed": suppressed} if suppressed else {})}
        audit.record(self.type, now, outcome="refused", **details)

    def snapshot(self) -> dict[tuple[str, ...], int]:
        """Return the tally's counts."""
        return self.tally.snapshot()


class _Flush:
    """A marker on the queue: set once every event queued before it is written."""

    def __init__(self) -> None:
        self.done = threading.Event()


_STOP = object()


class _Writer:
    """The background thread's side; holds no reference to the AuditLog, so the log can be collected."""

    def __init__(self, queue: SimpleQueue, sinks: Sequence[Sink], events: EventStore | None, *,
                 clock: Callable[[], int], retention: int, prune_interval: int) -> None:
        self.queue = queue
        self.sinks = list(sinks)
        self.events = events
        self.clock = clock
        self.retention = retention
        self.prune_interval = prune_interval
        self.linger = LINGER
        # the JSON objects are built only for sinks that read them (the store); files and stdout
        # take the lines alone
        self.want_json = any(getattr(sink, "wants_json", True) for sink in self.sinks)
        self.next_prune = 0
        self.prefix = secrets.token_hex(4) + "-"  # ids unique across processes, ordered within one
        self.counter = 0
        self.written: dict[str, int] = {sink.name: 0 for sink in self.sinks}
        self.failed: dict[str, int] = {sink.name: 0 for sink in self.sinks}
        # the sinks whose last write failed (until one succeeds, or /readyz finds them writable again)
        self.failing: set[str] = set()
        self._last_report: dict[str, float] = {}

    def run(self) -> None:
        stop = False
        while not stop:
            try:
                first = self.queue.get(timeout=IDLE_WAKE)
            except Empty:
                first = None
            batch: list[Any] = [] if first is None else [first]
            if first.__class__ is tuple and self.linger:
                time.sleep(self.linger)
            while batch and len(batch) < BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except Empty:
                    break
            events = [item for item in batch if item.__class__ is tuple]
            if events:
                self._write(events)
            self._maybe_prune()  # before the flush markers: a flushed log is also pruned
            for item in batch:
                if isinstance(item, _Flush):
                    item.done.set()
                elif item is _STOP:
                    stop = True
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.warning("audit sink %s did not close cleanly", sink.name)

    def _records(self, events: Iterable[EventFields]) -> list[Record]:
        """Return each event's JSON object (None when no sink reads them) and its line."""
        records: list[Record] = []
        want_json = self.want_json
        for queued in events:
            fields = queued
            id_ = fields[2]
            if not id_:
                self.counter += 1
                id_ = f"{self.prefix}{self.counter:010x}"
            try:
                line = event_line(fields, id_)
                if not line.isascii():  # a lone surrogate (a JSON "\\ud800" a client sent) is not UTF-8:
                    try:                # every sink of the batch would refuse it
                        line.encode("utf-8")
                    except UnicodeEncodeError:
                        fields = _escaped(fields)
                        line = event_line(fields, id_)
                records.append((event_json(fields, id_) if want_json else None, line))
            except Exception:  # one event that cannot be written does not take its batch with it
                log.exception("audit event %s could not be serialised; dropped", fields[0])
        return records

    def _write(self, events: list[EventFields]) -> None:
        records = self._records(events)
        if not records:
            return
        for sink in self.sinks:
            try:
                sink.write(records)
                self.written[sink.name] += len(records)
                self.failing.discard(sink.name)
            except Exception as err:
                self.failed[sink.name] += len(records)
                self.failing.add(sink.name)
                now = time.monotonic()
                if now - self._last_report.get(sink.name, -_FAILURE_LOG_INTERVAL) >= _FAILURE_LOG_INTERVAL:
                    self._last_report[sink.name] = now
                    log.warning("audit sink %s failed (%s: %s); %d events not written there",
                                sink.name, type(err).__name__, err, len(records))

    def _maybe_prune(self) -> None:
        if self.events is None or not self.retention:
            return
        now = self.clock()
        if now < self.next_prune:
            return
        self.next_prune = now + self.prune_interval
        try:
            self.events.prune(now - self.retention)
        except Exception as err:
            log.warning("audit retention prune failed (%s: %s); retried in %ds", type(err).__name__, err,
                        self.prune_interval)


def _escaped(value: Any) -> Any:
    """Return ``value`` with every string writable: a lone surrogate shown as its escape (``\\ud800``)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, tuple | list):
        return type(value)(_escaped(item) for item in value)
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    return value


class AuditLog:
    """Audit events for one server: ``emit``/``record`` from any thread, written by one background thread.

    ``events`` is the store sink's backend, which also answers queries. With no
    sinks the log is disabled and ``emit`` returns at once.
    """

    def __init__(self, sinks: Sequence[Sink] = (), *, events: EventStore | None = None,
                 queue_size: int = 10000, clock: Callable[[], int] = wall_clock,
                 session_key: bytes | None = None, retention: int = 30 * 86400,
                 prune_interval: int = PRUNE_INTERVAL) -> None:
        self.sinks = tuple(sinks)
        self.events = events
        self.queue_size = queue_size
        self.retention = retention
        self.enabled = bool(self.sinks)
        self.dropped = Tally()  # reason
        self._session_key = session_key or secrets.token_bytes(32)
        self.address_of: Callable[[Any], str] | None = None  # the server sets its client_address here
        self._digests: dict[str, str] = {}
        self._queue: SimpleQueue = SimpleQueue()
        self._writer = _Writer(self._queue, self.sinks, events, clock=clock, retention=retention,
                               prune_interval=prune_interval)
        self._thread: threading.Thread | None = None
        if self.enabled:
            self._thread = threading.Thread(target=self._writer.run, name="policy-sso-audit", daemon=True)
            self._thread.start()
            # a log nobody holds any more (a test's app) stops its thread and closes its sinks
            weakref.finalize(self, self._queue.put, _STOP)

    @classmethod
    def disabled(cls) -> AuditLog:
        """Return a log that records nothing."""
        return cls()

    # emitting -------------------------------------------------------------------------
    def emit(self, event: AuditEvent) -> None:
        """Queue an event for the sinks; never blocks (a full queue drops it and counts the drop)."""
        if self.enabled:
            self._put(event.fields())

    def _put(self, fields: EventFields) -> None:
        if self._queue.qsize() >= self.queue_size:
            self.dropped.add("queue_full")
            return
        self._queue.put(fields)

    def session_digest(self, session_id: str) -> str:
        """Return the keyed digest that names a session in events (HMAC-SHA-256, 128 bits): never the id."""
        digest = self._digests.get(session_id)
        if digest is None:
            if len(self._digests) >= DIGEST_CACHE:
                self._digests.clear()  # bounded; a silent-SSO session asks again and again
            # of the store's key for it: one name whether the caller held the id or only the key
            # (the sessions a store hands out unasked, e.g. an admin ending them)
            named = store_key(session_id).encode()
            digest = self._digests[session_id] = hmac.digest(self._session_key, named, "sha256")[:16].hex()
        return digest

    def record(self, type_: str, now: int, *, outcome: str = "", client: str | None = None,
               subject: str | None = None, session_id: str | None = None, reasons: Iterable[Any] = (),
               **details: Any) -> None:
        """Emit an event of ``type_`` with the current request's id, address and user agent."""
        if not self.enabled:
            return
        request_id, ip, agent, endpoint = request_fields(self.address_of)
        self._put((type_, now, "", outcome, client, subject,
                   self.session_digest(session_id) if session_id else None,
                   request_id, ip, agent, endpoint, tuple(reasons), details))

    def decision(self, type_: str, client_id: str, session: Any, decision: Any, now: int, *,
                 request: Any = None, users: Mapping[str, Any] | None = None, **details: Any) -> None:
        """Emit a policy decision: outcome, every reason with its policy line, silent or interactive.

        Without a session, the subject is the one an id_token_hint or a
        login_hint names, when that is a user of the tenant.
        """
        if not self.enabled:
            return
        subject = session.subject if session is not None else None
        if subject is None and request is not None:
            hinted = request.id_token_hint_sub or request.login_hint_sub
            subject = hinted if users is not None and hinted in users else None
        if request is not None:
            details.setdefault("silent", request.silent)
            details.setdefault("scopes", request.scopes)  # a frozenset: sorted by the writer
        details["policy"] = decision.policy
        # built here rather than through record(): this runs on every authorization request. The
        # request thread only gathers references into a tuple; the writer thread formats them
        request_id, ip, agent, endpoint = request_fields(self.address_of)
        self._put((type_, now, "", decision.outcome, client_id, subject,
                   self.session_digest(session.id) if session is not None else None,
                   request_id, ip, agent, endpoint, decision.reasons, details))

    def reload_listener(self) -> Callable[[Any], None]:
        """Return a TenantHolder listener that records each reload's result (it holds the log weakly)."""
        ref = weakref.ref(self)

        def listen(result: Any) -> None:
            audit = ref()
            if audit is None:
                return
            diagnostics = [{"file": d.file, "line": d.line, "col": d.col, "code": d.code,
                            "message": d.message, "severity": d.severity}
                           for d in result.diagnostics[:MAX_DIAGNOSTICS]]
            audit.record("policy.reload", request_now(), outcome="accepted" if result.applied else "rejected",
                         policies=result.policies, diagnostics=diagnostics,
                         diagnostics_total=len(result.diagnostics))

        return listen

    def backchannel_listener(self) -> Callable[[str, bool], None]:
        """Return the notifier's ``on_result`` hook: each finished delivery as a ``backchannel.delivery``."""
        ref = weakref.ref(self)

        def listen(client_id: str, delivered: bool) -> None:
            audit = ref()
            if audit is not None:
                audit.record("backchannel.delivery", wall_clock(), client=client_id,
                             outcome="delivered" if delivered else "failed")

        return listen

    def refusals(self, tally: Tally) -> AuditedTally:
        """Return ``tally`` wrapped so each rate-limit refusal is also a ``rate_limit.refused`` event."""
        return AuditedTally(tally, self, "rate_limit.refused")

    # reading and housekeeping -----------------------------------------------------------
    def failing_sinks(self) -> list[str]:
        """Return the sinks that cannot be written: their last write failed and they still fail a check.

        ``/readyz`` asks: an instance whose events go nowhere is not ready
        (SPEC §7 "every decision is on record"). A sink whose check passes
        again (the disk was freed, the store is back) counts as writable from
        then on, without waiting for the next event to prove it.
        """
        failing = []
        for sink in self.sinks:
            if sink.name not in self._writer.failing:
                continue
            try:
                check = getattr(sink, "check", None)
                if check is None:  # a sink that cannot be asked fails until a write succeeds
                    raise OSError("no check")
                check()
            except Exception:
                failing.append(sink.name)
            else:
                self._writer.failing.discard(sink.name)
        return failing

    def stats(self) -> dict[str, Any]:
        """Return the counts: dropped (queue full), and written and failed per sink."""
        return {"dropped": sum(self.dropped.snapshot().values()), "written": dict(self._writer.written),
                "failed": dict(self._writer.failed), "queued": self._queue.qsize()}

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event queued so far is written; return False on timeout (a stalled sink)."""
        if self._thread is None:
            return True
        marker = _Flush()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def prune(self, now: int) -> int:
        """Delete stored events older than the retention period at ``now``; return how many."""
        if self.events is None:
            return 0
        return self.events.prune(now - self.retention)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, stop the thread and close the sinks."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None
        self.enabled = False
