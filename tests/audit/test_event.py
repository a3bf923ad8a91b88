"""An event's JSON line: written member by member, byte for byte the generic encoding of its object."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from policy_sso.audit import AuditEvent, AuditLog, ReasonRecord, bind_request
from policy_sso.audit.event import encode_line, event_json, event_line
from policy_sso.audit.query import EventQuery
from policy_sso.audit.sinks import FileSink, StdoutSink, StoreSink
from policy_sso.audit.stores import MemoryEventStore
from policy_sso.decision import Decision, Reason
from policy_sso.request import AuthRequest

T0 = 1_800_000_000


class _Set(frozenset):
    """A frozenset subclass: written sorted, as a frozenset is."""


class _Text(str):
    """A str subclass (an enum's value, say): written as the string."""


class _Number(int):
    """An int subclass: written as the number."""

REASONS = (ReasonRecord("mfa_required", "policies/payments.policy:10", "two distinct factors (mfa)",
                        "session amr pwd (factors: knowledge)"),
           ReasonRecord("acr_insufficient", "policies/payments.policy:11"))

CASES = {
    "silent-allow": AuditEvent(
        "authorization.decision", T0, "", "allow", "portal", "u-alice", "ab" * 16, "5f0c2a9e-1a", "127.0.0.1",
        "Mozilla/5.0", "/authorize", (),
        {"silent": True, "scopes": frozenset({"profile", "openid"}), "policy": "portal"}),
    "refusal-with-reasons": AuditEvent(
        "authorization.decision", T0, "e1", "interaction_required", "payments-web", "u-alice",
        reasons=REASONS, details={"silent": False, "interaction": True}),
    "all-null": AuditEvent("key.reload", T0),
    "escapes-and-unicode": AuditEvent("sign_in.failure", T0, outcome="failure",
                                      user_agent='Ünïcødé "quoted" \\ back\x00\x1f\u2028 tab\t☃ 😀',
                                      subject="ü", details={"failure": "wrong\npassword"}),
    "details-of-every-kind": AuditEvent("policy.reload", T0, outcome="rejected", details={
        "diagnostics": [{"file": "a.policy", "line": 2, "col": 3, "code": "E_X", "message": "m ü"}],
        "diagnostics_total": 1, "ratio": 0.25, "nothing": None, "flag": False, "ints": {3, 1, 2},
        "policies": ("a", "b"), "nested": {"k": [1, {"z": None}]}, "big": 2**70, "empty": frozenset()}),
    "secrets-dropped": AuditEvent("sign_in.failure", T0, outcome="failure", details={
        "password": "hunter2", "otp": "123456", "code": "c", "token": "t", "factor": "pwd"}),
    "non-string-fields": AuditEvent(
        "admin.refused", T0, outcome="refused", client=7,  # type: ignore[arg-type]
        details={1: "int key", 2.5: "float key", False: "bool key", None: "none key"}),
    "float-time": AuditEvent("key.reload", T0 + 0.5),  # type: ignore[arg-type]
    "object-details": AuditEvent("key.reload", T0, details={"path": Path("/etc/x")}),  # default=str
    "subclassed-values": AuditEvent("key.reload", T0, outcome=_Text("accepted"),
                                    details={"set": _Set({"b", "a"}), "text": _Text("t"), "n": _Number(3)}),
}


@pytest.mark.parametrize("event", CASES.values(), ids=CASES.keys())
def test_the_line_is_the_generic_encoding_of_the_object(event: AuditEvent) -> None:
    fields = event.fields()
    data = event_json(fields, event.id or "id-1")
    line = event_line(fields, event.id or "id-1")
    assert line == encode_line(data)
    assert json.loads(line) == json.loads(encode_line(data))
    assert "hunter2" not in line and "123456" not in line


def test_a_lazy_reason_is_formatted_by_the_writer_and_written_in_full() -> None:
    formatted = []

    def observe(request: object, session: object, now: int) -> str:
        formatted.append(now)
        return f"session amr pwd at {now}"

    reason = Reason("mfa_required", "two distinct factors (mfa)", (observe, None, None, T0),
                    "policies/payments.policy:10")
    decision = Decision("interaction_required", (reason,), None, "payments")
    events = MemoryEventStore()
    out = SimpleNamespace(lines=[])
    log = AuditLog([StoreSink(events), StdoutSink(_Lines(out.lines))], events=events)
    session = SimpleNamespace(id="the-session-id-0123456789", subject="u-alice")
    request = AuthRequest.from_params("payments-web", {"scope": "openid profile", "prompt": "none"})
    log.decision("authorization.decision", "payments-web", session, decision, T0, request=request)
    assert log.flush()
    log.close()
    (line,) = out.lines
    stored = events.query(EventQuery()).events[0]
    assert line == encode_line(stored)  # the store's object and the line agree
    assert stored["reasons"] == [{"code": "mfa_required", "source": "policies/payments.policy:10",
                                  "required": "two distinct factors (mfa)",
                                  "observed": f"session amr pwd at {T0}"}]
    assert stored["details"] == {"silent": True, "scopes": ["openid", "profile"], "policy": "payments"}
    assert "the-session-id" not in line
    assert stored["session"] == log.session_digest("the-session-id-0123456789")


class _Lines:
    """A text stream that keeps the lines written to it."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def write(self, text: str) -> None:
        self.lines.extend(text.splitlines())

    def flush(self) -> None:
        pass


def test_the_file_sink_writes_each_batch_whole_and_in_order(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "audit.jsonl")
    log = AuditLog([sink])
    req = SimpleNamespace(context=SimpleNamespace(request_id="abc-1", now=T0), remote_addr="192.0.2.7",
                          user_agent="Mozilla/5.0", uri_template="/authorize", path="/authorize")
    bind_request(req)
    try:
        for i in range(300):
            log.record("authorization.decision", T0 + i, outcome="allow", client="portal", subject=f"u-{i}",
                       silent=True)
    finally:
        bind_request(None)
    log.close()
    lines = (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["subject"] for e in events] == [f"u-{i}" for i in range(300)]
    assert all(line == encode_line(event) for line, event in zip(lines, events, strict=True))
    assert (events[0]["ip"], events[0]["endpoint"], events[0]["details"]) == ("192.0.2.7", "/authorize",
                                                                             {"silent": True})
