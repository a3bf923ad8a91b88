"""Back-channel logout delivery (OIDC Back-Channel Logout 1.0 §2.5), off the request path.

``notify`` only queues: worker threads POST each client's logout token,
retrying with exponential backoff a bounded number of times. A receiver that
is down or slow never delays nor fails the logout that caused it, and a
failed delivery is logged without the token.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from policy_sso.oidc.keys import KeyRing
from policy_sso.oidc.logout_token import mint_logout_token

log = logging.getLogger("policy_sso.backchannel")


@dataclass(frozen=True)
class LogoutTarget:
    """A client to tell that a session ended: its back-channel URI and the sid/sub it knows."""

    client_id: str
    uri: str
    sid: str | None
    subject: str


@dataclass
class _Delivery:
    target: LogoutTarget
    token: str
    attempt: int = 0
    not_before: float = 0.0


class BackchannelNotifier:
    """Queues logout tokens and delivers them from background worker threads."""

    def __init__(self, keyring: KeyRing, issuer: str, *, attempts: int = 4, backoff: float = 0.5,
                 timeout: float = 2.0, workers: int = 2, queue_size: int = 10_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.keyring = keyring
        self.issuer = issuer
        self.attempts = attempts
        self.backoff = backoff
        self.timeout = timeout
        self.clock = clock
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._queue: queue.Queue[_Delivery] = queue.Queue(maxsize=queue_size)
        self._pending = 0
        self._idle = threading.Condition()
        for i in range(workers):
            threading.Thread(target=self._work, name=f"backchannel-{i}", daemon=True).start()

    def notify(self, targets: Iterable[LogoutTarget]) -> None:
        """Queue a logout token for each target and return at once; never raises."""
        now = int(self.clock())
        for target in targets:
            try:
                token = mint_logout_token(self.keyring, issuer=self.issuer, audience=target.client_id,
                                          subject=target.subject, sid=target.sid, now=now,
                                          jti=secrets.token_urlsafe(16))
                with self._idle:
                    self._pending += 1
                self._queue.put_nowait(_Delivery(target, token))
            except queue.Full:
                with self._idle:
                    self._pending -= 1
                    self.dropped += 1
                log.error("back-channel queue full; logout of %s not delivered", target.client_id)
            except Exception:  # a logout must never fail because a notification could not be made
                log.exception("could not prepare a logout token for %s", target.client_id)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every queued delivery succeeded or gave up; return whether it did in time."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def _work(self) -> None:
        while True:
            delivery = self._queue.get()
            wait = delivery.not_before - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if self._post(delivery):
                self._finish(delivered=True)
            elif delivery.attempt + 1 < self.attempts:
                delivery.attempt += 1
                delivery.not_before = time.monotonic() + self.backoff * 2 ** (delivery.attempt - 1)
                self._queue.put(delivery)
            else:
                log.warning("back-channel logout to %s failed after %d attempts",
                            delivery.target.client_id, self.attempts)
                self._finish(delivered=False)

    def _finish(self, *, delivered: bool) -> None:
        with self._idle:
            if delivered:
                self.delivered += 1
            else:
                self.failed += 1
            self._pending -= 1
            self._idle.notify_all()

    def _post(self, delivery: _Delivery) -> bool:
        """POST the logout token (§2.5); return whether the RP answered 200 or 204."""
        body = urllib.parse.urlencode({"logout_token": delivery.token}).encode()
        request = urllib.request.Request(  # noqa: S310 - a registered http(s) backchannel_logout_uri
            delivery.target.uri, data=body, method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Cache-Control": "no-store"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status in (200, 204)
        except (urllib.error.URLError, OSError, ValueError) as err:
            log.info("back-channel logout to %s: attempt %d failed: %s", delivery.target.client_id,
                     delivery.attempt + 1, getattr(err, "reason", err))
            return False
