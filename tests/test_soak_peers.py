"""The Node's peer tables stay bounded under an open allowlist (diameter.allow unset).

Every peer the allowlist admits gets an entry in `node._peers` (routing) and `node.peers`
(status) at its CER. A gateway open to any peer meets an unbounded set of Origin-Hosts over
its life (clients that restart with new names, scanners): an entry that outlived its
connection would grow the tables for as long as the process runs, which the soak cannot see
(its load generator is one peer). So each way a connection of an unconfigured peer can end
is churned here with fresh names, and the tables must come back to the configured peers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chargegw.codec import Message
from chargegw.codec.constants import CMD_CCR, CMD_DPR
from chargegw.peer import ListenConfig, Node, NodeConfig, PeerConfig
from chargegw.peer.testing import RawPeer, make_cca, make_dpr, result_code

REALM = "soak.example"
SERVER = "server.soak.example"
CONFIGURED = "configured.soak.example"  # a configured peer (never connected): kept

pytestmark = pytest.mark.timeout(60)


def _cca(req: Message) -> Message:
    return make_cca(req, SERVER, REALM)


async def _until(cond: Any, timeout: float = 5.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            return False
        await asyncio.sleep(0.02)
    return True


async def _churn(rounds: int) -> tuple[int, list[str], list[str]]:
    """Open and end `rounds` connections of each kind, each under a new Origin-Host; the
    most entries seen at once while they were open, then what the tables hold after."""
    cfg = NodeConfig(
        origin_host=SERVER,
        origin_realm=REALM,
        auth_apps=[4],
        listen=[ListenConfig(port=0)],
        peers=[PeerConfig(CONFIGURED, port=1, realm=REALM, connect=False)],
        allow=None,  # any peer is admitted
    )
    node = Node(cfg)
    node.add_handler(4, lambda m, p: _cca(m), CMD_CCR)
    await node.start()
    port = node.listen_addresses[0][2]
    most = 0
    try:
        for i in range(rounds):
            held: list[RawPeer] = []
            # 1. open, then the TCP connection simply closes
            raw = await RawPeer.connect("127.0.0.1", port)
            assert result_code(await raw.handshake(f"tcp{i}.{REALM}", REALM)) == 2001
            held.append(raw)
            # 2. open, then DPR/DPA
            raw = await RawPeer.connect("127.0.0.1", port)
            assert result_code(await raw.handshake(f"dpr{i}.{REALM}", REALM)) == 2001
            held.append(raw)
            # 3. CER refused (no common application): never opens
            raw = await RawPeer.connect("127.0.0.1", port)
            cea = await raw.handshake(f"nocommon{i}.{REALM}", REALM, auth_apps=[16777238])
            assert result_code(cea) == 5010
            raw.close()
            most = max(most, len(node._peers))
            await held[1].send(make_dpr(f"dpr{i}.{REALM}", REALM))
            assert (await held[1].recv_until(CMD_DPR, request=False)) is not None
            for r in held:
                r.close()
        await _until(lambda: len(node._peers) <= 1 and len(node.peers) <= 1)
        return most, sorted(node._peers), sorted(node.peers)
    finally:
        await node.stop(timeout=2)


def test_unconfigured_peers_are_forgotten_when_their_connection_ends() -> None:
    most, routing, status = asyncio.run(asyncio.wait_for(_churn(20), 45))
    assert most >= 3  # the configured peer and the two open ones were there meanwhile
    assert routing == [CONFIGURED.lower()]
    assert status == [CONFIGURED]
