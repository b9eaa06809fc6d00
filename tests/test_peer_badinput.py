"""Bad input from a peer: it gets its answer or a clean disconnect, and nobody else notices.

Each case runs against a server Node that also serves a well-behaved client Node throughout;
after every bad connection the good client must still get its answers.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest

from chargegw.codec.constants import CMD_CCR
from chargegw.peer import ListenConfig, Node, NodeConfig, PeerConfig
from chargegw.peer.testing import RawPeer, make_cca, make_ccr, make_cer, result_code

REALM = "bad.example"
SERVER = "server.bad.example"
GOOD = "good.bad.example"
EVIL = "evil.bad.example"

pytestmark = pytest.mark.timeout(60)


def cca(req: Any) -> Any:
    return make_cca(req, SERVER, REALM)


async def with_server(body: Any, *, max_length: int = 1 << 20) -> None:
    server = Node(
        NodeConfig(
            origin_host=SERVER,
            origin_realm=REALM,
            auth_apps=[4],
            listen=[ListenConfig(port=0)],
            max_message_length=max_length,
        )
    )
    server.add_handler(4, lambda m, p: cca(m), CMD_CCR)
    await server.start()
    port = server.listen_addresses[0][2]
    good = Node(
        NodeConfig(
            origin_host=GOOD,
            origin_realm=REALM,
            auth_apps=[4],
            peers=[PeerConfig(SERVER, port=port, realm=REALM)],
        )
    )
    await good.start()
    await good.wait_open(SERVER)
    good_conn = server.peers[GOOD].conn

    async def good_still_served() -> None:
        answers = await asyncio.gather(
            *(good.request(make_ccr(GOOD, REALM, REALM, end_to_end=0)) for _ in range(20))
        )
        assert all(result_code(a) == 2001 for a in answers)
        assert server.peers[GOOD].conn is good_conn  # same connection all along

    try:
        await good_still_served()
        await body(port, server)
        await good_still_served()
    finally:
        await good.stop(timeout=2)
        await server.stop(timeout=2)


def run(body: Any, **kw: Any) -> None:
    async def main() -> None:
        await asyncio.wait_for(with_server(body, **kw), 45)

    asyncio.run(main())


async def open_peer(port: int, handshake: bool = True) -> RawPeer:
    raw = await RawPeer.connect("127.0.0.1", port)
    if handshake:
        cea = await raw.handshake(EVIL, REALM)
        assert result_code(cea) == 2001
    return raw


@pytest.mark.parametrize("handshake", [False, True], ids=["before-cer", "after-cer"])
def test_garbage_bytes_get_a_disconnect(handshake: bool) -> None:
    async def body(port: int, server: Node) -> None:
        raw = await open_peer(port, handshake)
        await raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)))
        assert await raw.closed(5)
        raw.close()
        assert server.stats["framing_errors"] >= 1

    run(body)


@pytest.mark.parametrize("handshake", [False, True], ids=["before-cer", "after-cer"])
def test_length_over_the_maximum_gets_a_disconnect(handshake: bool) -> None:
    async def body(port: int, server: Node) -> None:
        raw = await open_peer(port, handshake)
        # A header announcing 70000 octets, over the configured 64 KiB; nothing else is sent,
        # so the node must not wait for (or buffer) the body.
        header = struct.pack(">IIIII", (1 << 24) | 70000, (0x80 << 24) | CMD_CCR, 4, 1, 1)
        await raw.send(header)
        assert await raw.closed(5)
        raw.close()

    run(body, max_length=64 * 1024)


def test_message_before_cer_gets_a_disconnect() -> None:
    async def body(port: int, server: Node) -> None:
        raw = await open_peer(port, handshake=False)
        await raw.send(make_ccr(EVIL, REALM, REALM))
        assert await raw.closed(5)
        raw.close()
        assert EVIL not in server.peers

    run(body)


@pytest.mark.parametrize("handshake", [False, True], ids=["before-cer", "after-cer"])
def test_wrong_version_gets_5011_then_a_disconnect(handshake: bool) -> None:
    async def body(port: int, server: Node) -> None:
        raw = await open_peer(port, handshake)
        data = bytearray(make_ccr(EVIL, REALM, REALM, hop_by_hop=0x1234).encode())
        data[0] = 2
        await raw.send(bytes(data))
        ans = await raw.recv(5)
        assert ans is not None
        assert result_code(ans) == 5011 and not ans.is_request and ans.hop_by_hop == 0x1234
        assert await raw.closed(5)
        raw.close()

    run(body)


def test_good_frames_before_a_bad_one_in_the_same_chunk_are_answered() -> None:
    async def body(port: int, server: Node) -> None:
        raw = await open_peer(port)
        good = make_ccr(EVIL, REALM, REALM, hop_by_hop=5).encode()
        await raw.send(good + b"\xff" * 40)
        ans = await raw.recv(5)
        assert ans is not None and result_code(ans) == 2001 and ans.hop_by_hop == 5
        assert await raw.closed(5)
        raw.close()

    run(body)


@pytest.mark.parametrize("handshake", [False, True], ids=["before-cer", "after-cer"])
def test_truncated_frame_then_eof(handshake: bool) -> None:
    async def body(port: int, server: Node) -> None:
        raw = await open_peer(port, handshake)
        data = make_ccr(EVIL, REALM, REALM).encode()
        await raw.send(data[: len(data) // 2])
        raw.writer.write_eof()
        assert await raw.closed(5)
        raw.close()
        for _ in range(100):
            if EVIL not in server.peers:
                break
            await asyncio.sleep(0.02)
        assert EVIL not in server.peers

    run(body)


def test_truncated_cer_and_undecodable_cer() -> None:
    async def body(port: int, server: Node) -> None:
        raw = await open_peer(port, handshake=False)
        cer = bytearray(make_cer(EVIL, REALM).encode())
        cer[20 + 5 : 20 + 8] = (0xFFFF).to_bytes(3, "big")  # first AVP overruns the message
        await raw.send(bytes(cer))
        ans = await raw.recv(5)
        assert ans is not None and result_code(ans) == 5014
        assert await raw.closed(5)
        raw.close()

    run(body)


def test_abrupt_reset_mid_message() -> None:
    async def body(port: int, server: Node) -> None:
        raw = await open_peer(port)
        data = make_ccr(EVIL, REALM, REALM).encode()
        await raw.send(data[:30])
        raw.abort()
        await asyncio.sleep(0.1)

    run(body)
