"""Which thread runs a request: waitress's I/O loop itself, or one of its worker threads.

waitress reads and parses every request on its I/O loop, then hands it to a
worker thread: a queue and a condition variable on the way there, a wake-up
of the loop through a pipe on the way back, and the GIL passed between the
two each time. For a request that needs a tenth of a millisecond of Python,
that handoff is most of its cost. Measured on 2 cores with 4 keep-alive
clients, silent authorize took 0.46 ms of server CPU per request handed off
and 0.23 ms run on the loop, at twice the requests per second, with p99 at
2.6x p50 instead of 2.7-4x (``benchmarks/bench_http.py``).

So a request for one of the *loop paths* runs on the loop's own thread right
after it is parsed, the way node-oidc-provider serves every request on its
event loop. Those are the routes that never hash a password, call another
server or wait for anything but the store (``server.app.LOOP_PATHS``).
Everything else (the hosted pages that take passwords, the password and OTP
APIs, admin, logout with its back-channel calls, readiness and metrics) still
goes to the worker threads, so none of it holds up the loop.

Two things keep the loop turning:

- A store that stops answering makes every call wait up to ``store_timeout``.
  A request on the loop that takes longer than :data:`LOOP_BUDGET` sends every
  request to the worker threads for the next :data:`THREADED_FOR` seconds, with
  a warning. Another overrun soon after doubles that, up to
  :data:`THREADED_FOR_MAX`: a store that stays down stalls the loop (and
  ``/healthz`` with it) for one ``store_timeout`` at growing intervals, not
  on every request and not every few seconds.
- A connection can pipeline a few hundred small requests in one packet. Once
  the requests run in one loop turn have taken :data:`LOOP_BUDGET` together,
  the rest of them go to the worker threads, so the loop reads and answers
  everyone else meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from waitress.task import ThreadedTaskDispatcher

from server.logs import EveryInterval

log = logging.getLogger("policy_sso.server")
queue_log = logging.getLogger("waitress.queue")

LOOP_BUDGET = 0.05  # seconds a request (or one turn's requests together) may hold the loop
THREADED_FOR = 5.0  # seconds every request goes to the threads after one overran the budget
THREADED_FOR_MAX = 300.0  # the longest that period grows to while overruns keep coming


class LoopDispatcher(ThreadedTaskDispatcher):
    """waitress's thread pool, plus running the requests for ``loop_paths`` on the I/O loop itself.

    The loop marks itself with :meth:`loop_turn` when it reads; a request it
    parses for a loop path is queued in :attr:`ready` and run by
    :meth:`run_ready` once the read is done (waitress holds the channel's
    request lock while parsing, and serving takes it again). A request queued
    from any other thread (the next pipelined request after one a worker
    thread served) goes to the threads.
    """

    def __init__(self, loop_paths: Iterable[str] = (), *, budget: float = LOOP_BUDGET,
                 threaded_for: float = THREADED_FOR, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.loop_paths = frozenset(loop_paths)
        self.budget = budget
        self.threaded_for = threaded_for
        self.period = threaded_for  # the current threaded period: doubles while overruns keep coming
        self.clock = clock
        self.ready: deque[Any] = deque()
        self.loop_thread: int | None = None
        self.threaded_until = float("-inf")
        self.queue_depth = EveryInterval()  # waitress warns once per request queued; here once per 10 s
        self.overran_log = ThrottledLog(log, EveryInterval())

    def loop_turn(self) -> None:
        """Note that the calling thread is the I/O loop's (it is the one reading requests)."""
        self.loop_thread = threading.get_ident()

    def on_loop(self) -> bool:
        """Return whether the calling thread is the I/O loop's."""
        return threading.get_ident() == self.loop_thread

    @property
    def queue_logger(self) -> ThrottledLog:  # type: ignore[override]
        """What waitress's add_task warns "Task queue depth is N" through: once per interval."""
        return ThrottledLog(queue_log, self.queue_depth)

    def add_task(self, task: Any) -> None:
        """Queue ``task`` (a waitress channel with a parsed request) for the loop or for the threads."""
        requests = getattr(task, "requests", None)
        if requests and self.on_loop() and self._runs_on_loop(requests[0]):
            self.ready.append(task)
            return
        super().add_task(task)

    def _runs_on_loop(self, request: Any) -> bool:
        # waitress's own refusals (400, 413, 431) are a few lines of JSON: the loop answers them too
        return ((request.error is not None or request.path in self.loop_paths)
                and self.clock() >= self.threaded_until)

    def run_ready(self) -> None:
        """Serve the requests the loop kept for itself, in order; called on the loop after each read."""
        turn_started = started = self.clock()
        while self.ready:
            channel = self.ready.popleft()
            # a request waitress refused (a malformed request line) may have no path at all
            path = getattr(channel.requests[0], "path", None) or "-" if channel.requests else "-"
            try:
                channel.service()  # waitress answers the app's own exceptions with a 500 there
            except Exception:
                log.exception("serving %s on the I/O loop failed", path)
                channel.will_close = True
            ended = self.clock()
            if ended - started > self.budget:
                self._overran(path, ended - started, ended)
            if ended - turn_started > self.budget:
                while self.ready:  # a long pipeline: the rest is the threads', the loop turns again
                    super().add_task(self.ready.popleft())
            started = ended  # the requests of a turn run back to back

    def _overran(self, path: str, took: float, now: float) -> None:
        # an overrun within one period of the last threaded period's end: the cause is still there
        soon = now < self.threaded_until + self.period
        self.period = min(self.period * 2, THREADED_FOR_MAX) if soon else self.threaded_for
        self.threaded_until = now + self.period
        self.overran_log.warning("%s held the I/O loop for %.0f ms (over %.0f): every request goes to the "
                                 "worker threads for the next %g s", path, took * 1000, self.budget * 1000,
                                 self.period)


class ThrottledLog:
    """A logger's warnings, one per interval: the throttle is asked before a record is made."""

    def __init__(self, logger: logging.Logger, throttle: EveryInterval) -> None:
        self.logger = logger
        self.throttle = throttle

    def warning(self, msg: str, *args: object) -> None:
        """Log ``msg % args`` unless held back; the line says how many were held since the last."""
        if (note := self.throttle.admit()) is not None:
            self.logger.warning(msg + "%s", *args, note)
