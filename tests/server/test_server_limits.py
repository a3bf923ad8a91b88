"""waitress limits over real sockets on loopback: big bodies refused unread, idle connections shed.

Issue 14: a 400 MiB body to /token was spooled to disk before the app's 64 KiB
check, and 110 half-open connections made /healthz time out.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import support

from policy_sso.oidc.keys import KeyRing
from policy_sso.sessions.store import open_store
from policy_sso.tenant import Tenant
from server.app import create_app
from server.limits import ServerLimits, create_server


@contextlib.contextmanager
def serving(demo: Tenant, ring: KeyRing, limits: ServerLimits | None = None) -> Iterator[Any]:
    store = open_store("memory://", demo.settings.lifetime)
    server = create_server(create_app(demo, store, ring, clock=lambda: 1_800_000_000), host="127.0.0.1",
                           port=0, threads=2, limits=limits)
    with support.serving(server):
        yield server


def connect(server: Any, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.effective_port), timeout=timeout)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def healthz_seconds(server: Any) -> float:
    started = time.monotonic()
    with connect(server, timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        status, _, _ = read_response(sock)
    assert status == 200
    return time.monotonic() - started


def test_a_huge_body_is_refused_before_it_is_read(demo: Tenant, ring: KeyRing) -> None:
    with serving(demo, ring) as server, connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 419430400\r\n\r\n" + b"a" * 4096)
        status, headers, body = read_response(sock)
        assert status == 413
        assert headers["content-type"] == "application/json"
        error = json.loads(body)
        assert error["error"] == "invalid_request" and error["error_description"]
        assert time.monotonic() - started < 5  # answered at the headers, not after 400 MiB


def test_a_chunked_body_over_the_limit_is_refused(demo: Tenant, ring: KeyRing) -> None:
    limits = ServerLimits(max_request_body_size=1024)
    with serving(demo, ring, limits) as server, connect(server) as sock:
        chunk = b"a" * 4096
        sock.sendall(b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
                     + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n")
        status, _, body = read_response(sock)
        assert status == 413
        assert json.loads(body)["error"] == "invalid_request"


def test_a_body_within_the_limit_reaches_the_app(demo: Tenant, ring: KeyRing) -> None:
    with serving(demo, ring) as server, connect(server) as sock:
        body = b"grant_type=client_credentials&client_id=nobody"
        sock.sendall(b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status, _, answer = read_response(sock)
        assert status == 401
        assert json.loads(answer)["error"] == "invalid_client"


def test_oversized_headers_are_refused_with_json(demo: Tenant, ring: KeyRing) -> None:
    limits = ServerLimits(max_request_header_size=4096)
    with serving(demo, ring, limits) as server, connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: " + b"c" * 8192 + b"\r\n\r\n")
        status, _, body = read_response(sock)
        assert status == 431
        assert json.loads(body)["error"] == "invalid_request"


@pytest.mark.parametrize(("limits", "ceiling"), [
    (None, 2.5),  # the defaults: 110 connections are far below the limit
    # at the limit, the longest-idle connections are closed (after a second idle) so healthz gets in;
    # channel_timeout alone would have taken two minutes
    (ServerLimits(connection_limit=50, channel_timeout=120), 10.0),
], ids=["defaults", "limit-reached-idle-shed"])
def test_half_open_connections_do_not_starve_healthz(demo: Tenant, ring: KeyRing,
                                                     limits: ServerLimits | None, ceiling: float) -> None:
    with serving(demo, ring, limits) as server:
        idle = []
        try:
            for _ in range(110):
                sock = connect(server)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
                idle.append(sock)
            assert healthz_seconds(server) < ceiling
        finally:
            for sock in idle:
                sock.close()


class _Recorder:
    """A waitress channel that records what a task writes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.server = type("Server", (), {"adj": type("Adj", (), {"ident": "policy-sso"})()})()

    def write_soon(self, data: bytes) -> int:
        self.writes.append(data)
        return len(data)


def _task(headers: list[tuple[str, str]]) -> tuple[Any, _Recorder]:
    from server.limits import _OneWriteTask

    channel = _Recorder()
    task = _OneWriteTask(channel, type("Request", (), {"version": "1.1", "headers": {}})())
    task.status, task.response_headers, task.complete = "200 OK", headers, True
    for name, value in headers:
        if name == "Content-Length":
            task.content_length = int(value)
    return task, channel


def test_a_response_head_goes_out_with_its_body_in_one_write() -> None:
    task, channel = _task([("Content-Type", "application/json"), ("Content-Length", "2")])
    task.write(b"{}")
    assert len(channel.writes) == 1  # one send(), one segment: not the head and then the body
    head, _, body = channel.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 2" in head and body == b"{}"
    assert head.count(b"\r\nDate: ") == 1 and b"Date: Thu, 01 Jan 1970 00:00:00 GMT" in head  # start_time 0


def test_a_date_the_app_set_is_the_only_one() -> None:
    task, channel = _task([("date", "Mon, 01 Jan 2029 00:00:00 GMT"), ("Content-Length", "2")])
    task.write(b"{}")
    assert channel.writes[0].count(b"\r\nDate: ") == 1 and b"Date: Mon, 01 Jan 2029" in channel.writes[0]


def test_other_response_shapes_take_waitress_own_path() -> None:
    # no Content-Length: chunked, head first then the chunk, as waitress writes it
    task, channel = _task([("Content-Type", "text/plain")])
    task.write(b"abc")
    assert len(channel.writes) == 2 and b"Transfer-Encoding: chunked" in channel.writes[0]
    assert channel.writes[1] == b"3\r\nabc\r\n"
    # a body longer than declared is cut at the declared length
    task, channel = _task([("Content-Length", "2")])
    task.write(b"abcd")
    assert channel.writes[1:] == [b"ab"]
    # a later chunk follows the head on its own
    task, channel = _task([("Content-Length", "4")])
    task.write(b"ab")
    task.write(b"cd")
    assert channel.writes[1:] == [b"cd"] and channel.writes[0].endswith(b"\r\n\r\nab")


HEAD_SHAPES = {
    "json answer": ([("content-type", "application/json"), ("content-length", "2"), ("x-request-id", "a-1"),
                     ("access-control-allow-origin", "*"), ("cache-control", "no-store")], "1.1", {}),
    "repeated names keep their order": ([("Content-Length", "2"), ("vary", "b"), ("Vary", "a"),
                                         ("www-authenticate", "x")], "1.1", {}),
    "the app's own date": ([("Content-Length", "2"), ("DATE", "Mon, 01 Jan 2029 00:00:00 GMT")], "1.1", {}),
    "the app's own server": ([("Content-Length", "2"), ("server", "other")], "1.1", {}),
    "the client asks to close": ([("Content-Length", "2")], "1.1", {"CONNECTION": "close"}),
    "http/1.0 keep-alive": ([("Content-Length", "2")], "1.0", {"CONNECTION": "keep-alive"}),
    "http/1.0": ([("Content-Length", "2")], "1.0", {}),
    "no length": ([("Content-Type", "text/plain")], "1.1", {}),
    "an empty body": ([("Content-Length", "0")], "1.1", {}),
    "the app closes": ([("Content-Length", "2"), ("Connection", "close")], "1.1", {}),
}


@pytest.mark.parametrize("shape", HEAD_SHAPES, ids=list(HEAD_SHAPES))
def test_the_response_head_is_waitress_own_byte_for_byte(shape: str) -> None:
    from waitress.task import WSGITask

    from server.limits import _OneWriteTask

    headers, version, request_headers = HEAD_SHAPES[shape]
    heads = []
    for cls in (_OneWriteTask, WSGITask):
        task = cls(_Recorder(), type("Request", (), {"version": version, "headers": request_headers})())
        task.status, task.response_headers = "200 OK", list(headers)
        task.content_length = next((int(v) for n, v in headers if n.lower() == "content-length"), None)
        head = bytes(task.build_response_header())
        # the same head and closing, and the same headers kept (in waitress's order, by name)
        heads.append((head, task.close_on_finish, sorted(task.response_headers, key=lambda pair: pair[0])))
    assert heads[0] == heads[1]
    assert heads[0][0].count(b"\r\nDate: ") == 1
