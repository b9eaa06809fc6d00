"""Test helpers: a hand-driven raw Diameter peer, and message builders.

`RawPeer` speaks bytes over asyncio streams so a test can do what a well-behaved Node never
would (skip CER, send garbage, stop reading) and see exactly what comes back.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_mod
import struct
from collections.abc import Iterable
from typing import Any

from chargegw.codec import FrameReader, FramingError, Message, class_for, get_dictionary
from chargegw.codec.constants import CMD_CCR, CMD_CER, CMD_DPR, CMD_DWR
from chargegw.peer.admission import Admission, framing_reply
from chargegw.peer.connection import PeerConnection, plan_failover
from chargegw.peer.errors import RequestError
from chargegw.peer.link import (
    AnswerReceived,
    Connect,
    Context,
    Failover,
    FramingFault,
    Link,
    RequestReceived,
)
from chargegw.peer.pending import EndToEndAllocator
from chargegw.peer.routing import RoutingTable

_e2e = 0x10000


def next_e2e() -> int:
    global _e2e
    _e2e += 1
    return _e2e


def make_cer(
    origin_host: str,
    origin_realm: str,
    *,
    auth_apps: Iterable[int] = (4,),
    acct_apps: Iterable[int] = (),
    vendor_apps: Iterable[tuple[int, int]] = (),
    relay: bool = False,
    inband_security: Iterable[int] = (),
    hop_by_hop: int = 1,
) -> Message:
    auth = list(auth_apps) + ([0xFFFFFFFF] if relay else [])
    avps: dict[str, Any] = {
        "origin_host": origin_host,
        "origin_realm": origin_realm,
        "host_ip_address": [__import__("ipaddress").ip_address("127.0.0.1")],
        "vendor_id": 0,
        "product_name": "raw-test-peer",
    }
    if auth:
        avps["auth_application_id"] = auth
    if acct_apps:
        avps["acct_application_id"] = list(acct_apps)
    if vendor_apps:
        avps["vendor_specific_application_id"] = [
            {"vendor_id": v, "auth_application_id": a} for v, a in vendor_apps
        ]
    if inband_security:
        avps["inband_security_id"] = list(inband_security)
    return class_for(get_dictionary(), 0, CMD_CER, True)(
        hop_by_hop=hop_by_hop, end_to_end=next_e2e(), **avps
    )


def make_ccr(
    origin_host: str,
    origin_realm: str,
    dest_realm: str,
    *,
    session_id: str | None = None,
    request_type: int = 1,
    number: int = 0,
    dest_host: str | None = None,
    hop_by_hop: int = 0,
    end_to_end: int | None = None,
    **extra: Any,
) -> Message:
    return class_for(get_dictionary(), 4, CMD_CCR, True)(
        hop_by_hop=hop_by_hop,
        end_to_end=next_e2e() if end_to_end is None else end_to_end,
        session_id=session_id or f"{origin_host};{next_e2e()}",
        origin_host=origin_host,
        origin_realm=origin_realm,
        destination_realm=dest_realm,
        destination_host=dest_host,
        auth_application_id=4,
        service_context_id="32251@3gpp.org",
        cc_request_type=request_type,
        cc_request_number=number,
        **extra,
    )


def make_cca(ccr: Message, origin_host: str, origin_realm: str, **extra: Any) -> Message:
    """A 2001 CCA to `ccr`, echoing its CC-Request-Type and -Number (a test server's answer)."""
    return ccr.answer(
        2001,
        origin_host=origin_host,
        origin_realm=origin_realm,
        auth_application_id=4,
        cc_request_type=ccr.cc_request_type,
        cc_request_number=ccr.cc_request_number,
        **extra,
    )


def make_dwr(origin_host: str, origin_realm: str, hop_by_hop: int = 7) -> Message:
    return class_for(get_dictionary(), 0, CMD_DWR, True)(
        hop_by_hop=hop_by_hop,
        end_to_end=next_e2e(),
        origin_host=origin_host,
        origin_realm=origin_realm,
    )


def make_dpr(origin_host: str, origin_realm: str, cause: int = 0, hop_by_hop: int = 9) -> Message:
    return class_for(get_dictionary(), 0, CMD_DPR, True)(
        hop_by_hop=hop_by_hop,
        end_to_end=next_e2e(),
        origin_host=origin_host,
        origin_realm=origin_realm,
        disconnect_cause=cause,
    )


class RawPeer:
    """One TCP (or TLS) connection driven by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader(1 << 24)
        self._queue: list[bytes] = []
        self.eof = False

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        ssl: ssl_mod.SSLContext | None = None,
        server_hostname: str | None = None,
        local_addr: tuple[str, int] | None = None,
    ) -> RawPeer:
        """local_addr: the source address (any 127.x.y.z works on Linux loopback)."""
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ssl, server_hostname=server_hostname, local_addr=local_addr
        )
        return cls(reader, writer)

    async def send(self, data: bytes | Message) -> None:
        self.writer.write(data if isinstance(data, (bytes, bytearray)) else data.encode())
        await self.writer.drain()

    def send_nowait(self, data: bytes | Message) -> None:
        self.writer.write(data if isinstance(data, (bytes, bytearray)) else data.encode())

    async def recv_raw(self, timeout: float = 5.0) -> bytes | None:
        """The next whole message, or None at EOF. Raises TimeoutError."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._queue:
            if self.eof:
                return None
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError("no message")
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
            except (ConnectionError, ssl_mod.SSLError):
                chunk = b""
            if not chunk:
                self.eof = True
                continue
            try:
                self._queue.extend(self.frames.feed(chunk))
            except FramingError:
                self.eof = True
        return self._queue.pop(0)

    async def recv(self, timeout: float = 5.0) -> Message | None:
        raw = await self.recv_raw(timeout)
        return None if raw is None else Message.decode(raw, max_length=1 << 24)

    async def recv_until(
        self, code: int, *, request: bool | None = None, timeout: float = 5.0
    ) -> Message | None:
        """Skip messages (answering DWRs) until one with this command code arrives."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - loop.time()))
            if msg is None:
                return None
            if msg.code == CMD_DWR and msg.is_request and code != CMD_DWR:
                await self.send(msg.answer(2001, origin_host="raw", origin_realm="raw"))
                continue
            if msg.code == code and (request is None or msg.is_request == request):
                return msg

    async def handshake(self, origin_host: str, origin_realm: str, **kw: Any) -> Message:
        """CER -> CEA; returns the CEA."""
        await self.send(make_cer(origin_host, origin_realm, **kw))
        cea = await self.recv_until(CMD_CER, request=False)
        if cea is None:
            raise ConnectionError("closed instead of CEA")
        return cea

    async def closed(self, timeout: float = 5.0) -> bool:
        """True when the other side closes within timeout (messages before EOF are skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                raw = await self.recv_raw(max(0.01, deadline - loop.time()))
                if raw is None:
                    return True
        except TimeoutError:
            return False

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass

    def abort(self) -> None:
        transport = self.writer.transport
        transport.abort()


def result_code(msg: Message) -> int | None:
    value = msg.get("Result-Code")
    return None if value is None else int(value)


def set_hbh(data: bytes, hbh: int) -> bytes:
    return data[:12] + struct.pack(">I", hbh) + data[16:]


# -- in memory: two sans-IO nodes wired together, time passed in --------------------------------


class MemoryNode:
    """One node's sans-IO half (Context, Admission, PeerConnections), driven by hand.

    Handlers are plain functions `(request, peer) -> Message | bytes | None` (or RawHandlers,
    as the Node's `add_raw_handler` makes them); answers to our
    requests land in `answers` (waiter -> Message or the error); every event is kept in
    `events` as (peer name, event) for a test to look at.
    """

    def __init__(self, config: Any, address: tuple[str, int] = ("127.0.0.1", 3868)) -> None:

        self.config = config
        self.address = address
        self.ctx = Context(config, EndToEndAllocator(0))
        self.admission = Admission(self.ctx)
        self.routing = RoutingTable(config.routes, config.default_route)
        self.peers: dict[str, Any] = {}
        self.events: list[tuple[str, Any]] = []
        self.answers: dict[Any, Any] = {}
        self.connect_wanted: set[str] = set()

    def add_handler(self, app_id: int, handler: Any, command: int | None = None) -> None:
        self.ctx.handlers[(app_id, command)] = handler
        self.ctx.handler_apps.add(app_id)

    def peer(self, name: str) -> Any:
        """The machine for `name` (a configured peer's is made on first use)."""

        key = name.lower()
        m = self.peers.get(key)
        if m is None:
            pc = next((p for p in self.config.peers if p.name.lower() == key), None)
            m = self.peers[key] = PeerConnection(name, self.ctx, pc, rand=lambda a, b: 0.0)
        return m

    def request(self, msg: Message, now: float, peer: str | None = None) -> Any:
        """Route and send a request; returns its waiter (a key of `answers`)."""
        waiter = object()
        app = msg.app_id
        if not msg.end_to_end:
            msg.end_to_end = self.ctx.e2e.next()
        # (app, dest_host, dest_realm, pinned, tried): what failover needs
        meta: tuple[int, str | None, str | None, bool, tuple[str, ...]]
        if peer is not None:
            target, meta = self.peers[peer.lower()], (app, None, None, True, ())
        else:
            dh = msg.raw_value("Destination-Host")
            dr = msg.raw_value("Destination-Realm")
            dh_s = dh.decode() if dh else None
            dr_s = dr.decode() if dr else None
            target = self.routing.select(self.peers, app, dh_s, dr_s)
            meta = (app, dh_s, dr_s, False, ())
        msg.hop_by_hop = target.send_request(msg.encode(), waiter, 5.0, meta, now)
        return waiter

    def handle(self, peer: Any, events: list[Any], now: float) -> None:
        """What the asyncio Node does with a machine's events, synchronously."""

        for ev in events:
            self.events.append((peer.name, ev))
            if isinstance(ev, RequestReceived):
                for req, _p, key, res in peer.handle_requests(ev, now):  # no loop here
                    err = TypeError(f"handler returned {type(res).__name__}")
                    peer.handler_failed(ev.link, req, err, key)
            elif isinstance(ev, AnswerReceived):
                self.answers[ev.waiter] = ev.message if ev.error is None else ev.error
            elif isinstance(ev, Connect):
                self.connect_wanted.add(peer.key)
            elif isinstance(ev, FramingFault):
                framing_reply(self.ctx, ev.link, ev.error)
            elif isinstance(ev, Failover):

                def select(app: int, host: Any, realm: Any, tried: tuple[str, ...]) -> Any:
                    return self.routing.select(self.peers, app, host, realm, tried)

                for e, alt, how in plan_failover(peer.key, ev.entries, select):
                    if alt is None:
                        self.answers[e.waiter] = RequestError(3002, str(how))
                    else:
                        alt.resend(e, how, now)

    def timer(self, now: float) -> None:
        self.admission.expire(now)
        for m in list(self.peers.values()):
            self.handle(m, m.timer(now), now)


class PeerPair:
    """A connection between two MemoryNodes: `a` connects to `b`, bytes cross in memory.

    `connect()` opens it (A's CER, B's admission, CEA); `pump()` moves queued bytes until
    both sides are quiet; `advance(dt)` moves the clock and runs every timer; `partition`
    drops whatever is sent (a silent peer); `lose()` cuts the transport.
    """

    def __init__(
        self,
        a: MemoryNode,
        b: MemoryNode,
        *,
        now: float = 0.0,
        source: tuple[str, int] | None = None,
        kind: str = "tcp",
        cert_names: list[str] | None = None,
    ) -> None:
        self.a, self.b = a, b
        self.now = now
        self.source = source or (a.address[0], 40000)
        self.kind = kind
        self.cert_names = cert_names
        self.partition = False
        self.la: Any = None
        self.lb: Any = None

    @property
    def a_peer(self) -> Any:
        return self.a.peer(self.b.config.origin_host)

    @property
    def b_peer(self) -> Any:
        return self.b.peers.get(self.a.config.origin_host.lower())

    def connect(self, *, start: bool = True) -> PeerPair:

        a, b, now = self.a, self.b, self.now
        m = self.a_peer
        if start:
            a.handle(m, m.start(now), now)
        tls = self.kind == "tls"
        self.la = Link(initiator=True, kind=self.kind, remote=b.address, local=self.source)
        self.lb = Link(
            initiator=False,
            kind=self.kind,
            remote=self.source,
            local=b.address,
            tls_verify=tls,
            cert_names=self.cert_names,
        )
        self.la.host_ips = [self.source[0]]
        self.lb.host_ips = [b.address[0]]
        if tls:
            self.la.tls_verify = True
            self.la.cert_names = [b.config.origin_host]
        if b.admission.accepted(self.lb, now):
            b.admission.made(self.lb, now)
        else:
            self.lb.abort()
        a.connect_wanted.discard(m.key)
        a.handle(m, m.connected(self.la, now), now)
        self.pump()
        return self

    def _deliver(self, node: MemoryNode, link: Any, data: bytes) -> None:
        now = self.now
        m = link.machine
        if m is not None:
            node.handle(m, m.receive_data(link, data, now), now)
            return
        if link.initiator or link.closing:
            return
        got = node.admission.receive(link, data)
        if got is None:
            return
        msg, caps, common, rest = got
        peer = node.peer(caps.origin_host)
        node.handle(peer, peer.accept_cer(link, msg, caps, common, now), now)
        if rest and link.machine is peer:
            node.handle(peer, peer.receive_frames(link, rest, now), now)

    def pump(self, limit: int = 1000) -> None:
        """Deliver queued bytes both ways until quiet; a close on either side cuts both."""
        la, lb = self.la, self.lb
        for _ in range(limit):
            moved = False
            for src, dst, node in ((la, lb, self.b), (lb, la, self.a)):
                if src is None or src.closed:
                    continue
                out = src.data_to_send()
                if out and not self.partition and not dst.closed:
                    moved = True
                    self._deliver(node, dst, b"".join(out))
            if not moved:
                break
        if (la is not None and la.close_mode) or (lb is not None and lb.close_mode):
            self.lose()

    def lose(self) -> None:
        """The transport is gone: both sides hear of it."""
        for link, node in ((self.la, self.a), (self.lb, self.b)):
            if link is None or link.closed:
                continue
            node.admission.done(link)
            m = link.machine
            if m is None:
                link.closed = True
                continue
            node.handle(m, m.connection_lost(link, self.now), self.now)

    def advance(self, dt: float) -> None:
        """Move the clock; run both nodes' timers; deliver what they sent."""
        self.now += dt
        self.a.timer(self.now)
        self.b.timer(self.now)
        self.pump()
