"""The Redis store on a real Redis Cluster (issue 10: "hash tags so that Redis Cluster works.
Redis Cluster, not a home-made replication scheme, is how state leaves one machine"): the
URL, one slot per shard and the shards over every primary, scripts refused across slots,
WAIT on each primary written and a primary's failover with no
answered change lost, and `chargegw ledger check` across every shard. The contract suite
(`test_store_contract.py`) runs on a cluster too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from chargegw.sharding import shard_of
from chargegw.workers.charging import core
from chargegw.workers.charging.core import CCOp, LedgerEntry, ServiceReq
from chargegw.workers.charging.store import (
    AccountRow,
    StoreConfig,
    StoreUnavailable,
    SySubscription,
    ledger_check,
)
from chargegw.workers.charging.stores.redis_db import enc, parse_cluster_url

sys.path.insert(0, str(Path(__file__).parent))
import redis_cluster  # noqa: E402
from shard_accounts import one_per_shard  # noqa: E402

NOW = 1_750_000_000.0
N = 16  # shards: enough to land on every one of 3 primaries, few enough to cover quickly

needs_cluster = pytest.mark.skipif(redis_cluster.missing() is not None,
                                   reason=str(redis_cluster.missing()))  # fmt: skip


class ShardOp(CCOp):
    shard: int = -1


def op(sid: str, number: int, rtype: int, acct: str, used: int = 0, requested: int = 0,
       shards: int = N) -> ShardOp:  # fmt: skip
    return ShardOp(sid, number, rtype, [ServiceReq("1:", 100, 10, used, requested)],
                   [(0, acct)], -1, "c.test", "test", NOW, 100.0, 50.0,
                   shard=shard_of(acct, shards))  # fmt: skip


def accounts_on_every_shard(n: int) -> list[str]:
    return one_per_shard(n, prefix="46711", width=5)


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("redis")
    if redis_cluster.missing() is not None:
        pytest.skip(redis_cluster.missing())
    with redis_cluster.RedisCluster() as c:
        yield c


def store_on(url: str, prefix: str, **kw):
    from chargegw.workers.charging.redis_store import RedisStore

    kw.setdefault("timeout", 2.0)
    return RedisStore(url, prefix=prefix, shards=kw.pop("shards", N), **kw)


def funded_store(url: str, prefix: str, balance: int, **kw):  # noqa: ANN003, ANN201
    """A store on the cluster at `url` that serves every shard, with one account of
    `balance` on each shard (its own number as its E.164 subscription): (store, accounts)."""
    s = store_on(url, prefix, **kw)
    accts = accounts_on_every_shard(N)
    s.import_accounts([AccountRow(a, balance, 0, False, [(0, a)]) for a in accts], NOW)
    s.assign(range(N))
    return s, accts


def test_cluster_urls_are_parsed_and_bad_ones_named() -> None:
    assert parse_cluster_url("redis+cluster://10.0.0.1:7000,[::1]:7001") == (
        [("10.0.0.1", 7000), ("::1", 7001)], None)  # fmt: skip
    assert parse_cluster_url("redis+cluster://:pw@h:1/0") == ([("h", 1)], "pw")
    for bad in ("redis+cluster://", "redis+cluster://h", "redis+cluster://h:x",
                "redis+cluster://h:1/2", "redis+cluster://h:1/0/0", "redis+cluster://h:0"):  # fmt: skip
        with pytest.raises(ValueError):
            parse_cluster_url(bad)
    with pytest.raises(ValueError, match="database 0 only"):
        StoreConfig(backend="redis", url="redis+cluster://h:1/3")
    with pytest.raises(ValueError, match="HOST:PORT"):
        StoreConfig(backend="redis", cdr_url="redis+cluster://h")
    cfg = StoreConfig(backend="redis", url="redis+cluster://h:1,h:2", replicas=1)
    assert cfg.replicas == 1


@needs_cluster
def test_a_store_opened_before_its_cluster_is_up_waits_for_it() -> None:
    """A worker may start before the cluster: the store opens, answers StoreUnavailable
    (3004) at once while no node answers, and serves as soon as the cluster is up."""
    pytest.importorskip("redis")
    c = redis_cluster.RedisCluster()
    c.ports = [redis_cluster._free_pair() for _ in range(3)]
    s = store_on(c.url, "late", timeout=0.3)
    a = accounts_on_every_shard(N)[0]
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable):
        s.import_accounts([AccountRow(a, 1_000, 0, False, [(0, a)])], NOW)
    out = s.credit_control_many([op("late", 0, core.INITIAL, a, requested=10)])
    assert isinstance(out[0], StoreUnavailable) and time.monotonic() - t0 < 3, out
    with c:
        s.import_accounts([AccountRow(a, 1_000, 0, False, [(0, a)])], NOW)
        out = s.credit_control_many([op("late", 0, core.INITIAL, a, requested=10)])
        assert out[0].result == 2001, out
        assert s.get_account(a).account.reserved == 100
        s.close()


@needs_cluster
def test_one_shard_is_one_slot_and_the_shards_spread_over_every_primary(cluster) -> None:
    """Every key a shard's traffic writes (accounts, sessions, ledger, indexes, identities,
    Sy sets) carries its tag, so lies in the tag's slot on one node; the shards
    spread over all 3 primaries; the untagged keys are the documented single-key ones."""
    import redis

    s = store_on(cluster.url, "slots")
    accts = accounts_on_every_shard(N)
    s.import_accounts([AccountRow(a, 1_000, 0, False, [(0, a), (1, f"x{a}")]) for a in accts],
                      NOW)  # fmt: skip
    s.assign(range(N))  # claims: each shard's fencing token
    out = s.credit_control_many([op(f"s-{a}", 0, core.INITIAL, a, requested=100) for a in accts])
    assert all(o.result == 2001 for o in out), out  # the whole balance: under FUI
    out = s.credit_control_many([op(f"s-{a}", 1, core.UPDATE, a, used=10) for a in accts[::2]])
    assert all(o.result == 2001 for o in out), out
    for a in accts:
        s.topup(a, 500, NOW)  # queues a RAR notice (store-wide list)
        s.sy_put(SySubscription(f"sy-{a}", a, "c.test", "test", []))
    keys: dict[str, str] = {}  # key -> the node holding it
    for node in s.r.get_primaries():
        for k in s.r.keys("slots:*", target_nodes=node):
            keys[k.decode()] = node.name
    shard_nodes: dict[int, set[str]] = {}
    untagged = set()
    for k, node in keys.items():
        if "{" not in k:
            untagged.add(k.split(":")[1])
            continue
        tag = k[k.index("{") + 1 : k.index("}")]
        n = int(tag[1:])
        assert s.r.keyslot(k) == s.r.keyslot(f"{{s{n}}}"), k
        shard_nodes.setdefault(n, set()).add(node)
    assert sorted(shard_nodes) == list(range(N))
    assert all(len(nodes) == 1 for nodes in shard_nodes.values()), shard_nodes
    assert len({next(iter(v)) for v in shard_nodes.values()}) == 3  # every primary holds shards
    assert untagged <= {"alias", "sidx", "sy", "layout", "rules", "seeded", "notices"}, untagged
    assert {"alias", "sidx", "sy", "layout"} <= untagged
    kinds = {k.split("}:", 1)[1].split(":")[0] for k in keys if "}:" in k}
    assert {"gen", "a", "s", "l", "accts", "ss", "subs", "sub", "sweep", "sy"} <= kinds
    # A script naming keys of two shards is refused by the node (nothing half applied).
    a0, a1 = accts[0], accts[1]
    before = s.r.get(s._ka(a0))
    sc = s._script(shard_of(a0, N))
    sc.compare(s._ka(a0), before)
    sc.set(s._ka(a0), b"x")
    sc.set(s._ka(a1), b"x")
    with pytest.raises(redis.exceptions.ResponseError, match="same slot"):  # CROSSSLOT
        s._run(sc)
    assert s.r.get(s._ka(a0)) == before
    assert ledger_check(s).ok
    s.close()


@needs_cluster
def test_a_warm_batch_is_one_send_per_primary(cluster, monkeypatch) -> None:
    """Issue 10's "one round trip per batch" on a cluster: the owner's warm batch over every
    shard is one write per primary, all sent before any reply is read."""
    import redis

    s, accts = funded_store(cluster.url, "rtt", 10**9)
    out = s.credit_control_many([op(f"w-{a}", 0, core.INITIAL, a, requested=10) for a in accts])
    assert all(o.result == 2001 for o in out), out
    events: list[str] = []
    send, read = (
        redis.connection.Connection.send_packed_command,
        redis.connection.Connection.read_response,
    )

    def sending(self, cmd, *a, **k):
        raw = cmd if isinstance(cmd, bytes) else b"".join(cmd)
        assert b"GETKEYS" not in raw  # no round trip to learn a command's keys
        events.append(f"send {self.port}")
        return send(self, cmd, *a, **k)

    def reading(self, *a, **k):
        events.append("read")
        return read(self, *a, **k)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", sending)
    monkeypatch.setattr(redis.connection.Connection, "read_response", reading)
    ops = [op(f"w-{a}", 1, core.UPDATE, a, used=10, requested=10) for a in accts]
    out = s.credit_control_many(ops)
    monkeypatch.undo()
    assert all(o.result == 2001 for o in out), out
    sends = [e for e in events if e.startswith("send")]
    assert len(sends) == len(set(sends)) == 3, events  # one per primary
    assert events[:3] == sends, events  # every node's share sent before the first read
    assert ledger_check(s).ok
    s.close()


@needs_cluster
def test_a_node_that_lost_the_script_gets_it_again(cluster) -> None:
    """SCRIPT FLUSH (or a restarted node) on a cluster: the NOSCRIPT comes back per command
    as a value; the batch is planned again and answered, the script loaded on every primary."""
    from chargegw.workers.charging.stores.redis_db import CAS_SHA

    s = store_on(cluster.url, "noscript")
    accts = accounts_on_every_shard(N)
    s.import_accounts([AccountRow(a, 1_000, 0, False, [(0, a)]) for a in accts], NOW)
    s.r.script_flush()
    assert s.r.script_exists(CAS_SHA) == [False]
    out = s.credit_control_many([op(f"n-{a}", 0, core.INITIAL, a, requested=10) for a in accts])
    assert all(o.result == 2001 for o in out), out
    assert s.r.script_exists(CAS_SHA) == [True]  # on every primary
    assert sum(s.get_account(a).account.reserved for a in accts) == 100 * N  # once each
    s.close()


@needs_cluster
def test_the_old_layouts_migration_is_refused_on_a_cluster(cluster) -> None:
    """Its transactions span slots (that layout never ran on a cluster): a clear refusal."""
    from chargegw.workers.charging.redis_store import LayoutError, migrate_redis_layout

    with pytest.raises(LayoutError, match="single server"):
        migrate_redis_layout(cluster.url, prefix="old", shards=N)


@needs_cluster
def test_ledger_check_command_reconciles_every_shard_of_a_cluster(cluster) -> None:
    """`chargegw ledger check --store-url redis+cluster://...` reads all 64 shards (the
    default count) on 3 nodes: the figures add up, and one forged credit fails the check."""
    s = store_on(cluster.url, "cg", shards=64)
    accts = accounts_on_every_shard(64)
    s.import_accounts([AccountRow(a, 10_000, 0, False, [(0, a)]) for a in accts], NOW)
    out = s.credit_control_many(
        [op(f"L-{a}", 0, core.INITIAL, a, requested=100, shards=64) for a in accts]
        + [op(f"L-{a}", 1, core.TERMINATION, a, used=30, shards=64) for a in accts]
    )
    assert all(o.result == 2001 for o in out), out

    def check() -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        env.pop("CHARGEGW_CONFIG", None)
        return subprocess.run(
            [sys.executable, "-m", "chargegw.cli", "ledger", "check", "--json",
             "--store-url", cluster.url],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip

    got = check()
    assert got.returncode == 0, got.stderr
    rep = orjson.loads(got.stdout)
    assert rep["ok"] and rep["accounts"] == 64 and rep["debits"] == 64 * 300
    assert rep["credits"] == 64 * 10_000 and rep["balances"] == 64 * (10_000 - 300)
    forged = LedgerEntry(NOW, accts[-1], "credit", "", 0, "forged", 0, 0, 1, 1)
    s.r.rpush(s._kl(63), enc.encode(forged))
    got = check()
    assert got.returncode == 1 and not orjson.loads(got.stdout)["ok"], got.stdout
    s.close()


@needs_cluster
@pytest.mark.timeout(120)
def test_wait_on_every_primary_and_a_primary_failover_loses_no_answered_change() -> None:
    """3 primaries with a replica each, `replicas = 1`: a batch counts only once the
    replica of each primary it wrote holds it (a stopped replica: 3004 for its primary's
    shards, the others go on); then the primary of a shard is killed: 3004 for the gap, the
    client follows the promoted replica, and every answered change is there."""
    pytest.importorskip("redis")
    with redis_cluster.RedisCluster(replicas=1, node_timeout_ms=1000) as c:
        s, accts = funded_store(c.url, "ha", 10_000, replicas=1, replica_wait=1.0, timeout=3.0)
        out = s.credit_control_many([op(f"h-{a}", 0, core.INITIAL, a, requested=100)
                                     for a in accts])  # fmt: skip
        assert all(o.result == 2001 for o in out), out
        victim = accts[0]
        node = s.r.get_node_from_key(s._ka(victim))
        roles = c.roles()
        replica = next(p for p, primary in roles.items() if primary == node.port)
        other = next(a for a in accts
                     if s.r.get_node_from_key(s._ka(a)).port != node.port)  # fmt: skip
        c.procs[replica].send_signal(signal.SIGSTOP)
        try:
            # the stopped replica's primary took the write: no answer counts (3004)
            out = s.credit_control_many([op(f"h-{victim}", 1, core.UPDATE, victim, used=10)])
            assert isinstance(out[0], StoreUnavailable), out
            # another primary's shard is not held up (WAIT on an unwritten node is at once)
            out = s.credit_control_many([op(f"h-{other}", 1, core.UPDATE, other, used=10)])
            assert out[0].result == 2001, out
        finally:
            c.procs[replica].send_signal(signal.SIGCONT)
        ops = [op(f"h-{a}", 1, core.UPDATE, a, used=10, requested=100) for a in accts]
        for _ in range(50):  # the replica catches up
            out = s.credit_control_many(ops)
            if all(not isinstance(o, Exception) for o in out):
                break
            time.sleep(0.1)
        assert all(o.result == 2001 for o in out), out
        balances = {a: s.get_account(a).account for a in accts}
        c.kill(node.port)
        seen: list[object] = []
        t0 = time.monotonic()
        while True:
            try:
                got = {a: s.get_account(a).account for a in accts}
                break
            except StoreUnavailable as exc:
                seen.append(exc)
                assert time.monotonic() - t0 < 30, f"no failover: {seen[-1:]}"
                time.sleep(0.2)
        assert seen, "the killed primary was never missed"
        assert got == balances
        # The promoted replica has no replica of its own: writes wait (3004) until the old
        # primary comes back as its replica; then the sessions end, each charged once.
        terms = [op(f"h-{a}", 2, core.TERMINATION, a, used=5) for a in accts]
        out = s.credit_control_many(terms)
        assert any(isinstance(o, StoreUnavailable) for o in out), out
        c.restart(node.port)
        for _ in range(100):
            out = s.credit_control_many(terms)
            if not any(isinstance(o, Exception) for o in out):
                break
            time.sleep(0.1)
        assert all(o.result == 2001 for o in out), out
        rep = ledger_check(s)
        assert rep.ok, rep.problems
        # each session: 10 units used (100) + 5 (one block of 10: 100), the resends free
        assert rep.debits == len(accts) * 200 and rep.reserved == 0 and rep.open_sessions == 0
        s.close()
