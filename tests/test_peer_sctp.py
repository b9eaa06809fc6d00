"""SCTP: the real thing when the kernel has it, and the adapter's logic everywhere.

The kernel this project is developed on has no SCTP, so `test_sctp_association` skips with
the reason. The adapter itself (one SCTP message per Diameter message, PPID 46, stream choice,
queueing when the socket is full, backpressure, framing through the shared Connection) is
tested over a socketpair with a stand-in for the pysctp socket object.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from typing import Any

import pytest

from chargegw.codec import FramingError, Message
from chargegw.codec.constants import CMD_CCR
from chargegw.peer import ListenConfig, Node, NodeConfig, PeerConfig
from chargegw.peer.sctp import DIAMETER_PPID, SctpTransport, pick_stream, sctp_unavailable_reason
from chargegw.peer.testing import make_ccr, make_dwr, result_code
from chargegw.peer.transport import Connection

pytestmark = pytest.mark.timeout(60)

REALM = "sctp.example"


class FakeSctpSocket:
    """The slice of pysctp's sctpsocket_tcp that SctpTransport uses, over a stream socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sent: list[tuple[bytes, int, int]] = []
        self.full = False

    def sock(self) -> socket.socket:
        return self._sock

    def sctp_send(self, data: bytes, ppid: int = 0, stream: int = 0) -> int:
        if self.full:
            raise BlockingIOError(errno.EAGAIN, "full")
        self.sent.append((data, ppid, stream))
        return self._sock.send(data)

    def getpaddrs(self) -> tuple[Any, ...]:
        return (self._sock.getpeername(),)

    def getladdrs(self) -> tuple[Any, ...]:
        return (self._sock.getsockname(),)


class Owner:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.lost: list[Exception | None] = []
        self.errors: list[FramingError] = []

    def conn_made(self, conn: Connection) -> None:
        pass

    def conn_data(self, conn: Connection, data: bytes) -> None:
        # The Node hands octets to the sans-IO side, which deframes with the link's reader.
        try:
            self.frames.extend(conn.link.reader.feed(data))
        except FramingError as exc:
            self.errors.append(exc)
            conn.abort()

    def conn_lost(self, conn: Connection, exc: Exception | None) -> None:
        self.lost.append(exc)


def test_pick_stream_keeps_base_messages_on_stream_zero() -> None:
    dwr = make_dwr("a", "b").encode()
    assert pick_stream(dwr, 8) == 0
    streams = set()
    for e2e in range(20):
        ccr = make_ccr("a", "b", "b", end_to_end=e2e).encode()
        s = pick_stream(ccr, 8)
        assert 1 <= s <= 7
        assert pick_stream(ccr, 8) == s  # request and answer share the end-to-end id
        streams.add(s)
    assert len(streams) == 7
    assert pick_stream(make_ccr("a", "b", "b").encode(), 1) == 0


def test_adapter_frames_ppid_streams_and_backpressure() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        fake = FakeSctpSocket(ours)
        owner = Owner()
        conn = Connection(owner, loop, initiator=True, kind="sctp", high_water=4096)  # type: ignore[arg-type]
        transport = SctpTransport(loop, fake, conn, streams=4)
        await asyncio.sleep(0)
        assert conn.transport is transport

        # Outgoing: one sctp_send per Diameter message, PPID 46.
        msgs = [make_dwr("a", "b").encode()] + [
            make_ccr("a", "b", "b", end_to_end=i).encode() for i in range(5)
        ]
        for m in msgs:
            conn.send(m)
        await asyncio.sleep(0.01)
        assert [d for d, _, _ in fake.sent] == msgs
        assert {p for _, p, _ in fake.sent} == {DIAMETER_PPID}
        assert fake.sent[0][2] == 0 and all(1 <= s <= 3 for _, _, s in fake.sent[1:])
        got = b""
        while len(got) < sum(map(len, msgs)):
            got += await loop.sock_recv(theirs, 65536)
        assert got == b"".join(msgs)

        # Incoming: split anywhere, reassembled by the shared FrameReader.
        blob = b"".join(msgs)
        for i in range(0, len(blob), 7):
            await loop.sock_sendall(theirs, blob[i : i + 7])
        for _ in range(100):
            if len(owner.frames) == len(msgs):
                break
            await asyncio.sleep(0.01)
        assert owner.frames == msgs
        assert Message.decode(owner.frames[1]).code == CMD_CCR

        # A full socket: messages queue, the protocol is told to pause, then everything drains.
        fake.full = True
        big = make_ccr("a", "b", "b", session_id="s;" + "x" * 3000).encode()
        conn.send(big)
        conn.send(big)
        await asyncio.sleep(0.01)
        assert transport.get_write_buffer_size() == 2 * len(big)
        assert conn.write_paused and conn.reading_paused
        fake.full = False
        received = 0
        while received < 2 * len(big):
            received += len(await loop.sock_recv(theirs, 65536))
        for _ in range(100):
            if not conn.write_paused:
                break
            await asyncio.sleep(0.01)
        assert not conn.write_paused and not conn.reading_paused
        assert transport.get_write_buffer_size() == 0

        # Garbage from the peer: the Connection aborts the association.
        await loop.sock_sendall(theirs, b"\x07" * 64)
        for _ in range(100):
            if owner.lost:
                break
            await asyncio.sleep(0.01)
        assert owner.errors and owner.lost
        theirs.close()

    asyncio.run(asyncio.wait_for(main(), 20))


def test_adapter_close_flushes_queue_then_eof_is_seen() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        fake = FakeSctpSocket(ours)
        owner = Owner()
        conn = Connection(owner, loop, initiator=False, kind="sctp")  # type: ignore[arg-type]
        SctpTransport(loop, fake, conn, streams=2)
        await asyncio.sleep(0)
        fake.full = True
        dwr = make_dwr("a", "b").encode()
        conn.send(dwr)
        await asyncio.sleep(0.01)
        conn.close()  # queued data must still go out before the socket closes
        fake.full = False
        data = b""
        while True:
            chunk = await loop.sock_recv(theirs, 65536)
            if not chunk:
                break
            data += chunk
        assert data == dwr and [d for d, _, _ in fake.sent] == [dwr]
        await asyncio.sleep(0.01)
        assert owner.lost == [None]
        theirs.close()

    asyncio.run(asyncio.wait_for(main(), 20))


@pytest.mark.skipif(sctp_unavailable_reason() is not None, reason=str(sctp_unavailable_reason()))
def test_sctp_association() -> None:
    """A real association: CER/CEA, requests, NODELAY, streams, multi-homed listener."""

    async def main() -> None:
        server = Node(
            NodeConfig(
                origin_host="server.sctp.example",
                origin_realm=REALM,
                auth_apps=[4],
                listen=[
                    ListenConfig(
                        host="127.0.0.1", port=0, transport="sctp", extra_addresses=["127.0.0.2"]
                    )
                ],
            )
        )
        server.add_handler(
            4,
            lambda m, p: m.answer(
                2001,
                origin_host="server.sctp.example",
                origin_realm=REALM,
                auth_application_id=4,
                cc_request_type=m.cc_request_type,
                cc_request_number=m.cc_request_number,
            ),
            CMD_CCR,
        )
        await server.start()
        port = server.listen_addresses[0][2]
        client = Node(
            NodeConfig(
                origin_host="client.sctp.example",
                origin_realm=REALM,
                auth_apps=[4],
                peers=[
                    PeerConfig(
                        "server.sctp.example",
                        port=port,
                        transport="sctp",
                        realm=REALM,
                        peer_addresses=["127.0.0.2"],
                    )
                ],
            )
        )
        await client.start()
        try:
            info = await client.wait_open("server.sctp.example", timeout=10)
            assert info.transport == "sctp"
            sk = info.conn.transport.get_extra_info("sctp_socket")  # type: ignore[union-attr]
            assert sk.get_nodelay()
            answers = await asyncio.gather(
                *(
                    client.request(
                        make_ccr("client.sctp.example", REALM, REALM, end_to_end=0, number=i)
                    )
                    for i in range(100)
                )
            )
            assert [a.cc_request_number for a in answers] == list(range(100))
            assert all(result_code(a) == 2001 for a in answers)
        finally:
            await client.stop(timeout=2)
            await server.stop(timeout=2)

    asyncio.run(asyncio.wait_for(main(), 45))
