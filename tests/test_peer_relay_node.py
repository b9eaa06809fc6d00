"""The agent on the asyncio Node (the adapter, `Node.set_agent`), on loopback sockets:
client Node -> relay Node -> two server Nodes. A request forwarded to a server that then
goes away is resent to the other with the T flag, and the client gets that server's answer;
with no server left the client gets the relay's 3002."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest

from chargegw.codec import Message
from chargegw.codec.constants import APP_CREDIT_CONTROL as CC
from chargegw.codec.constants import CMD_CCR, FLAG_RETRANSMIT, ResultCode
from chargegw.peer import ListenConfig, Node, NodeConfig, PeerConfig, RouteConfig
from chargegw.peer.relay import AgentConfig, RelayAgent
from chargegw.peer.testing import make_ccr, result_code

pytestmark = pytest.mark.timeout(60)

CLIENT, C_REALM = "client.c.example", "c.example"
RELAY, R_REALM = "relay.r.example", "r.example"
S1, S2, S_REALM = "s1.s.example", "s2.s.example", "s.example"


def run(coro: Awaitable[Any]) -> Any:
    async def guarded() -> Any:
        return await asyncio.wait_for(coro, 45)

    return asyncio.run(guarded())


def port_of(node: Node) -> int:
    return node.listen_addresses[0][2]


class Server:
    def __init__(self, name: str, hold: bool) -> None:
        self.name = name
        self.hold = hold
        self.seen: list[Message] = []
        cfg = NodeConfig(
            origin_host=name, origin_realm=S_REALM, auth_apps=[CC], listen=[ListenConfig(port=0)]
        )
        self.node = Node(cfg)
        self.node.add_handler(CC, self.handle, CMD_CCR)

    def handle(self, req: Message, peer: Any) -> Message | None:
        self.seen.append(req)
        if self.hold:
            return None  # never answers: the request stays pending at the relay
        return req.answer(
            2001,
            origin_host=self.name,
            origin_realm=S_REALM,
            auth_application_id=CC,
            cc_request_type=req.cc_request_type,
            cc_request_number=req.cc_request_number,
        )


async def chain(*servers: Server) -> tuple[Node, Node]:
    for s in servers:
        await s.node.start()
    peers = [PeerConfig(s.name, port=port_of(s.node), realm=S_REALM) for s in servers]
    relay = Node(
        NodeConfig(
            origin_host=RELAY,
            origin_realm=R_REALM,
            relay=True,
            listen=[ListenConfig(port=0)],
            peers=peers,
            routes=[RouteConfig(S_REALM, [s.name for s in servers])],
            reconnect_min=30.0,
        )
    )
    relay.set_agent(RelayAgent(AgentConfig("relay")))
    await relay.start()
    for s in servers:
        await relay.wait_open(s.name)
    client = Node(
        NodeConfig(
            origin_host=CLIENT,
            origin_realm=C_REALM,
            auth_apps=[CC],
            peers=[PeerConfig(RELAY, port=port_of(relay), realm=R_REALM)],
            routes=[RouteConfig(S_REALM, [RELAY])],
        )
    )
    await client.start()
    await client.wait_open(RELAY)
    return client, relay


def test_forwarded_request_fails_over_with_the_t_flag_on_the_node() -> None:
    async def main() -> None:
        first, second = Server(S1, hold=True), Server(S2, hold=False)
        client, relay = await chain(first, second)
        try:
            task = asyncio.create_task(
                client.request(make_ccr(CLIENT, C_REALM, S_REALM), timeout=10)
            )
            for _ in range(200):
                if first.seen or second.seen:
                    break
                await asyncio.sleep(0.02)
            # Equal load: the selector takes the first listed peer, the one that holds.
            assert first.seen and not first.seen[0].flags & FLAG_RETRANSMIT
            await first.node.stop(graceful=False)  # the upstream goes away, request pending
            ans = await task
            assert result_code(ans) == 2001 and ans.get("Origin-Host") == S2
            (again,) = second.seen
            assert again.flags & FLAG_RETRANSMIT
            assert again.end_to_end == first.seen[0].end_to_end
            assert [r.lower() for r in again.get_all("Route-Record")] == [CLIENT]
            # Now no server is left: the relay answers 3002 itself.
            await second.node.stop(graceful=False)
            for _ in range(200):
                if not relay.peers[S2].usable:
                    break
                await asyncio.sleep(0.02)
            ans = await client.request(make_ccr(CLIENT, C_REALM, S_REALM), timeout=10)
            assert result_code(ans) == ResultCode.DIAMETER_UNABLE_TO_DELIVER
            assert ans.get("Origin-Host") == RELAY
        finally:
            for node in (client, relay, first.node, second.node):
                await node.stop(timeout=1)

    run(main())


def test_redirect_agent_on_the_node_names_its_servers_and_forwards_nothing() -> None:
    async def main() -> None:
        # The redirect agent knows the servers by configuration only (connect = false):
        # it never forwards, so it needs no connection to them.
        peers = [
            PeerConfig(S1, port=3869, realm=S_REALM, connect=False),
            PeerConfig(S2, port=3870, transport="tls", realm=S_REALM, connect=False),
        ]
        redirect = Node(
            NodeConfig(
                origin_host=RELAY, origin_realm=R_REALM, relay=True,
                listen=[ListenConfig(port=0)], peers=peers,
                routes=[RouteConfig(S_REALM, [S1, S2])],
            )
        )  # fmt: skip
        redirect.set_agent(RelayAgent(AgentConfig("redirect")))
        await redirect.start()
        client = Node(
            NodeConfig(
                origin_host=CLIENT, origin_realm=C_REALM, auth_apps=[CC],
                peers=[PeerConfig(RELAY, port=port_of(redirect), realm=R_REALM)],
                routes=[RouteConfig(S_REALM, [RELAY])],
            )
        )  # fmt: skip
        await client.start()
        try:
            await client.wait_open(RELAY)
            ans = await client.request(make_ccr(CLIENT, C_REALM, S_REALM), timeout=10)
            assert result_code(ans) == ResultCode.DIAMETER_REDIRECT_INDICATION and ans.is_error
            assert ans.get_all("Redirect-Host") == [
                f"aaa://{S1}:3869;transport=tcp",
                f"aaas://{S2}:3870;transport=tcp",
            ]
            assert ans.get("Redirect-Host-Usage") == 0 and ans.get("Origin-Host") == RELAY
        finally:
            for node in (client, redirect):
                await node.stop(timeout=1)

    run(main())
