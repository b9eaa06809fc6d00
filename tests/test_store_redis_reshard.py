"""The Redis store while a Redis Cluster moves a shard's slot to another primary (what
`redis-cli --cluster reshard` does: IMPORTING on the new node, MIGRATING on the old one,
MIGRATE of its keys, then SETSLOT NODE everywhere). Writes during the move are answered by
the old node with ASK, after it with MOVED; each redirected write must be held by
`replicas` of its new node's replicas before its answer leaves (the money rule), and every
request is charged once."""

from __future__ import annotations

import signal
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from chargegw.sharding import shard_of
from chargegw.workers.charging import core
from chargegw.workers.charging.store import StoreUnavailable, ledger_check

sys.path.insert(0, str(Path(__file__).parent))
import redis_cluster  # noqa: E402
from test_store_redis_cluster import NOW, N, funded_store, op  # noqa: E402

needs_cluster = pytest.mark.skipif(redis_cluster.missing() is not None,
                                   reason=str(redis_cluster.missing()))  # fmt: skip


def _node(port: int) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)


def _start_move(src: int, dst: int, slot: int) -> None:
    """Open the move of `slot` from `src` to `dst` and migrate all its keys: the old node
    then answers ASK for them, the client's slot map still names the old node."""
    s, d = _node(src), _node(dst)
    d.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", s.execute_command("CLUSTER", "MYID"))
    s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", d.execute_command("CLUSTER", "MYID"))
    while keys := s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        s.execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 10_000, "KEYS", *keys)


def _primaries(c: redis_cluster.RedisCluster) -> dict[int, list[int]]:
    """Each primary's port -> its replicas' ports, as each node says itself (ROLE; the
    gossiped view of one node may lag just after the cluster is made)."""
    out: dict[int, list[int]] = {}
    for port in c.ports:
        role = _node(port).execute_command("ROLE")
        if role[0] == b"master":
            out[port] = [int(r[1]) for r in role[2]]
    return out


def _end_move(c: redis_cluster.RedisCluster, src: int, dst: int, slot: int) -> None:
    """Give `slot` to `dst` on every primary (new node first): the old node answers MOVED."""
    dst_id = _node(dst).execute_command("CLUSTER", "MYID")
    for p in [dst, src] + [p for p in _primaries(c) if p not in (src, dst)]:
        _node(p).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)


def _settle(s: Any, ops: list[Any], tries: int, pause: float) -> list[Any]:
    """Resend `ops` until none is refused (the client's retries: idempotent)."""
    out = s.credit_control_many(ops)
    for _ in range(tries):
        if not any(isinstance(o, Exception) for o in out):
            break
        time.sleep(pause)
        out = s.credit_control_many(ops)
    return out


def _count(port: int, slot: int) -> int:
    return int(_node(port).execute_command("CLUSTER", "COUNTKEYSINSLOT", slot))


@needs_cluster
@pytest.mark.timeout(180)
def test_a_write_redirected_by_a_slot_move_waits_for_its_new_nodes_replica() -> None:
    """`replicas = 1` on 3 primaries with a replica each; shard k's slot moves from its
    primary to another. During the move (ASK) and after it (MOVED, the client's map not
    updated yet) the shard's write lands on the new primary: with that node's replica
    stopped it must be 3004 (the old node's WAIT does not cover it), and once the replica
    is back the resent request is answered, charged once; the ledger checks."""
    pytest.importorskip("redis")
    with redis_cluster.RedisCluster(replicas=1, node_timeout_ms=3000) as c:
        # (the cluster is handed out once each primary's replica acknowledged a write, so
        # the setup's 5 s is a margin; the checks wait 0.5 s)
        s, accts = funded_store(c.url, "mv", 10_000, replicas=1, replica_wait=5.0, timeout=8.0)
        settle = partial(_settle, s, tries=100, pause=0.1)

        out = settle([op(f"m-{a}", 0, core.INITIAL, a, requested=100) for a in accts])
        assert all(o.result == 2001 for o in out), out
        # every key a shard's UPDATE script names exists from here on (a multi-key command
        # with a key missing on a slot being moved is TRYAGAIN, not redirected)
        out = settle([op(f"m-{a}", 1, core.UPDATE, a, used=10, requested=100) for a in accts])
        assert all(o.result == 2001 for o in out), out

        s.replica_wait_ms = 500
        moved = accts[0]
        slot = s.r.keyslot(s._ka(moved))
        assert {
            s.r.keyslot(s._kgen(shard_of(moved, N))),
            s.r.keyslot(s._kl(shard_of(moved, N))),
        } == {slot}
        src = s.r.get_node_from_key(s._ka(moved)).port
        primaries = _primaries(c)
        dst = next(p for p in primaries if p != src)
        (dst_replica,) = primaries[dst]

        def write_with_new_nodes_replica_stopped(number: int) -> Any:
            c.procs[dst_replica].send_signal(signal.SIGSTOP)
            try:
                return s.credit_control_many(
                    [op(f"m-{moved}", number, core.UPDATE, moved, used=10, requested=100)]
                )[0]
            finally:
                c.procs[dst_replica].send_signal(signal.SIGCONT)

        # during the move: the old node answers ASK, the slot map is unchanged
        _start_move(src, dst, slot)
        assert _count(src, slot) == 0 and _count(dst, slot) > 0
        got = write_with_new_nodes_replica_stopped(2)
        assert isinstance(got, StoreUnavailable), got
        assert _count(src, slot) == 0  # the write went to the new node, not back to the old
        assert s.r.get_node_from_key(s._ka(moved)).port == src  # ASK leaves no trace
        out = settle([op(f"m-{a}", 2, core.UPDATE, a, used=10, requested=100) for a in accts])
        assert all(o.result == 2001 for o in out), out

        # after it: the old node answers MOVED (the client still names it)
        _end_move(c, src, dst, slot)
        assert s.r.get_node_from_key(s._ka(moved)).port == src
        got = write_with_new_nodes_replica_stopped(3)
        assert isinstance(got, StoreUnavailable), got
        assert s.r.get_node_from_key(s._ka(moved)).port == dst  # MOVED updated the map
        out = settle([op(f"m-{a}", 3, core.UPDATE, a, used=10, requested=100) for a in accts])
        assert all(o.result == 2001 for o in out), out
        # and now straight to the new node, its WAIT with it
        got = write_with_new_nodes_replica_stopped(4)
        assert isinstance(got, StoreUnavailable), got
        out = settle([op(f"m-{a}", 4, core.UPDATE, a, used=10, requested=100) for a in accts])
        assert all(o.result == 2001 for o in out), out

        out = settle([op(f"m-{a}", 5, core.TERMINATION, a, used=5) for a in accts])
        assert all(o.result == 2001 for o in out), out
        assert _count(src, slot) == 0
        rep = ledger_check(s)
        assert rep.ok, rep.problems
        # each session: 4 x 10 units used (100 each) + 5 (one block of 10: 100), resends free
        assert rep.debits == len(accts) * 500 and rep.reserved == 0 and rep.open_sessions == 0
        balances = {s.get_account(a).account.balance for a in accts}
        assert balances == {10_000 - 500}, balances  # the moved shard's account as the others
        s.close()


@needs_cluster
@pytest.mark.timeout(180)
def test_writes_while_a_slot_moves_key_by_key_are_charged_once(monkeypatch) -> None:
    """A shard's slot moves key by key (MIGRATE of one key, then the next) while the store
    charges every shard round after round: its scripts meet ASK, TRYAGAIN (their keys split
    between the two nodes: 3004, resent) and then MOVED. Every request is charged once,
    the ledger checks, and the moved shard's keys are all on the new node."""
    pytest.importorskip("redis")
    from chargegw.workers.charging.stores.redis_conn import RedisConn

    followed: list[int] = []
    redirect_node = RedisConn._redirect_node

    def counting(self: RedisConn, e: Any) -> Any:
        followed.append(e.port)
        return redirect_node(self, e)

    monkeypatch.setattr(RedisConn, "_redirect_node", counting)
    with redis_cluster.RedisCluster(replicas=1, node_timeout_ms=3000) as c:
        s, accts = funded_store(c.url, "kbk", 100_000, replicas=1, replica_wait=5.0, timeout=8.0)
        settle = partial(_settle, s, tries=200, pause=0.02)

        out = settle([op(f"k-{a}", 0, core.INITIAL, a, requested=100) for a in accts])
        assert all(o.result == 2001 for o in out), out
        moved = accts[0]
        slot = s.r.keyslot(s._ka(moved))
        src = s.r.get_node_from_key(s._ka(moved)).port
        dst = next(p for p in _primaries(c) if p != src)
        done = threading.Event()
        failed: list[BaseException] = []

        def move() -> None:
            try:
                sn, dn = _node(src), _node(dst)
                dn.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING",
                                   sn.execute_command("CLUSTER", "MYID"))  # fmt: skip
                sn.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING",
                                   dn.execute_command("CLUSTER", "MYID"))  # fmt: skip
                while keys := sn.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1):
                    sn.execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 10_000, "KEYS", *keys)
                    time.sleep(0.05)
                _end_move(c, src, dst, slot)
            except BaseException as exc:  # noqa: BLE001 - reported by the test thread
                failed.append(exc)
            finally:
                done.set()

        mover = threading.Thread(target=move)
        number = 1
        mover.start()
        try:
            while not done.is_set() or number < 4:
                ops = [op(f"k-{a}", number, core.UPDATE, a, used=10, requested=100)
                       for a in accts]  # fmt: skip
                out = settle(ops)
                assert all(o.result == 2001 for o in out), out
                number += 1
        finally:
            mover.join(30)
        assert not failed, failed
        out = settle([op(f"k-{a}", number, core.TERMINATION, a, used=5) for a in accts])
        assert all(o.result == 2001 for o in out), out
        assert followed and set(followed) == {dst}, followed  # redirected, to the new node
        assert _count(src, slot) == 0 and _count(dst, slot) > 0
        assert s.r.get_node_from_key(s._ka(moved)).port == dst
        rep = ledger_check(s)
        assert rep.ok, rep.problems
        # each session: (number - 1) UPDATEs of 10 units (100 each) + 5 (one block: 100)
        each = (number - 1) * 100 + 100
        assert rep.debits == len(accts) * each and rep.open_sessions == 0, (rep, number)
        balances = {s.get_account(a).account.balance for a in accts}
        assert balances == {100_000 - each}, balances
        s.close()


# -- Rf records (the CDR store) ----------------------------------------------------------

# The CDR store refuses a server whose acknowledged writes are not on disk: before Redis 7.2
# (no WAITAOF) it needs appendfsync always.
CDR_AOF = ("--appendonly", "yes", "--appendfsync", "always")


def _cdr_sessions(cdrs: Any, ports: list[int]) -> dict[int, str]:
    """One session id per primary of `ports` (its record hash is on that node)."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < len(ports):
        sid = f"cdr-{i}"
        found.setdefault(cdrs.r.get_node_from_key(cdrs._key(sid)).port, sid)
        i += 1
    return found


@needs_cluster
@pytest.mark.timeout(180)
def test_a_cdr_redirected_by_a_slot_move_waits_for_its_new_nodes_replica() -> None:
    """Rf's rule on a cluster with `replicas = 1`: a batch of CDRs of two sessions on two
    primaries is written while one session's slot moves to the third primary (ASK), then
    after the move (MOVED). With the new node's replica stopped the batch is
    StoreUnavailable (no ACA 2001: the old node's WAIT does not cover the redirected
    record); once it runs again the resent batch is acknowledged, every record already
    there (False: stored once), and each CDR is read back exactly once, the moved
    session's from the new node."""
    pytest.importorskip("redis")
    from chargegw.workers.charging.redis_store import RedisCdrStore
    from chargegw.workers.charging.store import Cdr

    with redis_cluster.RedisCluster(replicas=1, node_timeout_ms=3000, extra=CDR_AOF) as c:
        cdrs = RedisCdrStore(c.url, prefix="mvc", timeout=8.0, retention=3600, replicas=1,
                             replica_wait=5.0)  # fmt: skip
        primaries = _primaries(c)
        sids = _cdr_sessions(cdrs, list(primaries))
        src = next(iter(sids))
        moved = sids[src]
        dst = next(p for p in primaries if p != src)
        (dst_replica,) = primaries[dst]
        slot = cdrs.r.keyslot(cdrs._key(moved))
        del sids[dst]  # the batch writes nothing else there: only the moved record needs it

        def batch(number: int) -> list[Cdr]:
            return [Cdr(sid, number, 3, NOW + number, "c.test", "test") for sid in sids.values()]

        def settle(number: int) -> list[bool]:
            """Resend a batch until it is acknowledged (the client's retries)."""
            for _ in range(100):
                try:
                    return cdrs.put_cdrs(batch(number))
                except StoreUnavailable:
                    time.sleep(0.1)
            return cdrs.put_cdrs(batch(number))

        def put_with_new_nodes_replica_stopped(number: int) -> None:
            c.procs[dst_replica].send_signal(signal.SIGSTOP)
            try:
                with pytest.raises(StoreUnavailable):
                    cdrs.put_cdrs(batch(number))
            finally:
                c.procs[dst_replica].send_signal(signal.SIGCONT)

        assert settle(0) == [True] * len(sids)
        cdrs.replica_wait_ms = 500
        # during the move: the old node answers ASK, the slot map is unchanged
        _start_move(src, dst, slot)
        assert _count(src, slot) == 0 and _count(dst, slot) > 0
        put_with_new_nodes_replica_stopped(1)
        assert _count(src, slot) == 0  # the record went to the new node, not back to the old
        assert cdrs.r.get_node_from_key(cdrs._key(moved)).port == src  # ASK leaves no trace
        assert settle(1) == [False] * len(sids)  # each written by the refused try: once
        # after it: the old node answers MOVED (the client still names it)
        _end_move(c, src, dst, slot)
        put_with_new_nodes_replica_stopped(2)
        assert cdrs.r.get_node_from_key(cdrs._key(moved)).port == dst  # MOVED updated the map
        assert settle(2) == [False] * len(sids)
        assert settle(3) == [True] * len(sids)

        got = sorted((x.session_id, x.record_number) for x in cdrs.iter_cdrs())
        assert got == sorted((sid, k) for sid in sids.values() for k in range(4))
        assert _count(src, slot) == 0
        assert _node(dst).hlen(cdrs._key(moved)) == 4
        assert 0 < _node(dst).ttl(cdrs._key(moved)) <= 3600  # its EXPIRE followed it too
        cdrs.close()


def _commands(raw: bytes) -> list[str]:
    """The command names in a packed (RESP) send of one or more commands."""
    names: list[str] = []
    lines = raw.split(b"\r\n")
    i = 0
    while i < len(lines):
        if lines[i].startswith(b"*"):
            names.append(lines[i + 2].decode().upper())  # *N, $len, NAME
            i += 1 + 2 * int(lines[i][1:])
        else:
            i += 1
    return names


@needs_cluster
@pytest.mark.timeout(180)
def test_a_redirected_cdrs_resend_ends_with_wait_and_waitaof_on_its_new_node(
    monkeypatch,
) -> None:
    """In WAITAOF mode (Redis 7.2+) a record redirected by ASK is sent to its new node in one
    send with ASKING before it and WAIT then WAITAOF after it, as the old node's share ends:
    what is on the wire to the new node is checked (before 7.2 the mode is forced and the
    server refuses WAITAOF, so that batch is refused as well)."""
    pytest.importorskip("redis")
    import redis

    from chargegw.workers.charging.redis_store import RedisCdrStore
    from chargegw.workers.charging.store import Cdr

    with redis_cluster.RedisCluster(replicas=1, node_timeout_ms=3000, extra=CDR_AOF) as c:
        cdrs = RedisCdrStore(c.url, prefix="aof", timeout=8.0, replicas=1, replica_wait=5.0)
        native = cdrs._mode == "waitaof"
        cdrs._mode = "waitaof"
        primaries = _primaries(c)
        sids = _cdr_sessions(cdrs, list(primaries))
        src = next(iter(sids))
        moved = sids[src]
        dst = next(p for p in primaries if p != src)
        _start_move(src, dst, slot := cdrs.r.keyslot(cdrs._key(moved)))
        sent: list[tuple[int, list[str]]] = []
        send = redis.connection.Connection.send_packed_command

        def sending(self: Any, cmd: Any, *a: Any, **k: Any) -> Any:
            raw = cmd if isinstance(cmd, bytes) else b"".join(bytes(x) for x in cmd)
            sent.append((self.port, _commands(raw)))
            return send(self, cmd, *a, **k)

        monkeypatch.setattr(redis.connection.Connection, "send_packed_command", sending)
        batch = [Cdr(sid, 0, 1, NOW, "c.test", "test") for sid in sids.values()]
        if native:
            assert cdrs.put_cdrs(batch) == [True] * len(sids)
        else:
            with pytest.raises((StoreUnavailable, redis.exceptions.ResponseError)):
                cdrs.put_cdrs(batch)
        monkeypatch.undo()
        to_dst = [names for port, names in sent if port == dst]
        assert ["ASKING", "HSETNX", "WAIT", "WAITAOF"] in to_dst, sent
        assert ["HSETNX", "WAIT", "WAITAOF"] in [names for port, names in sent if port == src]
        assert _count(src, slot) == 0 and _count(dst, slot) == 1  # written once, on dst
        cdrs.close()
