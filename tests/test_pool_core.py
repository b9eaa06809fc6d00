"""PoolCore, the sans-IO bookkeeping: credit, affinity, deadlines, failover (no sockets)."""

from __future__ import annotations

import collections

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargegw.codec import ResultCode
from chargegw.codec.errors import DiameterError
from chargegw.gateway.pool import NoWorker, PoolCore

APP = 4


def core(deadline: float = 4.0, hb: float = 3.0) -> PoolCore:
    return PoolCore(deadline=deadline, heartbeat_timeout=hb, vnodes=64)


def reg(
    c: PoolCore,
    name: str,
    credit: int,
    now: float = 0.0,
    apps: tuple[int, ...] = (APP,),
    gen: int = 1,
) -> None:
    c.register(name.encode(), worker_id=name, credit=credit, apps=apps, now=now, gen=gen)


def place(c: PoolCore, sid: str, now: float = 0.0, app: int = APP, peer: str = "p"):
    return c.place(
        peer=peer, hbh=1, app=app, cmd=272, session_id=sid, raw=b"x", now=now, wall_now=1000.0 + now
    )


def test_credit_is_never_exceeded_and_3004_when_full() -> None:
    c = core()
    reg(c, "a", 2)
    reg(c, "b", 3)
    placed = [place(c, f"s{i}") for i in range(5)]
    per_worker = collections.Counter(p.worker for p in placed)
    assert per_worker == {b"a": 2, b"b": 3}
    with pytest.raises(NoWorker) as exc:
        place(c, "one-more")
    assert exc.value.result_code == ResultCode.DIAMETER_TOO_BUSY
    assert c.counters.shed_busy == 1
    # An answer frees exactly one slot, on that worker.
    p = next(p for p in placed if p.worker == b"a")
    assert c.answer(b"a", p.id) is p
    q = place(c, "after")
    assert q.worker == b"a"


def test_no_worker_for_the_app_is_3002() -> None:
    c = core()
    with pytest.raises(NoWorker) as exc:
        place(c, "s")
    assert exc.value.result_code == ResultCode.DIAMETER_UNABLE_TO_DELIVER
    reg(c, "a", 5, apps=(3,))
    with pytest.raises(NoWorker) as exc:
        place(c, "s", app=APP)
    assert exc.value.result_code == ResultCode.DIAMETER_UNABLE_TO_DELIVER
    assert place(c, "s", app=3).worker == b"a"


def test_affinity_same_session_same_worker_and_stable_when_others_join() -> None:
    c = core()
    for n in "abcd":
        reg(c, n, 1000)
    sids = [f"client;{i}" for i in range(400)]
    first = {s: place(c, s).worker for s in sids}
    again = {s: place(c, s).worker for s in sids}
    assert first == again
    assert len(set(first.values())) == 4  # spread over all workers
    # Consistent hashing: a fifth worker takes over roughly a fifth, the rest stay put.
    reg(c, "e", 1000)
    moved = sum(1 for s in sids if place(c, s).worker != first[s])
    assert 0 < moved < len(sids) * 0.4
    assert all(place(c, s).worker in (first[s], b"e") for s in sids)


def test_affinity_falls_back_when_owner_is_full() -> None:
    c = core()
    reg(c, "a", 1)
    reg(c, "b", 1)
    sid = "sess"
    owner = c.owner(sid)
    p1 = place(c, sid)
    assert p1.worker == owner
    p2 = place(c, sid)  # owner has no credit left: placed elsewhere, not refused
    assert p2.worker != owner
    assert c.counters.affinity_misses == 1


def test_deadline_expiry_keeps_the_slot_until_the_worker_answers() -> None:
    c = core(deadline=1.0)
    reg(c, "a", 1)
    p = place(c, "s", now=0.0)
    assert c.expire(0.5) == []
    assert c.expire(1.0) == [p]
    assert p.id not in c.pending
    # The worker still holds it: no new request may go there yet.
    with pytest.raises(NoWorker):
        place(c, "t", now=1.1)
    # Its late answer is dropped (the gateway answered already) but frees the slot.
    assert c.answer(b"a", p.id) is None
    assert c.counters.late_answers == 1
    assert place(c, "t", now=1.2).worker == b"a"


def test_drop_resends_inflight_to_another_worker_within_deadline() -> None:
    c = core(deadline=4.0)
    reg(c, "a", 10)
    reg(c, "b", 10)
    ps = [place(c, f"s{i}", now=0.0) for i in range(10)]
    on_a = [p for p in ps if p.worker == b"a"]
    assert on_a
    moved, failed = c.drop(b"a", now=1.0)
    assert failed == []
    assert sorted(p.id for _, p in moved) == sorted(p.id for p in on_a)
    assert all(ident == b"b" and p.worker == b"b" and p.retransmit for ident, p in moved)
    # The old worker's answer no longer counts; the new one's does, exactly once.
    p = on_a[0]
    assert c.answer(b"a", p.id) is None
    assert c.answer(b"b", p.id) is p
    assert c.answer(b"b", p.id) is None


def test_drop_past_deadline_or_without_capacity_fails_with_3002() -> None:
    c = core(deadline=2.0)
    reg(c, "a", 5)
    reg(c, "b", 1)
    ps = [place(c, f"s{i}", now=0.0) for i in range(6)]
    on_a = {p.id for p in ps if p.worker == b"a"}
    assert len(on_a) == 5
    moved, failed = c.drop(b"a", now=1.0)  # b is full: nothing can move
    assert moved == []
    assert {p.id for p in failed} == on_a
    assert c.counters.failed_over_lost == 5
    # Past the deadline nothing moves even when there is room.
    c2 = core(deadline=2.0)
    reg(c2, "a", 1)
    reg(c2, "b", 5)
    p = c2.place(
        peer="p",
        hbh=1,
        app=APP,
        cmd=1,
        session_id=_sid_owned_by(c2, b"a"),
        raw=b"",
        now=0.0,
        wall_now=0.0,
    )
    assert p.worker == b"a"
    moved, failed = c2.drop(b"a", now=3.0)
    assert moved == [] and failed == [p]


def _sid_owned_by(c: PoolCore, ident: bytes) -> str:
    return next(s for s in (f"s{i}" for i in range(1000)) if c.owner(s) == ident)


def test_reregistration_with_new_gen_resends_to_it_same_gen_refreshes() -> None:
    c = core()
    reg(c, "a", 4, gen=1)
    reg(c, "b", 4, gen=1)
    p = c.place(
        peer="p",
        hbh=1,
        app=APP,
        cmd=1,
        session_id=_sid_owned_by(c, b"a"),
        raw=b"ccr octets",
        now=0.0,
        wall_now=0.0,
    )
    moved, failed = c.register(b"a", worker_id="a", credit=4, apps=[APP], now=1.0, gen=1)
    assert (moved, failed) == ([], [])
    assert p.id in c.workers[b"a"].inflight
    moved, failed = c.register(b"a", worker_id="a", credit=4, apps=[APP], now=1.0, gen=2)
    # Resent at once to the new registration (the session's ring owner), not via "b":
    # the same octets, marked as a retransmission, holding one slot of the new credit.
    assert moved == [(b"a", p)] and failed == []
    assert p.raw == b"ccr octets" and p.retransmit and p.placed == 2
    assert c.workers[b"a"].available == 3 and c.workers[b"a"].inflight == {p.id}
    assert c.workers[b"b"].available == 4
    assert c.counters.workers_dropped == 0 and c.counters.resent == 1
    assert c.answer(b"a", p.id) is p  # the new registration's answer is the one delivered
    assert c.workers[b"a"].available == 4


def test_the_only_worker_reregistering_gets_what_it_held_again_not_3002() -> None:
    """A worker alone in the pool re-registers (Reset, or it took the gateway for silent):
    what its old registration held goes to the new one at once; it was answered 3002 (there
    was nobody else to take it while the old registration was out)."""
    c = core()
    reg(c, "a", 4, gen=1)
    ps = [place(c, f"s{i}") for i in range(3)]
    moved, failed = c.register(b"a", worker_id="a", credit=4, apps=[APP], now=1.0, gen=2)
    assert failed == [] and [q.id for _, q in moved] == [q.id for q in ps]
    assert all(ident == b"a" for ident, _ in moved)
    assert set(c.pending) == {q.id for q in ps} and c.counters.failed_over_lost == 0
    assert c.workers[b"a"].available == 1


def test_reregistration_with_less_credit_resends_what_fits_and_answers_the_rest() -> None:
    c = core()
    reg(c, "a", 4, gen=1)
    ps = [place(c, f"s{i}") for i in range(3)]
    moved, failed = c.register(b"a", worker_id="a", credit=1, apps=[APP], now=1.0, gen=2)
    assert len(moved) == 1 and [q.id for q in failed] == [q.id for q in ps[1:]]
    assert c.workers[b"a"].available == 0 and not c.pending.keys() - {moved[0][1].id}


def test_a_reregistration_past_the_deadline_answers_what_it_held() -> None:
    c = core(deadline=1.0)
    reg(c, "a", 4, gen=1)
    p = place(c, "s")
    moved, failed = c.register(b"a", worker_id="a", credit=4, apps=[APP], now=2.0, gen=2)
    assert moved == [] and failed == [p] and not c.pending


def test_silent_workers_and_draining() -> None:
    c = core(hb=3.0)
    reg(c, "a", 2, now=0.0)
    reg(c, "b", 2, now=0.0)
    assert c.seen(b"a", 2.5)
    assert not c.seen(b"zzz", 2.5)
    assert c.silent(3.5) == [b"b"]
    c.set_draining(b"a")
    for i in range(2):
        assert place(c, f"s{i}").worker == b"b"


def test_expire_returns_in_deadline_order_and_stops_early() -> None:
    c = core(deadline=1.0)
    reg(c, "a", 100)
    ps = [place(c, f"s{i}", now=i * 0.1) for i in range(10)]
    out = c.expire(1.45)  # deadlines 1.0 .. 1.9
    assert [p.id for p in out] == [p.id for p in ps[:5]]
    assert c.next_deadline() == pytest.approx(1.5)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["place", "answer", "drop", "register", "expire", "credit", "withdraw"]
            ),
            st.integers(0, 3),
            st.integers(0, 50),
        ),
        max_size=120,
    )
)
def test_invariants_under_random_events(events: list[tuple[str, int, int]]) -> None:
    """Whatever happens, no worker holds more than it granted, every placed request is
    settled exactly once (answered, answered by the gateway, or still pending), and the
    fair share's counts (by peer, and by peer on each worker) are those of `pending`."""
    c = core(deadline=5.0)
    now = 0.0
    settled: collections.Counter[int] = collections.Counter()
    placed: set[int] = set()
    gens = collections.Counter()
    for kind, w, n in events:
        now += 0.25
        ident = f"w{w}".encode()
        if kind == "register":
            gens[ident] += 1
            moved, failed = c.register(
                ident,
                worker_id=ident.decode(),
                credit=n % 5 + 1,
                apps=[APP],
                now=now,
                gen=gens[ident],
            )
            settled.update(p.id for p in failed)
        elif kind == "place":
            try:
                placed.add(place(c, f"s{n}", now=now, peer=f"p{n % 3}").id)
            except NoWorker:
                pass
        elif kind == "answer":
            wk = c.workers.get(ident)
            if wk and wk.inflight:
                rid = sorted(wk.inflight)[n % len(wk.inflight)]
                p = c.answer(ident, rid)
                if p is not None:
                    settled[p.id] += 1
        elif kind == "drop":
            moved, failed = c.drop(ident, now)
            settled.update(p.id for p in failed)
        elif kind == "expire":
            settled.update(p.id for p in c.expire(now + n * 0.1))
        elif kind == "credit":
            c.add_credit(ident, n % 3)
        elif kind == "withdraw":
            wk = c.workers.get(ident)
            if wk and wk.inflight:
                p = c.withdraw(ident, sorted(wk.inflight)[n % len(wk.inflight)])
                if p is not None:
                    settled[p.id] += 1
        for wk in c.workers.values():
            assert 0 <= wk.available <= wk.credit
            assert wk.credit - wk.available == len(wk.inflight)
            mine = collections.Counter(p.peer for p in c.pending.values() if p.worker == wk.ident)
            assert wk.by_peer == dict(mine)
        everywhere = collections.Counter[str]()
        for wk in c.workers.values():
            everywhere.update(wk.by_peer)
        assert everywhere == collections.Counter(p.peer for p in c.pending.values())
        for rid, p in c.pending.items():
            assert rid in c.workers[p.worker].inflight
    assert all(v == 1 for v in settled.values())
    assert set(settled) | set(c.pending) == placed
    assert not set(settled) & set(c.pending)


def test_pool_errors_are_diameter_errors() -> None:
    """NoWorker and OutRequestFailed carry their Result-Code as the one error base does
    (issue 9, contract 2), so any error-answer builder can take them as they are."""
    from chargegw.gateway.pool_out import OutRequestFailed

    with pytest.raises(DiameterError) as exc:
        place(core(), "s")
    assert isinstance(exc.value, NoWorker)
    assert exc.value.result_code == ResultCode.DIAMETER_UNABLE_TO_DELIVER
    assert exc.value.reason == exc.value.error_message
    err = OutRequestFailed(ResultCode.DIAMETER_COMMAND_UNSUPPORTED, "not RAR")
    assert isinstance(err, DiameterError) and err.e_bit
    assert (err.result_code, err.reason) == (3001, "not RAR")


def test_a_restarted_worker_replaces_its_earlier_incarnation_at_once() -> None:
    """`chargegw run` names a slot's processes `<name>.<n>`: when `host-w0.2` registers under
    a new identity, `host-w0.1` is gone, and what it held is resent at once (here to its
    successor, the only worker left) instead of waiting for its heartbeat silence."""
    c = core()
    c.register(b"id-1", worker_id="host-w0.1", credit=4, apps=[APP], now=0.0, gen=1)
    c.register(b"other", worker_id="host-w1.1", credit=0, apps=[APP], now=0.0, gen=1)
    ps = [place(c, f"s{i}") for i in range(3)]
    assert {p.worker for p in ps} == {b"id-1"}
    moved, failed = c.register(b"id-2", worker_id="host-w0.2", credit=4, apps=[APP], now=1.0)
    assert failed == [] and sorted(q.id for _, q in moved) == sorted(p.id for p in ps)
    assert all(ident == b"id-2" for ident, _ in moved) and all(p.retransmit for p in ps)
    assert set(c.workers) == {b"id-2", b"other"}
    assert c.counters.workers_superseded == 1 and c.counters.workers_dropped == 0


@pytest.mark.parametrize(
    ("first", "second", "owners"),
    [
        ("w", "w", (b"", b"")),  # one id given to two workers: not a restart
        ("host-w0.2", "host-w0.1", (b"", b"")),  # an older incarnation comes late
        ("host-w0.1", "host-w0.2", (b"key-a", b"key-b")),  # another key's worker
        ("host-w0.1", "host-w1.2", (b"", b"")),  # another slot
        ("x.1", "x.\u00b2", (b"", b"")),  # a digit int() does not read
        ("x.1", "x." + "9" * 5000, (b"", b"")),  # beyond int()'s digit limit
    ],
    ids=["same-id", "older-late", "other-key", "other-slot", "superscript", "huge"],
)
def test_only_a_later_incarnation_from_the_same_key_replaces_a_worker(
    first: str, second: str, owners: tuple[bytes, bytes]
) -> None:
    c = core()
    c.register(b"id-1", worker_id=first, credit=4, apps=[APP], now=0.0, owner=owners[0])
    p = place(c, "s")
    moved, failed = c.register(
        b"id-2", worker_id=second, credit=4, apps=[APP], now=1.0, owner=owners[1]
    )
    assert (moved, failed) == ([], []) and set(c.workers) == {b"id-1", b"id-2"}
    assert c.pending[p.id].worker == b"id-1" and c.counters.workers_superseded == 0


def test_refused_3004_while_a_live_worker_serves_the_app_else_3002() -> None:
    """The 3004/3002 choice follows membership: full workers that serve the application mean
    busy (3004); only draining ones, or none left, mean nobody serves it (3002)."""
    c = core()
    reg(c, "a", 1)
    place(c, "s1")
    with pytest.raises(NoWorker) as exc:
        place(c, "s2")
    assert exc.value.result_code == ResultCode.DIAMETER_TOO_BUSY
    with pytest.raises(NoWorker) as exc:
        place(c, "s3", app=APP + 1)  # an application nobody serves
    assert exc.value.result_code == ResultCode.DIAMETER_UNABLE_TO_DELIVER
    c.set_draining(b"a")
    with pytest.raises(NoWorker) as exc:
        place(c, "s4")
    assert exc.value.result_code == ResultCode.DIAMETER_UNABLE_TO_DELIVER
    reg(c, "b", 0)  # serves it, no credit: busy again
    with pytest.raises(NoWorker) as exc:
        place(c, "s5")
    assert exc.value.result_code == ResultCode.DIAMETER_TOO_BUSY
    c.drop(b"b", 1.0)
    with pytest.raises(NoWorker) as exc:
        place(c, "s6")
    assert exc.value.result_code == ResultCode.DIAMETER_UNABLE_TO_DELIVER
