"""The SQLite store's in-process row cache: never trusted once the file changed under it."""

from __future__ import annotations

import pytest

from chargegw.workers.charging import core
from chargegw.workers.charging.core import CCOp, ServiceReq
from chargegw.workers.charging.sqlite_store import SqliteStore
from chargegw.workers.charging.store import AccountRow, ProvisionRule, ledger_check

E164 = 0
NOW = 1_750_000_000.0


def svc(used: int = 0, requested: int = 0) -> ServiceReq:
    return ServiceReq("1:", 100, 10, used, requested)


def op(sid: str, number: int, rtype: int, services: list[ServiceReq], now: float = NOW) -> CCOp:
    return CCOp(
        sid, number, rtype, services, [(E164, "111")], -1, "c.test", "test", now, 100.0, 50.0
    )


@pytest.fixture
def pair(tmp_path):
    """Two stores on one file, as two worker processes would have."""
    path = str(tmp_path / "charging.db")
    a, b = SqliteStore(path, timeout=5.0), SqliteStore(path, timeout=5.0)
    a.import_accounts([AccountRow("A1", 10_000, 0, False, [(E164, "111")])], NOW)
    yield a, b
    a.close()
    b.close()


def test_cache_is_dropped_when_another_connection_debits(pair):
    a, b = pair
    out = a.credit_control(op("s1", 0, core.INITIAL, [svc(requested=100)]))
    assert out.result == 2001 and out.balance == 10_000
    a.credit_control(op("s1", 1, core.UPDATE, [svc(used=10, requested=100)]))
    assert "s1" in a._sessions and "A1" in a._accounts  # the next U would be served from it
    # The other worker serves the next request of the session (no affinity) and debits.
    out = b.credit_control(op("s1", 2, core.UPDATE, [svc(used=50, requested=100)]))
    assert out.result == 2001 and out.balance == 10_000 - 100 - 500
    # The first store must see b's session state (number 2 is a replay) and b's balance.
    again = a.credit_control(op("s1", 2, core.UPDATE, [svc(used=50, requested=100)]))
    assert again.replay and again.balance == 10_000 - 600
    out = a.credit_control(op("s1", 3, core.UPDATE, [svc(used=10, requested=100)]))
    assert out.result == 2001 and out.balance == 10_000 - 700
    assert a.get_account("A1").account.balance == 10_000 - 700
    rep = ledger_check(a)
    assert rep.ok, rep.problems
    assert rep.debits == 700


def test_cache_is_dropped_when_another_connection_sweeps_or_tops_up(pair):
    a, b = pair
    a.credit_control(op("s1", 0, core.INITIAL, [svc(requested=100)]))
    a.credit_control(op("s2", 0, core.INITIAL, [svc(requested=100)]))
    b.topup("A1", 5_000, NOW)
    out = a.credit_control(op("s2", 1, core.UPDATE, [svc(used=10, requested=100)]))
    assert out.balance == 15_000 - 100
    assert b.sweep(NOW + 200, 50.0) == 2  # both silent past Tcc: released and closed
    out = a.credit_control(op("s1", 1, core.UPDATE, [svc(used=10)], now=NOW + 201))
    assert out.result == core.UNKNOWN_SESSION
    assert a.get_account("A1").account.reserved == 0
    rep = ledger_check(a)
    assert rep.ok, rep.problems


def test_own_admin_writes_and_rollbacks_drop_the_cache(pair):
    a, _ = pair
    a.credit_control(op("s1", 0, core.INITIAL, [svc(requested=100)]))
    a.topup("A1", 1_000, NOW)  # same connection: data_version does not move
    out = a.credit_control(op("s1", 1, core.UPDATE, [svc(used=10, requested=100)]))
    assert out.balance == 11_000 - 100
    # A batch that fails half-way is rolled back and redone one by one: the objects it had
    # already changed in the cache must not be charged a second time.
    real = a._ledger
    calls = [0]

    def flaky(entries):
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("injected")
        real(entries)

    a._ledger = flaky  # type: ignore[method-assign]
    outs = a.credit_control_many(
        [
            op("s1", 2, core.UPDATE, [svc(used=10, requested=100)]),
            op("s1", 3, core.UPDATE, [svc(used=10, requested=100)]),
        ]
    )
    assert outs is not None and [o.result for o in outs] == [2001, 2001]
    assert outs[1].balance == 11_000 - 300
    assert a.get_account("A1").account.balance == 11_000 - 300
    rep = ledger_check(a)
    assert rep.ok, rep.problems


def test_provisioned_account_is_inserted_once_even_if_it_exists(tmp_path):
    """A rule account whose id already exists (imported, not linked) is charged, not recreated."""
    s = SqliteStore(str(tmp_path / "charging.db"), timeout=5.0)
    s.set_rules([ProvisionRule(E164, "46", 7_000)])
    s.import_accounts([AccountRow("4670001", 2_000)], NOW)
    o = CCOp("p1", 0, core.INITIAL, [svc(requested=100)], [(E164, "4670001")], now=NOW)
    out = s.credit_control(o)
    assert out.result == 2001 and out.account == "4670001" and out.balance == 2_000
    o2 = CCOp("p2", 0, core.INITIAL, [svc(requested=100)], [(E164, "4670002")], now=NOW)
    assert s.credit_control(o2).balance == 7_000
    assert s.get_account("4670002").subscriptions == [(E164, "4670002")]
    rep = ledger_check(s)
    assert rep.ok, rep.problems
    s.close()
