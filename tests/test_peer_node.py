"""The asyncio Node on loopback: requests, handlers, error answers, duplicates, failover, DPR."""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from chargegw.codec import Message
from chargegw.codec.constants import CMD_CCR, CMD_DPR, CMD_DWR
from chargegw.peer import (
    AllowRule,
    ListenConfig,
    Node,
    NodeConfig,
    PeerConfig,
    ProtocolError,
    RequestError,
    RequestTimeout,
    RouteConfig,
)
from chargegw.peer.loop import run as run_uvloop
from chargegw.peer.loop import uvloop_available
from chargegw.peer.testing import RawPeer, make_ccr, make_dpr, make_dwr, result_code, set_hbh

REALM = "test.example"
SERVER = "server.test.example"
CLIENT = "client.test.example"

pytestmark = pytest.mark.timeout(60)


def run(coro: Awaitable[Any], timeout: float = 45.0) -> Any:
    async def guarded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(guarded())


def server_config(name: str = SERVER, **kw: Any) -> NodeConfig:
    kw.setdefault("auth_apps", [4])
    return NodeConfig(origin_host=name, origin_realm=REALM, listen=[ListenConfig(port=0)], **kw)


def client_config(*servers: tuple[str, int], **kw: Any) -> NodeConfig:
    kw.setdefault("auth_apps", [4])
    kw.setdefault("reconnect_min", 0.1)
    kw.setdefault("reconnect_max", 0.5)
    return NodeConfig(
        origin_host=kw.pop("origin_host", CLIENT),
        origin_realm=REALM,
        peers=[PeerConfig(name, port=port, realm=REALM) for name, port in servers],
        **kw,
    )


def cca(req: Message, host: str = SERVER, rc: int = 2001) -> Message:
    return req.answer(
        rc,
        origin_host=host,
        origin_realm=REALM,
        auth_application_id=4,
        cc_request_type=req.cc_request_type,
        cc_request_number=req.cc_request_number,
    )


def port_of(node: Node) -> int:
    return node.listen_addresses[0][2]


async def pair(
    handler: Callable[..., Any] | None = None,
    *,
    server_kw: dict[str, Any] | None = None,
    client_kw: dict[str, Any] | None = None,
) -> tuple[Node, Node]:
    server = Node(server_config(**(server_kw or {})))
    server.add_handler(4, handler or (lambda m, p: cca(m)), CMD_CCR)
    await server.start()
    client = Node(client_config((SERVER, port_of(server)), **(client_kw or {})))
    await client.start()
    await client.wait_open(SERVER, timeout=10)
    return server, client


async def stop_all(*nodes: Node) -> None:
    for node in nodes:
        await node.stop(timeout=2)


def ccr(**kw: Any) -> Message:
    return make_ccr(CLIENT, REALM, REALM, end_to_end=0, **kw)


# -- requests and handlers ---------------------------------------------------------------------


def test_many_requests_in_flight_on_one_connection() -> None:
    async def main() -> None:
        server, client = await pair()
        try:
            reqs = [ccr(session_id=f"{CLIENT};s{i}", number=i) for i in range(400)]
            answers = await asyncio.gather(*(client.request(r) for r in reqs))
            for r, a in zip(reqs, answers, strict=True):
                assert result_code(a) == 2001
                assert a.session_id == r.session_id
                assert a.cc_request_number == r.cc_request_number
                assert a.hop_by_hop == r.hop_by_hop and a.end_to_end == r.end_to_end
            assert len({r.hop_by_hop for r in reqs}) == 400
            info = client.peers[SERVER]
            assert info.state == "I-Open" and info.outstanding == 0 and info.apps == frozenset({4})
            assert server.peers[CLIENT].state == "R-Open"
        finally:
            await stop_all(client, server)

    run(main())


def test_async_handler_and_deferred_send_answer() -> None:
    async def main() -> None:
        server: Node

        async def slow(req: Message, peer: Any) -> Message:
            await asyncio.sleep(0.01)
            return cca(req)

        def deferred(req: Message, peer: Any) -> None:
            asyncio.get_running_loop().call_later(0.02, server.send_answer, peer.name, cca(req))

        server, client = await pair(slow)
        try:
            a = await client.request(ccr())
            assert result_code(a) == 2001
            server.add_handler(4, deferred, CMD_CCR)
            b = await client.request(ccr(number=1))
            assert result_code(b) == 2001 and b.cc_request_number == 1
        finally:
            await stop_all(client, server)

    run(main())


def test_handler_errors_become_answers_and_connection_lives() -> None:
    async def main() -> None:
        def handler(req: Message, peer: Any) -> Message:
            n = req.cc_request_number
            if n == 1:
                raise RuntimeError("bug in the application")
            if n == 2:
                raise ProtocolError(5030, "who?")
            return cca(req)

        server, client = await pair(handler)
        try:
            a = await client.request(ccr(number=1))
            assert result_code(a) == 5012 and not a.is_error
            assert a.cc_request_type == 1 and a.auth_application_id == 4  # CCA grammar kept
            b = await client.request(ccr(number=2))
            assert result_code(b) == 5030 and b.error_message == "who?"
            c = await client.request(ccr(number=3))
            assert result_code(c) == 2001
            assert server.stats["handler_errors"] == 1
        finally:
            await stop_all(client, server)

    run(main())


def test_protocol_errors_from_the_node() -> None:
    async def main() -> None:
        server = Node(server_config(vendor_specific_apps=[(10415, 16777302)]))
        server.add_handler(4, lambda m, p: cca(m), CMD_CCR)
        server.add_handler(16777302, lambda m, p: None, 8388635)
        await server.start()
        raw = await RawPeer.connect("127.0.0.1", port_of(server))
        try:
            cea = await raw.handshake(CLIENT, REALM)
            assert result_code(cea) == 2001

            async def ask(msg: Message | bytes) -> Message:
                await raw.send(msg)
                ans = await raw.recv_until(
                    msg.code if isinstance(msg, Message) else CMD_CCR, request=False
                )
                assert ans is not None
                return ans

            # Application without a handler: 3007 with the E bit.
            req = make_ccr(CLIENT, REALM, REALM, hop_by_hop=11)
            req.app_id = 999
            a = await ask(req)
            assert result_code(a) == 3007 and a.is_error and a.hop_by_hop == 11
            # Known application, unknown command: 3001.
            req = make_ccr(CLIENT, REALM, REALM, hop_by_hop=12)
            req.app_id = 16777302
            a = await ask(req)
            assert result_code(a) == 3001 and a.is_error
            # E bit on a request: 3008.
            req = make_ccr(CLIENT, REALM, REALM, hop_by_hop=13)
            req.is_error = True
            a = await ask(req)
            assert result_code(a) == 3008 and a.is_error
            # Our own identity in Route-Record: 3005.
            a = await ask(
                make_ccr(CLIENT, REALM, REALM, hop_by_hop=14, route_record=["x.example", SERVER])
            )
            assert result_code(a) == 3005 and a.is_error
            # Another host / realm: 3002 / 3003.
            a = await ask(
                make_ccr(CLIENT, REALM, REALM, hop_by_hop=15, dest_host="elsewhere.test.example")
            )
            assert result_code(a) == 3002
            a = await ask(make_ccr(CLIENT, REALM, "other.example", hop_by_hop=16))
            assert result_code(a) == 3003
            # A malformed AVP: the codec's 5014 with Failed-AVP, no E bit, session kept.
            good = make_ccr(CLIENT, REALM, REALM, hop_by_hop=17, session_id="s;bad").encode()
            bad = bytearray(good)
            bad[20 + 5 : 20 + 8] = (0xFFFF).to_bytes(3, "big")  # Session-Id length overruns
            await raw.send(bytes(bad))
            a = await raw.recv_until(CMD_CCR, request=False)
            assert a is not None and result_code(a) == 5014 and not a.is_error
            assert a.get("Failed-AVP") is not None
            # Still served afterwards.
            a = await ask(make_ccr(CLIENT, REALM, REALM, hop_by_hop=18))
            assert result_code(a) == 2001
        finally:
            raw.close()
            await stop_all(server)

    run(main())


def test_dwr_is_answered_and_dpr_closes() -> None:
    async def main() -> None:
        server = Node(server_config())
        server.add_handler(4, lambda m, p: cca(m), CMD_CCR)
        await server.start()
        raw = await RawPeer.connect("127.0.0.1", port_of(server))
        try:
            await raw.handshake(CLIENT, REALM)
            await raw.send(make_dwr(CLIENT, REALM, hop_by_hop=77))
            dwa = await raw.recv_until(CMD_DWR, request=False)
            assert dwa is not None and result_code(dwa) == 2001 and dwa.hop_by_hop == 77
            assert dwa.origin_host == SERVER
            await raw.send(make_dpr(CLIENT, REALM, cause=2, hop_by_hop=78))
            dpa = await raw.recv_until(CMD_DPR, request=False)
            assert dpa is not None and result_code(dpa) == 2001
            assert server.peers[CLIENT].state == "Closing"
            raw.close()
            for _ in range(100):
                if CLIENT not in server.peers:
                    break
                await asyncio.sleep(0.02)
            assert CLIENT not in server.peers  # an allowlisted (unconfigured) peer is forgotten
        finally:
            raw.close()
            await stop_all(server)

    run(main())


def test_watchdog_dwr_round_trip_keeps_peer_okay() -> None:
    async def main() -> None:
        server, client = await pair(client_kw={"tw": 6.0})
        try:
            wd = client.peers[SERVER].watchdog
            loop = asyncio.get_running_loop()
            first_deadline = wd.deadline
            assert first_deadline is not None and 4 <= first_deadline - loop.time() <= 8.5
            await asyncio.sleep(first_deadline - loop.time() + 1.5)
            # The DWR went out at the deadline and the DWA came back: re-armed, not pending.
            assert server.peers[CLIENT].stats["dwr_in"] >= 1
            assert not wd.pending and wd.state.value == "OKAY"
            assert wd.deadline is not None and wd.deadline > first_deadline
        finally:
            await stop_all(client, server)

    run(main())


# -- duplicates, timeouts, routing -------------------------------------------------------------


def test_duplicate_with_t_flag_gets_cached_answer_once_handled() -> None:
    async def main() -> None:
        calls: list[int] = []

        def handler(req: Message, peer: Any) -> Message:
            calls.append(req.end_to_end)
            return cca(req)

        server = Node(server_config())
        server.add_handler(4, handler, CMD_CCR)
        await server.start()
        raw = await RawPeer.connect("127.0.0.1", port_of(server))
        try:
            await raw.handshake(CLIENT, REALM)
            req = make_ccr(CLIENT, REALM, REALM, hop_by_hop=100, end_to_end=0xABCDEF).encode()
            await raw.send(req)
            first = await raw.recv_raw()
            # The same request again on a "new path": T flag, new hop-by-hop id.
            again = bytearray(set_hbh(req, 200))
            again[4] |= 0x10
            await raw.send(bytes(again))
            second = await raw.recv_raw()
            assert first is not None and second is not None
            assert calls == [0xABCDEF]
            assert second[12:16] == (200).to_bytes(4, "big")
            assert second[:12] == first[:12] and second[16:] == first[16:]
            assert server.stats["duplicates"] == 1
            # A different end-to-end id is a new request.
            await raw.send(make_ccr(CLIENT, REALM, REALM, hop_by_hop=300, end_to_end=0xABCDF0))
            assert await raw.recv_raw() is not None
            assert len(calls) == 2
        finally:
            raw.close()
            await stop_all(server)

    run(main())


def test_request_timeout_and_no_route() -> None:
    async def main() -> None:
        server, client = await pair(lambda m, p: None)  # never answers
        try:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(RequestTimeout) as err:
                await client.request(ccr(), timeout=0.3)
            assert 0.25 <= loop.time() - t0 < 2.0
            assert err.value.result_code == 3002
            assert client.peers[SERVER].outstanding == 0
            with pytest.raises(RequestError) as err2:
                await client.request(make_ccr(CLIENT, REALM, "unknown.example", end_to_end=0))
            assert err2.value.result_code == 3003
            with pytest.raises(RequestError):
                await client.request(ccr(), peer="nobody.example")
        finally:
            await stop_all(client, server)

    run(main())


def test_failover_resends_pending_with_t_flag() -> None:
    async def main() -> None:
        seen_t: list[bool] = []
        held: list[Message] = []

        a = Node(server_config("a.test.example"))
        a.add_handler(4, lambda m, p: held.append(m), CMD_CCR)  # holds every request
        b = Node(server_config("b.test.example"))

        def b_handler(req: Message, peer: Any) -> Message:
            seen_t.append(req.is_retransmit)
            return cca(req, host="b.test.example")

        b.add_handler(4, b_handler, CMD_CCR)
        await a.start()
        await b.start()
        client = Node(client_config(("a.test.example", port_of(a)), ("b.test.example", port_of(b))))
        await client.start()
        await client.wait_open("a.test.example")
        await client.wait_open("b.test.example")
        try:
            client.peers["b.test.example"].stats["requests_out"] = 0
            # Make A the choice of the least-outstanding selector by loading B's count? No:
            # pin the first request to A, routed ones after it fail over.
            reqs = [ccr(session_id=f"{CLIENT};f{i}") for i in range(5)]
            # Route all to A by making B look busy for the selection moment.
            b_conn = client.peers["b.test.example"].conn
            assert b_conn is not None
            for i in range(50):
                b_conn.pending.add(0xF0000000 + i, 0.0, 1e9, None)
            tasks = [asyncio.ensure_future(client.request(r, timeout=10)) for r in reqs]
            while len(held) < 5:
                await asyncio.sleep(0.01)
            for i in range(50):
                b_conn.pending.pop(0xF0000000 + i)
            await a.stop(graceful=False)  # A vanishes without DPR
            answers = await asyncio.gather(*tasks)
            assert all(
                result_code(x) == 2001 and x.origin_host == "b.test.example" for x in answers
            )
            assert seen_t == [True] * 5
            assert [x.end_to_end for x in answers] == [r.end_to_end for r in reqs]
            assert client.peers["a.test.example"].state != "I-Open"
        finally:
            await stop_all(client, a, b)

    run(main())


def test_pinned_request_fails_when_its_peer_goes() -> None:
    async def main() -> None:
        server, client = await pair(lambda m, p: None)
        try:
            task = asyncio.ensure_future(client.request(ccr(), peer=SERVER, timeout=10))
            await asyncio.sleep(0.1)
            await server.stop(graceful=False)
            with pytest.raises(RequestError) as err:
                await task
            assert err.value.result_code == 3002
        finally:
            await stop_all(client, server)

    run(main())


# -- capabilities exchange ---------------------------------------------------------------------


def test_cer_refusals_unknown_peer_and_no_common_app() -> None:
    async def main() -> None:
        server = Node(server_config(allow=[AllowRule(host="*.good.example", realm="*")]))
        server.add_handler(4, lambda m, p: cca(m), CMD_CCR)
        await server.start()
        try:
            raw = await RawPeer.connect("127.0.0.1", port_of(server))
            cea = await raw.handshake("x.bad.example", "bad.example")
            assert result_code(cea) == 3010 and cea.is_error
            assert await raw.closed()
            raw.close()

            raw = await RawPeer.connect("127.0.0.1", port_of(server))
            cea = await raw.handshake("x.good.example", "good.example", auth_apps=[16777238])
            assert result_code(cea) == 5010
            assert await raw.closed()
            raw.close()

            raw = await RawPeer.connect("127.0.0.1", port_of(server))
            cea = await raw.handshake(
                "y.good.example", "good.example", auth_apps=[16777238], relay=True
            )
            assert result_code(cea) == 2001  # relay: every application is common
            assert server.peers["y.good.example"].state == "R-Open"
            raw.close()
            assert server.stats["rejected_cer"] == 2
        finally:
            await stop_all(server)

    run(main())


def test_message_before_cer_and_cer_timeout_close() -> None:
    async def main() -> None:
        server = Node(server_config(cer_timeout=0.3))
        await server.start()
        try:
            raw = await RawPeer.connect("127.0.0.1", port_of(server))
            await raw.send(make_ccr(CLIENT, REALM, REALM))
            assert await raw.closed(2.0)
            raw.close()
            silent = await RawPeer.connect("127.0.0.1", port_of(server))
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            assert await silent.closed(3.0)
            assert 0.25 <= loop.time() - t0 < 2.0
            silent.close()
            assert server.peers == {}
        finally:
            await stop_all(server)

    run(main())


def test_second_connection_from_an_open_peer_is_rejected() -> None:
    async def main() -> None:
        server, client = await pair()
        try:
            raw = await RawPeer.connect("127.0.0.1", port_of(server))
            cea = await raw.handshake(CLIENT, REALM)
            assert result_code(cea) == 5012
            assert await raw.closed()
            raw.close()
            a = await client.request(ccr())
            assert result_code(a) == 2001
        finally:
            await stop_all(client, server)

    run(main())


def test_simultaneous_connect_elects_one_connection() -> None:
    async def main() -> None:
        lo = Node(
            NodeConfig(
                origin_host="aaa.test.example",
                origin_realm=REALM,
                auth_apps=[4],
                listen=[ListenConfig(port=0)],
                reconnect_min=0.1,
            )
        )
        hi = Node(
            NodeConfig(
                origin_host="zzz.test.example",
                origin_realm=REALM,
                auth_apps=[4],
                listen=[ListenConfig(port=0)],
                reconnect_min=0.1,
            )
        )
        for n in (lo, hi):
            n.add_handler(4, lambda m, p, n=n: cca(m, host=n.config.origin_host), CMD_CCR)
        await lo.start()
        await hi.start()
        # Both learn of each other at once and connect at once.
        lo.update_config(
            NodeConfig(
                origin_host="aaa.test.example",
                origin_realm=REALM,
                auth_apps=[4],
                listen=lo.config.listen,
                peers=[PeerConfig("zzz.test.example", port=port_of(hi), realm=REALM)],
                reconnect_min=0.1,
            )
        )
        hi.update_config(
            NodeConfig(
                origin_host="zzz.test.example",
                origin_realm=REALM,
                auth_apps=[4],
                listen=hi.config.listen,
                peers=[PeerConfig("aaa.test.example", port=port_of(lo), realm=REALM)],
                reconnect_min=0.1,
            )
        )
        try:
            p_lo = await lo.wait_open("zzz.test.example")
            p_hi = await hi.wait_open("aaa.test.example")
            await asyncio.sleep(0.3)
            # One connection survives, seen from both ends as its two halves.
            assert {p_lo.state, p_hi.state} == {"I-Open", "R-Open"}
            assert p_lo.conn is not None and p_hi.conn is not None
            assert p_lo.conn.local == p_hi.conn.remote
            a = await lo.request(make_ccr("aaa.test.example", REALM, REALM, end_to_end=0))
            b = await hi.request(make_ccr("zzz.test.example", REALM, REALM, end_to_end=0))
            assert result_code(a) == 2001 and result_code(b) == 2001
        finally:
            await stop_all(lo, hi)

    run(main())


# -- DPR causes and reconnection ---------------------------------------------------------------


@pytest.mark.parametrize("cause", [0, 1, 2])
def test_disconnect_cause_decides_reconnection(cause: int) -> None:
    async def main() -> None:
        server = Node(server_config())
        server.add_handler(4, lambda m, p: cca(m), CMD_CCR)
        await server.start()
        port = port_of(server)
        client = Node(client_config((SERVER, port), busy_holdoff=60.0))
        await client.start()
        await client.wait_open(SERVER)
        await server.stop(graceful=True, cause=cause)
        info = client.peers[SERVER]
        loop = asyncio.get_running_loop()
        for _ in range(100):
            if info.state == "Closed":
                break
            await asyncio.sleep(0.02)
        assert info.state == "Closed"
        # A new server on the same port.
        server2 = Node(
            NodeConfig(
                origin_host=SERVER,
                origin_realm=REALM,
                auth_apps=[4],
                listen=[ListenConfig(port=port)],
            )
        )
        server2.add_handler(4, lambda m, p: cca(m), CMD_CCR)
        await server2.start()
        try:
            if cause == 0:  # REBOOTING: reconnect soon
                await client.wait_open(SERVER, timeout=5)
                assert info.watchdog_state == "OKAY"  # an orderly close is not a REOPEN
            else:
                await asyncio.sleep(1.0)
                assert info.state == "Closed"
                if cause == 1:  # BUSY: held off for busy_holdoff
                    assert 55 < info.hold_until - loop.time() <= 60
                else:  # DO_NOT_WANT_TO_TALK_TO_YOU: no automatic reconnection
                    assert info.hold_until == math.inf
                # A request that needs the peer reconnects on demand.
                with pytest.raises(RequestError):
                    await client.request(ccr())
                await client.wait_open(SERVER, timeout=5)
                assert result_code(await client.request(ccr())) == 2001
        finally:
            await stop_all(client, server2)

    run(main())


def test_lost_connection_reconnects_with_backoff_and_reopens() -> None:
    async def main() -> None:
        server, client = await pair(client_kw={"tw": 6.0})
        info = client.peers[SERVER]
        try:
            server_conn = server.peers[CLIENT].conn
            assert server_conn is not None
            old_conn = info.conn
            server_conn.abort()  # no DPR: a failure
            for _ in range(300):
                if info.is_open and info.conn is not old_conn:
                    break
                await asyncio.sleep(0.02)
            assert info.is_open and info.conn is not old_conn
            # After a failure the watchdog needs three DWAs before traffic resumes.
            assert info.watchdog_state == "REOPEN" and not info.usable
            with pytest.raises(RequestError):
                await client.request(ccr())
        finally:
            await stop_all(client, server)

    run(main())


def test_update_config_adds_and_removes_peers_without_dropping_others() -> None:
    async def main() -> None:
        s1 = Node(server_config("s1.test.example"))
        s2 = Node(server_config("s2.test.example"))
        for s in (s1, s2):
            s.add_handler(4, lambda m, p, s=s: cca(m, host=s.config.origin_host), CMD_CCR)
            await s.start()
        cfg = client_config(("s1.test.example", port_of(s1)))
        client = Node(cfg)
        await client.start()
        try:
            p1 = await client.wait_open("s1.test.example")
            conn_before = p1.conn
            new = client_config(("s1.test.example", port_of(s1)), ("s2.test.example", port_of(s2)))
            new.routes = [RouteConfig(REALM, ["s2.test.example"])]
            client.update_config(new)
            await client.wait_open("s2.test.example")
            assert client.peers["s1.test.example"].conn is conn_before  # untouched
            a = await client.request(ccr())
            assert a.origin_host == "s2.test.example"  # the new route
            client.update_config(client_config(("s2.test.example", port_of(s2))))
            for _ in range(100):
                if "s1.test.example" not in client.peers:
                    break
                await asyncio.sleep(0.02)
            assert "s1.test.example" not in client.peers
            assert "client.test.example" not in s1.peers or s1.peers[CLIENT].state != "R-Open"
        finally:
            await stop_all(client, s1, s2)

    run(main())


def test_backpressure_pauses_reading_from_a_peer_that_does_not_read() -> None:
    async def main() -> None:
        big = "x" * 8000
        server = Node(server_config(write_high_water=64 * 1024))
        server.add_handler(4, lambda m, p: _big_answer(m, big), CMD_CCR)
        await server.start()
        good = Node(client_config((SERVER, port_of(server)), origin_host="good.test.example"))
        await good.start()
        await good.wait_open(SERVER)
        raw = await RawPeer.connect("127.0.0.1", port_of(server))
        try:
            await raw.handshake(CLIENT, REALM)
            raw.writer.transport.pause_reading()  # type: ignore[attr-defined]
            req = make_ccr(CLIENT, REALM, REALM).encode()
            sent = 0
            for i in range(3000):  # ~24 MB of answers if all were produced
                raw.send_nowait(set_hbh(req, i + 1000))
                sent += 1
                if i % 100 == 0:
                    await asyncio.sleep(0)
            conn = None
            for _ in range(200):
                info = server.peers.get(CLIENT)
                conn = info.conn if info else None
                if conn is not None and conn.reading_paused:
                    break
                await asyncio.sleep(0.02)
            assert conn is not None and conn.reading_paused
            buffered = conn.transport.get_write_buffer_size()  # type: ignore[union-attr]
            assert buffered < 4 * 1024 * 1024
            # The other peer is served meanwhile.
            a = await good.request(make_ccr("good.test.example", REALM, REALM, end_to_end=0))
            assert result_code(a) == 2001
        finally:
            raw.abort()
            await stop_all(good, server)

    run(main())


def _big_answer(req: Message, text: str) -> Message:
    ans = cca(req)
    ans.set("Error-Message", text)
    return ans


def test_validation_answers_3009_and_5005_and_fills_answer_ids() -> None:
    async def main() -> None:
        def scratch(req: Message, peer: Any) -> Message:
            # An answer built without req.answer(): the Node gives it the request's ids.
            ans = Message(code=CMD_CCR, app_id=4, flags=0x40)
            ans.add("Session-Id", req.session_id)
            ans.add("Result-Code", 2001)
            ans.add("Origin-Host", SERVER)
            ans.add("Origin-Realm", REALM)
            return ans

        server = Node(server_config(validate_requests=True, check_destination=False))
        server.add_handler(4, scratch, CMD_CCR)
        await server.start()
        raw = await RawPeer.connect("127.0.0.1", port_of(server))
        try:
            await raw.handshake(CLIENT, REALM)
            # Reserved AVP flag bits: 3009 with the E bit and the AVP in Failed-AVP.
            data = bytearray(make_ccr(CLIENT, REALM, REALM, hop_by_hop=21).encode())
            data[20 + 4] |= 0x01
            await raw.send(bytes(data))
            a = await raw.recv_until(CMD_CCR, request=False)
            assert a is not None and result_code(a) == 3009 and a.is_error and a.hop_by_hop == 21
            assert a.get("Failed-AVP") is not None
            # A required AVP missing: 5005, no E bit.
            req = make_ccr(CLIENT, REALM, REALM, hop_by_hop=22)
            req.remove("Service-Context-Id")
            await raw.send(req)
            a = await raw.recv_until(CMD_CCR, request=False)
            assert a is not None and result_code(a) == 5005 and not a.is_error
            # With destination checks off, a loop is still caught.
            await raw.send(
                make_ccr(CLIENT, REALM, "elsewhere.example", hop_by_hop=23, route_record=[SERVER])
            )
            a = await raw.recv_until(CMD_CCR, request=False)
            assert a is not None and result_code(a) == 3005
            await raw.send(
                make_ccr(CLIENT, REALM, "elsewhere.example", hop_by_hop=24, end_to_end=4242)
            )
            a = await raw.recv_until(CMD_CCR, request=False)
            assert a is not None and result_code(a) == 2001
            assert a.hop_by_hop == 24 and a.end_to_end == 4242
        finally:
            raw.close()
            await stop_all(server)

    run(main())


def test_update_config_changes_listeners_and_keeps_the_others() -> None:
    async def main() -> None:
        server = Node(server_config())
        server.add_handler(4, lambda m, p: cca(m), CMD_CCR)
        await server.start()
        first = list(server.listen_addresses)
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                free = probe.getsockname()[1]
            cfg = server_config()
            cfg.listen = [ListenConfig(port=0), ListenConfig(host="127.0.0.1", port=free)]
            server.update_config(cfg)
            for _ in range(100):
                if len(server.listen_addresses) > 1:
                    break
                await asyncio.sleep(0.02)
            assert server.listen_addresses[0] == first[0]  # the kept listener did not move
            new_port = server.listen_addresses[-1][2]
            assert new_port == free
            raw = await RawPeer.connect("127.0.0.1", new_port)
            assert result_code(await raw.handshake(CLIENT, REALM)) == 2001
            raw.close()
            cfg2 = server_config()
            cfg2.listen = [cfg.listen[1]]
            server.update_config(cfg2)
            for _ in range(100):
                if len(server.listen_addresses) == 1:
                    break
                await asyncio.sleep(0.02)
            assert server.listen_addresses[0][2] == new_port
            with pytest.raises(OSError):
                await RawPeer.connect("127.0.0.1", first[0][2])
        finally:
            await stop_all(server)

    run(main())


def test_duplicate_of_a_request_still_in_progress_is_not_handled_twice() -> None:
    async def main() -> None:
        calls: list[int] = []

        async def slow(req: Message, peer: Any) -> Message:
            calls.append(req.end_to_end)
            await asyncio.sleep(0.3)
            return cca(req)

        server = Node(server_config())
        server.add_handler(4, slow, CMD_CCR)
        await server.start()
        raw = await RawPeer.connect("127.0.0.1", port_of(server))
        try:
            await raw.handshake(CLIENT, REALM)
            req = make_ccr(CLIENT, REALM, REALM, hop_by_hop=1, end_to_end=0x5151).encode()
            copy = bytearray(set_hbh(req, 2))
            copy[4] |= 0x10
            await raw.send(req)
            await asyncio.sleep(0.05)
            await raw.send(bytes(copy))  # arrives while the first is being handled: dropped
            first = await raw.recv(3)
            assert first is not None and first.hop_by_hop == 1 and result_code(first) == 2001
            with pytest.raises(TimeoutError):
                await raw.recv(0.3)
            await raw.send(set_hbh(bytes(copy), 3))  # after the answer: the cached one
            third = await raw.recv(3)
            assert third is not None and third.hop_by_hop == 3 and result_code(third) == 2001
            assert calls == [0x5151]
        finally:
            raw.close()
            await stop_all(server)

    run(main())


@pytest.mark.skipif(not uvloop_available(), reason="uvloop is not installed")
def test_the_node_runs_on_uvloop() -> None:
    async def main() -> str:
        server, client = await pair()
        try:
            answers = await asyncio.gather(*(client.request(ccr(number=i)) for i in range(100)))
            assert [a.cc_request_number for a in answers] == list(range(100))
            return type(asyncio.get_running_loop()).__module__
        finally:
            await stop_all(client, server)

    assert run_uvloop(asyncio.wait_for(main(), 30), use_uvloop=True).startswith("uvloop")


def test_requests_wait_for_a_peer_that_does_not_read() -> None:
    """The sending side of backpressure: request() waits (bounded buffer), then fails cleanly."""

    async def main() -> None:
        from chargegw.peer import capabilities

        server_cfg = NodeConfig(origin_host=SERVER, origin_realm=REALM, auth_apps=[4])
        accepted: list[asyncio.StreamWriter] = []

        async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            raw = RawPeer(reader, writer)
            cer = await raw.recv()
            assert cer is not None
            await raw.send(capabilities.build_cea(server_cfg, cer))
            writer.transport.pause_reading()  # and never read again
            accepted.append(writer)

        srv = await asyncio.start_server(on_conn, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        client = Node(client_config((SERVER, port), write_high_water=64 * 1024))
        await client.start()
        try:
            info = await client.wait_open(SERVER)
            big = "y" * 8000
            tasks = [
                asyncio.ensure_future(client.request(ccr(user_name=big), timeout=30))
                for _ in range(3000)
            ]
            for _ in range(300):
                await asyncio.sleep(0.02)
                if info.conn is not None and info.conn.write_paused:
                    break
            conn = info.conn
            assert conn is not None and conn.write_paused
            await asyncio.sleep(0.3)
            buffered = conn.transport.get_write_buffer_size()  # type: ignore[union-attr]
            # Requests wait for the buffer to drain instead of piling up in it.
            assert buffered < 2 * 1024 * 1024, buffered
            assert sum(not t.done() for t in tasks) > 2500
            assert len(conn.pending) < 1000
            for w in accepted:
                w.transport.abort()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(r, RequestError) for r in results)
        finally:
            srv.close()
            await stop_all(client)

    run(main())
