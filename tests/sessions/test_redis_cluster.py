"""Redis Cluster: each script's keys share one slot, a cluster URL opens the same store, faults stay 503s.

The store contract suite runs against a real 3-master cluster (the ``redis_cluster`` backend in
conftest.py); these tests add what a passing suite does not show by itself: every script call
names keys of one slot (checked on a single server too, so a layout change that breaks a cluster
fails here where no cluster can start), a cross-slot script is refused rather than run, and
cluster URLs are read as documented.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import redis
from redis.cluster import RedisCluster, key_slot

from policy_sso.errors import StoreError, StoreUnavailable
from policy_sso.sessions import AuthEvent, ClientJoin, Session, open_store
from policy_sso.sessions import redis as redis_store
from policy_sso.sessions.model import new_session_id
from policy_sso.sessions.store import StoreOptions

from .conftest import LIFETIME, store_url

NOW = 1_767_268_800
DAY = 86400


def every_operation(store) -> None:
    """Call every store operation that runs a script, with the paths that reach other slots."""
    first = Session(new_session_id(), "u-alice", NOW, NOW, (AuthEvent("pwd", NOW),))
    second = Session(new_session_id(), "u-alice", NOW + 1, NOW + 1, (AuthEvent("pwd", NOW + 1),))
    store.create_session(first)
    store.create_session(second)  # beyond the bound of 1: evicts the first
    store.get_and_touch(second.id, NOW + LIFETIME.touch_interval + 1)
    store.join_client(second.id, ClientJoin("portal", "sid", NOW + 2), NOW + 2)
    moved = store.reauthenticate(second.id, AuthEvent("otp", NOW + 3), new_session_id(), NOW + 3)
    store.sessions_of("u-alice", NOW + 3)
    store.session_end(first.id, NOW + 3)
    store.end_sessions_of("u-alice", now=NOW + 4)
    store.session_end(moved.id, NOW + 4)
    store.put_refresh("t1", "fam", {"sub": "u-alice"}, NOW + DAY, NOW)
    store.rotate_refresh("t1", "t2", NOW + 1, NOW + DAY)
    store.rotate_refresh("t1", "t3", NOW + 2, NOW + DAY)  # reuse: the family goes
    store.get_refresh("t2", NOW + 2)
    store.revoke_family("fam")
    store.use_jti("code", "c1", NOW + 60, NOW)
    store.hit("k", 60, NOW)
    store.set_not_before("u-alice", NOW, NOW + DAY)
    store.put_credential("u-alice", "totp", {"n": 1})
    store.replace_credential("u-alice", "totp", {"n": 1}, {"n": 2})


def test_every_script_call_names_keys_of_one_slot(tmp_path, request, monkeypatch):
    # on one server: a layout that would need CROSSSLOT fails here even where no cluster starts
    store = open_store(store_url("redis", tmp_path, request), LIFETIME, StoreOptions(max_sessions_per_user=1))
    calls: list[tuple[bytes | str, ...]] = []
    send = store.redis.execute_command

    def spy(*args, **options):
        if str(args[0]).upper() in ("EVAL", "EVALSHA"):
            calls.append(args[3:3 + int(args[2])])
        return send(*args, **options)

    monkeypatch.setattr(store.redis, "execute_command", spy)
    every_operation(store)
    assert len(calls) >= 15
    crossing = [keys for keys in calls if len({key_slot(str(k).encode()) for k in keys}) != 1]
    assert crossing == []
    store.close()


def test_no_script_reaches_a_key_it_was_not_given():
    # on a cluster a key not in KEYS may live on another node: every key a script names is KEYS[i]
    scripts = {name: text for name, text in vars(redis_store).items()
               if name.isupper() and isinstance(text, str) and "redis.call" in text}
    assert len(scripts) >= 12
    for name, text in scripts.items():
        for line in text.splitlines():
            if "redis.call(" in line:
                target = line.split("redis.call(", 1)[1].split(",", 2)
                assert len(target) < 2 or target[1].strip().startswith("KEYS["), (name, line)


def test_the_cluster_refuses_a_script_across_two_slots(request):
    client = redis_store.connect(request.getfixturevalue("redis_cluster_url"), 5)
    a, b = "psso:{s:a}", "psso:{s:b}"
    assert key_slot(a.encode()) != key_slot(b.encode())
    # redis-py refuses before sending; a node asked directly refuses too (CROSSSLOT)
    with pytest.raises(redis.exceptions.RedisClusterException, match="same key slot"):
        client.eval("return redis.call('GET', KEYS[1])", 2, a, b)
    node = client.get_node_from_key(a)
    with pytest.raises(redis.exceptions.ClusterCrossSlotError):  # the server's CROSSSLOT
        client.execute_command("EVAL", "return redis.call('GET', KEYS[1])", 2, a, b, target_nodes=node)
    client.close()


def test_a_store_fault_from_a_cross_slot_call_is_answered_as_unavailable(tmp_path, request, monkeypatch):
    store = open_store(store_url("redis_cluster", tmp_path, request), LIFETIME)
    session = Session(new_session_id(), "u-alice", NOW, NOW, (AuthEvent("pwd", NOW),))
    # an end record in another slot than its session, as a broken layout would have it
    monkeypatch.setattr(redis_store, "_end_key", lambda session_id: f"psso:{{x:{session_id}}}:end")
    with pytest.raises(StoreUnavailable) as fault:  # the HTTP layer's 503, not a driver's exception
        store.create_session(session)
    assert isinstance(fault.value.__cause__, redis.exceptions.RedisClusterException)
    store.close()


def test_a_cluster_url_opens_the_store_on_every_node(tmp_path, request):
    url = store_url("redis_cluster", tmp_path, request)
    one, other = open_store(url, LIFETIME), open_store(url.split(",")[0] + "/0", LIFETIME)
    assert isinstance(one.redis, RedisCluster) and len(one.redis.get_primaries()) == 3
    session = Session(new_session_id(), "u-alice", NOW, NOW, (AuthEvent("pwd", NOW),))
    one.create_session(session)
    assert other.get_and_touch(session.id, NOW + 1).id == session.id  # found through one node only
    one.close()
    other.close()


@pytest.mark.parametrize(("url", "says"), [
    ("redis+cluster://127.0.0.1:7000/1", "only database 0"),
    ("redis+cluster://127.0.0.1:7000,127.0.0.1/0", "HOST:PORT"),
    ("redis+cluster:///0", "names no cluster node"),
    ("redis+cluster://127.0.0.1:7000/0?db=2", "unknown option 'db'"),
    ("rediss+cluster://user:secret@127.0.0.1:1/0", "cannot reach Redis at 127.0.0.1:1/0"),
], ids=["database", "node_without_port", "no_node", "unknown_option", "unreachable"])
def test_a_bad_or_unreachable_cluster_url_is_refused_at_start(url, says):
    with pytest.raises(StoreError, match=says) as refused:
        open_store(url, LIFETIME, StoreOptions(timeout=0.5))
    assert "secret" not in str(refused.value)


def test_audit_events_go_to_the_cluster_the_store_is_on(tmp_path, request):
    from policy_sso.audit.event import AuditEvent
    from policy_sso.audit.query import EventQuery
    from policy_sso.audit.stores import event_store_for

    store = open_store(store_url("redis_cluster", tmp_path, request), LIFETIME)
    events = event_store_for(store)
    assert isinstance(events.redis, RedisCluster)
    event = AuditEvent("session.created", NOW, "ev-1", subject="u-alice").to_json()
    events.write([(event, json.dumps(event))])
    assert [e["id"] for e in events.query(EventQuery(subject="u-alice")).events] == ["ev-1"]
    events.close()
    store.close()


def test_a_paused_node_is_answered_as_unavailable_within_a_bound_and_recovers(tmp_path, request):
    store = open_store(store_url("redis_cluster", tmp_path, request), LIFETIME, StoreOptions(timeout=0.5))
    session = Session(new_session_id(), "u-alice", NOW, NOW, (AuthEvent("pwd", NOW),))
    store.create_session(session)
    node = store.redis.get_node_from_key(store._s(session.id))
    pid = int(store.redis.info("server", target_nodes=node)["process_id"])
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.get_and_touch(session.id, NOW + 1)
        # one try and one retry after re-reading the slot map, each within the timeout
        assert time.monotonic() - started < 4, "generous: a loaded machine"
    finally:
        os.kill(pid, signal.SIGCONT)
    assert store.get_and_touch(session.id, NOW + 1).id == session.id  # no restart needed
    store.close()
