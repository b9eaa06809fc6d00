"""Pending table, hop-by-hop/end-to-end ids, duplicate cache and routing table."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargegw.peer.config import RouteConfig
from chargegw.peer.dupcache import IN_PROGRESS, DuplicateCache
from chargegw.peer.pending import EndToEndAllocator, HopByHopAllocator, PendingTable
from chargegw.peer.routing import RoutingError, RoutingTable

# -- hop-by-hop / end-to-end -------------------------------------------------------------------


def test_hbh_wraps_and_skips_outstanding() -> None:
    alloc = HopByHopAllocator(0xFFFFFFFE)
    in_use = {0xFFFFFFFF: object(), 0: object()}
    assert alloc.next(in_use) == 0xFFFFFFFE
    assert alloc.next(in_use) == 1


def test_e2e_high_bits_from_clock() -> None:
    alloc = EndToEndAllocator(now_s=0x12345)
    first = alloc.next()
    assert first >> 20 == 0x345
    assert alloc.next() == (first + 1) & 0xFFFFFFFF


# -- pending table -----------------------------------------------------------------------------


def test_pending_expiry_order_across_timeouts() -> None:
    t = PendingTable(hbh_start=100)
    a = t.add(t.new_hbh(), now=0.0, timeout=5.0, waiter="a")
    b = t.add(t.new_hbh(), now=1.0, timeout=1.0, waiter="b")
    c = t.add(t.new_hbh(), now=2.0, timeout=5.0, waiter="c")
    assert [a.hbh, b.hbh, c.hbh] == [100, 101, 102]
    assert t.next_deadline() == 2.0
    assert t.expire(1.99) == []
    assert [e.waiter for e in t.expire(2.0)] == ["b"]
    assert t.next_deadline() == 5.0
    assert t.pop(a.hbh) is a
    assert t.next_deadline() == 7.0
    assert [e.waiter for e in t.expire(100.0)] == ["c"]
    assert len(t) == 0 and t.next_deadline() is None


def test_pending_carried_deadline_out_of_order() -> None:
    t = PendingTable()
    t.add(1, now=10.0, timeout=5.0, waiter="new")  # deadline 15
    t.add(2, now=10.0, timeout=5.0, waiter="moved", deadline=12.0)  # failover keeps 12
    assert t.next_deadline() == 12.0
    assert [e.waiter for e in t.expire(13.0)] == ["moved"]
    assert [e.waiter for e in t.expire(15.0)] == ["new"]


def test_pending_duplicate_hbh_rejected_and_drain() -> None:
    t = PendingTable()
    t.add(7, 0.0, 1.0, "x")
    with pytest.raises(KeyError):
        t.add(7, 0.0, 1.0, "y")
    assert t.pop(8) is None
    assert [e.waiter for e in t.drain()] == ["x"]
    assert len(t) == 0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.5, 1.0, 5.0]), st.booleans(), st.floats(0, 0.3)),
        max_size=60,
    )
)
def test_pending_expire_matches_model(ops: list[tuple[float, bool, float]]) -> None:
    t = PendingTable(hbh_start=0)
    model: dict[int, float] = {}
    now = 0.0
    for timeout, answer_one, step in ops:
        now += step
        e = t.add(t.new_hbh(), now, timeout, None)
        model[e.hbh] = e.deadline
        if answer_one and model:
            victim = sorted(model)[len(model) // 2]
            assert t.pop(victim) is not None
            del model[victim]
        expired = t.expire(now)
        want = {h for h, d in model.items() if d <= now}
        assert {e.hbh for e in expired} == want
        for h in want:
            del model[h]
        assert t.next_deadline() == (min(model.values()) if model else None)


# -- duplicate cache ---------------------------------------------------------------------------


def test_dupcache_ttl_and_bound() -> None:
    c = DuplicateCache(max_size=2, ttl=10.0)
    c.begin(("h", 1), 0.0)
    assert c.get(("h", 1), 1.0) is IN_PROGRESS
    c.put(("h", 1), b"answer1", 1.0)
    c.put(("h", 2), b"answer2", 2.0)
    assert c.get(("h", 1), 5.0) == b"answer1"
    c.put(("h", 3), b"answer3", 3.0)  # over the bound: oldest goes
    assert c.get(("h", 1), 5.0) is None
    assert c.get(("h", 2), 5.0) == b"answer2"
    assert c.get(("h", 2), 12.0) is None  # expired
    assert len(c) == 1
    assert c.evict(100.0) == 1


def test_dupcache_in_progress_expires_early() -> None:
    c = DuplicateCache(max_size=10, ttl=240.0, in_progress_ttl=5.0)
    c.begin(("h", 1), 0.0)
    assert c.get(("h", 1), 4.9) is IN_PROGRESS
    assert c.get(("h", 1), 5.1) is None  # never answered: a retransmission is served anew
    c.begin(("h", 2), 0.0)
    c.put(("h", 2), b"a", 1.0)
    assert c.get(("h", 2), 200.0) == b"a"


def test_dupcache_keys_of_a_peers_requests_share_its_host() -> None:
    """A peer's own requests are keyed by one shared Origin-Host object, not a copy each
    (~70 bytes an entry, at the default 100,000 entries)."""
    from chargegw.peer.config import NodeConfig, PeerConfig
    from chargegw.peer.testing import MemoryNode, PeerPair, make_cca, make_ccr

    server = MemoryNode(
        NodeConfig(origin_host="server.example", origin_realm="example", auth_apps=[4]),
        address=("127.0.0.9", 3868),
    )
    server.add_handler(4, lambda req, peer: make_cca(req, "server.example", "example"), 272)
    client = MemoryNode(
        NodeConfig(origin_host="Client.Example", origin_realm="example", auth_apps=[4],
                   peers=[PeerConfig("server.example", port=3868, realm="example")])
    )  # fmt: skip
    pair = PeerPair(client, server).connect()
    m = pair.lb.machine
    assert m is not None
    for i in range(3):
        req = make_ccr("Client.Example", "example", "example", session_id=f"c;{i}")
        req.hop_by_hop = req.end_to_end = 100 + i
        server.handle(m, m.receive_data(pair.lb, req.encode(), pair.now), pair.now)
    keys = list(server.ctx.dup._data)
    assert len(keys) == 3 and all(k[0] is pair.b_peer.key_octets for k in keys)


def test_dupcache_disabled_when_zero() -> None:
    assert not DuplicateCache(max_size=0).enabled


# -- routing -----------------------------------------------------------------------------------


@dataclass
class FakePeer:
    name: str
    realm: str | None = None
    outstanding: int = 0
    usable: bool = True
    apps: set[int] = field(default_factory=lambda: {4})

    def supports(self, app_id: int) -> bool:
        return app_id in self.apps or 0xFFFFFFFF in self.apps


def table(*peers: FakePeer) -> dict[str, FakePeer]:
    return {p.name: p for p in peers}


def test_destination_host_first() -> None:
    peers = table(FakePeer("ocs1", "op.net", 5), FakePeer("ocs2", "op.net", 0))
    rt = RoutingTable([RouteConfig("op.net", ["ocs1", "ocs2"])])
    assert rt.select(peers, 4, dest_host="OCS1", dest_realm="op.net").name == "ocs1"
    # Destination-Host down: falls back to the realm.
    peers["ocs1"].usable = False
    assert rt.select(peers, 4, dest_host="ocs1", dest_realm="op.net").name == "ocs2"


def test_realm_plus_app_and_least_outstanding() -> None:
    peers = table(
        FakePeer("a", outstanding=3),
        FakePeer("b", outstanding=1),
        FakePeer("sy", apps={16777302}),
    )
    rt = RoutingTable(
        [
            RouteConfig("op.net", ["a", "b"], app_id=4),
            RouteConfig("op.net", ["sy"], app_id=16777302),
        ]
    )
    assert rt.select(peers, 4, dest_realm="OP.NET").name == "b"
    assert rt.select(peers, 16777302, dest_realm="op.net").name == "sy"
    peers["b"].outstanding = 9
    assert rt.select(peers, 4, dest_realm="op.net").name == "a"


def test_suffix_routes_longest_match() -> None:
    peers = table(FakePeer("x"), FakePeer("y"))
    rt = RoutingTable([RouteConfig("*.net", ["x"]), RouteConfig(".op.net", ["y"])])
    assert rt.select(peers, 4, dest_realm="east.op.net").name == "y"
    assert rt.select(peers, 4, dest_realm="other.net").name == "x"


def test_default_route_and_errors() -> None:
    peers = table(FakePeer("d"), FakePeer("r", realm="known.net", usable=False))
    rt = RoutingTable([], default_route=["d"])
    assert rt.select(peers, 4, dest_realm="anything").name == "d"
    rt2 = RoutingTable([])
    with pytest.raises(RoutingError) as e1:
        rt2.select(peers, 4, dest_realm="nowhere.net")
    assert e1.value.result_code == 3003
    with pytest.raises(RoutingError) as e2:
        rt2.select(peers, 4, dest_realm="known.net")  # known, but its peer is down
    assert e2.value.result_code == 3002
    with pytest.raises(RoutingError) as e3:
        rt2.select(peers, 99, dest_realm="anything", exclude=["d"])
    assert e3.value.result_code == 3003


def test_app_not_supported_by_peer_is_skipped_and_relay_supports_all() -> None:
    peers = table(FakePeer("ccr", apps={4}), FakePeer("relay", apps={0xFFFFFFFF}))
    rt = RoutingTable([RouteConfig("op.net", ["ccr", "relay"])])
    assert rt.select(peers, 3, dest_realm="op.net").name == "relay"
    with pytest.raises(RoutingError) as err:
        rt.select(peers, 3, dest_realm="op.net", exclude=["relay"])
    assert err.value.result_code == 3002


def test_exclude_for_failover() -> None:
    peers = table(FakePeer("a"), FakePeer("b", outstanding=50))
    rt = RoutingTable([RouteConfig("op.net", ["a", "b"])])
    assert rt.select(peers, 4, dest_realm="op.net", exclude=["a"]).name == "b"
    with pytest.raises(RoutingError):
        rt.select(peers, 4, dest_realm="op.net", exclude=["a", "b"])
