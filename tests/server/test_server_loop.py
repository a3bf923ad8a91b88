"""The waitress loop does not spin while a task sends its own output (server.limits._JsonErrorChannel).

With waitress 3 (``send_bytes`` 1) a running task sends what it writes; the loop is asked to send
only once the task is done, or when the task waits for it past the high watermark. Over a real
loopback socket, with requests on the worker threads and on the loop itself: keep-alive and
pipelined requests are answered in order, a response far larger than the socket buffers reaches a
slow reader whole, and the loop turns a bounded number of times per request.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import waitress.wasyncore
from support import serving

from server.limits import _JsonErrorChannel, create_server

BIG = 8 * 1024 * 1024  # far more than a loopback socket buffers: the loop must help send it


def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    path = environ["PATH_INFO"]
    size = BIG if path == "/big" else 1500
    body = path.encode().ljust(size, b".")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    yield body[:100]
    if path.startswith("/busy"):
        sum(i * i for i in range(3000))  # a request's work after its headers are written
    yield body[100:]


@pytest.fixture(params=["threads", "loop"])
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The server with every request on its worker threads, or every request on its loop (server.dispatch)."""
    every_path = {"/big", "/after", *(f"/{kind}-{i}" for kind in ("one", "pipe", "busy") for i in range(150))}
    loop_paths = every_path if request.param == "loop" else ()
    with serving(create_server(app, host="127.0.0.1", port=0, threads=2, loop_paths=loop_paths)) as live:
        yield live


def read_response(sock: socket.socket, buffer: bytearray) -> bytes:
    """Return one response's body from a keep-alive socket (Content-Length framing)."""
    while b"\r\n\r\n" not in buffer:
        buffer += sock.recv(65536)
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    del buffer[:]
    buffer += rest
    while len(buffer) < length:
        buffer += sock.recv(65536)
    body = bytes(buffer[:length])
    del buffer[:length]
    return body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def test_the_loop_is_not_asked_to_send_while_a_task_runs_below_the_watermark() -> None:
    sock_a, sock_b = socket.socketpair()
    server = create_server(app, host="127.0.0.1", port=0, threads=1)
    try:
        channel = _JsonErrorChannel(server, sock_a, ("127.0.0.1", 0), server.adj, map={})
        channel.total_outbufs_len = 10
        channel.requests = [object()]
        assert not channel.writable()  # the task sends it (waitress alone: True, and the loop spins)
        channel.total_outbufs_len = server.adj.outbuf_high_watermark + 1
        assert channel.writable()  # the task waits for the loop past the watermark
        channel.total_outbufs_len, channel.requests = 10, []
        assert channel.writable()  # the task is done: what is left is the loop's to send
        channel.requests, channel.close_when_flushed = [object()], True
        assert channel.writable()
        channel.close_when_flushed, channel.will_close = False, True
        assert channel.writable()
        channel.del_channel()
    finally:
        sock_a.close()
        sock_b.close()
        server.close()


def test_keep_alive_and_pipelined_requests_are_answered_in_order(server: Any) -> None:
    with socket.create_connection(("127.0.0.1", server.effective_port), timeout=10) as sock:
        buffer = bytearray()
        for i in range(50):
            sock.sendall(get(f"/one-{i}"))
            assert read_response(sock, buffer).startswith(f"/one-{i}".encode())
        sock.sendall(b"".join(get(f"/pipe-{i}") for i in range(20)))
        for i in range(20):
            assert read_response(sock, buffer).startswith(f"/pipe-{i}".encode())


def test_a_response_larger_than_the_socket_buffers_reaches_a_slow_reader_whole(server: Any) -> None:
    with socket.create_connection(("127.0.0.1", server.effective_port), timeout=20) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.sendall(get("/big") + get("/after"))
        time.sleep(0.5)  # the task fills the socket and must leave the rest to the loop
        buffer = bytearray()
        body = read_response(sock, buffer)
        assert len(body) == BIG and body.startswith(b"/big") and body.endswith(b".")
        assert read_response(sock, buffer).startswith(b"/after")


def test_the_loop_does_not_turn_for_output_its_tasks_send_themselves(
        server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    turns: Counter[str] = Counter()
    lock = threading.Lock()
    original = waitress.wasyncore.readwrite

    def counted(obj: Any, flags: int) -> None:
        with lock:
            turns["write" if flags & 4 else "other"] += 1  # select.POLLOUT
        original(obj, flags)

    monkeypatch.setattr(waitress.wasyncore, "readwrite", counted)
    clients, requests = 4, 150

    def client() -> None:
        with socket.create_connection(("127.0.0.1", server.effective_port), timeout=10) as sock:
            buffer = bytearray()
            for i in range(requests):
                sock.sendall(get(f"/busy-{i}"))
                read_response(sock, buffer)

    pool = [threading.Thread(target=client) for _ in range(clients)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    # small responses are sent by their task: the loop has nothing to write for them (waitress alone
    # turns for each while the task holds the output lock, over a thousand times here)
    assert turns["write"] <= clients * requests // 10, turns
