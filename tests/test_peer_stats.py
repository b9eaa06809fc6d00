"""Per-peer and per-command statistics: counts, answers by Result-Code class, timeouts,
rates over the last interval and latency percentiles (in memory, the asyncio Node, and the
BlockingNode); `node.stats` stays the node-wide counter dict."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from chargegw.codec import Message
from chargegw.codec.constants import CMD_CCR
from chargegw.peer import BlockingNode, ListenConfig, Node, NodeConfig, PeerConfig, ProtocolError
from chargegw.peer.errors import RequestTimeout
from chargegw.peer.stats import BOUNDS_S, MAX_COMMANDS, CommandStats, Latency, report
from chargegw.peer.testing import MemoryNode, PeerPair, make_ccr, result_code

REALM = "test.example"
SERVER = "server.test.example"
CLIENT = "client.test.example"
KEY = f"4:{CMD_CCR}"

pytestmark = pytest.mark.timeout(60)


def handler(req: Message, peer: Any) -> Message:
    if req.cc_request_number % 4 == 3:
        raise ProtocolError(5012, "refused")
    return req.answer(2001)


def memory_pair() -> PeerPair:
    client = MemoryNode(
        NodeConfig(
            origin_host=CLIENT,
            origin_realm=REALM,
            auth_apps=[4],
            peers=[PeerConfig(SERVER, port=3868, realm=REALM)],
        )
    )
    server = MemoryNode(
        NodeConfig(origin_host=SERVER, origin_realm=REALM, auth_apps=[4]),
        address=("127.0.0.9", 3868),
    )
    server.add_handler(4, handler, CMD_CCR)
    return PeerPair(client, server).connect()


def node_report(node: MemoryNode) -> dict[str, Any]:
    peers = [(m.name, m.counters) for m in node.peers.values()]
    return report(node.ctx.stats, peers, node.ctx.commands, 5.0)


def test_counts_classes_latency_and_rates_in_memory() -> None:
    pair = memory_pair()
    for i in range(8):  # 6 answered 2001, 2 refused 5012; each answer takes 40 ms
        pair.a.request(make_ccr(CLIENT, REALM, REALM, number=i), pair.now, peer=SERVER)
        pair.now += 0.040
        pair.pump()
    pair.partition = True  # two requests that never get an answer
    for i in range(2):
        pair.a.request(make_ccr(CLIENT, REALM, REALM, number=10 + i), pair.now, peer=SERVER)
    pair.advance(6.0)  # past the 5 s request timeout
    assert sum(isinstance(v, RequestTimeout) for v in pair.a.answers.values()) == 2

    c = node_report(pair.a)
    peer = c["peers"][SERVER]
    assert peer["requests_out"] == 10 and peer["requests_in"] == 0
    assert peer["answers_in"]["2xxx"] == 6 and peer["answers_in"]["5xxx"] == 2
    assert peer["timeouts"] == 2
    lat = peer["latency_ms"]["all"]
    assert lat["count"] == 8
    assert 40.0 <= lat["p50"] <= 40.0 * 2**0.25 and lat["p99"] == lat["p50"]
    assert peer["rate_per_s"] is None  # no interval closed yet
    assert c["commands"][KEY]["requests_out"] == 10
    assert c["commands"][KEY]["answers_in"]["5xxx"] == 2
    assert c["commands"][KEY]["timeouts"] == 2

    s = node_report(pair.b)["peers"][CLIENT]
    assert s["requests_in"] == 8 and s["answers_out"]["2xxx"] == 6
    assert s["answers_out"]["5xxx"] == 2
    assert node_report(pair.b)["commands"][KEY]["answers_out"]["2xxx"] == 6

    # closing an interval of 2 s gives rates, and the last interval's percentiles
    pair.a.peers[SERVER.lower()].counters.roll(2.0)
    rolled = pair.a.peers[SERVER.lower()].counters.to_dict()
    assert rolled["rate_per_s"]["requests_out"] == 5.0
    assert rolled["rate_per_s"]["answers_in"] == 4.0
    assert rolled["latency_ms"]["last_interval"]["count"] == 8
    pair.a.peers[SERVER.lower()].counters.roll(2.0)  # a quiet interval
    quiet = pair.a.peers[SERVER.lower()].counters.to_dict()
    assert quiet["rate_per_s"]["requests_out"] == 0.0
    assert quiet["latency_ms"]["last_interval"]["p50"] is None
    assert quiet["latency_ms"]["all"]["count"] == 8


def test_latency_percentiles_from_the_buckets() -> None:
    lat = Latency()
    for ms in range(1, 101):  # 1..100 ms
        lat.add(ms / 1000.0)
    got = lat.to_dict()["all"]
    step = 2**0.25
    for name, want in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0)):
        assert want <= got[name] <= want * step, (name, got[name])
    for _ in range(100):
        lat.add(10_000.0)  # beyond the last bound: reported as that bound, JSON-safe
    top = lat.to_dict()["all"]
    assert top["count"] == 200 and top["p99"] == round(BOUNDS_S[-1] * 1000.0, 4)
    json.dumps(top, allow_nan=False)
    assert BOUNDS_S[0] == 1e-5 and BOUNDS_S[-1] > 120.0


def test_command_rows_are_bounded() -> None:
    cs = CommandStats()
    for code in range(MAX_COMMANDS + 50):
        cs.get(4, code).requests_in += 1
    assert len(cs.rows) == MAX_COMMANDS
    assert cs.other.requests_in == 50


def server_config(**kw: Any) -> NodeConfig:
    return NodeConfig(
        origin_host=SERVER, origin_realm=REALM, auth_apps=[4], listen=[ListenConfig(port=0)], **kw
    )


def client_config(port: int) -> NodeConfig:
    return NodeConfig(
        origin_host=CLIENT,
        origin_realm=REALM,
        auth_apps=[4],
        peers=[PeerConfig(SERVER, port=port, realm=REALM)],
    )


def test_node_stats_over_a_socket() -> None:
    async def main() -> None:
        server = Node(server_config())
        server.add_handler(4, handler, CMD_CCR)
        await server.start()
        client = Node(client_config(server.listen_addresses[0][2]))
        await client.start()
        try:
            await client.wait_open(SERVER, timeout=10)
            loop = asyncio.get_running_loop()
            client.roll_stats(loop.time())
            for i in range(8):
                try:
                    ans = await client.request(
                        make_ccr(CLIENT, REALM, REALM, end_to_end=0, number=i)
                    )
                    assert result_code(ans) == 2001
                except Exception:
                    assert i % 4 == 3
            client.roll_stats(loop.time() + 0.001)
            st = client.stats()
            json.dumps(st, allow_nan=False)  # a plain dict, ready for a status document
            assert client.stats["duplicates"] == 0  # still the counter dict
            assert st["node"] == dict(client.stats)
            p = st["peers"][SERVER]
            assert p["requests_out"] == 8 and p["answers_in"]["2xxx"] == 6
            assert p["answers_in"]["5xxx"] == 2
            assert p["rate_per_s"]["requests_out"] > 0
            last = p["latency_ms"]["last_interval"]
            assert last["count"] == 8 and 0 < last["p50"] <= last["p90"] <= last["p99"]
            srv = server.stats()["peers"][CLIENT]
            assert srv["requests_in"] == 8 and srv["answers_out"]["5xxx"] == 2
            assert server.stats()["commands"][KEY]["answers_out"]["2xxx"] == 6
        finally:
            await client.stop(timeout=2)
            await server.stop(timeout=2)

    asyncio.run(asyncio.wait_for(main(), 45))


def test_blocking_node_stats() -> None:
    with BlockingNode(server_config()) as server:
        server.add_handler(4, handler, CMD_CCR)
        port = server.listen_addresses[0][2]
        with BlockingNode(client_config(port)) as client:
            client.wait_open(SERVER, timeout=10)
            ans = client.send_request(make_ccr(CLIENT, REALM, REALM, end_to_end=0), timeout=5)
            assert result_code(ans) == 2001
            st = client.stats()
            assert st["peers"][SERVER]["requests_out"] == 1
            assert st["peers"][SERVER]["latency_ms"]["all"]["count"] == 1
            assert st["commands"][KEY]["answers_in"]["2xxx"] == 1
