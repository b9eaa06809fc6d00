"""What the SQLite credit-control path writes: the session row's queried columns always say
what its record says (an update that changes neither writes only the record), and a chunk's
ledger entries, written together before it commits, read back exactly as applied."""

from __future__ import annotations

import msgspec

from chargegw.workers.charging import core
from chargegw.workers.charging.core import CCOp, ServiceReq
from chargegw.workers.charging.sqlite_store import SqliteStore
from chargegw.workers.charging.store import AccountRow, ledger_check
from chargegw.workers.charging.stores.sqlite_db import sess_dec

E164 = 0
NOW = 1_750_000_000.0


def op(sid: str, number: int, rtype: int, used: int, requested: int, now: float) -> CCOp:
    svc = ServiceReq("1:", 100, 10, used, requested)
    return CCOp(sid, number, rtype, [svc], [(E164, "111")], -1, "c.test", "test", now, 100.0, 50.0)


def columns_match_records(store: SqliteStore) -> list[str]:
    rows = store.db.execute("SELECT id, state, fui, expires, data FROM sessions").fetchall()
    bad = []
    for sid, state, fui, expires, data in rows:
        s = sess_dec.decode(data)
        if (state, bool(fui)) != (s.state, s.fui) or expires < s.expires:
            bad.append(sid)
    return bad


def test_session_columns_follow_the_record_through_updates_fui_and_termination(tmp_path):
    store = SqliteStore(str(tmp_path / "c.db"), timeout=5.0)
    # 2,000 micro-units: 100 per 10 units, so the second grant of 100 units is the last one
    store.import_accounts([AccountRow("A1", 2_000, 0, False, [(E164, "111")])], NOW)
    seq = [
        (0, core.INITIAL, 0, 100),  # grant, no FUI
        (1, core.UPDATE, 50, 100),  # same state and fui: the record alone is written
        (2, core.UPDATE, 100, 100),  # the last affordable grant: fui set
        (3, core.UPDATE, 10, 10),  # fui may clear again
        (4, core.UPDATE, 10, 10),
        (5, core.TERMINATION, 10, 0),  # closed: state and expiry change
    ]
    fuis = []
    for k, (number, rtype, used, requested) in enumerate(seq):
        outs = store.credit_control_many([op("s1", number, rtype, used, requested, NOW + k)])
        assert outs is not None and outs[0].result in (2001, 4012), outs
        assert columns_match_records(store) == []
        fuis.append(store.db.execute("SELECT fui FROM sessions").fetchone()[0])
        # a second store on the file (no cache) reads the same session state
        other = SqliteStore(str(tmp_path / "c.db"), timeout=5.0)
        row = other.db.execute("SELECT state FROM sessions WHERE id='s1'").fetchone()
        assert row[0] == (core.CLOSED if rtype == core.TERMINATION else core.OPEN)
        other.close()
    assert 1 in fuis  # the sequence did go through a Final-Unit-Indication
    rep = ledger_check(store)
    assert rep.ok, rep.problems
    store.close()


def test_a_chunks_ledger_entries_read_back_exactly_in_order(tmp_path):
    store = SqliteStore(str(tmp_path / "c.db"), timeout=5.0)
    store.import_accounts([AccountRow("A1", 1_000_000, 0, False, [(E164, "111")])], NOW)
    ops = [op(f"s{i}", 0, core.INITIAL, 0, 100, NOW) for i in range(5)]
    ops += [op(f"s{i}", 1, core.UPDATE, 7 * i + 1, 100, NOW + 1) for i in range(5)]
    ops += [op(f"s{i}", 2, core.TERMINATION, 3, 0, NOW + 2) for i in range(5)]
    outs = store.credit_control_many(ops)
    assert outs is not None and all(o.result == 2001 for o in outs)
    debits = [e for e in store.iter_ledger() if e.kind == "debit"]
    want = [(f"s{i}", 1, 7 * i + 1) for i in range(5)] + [(f"s{i}", 2, 3) for i in range(5)]
    assert [(e.session, e.number, e.units) for e in debits] == want
    for e in debits:  # every column in its place (the rows are the entries' field tuples)
        assert (e.account, e.key, e.price, e.unit) == ("A1", "1:", 100, 10)
        assert e.amount == core.price_of(e.units, 100, 10) and e.shortfall == 0
        assert e.ts in (NOW + 1, NOW + 2) and e.ref == ""
    assert msgspec.structs.fields(core.LedgerEntry)[0].name == "ts"
    rep = ledger_check(store)
    assert rep.ok and rep.debits == sum(e.amount for e in debits), rep.problems
    store.close()


def test_new_files_get_4k_pages_and_old_ones_keep_theirs_with_8mib_checkpoints(tmp_path):
    """A group commit's requests share pages, so a new file gets 4 KiB pages (fewer WAL
    frames per commit); a file made with 1 KiB pages keeps them, and either way the WAL is
    checkpointed once it holds 8 MiB."""
    import sqlite3

    new = SqliteStore(str(tmp_path / "new.db"), timeout=5.0)
    assert new.db.execute("PRAGMA page_size").fetchone()[0] == 4096
    assert new.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 2048
    new.close()
    old_path = str(tmp_path / "old.db")
    old = sqlite3.connect(old_path)
    old.execute("PRAGMA page_size=1024")
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE t (x)")
    old.close()
    store = SqliteStore(old_path, timeout=5.0)
    assert store.db.execute("PRAGMA page_size").fetchone()[0] == 1024
    assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 8192
    store.import_accounts([AccountRow("A1", 1_000, 0, False, [(E164, "111")])], NOW)
    outs = store.credit_control_many([op("s1", 0, core.INITIAL, 0, 10, NOW)])
    assert outs is not None and outs[0].result == 2001
    store.close()
