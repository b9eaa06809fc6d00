"""Answers carry the node's Origin-Host/Origin-Realm even when the handler left them out
(RFC 6733 6.2), in memory and over a socket; a handler's own values are kept."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chargegw.codec import Message
from chargegw.codec.constants import CMD_CCR
from chargegw.peer import ListenConfig, Node, NodeConfig, PeerConfig
from chargegw.peer.errors import DiameterError, RequestError, RequestTimeout
from chargegw.peer.testing import MemoryNode, PeerPair, make_ccr, result_code

REALM = "test.example"
SERVER = "server.test.example"
CLIENT = "client.test.example"

pytestmark = pytest.mark.timeout(60)


def bare(req: Message, peer: Any) -> Message:
    return req.answer(2001)  # no Origin-Host, no Origin-Realm


def memory_pair(handler: Any) -> PeerPair:
    client = MemoryNode(
        NodeConfig(
            origin_host=CLIENT,
            origin_realm=REALM,
            auth_apps=[4],
            peers=[PeerConfig(SERVER, port=3868, realm="server.realm")],
        )
    )
    server = MemoryNode(
        NodeConfig(origin_host=SERVER, origin_realm="server.realm", auth_apps=[4]),
        address=("127.0.0.9", 3868),
    )
    server.add_handler(4, handler, CMD_CCR)
    return PeerPair(client, server).connect()


def ask(pair: PeerPair) -> Message:
    waiter = pair.a.request(make_ccr(CLIENT, REALM, "server.realm"), pair.now, peer=SERVER)
    pair.pump()
    ans = pair.a.answers[waiter]
    assert isinstance(ans, Message)
    return ans


def test_bare_answer_gets_the_node_identity_in_memory() -> None:
    ans = ask(memory_pair(bare))
    assert result_code(ans) == 2001
    assert ans.origin_host == SERVER
    assert ans.origin_realm == "server.realm"
    # the CCA grammar's other AVPs are the handler's business; the identity is there
    assert not [e for e in ans.find_errors() if "Origin" in str(e)]


def test_handler_set_identity_is_kept() -> None:
    def own(req: Message, peer: Any) -> Message:
        return req.answer(2001, origin_host="other.host", origin_realm="other.realm")

    ans = ask(memory_pair(own))
    assert ans.origin_host == "other.host" and ans.origin_realm == "other.realm"
    assert len(ans.raw_values("Origin-Host")) == 1 and len(ans.raw_values("Origin-Realm")) == 1


def test_bare_answer_gets_the_node_identity_over_a_socket() -> None:
    async def later(req: Message, peer: Any) -> Message:
        await asyncio.sleep(0)
        return req.answer(2001)

    async def main() -> None:
        for handler in (bare, later):  # the sync path and the awaitable path
            server = Node(
                NodeConfig(
                    origin_host=SERVER,
                    origin_realm="server.realm",
                    auth_apps=[4],
                    listen=[ListenConfig(port=0)],
                )
            )
            server.add_handler(4, handler, CMD_CCR)
            await server.start()
            port = server.listen_addresses[0][2]
            client = Node(
                NodeConfig(
                    origin_host=CLIENT,
                    origin_realm=REALM,
                    auth_apps=[4],
                    peers=[PeerConfig(SERVER, port=port, realm="server.realm")],
                )
            )
            await client.start()
            try:
                await client.wait_open(SERVER, timeout=10)
                ans = await client.request(make_ccr(CLIENT, REALM, "server.realm", end_to_end=0))
                assert result_code(ans) == 2001
                assert ans.origin_host == SERVER and ans.origin_realm == "server.realm"
            finally:
                await client.stop(timeout=2)
                await server.stop(timeout=2)

    asyncio.run(asyncio.wait_for(main(), 45))


def test_request_timeout_is_a_timeout_error_and_a_diameter_error() -> None:
    err = RequestTimeout("no answer")
    assert isinstance(err, TimeoutError)
    assert isinstance(err, RequestError) and isinstance(err, DiameterError)
    assert err.result_code == 3002
    with pytest.raises(TimeoutError):
        raise err
