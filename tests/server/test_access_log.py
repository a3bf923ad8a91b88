"""The access log and the request id on every log line (server/logs.py, issue 15).

One line per request with method, path, status, bytes, duration, request id
and client address; text or JSON; never a query value (codes, states, hints,
tokens travel there); a warning logged while a request is served carries
that request's id.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import falcon.testing
import pytest

import server.logs as logs_module
from policy_sso.errors import StoreUnavailable
from policy_sso.sessions.store import open_store
from server.browser import SESSION_COOKIE
from server.dispatch import LoopDispatcher
from server.logs import LOGGERS, configure_logging

SECRETS = {"code": "c0de-s3cret", "state": "st4te-s3cret", "nonce": "n0nce-s3cret",
           "login_hint": "alice-hint-s3cret", "id_token_hint": "eyJ-hint-s3cret", "sso_token": "ss0-s3cret",
           "code_verifier": "v3rifier-s3cret", "client_secret": "cl1ent-s3cret", "password": "pa55-s3cret"}
QUERY = "client_id=portal&response_type=code&" + "&".join(f"{k}={v}" for k, v in SECRETS.items())
TEXT_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) INFO policy_sso\.access \[([^\]]+)\] "
                       r"(\S+) (\S+) (\d{3}) (\d+)B ([\d.]+)ms ip=(\S+)$")


@pytest.fixture
def logs() -> Iterator[Callable[[str], io.StringIO]]:
    """Return a function that installs serve's logging into a buffer; the loggers are restored after."""
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).level,
                    logging.getLogger(name).propagate) for name in LOGGERS}

    def install(log_format: str, level: str = "info") -> io.StringIO:
        buffer = io.StringIO()
        configure_logging(log_format, level, buffer)
        return buffer

    yield install
    logs_module._writer = None  # serve's direct writer goes with its handler
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def _lines(buffer: io.StringIO) -> list[str]:
    logs_module.flush_access_log()  # lines are written in batches (every 0.2 s or 256 lines)
    return buffer.getvalue().splitlines()


def test_one_text_line_per_request_with_its_fields(client: falcon.testing.TestClient, logs: Any) -> None:
    buffer = logs("text")
    answers = [client.simulate_get("/healthz", remote_addr="192.0.2.7"),
               client.simulate_get("/authorize", query_string=QUERY, remote_addr="192.0.2.7"),
               client.simulate_post("/token", body="grant_type=authorization_code&code=x",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                                    remote_addr="192.0.2.7"),
               client.simulate_get("/no/such/path", remote_addr="192.0.2.7")]
    lines = _lines(buffer)
    assert len(lines) == len(answers), lines
    for line, answer, (method, path) in zip(lines, answers, [
            ("GET", "/healthz"), ("GET", "/authorize"), ("POST", "/token"), ("GET", "/no/such/path")],
            strict=True):
        match = TEXT_LINE.match(line)
        assert match, line
        _, request_id, got_method, got_path, status, size, ms, ip = match.groups()
        assert (got_method, got_path, int(status)) == (method, path, answer.status_code)
        assert request_id == answer.headers["X-Request-Id"]
        assert int(size) == len(answer.content)
        assert float(ms) >= 0
        assert ip == "192.0.2.7"


def test_json_lines_parse_with_every_field(client: falcon.testing.TestClient, logs: Any) -> None:
    buffer = logs("json")
    answer = client.simulate_get("/v1/auth/session/status", query_string="client_id=portal",
                                 remote_addr="198.51.100.4")
    (line,) = _lines(buffer)
    record = json.loads(line)
    assert record["logger"] == "policy_sso.access" and record["level"] == "info"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
    assert record["request_id"] == answer.headers["X-Request-Id"]
    assert {k: record[k] for k in ("method", "path", "status", "bytes", "ip")} == {
        "method": "GET", "path": "/v1/auth/session/status", "status": 200, "bytes": len(answer.content),
        "ip": "198.51.100.4"}
    assert isinstance(record["duration_ms"], float | int)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_query_value_is_ever_logged(client: falcon.testing.TestClient, logs: Any, log_format: str) -> None:
    buffer = logs(log_format, "debug")
    for path in ("/authorize", "/login", "/logout", "/v1/auth/session/status", "/healthz", "/userinfo"):
        client.simulate_get(path, query_string=QUERY)
    client.simulate_post("/authorize", query_string=QUERY, body=QUERY,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    text = "\n".join(_lines(buffer))
    assert text.count("policy_sso.access") == 7
    for name, value in SECRETS.items():
        assert value not in text, name
    assert "?" not in "".join(line.split(" ip=")[0] for line in text.splitlines() if log_format == "text")


def test_a_path_cannot_forge_a_line(client: falcon.testing.TestClient, logs: Any) -> None:
    buffer = logs("text")
    client.simulate_get("/x%0A2026-01-01T00:00:00.000Z INFO policy_sso.access [forged]")
    (line,) = _lines(buffer)
    assert "\\n" in line and "[forged]" in line.split("] ", 1)[1]


def test_warning_lines_carry_the_request_id(make_client: Callable[..., falcon.testing.TestClient],
                                            demo: Any, logs: Any) -> None:
    class DownStore:
        """The memory store whose session reads fail as a store that is away does."""

        def __init__(self) -> None:
            self.inner = open_store("memory://", demo.settings.lifetime)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def get_session(self, *args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailable("store timed out")

    client = make_client(store=DownStore())
    buffer = logs("json")
    answer = client.simulate_get("/v1/auth/session/status", query_string="client_id=portal",
                                 headers={"Cookie": f"{SESSION_COOKIE}=abcdefghijklmnopqrstuvwxyz012345"})
    assert answer.status_code == 503
    records = [json.loads(line) for line in _lines(buffer)]
    warnings = [r for r in records if r["level"] == "warning"]
    assert warnings, records
    assert {r["request_id"] for r in warnings} == {answer.headers["X-Request-Id"]}
    assert records[-1]["logger"] == "policy_sso.access" and records[-1]["status"] == 503


def test_warning_level_turns_the_access_log_off(client: falcon.testing.TestClient, logs: Any) -> None:
    buffer = logs("text", "warning")
    client.simulate_get("/healthz")
    assert _lines(buffer) == []


def test_lines_outside_a_request_have_a_timestamp_and_no_id(logs: Any) -> None:
    import threading

    buffer = logs("text")
    thread = threading.Thread(target=lambda: logging.getLogger("policy_sso.server").warning("sweep skipped"))
    thread.start()
    thread.join()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z WARNING policy_sso\.server \[-\] sweep skipped\n",
                        buffer.getvalue())


def test_without_serve_logging_an_access_line_is_one_log_record(client: falcon.testing.TestClient,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """An application embedding the app with its own logging handlers gets the lines as records."""
    assert logs_module._writer is None
    caplog.set_level(logging.INFO, logger="policy_sso.access")
    answer = client.simulate_get("/healthz", query_string="code=c0de-s3cret")
    (record,) = [r for r in caplog.records if r.name == "policy_sso.access"]
    assert record.request_id == answer.headers["X-Request-Id"]
    assert record.access[:4] == ("GET", "/healthz", 200, len(answer.content))
    assert "c0de" not in record.getMessage()


def test_queued_lines_are_written_without_being_asked(client: falcon.testing.TestClient, logs: Any) -> None:
    """The flusher thread writes within a fraction of a second; a burst is written by the request itself."""
    import time

    buffer = logs("text")
    answer = client.simulate_get("/healthz")
    deadline = time.monotonic() + 10  # the flusher runs every 0.2 s; a loaded machine may be slow
    while answer.headers["X-Request-Id"] not in buffer.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answer.headers["X-Request-Id"] in buffer.getvalue()
    writer = logs_module._writer
    writer.FLUSH_SECONDS = 3600  # the flusher already sleeps its 0.2 s; this instance's next naps are long
    for _ in range(writer.FLUSH_LINES):
        client.simulate_get("/healthz")
    assert len(writer.queue) < writer.FLUSH_LINES  # the request that filled the queue wrote it


def test_waitress_queue_depth_warnings_are_held_to_one_per_interval(logs: Any) -> None:
    buffer = logs("text")
    clock = [1000.0]
    dispatcher = LoopDispatcher()  # the server's dispatcher, with no worker threads: every task waits
    dispatcher.queue_depth = logs_module.EveryInterval(10.0, clock=lambda: clock[0])
    for _ in range(5):  # a burst: waitress itself would warn once per request queued
        dispatcher.add_task(object())
        clock[0] += 1
    clock[0] += 10
    for _ in range(4):
        dispatcher.add_task(object())
    lines = [line for line in buffer.getvalue().splitlines() if "waitress.queue" in line]
    assert len(lines) == 2, lines
    assert lines[0].endswith("Task queue depth is 1")
    assert lines[1].endswith("Task queue depth is 6 (4 such warnings held back in the last 10 s)")
    assert len(dispatcher.queue) == 9  # held-back warnings, not held-back tasks
