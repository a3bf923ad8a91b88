"""Back-channel logout delivery (OIDC Back-Channel Logout 1.0 §2.5), off the request path.

``notify`` only queues and returns: worker threads mint each client's logout
token (§2.4) and POST it as ``application/x-www-form-urlencoded``, retrying
with exponential backoff a bounded number of times. Failures are logged with
the client id, never with the token.

Deliveries queue per receiver (the URI's scheme, host and port), and a
receiver has at most one POST in flight: a receiver that hangs until the
timeout holds one worker, never the others, so every other receiver's logouts
go out meanwhile (issue 14: one hanging receiver had delayed twelve queued
logouts of other clients by 12 s). Retries wait in a schedule, not in a
worker. The queues are bounded in total and per receiver, the workers in
number; what does not fit is dropped and counted, never waited for, so a
logout never waits for a notification.

Only a 200 or 204 answer counts as delivered (§2.8); redirects are not
followed, since a redirected POST would lose its body or leave the
registered URI.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import secrets
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from policy_sso.oidc.keys import KeyRing
from policy_sso.oidc.logout_token import DEFAULT_ALG, LOGOUT_TOKEN_LIFETIME, mint_logout_token

log = logging.getLogger("policy_sso.backchannel")


class LogoutTarget(NamedTuple):
    """A client to tell that a session ended: its back-channel URI and the sid/sub it knows."""

    client_id: str
    uri: str
    sid: str | None
    subject: str | None


@dataclass
class _Delivery:
    target: LogoutTarget
    token: str | None = None
    expires: float = 0.0
    attempt: int = 0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Turn every 3xx into an HTTPError: a logout token is delivered to the registered URI or not at all."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def receiver_of(uri: str) -> str:
    """Return the receiver a back-channel URI belongs to: its scheme, host and port (lower case)."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return uri[:256]
    return f"{parts.scheme}://{parts.netloc}".lower()


class BackchannelNotifier:
    """Queues back-channel logouts per receiver and delivers them from a small pool of daemon threads (§2.5).

    ``attempts`` is the total number of POSTs per client (first one
    included); retry ``n`` waits ``backoff * 2**(n-1)`` seconds. At most
    ``queue_size`` deliveries wait at once, and at most ``per_receiver`` for
    one receiver; beyond that new ones are dropped and counted, because an
    unbounded queue would let a dead receiver hold memory without limit.
    ``workers`` threads post, one receiver at a time each.
    ``on_result(client_id, delivered)`` is called once per finished delivery,
    for metrics. ``alg_of(client_id)`` names the algorithm to sign a client's
    logout token with: its ID token algorithm, since the RP validates a
    logout token as it does an ID token (§2.6); RS256 when not given.
    """

    def __init__(self, keyring: KeyRing, issuer: str, *, attempts: int = 4, backoff: float = 0.5,
                 timeout: float = 2.0, workers: int = 4, queue_size: int = 10_000, per_receiver: int = 1_000,
                 clock: Callable[[], float] = time.time,
                 on_result: Callable[[str, bool], None] | None = None,
                 alg_of: Callable[[str], str] | None = None) -> None:
        self.keyring = keyring
        self.issuer = issuer
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.timeout = timeout
        self.clock = clock
        self.on_result = on_result
        self.alg_of = alg_of
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self.retried = 0
        self._workers = max(1, workers)
        self._queue_size = queue_size
        self._per_receiver = max(1, per_receiver)
        self._schedule: list[tuple[float, int, _Delivery]] = []  # retries: (due, tie-breaker, delivery)
        self._order = itertools.count()
        self._queues: dict[str, deque[_Delivery]] = {}  # receiver -> deliveries due now, in order
        self._ready: deque[str] = deque()  # receivers with a delivery due and none in flight, in turn
        self._in_ready: set[str] = set()
        self._busy: set[str] = set()  # receivers with a POST in flight
        self._held = Counter[str]()  # receiver -> its deliveries queued, scheduled or in flight
        self._pending = 0  # queued, scheduled for a retry, or being posted
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._opener = urllib.request.build_opener(_NoRedirect)

    # the caller's side ----------------------------------------------------------------------
    def notify(self, targets: Iterable[LogoutTarget | tuple[str, str, str | None, str | None]]) -> None:
        """Queue a logout for each ``(client_id, backchannel_logout_uri, sid, subject)`` and return at once.

        Never raises: a logout must not fail because a notification could
        not be queued (that is logged and counted as dropped instead).
        """
        try:
            with self._cond:
                if self._closed:
                    return
                self._start_workers()
                for given in targets:
                    try:
                        target = LogoutTarget(*given)
                    except TypeError:
                        log.error("not a back-channel logout target: %s", type(given).__name__)
                        continue
                    receiver = receiver_of(str(target.uri))
                    if self._pending >= self._queue_size or self._held[receiver] >= self._per_receiver:
                        self.dropped += 1
                        log.error("back-channel queue full; logout of %s not delivered", target.client_id)
                        continue
                    self._pending += 1
                    self._held[receiver] += 1
                    self._enqueue(receiver, _Delivery(target))
                self._cond.notify_all()
        except Exception:  # e.g. the caller's generator failed: what was queued still goes out
            log.exception("could not queue back-channel logouts")
            with self._cond:
                self._cond.notify_all()

    def _enqueue(self, receiver: str, delivery: _Delivery) -> None:
        """Put a due delivery in its receiver's queue, and the receiver in turn if idle (lock held)."""
        self._queues.setdefault(receiver, deque()).append(delivery)
        self._mark_ready(receiver)

    def _mark_ready(self, receiver: str) -> None:
        if receiver not in self._busy and receiver not in self._in_ready and self._queues.get(receiver):
            self._ready.append(receiver)
            self._in_ready.add(receiver)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued delivery succeeded or gave up; return whether that happened in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def stats(self) -> dict[str, int]:
        """Return counts for metrics: delivered, failed (gave up), dropped (queue full), retried, pending."""
        with self._cond:
            return {"delivered": self.delivered, "failed": self.failed, "dropped": self.dropped,
                    "retried": self.retried, "pending": self._pending}

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting logouts, finish what is queued within ``timeout``, and stop the workers."""
        self.drain(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=max(0.0, timeout))

    # the workers' side ----------------------------------------------------------------------
    def _start_workers(self) -> None:
        # started on first use: a provider that never logs anyone out costs no threads
        while len(self._threads) < self._workers:
            thread = threading.Thread(target=self._work, name=f"backchannel-{len(self._threads)}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()

    def _next(self) -> _Delivery | None:
        """Return the next due delivery of a receiver with nothing in flight; None once closed."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                now = time.monotonic()
                while self._schedule and self._schedule[0][0] <= now:
                    delivery = heapq.heappop(self._schedule)[2]
                    self._enqueue(receiver_of(str(delivery.target.uri)), delivery)
                if self._ready:
                    receiver = self._ready.popleft()
                    self._in_ready.discard(receiver)
                    self._busy.add(receiver)
                    return self._queues[receiver].popleft()
                self._cond.wait(self._schedule[0][0] - now if self._schedule else None)

    def _work(self) -> None:
        while (delivery := self._next()) is not None:
            try:
                delivered = self._attempt(delivery)
            except Exception:  # a worker must survive anything one delivery can throw
                log.exception("back-channel logout to %s: attempt %d failed", delivery.target.client_id,
                              delivery.attempt + 1)
                delivered = False
            self._after(delivery, delivered)

    def _attempt(self, delivery: _Delivery) -> bool:
        now = self.clock()
        if delivery.token is None or now >= delivery.expires:
            # minted here, not in notify: signing stays off the request path; a retry resends the same
            # token (same jti) unless it has expired meanwhile
            target = delivery.target
            alg = self.alg_of(target.client_id) if self.alg_of is not None else DEFAULT_ALG
            delivery.token = mint_logout_token(self.keyring, issuer=self.issuer, audience=target.client_id,
                                               subject=target.subject, sid=target.sid, now=int(now),
                                               jti=secrets.token_urlsafe(16), alg=alg)
            delivery.expires = int(now) + LOGOUT_TOKEN_LIFETIME
        return self._post(delivery)

    def _after(self, delivery: _Delivery, delivered: bool) -> None:
        client_id = delivery.target.client_id
        receiver = receiver_of(str(delivery.target.uri))
        with self._cond:
            self._busy.discard(receiver)
            if not delivered and delivery.attempt + 1 < self.attempts and not self._closed:
                delivery.attempt += 1
                self.retried += 1
                due = time.monotonic() + self.backoff * 2 ** (delivery.attempt - 1)
                heapq.heappush(self._schedule, (due, next(self._order), delivery))
                self._mark_ready(receiver)
                self._cond.notify_all()
                return
            if delivered:
                self.delivered += 1
            else:
                self.failed += 1
                log.warning("back-channel logout to %s failed after %d attempts", client_id,
                            delivery.attempt + 1)
            self._pending -= 1
            self._held[receiver] -= 1
            if self._held[receiver] <= 0:
                del self._held[receiver]
            if self._queues.get(receiver):
                self._mark_ready(receiver)
            elif receiver in self._queues:
                del self._queues[receiver]  # an idle receiver costs nothing
            self._cond.notify_all()
        if self.on_result is not None:
            try:
                self.on_result(client_id, delivered)
            except Exception:
                log.exception("back-channel on_result hook failed")

    def _post(self, delivery: _Delivery) -> bool:
        """POST the logout token (§2.5); return whether the RP answered 200 or 204 (§2.8)."""
        body = urllib.parse.urlencode({"logout_token": delivery.token}).encode()
        uri = delivery.target.uri
        if urllib.parse.urlsplit(uri).scheme not in ("http", "https"):
            log.warning("back-channel logout to %s: the URI is not http(s)", delivery.target.client_id)
            return False
        request = urllib.request.Request(  # noqa: S310 - scheme checked above: a registered http(s) URI
            uri, data=body, method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Cache-Control": "no-store"})
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return response.status in (200, 204)
        except OSError as err:  # URLError and HTTPError are OSErrors; the token is never in them
            log.info("back-channel logout to %s: attempt %d failed: %s", delivery.target.client_id,
                     delivery.attempt + 1, getattr(err, "code", None) or getattr(err, "reason", None)
                     or type(err).__name__)
            return False
