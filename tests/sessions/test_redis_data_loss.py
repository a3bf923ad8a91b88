"""A Redis that restarts empty: what was issued before is refused, not taken for new.

Single-use records (codes, request_uris, DPoP proofs) and revocations live in
Redis; when it comes back without its data they are gone, and a used code
would redeem again, a revoked token work again. The store notices (the
dataset's epoch key is gone) before it answers the call that reconnected, and
the provider refuses whatever was issued before (``Store.intact_since``).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import free_port, redis_binary, wait_until_listening

from policy_sso.errors import InvalidGrant, InvalidToken
from policy_sso.oidc.codes import CodeGrant
from policy_sso.oidc.grant import Grant
from policy_sso.oidc.keys import KeyRing
from policy_sso.oidc.provider import Provider
from policy_sso.oidc.token_endpoint import token_request
from policy_sso.oidc.userinfo import verify_bearer
from policy_sso.sessions import SessionLifetime, open_store
from policy_sso.sessions.redis import EPOCH_CHECK_INTERVAL
from policy_sso.tenant import Tenant

REDIRECT = "http://127.0.0.1:9001/callback"


class Redis:
    """A redis-server without persistence on one port, which can be restarted there (empty)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.port = workdir, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = self._start()

    def _start(self) -> subprocess.Popen:
        process = subprocess.Popen(
            [redis_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly",
             "no", "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until_listening(self.port, process, "redis-server")
        return process

    def restart_empty(self) -> None:
        self.stop()
        self.process = self._start()

    def restart_from_snapshot(self, client: Any) -> None:
        """Save a snapshot, restart, and reload it: the records written after the snapshot are gone."""
        client.save()
        self.stop()
        self.process = self._start()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Redis]:
    server = Redis(tmp_path)
    yield server
    server.stop()


def test_the_store_notices_a_restart_before_answering_the_call_that_reconnected(redis_server: Redis) -> None:
    store = open_store(redis_server.url, SessionLifetime())
    now = int(time.time())
    assert store.intact_since() <= now + 1  # the dataset began when this store first found it
    assert store.use_jti("code", "c1", now + 60, now)
    assert not store.use_jti("code", "c1", now + 60, now)
    redis_server.restart_empty()
    # the record is gone: the store cannot tell the code was used ...
    assert store.use_jti("code", "c1", now + 60, now)
    # ... but it knows that it lost its records since the code was issued
    assert store.intact_since() > now
    store.close()


def test_a_flush_without_a_restart_is_noticed_within_a_second(redis_server: Redis) -> None:
    store = open_store(redis_server.url, SessionLifetime())
    before = store.intact_since()
    time.sleep(1.05)  # a later second than the epoch the store found
    store.redis.flushall()
    time.sleep(EPOCH_CHECK_INTERVAL)
    assert store.intact_since() > before
    store.close()


def test_a_used_code_and_a_revoked_token_stay_refused_after_a_restart(redis_server: Redis, demo: Tenant,
                                                                      ring: KeyRing) -> None:
    store = open_store(redis_server.url, demo.settings.lifetime)
    p = Provider.build(demo, store, ring)
    client = p.client("portal")
    assert client is not None
    now = int(time.time())  # issued at once, in the second the new dataset began
    code = p.codes.seal(CodeGrant(Grant("u-alice", "portal", "openid", auth_time=now), REDIRECT, None,
                                  now + demo.settings.tokens.code_lifetime))
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    tokens = token_request(p, client, form, now)
    assert verify_bearer(p, tokens["access_token"], now)["sub"] == "u-alice"

    redis_server.restart_empty()
    with pytest.raises(InvalidGrant):  # the same code again: its redemption was lost, not undone
        token_request(p, client, form, now)
    with pytest.raises(InvalidToken):  # a token issued before may have been revoked since
        verify_bearer(p, tokens["access_token"], now)
    # what is issued after the loss works
    later = store.intact_since()
    assert now < later <= int(time.time()) + 1  # the second after the restart
    fresh = p.codes.seal(CodeGrant(Grant("u-alice", "portal", "openid", auth_time=later), REDIRECT, None,
                                   later + demo.settings.tokens.code_lifetime))
    renewed = token_request(p, client, {**form, "code": fresh}, later)
    assert verify_bearer(p, renewed["access_token"], later)["sub"] == "u-alice"
    store.close()


@pytest.mark.parametrize("value", ["not an epoch", b"\xff\xfe", "99999999999 ahead"])
def test_an_epoch_key_someone_else_wrote_is_taken_as_a_loss_not_a_fault(redis_server: Redis,
                                                                         value: str | bytes) -> None:
    store = open_store(redis_server.url, SessionLifetime())
    before = store.intact_since()
    store.redis.set("psso:epoch", value)
    time.sleep(EPOCH_CHECK_INTERVAL)
    # a loss, seen now: what was issued before now is refused, and nothing later (no clock ahead)
    assert before <= store.intact_since() <= int(time.time()) + 1
    store.close()


def test_an_epoch_ahead_of_this_clock_is_not_believed(redis_server: Redis) -> None:
    import redis

    redis.Redis.from_url(redis_server.url).set("psso:epoch", f"{int(time.time()) + 600} fast-clock")
    store = open_store(redis_server.url, SessionLifetime())
    assert store.intact_since() <= int(time.time())
    store.close()


def test_a_restart_that_reloads_a_snapshot_is_a_loss_too(redis_server: Redis) -> None:
    store = open_store(redis_server.url, SessionLifetime())
    now = int(time.time())
    redis_server.restart_from_snapshot(store.redis)  # the epoch comes back with the snapshot
    assert store.use_jti("code", "after-snapshot", now + 60, now)
    assert store.intact_since() > now  # the server restarted (its run_id): its last writes may be lost
    store.close()


def test_a_totp_code_used_before_a_restart_is_not_taken_again(redis_server: Redis, demo: Tenant,
                                                              ring: KeyRing) -> None:
    import pyotp
    import redis

    from policy_sso.audit import AuditLog
    from policy_sso.oidc import sign_in
    from policy_sso.sessions.model import AuthEvent, new_session

    now = int(time.time())
    # a dataset that began ten minutes ago: any code of the last minutes may have been spent in it
    redis.Redis.from_url(redis_server.url).set("psso:epoch", f"{now - 600} earlier")
    store = open_store(redis_server.url, demo.settings.lifetime)
    assert store.intact_since() == now - 600
    p = Provider.build(demo, store, ring, None, AuditLog.disabled())
    secret = (demo.directory / "secrets" / "alice.totp").read_text().strip()

    def sign_in_with(code: str, now: int) -> sign_in.Attempt:
        session = new_session("u-alice", (AuthEvent("pwd", now),), now)
        store.create_session(session)
        return sign_in.sign_in_otp(p, session, code, now)

    code = pyotp.TOTP(secret).at(now)
    assert sign_in_with(code, now).session_id
    assert sign_in_with(code, now).session_id is None  # spent
    redis_server.restart_empty()
    # its record is gone with the data: the same code, still within its drift window, stays refused
    refused = sign_in_with(code, now)
    assert refused.session_id is None and refused.message is not None
    assert refused.message.key == "message.code_used"
    # a code that became valid after the loss was found is taken, once (a minute and a half on)
    later = store.intact_since() + 90
    fresh = pyotp.TOTP(secret).at(later)
    assert sign_in_with(fresh, later).session_id
    assert sign_in_with(fresh, later).session_id is None
    store.close()


def test_a_flush_is_noticed_by_the_call_that_spends_a_record_again(redis_server: Redis) -> None:
    """No second of grace: the spend that finds its record gone also finds the epoch gone."""
    store = open_store(redis_server.url, SessionLifetime())
    now = int(time.time())
    assert store.use_jtis([("code", "c1", now + 60)], now) == (True,)
    store.redis.flushall()
    assert store.use_jtis([("code", "c1", now + 60)], now) == (True,)  # the record is gone ...
    assert store.intact_since() > now  # ... and the caller, asking at once, refuses what came before
    assert store.use_jti("par", "r1", now + 60, now)  # one record alone is spent the same way
    store.redis.flushall()
    assert store.use_jti("par", "r1", now + 60, now)
    assert store.intact_since() > now
    store.close()


def _session(subject: str, at: int):
    from policy_sso.sessions.model import AuthEvent, new_session

    return new_session(subject, (AuthEvent("pwd", at),), at)


def test_a_snapshot_that_lost_a_logout_and_a_revocation_brings_neither_back(redis_server: Redis) -> None:
    """Restarted from a snapshot older than a logout and a refresh token's revocation: the count of
    ends went back, so the dataset is taken as replaced, and what it brings back stays ended."""
    store = open_store(redis_server.url, SessionLifetime())
    now = int(time.time())
    kept, ended = _session("u-bob", now), _session("u-alice", now)
    store.create_session(kept)
    store.create_session(ended)
    store.put_refresh("rt-1", "fam-1", {"sub": "u-alice", "granted_at": now}, now + 3600, now)
    store.redis.save()  # the snapshot: both sessions and the family alive
    assert store.end_session(ended.id, now=now) is not None
    store.revoke_family("fam-1", now)
    redis_server.stop()
    redis_server.process = redis_server._start()  # back from the snapshot, without the last writes
    assert store.get_session(ended.id, now) is None  # the logout holds
    assert store.get_and_touch(ended.id, now) is None
    assert store.get_refresh("rt-1", now) is None  # the revocation holds
    assert store.rotate_refresh("rt-1", "rt-2", now, now + 3600).status == "unknown"
    # every session from before the replacement goes with it: the store cannot tell which ended
    assert store.get_session(kept.id, now) is None
    assert store.sessions_of("u-bob", now) == []
    later = store.intact_since()
    fresh = _session("u-bob", later)  # a sign-in after it works
    store.create_session(fresh)
    assert store.get_session(fresh.id, later) is not None
    store.close()


def test_a_restart_that_kept_every_end_keeps_sessions_and_refresh_tokens(redis_server: Redis) -> None:
    """A restart from a snapshot taken after the last end (an AOF, or a clean shutdown's save) is not
    a replacement: sessions and refresh tokens stay, only short-lived single-use records are refused."""
    store = open_store(redis_server.url, SessionLifetime())
    now = int(time.time())
    session = _session("u-alice", now)
    store.create_session(session)
    store.put_refresh("rt-1", "fam-1", {"sub": "u-alice", "granted_at": now}, now + 3600, now)
    store.end_session(_session("u-carol", now).id, now=now)  # nothing to end: counts nothing
    redis_server.restart_from_snapshot(store.redis)
    assert store.get_session(session.id, now) is not None
    assert store.get_refresh("rt-1", now) is not None
    assert store.intact_since() > now  # codes and access tokens from before are still refused
    store.close()
