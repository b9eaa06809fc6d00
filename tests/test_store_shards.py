"""The sharded SQLite store (issue 10): the map, adoption of a single-file store, aliases,
the session fallback, provisioning in the right shard, admin writes and checks across
files, and the Gy/Sy integration (assign_shards, ShardMoved in a request's slot)."""

from __future__ import annotations

import sqlite3

import pytest
from shard_accounts import one_per_shard

from chargegw.sharding import NotOwner, ShardMoved, shard_of
from chargegw.workers.charging import core
from chargegw.workers.charging.core import CCOp, ServiceReq
from chargegw.workers.charging.sqlite_store import open_sharded
from chargegw.workers.charging.store import (
    AccountRow,
    ProvisionRule,
    ShardLayoutError,
    SyCounter,
    SySubscription,
    ledger_check,
)
from chargegw.workers.charging.stores import sqlite_sharded

N = 8
NOW = 1_750_000_000.0
E164 = 0


def store(tmp_path, owner: str, shards=None, n: int = N):
    s = open_sharded(str(tmp_path / "charging.db"), owner=owner, shards=n, timeout=5.0)
    if shards is not None:
        s.assign_shards(frozenset(shards))
    return s


def ids(count: int, prefix: str = "4670") -> list[str]:
    """Numbers with distinct shards, in shard order."""
    return one_per_shard(N, count, prefix=prefix, width=7)


def cc(sid, number, rtype, acct, used=0, requested=0, shard=None) -> CCOp:
    o = CCOp(
        sid, number, rtype, [ServiceReq("1:", 100, 10, used, requested)], [(E164, acct)],
        now=NOW, client_host="c.test", client_realm="test",
    )  # fmt: skip
    o.shard = shard_of(acct, N) if shard is None else shard
    return o


def test_a_new_map_sends_every_shard_home_and_a_count_mismatch_names_the_key(tmp_path):
    s = store(tmp_path, "w1")
    assert s.shard_count == N and s.owned_shards() == frozenset(range(N))
    home = str((tmp_path / "charging.db").resolve())
    assert set(s.map.files().values()) == {home}
    assert (tmp_path / "charging" / "shards.db").exists()
    s.close()
    with pytest.raises(ShardLayoutError) as exc:
        store(tmp_path, "w1", n=16)
    assert "store.shards = 16" in str(exc.value) and "8 shards" in str(exc.value)


OLD_SCHEMA = """
CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
CREATE TABLE accounts (
    id TEXT PRIMARY KEY, balance INTEGER NOT NULL, reserved INTEGER NOT NULL DEFAULT 0,
    credit_limit INTEGER NOT NULL DEFAULT 0, blocked INTEGER NOT NULL DEFAULT 0,
    spent INTEGER NOT NULL DEFAULT 0, period TEXT NOT NULL DEFAULT '', sy INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE subscriptions (
    sub_type INTEGER, sub_data TEXT, account TEXT NOT NULL, PRIMARY KEY (sub_type, sub_data)
) WITHOUT ROWID;
CREATE TABLE sessions (
    id TEXT PRIMARY KEY, account TEXT NOT NULL, state INTEGER NOT NULL, expires REAL NOT NULL,
    fui INTEGER NOT NULL DEFAULT 0, data BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE ledger (
    seq INTEGER PRIMARY KEY, ts REAL, account TEXT, kind TEXT, session TEXT, number INTEGER,
    key TEXT, units INTEGER, price INTEGER, unit INTEGER, amount INTEGER, shortfall INTEGER,
    ref TEXT NOT NULL DEFAULT ''
);
CREATE TABLE notices (
    seq INTEGER PRIMARY KEY, kind TEXT, session TEXT, account TEXT, client_host TEXT, client_realm TEXT
);
CREATE TABLE sy (session TEXT PRIMARY KEY, account TEXT, data BLOB) WITHOUT ROWID;
CREATE TABLE rules (
    sub_type INTEGER, prefix TEXT, balance INTEGER, credit_limit INTEGER, PRIMARY KEY (sub_type, prefix)
) WITHOUT ROWID;
"""


def test_a_single_file_store_of_before_is_adopted_and_its_shards_move_out(tmp_path):
    """Today's charging.db (no shard columns) becomes the home file; claims then copy its
    rows out, and the checks see each account once."""
    accts = ids(N)
    db = sqlite3.connect(tmp_path / "charging.db")
    db.executescript(OLD_SCHEMA)
    for a in accts:
        db.execute("INSERT INTO accounts (id, balance) VALUES (?, 5000)", (a,))
        db.execute("INSERT INTO subscriptions VALUES (0, ?, ?)", (a, a))
        db.execute(
            "INSERT INTO ledger (ts, account, kind, session, number, key, units, price, unit,"
            " amount, shortfall) VALUES (?, ?, 'credit', '', 0, 'import', 0, 0, 1, 5000, 0)",
            (NOW, a),
        )
    db.commit()
    db.close()
    adm = store(tmp_path, "admin")
    cols = [r[1] for r in adm.home.db.execute("PRAGMA table_info(accounts)")]
    assert "shard" in cols
    got = dict(adm.home.db.execute("SELECT id, shard FROM accounts").fetchall())
    assert got == {a: shard_of(a, N) for a in accts}
    half = set(range(N // 2))
    w = store(tmp_path, "w1", half)
    own = {r[0] for r in w.active.db.execute("SELECT id FROM accounts")}
    assert own == {a for a in accts if shard_of(a, N) in half}
    left = {r[0] for r in adm.home.db.execute("SELECT id FROM accounts")}
    assert left == set(accts) - own  # the moved rows went from home (best effort, done here)
    rep = ledger_check(adm)
    assert rep.ok, rep.problems
    assert rep.accounts == N and rep.balances == 5000 * N
    assert w.credit_control(cc("x", 0, core.INITIAL, sorted(own)[0], requested=10)).result == 2001
    w.close()
    adm.close()


def test_an_alias_sends_a_new_session_to_its_accounts_shard(tmp_path):
    accts = ids(N)
    acct, alias = accts[0], accts[1]  # the alias's data hashes to another shard
    adm = store(tmp_path, "admin")
    adm.import_accounts([AccountRow(acct, 10_000, 0, False, [(E164, acct), (1, alias)])], NOW)
    assert adm.map.alias(1, alias) == shard_of(acct, N)
    a = store(tmp_path, "A", [shard_of(alias, N)])
    b = store(tmp_path, "B", [shard_of(acct, N)])
    o = cc("s1", 0, core.INITIAL, alias, requested=10)
    o.subscriptions = [(1, alias)]
    with pytest.raises(ShardMoved) as exc:
        a.credit_control(o)
    assert exc.value.shard == shard_of(acct, N) and not isinstance(exc.value, NotOwner)
    o.shard = exc.value.shard  # the gateway places it again
    assert b.credit_control(o).result == 2001
    assert adm.get_account(alias).account.id == acct  # by its alias, across files
    assert adm.get_account(acct).account.reserved == 100
    for s in (a, b, adm):
        s.close()


def test_a_session_routed_to_the_wrong_shard_is_moved_and_an_unknown_one_answered(tmp_path):
    accts = ids(2)
    adm = store(tmp_path, "admin")
    adm.import_accounts([AccountRow(x, 10_000, 0, False, [(E164, x)]) for x in accts], NOW)
    s0, s1 = shard_of(accts[0], N), shard_of(accts[1], N)
    a, b = store(tmp_path, "A", [s0]), store(tmp_path, "B", [s1])
    assert b.credit_control(cc("sess", 0, core.INITIAL, accts[1], requested=10)).result == 2001
    lost = cc("sess", 1, core.UPDATE, accts[1], used=5, shard=s0)  # the gateway forgot
    lost.subscriptions = []
    out = a.credit_control_many([lost, cc("nope", 1, core.UPDATE, accts[0], shard=s0)])
    assert isinstance(out[0], ShardMoved) and out[0].shard == s1
    assert out[1].result == 5002  # nowhere: the normal answer
    lost.shard = s1
    assert b.credit_control(lost).services[0].charged == 100
    with pytest.raises(NotOwner):  # a shard A was never given
        a.credit_control(cc("x", 0, core.INITIAL, accts[1], requested=1))
    assert ledger_check(adm).ok
    for s in (a, b, adm):
        s.close()


def test_provisioning_creates_the_account_in_its_identitys_shard_only(tmp_path):
    new = ids(2, prefix="4690")
    adm = store(tmp_path, "admin")
    adm.set_rules([ProvisionRule(E164, "469", 5_000, 0)])
    a = store(tmp_path, "A", [shard_of(new[0], N)])
    assert a.credit_control(cc("p1", 0, core.INITIAL, new[0], requested=10)).result == 2001
    o = cc("p2", 0, core.INITIAL, new[1], requested=10, shard=shard_of(new[0], N))
    with pytest.raises(ShardMoved) as exc:  # its data hashes elsewhere: not created here
        a.credit_control(o)
    assert exc.value.shard == shard_of(new[1], N)
    assert adm.get_account(new[1]) is None
    with pytest.raises(ShardMoved):
        a.provision([(E164, new[1])], NOW)  # Sy's path too
    rep = ledger_check(adm)
    assert rep.ok and rep.accounts == 1 and rep.credits == 5_000
    a.close()
    adm.close()


def test_admin_writes_reach_the_owners_file_and_its_cache(tmp_path):
    acct = ids(1)[0]
    adm = store(tmp_path, "admin")
    adm.import_accounts([AccountRow(acct, 150, 0, False, [(E164, acct)])], NOW)
    w = store(tmp_path, "W", range(N))
    assert w.credit_control(cc("s1", 0, core.INITIAL, acct, requested=100)).services[0].fui
    adm.topup(acct, 1_000, NOW)  # written into W's file under the map's lock
    assert [(n.kind, n.session) for n in w.take_notices()] == [("rar", "s1")]
    out = w.credit_control(cc("s1", 1, core.UPDATE, acct, used=10, requested=10))
    assert out.balance == 1_150 - 100  # W's row cache saw the top-up
    adm.set_blocked(acct, True)
    assert [(n.kind, n.session) for n in w.take_notices()] == [("asr", "s1")]
    adm.import_accounts([AccountRow(acct, 2_000, 0, False, [(E164, acct)])], NOW)
    assert adm.get_account(acct).account.balance == 2_000
    rep = ledger_check(adm)
    assert rep.ok, rep.problems
    w.close()
    adm.close()


def test_assign_is_idempotent_and_a_released_shard_is_refused(tmp_path):
    acct = ids(1)[0]
    adm = store(tmp_path, "admin")
    adm.import_accounts([AccountRow(acct, 1_000, 0, False, [(E164, acct)])], NOW)
    w = store(tmp_path, "W", range(N))
    gens = dict(w.active._owned)
    w.assign_shards(frozenset(range(N)))  # Sy forwards the same set: nothing is claimed again
    assert w.active._owned == gens
    w.assign_shards(frozenset(range(N)) - {shard_of(acct, N)})
    with pytest.raises(NotOwner):
        w.credit_control(cc("s", 0, core.INITIAL, acct, requested=1))
    w.assign_shards(frozenset(range(N)))  # back: a new generation
    assert w.active._owned[shard_of(acct, N)] > gens[shard_of(acct, N)]
    assert w.credit_control(cc("s", 0, core.INITIAL, acct, requested=1)).result == 2001
    w.close()
    adm.close()


def test_sy_rows_follow_their_accounts_shard(tmp_path):
    accts = ids(2)
    adm = store(tmp_path, "admin")
    adm.import_accounts([AccountRow(x, 1_000, 0, False, [(E164, x)]) for x in accts], NOW)
    a = store(tmp_path, "A", [shard_of(accts[0], N)])
    b = store(tmp_path, "B", [shard_of(accts[1], N)])
    sub = SySubscription("sy1", accts[1], "pcrf", "test", [SyCounter("c", "v", [])])
    with pytest.raises(ShardMoved):
        a.sy_put(sub)
    b.sy_put(sub)
    with pytest.raises(ShardMoved) as exc:
        a.sy_get("sy1")
    assert exc.value.shard == shard_of(accts[1], N)
    assert a.sy_get("unknown") is None
    c = store(tmp_path, "C", [shard_of(accts[1], N)])  # the shard moves: its Sy rows too
    assert c.sy_get("sy1").account == accts[1] and c.get_account(accts[1]).account.sy == 1
    with pytest.raises(ShardMoved):  # B was fenced off, its copy deleted: it is C's now
        b.sy_delete("sy1")
    assert c.sy_delete("sy1") is not None
    for s in (a, b, c, adm):
        s.close()


def test_a_fenced_owner_writes_nothing_even_for_a_batch_it_began_before(tmp_path):
    """The claim waits for the old owner's transaction; the old owner's next one sees it."""
    accts = ids(N)
    adm = store(tmp_path, "admin")
    adm.import_accounts([AccountRow(x, 1_000, 0, False, [(E164, x)]) for x in accts], NOW)
    a = store(tmp_path, "A", range(N))
    assert all(o.result == 2001 for o in a.credit_control_many(
        [cc(f"s{x}", 0, core.INITIAL, x, requested=10) for x in accts]))  # fmt: skip
    b = store(tmp_path, "B", range(N))
    out = a.credit_control_many([cc(f"s{x}", 1, core.UPDATE, x, used=10) for x in accts])
    assert all(isinstance(o, NotOwner) for o in out)
    assert a.owned_shards() == frozenset()
    rep = ledger_check(adm)
    assert rep.ok and rep.debits == 0 and rep.reserved == 100 * N
    out = b.credit_control_many([cc(f"s{x}", 1, core.UPDATE, x, used=10) for x in accts])
    assert all(o.result == 2001 for o in out)
    for s in (a, b, adm):
        s.close()


# -- Gy / Sy integration -----------------------------------------------------------------


def test_gy_app_forwards_assignments_and_puts_shard_moved_in_the_slot(tmp_path):
    from types import SimpleNamespace

    from chargegw.codec import Message, commands
    from chargegw.workers.api import Incoming
    from chargegw.workers.charging.gy import CreditControlApp
    from chargegw.workers.charging.testing import FakeWorkerContext

    acct = ids(1)[0]
    app = CreditControlApp()
    ctx = FakeWorkerContext(
        data_dir=str(tmp_path), config={"demo": {"enabled": False}, "store": {"shards": N}}
    )
    ctx.worker_id = "gy-1"
    app.setup(ctx)
    assert app.shards == N
    app.store.import_accounts([AccountRow(acct, 10_000, 0, False, [(E164, acct)])], NOW)
    mine = shard_of(acct, N)
    app.assign_shards(frozenset(range(N)) - {mine})
    assert app.store.own_path.endswith("owner-gy-1.db")
    req = commands.CreditControlRequest(
        session_id="gy;1", origin_host="c.test", origin_realm="test", destination_realm="x",
        auth_application_id=4, service_context_id="32251@3gpp.org", cc_request_type=1,
        cc_request_number=0,
        subscription_id=[{"subscription_id_type": 0, "subscription_id_data": acct}],
        requested_service_unit={"cc_time": 60},
    )  # fmt: skip
    raw = req.encode()
    # RequestContext gains `shard` in the lead's runtime change; the app reads it by getattr
    rctx = SimpleNamespace(peer="c.test", deadline=0.0, retransmit=False, shard=mine)
    out = app.handle_batch([Incoming(raw, rctx)])  # type: ignore[arg-type]
    assert isinstance(out[0], NotOwner) and out[0].shard == mine
    assert app.store.get_account(acct).account.reserved == 0
    app.assign_shards(frozenset(range(N)))
    out = app.handle_batch([Incoming(raw, rctx)])  # type: ignore[arg-type]
    assert Message.decode(out[0]).result_code == 2001
    assert app.store.get_account(acct).account.reserved > 0
    app.store.close()


def test_accounts_and_ledger_commands_work_across_owner_files(tmp_path, capsys):
    from chargegw.sharding import DEFAULT_SHARDS
    from chargegw.workers import accounts_cli, ledger_cli

    f = tmp_path / "a.csv"
    f.write_text("id,balance,msisdn\nalice,10.00,46111\nbob,0,46222\n")
    dd = ["--data-dir", str(tmp_path)]
    assert accounts_cli.main(["import", str(f), *dd]) == 0
    n = DEFAULT_SHARDS  # what the commands' default config says
    sa, sb = shard_of("alice", n), shard_of("bob", n)
    assert sa != sb
    a = store(tmp_path, "A", [sa], n=n)
    b = store(tmp_path, "B", [sb], n=n)
    o = cc("s1", 0, core.EVENT, "46111", requested=10, shard=sa)
    o.action = core.DIRECT_DEBITING
    assert a.credit_control(o).services[0].charged == 100
    assert accounts_cli.main(["topup", "bob", "2.50", *dd]) == 0  # into B's file
    assert b.get_account("bob").account.balance == 2_500_000
    assert accounts_cli.main(["show", "46111", *dd]) == 0
    assert "balance       9.999900" in capsys.readouterr().out
    assert ledger_cli.main(["check", *dd]) == 0
    out = capsys.readouterr().out
    assert "ledger OK" in out and "accounts          2" in out
    a.active.db.execute("UPDATE accounts SET balance = balance + 1")  # tamper in one file
    assert ledger_cli.main(["check", *dd]) == 1
    a.close()
    b.close()


def test_a_claim_that_dies_before_the_map_commit_leaves_the_old_file_authoritative(
    tmp_path, monkeypatch
):
    """Both files committed, the map not: the old owner is fenced, the half-claimed copy is
    never read, and the next claim (a newer generation) takes the rows from the old file."""
    from chargegw.workers.charging.stores import sqlite_shards

    acct = ids(1)[0]
    s = shard_of(acct, N)
    adm = store(tmp_path, "admin")
    adm.import_accounts([AccountRow(acct, 10_000, 0, False, [(E164, acct)])], NOW)
    a = store(tmp_path, "A", range(N))
    assert a.credit_control(cc("s1", 0, core.INITIAL, acct, requested=100)).result == 2001
    real_rel = sqlite_shards.ShardMap.rel

    def dies(self, path):  # called for the map's update, after both files committed
        if "owner-B" in path:
            raise RuntimeError("killed before the map's commit")
        return real_rel(self, path)

    monkeypatch.setattr(sqlite_shards.ShardMap, "rel", dies)
    b = store(tmp_path, "B")
    with pytest.raises(RuntimeError):
        b.assign_shards(frozenset([s]))
    monkeypatch.setattr(sqlite_shards.ShardMap, "rel", real_rel)
    assert b.owned_shards() == frozenset()
    assert adm.map.files()[s] == str(a.active.path)  # the map still names A's file
    with pytest.raises(NotOwner):  # but A is fenced off
        a.credit_control(cc("s1", 1, core.UPDATE, acct, used=10, requested=100))
    assert ledger_check(adm).ok and adm.get_account(acct).account.reserved == 1_000
    b.assign_shards(frozenset([s]))  # the retry
    out = b.credit_control(cc("s1", 1, core.UPDATE, acct, used=10, requested=100))
    assert out.result == 2001 and out.services[0].charged == 100
    rep = ledger_check(adm)
    assert rep.ok and rep.debits == 100 and rep.reserved == 1_000
    for x in (a, b, adm):
        x.close()


def test_bench_store_sharded_reports_each_figure_beside_its_single_file_anchor(tmp_path):
    """Runs end to end (figures are not judged here: this box is shared)."""
    import argparse

    import orjson

    from chargegw.workers.charging import bench

    parser = argparse.ArgumentParser()
    bench.configure(parser)
    out = tmp_path / "bench.json"
    args = parser.parse_args(
        ["--backend", "sharded", "--processes", "1,2", "--batch", "4", "--seconds", "0.2",
         "--sessions", "8", "--accounts", "40", "--shards", "8", "--json", str(out)]
    )  # fmt: skip
    assert bench.run(args) == 0
    results = orjson.loads(out.read_bytes())["results"]
    assert [(r["backend"], r["processes"]) for r in results] == [("sharded", 1), ("sharded", 2)]
    assert all(r["ledger_ok"] and r["ops"] > 0 and r["anchor_ops_per_s"] > 0 for r in results)


def test_sy_app_raises_not_owner_unapplied_and_serves_once_assigned(tmp_path):
    from types import SimpleNamespace

    from chargegw.codec import Message, commands
    from chargegw.workers.charging.sy import SpendingLimitApp
    from chargegw.workers.charging.testing import FakeWorkerContext

    acct = ids(1)[0]
    conf = {"store": {"shards": N}, "counters": [{"id": "c", "base_status": "ok"}]}
    sy = SpendingLimitApp()
    sy.setup(FakeWorkerContext(str(tmp_path), conf))
    assert sy.shards == N
    sy.store.import_accounts([AccountRow(acct, 1_000, 0, False, [(E164, acct)])], NOW)
    mine = shard_of(acct, N)
    sy.assign_shards(frozenset(range(N)) - {mine})
    req = Message.decode(commands.SpendingLimitRequest(
        session_id="pcrf;9", origin_host="pcrf.test", origin_realm="test",
        destination_realm="ocs", auth_application_id=16777302, sl_request_type=0,
        subscription_id=[{"subscription_id_type": 0, "subscription_id_data": acct}],
    ).encode())  # fmt: skip
    rctx = SimpleNamespace(peer="pcrf.test", deadline=0.0, shard=mine)
    with pytest.raises(NotOwner):
        sy.handle(req, rctx)  # type: ignore[arg-type]
    rctx.shard = -1  # unrouted (a tool): the store refuses it all the same
    with pytest.raises(ShardMoved):
        sy.handle(req, rctx)  # type: ignore[arg-type]
    assert sy.store.get_account(acct).account.sy == 0
    sy.assign_shards(frozenset(range(N)))
    rctx.shard = mine
    assert sy.handle(req, rctx).result_code == 2001  # type: ignore[arg-type]
    assert sy.store.get_account(acct).account.sy == 1
    sy.store.close()


def test_an_owner_fenced_by_a_stale_claim_takes_its_assigned_shard_back(tmp_path, monkeypatch):
    """Two Assigns crossing at start-up: B is given shard s and claims it, then A acts on its
    older assignment and claims s too (fencing B). B, still assigned s by the gateway, takes
    it back on its next request instead of refusing it until the deadline."""
    accts = ids(1)
    adm = store(tmp_path, "admin")
    adm.import_accounts([AccountRow(x, 10_000, 0, False, [(E164, x)]) for x in accts], NOW)
    s = shard_of(accts[0], N)
    b = store(tmp_path, "B", [s])
    a = store(tmp_path, "A", [s])  # the stale claim
    a.assign_shards(frozenset())  # A's newer assignment arrives: s is not its
    first = b.credit_control_many([cc("x", 0, core.INITIAL, accts[0], requested=10)])
    assert isinstance(first[0], NotOwner)  # found fenced inside the transaction: unapplied
    wait = b.credit_control_many([cc("x", 0, core.INITIAL, accts[0], requested=10)])
    assert isinstance(wait[0], NotOwner)  # within the grace: perhaps our Assign is stale
    monkeypatch.setattr(sqlite_sharded, "LOST_GRACE", 0.0)
    again = b.credit_control_many([cc("x", 0, core.INITIAL, accts[0], requested=10)])
    assert not isinstance(again[0], Exception) and again[0].result == 2001
    assert b.owns(s) and not a.owns(s)
    rep = ledger_check(adm)
    assert rep.ok, rep.problems
    for x in (a, b, adm):
        x.close()


def _map_sql(s) -> list[str]:
    """Statements the store's map connection runs from now on."""
    seen: list[str] = []
    s.map.db.set_trace_callback(seen.append)
    return seen


@pytest.mark.parametrize("alias_cache", [True, False])
def test_the_map_in_memory_sees_other_processes_writes_and_its_own(
    tmp_path, monkeypatch, alias_cache
):
    """The map's rows are kept in memory, yet an alias or a move committed by another
    connection is seen by the next look-up, and so is one written through this one."""
    from chargegw.workers.charging.stores import sqlite_shards

    if not alias_cache:  # more aliases than are kept in memory: asked per look-up
        monkeypatch.setattr(sqlite_shards, "ALIAS_CACHE_MAX", 0)
    accts = ids(N)
    acct, alias, other = accts[0], accts[1], accts[2]
    adm = store(tmp_path, "admin")
    adm.set_rules([ProvisionRule(E164, "4670", 1000, 0)])
    a = store(tmp_path, "A", [shard_of(alias, N), shard_of(other, N)])
    first = cc("s0", 0, core.INITIAL, other, requested=10)
    assert a.credit_control(first).result == 2001  # the map is read and kept
    assert a.map.alias(1, alias) is None
    # another process imports an account with an alias whose data hashes to A's shard
    adm.import_accounts([AccountRow(acct, 10_000, 0, False, [(E164, acct), (1, alias)])], NOW)
    o = cc("s1", 0, core.INITIAL, alias, requested=10)
    o.subscriptions = [(1, alias)]
    with pytest.raises(ShardMoved) as exc:
        a.credit_control(o)
    assert exc.value.shard == shard_of(acct, N)
    # another process claims a shard: A's map names the new file at once
    b = store(tmp_path, "B", [shard_of(acct, N)])
    assert a.map.file_of(shard_of(acct, N)) == b.active.path
    # this connection's own write (under the map's lock: an import) is seen too
    assert a.map.alias(1, other) is None
    a.import_accounts([AccountRow(acct, 0, 0, False, [(1, other)])], NOW)
    assert a.map.alias(1, other) == shard_of(acct, N) == adm.map.alias(1, other)
    for s in (a, b, adm):
        s.close()


def test_a_new_subscribers_ccr_i_reads_no_map_row_when_nothing_moved(tmp_path):
    """Only the map's version is asked; its rows are read again once it changes."""
    adm = store(tmp_path, "admin")
    adm.set_rules([ProvisionRule(E164, "4670", 1000, 0)])
    news = ids(N, "46701")
    a = store(tmp_path, "A", range(N))
    assert a.credit_control(cc("s0", 0, core.INITIAL, news[0], requested=10)).result == 2001
    seen = _map_sql(a)
    for i, x in enumerate(news[1:4]):
        assert a.credit_control(cc(f"s{i + 1}", 0, core.INITIAL, x, requested=10)).result == 2001
    assert seen and all(q == "PRAGMA data_version" for q in seen), seen
    adm.import_accounts([AccountRow("other", 10, 0, False, [(1, "x")])], NOW)  # a map write
    seen.clear()
    assert a.credit_control(cc("s9", 0, core.INITIAL, news[5], requested=10)).result == 2001
    assert any("FROM map" in q for q in seen), seen
    assert ledger_check(adm).ok
    for s in (a, adm):
        s.close()


def test_the_map_read_under_its_lock_after_a_write_there_is_the_written_one(tmp_path):
    """Inside `locked()` this connection's own writes do not move its data_version: the map
    is read anew there, and the rows read there are not kept past it."""
    a = store(tmp_path, "A")
    home = a.map.files()[0]
    with a.map.locked() as db:
        assert a.map.file_of(0) == home
        db.execute("UPDATE map SET file='elsewhere.db' WHERE shard=0")
        assert a.map.file_of(0) == a.map.abs("elsewhere.db")  # the write is seen
        db.execute("UPDATE map SET file=? WHERE shard=0", (a.map.rel(home),))
    assert a.map.file_of(0) == home
    with pytest.raises(RuntimeError), a.map.locked() as db:  # rolled back: not kept either
        db.execute("UPDATE map SET file='elsewhere.db' WHERE shard=0")
        assert a.map.file_of(0) == a.map.abs("elsewhere.db")
        raise RuntimeError("abandon")
    assert a.map.file_of(0) == home
    a.close()


def test_shard_rows_are_found_through_indexes_without_a_shard_index_per_table(tmp_path):
    """Only accounts and notices keep an index on `shard` (the others' would be written on
    every insert of the hot path); a move finds a shard's subscriptions, sessions and Sy
    rows through its accounts, by index (no table scan), and an older file's extra shard
    indexes are dropped when it is opened."""
    from chargegw.workers.charging.stores.sqlite_db import SHARDED_TABLES, shard_rows

    s = store(tmp_path, "admin")
    db = s.home.db
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"accounts_shard", "notices_shard"} <= names
    assert not names & {"subscriptions_shard", "sessions_shard", "sy_shard"}
    for table in SHARDED_TABLES:
        for verb in ("SELECT *", "DELETE"):
            q = f"EXPLAIN QUERY PLAN {verb} FROM {table} WHERE {shard_rows(table)}"
            plan = [str(r[-1]) for r in db.execute(q, (3,))]
            assert all(not step.startswith("SCAN") for step in plan), (table, plan)
            assert plan[0].startswith(f"SEARCH {table} USING"), (table, plan)
    db.execute("CREATE INDEX sessions_shard ON sessions(shard)")  # as an older version made
    s.close()
    again = store(tmp_path, "admin")
    q = "SELECT name FROM sqlite_master WHERE type='index'"
    names = {r[0] for r in again.home.db.execute(q)}
    assert "sessions_shard" not in names
    again.close()


def test_a_move_carries_a_shards_sessions_subscriptions_and_sy_rows(tmp_path):
    accts = ids(N)
    adm = store(tmp_path, "admin")
    adm.set_rules([ProvisionRule(E164, "4670", 10_000, 0)])
    for i, a in enumerate(accts):
        assert adm.credit_control(cc(f"s{i}", 0, core.INITIAL, a, requested=10)).result == 2001
    w = store(tmp_path, "w1", {shard_of(accts[2], N)})
    f = w.active.db
    assert f.execute("SELECT account FROM sessions").fetchall() == [(accts[2],)]
    assert f.execute("SELECT account FROM subscriptions").fetchall() == [(accts[2],)]
    home = adm.home.db
    assert (accts[2],) not in home.execute("SELECT account FROM sessions").fetchall()
    assert len(home.execute("SELECT account FROM sessions").fetchall()) == N - 1
    assert ledger_check(adm).ok
    w.close()
    adm.close()
