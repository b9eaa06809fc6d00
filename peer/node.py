"""The asyncio Diameter Node: a thin adapter around the sans-IO peer machines.

Each peer is a `PeerInfo`, which *is* its sans-IO `PeerConnection` (peer/connection.py) plus
what only asyncio has: the connect task, the reconnect timer and the futures of `wait_open`.
The Node feeds the machines bytes, events and the loop's time, and acts on what they return:
answers resolve futures, a batch of requests goes back to its machine to call the handlers
(the awaitables they return run here, as tasks), Connect opens a socket, Failover resends
elsewhere. Sockets, TLS, SCTP and the listeners are in peer/sockets.py.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from chargegw.codec import Message, Peek
from chargegw.codec.constants import DisconnectCause, ResultCode
from chargegw.peer.admission import Admission
from chargegw.peer.config import NodeConfig, PeerConfig
from chargegw.peer.connection import (
    Deferred,
    PeerConnection,
    answer_bytes,
    answer_class,
    framing_reply,
    plan_failover,
)
from chargegw.peer.errors import ProtocolError, RequestError, RequestTimeout
from chargegw.peer.fsm import OPEN_STATES, State
from chargegw.peer.link import (
    AnswerReceived,
    CancelConnect,
    Connect,
    Context,
    Event,
    Failover,
    FramingFault,
    Link,
    PeerDown,
    PeerUp,
    RawHandler,
    RequestReceived,
)
from chargegw.peer.pending import EndToEndAllocator, PendingEntry
from chargegw.peer.relay import redirect_hosts
from chargegw.peer.routing import RoutingError, RoutingTable, Selector, least_outstanding
from chargegw.peer.sockets import NodeSockets
from chargegw.peer.stats import INTERVAL as STATS_INTERVAL
from chargegw.peer.stats import report as stats_report
from chargegw.peer.transport import Connection

log = logging.getLogger("chargegw.peer")

Answer = Message | bytes | None
# A handler may also return (not only raise) a ProtocolError: the same error answer, without
# unwinding its frames (the gateway's shed path).
Handler = Callable[[Message, "PeerInfo"], Answer | ProtocolError | Awaitable[Answer]]
RawHandlerFn = Callable[[bytes, Peek, "PeerInfo"], Answer | ProtocolError | Awaitable[Answer]]

_TICK = 0.05
_NOT_DELIVERED = ResultCode.DIAMETER_UNABLE_TO_DELIVER

__all__ = [
    "Node",
    "PeerInfo",
    "RequestError",
    "RequestTimeout",
    "Handler",
    "RawHandlerFn",
    "Answer",
]


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


class PeerInfo(PeerConnection):
    """One row of the peer table (`node.peers`): the peer's machine, live, plus its timers."""

    def __init__(self, name: str, ctx: Context, config: PeerConfig | None) -> None:
        super().__init__(name, ctx, config)
        self.dynamic = config is None  # admitted by the allowlist; forgotten once closed
        self.connected_at: float | None = None
        self.attempts = 0
        self.reconnect_handle: asyncio.TimerHandle | None = None
        self.connect_task: asyncio.Task[None] | None = None
        self.hold_until = 0.0  # no automatic reconnect before (loop time)
        self.removed = False
        self._open_waiters: list[asyncio.Future[None]] = []

    @property
    def watchdog_state(self) -> str:
        return self.watchdog.state.value

    @property
    def conn(self) -> Connection | None:
        """The open connection (its asyncio Protocol)."""
        link = self.link
        return link.owner if link is not None else None

    @property
    def conn_i(self) -> Connection | None:
        return self.i.owner if self.i is not None else None

    @property
    def conn_r(self) -> Connection | None:
        return self.r.owner if self.r is not None else None

    @property
    def address(self) -> Any:
        c = self.link or self.i or self.r
        if c is not None:
            return c.remote
        if self.config is not None:
            return (self.config.host, self.config.effective_port)
        return None

    @property
    def transport(self) -> str | None:
        c = self.link
        return c.kind if c is not None else (self.config.transport if self.config else None)

    @property
    def is_open(self) -> bool:
        return self.fsm.state in OPEN_STATES

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
            "state": self.state.value,
            "watchdog": self.watchdog_state,
            "address": list(addr) if isinstance(addr, tuple) else addr,
            "transport": self.transport,
            "initiator": self.link is not None and self.link.initiator,
            "apps": sorted(self.apps),
            "outstanding": self.outstanding,
            "product_name": self.product_name,
            "configured": not self.dynamic,
            "connected_at": self.connected_at,
            **self.stats,
        }

    def __repr__(self) -> str:
        return (
            f"<PeerInfo {self.name} {self.state.value} wd={self.watchdog_state} "
            f"out={self.outstanding}>"
        )


class Node(NodeSockets):
    """A Diameter node: `await start()`, `add_handler(...)`, `await request(...)`, `await stop()`."""

    def __init__(self, config: NodeConfig, *, selector: Selector = least_outstanding) -> None:
        super().__init__()
        self.config = config
        self._selector = selector
        self._routing = RoutingTable(config.routes, config.default_route, selector)
        self._peers: dict[str, PeerInfo] = {}  # lower-cased name -> entry (the routing view)
        self.peers: dict[str, PeerInfo] = {}  # name -> entry (the public peer table)
        self._e2e = EndToEndAllocator(time.time())
        self.ctx = Context(config, self._e2e)
        self._admission = Admission(self.ctx)
        self._inbound = self._admission.inbound  # accepted, CER not yet accepted
        self._next_dup_evict = 0.0
        self._last_roll: float | None = None
        # node.stats: the node-wide counters (a dict); node.stats(): the full report
        self.stats = self.ctx.stats
        self.stats.report = self._stats_report

    # -- application API -------------------------------------------------------------------------

    def add_handler(self, app_id: int, handler: Handler, command: int | None = None) -> None:
        """Answer requests of `app_id` (one command, or all when command is None).

        The handler gets (request, PeerInfo) and returns the answer (a Message, or bytes
        already encoded), None to answer later with `send_answer`, or an awaitable of those.
        Raising ProtocolError/AvpError answers with that Result-Code; anything else 5012.
        Returning a ProtocolError answers as raising it does, at less cost (shedding).
        A returned answer is kept for duplicates (T flag); an error is not, so a
        retransmission after a passing failure (no worker, overload) is handled again.
        """
        self.ctx.handlers[(app_id, command)] = handler
        self.ctx.handler_apps.add(app_id)

    def add_raw_handler(
        self, app_id: int, handler: RawHandlerFn, command: int | None = None
    ) -> None:
        """Like `add_handler`, for a handler that forwards requests rather than reads them
        (the gateway's front end): it gets (octets, peek, PeerInfo), where the peek is the
        codec's `Peek` of the request (header, Session-Id and the other routing values),
        and the request is never decoded. Every check the Node makes on a request (header
        bits, AVP framing with its 5014, destination, loops, duplicates, and the grammar
        with `validate_requests`) is made before the handler is called; its results are
        taken as `add_handler` says."""
        self.ctx.handlers[(app_id, command)] = RawHandler(handler)
        self.ctx.handler_apps.add(app_id)

    def set_agent(self, agent: Any) -> None:
        """Act as a relay or proxy agent (a `peer.relay.RelayAgent`; None: no longer):
        application requests that are not this node's go upstream by this node's routing
        table, over its live peers; the others reach the handlers as before."""
        if agent is not None:
            agent.select = self._agent_select
            agent.servers = self._agent_servers
        self.ctx.agent = agent

    def _agent_servers(self, app: int, host: Any, realm: Any) -> list[str]:
        return redirect_hosts(self._routing, self._peers, self.config.peers, app, host, realm)

    def _agent_select(self, app: int, host: Any, realm: Any, exclude: Iterable[str]) -> PeerInfo:
        try:
            return self._routing.select(self._peers, app, host, realm, exclude)  # type: ignore[return-value]
        except RoutingError:
            names = [pc.name for pc in self.config.peers]
            self._kick_held([host, *names] if host else names)
            raise

    def remove_handler(self, app_id: int, command: int | None = None) -> None:
        self.ctx.handlers.pop((app_id, command), None)
        self.ctx.handler_apps = {a for a, _ in self.ctx.handlers}

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
            raise RequestError(_NOT_DELIVERED, "node is not running")
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
                raise RequestError(_NOT_DELIVERED, f"peer {peer!r} is not open")
            meta: tuple[Any, ...] = (app, None, None, True, ())
        else:
            dest_host = _text(msg.raw_value("Destination-Host"))
            dest_realm = _text(msg.raw_value("Destination-Realm"))
            target = self._route(app, dest_host, dest_realm, ())
            meta = (app, dest_host, dest_realm, False, ())
        conn: Connection = target.link.owner  # type: ignore[union-attr]
        while conn.write_paused:  # the peer reads slower than we send: wait, do not pile up
            try:
                await conn.drain()
            except ConnectionError:
                raise RequestError(_NOT_DELIVERED, f"peer {target.name!r} went away") from None
            if conn.closed or conn.closing:
                raise RequestError(_NOT_DELIVERED, f"peer {target.name!r} went away")
        fut = loop.create_future()
        msg.hop_by_hop = target.send_request(data, fut, timeout, meta, loop.time())
        return await fut

    def send_answer(self, peer_name: str, answer: Message | bytes, *, cache: bool = True) -> bool:
        """Send an answer a handler deferred (it returned None). False if the peer is gone.

        cache=False: the answer reports a passing condition (an error made locally: no
        worker, a deadline passed); it is not kept for duplicates, and a retransmission of
        the request is handled afresh instead of getting the stale error.
        """
        peer = self._peers.get(peer_name.lower())
        if peer is None or peer.link is None or self._loop is None:
            return False
        data = answer if isinstance(answer, bytes) else answer.encode()
        return peer.send_answer(data, self._loop.time(), cache)

    def send_request_nowait(self, peer_name: str, msg: Message) -> bool:
        """Fire a request at a peer without tracking an answer (answers are dropped)."""
        peer = self._peers.get(peer_name.lower())
        return peer is not None and peer.link is not None and peer.send_untracked(msg)

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

    # -- what the machines return --------------------------------------------------------------

    def _run(self, peer: PeerInfo, events: list[Event], now: float | None = None) -> None:
        """Carry out a machine's events, in order (`now`: the time they were made at)."""
        for ev in events:
            kind = type(ev)
            try:
                if kind is RequestReceived:
                    if now is None:
                        now = self._loop.time()  # type: ignore[union-attr]
                    deferred = peer.handle_requests(ev, now)  # type: ignore[arg-type]
                    if deferred:
                        self._defer(peer, ev.link, deferred, now)  # type: ignore[union-attr]
                elif kind is AnswerReceived:
                    fut = ev.waiter  # type: ignore[union-attr]
                    if not fut.done():
                        if ev.error is None:  # type: ignore[union-attr]
                            fut.set_result(ev.message)  # type: ignore[union-attr]
                        else:
                            fut.set_exception(ev.error)  # type: ignore[union-attr]
                elif kind is FramingFault:
                    framing_reply(self.ctx, ev.link, ev.error)  # type: ignore[union-attr,arg-type]
                elif kind is Failover:
                    self._failover(peer, ev.entries)  # type: ignore[union-attr]
                elif kind is Connect:
                    self._start_connect(peer)
                elif kind is CancelConnect:
                    if peer.connect_task is not None:
                        peer.connect_task.cancel()
                        peer.connect_task = None
                elif kind is PeerUp:
                    peer.connected_at = time.time()
                    peer.attempts = 0
                    waiters, peer._open_waiters = peer._open_waiters, []
                    for fut in waiters:
                        if not fut.done():
                            fut.set_result(None)
                elif kind is PeerDown:
                    if peer.dynamic:
                        self._forget(peer)
                    else:
                        self._schedule_reconnect(peer)
            except Exception:
                log.exception("%s: handling %s failed", peer.name, kind.__name__)

    def conn_data(self, conn: Connection, data: bytes) -> None:
        """Octets from a connection: its peer machine's, or the admission's before a CER."""
        link = conn.link
        m: PeerInfo | None = link.machine
        now = self._loop.time()  # type: ignore[union-attr]
        if m is not None:
            events = m.receive_data(link, data, now)
            if events:
                self._run(m, events, now)
            return
        if link.initiator:  # not ours yet (the connect task has not taken it): cannot happen
            link.close()
            return
        self._anonymous(link, data, now)

    def _anonymous(self, link: Link, data: bytes, now: float) -> None:
        """An inbound connection before its CER: the admission decides; then its machine."""
        adm = self._admission
        got = adm.receive(link, data)
        if adm.want_resolve:
            adm.want_resolve = False
            self._resolve_sources(only_missing=False)
        if got is None:
            return
        msg, caps, common, rest = got
        peer = self._peers.get(caps.origin_host.lower())
        if peer is None:
            peer = PeerInfo(caps.origin_host, self.ctx, None)
            peer.realm = caps.origin_realm
            self._peers[peer.key] = peer
            self.peers[peer.name] = peer
        self._run(peer, peer.accept_cer(link, msg, caps, common, now))
        if rest and link.machine is peer and not link.closing:
            self._run(peer, peer.receive_frames(link, rest, now))

    # -- the application's awaitables -----------------------------------------------------------

    def _defer(self, peer: PeerInfo, link: Link, deferred: list[Deferred], now: float) -> None:
        """Run the awaitables handlers returned; anything else they returned is a fault."""
        loop = self._loop
        assert loop is not None
        conn: Connection = link.owner
        for req, p, key, res in deferred:
            if not inspect.isawaitable(res):
                err = TypeError(f"handler returned {type(res).__name__}")
                peer.handler_failed(link, req, err, key)
                continue
            if key is not None:
                self.ctx.dup.begin(key, now)
            conn.handler_started()
            task = loop.create_task(self._run_async(conn, peer, link, req, p, key, res))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_async(
        self,
        conn: Connection,
        peer: PeerInfo,
        link: Link,
        req: Message | bytes,
        p: Peek,
        key: Any,
        aw: Awaitable[Answer],
    ) -> None:
        try:
            try:
                res = await aw
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                peer.handler_failed(link, req, exc, key)
                return
            now = self._loop.time() if self._loop is not None else 0.0
            if res is None:
                peer.answer_later(link, p.hop_by_hop, key, now, True)
                return
            if type(res) is bytes:
                peer.answer(link, res, key, now)
            else:
                out = answer_bytes(res, p, self.config)  # type: ignore[arg-type]
                peer.answer(link, out, key, now, answer_class(res))  # type: ignore[arg-type]
        finally:
            conn.handler_done()

    # -- routing and failover ------------------------------------------------------------------

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
        live = [e for e in entries if e.waiter is not None and not e.waiter.done()]
        if not live:
            return
        loop = self._loop
        assert loop is not None
        now = loop.time()

        def select(app: int, host: Any, realm: Any, tried: tuple[str, ...]) -> Any:
            return self._routing.select(self._peers, app, host, realm, tried)

        moved = failed_n = 0
        for e, alt, how in plan_failover(failed.key, live, select, self._stopping):
            if alt is None:
                e.waiter.set_exception(RequestError(_NOT_DELIVERED, str(how)))
                failed_n += 1
            else:
                alt.resend(e, how, now)
                moved += 1
        log.info("%s: failover moved %d pending requests, failed %d", failed.name, moved, failed_n)

    def _fail_all(self, link: Link, why: str) -> None:
        for e in link.pending.drain():
            if e.waiter is not None and not e.waiter.done():
                e.waiter.set_exception(RequestError(_NOT_DELIVERED, why))

    # -- timers --------------------------------------------------------------------------------

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
        self._admission.expire(now)
        for peer in list(self._peers.values()):
            events = peer.timer(now)
            if events:
                self._run(peer, events)
        if now >= self._next_dup_evict:
            self._next_dup_evict = now + 1.0
            self.ctx.dup.evict(now)
        last = self._last_roll
        if last is None:
            self._last_roll = now
        elif now - last >= STATS_INTERVAL:
            self.roll_stats(now)

    # -- statistics ----------------------------------------------------------------------------

    def roll_stats(self, now: float) -> None:
        """Close a statistics interval: rates and the last interval's percentiles (the tick
        calls this every `peer.stats.INTERVAL` seconds)."""
        last = self._last_roll
        elapsed = 0.0 if last is None else now - last
        self._last_roll = now
        for peer in self._peers.values():
            peer.counters.roll(elapsed)
        for row in self.ctx.commands.all():
            row.roll(elapsed)

    def _stats_report(self) -> dict[str, Any]:
        """What `node.stats()` returns: a plain dict (peer/stats.py `report`)."""
        peers = [(p.name, p.counters) for p in self.peers.values()]
        return stats_report(self.ctx.stats, peers, self.ctx.commands, STATS_INTERVAL)

    # -- lifecycle -----------------------------------------------------------------------------

    def _new_peer(self, pc: PeerConfig) -> PeerInfo:
        return PeerInfo(pc.name, self.ctx, pc)

    def _disconnect(self, peer: PeerInfo, cause: int = DisconnectCause.REBOOTING) -> None:
        """Stop -> DPR: the peer leaves the routing view at once; pending answers still drain."""
        assert self._loop is not None
        self._run(peer, peer.close(self._loop.time(), cause))

    def _closed_all(self) -> bool:
        return all(p.fsm.state is State.CLOSED for p in self._peers.values())
