"""The front end forgets a session's shard route when the session's last request is answered
(Peek.ends_session: CCR-T/E, ACR STOP/EVENT, STR), keeps it for a CCR-U, ages out the routes
of sessions that never end, and a resent last request still reaches the session's shard."""

from __future__ import annotations

from typing import Any

import pytest

from chargegw.codec import get_dictionary, peek
from chargegw.codec.commands import (
    AccountingRequest,
    CreditControlRequest,
    SessionTerminationRequest,
)
from chargegw.gateway.pool import ROUTE_ENDS, ROUTE_FRESH, PoolCore
from chargegw.sharding import shard_of

N = 32
APP = 4  # Gy: a sharded application here
SUB = b"46800001"


def enum(avp: str, name: str) -> int:
    defn = get_dictionary().find_avp(avp)
    assert defn is not None and defn.enum
    return defn.enum[name]


def ccr(rtype: str, sid: str = "gw;1;a", sub: bytes | None = None) -> bytes:
    extra: dict[str, Any] = {}
    if sub is not None:
        extra["subscription_id"] = [{"subscription_id_type": 0, "subscription_id_data": sub}]
    req = CreditControlRequest(
        session_id=sid, origin_host="c.example", origin_realm="example",
        destination_realm="example", auth_application_id=APP,
        service_context_id="32251@3gpp.org", cc_request_type=enum("CC-Request-Type", rtype),
        cc_request_number=1, **extra,
    )  # fmt: skip
    req.hop_by_hop = req.end_to_end = 1
    return req.encode()


def acr(rtype: str) -> bytes:
    req = AccountingRequest(
        session_id="gw;1;r", origin_host="c.example", origin_realm="example",
        destination_realm="example", accounting_record_type=enum("Accounting-Record-Type", rtype),
        accounting_record_number=1,
    )  # fmt: skip
    req.hop_by_hop = req.end_to_end = 1
    return req.encode()


@pytest.mark.parametrize(
    ("raw", "ends"),
    [
        (ccr("INITIAL_REQUEST"), False),
        (ccr("UPDATE_REQUEST"), False),
        (ccr("TERMINATION_REQUEST"), True),
        (ccr("EVENT_REQUEST"), True),
        (acr("START_RECORD"), False),
        (acr("INTERIM_RECORD"), False),
        (acr("STOP_RECORD"), True),
        (acr("EVENT_RECORD"), True),
    ],
)
def test_peek_tells_the_last_request_of_a_session(raw: bytes, ends: bool) -> None:
    assert peek(raw).ends_session is ends


def test_peek_a_session_termination_request_ends_its_session() -> None:
    req = SessionTerminationRequest(
        session_id="gw;1;s", origin_host="c.example", origin_realm="example",
        destination_realm="example", auth_application_id=16777302, termination_cause=1,
    )  # fmt: skip
    req.hop_by_hop = req.end_to_end = 1
    assert peek(req.encode()).ends_session
    answer = bytearray(req.encode())
    answer[4] &= ~0x80  # an STA is not a request
    assert not peek(bytes(answer)).ends_session


def core_with(*workers: str) -> PoolCore:
    core = PoolCore(deadline=5.0, heartbeat_timeout=1.0)
    for wid in workers:
        core.register(
            wid.encode(), worker_id=wid, credit=8, apps=[APP], now=0.0, shards=N,
            shard_apps=[APP],
        )  # fmt: skip
    return core


def send(core: PoolCore, raw: bytes) -> Any:
    """As the front end does (gateway/frontend.py `_handle`), then the worker answers."""
    p = peek(raw)
    sid = p.session_id or b""
    fresh = sid not in core.session_routes
    shard = core.route_shard(p.app_id, sid, p.subscription_data)
    route = (ROUTE_FRESH if fresh else 0) | (ROUTE_ENDS if p.ends_session else 0)
    pend = core.place(
        peer="c", hbh=p.hop_by_hop, app=p.app_id, cmd=p.code, session_id=sid, raw=raw,
        now=0.0, wall_now=0.0, shard=shard, route=route,
    )  # fmt: skip
    return pend


def test_route_kept_after_ccr_u_and_gone_after_ccr_t_is_answered() -> None:
    core = core_with("w1", "w2")
    sid = b"gw;1;a"
    p = send(core, ccr("INITIAL_REQUEST", sub=SUB))
    assert core.answer(p.worker, p.id) is p
    p = send(core, ccr("UPDATE_REQUEST"))
    assert p.shard == shard_of(SUB, N)  # by the route: the CCR-U has no Subscription-Id
    core.answer(p.worker, p.id)
    assert core.session_routes.get(sid) == shard_of(SUB, N)
    p = send(core, ccr("TERMINATION_REQUEST"))
    assert p.shard == shard_of(SUB, N)
    assert sid in core.session_routes  # still there while the CCR-T is in flight
    core.answer(p.worker, p.id)
    assert sid not in core.session_routes and sid not in core.old_routes
    assert core.status(0.0)["session_routes"] == 0


def test_a_ccr_t_or_a_first_ccr_answered_by_the_gateway_takes_its_route_along() -> None:
    """Expired (3002 by the gateway): the client gives the session up or resends; either
    way the route is not kept for it (a resend finds the shard again, see below)."""
    core = core_with("w1")
    i = send(core, ccr("INITIAL_REQUEST", sid="gw;1;i", sub=SUB))  # a first request
    p = send(core, ccr("INITIAL_REQUEST", sid="gw;1;a", sub=SUB))
    core.answer(p.worker, p.id)
    u = send(core, ccr("UPDATE_REQUEST", sid="gw;1;a"))
    t = send(core, ccr("TERMINATION_REQUEST", sid="gw;1;a"))
    assert i.route == ROUTE_FRESH and u.route == 0 and t.route == ROUTE_ENDS
    assert {x.id for x in core.expire(100.0)} == {i.id, u.id, t.id}
    assert not core.session_routes and not core.old_routes
    # Without an ending request among them, an expired CCR-U keeps its session's route.
    p = send(core, ccr("INITIAL_REQUEST", sid="gw;1;b", sub=SUB))
    core.answer(p.worker, p.id)
    send(core, ccr("UPDATE_REQUEST", sid="gw;1;b"))
    core.expire(200.0)
    assert core.session_routes.get(b"gw;1;b") == shard_of(SUB, N)


def test_a_first_request_lost_with_its_worker_takes_its_route_along() -> None:
    core = core_with("w1")
    p = send(core, ccr("INITIAL_REQUEST", sub=SUB))
    moved, failed = core.drop(p.worker, 0.0)
    assert not moved and failed == [p]
    assert not core.session_routes


def test_resent_ccr_t_after_the_route_was_dropped_goes_to_the_sessions_shard() -> None:
    core = core_with("w1", "w2")
    sid = b"gw;1;a"
    first = send(core, ccr("INITIAL_REQUEST", sub=SUB))
    core.answer(first.worker, first.id)
    t = send(core, ccr("TERMINATION_REQUEST", sub=SUB))
    core.answer(t.worker, t.id)
    assert sid not in core.session_routes
    # A resend carrying the Subscription-Id: the same shard as the session's account.
    again = send(core, ccr("TERMINATION_REQUEST", sub=SUB))
    assert again.shard == t.shard == shard_of(SUB, N) and again.worker == t.worker
    core.answer(again.worker, again.id)
    # One without it is routed by its Session-Id; when that is another shard, the worker
    # there finds the session elsewhere and answers Moved (nothing applied): the request
    # is placed again on the session's shard, where the original answer is replayed.
    bare = send(core, ccr("TERMINATION_REQUEST"))
    assert bare.shard == shard_of(sid, N)
    if bare.shard != t.shard:
        to, moved = core.moved(bare.worker, bare.id, t.shard)
        assert moved is bare and to == core.shard_owner(t.shard) and bare.shard == t.shard
    core.answer(bare.worker, bare.id)
    assert sid not in core.session_routes  # the moved route is dropped with its answer


def test_a_route_learnt_by_moved_is_dropped_when_the_session_ends() -> None:
    core = core_with("w1", "w2")
    sid = b"gw;1;a"
    p = send(core, ccr("INITIAL_REQUEST", sub=b"alias"))
    target = next(s for s in range(N) if core.shard_owner(s) != p.worker)
    core.moved(p.worker, p.id, target)
    core.answer(p.worker, p.id)
    assert core.session_routes[sid] == target
    t = send(core, ccr("TERMINATION_REQUEST"))
    assert t.shard == target
    core.answer(t.worker, t.id)
    assert sid not in core.session_routes


def test_routes_of_sessions_that_never_end_age_out_after_two_ttls() -> None:
    core = core_with("w1")
    core.route_ttl = 10.0
    core.age_routes(0.0)
    core.route_shard(APP, b"idle", SUB)
    core.route_shard(APP, b"busy", b"other")
    core.age_routes(10.0)  # one swap: both are in the old generation, still found
    assert core.status(0.0)["session_routes"] == 2
    assert core.route_shard(APP, b"busy", None) == shard_of(b"other", N)  # used: kept
    core.age_routes(20.0)
    assert b"idle" not in core.session_routes and b"idle" not in core.old_routes
    assert core.route_shard(APP, b"busy", None) == shard_of(b"other", N)
    assert core.route_shard(APP, b"idle", None) == shard_of(b"idle", N)  # the fallback


def test_the_count_bound_covers_both_generations() -> None:
    core = core_with("w1")
    core.max_session_routes = 100
    core.route_ttl = 1.0
    core.age_routes(0.0)
    for i in range(80):
        core.route_shard(APP, f"a{i}".encode(), b"x")
    core.age_routes(1.0)
    for i in range(80):
        core.route_shard(APP, f"b{i}".encode(), b"x")
    assert len(core.session_routes) + len(core.old_routes) == 100
    assert b"b79" in core.session_routes and b"a0" not in core.old_routes  # oldest first
