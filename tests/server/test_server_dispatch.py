"""Quick routes run on waitress's I/O loop, the rest on its worker threads (server.dispatch).

Over a real loopback socket: which thread serves which path, the loop never
waiting for itself on a long answer, a slow request on the loop sending
everything to the threads for a while (with a warning), a slow threaded
request not holding up the loop, and the app's own failure on the loop
answered with a 500 while serving goes on. Then the real app: ``serve``'s
loop paths serve silent sign-in on the loop and the password form on a thread.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from support import serving

from server.app import LOOP_PATHS
from server.dispatch import LoopDispatcher
from server.limits import create_server

LOOP = {"/quick", "/slow-on-loop", "/long", "/fails", "/ms"}


def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    path = environ["PATH_INFO"]
    if path.startswith("/slow"):
        time.sleep(0.3)
    if path == "/ms":
        time.sleep(0.002)
    if path == "/fails":
        raise RuntimeError("the app failed")
    body = threading.current_thread().name.encode()
    if path == "/long":
        body = body.ljust(4 * 1024 * 1024, b".")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def server() -> Iterator[Any]:
    live = create_server(app, host="127.0.0.1", port=0, threads=2, loop_paths=LOOP)
    live.adj.outbuf_high_watermark = 64 * 1024  # far below /long: a worker thread would wait for the loop
    with serving(live) as running:
        yield running


def url(server: Any, path: str) -> str:
    return f"http://127.0.0.1:{server.effective_port}{path}"


def served_by(server: Any, path: str) -> str:
    response = requests.get(url(server, path), timeout=10)
    assert response.status_code == 200, response.text
    return response.text.rstrip(".")


def test_loop_paths_run_on_the_loop_and_the_rest_on_worker_threads(server: Any) -> None:
    loop = served_by(server, "/quick")
    assert not loop.startswith("waitress-")  # the thread running the loop (the test's server thread)
    assert served_by(server, "/elsewhere").startswith("waitress-")
    assert served_by(server, "/quick") == loop
    assert served_by(server, "/quick/").startswith("waitress-")  # only the exact path


def test_a_long_answer_on_the_loop_reaches_a_slow_reader_whole(server: Any) -> None:
    # past the high watermark a worker thread waits for the loop to send; the loop cannot wait for itself
    with socket.create_connection(("127.0.0.1", server.effective_port), timeout=20) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.sendall(b"GET /long HTTP/1.1\r\nHost: x\r\n\r\nGET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        received = bytearray()
        while received.count(b"HTTP/1.1 200") < 2 or not received.rstrip(b".").endswith(
                served_by(server, "/quick").encode()):
            chunk = sock.recv(1 << 16)
            assert chunk, bytes(received[-200:])
            received += chunk
    assert received.count(b".") >= 4 * 1024 * 1024 - 100


def test_a_request_that_holds_the_loop_sends_requests_to_the_threads_for_a_while(
        server: Any, caplog: pytest.LogCaptureFixture) -> None:
    dispatcher: LoopDispatcher = server.task_dispatcher
    with caplog.at_level(logging.WARNING, logger="policy_sso.server"):
        assert not served_by(server, "/slow-on-loop").startswith("waitress-")  # over the 50 ms budget
        deadline = time.monotonic() + 5  # the loop measures the request once its answer is sent
        while "held the I/O loop" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
    assert "/slow-on-loop held the I/O loop for 3" in caplog.text
    assert "every request goes to the worker threads for the next 5 s" in caplog.text
    assert served_by(server, "/quick").startswith("waitress-")
    dispatcher.threaded_until = dispatcher.clock()  # the interval has passed
    assert not served_by(server, "/quick").startswith("waitress-")


def test_a_slow_request_on_a_worker_thread_does_not_hold_up_the_loop(server: Any) -> None:
    slow = threading.Thread(target=served_by, args=(server, "/slow-elsewhere"))
    started = time.monotonic()
    slow.start()
    time.sleep(0.05)
    for _ in range(20):
        served_by(server, "/quick")
    quick_done = time.monotonic() - started
    slow.join()
    assert quick_done < 0.3, quick_done  # answered while the slow one still slept


def test_the_apps_failure_on_the_loop_is_a_500_and_serving_goes_on(server: Any) -> None:
    response = requests.get(url(server, "/fails"), timeout=10)
    assert response.status_code == 500
    assert "the app failed" not in response.text  # no traceback for the client
    assert not served_by(server, "/quick").startswith("waitress-")


def test_waitress_refusals_are_answered_on_the_loop(server: Any) -> None:
    with socket.create_connection(("127.0.0.1", server.effective_port), timeout=10) as sock:
        sock.sendall(b"GET /quick HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):  # the refusal closes the connection
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400") and b'"error": "invalid_request"' in answer


@pytest.mark.parametrize("request_line", [b"GET /a b HTTP/1.1", b"GET /quick?x=\xff HTTP/1.1",
                                          b"GET \xff HTTP/1.1", b"NOT-A-REQUEST"])
def test_a_malformed_request_line_gets_a_400_and_logs_no_error(server: Any, request_line: bytes,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    # waitress's refusal of a request line has no path: reading one was an ERROR with a frame list, no answer
    with caplog.at_level(logging.WARNING), socket.create_connection(
            ("127.0.0.1", server.effective_port), timeout=10) as sock:
        sock.sendall(request_line + b"\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    # an unreadable start line has no version of its own: waitress answers it as HTTP/1.0
    assert answer.split(b" ", 2)[1] == b"400" and b'"error": "invalid_request"' in answer, answer
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert served_by(server, "/quick")  # serving goes on


def test_a_long_pipeline_goes_to_the_threads_once_it_has_held_the_loop_for_its_budget(server: Any) -> None:
    count = 200  # 2 ms each: 0.4 s in all, far past the 50 ms one loop turn may take
    with socket.create_connection(("127.0.0.1", server.effective_port), timeout=20) as sock:
        sock.sendall(b"GET /ms HTTP/1.1\r\nHost: x\r\n\r\n" * count)
        time.sleep(0.05)
        started = time.monotonic()
        served_by(server, "/quick")  # another client is answered while the pipeline is still served
        waited = time.monotonic() - started
        received = bytearray()
        while received.count(b"HTTP/1.1 200") < count:
            chunk = sock.recv(1 << 16)
            assert chunk
            received += chunk
    assert waited < 0.2, waited
    names = [part.split(b"\r\n\r\n", 1)[1][:9] for part in bytes(received).split(b"HTTP/1.1 200")[1:]]
    assert b"waitress-" in names and any(not name.startswith(b"waitress-") for name in names)
    assert server.task_dispatcher.threaded_until == float("-inf")  # no request overran: no threaded period


class FakeRequest:
    def __init__(self, path: str) -> None:
        self.path, self.error = path, None


class FakeChannel:
    """A channel whose one request takes ``seconds`` on the dispatcher's fake clock."""

    def __init__(self, clock: list[float], seconds: float) -> None:
        self.clock, self.seconds, self.requests, self.served = clock, seconds, [FakeRequest("/quick")], 0

    def service(self) -> None:
        self.clock[0] += self.seconds
        self.served += 1


def test_overruns_that_keep_coming_lengthen_the_threaded_period_up_to_a_ceiling() -> None:
    clock = [1000.0]
    dispatcher = LoopDispatcher({"/quick"}, clock=lambda: clock[0])
    dispatcher.loop_turn()
    periods = []
    for _ in range(9):  # a store that stays down: each first request back on the loop waits it out
        while clock[0] < dispatcher.threaded_until:
            clock[0] += 1
        dispatcher.add_task(FakeChannel(clock, 1.0))
        assert len(dispatcher.ready) == 1  # back on the loop once the period is over
        dispatcher.run_ready()
        periods.append(dispatcher.threaded_until - clock[0])
    assert periods == [5, 10, 20, 40, 80, 160, 300, 300, 300]
    dispatcher.add_task(FakeChannel(clock, 1.0))
    assert not dispatcher.ready and len(dispatcher.queue) == 1  # within the period: to the threads
    clock[0] = dispatcher.threaded_until + 1000  # the store recovered long ago
    dispatcher.add_task(FakeChannel(clock, 1.0))
    dispatcher.run_ready()
    assert dispatcher.threaded_until - clock[0] == 5  # a fresh overrun starts from the shortest period


def test_serve_runs_silent_sign_in_on_the_loop_and_password_forms_on_threads() -> None:
    # the routes that hash passwords, call other servers or read every worker's files stay off the loop
    assert {"/authorize", "/token", "/userinfo", "/jwks", "/healthz"} <= LOOP_PATHS
    assert not LOOP_PATHS & {"/login", "/consent", "/account", "/logout", "/v1/auth/password",
                             "/v1/auth/otp", "/readyz", "/metrics", "/enrol/totp", "/enrol/passkey"}
    assert not any(path.startswith("/admin") for path in LOOP_PATHS)
