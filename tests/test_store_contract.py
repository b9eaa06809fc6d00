"""One contract suite for every store backend: SQLite always, Redis when redis-server exists,
and Redis Cluster (3 primaries on loopback) when redis-cli exists too."""

from __future__ import annotations

import multiprocessing as mp
import shutil
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargegw.workers.charging import core
from chargegw.workers.charging.core import CCOp, ServiceReq
from chargegw.workers.charging.money import price_of
from chargegw.workers.charging.store import (
    AccountRow,
    Cdr,
    ProvisionRule,
    StoreConfig,
    StoreError,
    SyCounter,
    SySubscription,
    ledger_check,
)
from chargegw.workers.charging.testing import RedisServer

sys.path.insert(0, str(Path(__file__).parent))
import redis_cluster  # noqa: E402

HAS_REDIS = shutil.which("redis-server") is not None
E164 = 0
NOW = 1_750_000_000.0


@pytest.fixture(scope="module")
def redis_server():
    if not HAS_REDIS:
        pytest.skip("redis-server binary not installed (apt-get install redis-server)")
    with RedisServer() as srv:
        yield srv


def _cluster(extra: tuple[str, ...] = ()):
    why = redis_cluster.missing()
    if why is not None:
        pytest.skip(why)
    pytest.importorskip("redis")
    with redis_cluster.RedisCluster(extra=extra) as c:
        yield c


@pytest.fixture(scope="module")
def cluster_server():
    """A private 3-primary Redis Cluster (about 2 s to start)."""
    yield from _cluster()


REDIS_KINDS = ("redis", "cluster")


def redis_of(request, kind: str):
    """The server fixture a backend needs (None for SQLite)."""
    if kind == "redis":
        return request.getfixturevalue("redis_server")
    if kind == "cluster":
        return request.getfixturevalue("cluster_server")
    return None


_n = [0]


def make_store(kind: str, tmp_path, redis_server=None):
    if kind == "sqlite":
        from chargegw.workers.charging.sqlite_store import SqliteStore

        return SqliteStore(str(tmp_path / "charging.db"), timeout=5.0)
    if kind == "sharded":  # an owner of every shard, claimed from the (adopted) home file
        return sharded(tmp_path, "t1", range(SHARDS))
    from chargegw.workers.charging.redis_store import RedisStore

    _n[0] += 1
    return RedisStore(redis_server.url, prefix=f"t{_n[0]}", timeout=2.0)


SHARDS = 8  # few shards, so that a handful of accounts spread over several of them


def sharded(tmp_path, owner: str, shards=None):
    """A sharded SQLite store of `tmp_path` owned by `owner`; with `shards`, assigned them."""
    from chargegw.workers.charging.sqlite_store import open_sharded

    s = open_sharded(str(tmp_path / "charging.db"), owner=owner, shards=SHARDS, timeout=5.0)
    if shards is not None:
        s.assign_shards(frozenset(shards))
    return s


def admin(tmp_path):
    """What the operator's CLIs open: the sharded store, never assigned."""
    return sharded(tmp_path, "admin")


@pytest.fixture(params=["sqlite", "sharded", "redis", "cluster"])
def store(request, tmp_path):
    s = make_store(request.param, tmp_path, redis_of(request, request.param))
    yield s
    s.close()


def svc(key="1:", price=100, unit=10, used=0, requested=0) -> ServiceReq:
    return ServiceReq(key, price, unit, used, requested)


def op(sid, number, rtype, services, subs=((E164, "111"),), now=NOW, action=-1, tcc=100.0) -> CCOp:
    return CCOp(
        sid,
        number,
        rtype,
        list(services),
        list(subs),
        action,
        "client.test",
        "test",
        now,
        tcc,
        50.0,
    )


def seed(store, balance=10_000, limit=0, blocked=False, acct="A1", msisdn="111"):
    store.import_accounts([AccountRow(acct, balance, limit, blocked, [(E164, msisdn)])], NOW)


def test_initial_update_terminate_moves_money_once(store):
    seed(store, balance=10_000)
    out = store.credit_control(op("s1", 0, core.INITIAL, [svc(requested=100)]))
    assert out.result == 2001 and out.services[0].granted == 100
    acct = store.get_account("A1").account
    assert (acct.balance, acct.reserved) == (10_000, 1000)
    out = store.credit_control(op("s1", 1, core.UPDATE, [svc(used=35, requested=100)]))
    assert out.services[0].charged == 400  # 35 units in blocks of 10 -> 4 blocks x 100
    acct = store.get_account("A1").account
    assert (acct.balance, acct.reserved) == (9_600, 1000)
    out = store.credit_control(op("s1", 2, core.TERMINATION, [svc(used=10)]))
    assert out.result == 2001
    acct = store.get_account("A1").account
    assert (acct.balance, acct.reserved) == (9_500, 0)
    rep = ledger_check(store)
    assert rep.ok, rep.problems
    assert rep.debits == 500 and rep.rated == 500


def test_retransmission_is_answered_again_and_not_charged(store):
    seed(store)
    store.credit_control(op("s1", 0, core.INITIAL, [svc(requested=100)]))
    first = store.credit_control(op("s1", 1, core.UPDATE, [svc(used=50, requested=100)]))
    again = store.credit_control(op("s1", 1, core.UPDATE, [svc(used=50, requested=100)]))
    assert again.replay and not first.replay
    first.replay = again.replay = False
    assert first == again
    assert store.get_account("A1").account.balance == 10_000 - 500
    term = store.credit_control(op("s1", 2, core.TERMINATION, [svc(used=5)]))
    term2 = store.credit_control(op("s1", 2, core.TERMINATION, [svc(used=5)]))
    assert term2.replay and term2.services == term.services
    assert store.get_account("A1").account.balance == 10_000 - 600
    assert ledger_check(store).ok


def test_out_of_sequence_and_unknown_session(store):
    seed(store)
    assert store.credit_control(op("nope", 1, core.UPDATE, [svc(used=5)])).result == 5002
    store.credit_control(op("s1", 0, core.INITIAL, [svc(requested=10)]))
    store.credit_control(op("s1", 1, core.UPDATE, [svc(used=5, requested=10)]))
    store.credit_control(op("s1", 2, core.UPDATE, [svc(used=5, requested=10)]))
    late = store.credit_control(op("s1", 1, core.UPDATE, [svc(used=5, requested=10)]))
    assert late.result == 5004 and late.failed_avp == "CC-Request-Number"
    again_initial = store.credit_control(op("s1", 7, core.INITIAL, [svc(requested=10)]))
    assert again_initial.result == 5004
    assert store.get_account("A1").account.balance == 10_000 - 200
    store.credit_control(op("s1", 3, core.TERMINATION, []))
    assert store.credit_control(op("s1", 4, core.UPDATE, [svc(used=1)])).result == 5002
    assert ledger_check(store).ok


def test_grant_capped_by_balance_gives_final_unit_then_4012(store):
    seed(store, balance=250)
    out = store.credit_control(op("s1", 0, core.INITIAL, [svc(requested=100)]))
    assert out.services[0].granted == 20 and out.services[0].fui  # two blocks of 10 units
    out = store.credit_control(op("s1", 1, core.UPDATE, [svc(used=20, requested=100)]))
    assert out.result == 4012 and out.services[0].result == 4012 and out.services[0].granted == 0
    acct = store.get_account("A1").account
    assert acct.balance == 50 and acct.reserved == 0
    assert ledger_check(store).ok


def test_full_grant_that_exhausts_balance_is_final(store):
    seed(store, balance=1000)
    out = store.credit_control(op("s1", 0, core.INITIAL, [svc(requested=100)]))
    assert out.services[0].granted == 100 and out.services[0].fui
    seed(store, balance=5000)
    out = store.credit_control(
        op("s2", 0, core.INITIAL, [svc(requested=100)], subs=[(E164, "111")])
    )
    assert not out.services[0].fui


def test_overuse_beyond_credit_limit_is_recorded_as_shortfall(store):
    seed(store, balance=300, limit=-200)
    store.credit_control(op("s1", 0, core.INITIAL, [svc(requested=10)]))
    out = store.credit_control(op("s1", 1, core.TERMINATION, [svc(used=100)]))  # rated 1000
    assert out.services[0].charged == 500
    acct = store.get_account("A1").account
    assert acct.balance == -200 and acct.balance >= acct.credit_limit
    rep = ledger_check(store)
    assert rep.ok and rep.shortfall == 500 and rep.rated == 1000


def test_unknown_user_blocked_and_provisioning_rule(store):
    assert (
        store.credit_control(
            op("s1", 0, core.INITIAL, [svc(requested=10)], subs=[(E164, "999")])
        ).result
        == 5030
    )
    seed(store, blocked=True)
    assert store.credit_control(op("s2", 0, core.INITIAL, [svc(requested=10)])).result == 4010
    store.set_rules([ProvisionRule(E164, "4670", 5_000, 0)])
    out = store.credit_control(
        op("s3", 0, core.INITIAL, [svc(requested=10)], subs=[(E164, "4670000000042")])
    )
    assert out.result == 2001 and out.account == "4670000000042"
    info = store.get_account("4670000000042")
    assert info.account.balance == 5_000 and info.account.reserved == 100
    assert (E164, "4670000000042") in info.subscriptions
    out = store.credit_control(
        op("s4", 0, core.INITIAL, [svc(requested=10)], subs=[(E164, "4670000000042")])
    )
    assert (
        out.account == "4670000000042"
        and store.get_account("4670000000042").account.reserved == 200
    )
    assert ledger_check(store).ok


def test_block_queues_asr_and_topup_queues_rar_for_final_unit_sessions(store):
    seed(store, balance=150)
    seed(store, balance=10_000, acct="B", msisdn="222")
    store.credit_control(op("low", 0, core.INITIAL, [svc(requested=100)]))
    store.credit_control(op("rich", 0, core.INITIAL, [svc(requested=10)], subs=[(E164, "222")]))
    store.topup("A1", 1000, NOW)
    store.topup("B", 1000, NOW)
    notices = store.take_notices()
    assert [(n.kind, n.session, n.client_host) for n in notices] == [("rar", "low", "client.test")]
    assert store.take_notices() == []
    store.set_blocked("B", True)
    assert [(n.kind, n.session) for n in store.take_notices()] == [("asr", "rich")]
    out = store.credit_control(
        op("rich", 1, core.UPDATE, [svc(used=10, requested=10)], subs=[(E164, "222")])
    )
    assert out.result == 4010 and out.services[0].charged == 100
    assert store.get_account("B").account.reserved == 0
    with pytest.raises(StoreError):
        store.topup("nobody", 5, NOW)
    with pytest.raises(StoreError):
        store.topup("A1", -5, NOW)
    assert ledger_check(store).ok


def test_sweep_releases_silent_sessions_and_forgets_closed_ones(store):
    seed(store)
    store.credit_control(op("idle", 0, core.INITIAL, [svc(requested=100)], tcc=10))
    store.credit_control(op("busy", 0, core.INITIAL, [svc(requested=100)], tcc=10))
    store.credit_control(
        op("busy", 1, core.UPDATE, [svc(used=1, requested=100)], now=NOW + 8, tcc=10)
    )
    assert store.sweep(NOW + 5, 50.0) == 0
    assert store.sweep(NOW + 12, 50.0) == 1
    acct = store.get_account("A1").account
    assert acct.reserved == 1000  # only "busy" still holds money
    assert (
        store.credit_control(op("idle", 1, core.UPDATE, [svc(used=10)], now=NOW + 13)).result
        == 5002
    )
    assert ledger_check(store).ok
    store.credit_control(op("busy", 2, core.TERMINATION, [], now=NOW + 14))
    store.sweep(NOW + 1000, 50.0)
    assert store.get_account("A1").account.reserved == 0
    assert store.get_account("A1").open_sessions == 0


def test_events_direct_debit_refund(store):
    seed(store, balance=1000)
    out = store.credit_control(
        op("e1", 0, core.EVENT, [svc(requested=30)], action=core.DIRECT_DEBITING)
    )
    assert out.result == 2001 and out.services[0].charged == 300
    again = store.credit_control(
        op("e1", 0, core.EVENT, [svc(requested=30)], action=core.DIRECT_DEBITING)
    )
    assert again.replay and store.get_account("A1").account.balance == 700
    out = store.credit_control(
        op("e2", 0, core.EVENT, [svc(requested=100)], action=core.DIRECT_DEBITING)
    )
    assert out.result == 4012 and store.get_account("A1").account.balance == 700

    def refund(sid, ref, units):
        o = op(sid, 0, core.EVENT, [svc(requested=units)], action=core.REFUND_ACCOUNT)
        o.ref = ref
        return store.credit_control(o)

    # a refund must name a debit event of this account; nothing moves otherwise
    for sid, ref in (("r0", ""), ("r1", "nope"), ("r2", "e2")):
        out = refund(sid, ref, 10)
        assert out.result == 5004 and out.failed_avp == "CC-Correlation-Id"
    assert store.get_account("A1").account.balance == 700
    out = refund("e3", "e1", 10)
    assert out.result == 2001 and store.get_account("A1").account.balance == 800
    assert refund("e3", "e1", 10).replay  # a resend is answered, not paid again
    # capped at what e1 took less what was refunded of it: 20 of the 30 units are left
    out = refund("e4", "e1", 30)
    assert out.result == 2001 and out.services[0].granted == 20
    assert store.get_account("A1").account.balance == 1000
    assert refund("e5", "e1", 1).result == 5004
    assert store.get_account("A1").account.balance == 1000
    rep = ledger_check(store)
    assert rep.ok and rep.refunds == 300 and rep.debits == 300


@pytest.fixture(scope="module")
def durable_redis():
    """A private redis-server with an fsynced append-only file, as the CDR store requires."""
    if not HAS_REDIS:
        pytest.skip("redis-server binary not installed (apt-get install redis-server)")
    with RedisServer() as srv:
        import redis

        r = redis.Redis.from_url(srv.url)
        r.config_set("appendonly", "yes")
        r.config_set("appendfsync", "always")
        yield srv
        r.config_set("appendonly", "no")  # else redis-server takes seconds to stop
        r.close()


@pytest.fixture(scope="module")
def durable_cluster():
    """A private 3-primary Redis Cluster whose nodes fsync their append-only files."""
    yield from _cluster(("--appendonly", "yes", "--appendfsync", "always"))


@pytest.fixture(params=["sqlite", "redis", "cluster"])
def cdr_store(request, tmp_path):
    if request.param == "sqlite":
        from chargegw.workers.charging.sqlite_store import SqliteCdrStore

        s = SqliteCdrStore(str(tmp_path / "cdr.db"), timeout=5.0)
    else:
        from chargegw.workers.charging.redis_store import RedisCdrStore

        _n[0] += 1
        name = "durable_redis" if request.param == "redis" else "durable_cluster"
        srv = request.getfixturevalue(name)
        s = RedisCdrStore(srv.url, prefix=f"t{_n[0]}", timeout=2.0)
    yield s
    s.close()


def test_cdrs_are_stored_once(cdr_store):
    store = cdr_store
    c = Cdr("acct;1", 0, 2, NOW, "pgw", "test", avps={"x": 1})
    assert store.put_cdr(c) is True
    assert store.put_cdr(c) is False
    assert store.put_cdrs([Cdr("acct;1", 1, 3, NOW + 5, "pgw", "test"), c]) == [True, False]
    got = list(store.iter_cdrs())
    assert [(x.session_id, x.record_number) for x in got] == [("acct;1", 0), ("acct;1", 1)]
    assert got[0].avps == {"x": 1}
    assert [x.record_number for x in store.iter_cdrs(since=NOW + 1)] == [1]


def test_sy_subscriptions(store):
    seed(store)
    counter = SyCounter("c", "valid", [(100, "near"), (200, "over")])
    assert (
        counter.status(99) == "valid"
        and counter.status(150) == "near"
        and counter.status(500) == "over"
    )
    store.sy_put(SySubscription("sy1", "A1", "pcrf.test", "test", [counter]))
    assert store.get_account("A1").account.sy == 1
    assert store.sy_get("sy1").pcrf_host == "pcrf.test"
    assert [s.session_id for s in store.sy_for_account("A1")] == ["sy1"]
    store.sy_put(SySubscription("sy1", "A1", "pcrf.test", "test", []))  # intermediate: same session
    assert store.get_account("A1").account.sy == 1
    assert store.sy_delete("sy1").session_id == "sy1"
    assert store.sy_delete("sy1") is None
    assert store.get_account("A1").account.sy == 0 and store.sy_for_account("A1") == []


def test_ledger_check_detects_tampering(tmp_path):
    from chargegw.workers.charging.sqlite_store import SqliteStore

    s = SqliteStore(str(tmp_path / "t.db"))
    seed(s)
    s.credit_control(op("s1", 0, core.INITIAL, [svc(requested=100)]))
    s.credit_control(op("s1", 1, core.TERMINATION, [svc(used=20)]))
    assert ledger_check(s).ok
    s.db.execute("UPDATE accounts SET balance = balance + 1")
    s.db.execute("UPDATE ledger SET amount = amount - 1 WHERE kind='debit'")
    rep = ledger_check(s)
    assert not rep.ok and len(rep.problems) >= 2
    assert ledger_check(s, tariff_of=lambda key: (999, 1)).off_tariff == 1


def test_store_config_defaults_and_errors():
    assert StoreConfig().backend == "sqlite"
    with pytest.raises(ValueError):
        StoreConfig(backend="mysql")


def test_redis_down_raises_store_unavailable_quickly():
    from chargegw.workers.charging.redis_store import RedisStore
    from chargegw.workers.charging.store import StoreUnavailable
    from chargegw.workers.charging.testing import free_port

    pytest.importorskip("redis")
    s = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable):
        s.credit_control(op("s1", 0, core.INITIAL, [svc(requested=1)]))
    assert time.monotonic() - t0 < 2.0


def test_redis_store_resumes_after_restart(redis_server, tmp_path):
    from chargegw.workers.charging.redis_store import RedisStore
    from chargegw.workers.charging.store import StoreUnavailable

    srv = RedisServer().start()
    try:
        s = RedisStore(srv.url, timeout=0.3)
        seed(s)
        port = srv.port
        srv.proc.terminate()
        srv.proc.wait()
        with pytest.raises(StoreUnavailable):
            s.credit_control(op("s1", 0, core.INITIAL, [svc(requested=1)]))
        import subprocess

        srv.proc = subprocess.Popen(
            [
                srv.binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--dir",
                srv.dir,
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while True:
            try:
                seed(s)
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert s.credit_control(op("s1", 0, core.INITIAL, [svc(requested=1)])).result == 2001
    finally:
        srv.stop()


# -- randomised workloads and several processes -------------------------------------------

actions = st.lists(
    st.tuples(
        st.integers(0, 3),  # session
        st.sampled_from(["U", "T", "R", "S", "X"]),  # update, terminate, retransmit, sweep, topup
        st.integers(0, 60),  # used units
        st.integers(0, 60),  # requested units
    ),
    max_size=40,
)


@pytest.mark.parametrize("kind", ["sqlite", "sharded", "redis", "cluster"])
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(script=actions, balance=st.integers(0, 3000), limit=st.integers(-500, 0))
def test_invariants_hold_under_random_workloads(
    request, tmp_path_factory, kind, script, balance, limit
):
    s = make_store(kind, tmp_path_factory.mktemp("h"), redis_of(request, kind))
    try:
        seed(s, balance=balance, limit=limit)
        number = {}
        clock = NOW
        for sess, what, used, req in script:
            clock += 1
            sid = f"s{sess}"
            if what == "S":
                s.sweep(clock + 150, 50.0)
                continue
            if what == "X":
                s.topup("A1", 100, clock)
                continue
            if sid not in number:
                number[sid] = 0
                s.credit_control(op(sid, 0, core.INITIAL, [svc(requested=req)], now=clock))
                continue
            if what == "R":
                n = number[sid]
                rtype = core.INITIAL if n == 0 else core.UPDATE
                s.credit_control(op(sid, n, rtype, [svc(used=used, requested=req)], now=clock))
                continue
            number[sid] += 1
            rtype = core.UPDATE if what == "U" else core.TERMINATION
            s.credit_control(
                op(sid, number[sid], rtype, [svc(used=used, requested=req)], now=clock)
            )
            acct = s.get_account("A1").account
            assert acct.balance - acct.reserved >= acct.credit_limit
        rep = ledger_check(s)
        assert rep.ok, rep.problems
    finally:
        s.close()


events = st.lists(
    st.tuples(
        st.sampled_from("DRB"),  # D debit event, R refund of one, B refund of another account's
        st.integers(0, 4),  # which debit event (a refund names it)
        st.integers(0, 40),  # units
        st.sampled_from(["1:", "2:"]),  # service
    ),
    max_size=30,
)


@pytest.mark.parametrize("kind", ["sqlite", "sharded", "redis", "cluster"])
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(script=events)
def test_refunds_never_give_back_more_than_was_debited(request, tmp_path_factory, kind, script):
    s = make_store(kind, tmp_path_factory.mktemp("r"), redis_of(request, kind))
    try:
        seed(s, balance=100_000)
        seed(s, balance=100_000, acct="A2", msisdn="222")
        debited = {"A1": 0, "A2": 0}
        for n, (what, ev, units, key) in enumerate(script):
            if what == "D":
                out = s.credit_control(
                    op(f"e{ev}", 0, core.EVENT, [svc(key, requested=units)],
                       action=core.DIRECT_DEBITING)
                )  # fmt: skip
                if not out.replay:
                    debited["A1"] += sum(x.charged for x in out.services)
                continue
            o = op(f"r{n}", 0, core.EVENT, [svc(key, requested=units)], action=core.REFUND_ACCOUNT,
                   subs=((E164, "222" if what == "B" else "111"),))  # fmt: skip
            o.ref = f"e{ev}"
            s.credit_control(o)
        a1, a2 = s.get_account("A1").account, s.get_account("A2").account
        assert a2.balance == 100_000  # nobody else's debit is refunded to A2
        assert 100_000 - debited["A1"] <= a1.balance <= 100_000
        rep = ledger_check(s)
        assert rep.ok, rep.problems
        assert rep.refunds <= rep.debits
    finally:
        s.close()


def _hammer(kind: str, target: str, prefix: str, worker: int, sessions: int, q) -> None:
    if kind == "sqlite":
        from chargegw.workers.charging.sqlite_store import SqliteStore

        s = SqliteStore(target, timeout=10.0)
    else:
        from chargegw.workers.charging.redis_store import RedisStore

        s = RedisStore(target, prefix=prefix, timeout=5.0)
    charged = 0
    for i in range(sessions):
        sid = f"w{worker}-{i}"
        subs = [(E164, "111" if i % 2 else "222")]
        s.credit_control(op(sid, 0, core.INITIAL, [svc(requested=50)], subs=subs))
        for n in (1, 1):  # the second is a retransmission: must not charge
            out = s.credit_control(op(sid, n, core.UPDATE, [svc(used=25, requested=50)], subs=subs))
            if not out.replay:
                charged += sum(x.charged for x in out.services)
        out = s.credit_control(op(sid, 2, core.TERMINATION, [svc(used=7)], subs=subs))
        charged += sum(x.charged for x in out.services)
    q.put(charged)


@pytest.mark.parametrize("kind", ["sqlite", *REDIS_KINDS])
def test_several_processes_never_charge_twice(kind, tmp_path, request):
    if kind in REDIS_KINDS:
        srv = redis_of(request, kind)
        target = srv.url
        s = make_store(kind, tmp_path, srv)
        prefix = s.p
    else:
        s = make_store("sqlite", tmp_path)
        target, prefix = s.path, ""
    seed(s, balance=10_000_000)
    seed(s, balance=10_000_000, acct="B", msisdn="222")
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(kind, target, prefix, w, 40, q)) for w in range(3)]
    for p in procs:
        p.start()
    try:
        totals = [q.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    per_session = price_of(25, 100, 10) + price_of(7, 100, 10)
    assert sum(totals) == 3 * 40 * per_session
    rep = ledger_check(s)
    assert rep.ok, rep.problems
    assert rep.debits == 3 * 40 * per_session
    assert (
        s.get_account("A1").account.balance + s.get_account("B").account.balance
        == 20_000_000 - rep.debits
    )
    s.close()


def test_provision_creates_rule_accounts_once(store):
    store.set_rules([ProvisionRule(E164, "4670", 5_000, 0)])
    assert store.provision([(E164, "555")], NOW) is None
    a = store.provision([(E164, "4670000000001")], NOW)
    b = store.provision([(E164, "4670000000001")], NOW)
    assert a.id == b.id == "4670000000001" and store.get_account(a.id).account.balance == 5_000
    assert ledger_check(store).ok and ledger_check(store).credits == 5_000


def test_a_batch_behaves_like_its_requests_one_by_one(store):
    seed(store, balance=10_000)
    store.set_rules([ProvisionRule(E164, "4670", 5_000, 0)])
    ops = [
        op("s1", 0, core.INITIAL, [svc(requested=100)]),
        op("s2", 0, core.INITIAL, [svc(requested=100)]),  # same account as s1
        op("s3", 0, core.INITIAL, [svc(requested=10)], subs=[(E164, "999")]),  # unknown
        op("s1", 1, core.UPDATE, [svc(used=50, requested=100)]),
        op("s1", 1, core.UPDATE, [svc(used=50, requested=100)]),  # retransmission in the batch
        op("s9", 3, core.UPDATE, [svc(used=5)]),  # never opened
        op(
            "s4", 0, core.INITIAL, [svc(requested=10)], subs=[(E164, "4670000000077")]
        ),  # provisioned
    ]
    out = store.credit_control_many(ops)
    assert [o.result for o in out] == [2001, 2001, 5030, 2001, 2001, 5002, 2001]
    assert out[3].services[0].charged == 500 and not out[3].replay and out[4].replay
    assert store.get_account("A1").account.balance == 9_500
    assert store.get_account("A1").account.reserved == 2_000
    assert store.get_account("4670000000077").account.reserved == 100
    rep = ledger_check(store)
    assert rep.ok, rep.problems


def test_finished_sessions_are_forgotten_in_bulk(store):
    seed(store, balance=10**9)
    ops = []
    for i in range(700):
        ops.append(op(f"b{i}", 0, core.INITIAL, [svc(requested=1)]))
        ops.append(op(f"b{i}", 1, core.TERMINATION, [svc(used=1)]))
    assert all(o.result == 2001 for o in store.credit_control_many(ops))
    for _ in range(5):  # each call works for SWEEP_BUDGET: a loaded machine may need two
        store.sweep(NOW + 60, 50.0, limit=10)
        if not hasattr(store, "db") or not store.db.execute("SELECT 1 FROM sessions").fetchone():
            break
    if hasattr(store, "db"):  # SQLite: the rows are gone
        assert store.db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0
    else:  # Redis: finished sessions carry a TTL and are not in the sweep index
        assert sum(store.r.zcard(store._ksweep(n)) for n in range(store.shards)) == 0
        assert 0 < store.r.pttl(store._ks("A1", "b0")) <= 50_000
    assert ledger_check(store).ok


def test_demo_seeding_happens_once(store):
    rows = [AccountRow("d1", 1_000, 0, False, [(E164, "4681")])]
    rules = [ProvisionRule(E164, "4670", 5_000, 0)]
    assert store.seed_demo(rows, rules, NOW) is True
    store.topup("d1", 500, NOW)
    assert store.seed_demo(rows, rules, NOW) is False
    assert store.get_account("d1").account.balance == 1_500 and store.rules() == rules
    assert ledger_check(store).ok


def _open_and_use(path: str, q) -> None:
    from chargegw.workers.charging.sqlite_store import SqliteStore

    try:
        s = SqliteStore(path, timeout=5.0)
        s.seed_demo([AccountRow("d1", 1_000, 0, False, [(E164, "4681")])], [], NOW)
        q.put("ok")
    except Exception as exc:  # reported to the parent
        q.put(repr(exc))


def test_sqlite_store_opens_while_other_workers_open_and_seed(tmp_path):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    path = str(tmp_path / "race.db")
    procs = [ctx.Process(target=_open_and_use, args=(path, q)) for _ in range(6)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    assert results == ["ok"] * 6


def test_a_resend_to_another_worker_gets_the_stored_outcome(store):
    """The gateway resends a request whose worker died after committing: the other worker's
    store connection answers from the stored outcome and charges nothing more. (Sharded: the
    other worker first claims the shards.)"""
    seed(store)
    store.credit_control(op("s1", 0, core.INITIAL, [svc(requested=100)]))
    first = store.credit_control(op("s1", 1, core.UPDATE, [svc(used=40, requested=100)]))
    if hasattr(store, "home"):  # the sharded SQLite store
        other = sharded(_home_dir(store), "t2", range(SHARDS))
    elif hasattr(store, "db"):
        from chargegw.workers.charging.sqlite_store import SqliteStore

        other = SqliteStore(store.path, timeout=5.0)
    else:
        from chargegw.workers.charging.redis_store import RedisStore

        other = RedisStore(store.url, prefix=store.p, timeout=2.0)
    again = other.credit_control(op("s1", 1, core.UPDATE, [svc(used=40, requested=100)]))
    assert again.replay and again.services == first.services and again.result == first.result
    assert other.get_account("A1").account.balance == 10_000 - 400
    other.close()


def _home_dir(store):
    """The data directory of a sharded store (its home file's folder)."""
    import pathlib

    return pathlib.Path(store.home.path).parent


# -- the sharded store: moves, fencing, a killed owner ---------------------------------------


def _accounts_on_shards(n: int) -> list[str]:
    """Account ids (= their MSISDN) covering every shard."""
    from chargegw.sharding import shard_of

    found: dict[int, str] = {}
    i = 0
    while len(found) < SHARDS or len(found) < n:
        a = f"46700{i:05d}"
        found.setdefault(shard_of(a, SHARDS), a)
        i += 1
    return sorted(found.values(), key=lambda a: shard_of(a, SHARDS))


def owner(where: tuple[str, str, str], name: str, shards=None):
    """A store of `where` (kind, target, prefix: a folder for the sharded SQLite store, a
    URL for Redis) as the process `name` opens it; with `shards`, assigned them."""
    kind, target, prefix = where
    if kind == "sharded":
        import pathlib

        return sharded(pathlib.Path(target), name, shards)
    from chargegw.workers.charging.redis_store import RedisStore

    s = RedisStore(target, prefix=prefix, timeout=5.0, shards=SHARDS)
    if shards is not None:
        s.assign_shards(frozenset(shards))
    return s


def owned(s) -> frozenset[int]:
    return s.owned_shards() if hasattr(s, "owned_shards") else s.owned()


@pytest.fixture(params=["sharded", *REDIS_KINDS])
def where(request, tmp_path) -> tuple[str, str, str]:
    """Where the sharded tests' processes meet: a data folder, or a Redis server/cluster."""
    if request.param == "sharded":
        return ("sharded", str(tmp_path), "")
    _n[0] += 1
    return (request.param, redis_of(request, request.param).url, f"t{_n[0]}")


def test_sharded_move_while_the_old_owner_is_alive(where):
    """The shard moves to B while A still runs: A's next request of it gets NotOwner and
    applies nothing; B goes on from the same balances and session state."""
    from chargegw.sharding import NotOwner, shard_of

    accts = _accounts_on_shards(SHARDS)
    adm = owner(where, "admin")
    adm.import_accounts([AccountRow(a, 10_000, 0, False, [(E164, a)]) for a in accts], NOW)
    a = owner(where, "A", range(SHARDS))
    for k, acct in enumerate(accts):
        o = op(f"s{k}", 0, core.INITIAL, [svc(requested=100)], subs=[(E164, acct)])
        o.shard = shard_of(acct, SHARDS)
        assert a.credit_control(o).result == 2001
    moved = shard_of(accts[0], SHARDS)
    b = owner(where, "B", [moved])
    ops = []
    for k, acct in enumerate(accts):
        o = op(f"s{k}", 1, core.UPDATE, [svc(used=30, requested=100)], subs=[(E164, acct)])
        o.shard = shard_of(acct, SHARDS)
        ops.append(o)
    out = a.credit_control_many(ops)  # A has not heard of the move: fenced by the store
    assert isinstance(out[0], NotOwner) and out[0].shard == moved
    assert all(x.result == 2001 for x in out[1:])
    assert adm.get_account(accts[0]).account.balance == 10_000  # nothing applied by A
    got = b.credit_control(ops[0])
    assert got.result == 2001 and not got.replay and got.services[0].charged == 300
    assert adm.get_account(accts[0]).account.balance == 9_700
    assert adm.get_account(accts[0]).account.reserved == 1_000
    assert b.credit_control(ops[0]).replay  # B has the session's state, resend included
    with pytest.raises(NotOwner):
        a.credit_control(ops[0])
    assert moved not in owned(a) and owned(b) == {moved}
    rep = ledger_check(adm)
    assert rep.ok, rep.problems
    assert rep.debits == 300 * len(accts) and rep.accounts == len(accts)
    for s in (a, b, adm):
        s.close()


PER_SESSION = price_of(25, 100, 10) + price_of(7, 100, 10)


def _session_script(sid: str, acct: str) -> list[CCOp]:
    from chargegw.sharding import shard_of

    ops = [
        op(sid, 0, core.INITIAL, [svc(requested=50)], subs=[(E164, acct)]),
        op(sid, 1, core.UPDATE, [svc(used=25, requested=50)], subs=[(E164, acct)]),
        op(sid, 1, core.UPDATE, [svc(used=25, requested=50)], subs=[(E164, acct)]),  # resend
        op(sid, 2, core.TERMINATION, [svc(used=7)], subs=[(E164, acct)]),
    ]
    for o in ops:
        o.shard = shard_of(acct, SHARDS)
    return ops


def _owner_under_load(where: tuple[str, str, str], accts: list[str], started) -> None:
    s = owner(where, "victim", range(SHARDS))
    started.set()
    i = 0
    while True:  # until killed
        batch = []
        for acct in accts:
            batch += _session_script(f"k{i}-{acct}", acct)
        i += 1
        for k in range(0, len(batch), 3):  # store steps that end mid-session
            s.credit_control_many(batch[k : k + 3])


def test_sharded_killed_owner_is_replaced_and_nothing_is_charged_twice(where):
    """kill -9 an owner in the middle of its load; another process claims its shards and
    gets every resend of its sessions answered, none charged twice, the ledger whole."""
    import os
    import signal

    accts = _accounts_on_shards(SHARDS)
    adm = owner(where, "admin")
    adm.import_accounts([AccountRow(a, 10**12, 0, False, [(E164, a)]) for a in accts], NOW)
    ctx = mp.get_context("fork")
    started = ctx.Event()
    p = ctx.Process(target=_owner_under_load, args=(where, accts, started))
    p.start()
    try:
        assert started.wait(30)
        time.sleep(0.7)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.join(10)
    heir = owner(where, "heir", range(SHARDS))
    rep = ledger_check(adm)
    assert rep.ok, rep.problems
    assert rep.debits > 0  # the victim did commit work before it died
    # resend every session the victim may have touched, from its first request on
    rounds = max(int(e.session[1:].split("-")[0]) for e in adm.iter_ledger() if e.session)
    for i in range(rounds + 2):
        for acct in accts:
            for o in _session_script(f"k{i}-{acct}", acct):
                heir.credit_control(o)
    rep = ledger_check(adm)
    assert rep.ok, rep.problems
    sessions = {e.session for e in adm.iter_ledger() if e.kind == "debit"}
    assert rep.debits == PER_SESSION * len(sessions)  # each session paid exactly once
    assert rep.open_sessions == 0 and rep.reserved == 0
    heir.close()
    adm.close()
