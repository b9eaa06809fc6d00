"""The front end's part in bounding the session-route table: a session whose first request
is shed (3004) or refused by its worker never started, so its route is not kept; one whose
first request succeeded keeps it; a shed CCR-T takes it along (the soak found 100,000
routes left behind by shed sessions)."""

from __future__ import annotations

from typing import Any

from chargegw.codec import Message
from chargegw.gateway import shedbench
from chargegw.gateway.pool import ROUTE_FRESH
from chargegw.peer.testing import make_ccr

N = 16


def gateway(free: int) -> tuple[Any, Any]:
    pair, gw = shedbench._front(oc=False, shards=N)
    gw.core.workers[b"w"].available = free
    gw.core.workers[b"w"].credit = max(free, 1)
    gw.pool._queue = lambda ident, msg: None  # no event loop here
    return pair, gw


def send(pair: Any, rtype: int, sid: str = "client;1;7", e2e: int = 5) -> bytes:
    realm = shedbench._config().identity.origin_realm
    m = make_ccr("client.localdomain", "localdomain", realm, session_id=sid, request_type=rtype)
    if rtype == 1:
        m.set("Subscription-Id", [{"subscription_id_type": 0, "subscription_id_data": "4670001"}])
    m.hop_by_hop, m.end_to_end = 1, e2e
    lb = pair.lb
    pair.b.handle(lb.machine, lb.machine.receive_data(lb, m.encode(), pair.now), pair.now)
    return b"".join(lb.data_to_send())


def test_a_shed_first_request_leaves_no_route() -> None:
    pair, gw = gateway(free=0)
    ans = send(pair, 1)
    assert Message.decode(ans).get("Result-Code") == 3004
    assert not gw.core.session_routes


def test_a_shed_ccr_t_takes_the_sessions_route_along() -> None:
    pair, gw = gateway(free=1)
    send(pair, 1)  # placed (the worker holds it)
    (p,) = gw.core.pending.values()
    assert p.route == ROUTE_FRESH and len(gw.core.session_routes) == 1
    ans = send(pair, 3, e2e=6)  # the worker is full now
    assert Message.decode(ans).get("Result-Code") == 3004
    assert not gw.core.session_routes


def _answer(gw: Any, code: int) -> None:
    (p,) = gw.core.pending.values()
    req = Message.decode(p.raw)
    raw = req.answer(code, origin_host="w", origin_realm="r").encode()
    assert gw.core.answer(p.worker, p.id) is p
    gw._answered(p, raw)  # what PoolServer.on_answer calls


def test_a_first_request_refused_by_its_worker_leaves_no_route() -> None:
    pair, gw = gateway(free=1)
    send(pair, 1)
    _answer(gw, 5030)  # DIAMETER_USER_UNKNOWN: the client ends the session here
    assert not gw.core.session_routes


def test_a_first_request_answered_2001_keeps_its_route() -> None:
    pair, gw = gateway(free=1)
    send(pair, 1)
    _answer(gw, 2001)
    assert len(gw.core.session_routes) == 1
    send(pair, 2, e2e=6)  # a CCR-U: routed by it, not fresh
    (p,) = gw.core.pending.values()
    assert p.route == 0 and p.shard == next(iter(gw.core.session_routes.values()))


def test_an_event_is_routed_by_its_subscription_without_learning_a_route() -> None:
    """A CCR-E is its session's first and last request: routed by its Subscription-Id, it
    is not remembered while placed (the route would be dropped at its answer) nor, shed,
    remembered and forgotten again: under overload most events are shed."""
    pair, gw = gateway(free=1)
    realm = shedbench._config().identity.origin_realm
    m = make_ccr("client.localdomain", "localdomain", realm, session_id="c;e;1", request_type=4)
    m.set("Subscription-Id", [{"subscription_id_type": 0, "subscription_id_data": "4670001"}])
    m.hop_by_hop, m.end_to_end = 1, 9
    lb = pair.lb
    pair.b.handle(lb.machine, lb.machine.receive_data(lb, m.encode(), pair.now), pair.now)
    (p,) = gw.core.pending.values()
    assert p.shard == gw.core.route_shard(4, b"other", b"4670001", remember=False)
    assert not gw.core.session_routes  # nothing learnt while it is placed
    m.end_to_end = 10  # another event, the worker now full: shed
    pair.b.handle(lb.machine, lb.machine.receive_data(lb, m.encode(), pair.now), pair.now)
    assert Message.decode(lb.data_to_send()[-1]).get("Result-Code") == 3004
    _answer(gw, 2001)
    assert not gw.core.session_routes and not gw.core.old_routes
