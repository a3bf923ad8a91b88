"""Back-channel logout delivery (§2.5) to real loopback receivers: verified tokens, retries, no blocking."""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from policy_sso.oidc.backchannel import BackchannelNotifier, LogoutTarget
from policy_sso.oidc.keys import KeyRing
from policy_sso.oidc.logout_token import BACKCHANNEL_EVENT

ISS = "http://127.0.0.1:8080"


@pytest.fixture(scope="module")
def ring(tmp_path_factory) -> KeyRing:
    return KeyRing.load_or_create(tmp_path_factory.mktemp("state"), ("RS256",))


@pytest.fixture
def notifiers():
    made: list[BackchannelNotifier] = []

    def make(ring: KeyRing, **options) -> BackchannelNotifier:
        made.append(BackchannelNotifier(ring, ISS, **options))
        return made[-1]

    yield make
    for notifier in made:
        notifier.close(timeout=0)


class Receiver:
    """A relying party's back-channel endpoint: verifies each logout token with joserfc against the JWKS.

    Answers the scripted statuses in turn (then 200), 400 for a token that does
    not verify, as an RP would (§2.8), after ``delay`` seconds.
    """

    def __init__(self, ring: KeyRing, statuses: list[int] | None = None, delay: float = 0.0) -> None:
        self.requests: list[dict] = []
        self.claims: list[dict] = []
        self.statuses = list(statuses or [])
        self.delay = delay
        keys = KeySet.import_key_set(ring.jwks())
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                form = urllib.parse.parse_qs(body)
                outer.requests.append({"at": time.monotonic(), "path": self.path, "form": form,
                                       "content_type": self.headers["Content-Type"]})
                status = outer.statuses.pop(0) if outer.statuses else 200
                try:
                    token = jose_jwt.decode(form["logout_token"][0], keys, algorithms=["RS256"])
                    if token.header.get("typ") != "logout+jwt":
                        raise ValueError("typ")
                    outer.claims.append(token.claims)
                except (JoseError, KeyError, ValueError):
                    status = 400
                time.sleep(outer.delay)
                self.send_response(status)
                if status in (301, 302, 303, 307, 308):
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # where a followed redirect would land: a 200 that proves nothing
                outer.requests.append({"at": time.monotonic(), "path": self.path, "form": {},
                                       "content_type": None})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/backchannel"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers(ring):
    made: list[Receiver] = []

    def make(**options) -> Receiver:
        made.append(Receiver(ring, **options))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def _closed_port_url() -> str:
    with socket.socket() as probe:  # bound then closed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/backchannel"


def _wait_for(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_each_client_gets_a_form_post_with_a_logout_token_that_verifies(ring, notifiers, receivers):
    portal, payments = receivers(), receivers()
    notifier = notifiers(ring, backoff=0.01)
    notifier.notify([LogoutTarget("portal", portal.url, "sid-1", "u-bob"),
                     ("payments-web", payments.url, "sid-2", "u-bob")])  # a plain 4-tuple works too
    assert notifier.drain(5)
    for receiver, client, sid in ((portal, "portal", "sid-1"), (payments, "payments-web", "sid-2")):
        (request,) = receiver.requests
        assert request["content_type"] == "application/x-www-form-urlencoded"
        assert list(request["form"]) == ["logout_token"] and request["path"] == "/backchannel"
        (claims,) = receiver.claims
        assert (claims["iss"], claims["aud"], claims["sid"], claims["sub"]) == (ISS, client, sid, "u-bob")
        assert claims["events"] == {BACKCHANNEL_EVENT: {}} and "nonce" not in claims
    assert notifier.stats() == {"delivered": 2, "failed": 0, "dropped": 0, "retried": 0, "pending": 0}


def test_retries_until_the_receiver_recovers_with_the_same_token(ring, notifiers, receivers):
    receiver = receivers(statuses=[500, 500, 200])
    notifier = notifiers(ring, backoff=0.01, attempts=4)
    notifier.notify([LogoutTarget("portal", receiver.url, "sid", "u")])
    assert notifier.drain(5)
    assert len(receiver.requests) == 3
    assert len({c["jti"] for c in receiver.claims}) == 1  # one logout event, one jti, however many tries
    assert (notifier.delivered, notifier.failed, notifier.retried) == (1, 0, 2)


def test_gives_up_after_the_bounded_attempts_with_exponential_backoff(ring, notifiers, receivers):
    receiver = receivers(statuses=[500] * 10)
    notifier = notifiers(ring, backoff=0.05, attempts=4)
    notifier.notify([LogoutTarget("portal", receiver.url, "sid", "u")])
    assert notifier.drain(5)
    assert len(receiver.requests) == 4
    gaps = [b["at"] - a["at"] for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
    assert [round(g, 2) >= 0.05 * 2 ** i for i, g in enumerate(gaps)] == [True, True, True]  # 0.05, 0.1, 0.2
    assert (notifier.delivered, notifier.failed) == (0, 1)


@pytest.mark.parametrize("status", [204, 400, 404, 302], ids=["204-ok", "400-refused", "404", "302-redirect"])
def test_only_200_or_204_counts_and_redirects_are_not_followed(ring, notifiers, receivers, status):
    receiver = receivers(statuses=[status] * 3)
    notifier = notifiers(ring, backoff=0.01, attempts=3)
    notifier.notify([LogoutTarget("portal", receiver.url, "sid", "u")])
    assert notifier.drain(5)
    assert {r["path"] for r in receiver.requests} == {"/backchannel"}  # never to the redirect target
    assert (notifier.delivered, notifier.failed) == ((1, 0) if status == 204 else (0, 1))


@pytest.mark.parametrize("receiver_kind", ["down", "sleeps"])
def test_a_down_or_sleeping_receiver_never_blocks_notify(ring, notifiers, receivers, receiver_kind):
    url = receivers(delay=1.0).url if receiver_kind == "sleeps" else _closed_port_url()
    count = 4 if receiver_kind == "sleeps" else 50
    notifier = notifiers(ring, backoff=0.01, attempts=2, timeout=0.2)
    started = time.perf_counter()
    notifier.notify([LogoutTarget(f"client-{i}", url, "sid", "u") for i in range(count)])
    assert time.perf_counter() - started < 0.05
    assert notifier.drain(10)
    assert (notifier.delivered, notifier.failed) == (0, count)


def test_a_retry_waiting_for_its_turn_never_holds_up_another_client(ring, notifiers, receivers):
    live = receivers()
    notifier = notifiers(ring, workers=1, backoff=5.0, attempts=2)
    notifier.notify([LogoutTarget("dead", _closed_port_url(), "sid", "u")])
    _wait_for(lambda: notifier.retried == 1, 2.0)  # its retry is now due in 5 s
    notifier.notify([LogoutTarget("live", live.url, "sid", "u")])
    _wait_for(lambda: notifier.delivered == 1, 2.0)  # the only worker did not sleep on the retry
    assert notifier.stats() == {"delivered": 1, "failed": 0, "dropped": 0, "retried": 1, "pending": 1}


@pytest.mark.parametrize("uri", ["file:///etc/passwd", "not a url", "", "http://[::1"],
                         ids=["file-scheme", "words", "empty", "broken-ipv6"])
def test_a_bad_uri_fails_quietly(ring, notifiers, uri):
    notifier = notifiers(ring, backoff=0.01, attempts=2)
    notifier.notify([LogoutTarget("portal", uri, "sid", "u")])
    assert notifier.drain(5)
    assert (notifier.delivered, notifier.failed) == (0, 1)


@pytest.mark.parametrize("targets", [None, 42, [("too", "short")]],
                         ids=["none", "not-iterable", "short-tuple"])
def test_notify_never_raises_into_the_caller(ring, notifiers, targets):
    notifier = notifiers(ring)
    notifier.notify(targets)
    assert notifier.drain(1)


def test_a_full_queue_drops_and_counts_instead_of_blocking(ring, notifiers, receivers):
    receiver = receivers(delay=0.5)
    notifier = notifiers(ring, workers=1, queue_size=2, backoff=0.01)
    started = time.perf_counter()
    notifier.notify([LogoutTarget(f"c{i}", receiver.url, "sid", "u") for i in range(5)])
    assert time.perf_counter() - started < 0.05
    assert notifier.drain(5)
    assert (notifier.delivered, notifier.dropped) == (2, 3)


def test_failures_are_logged_by_client_id_never_with_the_token(ring, notifiers, receivers, caplog):
    receiver = receivers(statuses=[500, 500])
    notifier = notifiers(ring, backoff=0.01, attempts=2)
    with caplog.at_level(logging.DEBUG, logger="policy_sso.backchannel"):
        notifier.notify([LogoutTarget("portal", receiver.url, "sid", "u")])
        assert notifier.drain(5)
    token = receiver.requests[0]["form"]["logout_token"][0]
    logged = "\n".join(caplog.text.splitlines() + [r.getMessage() for r in caplog.records])
    assert "portal" in logged and "failed after 2 attempts" in logged
    assert token not in logged and token.split(".")[2] not in logged


def test_on_result_reports_each_finished_delivery(ring, notifiers, receivers):
    results: list[tuple[str, bool]] = []
    good, bad = receivers(), receivers(statuses=[500])
    notifier = notifiers(ring, backoff=0.01, attempts=1, on_result=lambda c, ok: results.append((c, ok)))
    notifier.notify([LogoutTarget("good", good.url, "sid", "u"), LogoutTarget("bad", bad.url, "sid", "u")])
    assert notifier.drain(5)
    assert sorted(results) == [("bad", False), ("good", True)]


def test_no_threads_until_first_use_and_close_stops_them(ring):
    notifier = BackchannelNotifier(ring, ISS, workers=3)
    assert notifier._threads == []
    notifier.notify([])
    assert len(notifier._threads) == 3 and all(t.is_alive() for t in notifier._threads)
    notifier.close(timeout=2)
    assert not any(t.is_alive() for t in notifier._threads)
    notifier.notify([LogoutTarget("portal", "http://127.0.0.1:1/", "sid", "u")])  # after close: ignored
    assert notifier.stats()["pending"] == 0


def test_a_hanging_receiver_delays_no_other_receiver(ring, notifiers, receivers):
    hanging, healthy = receivers(delay=3.0), receivers()
    notifier = notifiers(ring, backoff=0.01, attempts=1, timeout=2.0)
    notifier.notify([LogoutTarget(f"stuck-{i}", hanging.url, "sid", "u") for i in range(12)])
    time.sleep(0.1)  # the hanging receiver's first POST is in flight
    started = time.monotonic()
    notifier.notify([LogoutTarget("portal", healthy.url, "sid", "u")])
    _wait_for(lambda: len(healthy.claims) == 1, 5.0)
    assert len(healthy.claims) == 1
    assert time.monotonic() - started < 1.5  # was 12 s: behind twelve 2 s timeouts on two workers
    assert len(hanging.requests) <= 2  # one POST at a time to the hanging receiver, never a flood


def test_each_receiver_has_a_bounded_queue(ring, notifiers, receivers):
    slow, other = receivers(delay=0.3), receivers()
    notifier = notifiers(ring, backoff=0.01, attempts=1, per_receiver=3)
    notifier.notify([LogoutTarget(f"c{i}", slow.url, "sid", "u") for i in range(6)])
    notifier.notify([LogoutTarget("other", other.url, "sid", "u")])
    assert notifier.drain(10)
    assert (notifier.delivered, notifier.dropped) == (4, 3)
    assert len(other.claims) == 1


def test_workers_stay_bounded_however_many_receivers(ring, notifiers, receivers):
    notifier = notifiers(ring, backoff=0.01, attempts=1, timeout=0.2, workers=3)
    urls = [receivers().url for _ in range(8)]
    notifier.notify([LogoutTarget(f"c{i}", url, "sid", "u") for i, url in enumerate(urls)])
    assert notifier.drain(10)
    assert len(notifier._threads) == 3 and notifier.delivered == 8
