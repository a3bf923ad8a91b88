"""``serve --workers N``: N waitress processes on one listening socket, under a small supervisor.

Python runs one thread at a time, so one process uses about one CPU; N
processes use N. The supervisor binds the listening socket once and forks the
workers, which inherit it: the kernel hands each connection to one worker's
``accept``, and connections waiting in the queue survive a worker dying. The
supervisor holds no store connection and no thread: each worker opens its
own store (a connection or pool shared across a ``fork`` would interleave two
processes' traffic on one socket), keyring reload, audit writer and
rate-limit leases, as two instances on one store do. It holds one thing: the
last tenant that loaded cleanly, which every worker it forks starts from.

Signals, to the supervisor:

- SIGHUP: the supervisor reloads its tenant (a set with any error is refused
  whole and the last good one kept, as in a worker), then forwards the signal
  to every worker; each reloads the tenant and keys as a single server does,
  so every worker converges on what is on disk. A worker in which
  ``POST /admin/v1/policies/reload`` (or a password set) applied sends its
  supervisor a SIGHUP, so the admin API reaches every worker as SIGHUP does.
- SIGTERM or SIGINT drains: each worker stops accepting, finishes the
  requests it has (bounded by ``DRAIN_SECONDS``), closes idle connections and
  exits; a worker still running ``KILL_AFTER`` seconds later is killed.
- A worker that dies otherwise (a crash, ``kill -9``, the OOM killer) is
  replaced; only the requests it was handling fail. One dying again within a
  second of starting is restarted after a pause, not in a tight loop.

``/metrics`` in any worker covers every worker (:func:`combine_expositions`):
each worker answers its siblings on a Unix socket in a private directory, and
the worker scraped sums their samples into one exposition.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("policy_sso.server")

DRAIN_SECONDS = 20.0  # how long a worker lets in-flight requests finish after SIGTERM
KILL_AFTER = DRAIN_SECONDS + 5.0  # then the supervisor kills what is left
RESTART_PAUSE = 1.0  # a worker that died this soon after starting is restarted after this pause
PEER_TIMEOUT = 2.0  # seconds a scrape waits for a sibling's metrics
_PR_SET_PDEATHSIG = 1  # prctl(2): the kernel signals a worker whose supervisor died


@dataclass(frozen=True)
class Worker:
    """What a worker process knows of its place: its slot (0..N-1) and the metrics directory."""

    slot: int
    count: int
    metrics_dir: Path
    supervisor: int = 0  # the supervisor's pid

    def tell_supervisor(self) -> None:
        """Ask the supervisor to make every worker reload (after a reload the admin API asked for here)."""
        if os.getppid() == self.supervisor:  # not once it has died: the pid may be another process's
            os.kill(self.supervisor, signal.SIGHUP)

    def socket_path(self, slot: int) -> Path:
        """Return the Unix socket on which the worker in ``slot`` answers its siblings' scrapes."""
        return self.metrics_dir / f"worker-{slot}.sock"


def listening_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """Return a TCP socket bound to ``host:port`` (port 0: any free one) and listening."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(backlog)
    sock.setblocking(False)  # waitress's accept loop expects a non-blocking socket
    return sock


def supervise(count: int, sock: socket.socket, run_worker: Callable[[socket.socket, Worker], None],
              reload: Callable[[], object] = lambda: None) -> int:
    """Run ``count`` workers on ``sock`` until SIGTERM or SIGINT, then drain them; return the exit status.

    ``run_worker`` runs in each forked worker and serves until the worker is
    told to stop; it must open the store itself. ``reload`` runs in the
    supervisor on SIGHUP, before the signal is forwarded to the workers.
    """
    metrics_dir = Path(tempfile.mkdtemp(prefix="policy-sso-workers-"))  # 0700: only we reach the sockets
    workers: dict[int, tuple[int, float]] = {}  # pid -> (slot, started)
    pending: list[tuple[int, float]] = []  # (slot, not before): workers to start again
    stopping = threading.Event()
    hangups = [0]

    def on_stop(signum: int, frame: object) -> None:
        stopping.set()

    def on_hangup(signum: int, frame: object) -> None:
        hangups[0] += 1

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hangup)

    def start(slot: int) -> None:
        pid = _fork_worker(sock, Worker(slot, count, metrics_dir, os.getpid()), run_worker)
        workers[pid] = (slot, time.monotonic())

    try:
        for slot in range(count):
            start(slot)
        forwarded = 0
        while not stopping.is_set():
            if hangups[0] != forwarded:
                forwarded = hangups[0]
                reload()  # here, not in the signal handler: loading a tenant is no work for a handler
                _signal_all(workers, signal.SIGHUP)
            for pid, status in _reap():
                slot, started = workers.pop(pid, (None, 0.0))
                if slot is None:
                    continue
                log.warning("worker %d (pid %d) %s; starting another", slot, pid, _describe(status))
                soon = time.monotonic() - started < RESTART_PAUSE
                pending.append((slot, time.monotonic() + (RESTART_PAUSE if soon else 0.0)))
            for item in [p for p in pending if p[1] <= time.monotonic()]:
                pending.remove(item)
                start(item[0])
            stopping.wait(0.1)
        # drain: every worker stops accepting and finishes what it has
        sock.close()
        _signal_all(workers, signal.SIGTERM)
        deadline = time.monotonic() + KILL_AFTER
        while workers and time.monotonic() < deadline:
            for pid, _ in _reap():
                workers.pop(pid, None)
            time.sleep(0.05)
        if workers:
            log.warning("%d worker(s) still running %.0f s after SIGTERM: killed", len(workers), KILL_AFTER)
            _signal_all(workers, signal.SIGKILL)
            for pid in list(workers):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
        return 0
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _fork_worker(sock: socket.socket, worker: Worker,
                 run_worker: Callable[[socket.socket, Worker], None]) -> int:
    """Fork a worker running ``run_worker``; return its pid (in the supervisor)."""
    # SIGHUP stays blocked across the fork until the child has its own handler: delivered in
    # between, it would run the supervisor's handler in the child and be lost
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        pid = os.fork()
    except OSError:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        return pid
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # until serving: nothing in flight to drain
        # the worker started from the supervisor's tenant; a SIGHUP forwarded before the tenant
        # holder installs its handler means the files changed since: it is noted here, and the
        # worker reloads once its handler is in place (reload_if_hung_up_while_starting)
        signal.signal(signal.SIGHUP, _note_hangup)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        # Ctrl-C reaches the whole process group: the supervisor alone acts on it, draining workers
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _die_with_parent()
        run_worker(sock, worker)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 0
    except BaseException:
        log.exception("worker %d failed", worker.slot)
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # never return into the supervisor's loop, nor run its cleanup


_hung_up_while_starting = False  # in a worker: a SIGHUP came before the tenant holder could take it


def _note_hangup(signum: int, frame: object) -> None:
    global _hung_up_while_starting  # noqa: PLW0603 - a signal handler has nowhere else to put it
    _hung_up_while_starting = True


def reload_if_hung_up_while_starting(holder: Any) -> None:
    """Reload ``holder`` (a TenantHolder) if a SIGHUP came while this worker was starting.

    Call it after ``holder.install_sighup()``: a SIGHUP is then either noted
    before (and reloaded here) or taken by the holder's handler, never lost.
    """
    if _hung_up_while_starting:
        holder.reload_in_background()


def _die_with_parent() -> None:
    """Ask the kernel to send SIGTERM when the supervisor dies, so no worker outlives it (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # it died before the request took effect
        os._exit(0)


def _reap() -> Iterator[tuple[int, int]]:
    """Yield (pid, status) of every child that has exited, without waiting."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


def _signal_all(workers: dict[int, Any], signum: int) -> None:
    for pid in list(workers):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


# --- in a worker ----------------------------------------------------------------------------------

def drain_on_sigterm(server: Any, seconds: float = DRAIN_SECONDS) -> None:
    """Make SIGTERM drain ``server`` (a waitress server): stop accepting, finish requests, then exit.

    Runs in the worker's main thread (the one in waitress's loop). The
    listening socket closes at once (the supervisor and siblings keep theirs,
    so queued connections go to a sibling); connections are closed as soon as
    they have no request in progress and nothing left to send, and the loop
    ends when none is left or after ``seconds``.
    """
    def on_term(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for listener in _listeners(server):
            listener.accepting = False
            listener.del_channel()
            listener.socket.close()
        threading.Thread(target=_wait_idle, args=(server, seconds), name="drain", daemon=True).start()

    def on_drained(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGUSR2, on_drained)


def _listeners(server: Any) -> list[Any]:
    return list(getattr(server, "servers", None) or [server])


def _busy(channel: Any) -> bool:
    """Return whether a waitress channel has a request in progress or output not yet sent."""
    return bool(getattr(channel, "requests", None)) or getattr(channel, "request", None) is not None \
        or getattr(channel, "total_outbufs_len", 0) > 0


def _wait_idle(server: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        channels = [c for c in list(server._map.values()) if hasattr(c, "requests")]
        if not any(_busy(c) for c in channels):
            break
        time.sleep(0.02)
    os.kill(os.getpid(), signal.SIGUSR2)  # the main thread leaves waitress's loop (on_drained)


def serve_peers(worker: Worker, exposition: Callable[[], bytes]) -> None:
    """Answer siblings' scrapes: each connection to this worker's socket reads its exposition."""
    path = worker.socket_path(worker.slot)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by the worker this one replaces
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)

    def answer() -> None:
        while True:
            connection, _ = listener.accept()
            with connection:
                try:
                    connection.sendall(exposition())
                except Exception:  # a scrape that fails here is a gap in one scrape, not a dead worker
                    log.exception("metrics for a sibling failed")

    threading.Thread(target=answer, name="metrics-peers", daemon=True).start()


def sibling_expositions(worker: Worker) -> list[tuple[str, bytes]]:
    """Return (slot, exposition) of every sibling that answers in time (one restarting is skipped)."""
    found = []
    for slot in range(worker.count):
        if slot == worker.slot:
            continue
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as peer:
                peer.settimeout(PEER_TIMEOUT)
                peer.connect(str(worker.socket_path(slot)))
                chunks = []
                while chunk := peer.recv(65536):
                    chunks.append(chunk)
            found.append((str(slot), b"".join(chunks)))
        except OSError:
            continue
    return found


def start_worker(server: Any, worker: Worker) -> None:
    """Set up a worker's waitress ``server``: SIGTERM drains it, ``/metrics`` covers every worker."""
    from policy_sso import metrics

    drain_on_sigterm(server)
    own = metrics.share_across_workers(str(worker.slot), lambda: sibling_expositions(worker))
    serve_peers(worker, own)


def serve_workers(count: int, args: Any, tenant: Any, url: str, keyring: Any, state_dir: Path,  # noqa: PLR0917
                  adjust: Callable[[Any], Any]) -> int:
    """Run ``serve --workers count``: bind, print the banner, supervise; return the exit status."""
    from policy_sso.cli.serve import EXIT_FINDINGS, LIMIT_FLAGS
    from policy_sso.errors import PolicySSOError
    from policy_sso.oidc.interaction import load_or_create_key
    from policy_sso.oidc.provider import state_dir_key
    from policy_sso.reload import TenantHolder
    from policy_sso.sessions.store import open_store
    from server.app import serve
    from server.limits import ServerLimits

    # made once, before the fork: workers creating it at once would each sign with their own
    load_or_create_key(state_dir_key(state_dir))
    limits = ServerLimits(**{name: value for name in LIMIT_FLAGS
                             if (value := getattr(args, name, None)) is not None})
    try:
        sock = listening_socket(args.host, args.port)
    except OSError as err:
        print(f"policy-sso serve: cannot listen on {args.host}:{args.port}: {err.strerror}", file=sys.stderr)
        return EXIT_FINDINGS
    host, port = sock.getsockname()[:2]
    print(f"policy-sso serving {tenant.settings.issuer} on http://{host}:{port} (state in {state_dir}; "
          f"{count} workers)", flush=True)

    # the last tenant that loaded cleanly: a worker replaced after a crash starts from it, not from
    # the tenant loaded at start-up (which would undo every reload since)
    current = TenantHolder(tenant, adjust=adjust)  # the directory, adjust and checks the workers' holders use

    def run_worker(sock: socket.socket, worker: Worker) -> None:
        tenant = current.tenant  # as of this fork; a SIGHUP after it reaches the worker
        try:
            store = open_store(url, tenant.settings.lifetime, tenant.settings.store_options)
        except PolicySSOError as err:
            print(f"policy-sso serve: worker {worker.slot}: {err}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_FINDINGS) from None
        serve(tenant, store, keyring, state_dir, host=host, port=port, threads=args.threads, limits=limits,
              adjust=adjust, sock=sock, worker=worker)

    return supervise(count, sock, run_worker, reload=current.reload)
