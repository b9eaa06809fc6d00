"""The SQLite store writes a chunk's account and session updates together before its commit:
what a later request of the same chunk reads must be those pending rows, never the stale
ones in the file, even when the row cache has let them go (eviction, a dropped account)."""

from __future__ import annotations

import pytest

from chargegw.workers.charging import core
from chargegw.workers.charging.core import CCOp, ServiceReq
from chargegw.workers.charging.sqlite_store import SqliteStore
from chargegw.workers.charging.store import AccountRow, ledger_check

E164 = 0
NOW = 1_750_000_000.0


def op(sid: str, number: int, rtype: int, used: int = 0, requested: int = 0) -> CCOp:
    svc = ServiceReq("1:", 100, 10, used, requested)
    return CCOp(sid, number, rtype, [svc], [(E164, "111")], -1, "c.test", "test", NOW, 100.0, 50.0)


def _ops() -> list[CCOp]:
    return [
        op("s1", 1, core.UPDATE, used=10, requested=100),
        op("s2", 1, core.UPDATE, used=20, requested=100),  # the same account
        op("s1", 2, core.UPDATE, used=30, requested=100),  # the same session again
        op("s1", 2, core.UPDATE, used=30, requested=100),  # its retransmission
        op("s2", 2, core.TERMINATION, used=40),  # state written at once: drops pending data
        op("s1", 3, core.UPDATE, used=50, requested=100),
    ]


def _store(path: str) -> SqliteStore:
    s = SqliteStore(path, timeout=5.0)
    s.import_accounts([AccountRow("A1", 100_000, 0, False, [(E164, "111")])], NOW)
    for sid in ("s1", "s2"):
        s.credit_control(op(sid, 0, core.INITIAL, requested=100))
    return s


@pytest.mark.parametrize("forget", [False, True])
def test_a_chunk_reads_its_own_pending_writes(tmp_path, monkeypatch, forget):
    ref = _store(str(tmp_path / "ref.db"))
    one_by_one = [ref.credit_control(o) for o in _ops()]
    store = _store(str(tmp_path / "chunk.db"))
    if forget:  # as if the cache had evicted every row after each request
        real = store._cc

        def cc(o, ledger):
            try:
                return real(o, ledger)
            finally:
                store._sessions.clear()
                store._accounts.clear()
                store._subs.clear()

        monkeypatch.setattr(store, "_cc", cc)
    together = store.credit_control_many(_ops())
    assert together == one_by_one
    for s in (ref, store):
        rep = ledger_check(s)
        assert rep.ok, rep.problems
    assert store.get_account("A1") == ref.get_account("A1")
    rows = "SELECT id, state, expires, fui, data FROM sessions ORDER BY id"
    assert store.db.execute(rows).fetchall() == ref.db.execute(rows).fetchall()
    ref.close()
    store.close()
