"""The asyncio Diameter Node: peers, the base protocol, routing, and the application API.

The Node drives the pure units (fsm, watchdog, pending, dupcache, routing, capabilities) from
asyncio: connections report frames and losses, one housekeeping ticker checks every timer, and
the state machine's actions are carried out here and nowhere else.

The receive path does the least work per message: the header is unpacked once, answers are
matched by hop-by-hop id and decoded only to be handed to the waiting caller, requests are
decoded (top-level index only) and passed straight to a sync handler; only a coroutine handler
costs a task. Everything a connection sends in one loop iteration goes out in one write.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import math
import random
import ssl
import struct
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from chargegw.codec import AvpError, CodecError, FramingError, Message
from chargegw.codec.constants import CMD_CER, CMD_DPR, CMD_DWR, DisconnectCause
from chargegw.peer import capabilities as capmod
from chargegw.peer.capabilities import CapabilitiesError, PeerCapabilities
from chargegw.peer.config import ListenConfig, NodeConfig, PeerConfig, TlsConfig
from chargegw.peer.dupcache import IN_PROGRESS, DuplicateCache
from chargegw.peer.errors import (
    ProtocolError,
    answer_for_codec_error,
    error_answer_bytes,
)
from chargegw.peer.fsm import OPEN_STATES, Action, Event, PeerStateMachine, State
from chargegw.peer.pending import EndToEndAllocator, PendingEntry
from chargegw.peer.routing import RoutingError, RoutingTable, Selector, least_outstanding
from chargegw.peer.transport import Connection
from chargegw.peer.watchdog import Watchdog, WdAction, WdState

log = logging.getLogger("chargegw.peer")

Answer = Message | bytes | None
Handler = Callable[[Message, "PeerInfo"], Answer | Awaitable[Answer]]

_HDR4 = struct.Struct(">IIII")  # flags|code, app, hbh, e2e (from offset 4)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


_R = 0x80000000
_E = 0x20000000
_TICK = 0.05

UNABLE_TO_DELIVER = 3002
COMMAND_UNSUPPORTED = 3001
REALM_NOT_SERVED = 3003
LOOP_DETECTED = 3005
APPLICATION_UNSUPPORTED = 3007
INVALID_HDR_BITS = 3008
UNSUPPORTED_VERSION = 5011
UNABLE_TO_COMPLY = 5012


class RequestError(Exception):
    """A request got no answer: no route (3002/3003), the peer went away, or a timeout."""

    def __init__(self, result_code: int, message: str) -> None:
        super().__init__(message)
        self.result_code = result_code


class RequestTimeout(RequestError):
    """No answer within the request's timeout (result_code 3002, as for an undeliverable one)."""

    def __init__(self, message: str) -> None:
        super().__init__(UNABLE_TO_DELIVER, message)


class PeerInfo:
    """One row of the peer table (`node.peers`). Live: it reflects the current state."""

    __slots__ = (
        "name",
        "key",
        "config",
        "realm",
        "fsm",
        "watchdog",
        "conn",
        "conn_i",
        "conn_r",
        "caps",
        "apps",
        "remote_apps",
        "remote_relay",
        "dynamic",
        "connected_at",
        "attempts",
        "reconnect_handle",
        "connect_task",
        "hold_until",
        "disc_cause_rcvd",
        "orderly",
        "removed",
        "stats",
        "_open_waiters",
    )

    def __init__(
        self, name: str, own_host: str, config: PeerConfig | None, tw: float, node_cfg: NodeConfig
    ) -> None:
        self.name = name
        self.key = name.lower()
        self.config = config
        self.realm: str | None = config.realm if config is not None else None
        self.fsm = PeerStateMachine(
            own_host,
            name,
            cea_timeout=node_cfg.cea_timeout,
            dpa_timeout=node_cfg.dpa_timeout,
        )
        self.watchdog = Watchdog(tw)
        self.conn: Connection | None = None  # the open connection
        self.conn_i: Connection | None = None
        self.conn_r: Connection | None = None
        self.caps: PeerCapabilities | None = None
        self.apps: frozenset[int] = frozenset()  # common applications (RELAY_APP_ID = all)
        self.remote_apps: frozenset[int] = frozenset()
        self.remote_relay = False
        self.dynamic = config is None  # admitted by the allowlist; forgotten once closed
        self.connected_at: float | None = None
        self.attempts = 0
        self.reconnect_handle: asyncio.TimerHandle | None = None
        self.connect_task: asyncio.Task[None] | None = None
        self.hold_until = 0.0  # no automatic reconnect before (loop time)
        self.disc_cause_rcvd: int | None = None
        self.orderly = False  # the last close was a DPR/DPA exchange
        self.removed = False
        self.stats = {"requests_in": 0, "requests_out": 0, "errors_out": 0, "dwr_in": 0}
        self._open_waiters: list[asyncio.Future[None]] = []

    # -- what users and the router read ----------------------------------------------------------

    @property
    def state(self) -> str:
        """The RFC 6733 state name: Closed, Wait-Conn-Ack, ..., I-Open, R-Open, Closing."""
        return self.fsm.state.value

    @property
    def watchdog_state(self) -> str:
        return self.watchdog.state.value

    @property
    def address(self) -> Any:
        c = self.conn or self.conn_i or self.conn_r
        if c is not None:
            return c.remote
        if self.config is not None:
            return (self.config.host, self.config.effective_port)
        return None

    @property
    def transport(self) -> str | None:
        c = self.conn
        return c.kind if c is not None else (self.config.transport if self.config else None)

    @property
    def outstanding(self) -> int:
        c = self.conn
        return len(c.pending) if c is not None else 0

    @property
    def is_open(self) -> bool:
        return self.fsm.state in OPEN_STATES

    @property
    def usable(self) -> bool:
        """Requests may be routed here: open, watchdog OKAY, not writing into a full buffer."""
        c = self.conn
        return (
            c is not None
            and self.fsm.state in OPEN_STATES
            and self.watchdog.state is WdState.OKAY
            and not c.closing
        )

    def supports(self, app_id: int) -> bool:
        return self.remote_relay or app_id in self.remote_apps

    @property
    def product_name(self) -> str | None:
        return self.caps.product_name if self.caps else None

    @property
    def origin_state_id(self) -> int | None:
        return self.caps.origin_state_id if self.caps else None

    @property
    def host_ip_addresses(self) -> list[Any]:
        return list(self.caps.host_ip_addresses) if self.caps else []

    def to_dict(self) -> dict[str, Any]:
        addr = self.address
        return {
            "name": self.name,
            "realm": self.realm,
            "state": self.state,
            "watchdog": self.watchdog_state,
            "address": list(addr) if isinstance(addr, tuple) else addr,
            "transport": self.transport,
            "initiator": self.conn is not None and self.conn.initiator,
            "apps": sorted(self.apps),
            "outstanding": self.outstanding,
            "product_name": self.product_name,
            "configured": not self.dynamic,
            "connected_at": self.connected_at,
            **self.stats,
        }

    def __repr__(self) -> str:
        return (
            f"<PeerInfo {self.name} {self.state} wd={self.watchdog_state} out={self.outstanding}>"
        )


def _need_ca(tls: TlsConfig) -> None:
    if tls.verify_peer and not tls.cafile:
        raise ValueError(
            "TLS verify_peer needs a CA file (cafile): the system trust store is never used"
        )


def _tls_server_context(tls: TlsConfig) -> ssl.SSLContext:
    """Trusts only tls.cafile: a public CA must not vouch for a Diameter peer."""
    _need_ca(tls)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.certfile:
        ctx.load_cert_chain(tls.certfile, tls.keyfile)
    if tls.cafile:
        ctx.load_verify_locations(tls.cafile)
    ctx.verify_mode = ssl.CERT_REQUIRED if tls.verify_peer else ssl.CERT_NONE
    if tls.ciphers:
        ctx.set_ciphers(tls.ciphers)
    return ctx


def _tls_client_context(tls: TlsConfig) -> ssl.SSLContext:
    """Trusts only tls.cafile (no system store, which create_default_context would load)."""
    _need_ca(tls)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cafile:
        ctx.load_verify_locations(tls.cafile)
    if tls.certfile:
        ctx.load_cert_chain(tls.certfile, tls.keyfile)
    ctx.check_hostname = tls.verify_peer and tls.check_hostname
    if not tls.verify_peer:
        ctx.verify_mode = ssl.CERT_NONE
    if tls.ciphers:
        ctx.set_ciphers(tls.ciphers)
    return ctx


def _source_ip(addr: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP of a peername tuple (an IPv4-mapped IPv6 address counts as the IPv4 one)."""
    if not isinstance(addr, tuple) or not addr:
        return None
    try:
        ip = ipaddress.ip_address(str(addr[0]).split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _san_matches(pattern: str, host: str) -> bool:
    """RFC 6125 DNS-ID match: exact, or a "*." wildcard standing for one leftmost label."""
    pattern = pattern.lower().rstrip(".")
    host = host.lower().rstrip(".")
    if pattern == host:
        return True
    if pattern.startswith("*.") and "." in host:
        return host.split(".", 1)[1] == pattern[2:] and pattern.count(".") >= 2
    return False


def tls_identity_error(conn: Connection, origin_host: str) -> str | None:
    """Why a verified TLS peer's certificate does not name `origin_host` (None: it does).

    Certificate verification alone says only that the CA signed *some* name; the Diameter
    identity is the Origin-Host, so a certificate's DNS SANs must include it.
    """
    if conn.kind != "tls" or not conn.tags.get("tls_verify") or conn.transport is None:
        return None
    cert = conn.transport.get_extra_info("peercert")
    if not cert:
        return "no verified peer certificate"
    names = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
    if any(_san_matches(n, origin_host) for n in names):
        return None
    return f"certificate names {names or 'no DNS SAN'}, not Origin-Host {origin_host!r}"


class Node:
    """A Diameter node: `await start()`, `add_handler(...)`, `await request(...)`, `await stop()`."""

    def __init__(self, config: NodeConfig, *, selector: Selector = least_outstanding) -> None:
        self.config = config
        self._selector = selector
        self._routing = RoutingTable(config.routes, config.default_route, selector)
        self._peers: dict[str, PeerInfo] = {}  # lower-cased name -> entry (the routing view)
        self.peers: dict[str, PeerInfo] = {}  # name -> entry (the public peer table)
        self._handlers: dict[tuple[int, int | None], Handler] = {}
        self._handler_apps: set[int] = set()
        self._dup = DuplicateCache(
            config.dup_cache_size,
            config.dup_cache_ttl,
            config.dup_in_progress_ttl,
            config.dup_cache_bytes,
        )
        # (peer key, hbh) -> dup key, for answers sent later by send_answer (bounded, FIFO)
        self._dup_later: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        # (transport, host, configured port) -> (server, its bound addresses)
        self._servers: dict[tuple[str, str, int], tuple[Any, list[tuple[str, str, int]]]] = {}
        self._inbound: set[Connection] = set()  # accepted, CER not yet accepted
        self._inbound_by_src: Counter[Any] = Counter()  # the same, by source address
        self._resolved: dict[str, frozenset[str]] = {}  # host names in PeerConfig.source
        self._refused_at = 0.0  # last "pre-CER connection refused" log line (rate limit)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._e2e = EndToEndAllocator(time.time())
        self._started = False
        self._stopping = False
        self._next_dup_evict = 0.0
        self._own_host_b = config.origin_host.lower().encode()
        self._own_realm_b = config.origin_realm.lower().encode()
        self.listen_addresses: list[tuple[str, str, int]] = []  # (transport, host, port)
        self.stats = {
            "framing_errors": 0,
            "rejected_cer": 0,
            "duplicates": 0,
            "handler_errors": 0,
            "refused_at_accept": 0,
        }

    # -- application API -------------------------------------------------------------------------

    def add_handler(self, app_id: int, handler: Handler, command: int | None = None) -> None:
        """Answer requests of `app_id` (one command, or all when command is None).

        The handler gets (request, PeerInfo) and returns the answer (a Message, or bytes
        already encoded), None to answer later with `send_answer`, or an awaitable of those.
        Raising ProtocolError/AvpError answers with that Result-Code; anything else 5012.
        A returned answer is kept for duplicates (T flag); a raised error is not, so a
        retransmission after a passing failure (no worker, overload) is handled again.
        """
        self._handlers[(app_id, command)] = handler
        self._handler_apps.add(app_id)

    def remove_handler(self, app_id: int, command: int | None = None) -> None:
        self._handlers.pop((app_id, command), None)
        self._handler_apps = {a for a, _ in self._handlers}

    async def request(
        self, msg: Message, peer: str | None = None, timeout: float | None = None
    ) -> Message:
        """Send a request and wait for its answer.

        Routed by Destination-Host, then Destination-Realm + application, then the default
        route, unless `peer` names the peer. Sets the hop-by-hop id, and the end-to-end id when
        it is 0. Raises RequestError (no route, peer lost with no alternate) or RequestTimeout.
        """
        loop = self._loop
        if loop is None or self._stopping:
            raise RequestError(UNABLE_TO_DELIVER, "node is not running")
        if timeout is None:
            timeout = self.config.request_timeout
        app = msg.app_id
        if not msg.end_to_end:
            msg.end_to_end = self._e2e.next()
        msg.hop_by_hop = 0
        data = msg.encode()
        if peer is not None:
            target = self._peers.get(peer.lower())
            if target is None or not target.usable:
                raise RequestError(UNABLE_TO_DELIVER, f"peer {peer!r} is not open")
            meta: tuple[Any, ...] = (app, None, None, True, ())
        else:
            dest_host = _text(msg.raw_value("Destination-Host"))
            dest_realm = _text(msg.raw_value("Destination-Realm"))
            target = self._route(app, dest_host, dest_realm, ())
            meta = (app, dest_host, dest_realm, False, ())
        conn = target.conn
        assert conn is not None
        while conn.write_paused:  # the peer reads slower than we send: wait, do not pile up
            try:
                await conn.drain()
            except ConnectionError:
                raise RequestError(UNABLE_TO_DELIVER, f"peer {target.name!r} went away") from None
            if conn.closed or conn.closing:
                raise RequestError(UNABLE_TO_DELIVER, f"peer {target.name!r} went away")
        pending = conn.pending
        hbh = pending.new_hbh()
        msg.hop_by_hop = hbh
        data = data[:12] + hbh.to_bytes(4, "big") + data[16:]
        fut = loop.create_future()
        pending.add(hbh, loop.time(), timeout, fut, data, meta)
        target.stats["requests_out"] += 1
        conn.send(data)
        return await fut

    def send_answer(self, peer_name: str, answer: Message | bytes, *, cache: bool = True) -> bool:
        """Send an answer a handler deferred (it returned None). False if the peer is gone.

        cache=False: the answer reports a passing condition (an error made locally: no
        worker, a deadline passed); it is not kept for duplicates, and a retransmission of
        the request is handled afresh instead of getting the stale error.
        """
        peer = self._peers.get(peer_name.lower())
        if peer is None or peer.conn is None:
            return False
        data = answer if isinstance(answer, bytes) else answer.encode()
        peer.conn.send(data)
        if self._dup_later:
            hbh = struct.unpack_from(">I", data, 12)[0]
            key = self._dup_later.pop((peer.key, hbh), None)
            if key is not None:
                if not cache:
                    self._dup.forget(key)
                elif self._loop is not None:
                    self._dup.put(key, data, self._loop.time())
        return True

    def send_request_nowait(self, peer_name: str, msg: Message) -> bool:
        """Fire a request at a peer without tracking an answer (answers are dropped)."""
        peer = self._peers.get(peer_name.lower())
        if peer is None or peer.conn is None:
            return False
        msg.hop_by_hop = peer.conn.pending.new_hbh()
        if not msg.end_to_end:
            msg.end_to_end = self._e2e.next()
        peer.conn.send(msg.encode())
        return True

    def new_end_to_end(self) -> int:
        return self._e2e.next()

    async def wait_open(self, name: str, timeout: float = 10.0) -> PeerInfo:
        """Wait until the named peer is usable (tests, startup ordering)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            peer = self._peers.get(name.lower())
            if peer is not None and peer.usable:
                return peer
            if loop.time() >= deadline:
                raise TimeoutError(f"peer {name!r} not open after {timeout} s")
            if peer is None:
                await asyncio.sleep(0.02)
                continue
            fut = loop.create_future()
            peer._open_waiters.append(fut)
            try:
                await asyncio.wait_for(fut, max(0.0, min(0.25, deadline - loop.time())))
            except TimeoutError:
                pass

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("node already started")
        self._loop = asyncio.get_running_loop()
        self._started = True
        self._stopping = False
        for lc in self.config.listen:
            await self._listen(lc)
        self._resolve_sources()
        for pc in self.config.peers:
            self._add_configured_peer(pc)
        self._ticker = self._loop.create_task(self._tick_loop())

    async def stop(
        self,
        graceful: bool = True,
        timeout: float = 5.0,
        cause: int = DisconnectCause.REBOOTING,
    ) -> None:
        """Stop: no new requests, drain what is in flight, DPR every open peer, close."""
        if not self._started or self._loop is None:
            return
        loop = self._loop
        self._stopping = True
        for server, _ in self._servers.values():
            server.close()
        for conn in list(self._inbound):
            conn.close()
        for peer in self._peers.values():
            self._cancel_reconnect(peer)
        deadline = loop.time() + timeout
        if graceful:
            # Drain: answers for our requests and answers from our handlers (half the time).
            drain_until = loop.time() + timeout / 2
            while loop.time() < drain_until and any(
                p.conn is not None and (len(p.conn.pending) or p.conn.inflight)
                for p in self._peers.values()
            ):
                await asyncio.sleep(0.01)
            for peer in list(self._peers.values()):
                if peer.is_open:
                    self._disconnect(peer, cause)
            while loop.time() < deadline and any(
                p.fsm.state is not State.CLOSED for p in self._peers.values()
            ):
                await asyncio.sleep(0.01)
        for peer in list(self._peers.values()):
            for conn in (peer.conn, peer.conn_i, peer.conn_r):
                if conn is not None:
                    self._fail_all(conn, "node stopped")
                    conn.abort()
            if peer.connect_task is not None:
                peer.connect_task.cancel()
            peer.fsm.state = State.CLOSED
            peer.fsm.deadline = None
            peer.conn = peer.conn_i = peer.conn_r = None
        if self._ticker is not None:
            self._ticker.cancel()
        for task in list(self._tasks):
            task.cancel()
        for server, _ in self._servers.values():
            try:
                await asyncio.wait_for(server.wait_closed(), 1.0)
            except (TimeoutError, Exception):
                pass
        self._servers.clear()
        self.listen_addresses.clear()
        await asyncio.sleep(0)
        self._started = False

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def update_config(self, new: NodeConfig) -> None:
        """Reload peers, routes, allowlist and limits without dropping established connections.

        Removed peers get DPR(DO_NOT_WANT_TO_TALK_TO_YOU); new ones are connected; a kept peer
        takes its new settings at its next connection (and any BUSY/DO_NOT_WANT hold is
        lifted). Identity changes (Origin-Host/Realm) apply to new connections only.
        """
        old = self.config
        self.config = new
        self._own_host_b = new.origin_host.lower().encode()
        self._own_realm_b = new.origin_realm.lower().encode()
        self._routing = RoutingTable(new.routes, new.default_route, self._selector)
        self._dup.max_size = new.dup_cache_size
        self._dup.ttl = new.dup_cache_ttl
        self._dup.in_progress_ttl = new.dup_in_progress_ttl
        self._dup.max_bytes = new.dup_cache_bytes
        if self._loop is None:
            return
        new_peers = {pc.name.lower(): pc for pc in new.peers}
        for key, peer in list(self._peers.items()):
            pc = new_peers.get(key)
            if pc is None:
                if not peer.dynamic:
                    peer.config = None
                    peer.dynamic = True
                    peer.removed = True
                    self._cancel_reconnect(peer)
                    if peer.is_open:
                        self._disconnect(peer, DisconnectCause.DO_NOT_WANT_TO_TALK_TO_YOU)
                    elif peer.fsm.state is not State.CLOSED:
                        self._fsm(peer, Event.STOP)
                    else:
                        self._forget(peer)
            else:
                peer.config = pc
                peer.dynamic = False
                peer.removed = False
                peer.realm = pc.realm or peer.realm
                if pc.tw is not None or old.tw != new.tw:
                    peer.watchdog.tw = max(6.0, pc.tw if pc.tw is not None else new.tw)
                peer.hold_until = 0.0
                if pc.connect and peer.fsm.state is State.CLOSED and not self._stopping:
                    self._cancel_reconnect(peer)
                    self._fsm(peer, Event.START)
        for key, pc in new_peers.items():
            if key not in self._peers:
                self._add_configured_peer(pc)
        self._resolve_sources()
        old_listen = [(lc.transport, lc.host, lc.port) for lc in old.listen]
        new_listen = [(lc.transport, lc.host, lc.port) for lc in new.listen]
        if old_listen != new_listen:
            task = self._loop.create_task(self._relisten(new.listen))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _relisten(self, listens: list[ListenConfig]) -> None:
        """Close the listeners no longer configured, open the new ones; keep the rest."""
        wanted = {(lc.transport, lc.host, lc.port): lc for lc in listens}
        for key in [k for k in self._servers if k not in wanted]:
            server, _ = self._servers.pop(key)
            server.close()
        for key, lc in wanted.items():
            if key not in self._servers:
                try:
                    await self._listen(lc)
                except OSError as exc:
                    log.error("cannot listen on %s:%s: %s", lc.host, lc.port, exc)
        self.listen_addresses[:] = [a for _, addrs in self._servers.values() for a in addrs]

    # -- listening and connecting ------------------------------------------------------------------

    def _new_conn(self, initiator: bool, kind: str, verify: bool = False) -> Connection:
        cfg = self.config
        assert self._loop is not None
        conn = Connection(
            self,
            self._loop,
            initiator=initiator,
            kind=kind,
            max_length=cfg.max_message_length,
            high_water=cfg.write_high_water,
            max_inflight=cfg.max_inflight_per_connection,
        )
        if verify:
            conn.tags["tls_verify"] = True
        if not initiator:
            self._accepted(conn)
        return conn

    def _accepted(self, conn: Connection) -> None:
        """At accept (for TLS before the handshake, when asyncio creates the protocol): the
        CER timer starts now, so it covers the handshake, and the total cap is applied."""
        loop = self._loop
        assert loop is not None
        if len(self._inbound) >= self.config.max_pre_cer:
            conn.tags["refuse"] = "too many connections without CER"
            return
        conn.cer_deadline = loop.time() + self.config.cer_timeout
        self._inbound.add(conn)

    async def _listen(self, lc: ListenConfig) -> None:
        assert self._loop is not None
        if lc.transport == "sctp":
            from chargegw.peer import sctp

            server = await sctp.start_server(
                self._loop,
                lambda: self._new_conn(False, "sctp"),
                lc.host,
                lc.port,
                extra_addresses=lc.extra_addresses,
                streams=self.config.sctp_streams,
                nodelay=self.config.sctp_nodelay,
            )
        else:
            ctx = None
            verify = False
            if lc.transport == "tls":
                if lc.tls is None:
                    raise ValueError("a TLS listener needs tls settings")
                ctx = _tls_server_context(lc.tls)
                verify = lc.tls.verify_peer
            kind = lc.transport
            server = await self._loop.create_server(
                lambda: self._new_conn(False, kind, verify),
                lc.host,
                lc.port,
                ssl=ctx,
                ssl_handshake_timeout=self.config.tls_handshake_timeout if ctx else None,
                reuse_address=True,
                backlog=512,
            )
        addrs = []
        for sock in server.sockets:
            name = sock.getsockname()
            addrs.append((lc.transport, name[0], name[1]))
        self._servers[(lc.transport, lc.host, lc.port)] = (server, addrs)
        self.listen_addresses.extend(addrs)

    def _add_configured_peer(self, pc: PeerConfig) -> PeerInfo:
        tw = pc.tw if pc.tw is not None else self.config.tw
        peer = PeerInfo(pc.name, self.config.origin_host, pc, tw, self.config)
        self._peers[peer.key] = peer
        self.peers[peer.name] = peer
        if pc.connect and not self._stopping:
            self._fsm(peer, Event.START)
        return peer

    def _start_connect(self, peer: PeerInfo) -> None:
        assert self._loop is not None
        if peer.connect_task is not None and not peer.connect_task.done():
            return
        peer.connect_task = self._loop.create_task(self._connect(peer))

    async def _connect(self, peer: PeerInfo) -> None:
        pc = peer.config
        loop = self._loop
        assert loop is not None
        conn: Connection | None = None
        try:
            if pc is None:
                raise ConnectionError("peer no longer configured")
            if pc.transport == "sctp":
                from chargegw.peer import sctp

                _, conn = await sctp.open_connection(
                    loop,
                    lambda: self._new_conn(True, "sctp"),
                    pc.host,
                    pc.effective_port,
                    peer_addresses=pc.peer_addresses,
                    local_addresses=pc.local_addresses,
                    streams=self.config.sctp_streams,
                    nodelay=self.config.sctp_nodelay,
                    timeout=self.config.connect_timeout,
                )
            else:
                kw: dict[str, Any] = {}
                verify = False
                if pc.transport == "tls":
                    tls = pc.tls or TlsConfig()
                    kw["ssl"] = _tls_client_context(tls)
                    kw["server_hostname"] = tls.server_hostname or pc.name
                    kw["ssl_handshake_timeout"] = self.config.tls_handshake_timeout
                    verify = tls.verify_peer
                if pc.local_addresses:
                    kw["local_addr"] = (pc.local_addresses[0], 0)
                kind = pc.transport
                _, conn = await asyncio.wait_for(
                    loop.create_connection(
                        lambda: self._new_conn(True, kind, verify),
                        pc.host,
                        pc.effective_port,
                        **kw,
                    ),
                    self.config.connect_timeout,
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.info("connect to %s failed: %s", peer.name, exc)
            peer.connect_task = None
            self._fsm(peer, Event.I_RCV_CONN_NACK)
            return
        peer.connect_task = None
        assert conn is not None
        if peer.fsm.state not in (State.WAIT_CONN_ACK, State.WAIT_CONN_ACK_ELECT) or self._stopping:
            conn.close()
            return
        conn.peer = peer
        conn.peer_name = peer.name
        peer.conn_i = conn
        self._fsm(peer, Event.I_RCV_CONN_ACK, conn)

    def _cancel_reconnect(self, peer: PeerInfo) -> None:
        if peer.reconnect_handle is not None:
            peer.reconnect_handle.cancel()
            peer.reconnect_handle = None

    def _schedule_reconnect(self, peer: PeerInfo) -> None:
        """After Closed: when (and whether) to connect again, per the DPR cause we got."""
        pc = peer.config
        loop = self._loop
        if self._stopping or pc is None or not pc.connect or peer.removed or loop is None:
            return
        cfg = self.config
        now = loop.time()
        cause = peer.disc_cause_rcvd
        peer.disc_cause_rcvd = None
        if cause == DisconnectCause.DO_NOT_WANT_TO_TALK_TO_YOU:
            peer.hold_until = math.inf  # until update_config or a request needs this peer
            log.info("%s said DO_NOT_WANT_TO_TALK_TO_YOU: not reconnecting", peer.name)
            return
        if cause == DisconnectCause.BUSY:
            delay = cfg.busy_holdoff
            peer.hold_until = now + delay
            log.info("%s said BUSY: reconnecting in %.0f s", peer.name, delay)
        elif cause == DisconnectCause.REBOOTING:
            peer.attempts = 0
            delay = cfg.reconnect_min
        else:
            delay = min(cfg.reconnect_max, cfg.reconnect_min * (2 ** min(peer.attempts, 16)))
            delay *= random.uniform(0.8, 1.2)
            peer.attempts += 1
        self._cancel_reconnect(peer)
        peer.reconnect_handle = loop.call_later(delay, self._reconnect, peer)

    def _reconnect(self, peer: PeerInfo) -> None:
        peer.reconnect_handle = None
        if self._stopping or peer.removed or peer.config is None:
            return
        if peer.fsm.state is State.CLOSED:
            self._fsm(peer, Event.START)

    def _kick_held(self, names: Iterable[str]) -> None:
        """A request found no route: reconnect held peers that could have taken it."""
        for name in names:
            peer = self._peers.get(name.lower())
            if (
                peer is not None
                and peer.hold_until > 0
                and peer.fsm.state is State.CLOSED
                and peer.config is not None
                and peer.config.connect
            ):
                log.info("reconnecting %s on demand", peer.name)
                peer.hold_until = 0.0
                self._cancel_reconnect(peer)
                self._fsm(peer, Event.START)

    def _forget(self, peer: PeerInfo) -> None:
        if self._peers.get(peer.key) is peer:
            del self._peers[peer.key]
        if self.peers.get(peer.name) is peer:
            del self.peers[peer.name]

    def _disconnect(self, peer: PeerInfo, cause: int) -> None:
        """Stop -> DPR: the peer leaves the routing view at once; pending answers still drain."""
        self._fsm(peer, Event.STOP, cause=cause)

    # -- the state machine's actions ---------------------------------------------------------------

    def _fsm(
        self,
        peer: PeerInfo,
        event: Event,
        conn: Connection | None = None,
        msg: Message | None = None,
        peer_host: str | None = None,
        cause: int | None = None,
    ) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        prev = peer.fsm.state
        actions = peer.fsm.handle(event, now, peer_host=peer_host)
        for action in actions:
            try:
                self._do(peer, action, conn, msg, cause)
            except Exception:
                log.exception("%s: action %s failed", peer.name, action.value)
        new = peer.fsm.state
        if new is not prev:
            log.debug("%s: %s --%s--> %s", peer.name, prev.value, event.value, new.value)
            self._transition(peer, prev, new, now)

    def _do(
        self,
        peer: PeerInfo,
        action: Action,
        conn: Connection | None,
        msg: Message | None,
        cause: int | None,
    ) -> None:
        cfg = self.config
        if action is Action.I_SND_CONN_REQ:
            self._start_connect(peer)
        elif action is Action.R_ACCEPT:
            assert conn is not None
            peer.conn_r = conn
            conn.peer = peer
            conn.peer_name = peer.name
            self._pre_cer_done(conn)
        elif action is Action.R_SND_CEA:
            c = peer.conn_r
            if c is not None:
                cer = c.tags.get("cer")
                c.send(capmod.build_cea(cfg, cer, host_ips=self._host_ips(c)).encode())
        elif action is Action.I_SND_CER:
            c = peer.conn_i
            if c is not None:
                cer = capmod.build_cer(cfg, self._host_ips(c))
                cer.hop_by_hop = c.pending.new_hbh()
                cer.end_to_end = self._e2e.next()
                c.send(cer.encode())
        elif action is Action.CLEANUP:
            if peer.connect_task is not None:
                peer.connect_task.cancel()
                peer.connect_task = None
            if peer.conn_i is not None:
                peer.conn_i.abort()
                peer.conn_i = None
        elif action is Action.ERROR:
            if peer.connect_task is not None:
                peer.connect_task.cancel()
                peer.connect_task = None
            for c in (peer.conn_i, peer.conn_r):
                if c is not None:
                    c.close()
            peer.conn_i = peer.conn_r = None
        elif action is Action.I_DISC:
            if peer.conn_i is not None:
                peer.conn_i.close()
                peer.conn_i = None
        elif action is Action.R_DISC:
            if peer.conn_r is not None:
                peer.conn_r.close()
                peer.conn_r = None
        elif action is Action.R_REJECT:
            if conn is not None:
                cer = conn.tags.get("cer")
                wait = peer.fsm.state not in OPEN_STATES and peer.fsm.state is not State.CLOSING
                rc = capmod.ELECTION_LOST if wait else UNABLE_TO_COMPLY
                text = "election lost" if wait else "already connected to this peer"
                conn.send(capmod.build_cea(cfg, cer, rc, error_message=text).encode())
                conn.close()
                self._pre_cer_done(conn)
        elif action is Action.SND_DPR:
            c = peer.conn
            if c is not None:
                dpr = capmod.build_dpr(cfg, DisconnectCause.REBOOTING if cause is None else cause)
                dpr.hop_by_hop = c.pending.new_hbh()
                dpr.end_to_end = self._e2e.next()
                c.send(dpr.encode())
        elif action is Action.SND_DPA:
            c = peer.conn
            if c is not None and msg is not None:
                c.send(capmod.build_dpa(cfg, msg).encode())
        elif action is Action.ELECT or action is Action.PROCESS_CER or action is Action.PROCESS_CEA:
            pass  # capabilities were checked and stored on the connection before the event

    def _transition(self, peer: PeerInfo, prev: State, new: State, now: float) -> None:
        if new in OPEN_STATES and prev not in OPEN_STATES:
            conn = peer.conn_i if new is State.I_OPEN else peer.conn_r
            if conn is None:  # cannot happen with the RFC table; be safe
                log.error("%s: open without a connection", peer.name)
                return
            peer.conn = conn
            conn.open = True
            conn.watchdog = peer.watchdog
            caps: PeerCapabilities = conn.caps
            peer.caps = caps
            peer.apps = conn.tags.get("common", frozenset())
            peer.remote_apps = frozenset(caps.app_ids())
            peer.remote_relay = caps.relay
            if peer.realm is None or peer.dynamic:
                peer.realm = caps.origin_realm
            peer.connected_at = time.time()
            peer.attempts = 0
            peer.orderly = False
            log.info(
                "%s: %s via %s %s (apps %s)",
                peer.name,
                new.value,
                conn.kind,
                conn.remote,
                sorted(peer.apps),
            )
            self._wd_actions(peer, peer.watchdog.connection_up(now))
            waiters, peer._open_waiters = peer._open_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        elif new is State.CLOSED:
            old = peer.conn
            peer.conn = None
            for c in (peer.conn_i, peer.conn_r):
                if c is not None:
                    c.close()
            peer.conn_i = peer.conn_r = None
            if old is not None:
                old.open = False
                if not old.closed:
                    old.close()
                self._failover(peer, old.pending.drain())
            if prev in OPEN_STATES or prev is State.CLOSING:
                if peer.orderly:
                    peer.watchdog.reset()
                else:
                    peer.watchdog.connection_down(now)
                log.info("%s: closed%s", peer.name, " (DPR/DPA)" if peer.orderly else "")
            if peer.dynamic:
                self._forget(peer)
            else:
                self._schedule_reconnect(peer)
        elif new is State.CLOSING:
            # Not usable any more (state is not open); requests in flight may still be answered.
            pass

    def _wd_actions(self, peer: PeerInfo, actions: list[WdAction]) -> None:
        for action in actions:
            conn = peer.conn
            if action is WdAction.SEND_DWR:
                if conn is not None:
                    dwr = capmod.build_dwr(self.config)
                    dwr.hop_by_hop = conn.pending.new_hbh()
                    dwr.end_to_end = self._e2e.next()
                    conn.send(dwr.encode())
            elif action is WdAction.FAILOVER:
                log.warning("%s: watchdog %s, failing over", peer.name, peer.watchdog.state.value)
                if conn is not None:
                    self._failover(peer, conn.pending.drain())
            elif action is WdAction.FAILBACK:
                log.info("%s: watchdog OKAY again", peer.name)
            elif action is WdAction.CLOSE:
                log.warning("%s: watchdog closes the connection", peer.name)
                if conn is not None:
                    event = Event.I_PEER_DISC if conn is peer.conn_i else Event.R_PEER_DISC
                    conn.abort()
                    self._fsm(peer, event, conn)

    # -- Connection callbacks -----------------------------------------------------------------------

    def conn_made(self, conn: Connection) -> None:
        """Accepted (for TLS: handshake done): the caps on connections without CER."""
        if conn.initiator:
            return
        loop = self._loop
        assert loop is not None
        cfg = self.config
        src = _source_ip(conn.remote)
        why = conn.tags.pop("refuse", None)
        if why is None and self._stopping:
            why = "stopping"
        elif why is None and self._inbound_by_src[src] >= cfg.max_pre_cer_per_source:
            why = f"too many connections without CER from {src}"
        elif why is None and (
            conn.closing  # timed out by the housekeeping tick during the TLS handshake
            or (conn.cer_deadline is not None and loop.time() >= conn.cer_deadline)
        ):
            why = "no CER in time (the TLS handshake used up the CER timer)"
        if why is not None:
            # Closed before any decoding work: a flood of idle connections must not use up
            # memory or descriptors, or crowd out well-behaved peers.
            self._pre_cer_done(conn)
            self.stats["refused_at_accept"] += 1
            now = loop.time()
            if now - self._refused_at >= 1.0:
                self._refused_at = now
                log.warning("%r: closed at accept: %s", conn, why)
            conn.abort()
            return
        conn.tags["src"] = src
        self._inbound_by_src[src] += 1

    def _pre_cer_done(self, conn: Connection) -> None:
        """The connection leaves the pre-CER set (accepted, refused, closed or timed out)."""
        conn.cer_deadline = None
        self._inbound.discard(conn)
        if "src" in conn.tags:
            src = conn.tags.pop("src")
            n = self._inbound_by_src[src] - 1
            if n > 0:
                self._inbound_by_src[src] = n
            else:
                del self._inbound_by_src[src]

    def conn_lost(self, conn: Connection, exc: Exception | None) -> None:
        self._pre_cer_done(conn)
        peer: PeerInfo | None = conn.peer
        if peer is None or self._loop is None:
            return
        if conn is peer.conn_i:
            self._fsm(peer, Event.I_PEER_DISC, conn)
        elif conn is peer.conn_r:
            self._fsm(peer, Event.R_PEER_DISC, conn)
        if len(conn.pending):
            self._failover(peer, conn.pending.drain())

    def conn_framing_error(self, conn: Connection, exc: FramingError) -> None:
        """Unrecoverable framing: answer what can be answered, then close. The codec hands
        over the complete frames that preceded the fault (`exc.frames`) and the octets from
        the bad header on (`exc.rest`)."""
        self.stats["framing_errors"] += 1
        log.warning("%r: framing error: %s", conn, exc)
        good = exc.frames
        if conn.open and good:
            conn._in_receive = True
            try:
                self.conn_frames(conn, good)
            except Exception:  # the frames' own faults are logged there; still close below
                log.exception("%r: frame handling failed", conn)
            finally:
                conn._in_receive = False
        bad = exc.rest
        if exc.result_code == UNSUPPORTED_VERSION and len(bad) >= 20 and bad[4] & 0x80:
            # Say why before closing (also before CER).
            ans = error_answer_bytes(
                bad[:20],
                UNSUPPORTED_VERSION,
                origin_host=self.config.origin_host,
                origin_realm=self.config.origin_realm,
                error_message=str(exc),
            )
            if ans:
                conn.send(ans)
            conn.close()
            return
        if conn.open:
            conn.close()
            return
        conn.abort()

    def conn_frames(self, conn: Connection, frames: list[bytes]) -> None:
        if not conn.open:
            for i, data in enumerate(frames):
                if conn.closing or conn.closed:
                    return
                try:
                    self._pre_open(conn, data)
                except Exception:
                    log.exception("%r: handling a message before open", conn)
                    conn.abort()
                    return
                if conn.open:
                    rest = frames[i + 1 :]
                    if rest:
                        self.conn_frames(conn, rest)
                    return
            return
        peer: PeerInfo = conn.peer
        loop = self._loop
        assert loop is not None
        now = loop.time()
        wd = peer.watchdog
        wd.last_rx = now
        discard = False
        if wd.state is not WdState.OKAY:
            self._wd_actions(peer, wd.message_received(now))
            discard = wd.state is WdState.REOPEN and self.config.reopen_discards_requests
        unpack = _HDR4.unpack_from
        pop = conn.pending.pop
        decode = Message.decode
        for data in frames:
            fc, app, hbh, e2e = unpack(data, 4)
            if app == 0:
                try:
                    self._base(conn, peer, data, fc, hbh, now)
                except Exception:
                    log.exception("%s: base message handling failed", peer.name)
                continue
            if fc & _R:
                if discard:
                    continue
                try:
                    self._request(conn, peer, data, fc, app, hbh, e2e, now)
                except Exception:
                    log.exception("%s: request handling failed", peer.name)
                continue
            entry = pop(hbh)
            if entry is None:
                log.debug("%s: answer with unknown hop-by-hop %#x dropped", peer.name, hbh)
                continue
            fut = entry.waiter
            if fut is None or fut.done():
                continue
            if entry.data[16:20] != data[16:20]:
                log.warning("%s: answer end-to-end mismatch, dropped", peer.name)
                fut.set_exception(RequestError(UNABLE_TO_DELIVER, "answer end-to-end id mismatch"))
                continue
            try:
                fut.set_result(decode(data))
            except CodecError as exc:
                fut.set_exception(RequestError(exc.result_code, f"undecodable answer: {exc}"))
            except Exception as exc:  # a codec bug must not take the connection down
                log.exception("%s: answer decoding failed", peer.name)
                fut.set_exception(RequestError(UNABLE_TO_COMPLY, f"undecodable answer: {exc}"))

    # -- before the peer is open -------------------------------------------------------------------

    def _pre_open(self, conn: Connection, data: bytes) -> None:
        fc, app, hbh, e2e = _HDR4.unpack_from(data, 4)
        code = fc & 0xFFFFFF
        is_req = bool(fc & _R)
        if conn.peer is None:
            if conn.initiator:
                conn.close()
                return
            # An inbound connection is anonymous until its CER (RFC 6733 5.6.1).
            if not (is_req and code == CMD_CER and app == 0):
                log.info("%r: message (code %d) before CER, closing", conn, code)
                conn.close()
                return
            self._accept_cer(conn, data)
            return
        peer: PeerInfo = conn.peer
        if conn.initiator:
            if conn is not peer.conn_i:
                conn.close()
                return
            if code == CMD_CER and not is_req and app == 0:
                self._on_cea(peer, conn, data)
            else:
                log.info("%s: code %d while waiting for CEA", peer.name, code)
                self._fsm(peer, Event.I_RCV_NON_CEA, conn)
            return
        # An accepted responder connection awaiting the election: the peer should be quiet.
        log.info("%s: code %d on a connection awaiting election, dropped", peer.name, code)

    def _accept_cer(self, conn: Connection, data: bytes) -> None:
        cfg = self.config
        try:
            msg = Message.decode(data, max_length=cfg.max_message_length)
        except CodecError as exc:
            ans = answer_for_codec_error(
                data, exc, origin_host=cfg.origin_host, origin_realm=cfg.origin_realm
            )
            if ans:
                conn.send(ans)
            conn.close()
            return
        configured = [pc.name for pc in cfg.peers]
        src = _source_ip(conn.remote)
        try:
            caps, common = capmod.check_cer(
                msg, cfg, configured, from_loopback=src is not None and src.is_loopback
            )
            why = self._identity_error(conn, caps.origin_host, src)
            if why is not None:
                raise CapabilitiesError(capmod.UNKNOWN_PEER, why, caps=caps)
        except CapabilitiesError as exc:
            self.stats["rejected_cer"] += 1
            who = exc.caps.origin_host if exc.caps else "?"
            log.warning("%r: CER from %s refused: %d %s", conn, who, exc.result_code, exc)
            cea = capmod.build_cea(
                cfg,
                msg,
                exc.result_code,
                host_ips=self._host_ips(conn),
                error_message=str(exc),
                failed_avp=exc.failed_avp,
            )
            conn.send(cea.encode())
            conn.close()
            return
        conn.caps = caps
        conn.tags["common"] = common
        conn.tags["cer"] = msg
        peer = self._peers.get(caps.origin_host.lower())
        if peer is None:
            peer = PeerInfo(caps.origin_host, cfg.origin_host, None, cfg.tw, cfg)
            peer.realm = caps.origin_realm
            self._peers[peer.key] = peer
            self.peers[peer.name] = peer
        self._fsm(peer, Event.R_CONN_CER, conn, peer_host=caps.origin_host)
        if conn.peer is not peer and not conn.closing:
            conn.close()

    def _on_cea(self, peer: PeerInfo, conn: Connection, data: bytes) -> None:
        try:
            msg = Message.decode(data, max_length=self.config.max_message_length)
            caps, common = capmod.check_cea(msg, self.config, peer.name)
            why = tls_identity_error(conn, caps.origin_host)
            if why is not None:
                raise CapabilitiesError(capmod.UNKNOWN_PEER, why, caps=caps)
        except (CodecError, CapabilitiesError) as exc:
            rc = getattr(exc, "result_code", None)
            log.warning("%s: CEA refused (%s): %s", peer.name, rc, exc)
            self._fsm(peer, Event.I_RCV_BAD_CEA, conn)
            return
        conn.caps = caps
        conn.tags["common"] = common
        self._fsm(peer, Event.I_RCV_CEA, conn)

    def _identity_error(self, conn: Connection, origin_host: str, src: Any) -> str | None:
        """Why this connection may not speak as `origin_host` (None: it may).

        A configured peer with `source` set is bound to those addresses; over verified TLS
        the certificate must name the Origin-Host.
        """
        why = tls_identity_error(conn, origin_host)
        if why is not None:
            return why
        key = origin_host.lower()
        pc = next((p for p in self.config.peers if p.name.lower() == key), None)
        if pc is None or pc.source is None:
            return None
        if src is not None and self._source_allowed(pc.source, src):
            return None
        self._resolve_sources(only_missing=False)  # DNS may have moved: look again
        return f"peer {origin_host!r} may not connect from {src}"

    def _source_allowed(self, sources: list[str], src: Any) -> bool:
        text = str(src)
        for entry in sources:
            try:
                net = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                if text in self._resolved.get(entry.lower(), ()):
                    return True
                continue
            if src.version == net.version and src in net:
                return True
        return False

    def _resolve_sources(self, only_missing: bool = True) -> None:
        """Look up the host names in PeerConfig.source (in the background, never blocking)."""
        loop = self._loop
        if loop is None:
            return
        for pc in self.config.peers:
            for entry in pc.source or ():
                try:
                    ipaddress.ip_network(entry, strict=False)
                    continue
                except ValueError:
                    pass
                name = entry.lower()
                if only_missing and name in self._resolved:
                    continue
                if any(t.get_name() == f"resolve:{name}" for t in self._tasks):
                    continue
                task = loop.create_task(self._resolve(name), name=f"resolve:{name}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _resolve(self, name: str) -> None:
        assert self._loop is not None
        try:
            infos = await asyncio.wait_for(self._loop.getaddrinfo(name, None), 5.0)
        except Exception as exc:
            log.warning("cannot resolve peer source %r: %s", name, exc)
            self._resolved.setdefault(name, frozenset())
            return
        ips = set()
        for info in infos:
            ip = _source_ip(info[4])
            if ip is not None:
                ips.add(str(ip))
        self._resolved[name] = frozenset(ips)

    def _host_ips(self, conn: Connection) -> list[str]:
        """Host-IP-Address values: every local address of an SCTP association, else config."""
        if conn.kind == "sctp" and conn.transport is not None:
            local = conn.transport.get_extra_info("local_addresses")
            if local:
                return [a[0] if isinstance(a, tuple) else str(a) for a in local]
        ips = list(self.config.host_ip_addresses)
        if ips:
            return ips
        local = conn.local
        return [local[0]] if isinstance(local, tuple) and local else ["127.0.0.1"]

    # -- base protocol messages on an open connection ---------------------------------------------

    def _base(
        self, conn: Connection, peer: PeerInfo, data: bytes, fc: int, hbh: int, now: float
    ) -> None:
        code = fc & 0xFFFFFF
        cfg = self.config
        i_side = conn is peer.conn_i
        if fc & _R:
            if code == CMD_DWR:
                peer.stats["dwr_in"] += 1
                dwr = Message.decode(data)
                conn.send(capmod.build_dwa(cfg, dwr).encode())
            elif code == CMD_DPR:
                dpr = Message.decode(data)
                try:
                    cause = dpr.get("Disconnect-Cause")
                except CodecError:
                    cause = None
                peer.disc_cause_rcvd = None if cause is None else int(cause)
                peer.orderly = True
                log.info("%s: DPR received (cause %s)", peer.name, cause)
                self._fsm(peer, Event.I_RCV_DPR if i_side else Event.R_RCV_DPR, conn, msg=dpr)
            elif code == CMD_CER:
                cer = Message.decode(data)
                conn.send(
                    capmod.build_cea(
                        cfg, cer, UNABLE_TO_COMPLY, error_message="CER on an open connection"
                    ).encode()
                )
            else:
                self._request(
                    conn, peer, data, fc, 0, hbh, struct.unpack_from(">I", data, 16)[0], now
                )
            return
        if code == CMD_DWR:
            conn.pending.pop(hbh)
            self._wd_actions(peer, peer.watchdog.dwa_received(now))
        elif code == CMD_DPR:
            conn.pending.pop(hbh)
            if peer.fsm.state is State.CLOSING:
                peer.orderly = True
                self._fsm(peer, Event.I_RCV_DPA if i_side else Event.R_RCV_DPA, conn)
        elif code == CMD_CER:
            pass  # a stray CEA
        else:
            entry = conn.pending.pop(hbh)
            if entry is not None and entry.waiter is not None and not entry.waiter.done():
                try:
                    entry.waiter.set_result(Message.decode(data))
                except CodecError as exc:
                    entry.waiter.set_exception(RequestError(exc.result_code, str(exc)))

    # -- application requests ----------------------------------------------------------------------

    def _send_error(
        self,
        conn: Connection,
        peer: PeerInfo,
        req: Message | bytes,
        rc: int,
        text: str | None = None,
        failed: Any = None,
    ) -> None:
        cfg = self.config
        ans = error_answer_bytes(
            req,
            rc,
            origin_host=cfg.origin_host,
            origin_realm=cfg.origin_realm,
            error_message=text,
            failed_avp=failed,
        )
        if ans is not None:
            peer.stats["errors_out"] += 1
            conn.send(ans)

    def _request(
        self,
        conn: Connection,
        peer: PeerInfo,
        data: bytes,
        fc: int,
        app: int,
        hbh: int,
        e2e: int,
        now: float,
    ) -> None:
        peer.stats["requests_in"] += 1
        code = fc & 0xFFFFFF
        handlers = self._handlers
        handler = handlers.get((app, code))
        if handler is None:
            handler = handlers.get((app, None))
            if handler is None:
                if app in self._handler_apps:
                    self._send_error(
                        conn, peer, data, COMMAND_UNSUPPORTED, f"command {code} not supported"
                    )
                else:
                    self._send_error(
                        conn,
                        peer,
                        data,
                        APPLICATION_UNSUPPORTED,
                        f"application {app} not supported",
                    )
                return
        if fc & _E:
            self._send_error(conn, peer, data, INVALID_HDR_BITS, "E bit set in a request")
            return
        cfg = self.config
        try:
            msg = Message.decode(data, max_length=cfg.max_message_length)
        except CodecError as exc:
            ans = answer_for_codec_error(
                data, exc, origin_host=cfg.origin_host, origin_realm=cfg.origin_realm
            )
            if ans is not None:
                conn.send(ans)
            return
        except Exception:
            log.exception("%s: request decoding failed", peer.name)
            self._send_error(conn, peer, data, UNABLE_TO_COMPLY, "undecodable request")
            return
        # Routing reads: the codec's raw octets from its index, no value decoding.
        raw_value = msg.raw_value
        oh = raw_value("Origin-Host")
        dh = raw_value("Destination-Host")
        dr = raw_value("Destination-Realm")
        rr = msg.raw_values("Route-Record") or None
        if rr is not None or cfg.check_destination:
            bad = self._check_destination(dh, dr, rr, cfg.check_destination)
            if bad is not None:
                self._send_error(conn, peer, msg, bad[0], bad[1])
                return
        if cfg.validate_requests:
            try:
                msg.validate()
            except CodecError as exc:
                ans = answer_for_codec_error(
                    msg, exc, origin_host=cfg.origin_host, origin_realm=cfg.origin_realm
                )
                if ans is not None:
                    conn.send(ans)
                return
        dup = self._dup
        key = None
        if dup.max_size and oh is not None:
            key = (oh.lower(), e2e)
            hit = dup.get(key, now)
            if hit is not None:
                self.stats["duplicates"] += 1
                if hit is IN_PROGRESS:
                    log.info("%s: duplicate of a request still being handled, dropped", peer.name)
                else:
                    conn.send(hit[:12] + data[12:16] + hit[16:])
                return
        try:
            res = handler(msg, peer)
        except Exception as exc:
            self._handler_failed(conn, peer, msg, exc, key)
            return
        # A sync handler has answered already; only a later answer needs the IN_PROGRESS mark
        # (which catches a copy that arrives before it).
        if res is None:
            if key is not None:
                dup.begin(key, now)
                later = self._dup_later
                later[(peer.key, hbh)] = key
                if len(later) > dup.max_size:
                    later.popitem(last=False)
            return
        if type(res) is bytes:
            out = res
        elif isinstance(res, Message):
            if res.hop_by_hop != hbh or res.end_to_end != e2e:
                res.hop_by_hop = hbh  # an answer built from scratch: give it the request's ids
                res.end_to_end = e2e
            out = res.encode()
        elif inspect.isawaitable(res):
            if key is not None:
                dup.begin(key, now)
            self._spawn(conn, peer, msg, res, key, hbh)
            return
        else:
            self._handler_failed(
                conn, peer, msg, TypeError(f"handler returned {type(res).__name__}"), key
            )
            return
        conn.send(out)
        if key is not None:
            dup.put(key, out, now)

    def _check_destination(
        self, dh: bytes | None, dr: bytes | None, rr: list[bytes] | None, destination: bool = True
    ) -> tuple[int, str] | None:
        """3005 for a loop through us, 3002/3003 for a request that is not for this node."""
        own = self._own_host_b
        if rr:
            for value in rr:
                if value.lower() == own:
                    return LOOP_DETECTED, "own identity in Route-Record"
        if not destination:
            return None
        if dh is not None and dh.lower() != own:
            return UNABLE_TO_DELIVER, f"Destination-Host {_text(dh)} is not this node"
        if dr is not None and dr.lower() != self._own_realm_b and not self.config.relay:
            return REALM_NOT_SERVED, f"realm {_text(dr)} not served here"
        return None

    def _handler_failed(
        self, conn: Connection, peer: PeerInfo, msg: Message, exc: BaseException, key: Any
    ) -> None:
        if key is not None:
            self._dup.forget(key)
        if isinstance(exc, ProtocolError):
            self._send_error(conn, peer, msg, exc.result_code, exc.error_message, exc.failed_avp)
            return
        if isinstance(exc, AvpError):
            self._send_error(conn, peer, msg, exc.result_code, str(exc)[:200], exc.failed_avp)
            return
        self.stats["handler_errors"] += 1
        log.error("handler for app %d command %d failed", msg.app_id, msg.code, exc_info=exc)
        self._send_error(conn, peer, msg, UNABLE_TO_COMPLY, "internal error")

    def _spawn(
        self,
        conn: Connection,
        peer: PeerInfo,
        msg: Message,
        aw: Awaitable[Answer],
        key: Any,
        hbh: int,
    ) -> None:
        assert self._loop is not None
        conn.handler_started()
        task = self._loop.create_task(self._run_async(conn, peer, msg, aw, key, hbh))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_async(
        self,
        conn: Connection,
        peer: PeerInfo,
        msg: Message,
        aw: Awaitable[Answer],
        key: Any,
        hbh: int,
    ) -> None:
        try:
            try:
                res = await aw
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._handler_failed(conn, peer, msg, exc, key)
                return
            if res is None:
                if key is not None:
                    self._dup_later[(peer.key, hbh)] = key
                return
            if isinstance(res, Message) and (
                res.hop_by_hop != msg.hop_by_hop or res.end_to_end != msg.end_to_end
            ):
                res.hop_by_hop = msg.hop_by_hop
                res.end_to_end = msg.end_to_end
            out = res if type(res) is bytes else res.encode()  # type: ignore[union-attr]
            conn.send(out)
            if key is not None and self._loop is not None:
                self._dup.put(key, out, self._loop.time())
        finally:
            conn.handler_done()

    # -- routing and failover ----------------------------------------------------------------------

    def _route(self, app: int, dest_host: Any, dest_realm: Any, exclude: Iterable[str]) -> PeerInfo:
        try:
            return self._routing.select(self._peers, app, dest_host, dest_realm, exclude)  # type: ignore[return-value]
        except RoutingError as exc:
            names: list[str] = []
            if dest_host:
                names.append(str(dest_host))
            names.extend(pc.name for pc in self.config.peers)
            self._kick_held(names)
            raise RequestError(exc.result_code, str(exc)) from None

    def _failover(self, failed: PeerInfo, entries: list[PendingEntry]) -> None:
        """Resend pending requests to an alternate peer with the T flag (RFC 6733 5.5.4)."""
        if not entries:
            return
        loop = self._loop
        assert loop is not None
        now = loop.time()
        moved = failed_n = 0
        for e in entries:
            fut = e.waiter
            if fut is None or fut.done():
                continue
            app, dest_host, dest_realm, pinned, tried = e.meta
            if pinned or self._stopping:
                fut.set_exception(RequestError(UNABLE_TO_DELIVER, f"peer {failed.name} went away"))
                failed_n += 1
                continue
            if dest_host is not None and str(dest_host).lower() == failed.key:
                fut.set_exception(
                    RequestError(UNABLE_TO_DELIVER, f"Destination-Host {failed.name} went away")
                )
                failed_n += 1
                continue
            tried = (*tried, failed.key)
            try:
                alt = self._routing.select(self._peers, app, dest_host, dest_realm, tried)
            except RoutingError:
                fut.set_exception(
                    RequestError(UNABLE_TO_DELIVER, f"peer {failed.name} went away, no alternate")
                )
                failed_n += 1
                continue
            conn = alt.conn  # type: ignore[attr-defined]
            hbh = conn.pending.new_hbh()
            buf = bytearray(e.data)
            buf[4] |= 0x10  # T: possibly a retransmission
            buf[12:16] = hbh.to_bytes(4, "big")
            data = bytes(buf)
            conn.pending.add(
                hbh,
                now,
                e.timeout,
                fut,
                data,
                (app, dest_host, dest_realm, False, tried),
                deadline=e.deadline,
            )
            conn.send(data)
            moved += 1
        if moved or failed_n:
            log.info(
                "%s: failover moved %d pending requests, failed %d", failed.name, moved, failed_n
            )

    def _fail_all(self, conn: Connection, why: str) -> None:
        for e in conn.pending.drain():
            if e.waiter is not None and not e.waiter.done():
                e.waiter.set_exception(RequestError(UNABLE_TO_DELIVER, why))

    # -- timers ------------------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            await asyncio.sleep(_TICK)
            try:
                self._tick(loop.time())
            except Exception:
                log.exception("housekeeping failed")

    def _tick(self, now: float) -> None:
        for conn in list(self._inbound):
            if conn.cer_deadline is not None and now >= conn.cer_deadline:
                log.info("%r: no CER within %.1f s, closing", conn, self.config.cer_timeout)
                self._pre_cer_done(conn)
                conn.abort()
        for peer in list(self._peers.values()):
            fsm = peer.fsm
            if fsm.deadline is not None and now >= fsm.deadline:
                self._fsm(peer, Event.TIMEOUT)
            wd = peer.watchdog
            if wd.deadline is not None and now >= wd.deadline and peer.conn is not None:
                self._wd_actions(peer, wd.timer(now))
            conn = peer.conn
            if conn is not None and len(conn.pending):
                nd = conn.pending.next_deadline()
                if nd is not None and nd <= now:
                    for e in conn.pending.expire(now):
                        fut = e.waiter
                        if fut is not None and not fut.done():
                            fut.set_exception(
                                RequestTimeout(f"no answer from {peer.name} within {e.timeout} s")
                            )
        if now >= self._next_dup_evict:
            self._next_dup_evict = now + 1.0
            self._dup.evict(now)
