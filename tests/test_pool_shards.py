"""Routing by charging shard (chargegw/sharding.py): the pool core's assignment, placement
and Moved handling driven directly, then the ZeroMQ pool end to end with workers whose
application owns shards (claims them on Assign, refuses what it does not own)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from test_pool_io import aio, make_request, make_worker, pool, until

from chargegw.codec import Message
from chargegw.gateway.pool import (
    FAIR_PERIOD,
    MAX_PLACED,
    NoWorker,
    PoolCore,
    ShardCountMismatch,
)
from chargegw.ipc import protocol as pp
from chargegw.sharding import NotOwner, ShardMoved, shard_of
from chargegw.workers.api import AppSpec, Incoming
from chargegw.workers.testapp import TEST_APP_ID

pytestmark = pytest.mark.timeout(60)

N = 32
APP = TEST_APP_ID


def core_with(*workers: str, shards: int = N, credit: int = 8) -> PoolCore:
    core = PoolCore(deadline=5.0, heartbeat_timeout=1.0)
    for wid in workers:
        core.register(
            wid.encode(), worker_id=wid, credit=credit, apps=[APP], now=0.0, shards=shards,
            shard_apps=[APP],
        )  # fmt: skip
    return core


def owners(core: PoolCore) -> dict[int, bytes | None]:
    return {s: core.shard_owner(s) for s in range(core.shards)}


def place(core: PoolCore, sid: bytes, sub: bytes | None = None, now: float = 0.0) -> Any:
    shard = core.route_shard(APP, sid, sub)
    return core.place(
        peer="p", hbh=1, app=APP, cmd=272, session_id=sid, raw=b"", now=now, wall_now=now,
        shard=shard,
    )  # fmt: skip


def test_every_shard_has_one_owner_and_assignments_partition_the_shards() -> None:
    core = core_with("w1", "w2", "w3")
    sent = core.take_assignments()
    assert set(sent) == {b"w1", b"w2", b"w3"}
    seen: list[int] = []
    for ident, shards in sent.items():
        seen += shards
        assert all(core.shard_owner(s) == ident for s in shards)
    assert sorted(seen) == list(range(N))  # each shard exactly once
    assert all(len(s) > 0 for s in sent.values())  # 32 shards over 3 workers: all get some


def test_a_joining_worker_takes_shards_only_from_others_and_only_its_own_move() -> None:
    core = core_with("w1", "w2")
    before = owners(core)
    core.take_assignments()
    core.register(
        b"w3", worker_id="w3", credit=8, apps=[APP], now=0.0, shards=N, shard_apps=[APP]
    )
    after = owners(core)
    moved = {s for s in range(N) if before[s] != after[s]}
    assert moved and all(after[s] == b"w3" for s in moved)  # nothing moves between w1 and w2
    told = core.take_assignments()
    assert told[b"w3"] == sorted(moved)
    for ident in (b"w1", b"w2"):  # told again only when their set shrank
        mine = sorted(s for s in range(N) if after[s] == ident)
        if ident in told:
            assert told[ident] == mine


def test_same_worker_id_gets_its_shards_back_after_a_restart() -> None:
    core = core_with("w1", "w2")
    mine = sorted(s for s, o in owners(core).items() if o == b"w2")
    core.drop(b"w2", 1.0)
    assert all(o == b"w1" for o in owners(core).values())
    core.register(  # a new process: another routing identity, the same worker id
        b"w2-new", worker_id="w2", credit=8, apps=[APP], now=1.0, shards=N, shard_apps=[APP]
    )
    assert sorted(s for s, o in owners(core).items() if o == b"w2-new") == mine


def test_a_shard_owner_reregistering_gets_its_requests_back_directly() -> None:
    """The owner of a shard re-registers (a new gen): it owns the shard again at once, so
    what it held goes straight to its new registration; no other worker is told it owns
    the shard meanwhile (it would refuse with Moved: a detour and a placement used up)."""
    core = core_with("w1", "w2")
    sub = next(f"4680{i:04}".encode() for i in range(1000)
               if core.shard_owner(shard_of(f"4680{i:04}".encode(), N)) == b"w1")  # fmt: skip
    p = place(core, b"s1", sub)
    assert p.worker == b"w1"
    core.take_assignments()
    moved, failed = core.register(
        b"w1", worker_id="w1", credit=8, apps=[APP], now=1.0, gen=1, shards=N, shard_apps=[APP]
    )
    assert moved == [(b"w1", p)] and failed == [] and p.placed == 2
    told = core.take_assignments()
    assert b"w2" not in told  # its set never changed
    assert told[b"w1"] == sorted(s for s, o in owners(core).items() if o == b"w1")


def test_route_by_subscription_then_remembered_session_then_session_hash() -> None:
    core = core_with("w1", "w2")
    assert core.route_shard(APP, b"s1", b"46800001") == shard_of(b"46800001", N)
    # a CCR-U without Subscription-Id: the shard its session started in
    assert core.route_shard(APP, b"s1", None) == shard_of(b"46800001", N)
    assert core.route_shard(APP, b"s2", None) == shard_of(b"s2", N)
    assert core.route_shard(APP + 1, b"s1", b"46800001") == -1  # not a sharded application


def test_session_routes_are_bounded() -> None:
    core = core_with("w1")
    core.max_session_routes = 100
    for i in range(1000):
        core.route_shard(APP, f"s{i}".encode(), b"x")
    assert len(core.session_routes) == 100


def test_placed_on_the_owner_only_and_3004_when_it_is_full() -> None:
    core = core_with("w1", "w2", credit=2)
    sub = b"46800001"
    owner = core.shard_owner(shard_of(sub, N))
    for i in range(2):
        assert place(core, f"s{i}".encode(), sub).worker == owner
    with pytest.raises(NoWorker) as exc:  # no walk to the other worker: one writer a shard
        place(core, b"s9", sub)
    assert exc.value.result_code == 3004


def test_moved_places_again_on_the_named_shard_and_remembers_it() -> None:
    core = core_with("w1", "w2")
    p = place(core, b"s1", b"alias")
    first = p.worker
    target_shard = next(s for s in range(N) if core.shard_owner(s) != first)
    to, q = core.moved(first, p.id, target_shard)
    assert q is p and to == core.shard_owner(target_shard) and p.worker == to
    assert p.placed == 2 and p.id in core.pending
    assert core.route_shard(APP, b"s1", b"alias") == target_shard  # learnt for the session
    assert core.workers[first].available == core.workers[first].credit  # slot returned
    assert core.counters.shard_moves == 1


def test_moved_in_a_loop_is_answered_after_max_placed() -> None:
    core = core_with("w1")
    p = place(core, b"s1", b"x")
    for k in range(MAX_PLACED - 1):  # shard to shard (aliases pointing around): bounded
        to, q = core.moved(p.worker, p.id, (p.shard + 1 + k) % N)
        assert to == b"w1"
    to, q = core.moved(p.worker, p.id, (p.shard + 1) % N)
    assert to is None and q is p and p.id not in core.pending
    assert core.counters.shard_moves_lost == 1


def test_not_owner_from_the_owner_waits_for_its_claim_until_the_deadline() -> None:
    core = core_with("w1")
    p = place(core, b"s1", b"x")
    for _ in range(3 * MAX_PLACED):  # its claim is pending: asked again, not answered
        to, q = core.moved(b"w1", p.id, p.shard)
        assert to == b"w1" and q is p
    assert p.placed == 1 and p.id in core.pending
    assert [x.id for x in core.expire(10.0)] == [p.id]  # the deadline bounds it


def test_moved_keeps_deadline_order_for_expiry() -> None:
    core = core_with("w1", "w2")
    p1 = place(core, b"s1", b"a", now=0.0)
    place(core, b"s2", b"b", now=1.0)
    core.moved(p1.worker, p1.id, p1.shard)
    assert [p.id for p in core.expire(5.5)] == [p1.id]  # p1 expires first, alone


def test_dropped_owner_moves_its_shards_and_resends_to_the_new_owners() -> None:
    core = core_with("w1", "w2", credit=64)
    core.take_assignments()
    subs = [f"4680{i}".encode() for i in range(40)]
    placed = [place(core, f"s{i}".encode(), sub) for i, sub in enumerate(subs)]
    on_w1 = [p for p in placed if p.worker == b"w1"]
    assert on_w1
    moved, failed = core.drop(b"w1", 1.0)
    assert not failed and {p.id for _, p in moved} == {p.id for p in on_w1}
    assert all(to == b"w2" and p.retransmit for to, p in moved)
    assert core.take_assignments() == {b"w2": list(range(N))}


def test_draining_worker_is_told_it_owns_nothing() -> None:
    core = core_with("w1", "w2")
    core.take_assignments()
    core.set_draining(b"w1")
    told = core.take_assignments()
    assert told[b"w1"] == [] and told[b"w2"] == list(range(N))


def test_another_shard_count_is_refused() -> None:
    core = core_with("w1")
    with pytest.raises(ShardCountMismatch, match="store.shards"):
        core.register(
            b"w2", worker_id="w2", credit=8, apps=[APP], now=0.0, shards=N * 2, shard_apps=[APP]
        )
    assert b"w2" not in core.workers


# -- end to end over ZeroMQ ---------------------------------------------------------------

ALIAS = b"alias-subscriber"
ALIAS_SHARD = 5


class ShardApp:
    """Owns the shards it is assigned, with fencing like the store's: a claim takes the
    shard from whoever held it, and a request is applied only by the current holder.
    Requests for the alias subscriber belong to ALIAS_SHARD (a store's alias row)."""

    app_id = APP
    shards = N
    holder: dict[int, str] = {}
    applied: list[tuple[int, str, int]] = []  # (hop-by-hop id, worker id, shard)

    def setup(self, ctx: Any) -> None:
        self.ctx = ctx
        self.owned: frozenset[int] = frozenset()

    def assign_shards(self, owned: frozenset[int]) -> None:
        for s in owned - self.owned:
            type(self).holder[s] = self.ctx.worker_id  # fences off the previous holder
        self.owned = owned

    def handle_batch(self, requests: list[Incoming]) -> list[Any]:
        out: list[Any] = []
        for r in requests:
            m = Message.decode(r.raw)
            shard = r.ctx.shard
            if m.raw_value("User-Name") == ALIAS and shard != ALIAS_SHARD:
                out.append(ShardMoved(ALIAS_SHARD))
            elif type(self).holder.get(shard) != self.ctx.worker_id:
                out.append(NotOwner(shard))
            else:
                type(self).applied.append((m.hop_by_hop, self.ctx.worker_id, shard))
                ans = m.answer(2001, origin_host="w", origin_realm="r")
                out.append(ans.encode())
        return out


def request(i: int, sub: bytes) -> tuple[bytes, bytes]:
    m = Message.decode(make_request(i))
    if sub == ALIAS:
        m.set("User-Name", ALIAS)
    return m.encode(), sub


def submit(gw: Any, raw: bytes, sub: bytes) -> bool:
    """As the front end does; False when it would answer 3004/3002 at once (owner full)."""
    m = Message.decode(raw)
    sid = m.raw_value("Session-Id") or b""
    core = gw.core
    try:
        gw.server.submit(
            peer="client.localdomain", hbh=m.hop_by_hop, app=APP, cmd=m.code, session_id=sid,
            raw=raw, ref=m, shard=core.route_shard(APP, sid, sub),
        )  # fmt: skip
    except NoWorker:
        return False
    return True


def app_spec() -> AppSpec:
    return AppSpec(APP, f"{__name__}:ShardApp")


@aio
async def test_requests_applied_once_by_their_shard_owner_through_joins_and_losses(
    tmp_path: Path,
) -> None:
    ShardApp.holder.clear()
    ShardApp.applied.clear()
    async with pool(tmp_path, deadline=8.0) as (gw, ws):
        w1 = ws.start(make_worker([gw.endpoint], [app_spec()], wid="w1"))
        ws.start(make_worker([gw.endpoint], [app_spec()], wid="w2"))
        await until(lambda: len(gw.core.workers) == 2 and gw.core.shards == N, what="2 workers")
        total = 0
        shed = 0

        async def burst(k: int) -> None:
            nonlocal total, shed
            for i in range(total, total + k):
                sub = ALIAS if i % 10 == 0 else f"4681{i:05d}".encode()
                raw, sub = request(i, sub)
                shed += not submit(gw, raw, sub)
                if i % 10 == 0:
                    await asyncio.sleep(0.002)
            total += k

        await burst(200)
        ws.start(make_worker([gw.endpoint], [app_spec()], wid="w3"))  # a join mid-stream
        await burst(200)
        await until(lambda: len(gw.core.workers) == 3, what="w3")
        await burst(200)
        ws.freeze(w1)  # a loss: its shards and in-flight requests move
        await burst(200)
        await until(lambda: len(gw.answers) == total - shed, timeout=20, what="every answer")

    codes = {hbh: m.get("Result-Code") for hbh, m in gw.answers.items()}
    refused = [hbh for hbh, c in codes.items() if c != 2001]
    # 3004 only where the owner was momentarily full; never a wrong or double application
    assert all(codes[h] in (3002, 3004) for h in refused)
    hbhs = [h for h, _, _ in ShardApp.applied]
    assert len(hbhs) == len(set(hbhs)), "a request was applied twice"
    assert {h for h, c in codes.items() if c == 2001} <= set(hbhs)
    assert len(refused) + shed <= total // 50  # a shard left without a told owner: ~1/3
    for hbh, _wid, shard in ShardApp.applied:
        i = hbh - 1000
        if i % 10 == 0:
            assert shard == ALIAS_SHARD  # applied only in the shard the alias names
    assert gw.core.counters.shard_moves > 0  # the alias requests moved at least


@aio
async def test_worker_reports_its_shard_count_and_receives_assign_first(tmp_path: Path) -> None:
    ShardApp.holder.clear()
    async with pool(tmp_path) as (gw, ws):
        rt = ws.start(make_worker([gw.endpoint], [app_spec()], wid="solo"))
        await until(lambda: gw.core.shards == N, what="registration")
        assert gw.core.shard_apps == frozenset({APP})
        await until(lambda: rt.links[0].shards == frozenset(range(N)), what="Assign")
        assert set(ShardApp.holder) == set(range(N))
        assert pp.Assign([1], 2) == pp.decode(pp.encode([pp.Assign([1], 2)]))[0]


def held(core: PoolCore) -> dict[str, int]:
    """Requests in `pending` by peer, over all workers (their fair-share counts)."""
    out: dict[str, int] = {}
    for w in core.workers.values():
        for peer, n in w.by_peer.items():
            out[peer] = out.get(peer, 0) + n
    return out


def _place(core: PoolCore, peer: str, i: int) -> None:
    core.place(peer=peer, hbh=i, app=APP, cmd=1, session_id=b"%s%d" % (peer.encode(), i),
               raw=b"", now=0.0, wall_now=0.0)  # fmt: skip


def test_a_flooding_peer_is_shed_before_it_takes_the_last_quarter_of_a_worker() -> None:
    core = PoolCore(deadline=5.0, heartbeat_timeout=1.0)
    core.register(b"w", worker_id="w", credit=128, apps=[APP], now=0.0)
    _place(core, "good", 99)  # another peer sends (now and then): the quarter is kept for it
    core.answer(b"w", next(iter(core.pending)))
    placed = 0
    with pytest.raises(NoWorker) as exc:
        for i in range(128):
            core.place(peer="flood", hbh=i, app=APP, cmd=1, session_id=b"f%d" % i, raw=b"",
                       now=0.0, wall_now=0.0)  # fmt: skip
            placed += 1
    assert exc.value.result_code == 3004 and placed == 96  # 128 - 128 // 4
    assert core.counters.shed_fair == 1
    for i in range(4):  # the others still get the quarter kept for them
        core.place(peer="good", hbh=100 + i, app=APP, cmd=1, session_id=b"g%d" % i, raw=b"",
                   now=0.0, wall_now=0.0)  # fmt: skip
    assert held(core) == {"flood": 96, "good": 4}
    p = next(iter(core.pending.values()))
    core.answer(b"w", p.id)
    assert held(core)["flood"] == 95  # counts follow requests out of `pending`


def test_two_flooding_peers_leave_the_quarter_for_a_third() -> None:
    """With three peers sending, each holds at most a third of a nearly full worker: two
    floods that may each hold up to half would share the whole worker between them, and a
    well-behaved third peer would get nothing but 3004 (41% of its requests in a 2x
    overload driven by two generator processes)."""
    core = PoolCore(deadline=5.0, heartbeat_timeout=1.0)
    core.register(b"w", worker_id="w", credit=128, apps=[APP], now=0.0)
    core.age_peers(0.0)
    _place(core, "good", 0)  # the light peer has sent: it is one of the three
    core.answer(b"w", next(iter(core.pending)))
    placed = {"a": 0, "b": 0}
    refused: set[str] = set()
    for i in range(1, 400):
        peer = "ab"[i % 2]
        if peer in refused:
            continue
        try:
            _place(core, peer, i)
            placed[peer] += 1
        except NoWorker as exc:
            assert exc.result_code == 3004
            refused.add(peer)
    assert placed == {"a": 48, "b": 48}  # refused at 128 // 3 = 42 or more, 32 slots left
    # The quarter is for peers that hold less than a sixteenth (8), or less than half of
    # what is left: a light peer's requests get in, a burst of it only in part.
    for i in range(11):
        _place(core, "good", 1000 + i)
    with pytest.raises(NoWorker):
        _place(core, "good", 1011)  # 11 held, 21 free
    assert core.counters.shed_fair == 3


def test_a_second_flood_cannot_take_the_last_quarter_in_one_burst() -> None:
    """The first flood took three quarters while it was alone; a second one that arrives in
    a burst holds less than its share but may not take more than half of what is left, so a
    light third peer still finds slots."""
    core = PoolCore(deadline=5.0, heartbeat_timeout=1.0)
    core.register(b"w", worker_id="w", credit=128, apps=[APP], now=0.0)
    core.age_peers(0.0)
    for peer in ("b", "good"):  # both have sent this period
        _place(core, peer, 0)
        core.answer(b"w", next(iter(core.pending)))
    for i in range(96):
        _place(core, "a", i)
    with pytest.raises(NoWorker):
        _place(core, "a", 96)
    placed = 0
    with pytest.raises(NoWorker):
        for i in range(100, 200):
            _place(core, "b", i)
            placed += 1
    assert placed == 11  # 11 held, 21 free
    for i in range(8):  # a peer holding less than a sixteenth is not shed
        _place(core, "good", 200 + i)
    assert held(core) == {"a": 96, "b": 11, "good": 8}
    assert core.counters.shed_fair == 2


def test_the_share_is_judged_on_the_worker_that_is_nearly_full() -> None:
    """A peer's requests on other workers do not count against it on a nearly full one:
    a peer holding 40 on w2 and none on w1 still gets w1's free slots (by its total it
    would hold more than half of what w1 has left), and a request that moves between
    workers moves its count too."""
    core = core_with("w1", "w2", credit=128)
    core.age_peers(0.0)
    by_owner: dict[bytes, list[int]] = {}
    for s in range(N):
        by_owner.setdefault(core.shard_owner(s) or b"", []).append(s)
    s1, s2 = by_owner[b"w1"][0], by_owner[b"w2"][0]

    def put(peer: str, shard: int, i: int) -> Any:
        return core.place(peer=peer, hbh=i, app=APP, cmd=1, session_id=b"%s%d" % (
            peer.encode(), i), raw=b"", now=0.0, wall_now=0.0, shard=shard)

    for i in range(40):
        put("medium", s2, i)
    for i in range(100, 196):  # the flood fills w1 to its last quarter
        put("flood", s1, i)
    with pytest.raises(NoWorker):
        put("flood", s1, 196)
    w1, w2 = core.workers[b"w1"], core.workers[b"w2"]
    assert w1.available == 32 and held(core)["medium"] == 40
    for i in range(200, 210):
        put("medium", s1, i)  # 0 held on w1: the share there is what counts
    assert w1.by_peer == {"flood": 96, "medium": 10} and w2.by_peer == {"medium": 40}
    p = next(p for p in core.pending.values() if p.worker == b"w2")
    to, _ = core.moved(b"w2", p.id, s1)  # a move to w1 carries the count with it
    assert to == b"w1" and w1.by_peer["medium"] == 11 and w2.by_peer["medium"] == 39
    core.answer(b"w1", p.id)
    for rid in [r for r, q in core.pending.items() if q.peer == "flood"]:
        core.answer(b"w1", rid)
    assert w1.by_peer == {"medium": 10} and held(core) == {"medium": 49}


def test_a_peer_alone_keeps_a_sixteenth_free_and_fairness_returns_with_another() -> None:
    """One load client, or one relay in front of the gateway: nobody else to keep the last
    quarter for, so only a sixteenth is kept (a newcomer's first requests), not a quarter
    (3004 for 12% of a 200-in-flight run against one worker of 256). Another peer that sends
    brings the quarter back at once; one quiet for two FAIR_PERIODs no longer counts."""
    core = PoolCore(deadline=5.0, heartbeat_timeout=1.0)
    core.register(b"w", worker_id="w", credit=128, apps=[APP], now=0.0)
    core.age_peers(0.0)
    for i in range(120):  # 128 - 128 // 16
        _place(core, "alone", i)
    with pytest.raises(NoWorker) as exc:
        _place(core, "alone", 120)
    assert exc.value.result_code == 3004 and core.counters.shed_fair == 1
    for i in range(8):  # the sixteenth kept: a newcomer's first requests get in
        _place(core, "new", i)
    for rid in list(core.pending)[:48]:  # 48 of "alone" answered: 72 held, 48 free
        core.answer(b"w", rid)
    placed = 0
    with pytest.raises(NoWorker):
        for i in range(200, 240):
            _place(core, "alone", i)
            placed += 1
    assert placed == 16 and core.counters.shed_fair == 2  # "new" sent: a quarter kept
    for rid in [r for r, p in core.pending.items() if p.peer == "new"]:
        core.answer(b"w", rid)
    core.age_peers(FAIR_PERIOD)  # "new" sent in the previous period: still counts

    def fill(start: int) -> int:
        n = 0
        with pytest.raises(NoWorker):
            for i in range(start, start + 128):
                _place(core, "alone", i)
                n += 1
        return n

    assert fill(300) == 8  # 40 free: down to the quarter
    core.age_peers(2 * FAIR_PERIOD)  # quiet for two periods: "alone" is alone again
    assert fill(400) == 24  # down to the sixteenth
    assert held(core) == {"alone": 120}
