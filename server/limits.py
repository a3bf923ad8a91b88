"""waitress with set limits: body and header size, connections, idle time (issue 14, docs/security.md).

waitress's own defaults let a client spool a 1 GiB body to disk before the
app sees a byte, and 100 idle connections stop it accepting anyone else for
two minutes. Here every limit has a default fit for an OpenID Provider,
overridable with ``policy-sso serve`` flags:

- ``max_request_body_size``: the app reads at most 64 KiB of form or JSON
  (``server.hooks``), so a longer body is refused by waitress itself, while it
  is still arriving, with a 413 JSON error: never read into memory or a
  temporary file.
- ``max_request_header_size``: request line plus headers (cookies, long
  ``/authorize`` queries with hints and ``claims``); 431 JSON beyond it.
- ``connection_limit`` and ``channel_timeout``: open connections, and how
  long one may sit idle. When the limit is reached, the connections that have
  been idle longest without a request in progress are closed so new clients
  are still accepted (the slow-loris defence of nginx's ``reset_timedout_connection``):
  half-open connections cannot starve ``/healthz`` or anyone else.
"""

from __future__ import annotations

import functools
import json
import logging
import resource
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import build_http_date

from server.dispatch import LoopDispatcher

log = logging.getLogger("policy_sso.server")

# A connection idle at least this long, with no request in progress, may be closed when the server is full.
EVICTABLE_AFTER = 1.0  # seconds


@dataclass(frozen=True)
class ServerLimits:
    """The waitress limits ``serve`` runs with; each default is documented in docs/security.md."""

    max_request_body_size: int = 64 * 1024  # bytes; the app's form/JSON ceiling (server.hooks)
    max_request_header_size: int = 32 * 1024  # bytes; request line and headers (nginx: 4 x 8 KiB)
    connection_limit: int = 1000  # open connections (waitress: 100)
    channel_timeout: int = 30  # seconds a connection may stay idle (waitress: 120)
    cleanup_interval: int = 10  # seconds between idle sweeps (waitress: 30)

    def adjustments(self) -> dict[str, Any]:
        """Return the limits as waitress adjustments."""
        return asdict(self)


class _JsonErrorTask(ErrorTask):
    """waitress's own refusals (413, 431, 400) as the JSON errors every endpoint gives (SPEC §4)."""

    def execute(self) -> None:
        error = self.request.error
        body = json.dumps({"error": "invalid_request",
                           "error_description": f"{error.reason.lower()}: {error.body}"}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.extend([("Content-Type", "application/json"), ("Cache-Control", "no-store")])
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


@functools.lru_cache(maxsize=4)
def _http_date(second: int) -> str:
    """Return the RFC 9110 §5.6.7 date of an epoch second (the Date header)."""
    return str(build_http_date(second))


@functools.lru_cache(maxsize=256)
def _header_name(name: str) -> str:
    """Return a response header's name as waitress writes it: each word between dashes capitalized."""
    return "-".join([word.capitalize() for word in name.split("-")])


def _first(pair: tuple[str, str]) -> str:
    return pair[0]


# headers whose presence changes what waitress adds (Via, chunking, closing): its own code decides
_WAITRESS_DECIDES = frozenset({"Server", "Connection", "Transfer-Encoding"})


class _OneWriteTask(WSGITask):
    """waitress's WSGI task, sending a response's head and body in one write.

    waitress writes the head and then each body chunk, and (``send_bytes`` 1)
    every write is a ``send()``: two system calls and two TCP segments for the
    one-chunk answer every endpoint here gives. The head now goes out with
    the first chunk when it fits the declared Content-Length; anything else
    (chunked, no body, a longer chunk) takes waitress's own path, head first.
    The head's Date is formatted once a second, not for every response.
    """

    def build_response_header(self) -> bytes:
        """Return waitress's response head, its Date made once a second rather than for every response.

        The answer every endpoint gives (HTTP/1.1, a body of declared length,
        the connection kept open) is written here, byte for byte as waitress
        writes it, with each header name capitalized once per process rather
        than once per response; any other shape, and a request that asked to
        close, takes waitress's own code.
        """
        headers = [(_header_name(name), value) for name, value in self.response_headers]
        names = {name for name, _ in headers}
        if "Date" not in names:  # RFC 9110: one Date, the app's own if it set one
            headers.append(("Date", _http_date(int(self.start_time))))
        self.response_headers = headers  # normalized, as waitress leaves them
        if (self.version != "1.1" or not self.has_body or not self.content_length
                or not names.isdisjoint(_WAITRESS_DECIDES) or "Content-Length" not in names
                or self.request.headers.get("CONNECTION", "").lower() == "close"):
            return bytes(super().build_response_header())
        ident = self.channel.server.adj.ident
        if ident:
            headers.append(("Server", ident))
        headers.sort(key=_first)  # stable: repeated names keep their order, as in waitress
        return (f"HTTP/1.1 {self.status}\r\n" + "".join([f"{name}: {value}\r\n" for name, value in headers])
                + "\r\n").encode("latin-1")

    def write(self, data: bytes) -> None:
        """Write ``data``, with the response head in the same write if it has not gone yet."""
        if self.wrote_header or not self.complete or not data:
            super().write(data)
            return
        head = self.build_response_header()
        self.wrote_header = True
        if (self.chunked_response or not self.has_body or self.content_length is None
                or self.content_bytes_written + len(data) > self.content_length):
            self.channel.write_soon(head)
            super().write(data)
            return
        self.content_bytes_written += len(data)
        self.channel.write_soon(head + data)


class _JsonErrorChannel(HTTPChannel):
    """A waitress channel with JSON refusals, whose requests for loop paths run on the loop."""

    task_class = _OneWriteTask
    error_task_class = _JsonErrorTask

    def handle_read(self) -> None:
        """Read and parse as waitress does, then serve what the loop keeps for itself (server.dispatch)."""
        dispatcher = self.server.task_dispatcher
        dispatcher.loop_turn()
        super().handle_read()
        dispatcher.run_ready()

    def _flush_outbufs_below_high_watermark(self) -> None:
        """Wait for the loop to send a long response down, unless this is the loop: it cannot wait for itself.

        On the loop the output stays buffered (in a temporary file past
        ``outbuf_overflow``) and the loop sends it once the request is done;
        the loop paths' answers are a few KiB.
        """
        if not self.server.task_dispatcher.on_loop():
            super()._flush_outbufs_below_high_watermark()

    def writable(self) -> bool:
        """Return whether the loop should send output now: not while a task runs and flushes its own.

        With ``send_bytes`` 1 (waitress 3) a running task sends what it writes
        itself (write_soon), holding the output lock meanwhile; waitress's
        writable() still says yes while bytes wait, so poll() returns at once on
        the writable socket, the loop fails to take the lock and turns again:
        some 13 turns and 0.4 ms of CPU a request under load. The task wakes
        the loop when it ends (service() pulls the trigger); past the high
        watermark it waits for the loop to send, so then the loop does.
        """
        if (self.requests and not self.will_close and not self.close_when_flushed
                and self.total_outbufs_len <= self.adj.outbuf_high_watermark):
            return False
        return bool(super().writable())


class LimitedServer(TcpWSGIServer):
    """A waitress TCP server whose refusals are JSON and that sheds idle connections when full."""

    channel_class = _JsonErrorChannel

    def pull_trigger(self) -> None:
        """Wake the loop from another thread; the loop itself needs no wake-up (it is awake)."""
        if not self.task_dispatcher.on_loop():
            super().pull_trigger()

    def readable(self) -> bool:
        """Close the longest-idle connections first when at the limit, then accept as waitress does."""
        if self.accepting and len(self._map) >= self.adj.connection_limit:
            self._shed_idle(time.time())  # waitress stamps last_activity with time.time()
        return bool(super().readable())

    def _shed_idle(self, now: float) -> None:
        idle = sorted((c for c in self.active_channels.values()
                       if not c.requests and not c.will_close and now - c.last_activity >= EVICTABLE_AFTER),
                      key=lambda c: c.last_activity)
        # room for a tenth of the limit more, so a flood does not make this run on every loop turn
        excess = len(self._map) - self.adj.connection_limit + max(1, self.adj.connection_limit // 10)
        for channel in idle[:excess]:
            channel.will_close = True  # closed by the loop on its next turn (HTTPChannel.handle_write)
        if idle[:excess]:
            log.warning("connection limit %d reached: closing %d idle connections",
                        self.adj.connection_limit, len(idle[:excess]))


def _raise_open_files(connections: int) -> None:
    """Raise the soft limit on open files to fit ``connections`` (poll() is used, not select())."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 64  # the store, log files, keys, back-channel sockets
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            log.warning("open-file limit %d is below the connection limit %d", soft, connections)


def create_server(app: Any, *, host: str, port: int, threads: int, limits: ServerLimits | None = None,
                  ident: str = "policy-sso", sock: Any = None, loop_paths: Iterable[str] = ()) -> Any:
    """Return a waitress server for ``app`` on ``host:port`` with ``limits`` (defaults when None).

    ``sock``: a socket already bound and listening (``serve --workers``: inherited from the
    supervisor) to accept on instead of binding ``host:port``. Requests for ``loop_paths``
    run on the I/O loop's thread, the rest on ``threads`` worker threads (:mod:`server.dispatch`).
    """
    limits = limits or ServerLimits()
    _raise_open_files(limits.connection_limit)
    # poll(), not select(): select() cannot watch a descriptor numbered 1024 or more.
    # X-Forwarded-For is the app's to judge: it counts only from the tenant's trusted_proxies
    # (server.client_address, reloadable), and no other proxy header is read. waitress's own
    # clearing of "untrusted" proxy headers would take it from every request, trusted proxy or not.
    adj = Adjustments(host=host, port=port, threads=threads, ident=ident, asyncore_use_poll=True,
                      clear_untrusted_proxy_headers=False, **limits.adjustments())
    dispatcher = LoopDispatcher(loop_paths)
    dispatcher.set_thread_count(adj.threads)
    socket_map: dict[int, Any] = {}
    if sock is not None:
        return LimitedServer(app, socket_map, True, sock, dispatcher=dispatcher, adj=adj, bind_socket=False,
                             sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()))
    servers = [LimitedServer(app, socket_map, True, None, dispatcher=dispatcher, adj=adj, sockinfo=info)
               for info in adj.listen]
    if len(servers) == 1:
        return servers[0]
    # a host name with several addresses (localhost: 127.0.0.1 and ::1): one loop serves them all
    listening = [(s.effective_host, s.effective_port) for s in servers]
    return MultiSocketServer(socket_map, adj, listening, dispatcher)
