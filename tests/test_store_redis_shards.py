"""The Redis store as the engine of sharded state (issue 10): shard-tagged keys, claims and
fencing, aliases and the Session-Id fallback, the owner's cache against admin writes, one
round trip per warm batch, no fsync wait, and the old layout refused and migrated."""

from __future__ import annotations

import shutil

import pytest

from chargegw.sharding import NotOwner, ShardMoved, shard_of
from chargegw.workers.charging import core
from chargegw.workers.charging.core import CCOp, ServiceReq
from chargegw.workers.charging.store import AccountRow, StoreUnavailable, ledger_check
from chargegw.workers.charging.testing import RedisServer

if shutil.which("redis-server") is None:
    pytest.skip("redis-server binary not installed (apt-get install redis-server)", allow_module_level=True)  # fmt: skip
redis = pytest.importorskip("redis")

from chargegw.workers.charging.redis_store import (  # noqa: E402
    LayoutError,
    RedisStore,
    migrate_redis_layout,
)

NOW = 1_750_000_000.0
N = 16


class ShardOp(CCOp):
    """A CCOp as the sharded runtime hands it: with the shard the gateway routed it to."""

    shard: int = -1


def op(sid, number, rtype, services, subs=((0, "111"),), shard=-1, now=NOW) -> ShardOp:
    return ShardOp(sid, number, rtype, list(services), list(subs), -1, "c.test", "test", now,
                   100.0, 50.0, shard=shard)  # fmt: skip


def svc(used=0, requested=0) -> ServiceReq:
    return ServiceReq("1:", 100, 10, used, requested)


@pytest.fixture(scope="module")
def srv():
    with RedisServer() as s:
        yield s


_n = [0]


@pytest.fixture
def make(srv):
    _n[0] += 1
    prefix = f"sh{_n[0]}"
    made: list[RedisStore] = []

    def new(**kw) -> RedisStore:
        s = RedisStore(srv.url, prefix=prefix, timeout=2.0, shards=kw.pop("shards", N), **kw)
        made.append(s)
        return s

    yield new
    for s in made:
        s.close()


def two_shard_ids() -> tuple[str, str]:
    """An account id and a subscription datum that hash to different shards."""
    for i in range(100):
        a, d = f"acct{i}", f"4670{i:06d}"
        if shard_of(a, N) != shard_of(d, N):
            return a, d
    raise AssertionError


def test_every_key_of_an_account_is_tagged_by_its_shard(make):
    s = make()
    s.import_accounts([AccountRow("A1", 10_000, 0, False, [(0, "111")])], NOW)
    s.credit_control(op("s1", 0, core.INITIAL, [svc(requested=100)]))
    s.credit_control(op("s1", 1, core.UPDATE, [svc(used=10, requested=100)]))
    keys = [k.decode() for k in s.r.keys(f"{s.p}:*")]
    tagged = [k for k in keys if "{" in k]
    want = f"{{s{shard_of('A1', N)}}}"
    assert tagged and all(want in k or k.endswith(":gen") for k in tagged), keys
    assert not any("{A1}" in k for k in keys)
    if shard_of("111", N) != shard_of("A1", N):
        assert s.r.get(f"{s.p}:alias:0:111") == str(shard_of("A1", N)).encode()
    assert ledger_check(s).ok


def test_a_newer_claim_fences_the_old_owner_off_and_nothing_is_applied(make):
    old, new = make(), make()
    a = "4670000001"
    old.import_accounts([AccountRow(a, 10_000, 0, False, [(0, a)])], NOW)
    n = shard_of(a, N)
    g1 = old.claim(n)
    assert old.owned() == frozenset({n})
    out = old.credit_control_many([op("s1", 0, core.INITIAL, [svc(requested=100)], [(0, a)], n)])
    assert out[0].result == 2001
    g2 = new.claim(n)
    assert g2 == g1 + 1
    out = old.credit_control_many(
        [op("s1", 1, core.UPDATE, [svc(used=50, requested=100)], [(0, a)], n)]
    )
    assert isinstance(out[0], NotOwner) and out[0].shard == n
    assert n not in old.owned()
    assert new.get_account(a).account.balance == 10_000  # the fenced write did not land
    out = new.credit_control_many(
        [op("s1", 1, core.UPDATE, [svc(used=50, requested=100)], [(0, a)], n)]
    )
    assert out[0].result == 2001 and new.get_account(a).account.balance == 9_500
    assert ledger_check(new).ok


def test_a_sharded_store_refuses_shards_it_does_not_own(make):
    s = make()
    a = "4670000002"
    s.import_accounts([AccountRow(a, 10_000, 0, False, [(0, a)])], NOW)
    n = shard_of(a, N)
    s.claim((n + 1) % N)
    out = s.credit_control_many([op("s1", 0, core.INITIAL, [svc(requested=1)], [(0, a)], n)])
    assert isinstance(out[0], NotOwner) and out[0].shard == n
    out = s.credit_control_many([op("s2", 0, core.INITIAL, [svc(requested=1)], [(0, a)])])
    assert isinstance(out[0], NotOwner)  # shard computed from the identity: not owned either
    s.assign({n})
    assert s.owned() == frozenset({n})
    assert (
        s.credit_control(op("s1", 0, core.INITIAL, [svc(requested=1)], [(0, a)], n)).result == 2001
    )


def test_alias_and_session_fallback_name_the_right_shard(make):
    s = make()
    acct, data = two_shard_ids()
    sa, sd = shard_of(acct, N), shard_of(data, N)
    s.import_accounts([AccountRow(acct, 10_000, 0, False, [(0, data)])], NOW)
    s.assign(range(N))
    out = s.credit_control_many([op("s1", 0, core.INITIAL, [svc(requested=10)], [(0, data)], sd)])
    assert isinstance(out[0], ShardMoved) and not isinstance(out[0], NotOwner)
    assert out[0].shard == sa
    assert s.get_account(acct).account.reserved == 0  # nothing applied
    out = s.credit_control_many([op("s1", 0, core.INITIAL, [svc(requested=10)], [(0, data)], sa)])
    assert out[0].result == 2001 and out[0].account == acct
    # a CCR-U the gateway routed elsewhere (forgot the session): moved to the session's shard
    other = make()
    other.assign(range(N))
    wrong = (sa + 1) % N
    out = other.credit_control_many(
        [op("s1", 1, core.UPDATE, [svc(used=5, requested=10)], [(0, data)], wrong)]
    )
    assert isinstance(out[0], ShardMoved) and out[0].shard == sa
    # unknown session anywhere: a normal answer
    out = other.credit_control_many([op("nope", 1, core.UPDATE, [svc(used=5)], [], wrong)])
    assert out[0].result == 5002


def test_unsharded_store_follows_aliases_and_sessions(make):
    s = make()
    acct, data = two_shard_ids()
    s.import_accounts([AccountRow(acct, 10_000, 0, False, [(0, data)])], NOW)
    assert (
        s.credit_control(op("s1", 0, core.INITIAL, [svc(requested=10)], [(0, data)])).result == 2001
    )
    assert s.credit_control(op("s1", 1, core.TERMINATION, [svc(used=10)], [])).result == 2001
    assert s.get_account(acct).account.balance == 9_900 and ledger_check(s).ok


def test_owner_cache_meets_an_admin_write_and_reads_again(make):
    owner, admin = make(), make()
    a = "4670000003"
    owner.import_accounts([AccountRow(a, 1_000, 0, False, [(0, a)])], NOW)
    n = shard_of(a, N)
    owner.claim(n)
    out = owner.credit_control(op("s1", 0, core.INITIAL, [svc(requested=100)], [(0, a)], n))
    assert out.services[0].granted == 100 and out.services[0].fui  # the whole balance
    admin.topup(a, 5_000, NOW)  # behind the owner's cached row
    admin.set_blocked(a, False)
    out = owner.credit_control(op("s2", 0, core.INITIAL, [svc(requested=100)], [(0, a)], n))
    assert out.result == 2001 and out.services[0].granted == 100 and not out.services[0].fui
    acct = admin.get_account(a).account
    assert (acct.balance, acct.reserved) == (6_000, 2_000)
    assert ledger_check(admin).ok


def test_a_warm_batch_is_one_round_trip_and_never_waits_for_fsync(make, monkeypatch):
    s = make()
    rows = [AccountRow(f"9{i:09d}", 10**9, 0, False, [(0, f"9{i:09d}")]) for i in range(20)]
    s.import_accounts(rows, NOW)
    s.assign(range(N))
    ops = [
        op(f"w{i}", 0, core.INITIAL, [svc(requested=10)], [(0, r.id)], shard_of(r.id, N))
        for i, r in enumerate(rows)
    ]
    assert all(o.result == 2001 for o in s.credit_control_many(ops))
    sent = []
    real = redis.connection.Connection.send_packed_command

    def counted(self, *a, **k):
        sent.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counted)
    # same account twice and a session's two requests in one batch: still one pipeline
    ops = [
        op(f"w{i}", 1, core.UPDATE, [svc(used=10, requested=10)], [], shard_of(r.id, N))
        for i, r in enumerate(rows)
    ] + [op("w0", 2, core.UPDATE, [svc(used=10, requested=10)], [], shard_of(rows[0].id, N))]
    out = s.credit_control_many(ops)
    monkeypatch.undo()
    assert [o.result for o in out] == [2001] * 21 and len(sent) == 1
    assert s.get_account(rows[0].id).account.balance == 10**9 - 200
    stats = s.r.info("commandstats")
    assert not any(k in stats for k in ("cmdstat_wait", "cmdstat_waitaof")), sorted(stats)
    assert ledger_check(s).ok


def test_shard_count_is_fixed_when_the_store_is_made(make):
    s = make()
    assert s.shards == N
    with pytest.raises(LayoutError):
        make(shards=N * 2).credit_control(op("x", 0, core.INITIAL, []))
    assert make(shards=None).shards == N  # adopts the store's


def test_old_account_tagged_layout_is_refused_then_migrated(srv):
    r = redis.Redis.from_url(srv.url)
    from chargegw.workers.charging.stores.redis_db import enc

    p = "legacy"
    acct = core.Account("A1", 9_000, 1_000, 0)
    sess = core.Session("s1", "A1", core.OPEN, 0, core.INITIAL, b"", {"1:": core.Resv(1_000, 100, 100, 10)}, expires=NOW + 100)  # fmt: skip
    entry = core.LedgerEntry(NOW, "A1", "credit", "", 0, "import", 0, 0, 1, 10_000)
    debit = core.LedgerEntry(NOW, "A1", "debit", "s0", 0, "1:", 100, 100, 10, 1_000)
    r.set(f"{p}:{{A1}}:a", enc.encode(acct))
    r.set(f"{p}:{{A1}}:s:s1", enc.encode(sess))
    r.rpush(f"{p}:{{A1}}:l", enc.encode(entry), enc.encode(debit))
    r.sadd(f"{p}:{{A1}}:ss", "s1")
    r.sadd(f"{p}:{{A1}}:subs", "0:111")
    r.set(f"{p}:sub:0:111", "A1")
    r.set(f"{p}:sidx:s1", "A1")  # the old store indexed new sessions the same way
    r.sadd(f"{p}:accounts", "A1")
    r.zadd(f"{p}:sweep", {"A1\ns1": NOW + 100})
    with pytest.raises(LayoutError, match="migrate_redis_layout"):
        RedisStore(srv.url, prefix=p, timeout=2.0, shards=N)
    assert migrate_redis_layout(srv.url, prefix=p, shards=N) == 1
    assert migrate_redis_layout(srv.url, prefix=p, shards=N) == 0  # done once
    s = RedisStore(srv.url, prefix=p, timeout=2.0, shards=N)
    assert not r.exists(f"{p}:accounts", f"{p}:{{A1}}:a", f"{p}:sub:0:111")
    info = s.get_account("111")
    assert info.account.balance == 9_000 and info.open_sessions == 1
    rep = ledger_check(s)
    assert rep.ok, rep.problems
    out = s.credit_control(op("s1", 1, core.TERMINATION, [svc(used=50)]))
    assert out.result == 2001 and s.get_account("A1").account.balance == 8_500
    assert ledger_check(s).ok
    s.close()
    r.close()


def test_an_assign_made_while_redis_is_away_is_claimed_once_it_is_back(tmp_path):
    """A worker told its shards while Redis is down must take them when Redis returns,
    not refuse them (NotOwner) until the gateway happens to send another Assign."""
    import subprocess
    import time

    from chargegw.workers.charging.testing import free_port

    port = free_port()
    argv = [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--dir", str(tmp_path)]  # fmt: skip

    def up() -> subprocess.Popen[bytes]:
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = redis.Redis(port=port, socket_timeout=0.2)
        end = time.monotonic() + 10
        while True:
            try:
                probe.ping()
                return p
            except redis.ConnectionError:
                assert time.monotonic() < end
                time.sleep(0.05)

    server = up()
    store = RedisStore(f"redis://127.0.0.1:{port}/0", timeout=0.5, shards=N)
    try:
        server.terminate()
        server.wait(10)
        s = shard_of("4670000042", N)
        store.assign_shards(frozenset({s}))  # Redis away: kept, not raised
        assert not store.owns(s)
        # while it is away the assigned shard's requests get StoreUnavailable (3004 now),
        # not NotOwner (which would have the gateway wait out its deadline)
        down = store.credit_control_many(
            [op("y", 0, core.INITIAL, [svc(requested=10)], subs=[(0, "4670000042")], shard=s)]
        )
        assert isinstance(down[0], StoreUnavailable), down
        server = up()
        store._claim_retry_at = 0.0  # the retry pacing (once a second) is not under test
        out = store.credit_control_many(
            [op("x", 0, core.INITIAL, [svc(requested=10)], subs=[(0, "4670000042")], shard=s)]
        )
        assert not isinstance(out[0], NotOwner), out
        assert store.owns(s) and store.owned() == {s}
    finally:
        store.close()
        server.terminate()
        server.wait(10)
