"""The non-blocking writer and the stdout and file sinks (issue 15)."""

from __future__ import annotations

import gc
import io
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest
from support import FakeClock

from policy_sso.audit import AuditEvent, AuditLog, AuditSettings, audit_settings, bind_request
from policy_sso.audit.configure import audit_log
from policy_sso.audit.query import EventQuery
from policy_sso.audit.sinks import FileSink, StdoutSink, StoreSink
from policy_sso.audit.stores import EventStore, MemoryEventStore, Record, RedisEventStore, SQLiteEventStore

T0 = 1_800_000_000


class StalledSink:
    """A sink whose write blocks until released: a disk that hangs, a pipe nobody reads."""

    name = "stalled"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.written: list[Record] = []

    def write(self, records: Sequence[Record]) -> None:
        self.entered.set()
        self.release.wait(30)
        self.written.extend(records)

    def close(self) -> None:
        self.release.set()


def test_a_stalled_sink_never_makes_emit_wait_and_drops_are_counted() -> None:
    sink = StalledSink()
    log = AuditLog([sink], queue_size=10)
    try:
        log.record("sign_in.success", T0, subject="u-alice")
        assert sink.entered.wait(10)  # the writer thread is now stuck in the sink
        started = time.monotonic()
        for _ in range(500):
            log.record("authorization.decision", T0, subject="u-alice")
        elapsed = time.monotonic() - started
        assert elapsed < 2.0, f"500 emits took {elapsed:.2f}s"  # ~ms; generous for a loaded machine
        stats = log.stats()
        assert stats["dropped"] >= 480 and stats["queued"] <= 11
        assert not log.flush(timeout=0.2)  # the sink is still stalled
    finally:
        sink.release.set()
        log.close()
    assert len(sink.written) == 1 + 500 - log.stats()["dropped"]


def test_retention_is_pruned_by_the_writer_on_its_clock() -> None:
    clock = FakeClock()
    events = MemoryEventStore()
    log = AuditLog([StoreSink(events)], events=events, clock=clock, retention=86400, prune_interval=3600)
    try:
        log.record("sign_in.success", T0, subject="u-alice")
        log.record("sign_in.success", T0 + 86000, subject="u-bob")
        assert log.flush()
        assert len(events.query(EventQuery()).events) == 2
        clock.now = T0 + 86400 + 1  # the first event is now past retention
        log.record("sign_in.success", clock.now, subject="u-carol")
        assert log.flush()
        assert [e["subject"] for e in events.query(EventQuery()).events] == ["u-carol", "u-bob"]
        clock.now += 600  # within the prune interval: no prune is due
        assert log.prune(T0 + 2 * 86400) == 1  # an explicit prune at a later time
    finally:
        log.close()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_store_retention_with_a_fake_clock(backend: str, tmp_path: Path,
                                           request: pytest.FixtureRequest) -> None:
    clock = FakeClock()
    if backend == "sqlite":
        events: EventStore = SQLiteEventStore(tmp_path / "store.db")
    else:
        events = RedisEventStore.from_url(request.getfixturevalue("redis_url"))
        events.redis.delete(events.key)
    log = AuditLog([StoreSink(events)], events=events, clock=clock, retention=3600, prune_interval=60)
    try:
        for t in (T0, T0 + 1800, T0 + 3599):
            log.record("token.issued", t, client="portal")
        assert log.flush()
        clock.now = T0 + 3600 + 1800 + 1
        log.record("token.issued", clock.now, client="portal")
        assert log.flush()
        assert [e["time"] for e in events.query(EventQuery()).events] == [clock.now, T0 + 3599]
    finally:
        log.close()


def test_the_stdout_sink_writes_one_json_object_a_line() -> None:
    out = io.StringIO()
    log = AuditLog([StdoutSink(out)])
    log.record("sign_in.failure", T0, outcome="failure", factor="pwd", failure="wrong_password",
               password="must-not-appear")
    log.close()
    (line,) = out.getvalue().splitlines()
    event = json.loads(line)
    assert (event["type"], event["outcome"], event["details"]) == (
        "sign_in.failure", "failure", {"factor": "pwd", "failure": "wrong_password"})
    assert "must-not-appear" not in out.getvalue()


def test_the_file_sink_rotates_by_size_and_keeps_n_files(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "audit.jsonl", max_bytes=4096, keep=3)
    log = AuditLog([sink])
    for i in range(400):
        log.record("authorization.decision", T0 + i, client="portal", subject=f"u-{i}")
    log.close()
    files = sink.rotated()
    assert [f.name for f in files] == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.3"]
    assert all(f.stat().st_size <= 4096 for f in files)
    assert (tmp_path / "audit.jsonl").stat().st_mode & 0o777 == 0o600
    lines = [json.loads(line) for f in reversed(files) for line in f.read_text().splitlines()]
    subjects = [e["subject"] for e in lines]
    assert subjects[-1] == "u-399" and subjects == sorted(subjects, key=lambda s: int(s[2:]))


def test_sessions_are_named_by_a_keyed_digest_and_requests_by_their_fields() -> None:
    out = io.StringIO()
    log = AuditLog([StdoutSink(out)], session_key=b"k" * 32)
    req = SimpleNamespace(context=SimpleNamespace(request_id="abc-1", now=T0), remote_addr="192.0.2.7",
                          user_agent="Mozilla/5.0", uri_template="/authorize", path="/authorize")
    bind_request(req)
    try:
        log.record("authorization.decision", T0, session_id="the-session-id-1234567890")
    finally:
        bind_request(None)
    log.close()
    event = json.loads(out.getvalue())
    assert "the-session-id" not in out.getvalue()
    assert event["session"] == AuditLog(session_key=b"k" * 32).session_digest("the-session-id-1234567890")
    assert len(event["session"]) == 32
    assert (event["request_id"], event["ip"], event["user_agent"], event["endpoint"]) == (
        "abc-1", "192.0.2.7", "Mozilla/5.0", "/authorize")


def test_a_log_nobody_holds_stops_its_thread() -> None:
    def threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "policy-sso-audit"}

    # this log's own thread, by identity: an earlier test's log may stop meanwhile, so a count would lie
    before = threads()
    log = AuditLog([StdoutSink(io.StringIO())])
    (thread,) = threads() - before
    del log
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()


def test_a_disabled_log_records_nothing() -> None:
    log = AuditLog.disabled()
    log.emit(AuditEvent("sign_in.success", T0))
    assert not log.enabled and log.stats()["queued"] == 0 and log.flush()


def test_settings_and_configuration(tmp_path: Path) -> None:
    assert audit_settings(None) == AuditSettings()
    settings = audit_settings({"sinks": ["stdout", "file", "store"], "file": "events/a.jsonl",
                               "rotate_bytes": 8192, "rotate_keep": 2, "retention": "7d", "queue_size": 64})
    assert (settings.retention, settings.queue_size) == (7 * 86400, 64)
    log = audit_log(settings, state_dir=tmp_path, store_url=f"sqlite:///{tmp_path}/s.db",
                    stdout=io.StringIO())
    try:
        assert [s.name for s in log.sinks] == ["stdout", "file", "store"]
        assert isinstance(log.events, SQLiteEventStore)
        log.record("policy.reload", T0, outcome="accepted")
        assert log.flush()
        assert (tmp_path / "events" / "a.jsonl").read_text().count("policy.reload") == 1
    finally:
        log.close()
    assert not audit_log(audit_settings({"sinks": []}), state_dir=tmp_path).enabled


@pytest.mark.parametrize("sinks", [["stdout"], ["store"]], ids=["stdout", "store"])
def test_a_failing_sink_is_counted_and_the_others_still_write(sinks: list[str]) -> None:
    class Broken:
        name = "broken"

        def write(self, records: Sequence[Record]) -> None:
            raise OSError("disk full")

        def close(self) -> None:
            pass

    events = MemoryEventStore()
    good = StdoutSink(io.StringIO()) if sinks == ["stdout"] else StoreSink(events)
    log = AuditLog([Broken(), good], events=events)
    log.record("sign_in.success", T0)
    assert log.flush()
    stats = log.stats()
    log.close()
    assert stats["failed"]["broken"] == 1 and stats["written"][good.name] == 1


def test_reload_and_backchannel_listeners_record_and_hold_the_log_weakly() -> None:
    from policy_sso.diagnostics import Diagnostic
    from policy_sso.reload import ReloadResult

    out = io.StringIO()
    log = AuditLog([StdoutSink(out)])
    on_reload, on_delivery = log.reload_listener(), log.backchannel_listener()
    on_reload(ReloadResult(False, (Diagnostic("portal.policy", 2, 3, "E_UNKNOWN_ACR", "unknown acr 'x'"),)))
    on_delivery("payments-web", False)
    on_delivery("portal", True)
    log.close()
    reload_event, *deliveries = [json.loads(line) for line in out.getvalue().splitlines()]
    assert (reload_event["type"], reload_event["outcome"], reload_event["details"]["diagnostics"]) == (
        "policy.reload", "rejected", [{"file": "portal.policy", "line": 2, "col": 3, "code": "E_UNKNOWN_ACR",
                                       "message": "unknown acr 'x'", "severity": "error"}])
    assert [(e["type"], e["client"], e["outcome"]) for e in deliveries] == [
        ("backchannel.delivery", "payments-web", "failed"), ("backchannel.delivery", "portal", "delivered")]
    del log
    gc.collect()
    on_reload(ReloadResult(True, ()))  # the log is gone: nothing happens, nothing raises
    on_delivery("portal", True)


def test_an_event_with_a_lone_surrogate_is_written_escaped_and_spares_its_batch(tmp_path: Path) -> None:
    # a client's JSON "\ud800" that reached an event made every sink refuse the whole batch
    events = SQLiteEventStore(tmp_path / "policy-sso.db")
    out = io.StringIO()
    log = AuditLog([StoreSink(events), StdoutSink(out)], events=events)
    try:
        log.record("sign_in.success", T0, subject="u-alice")
        log.record("api.decision", T0, subject="u-bob", scope="profile \ud800")
        log.record("sign_in.success", T0 + 1, subject="u-carol")
        assert log.flush()
        stats = log.stats()
        stored = {e["subject"]: e for e in events.query(EventQuery()).events}
    finally:
        log.close()
    assert set(stored) == {"u-alice", "u-bob", "u-carol"}
    assert stored["u-bob"]["details"]["scope"] == "profile \\ud800"  # shown as its escape
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["subject"] for e in lines] == ["u-alice", "u-bob", "u-carol"]
    assert not any(stats.get("failed", {}).values()), stats
