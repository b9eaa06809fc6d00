"""The worker process: DEALER sockets to every gateway, credit, heartbeats, applications.

One asyncio loop per process. Each gateway link is a DEALER whose routing id is the
worker id, so a gateway recognises the worker across reconnects. Frames are drained in
batches; sync handlers run inline and their answers leave in one frame per batch; async
handlers become tasks whose answers are flushed at the end of the loop turn.

Credit per link: `Ready.credit` slots. A link registers again (a new `gen`) when the
gateway says Reset or Goodbye, or goes silent. Requests taken under an older `gen` are
still finished (the applications are idempotent), but their answers are replaced by
`Credit(1)`: the gateway has already resent or answered them. A registration starts with
the gateway's Heartbeat carrying its gen; requests that arrive before it were sent under
the previous registration, which the gateway fails over, and are dropped unapplied.
Nothing that carries a slot back is ever dropped: when the socket says zmq.Again the
batch waits and is sent again, and heartbeats say `free` and `received` so that the
gateway can check the count.

Expired requests: a request whose deadline (the gateway's clock, estimated from its
heartbeats) has passed was already answered 3002 by the gateway. It is dropped unapplied
when it arrives and again just before dispatch, and `Expired(id)` returns its slot.

tcp:// links are CURVE clients (worker.curve_secret_key, worker.curve_server_key); every
link has a maximum inbound frame size (diameter.max_message_length plus the envelope).

Applications may define `handle_raw(raw: bytes, ctx) -> bytes` (or an awaitable of it) to
skip decoding; the null and test_app benchmark handlers do. An application may also define
`handle_raw_batch(raws: list[bytes], ctxs: list[RequestContext])`, returning a list with one
answer per request (bytes, a Message, or an exception for 5012), or an awaitable of that
list: the runtime then hands it all the raw requests of one drained batch at once, so the
application can decide them together (one store transaction) with no per-request future.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import secrets
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import zmq

from chargegw.codec import AvpError, CodecError, Message
from chargegw.workers import pool_protocol as pp
from chargegw.workers import pool_security as sec
from chargegw.workers.api import AppSpec, Incoming, RequestContext, SendError
from chargegw.workers.zmqloop import LoopSocket

UNABLE_TO_COMPLY = 5012
UNABLE_TO_DELIVER = 3002
APPLICATION_UNSUPPORTED = 3007
TICK = 0.1
FLUSH_AT = 64  # answers for one gateway that go out at once instead of at the end of the turn

log = logging.getLogger("chargegw.worker")

EX_CONFIG = 78  # a worker's exit status when an application cannot be loaded or set up
EX_TEMPFAIL = 75  # set-up failed for a reason that may pass (a store not up yet): restart later


class AppLoadError(Exception):
    """An application handler could not be imported or its setup(ctx) failed."""


def load_handler(spec: str) -> Any:
    """`module:attr`; a class is instantiated with no arguments."""
    mod_name, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(mod_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj() if inspect.isclass(obj) else obj


@dataclass(slots=True)
class _AppContext:
    """The WorkerContext one application sees (its own config table, shared runtime)."""

    origin_host: str
    origin_realm: str
    worker_id: str
    data_dir: str
    config: Mapping[str, Any]
    log: logging.Logger
    _runtime: WorkerRuntime

    def send_request(
        self, request: Message, *, peer: str | None = None, timeout: float = 5.0
    ) -> Awaitable[Message]:
        return self._runtime.send_request(request, peer=peer, timeout=timeout)

    def call_later(self, delay: float, callback: Any) -> None:
        self._runtime.call_later(delay, callback)


@dataclass(slots=True)
class _Link:
    endpoint: str
    sock: zmq.Socket
    ls: LoopSocket | None = None
    gen: int = 0
    acked: bool = False  # the gateway has answered our current Ready
    last_heard: float = 0.0
    last_ready: float = 0.0
    busy: int = 0  # requests from this link being handled (all gens)
    drain_acked: bool = False  # stopping: the gateway has seen our draining Goodbye
    unacked_since: float = 0.0  # when the current registration attempt began
    outbox: list[pp.PoolMessage] = field(default_factory=list)
    out_pending: dict[int, tuple[asyncio.Future[Message], asyncio.TimerHandle | None]] = field(
        default_factory=dict
    )
    requests: int = 0
    # This registration's slot count, reported in heartbeats: granted (Ready.credit plus
    # Credits since), received and done (answered or Expired) requests.
    ready_gen: int = -1  # the gen `ready_credit` was computed for
    ready_credit: int = 0
    granted: int = 0
    received: int = 0
    done: int = 0
    offset: float = 0.0  # gateway clock minus ours, from its heartbeats
    stuck: bool = False  # the socket said zmq.Again: the outbox waits for the next tick
    stale: int = 0  # requests of a previous registration dropped unapplied
    expired: int = 0  # requests dropped unapplied because their deadline passed


@dataclass(slots=True)
class _App:
    app_id: int
    app: Any
    ctx: _AppContext
    raw: Callable[..., Any] | None
    raw_batch: Callable[..., Any] | None = None


class WorkerRuntime:
    def __init__(
        self,
        *,
        gateways: list[str],
        apps: list[AppSpec],
        origin_host: str = "gw.localdomain",
        origin_realm: str = "localdomain",
        data_dir: str = "./data",
        worker_id: str | None = None,
        credit: int = 256,
        heartbeat_interval: float = 1.0,
        heartbeat_timeout: float = 3.0,
        context: zmq.Context | None = None,
        curve_secret_key: str = "",
        curve_server_key: str = "",
        max_frame: int = sec.frame_limit(1 << 20),
    ) -> None:
        if not gateways:
            raise ValueError("a worker needs at least one gateway endpoint")
        self.gateways = gateways
        self.specs = apps
        self.origin_host = origin_host
        self.origin_realm = origin_realm
        self.data_dir = data_dir
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.credit = credit
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self._ctx = context or zmq.Context.instance()
        self._keys: sec.ClientKeys | None = None
        self.curve_secret_key = curve_secret_key
        self.curve_server_key = curve_server_key
        self.max_frame = max_frame
        # An answer must fit a frame with its envelope; a bigger one is answered 5012.
        self.max_answer = max_frame - sec.ENVELOPE // 2
        self.apps: dict[int, _App] = {}
        self.links: list[_Link] = []
        self._peer_link: dict[str, _Link] = {}
        self._dirty: set[int] = set()  # indexes of links with something in their outbox
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._last_hb = 0.0
        self._next_out = 1
        self._rr = 0
        self._tasks: set[asyncio.Future[Any]] = set()
        self._stopping = False
        self._expired_logged = 0.0
        self.handled = 0
        self.errors = 0

    # Set-up ---------------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: Any, **overrides: Any) -> WorkerRuntime:
        kw: dict[str, Any] = dict(
            gateways=config.worker_gateways(),
            apps=[
                AppSpec(app_id=a.app_id, handler=a.handler, config=dict(a.config))
                for a in config.applications
            ],
            origin_host=config.identity.origin_host,
            origin_realm=config.identity.origin_realm,
            data_dir=config.data_path,
            worker_id=config.worker.id or None,
            credit=config.worker.credit,
            heartbeat_interval=config.worker.heartbeat_interval,
            heartbeat_timeout=config.worker.heartbeat_timeout,
            curve_secret_key=config.worker.curve_secret_key,
            curve_server_key=config.worker.curve_server_key,
            max_frame=sec.frame_limit(config.diameter.max_message_length),
        )
        kw.update(overrides)
        return cls(**kw)

    def load_apps(self) -> None:
        """Import and set up every application; AppLoadError names the one that failed (a
        bad handler or application config fails at start, not on the first request)."""
        os.makedirs(self.data_dir, exist_ok=True)
        for spec in self.specs:
            try:
                self._load_app(spec)
            except Exception as exc:
                raise AppLoadError(
                    f"application {spec.app_id} ({spec.handler}): {type(exc).__name__}: {exc}"
                ) from exc

    def _load_app(self, spec: AppSpec) -> None:
        app = load_handler(spec.handler)
        ctx = _AppContext(
            origin_host=self.origin_host,
            origin_realm=self.origin_realm,
            worker_id=self.worker_id,
            data_dir=self.data_dir,
            config=spec.config,
            log=logging.getLogger(f"chargegw.app.{spec.app_id}"),
            _runtime=self,
        )
        setup = getattr(app, "setup", None)
        if setup is not None:
            setup(ctx)
        self.apps[spec.app_id] = _App(
            spec.app_id,
            app,
            ctx,
            getattr(app, "handle_raw", None),
            getattr(app, "handle_batch", None),
        )

    # Running --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, drain_timeout: float = 10.0) -> None:
        """Serve until `stop` is set, then drain and say goodbye."""
        self._keys = self.client_keys()
        if not self.apps:
            self.load_apps()
        self._loop = asyncio.get_running_loop()
        for ep in self.gateways:
            # A process-unique starting gen: a restarted worker with the same id is a new
            # registration, never mistaken for the dead one.
            link = _Link(
                endpoint=ep,
                sock=self._socket(ep),
                last_heard=time.monotonic(),
                gen=secrets.randbits(31),
                unacked_since=time.monotonic(),
            )
            idx = len(self.links)
            self.links.append(link)
            link.ls = LoopSocket(
                self._loop, link.sock, lambda batch, i=idx: self._on_frames(i, batch)
            )
        for i in range(len(self.links)):
            self._send_ready(i)
        self._tick_handle = self._loop.call_later(TICK, self._tick)
        log.info(
            "worker %s serving apps %s for %s",
            self.worker_id,
            sorted(self.apps),
            ", ".join(self.gateways),
        )
        try:
            await stop.wait()
        finally:
            await self._shutdown(drain_timeout)

    def _socket(self, ep: str) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, self.worker_id.encode())
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_frame)
        if self._keys is not None:
            sec.curve_client(sock, self._keys)
        # Not ZMQ_IMMEDIATE: with it, what the gateway sent last (its Goodbye) is thrown
        # away unread when its connection drops. Without it, what we send while the
        # gateway is away waits (bounded by the HWM) and is sorted out by Reset/Ready.
        sock.setsockopt(zmq.SNDHWM, 10_000)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        # ZMTP heartbeats: a dead connection is closed (and the gateway frees our routing
        # id, which it never hands over) within the heartbeat timeout.
        sock.setsockopt(zmq.HEARTBEAT_IVL, max(1, int(self.heartbeat_interval * 1000)))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(1, int(self.heartbeat_timeout * 1000)))
        sock.connect(ep)
        return sock

    def _reconnect(self, i: int) -> None:
        """A fresh socket for a link whose connection ZeroMQ gave up on (a protocol error,
        such as an oversize frame, ends a session for good). What waits in the outbox stays."""
        link = self.links[i]
        assert self._loop is not None
        if link.ls is not None:
            link.ls.close()
        link.sock = self._socket(link.endpoint)
        link.ls = LoopSocket(self._loop, link.sock, lambda batch: self._on_frames(i, batch))
        link.stuck = False
        link.last_heard = link.unacked_since = time.monotonic()  # a while before another
        log.info("worker %s reconnecting to %s", self.worker_id, link.endpoint)

    def client_keys(self) -> sec.ClientKeys | None:
        """The CURVE keys, required when a gateway is on tcp:// and then used on every link
        (a gateway with a tcp:// bind is CURVE on all its endpoints); PoolKeyError."""
        if sec.needs_curve(self.gateways) or self.curve_secret_key:
            return sec.client_keys(self.curve_secret_key, self.curve_server_key)
        return None

    async def _shutdown(self, drain_timeout: float) -> None:
        self._stopping = True
        for i, link in enumerate(self.links):
            link.drain_acked = not link.acked  # nothing to wait for from an absent gateway
            self._queue(i, pp.Goodbye(reason="worker stopping", drain=True))
        self._flush()
        # The gateway answers the draining Goodbye; requests it sent before that arrive
        # first (one ordered pipe), so once every ack is in and nothing is busy, we are done.
        # A gateway that is gone will not ack: when nothing is busy, wait for acks only a
        # couple of heartbeats.
        start = time.monotonic()
        end = start + drain_timeout
        ack_end = start + max(0.5, 2 * self.heartbeat_interval)
        while (now := time.monotonic()) < end:
            if any(link.busy for link in self.links):
                await asyncio.sleep(0.01)
                continue
            if all(link.drain_acked for link in self.links) or now >= ack_end:
                break
            await asyncio.sleep(0.01)
        self._flush()
        for i in range(len(self.links)):
            self._queue(i, pp.Goodbye(reason="worker stopped"))
        self._flush()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        for link in self.links:
            for fut, timer in link.out_pending.values():
                if timer is not None:
                    timer.cancel()
                if not fut.done():
                    fut.set_exception(SendError(UNABLE_TO_DELIVER, "worker stopping"))
            if link.ls is not None:
                link.ls.close(linger=500)
        for t in list(self._tasks):
            t.cancel()
        for entry in self.apps.values():
            close = getattr(entry.app, "close", None)
            if close is not None:
                try:
                    res = close()
                    if inspect.isawaitable(res):
                        await res
                except Exception:
                    log.exception("application %d failed to close", entry.app_id)

    # Registration and heartbeats ------------------------------------------------------

    def _send_ready(self, i: int) -> None:
        link = self.links[i]
        link.last_ready = time.monotonic()
        if link.ready_gen != link.gen:  # a new registration; repeats grant the same
            link.ready_gen = link.gen
            link.ready_credit = link.granted = max(0, self.credit - link.busy)
            link.received = link.done = 0
        self._queue(
            i,
            pp.Ready(
                worker_id=self.worker_id,
                credit=link.ready_credit,
                apps=sorted(self.apps),
                gen=link.gen,
                pid=os.getpid(),
                host=socket.gethostname(),
            ),
        )

    def _reregister(self, i: int, why: str) -> None:
        link = self.links[i]
        link.gen += 1
        link.acked = False
        link.unacked_since = time.monotonic()
        log.info("worker %s registering again with %s (%s)", self.worker_id, link.endpoint, why)
        self._fail_out_requests(link, f"gateway link reset ({why})")
        if not self._stopping:
            self._send_ready(i)

    def _tick(self) -> None:
        assert self._loop is not None
        self._tick_handle = self._loop.call_later(TICK, self._tick)
        try:
            now = time.monotonic()
            beat = now - self._last_hb >= self.heartbeat_interval
            if beat:
                self._last_hb = now
            for i, link in enumerate(self.links):
                if link.stuck:
                    self._send_link(i)  # what zmq.Again held back; nothing new meanwhile
                silent = now - link.last_heard > self.heartbeat_timeout
                if (
                    silent
                    and not self._stopping
                    and (
                        link.stuck  # no pipe left to send on: ZeroMQ gave up on the session
                        # Unanswered: the gateway may still hold our routing id on a dead
                        # connection (it never hands one over), which ignores a new one.
                        or (
                            not link.acked and now - link.unacked_since > 2 * self.heartbeat_timeout
                        )
                    )
                ):
                    self._reconnect(i)
                if link.acked and silent:
                    self._reregister(i, "gateway silent")
                elif not link.acked and not self._stopping:
                    # Until the gateway answers, Ready again: quickly at first (registering
                    # fast matters), then once a heartbeat (they queue while it is away).
                    fast = now - link.unacked_since < 2.0
                    every = min(0.2, self.heartbeat_interval) if fast else self.heartbeat_interval
                    if now - link.last_ready >= every and not link.stuck:
                        self._send_ready(i)
                elif beat and not link.stuck:
                    free = link.granted - (link.received - link.done)
                    self._queue(
                        i, pp.Heartbeat(time.time(), free, gen=link.gen, received=link.received)
                    )
                if link.ls is not None:
                    link.ls.kick()
        except Exception:
            log.exception("worker tick failed")

    # Frames in ------------------------------------------------------------------------

    def _on_frames(self, i: int, batch: list[list[bytes]]) -> None:
        link = self.links[i]
        link.last_heard = time.monotonic()
        grouped: dict[int, list[pp.Request]] | None = None
        apps = self.apps
        for frames in batch:
            try:
                msgs = pp.decode(frames[-1])
            except pp.ProtocolError as exc:
                log.warning("bad frame from gateway %s: %s", link.endpoint, exc)
                continue
            for m in msgs:
                t = type(m)
                if t is pp.Request:
                    if not link.acked:  # sent under a registration the gateway fails over
                        link.stale += 1
                        continue
                    link.received += 1
                    if self._expired(link, m):  # type: ignore[arg-type]
                        self._drop_expired(i, m)  # type: ignore[arg-type]
                        continue
                    entry = apps.get(m.app)  # type: ignore[union-attr]
                    if entry is not None and entry.raw_batch is not None and m.raw:  # type: ignore[union-attr]
                        if grouped is None:
                            grouped = {}
                        grouped.setdefault(entry.app_id, []).append(m)  # type: ignore[arg-type]
                    else:
                        self._handle(i, m)  # type: ignore[arg-type]
                elif t is pp.OutAnswer:
                    self._out_answer(link, m)  # type: ignore[arg-type]
                elif t is pp.Heartbeat:
                    link.offset = m.t - time.time()  # type: ignore[union-attr]
                    if m.gen == link.gen:  # type: ignore[union-attr]
                        link.acked = True
                    if m.free == pp.DRAIN_ACK:  # type: ignore[union-attr]
                        link.drain_acked = True
                elif t is pp.Reset:
                    self._reregister(i, "gateway does not know us")
                elif t is pp.Goodbye:
                    self._reregister(i, "gateway said goodbye")
        if grouped is not None:
            for app_id, reqs in grouped.items():
                self._handle_batch(i, apps[app_id], reqs)
        self._flush()

    # Request handling -----------------------------------------------------------------

    def _expired(self, link: _Link, req: pp.Request) -> bool:
        return req.deadline - link.offset <= time.time()

    def _drop_expired(self, i: int, req: pp.Request) -> None:
        """Not applied: the gateway has answered (or is answering) it 3002 itself, and the
        client never saw a grant. The slot goes back."""
        link = self.links[i]
        link.expired += 1
        link.done += 1
        # One warning per second at most: a stalled worker may find thousands at once.
        now = time.monotonic()
        level = logging.WARNING if now - self._expired_logged >= 1.0 else logging.DEBUG
        if level == logging.WARNING:
            self._expired_logged = now
        log.log(
            level,
            "request for Session-Id %s is past its deadline: dropped unapplied (%d so far)",
            _session_id(req.raw) if req.raw else "?",
            link.expired,
        )
        self._queue(i, pp.Expired(req.id))

    def _handle(self, i: int, req: pp.Request) -> None:
        link = self.links[i]
        if self._expired(link, req):  # again just before dispatch
            self._drop_expired(i, req)
            return
        link.busy += 1
        link.requests += 1
        gen = link.gen
        self._peer_link[req.peer] = link
        rctx = RequestContext(
            peer=req.peer, deadline=req.deadline - link.offset, retransmit=req.retransmit
        )
        entry = self.apps.get(req.app)
        msg: Message | None = None
        try:
            if entry is None:
                msg = self._decode(req)
                result: Any = msg.answer(
                    APPLICATION_UNSUPPORTED,
                    origin_host=self.origin_host,
                    origin_realm=self.origin_realm,
                )
            elif entry.raw is not None and req.raw:
                result = entry.raw(req.raw, rctx)
            else:
                msg = self._decode(req)
                result = entry.app.handle(msg, rctx)
            if (
                type(result) is not bytes
                and not isinstance(result, Message)
                and inspect.isawaitable(result)
            ):
                fut = asyncio.ensure_future(result)
                self._tasks.add(fut)
                fut.add_done_callback(lambda f, m=msg: self._done(i, gen, req, m, f))
                return
        except AvpError as exc:
            result = self._protocol_error(req, exc)
        except Exception as exc:
            result = self._failed(req, msg, exc)
        self._finish(i, gen, req, msg, result)

    def _handle_batch(self, i: int, entry: _App, reqs: list[pp.Request]) -> None:
        """All requests of one drained batch for an application with `handle_raw_batch`."""
        link = self.links[i]
        now = time.time() + link.offset
        if any(r.deadline <= now for r in reqs):  # again just before dispatch
            for r in reqs:
                if r.deadline <= now:
                    self._drop_expired(i, r)
            reqs = [r for r in reqs if r.deadline > now]
            if not reqs:
                return
        n = len(reqs)
        link.busy += n
        link.requests += n
        gen = link.gen
        peer_link = self._peer_link
        ctxs = []
        for req in reqs:
            peer_link[req.peer] = link
            ctxs.append(
                RequestContext(
                    peer=req.peer, deadline=req.deadline - link.offset, retransmit=req.retransmit
                )
            )
        try:
            batch = [Incoming(r.raw, c) for r, c in zip(reqs, ctxs, strict=True)]
            results: Any = entry.raw_batch(batch)  # type: ignore[misc]
            if type(results) is not list and inspect.isawaitable(results):
                fut = asyncio.ensure_future(results)
                self._tasks.add(fut)
                fut.add_done_callback(lambda f: self._batch_done(i, gen, reqs, f))
                return
        except Exception as exc:
            results = [exc] * n
        self._finish_batch(i, gen, reqs, results)

    def _batch_done(
        self, i: int, gen: int, reqs: list[pp.Request], fut: asyncio.Future[Any]
    ) -> None:
        self._tasks.discard(fut)
        if fut.cancelled():
            results: Any = [RuntimeError("handler cancelled")] * len(reqs)
        elif (exc := fut.exception()) is not None:
            results = [exc] * len(reqs)
        else:
            results = fut.result()
        self._finish_batch(i, gen, reqs, results)
        self._schedule_flush()

    def _finish_batch(self, i: int, gen: int, reqs: list[pp.Request], results: Any) -> None:
        if type(results) is not list or len(results) != len(reqs):
            bad = RuntimeError(f"handle_raw_batch returned {type(results).__name__}, not a list "
                               f"of {len(reqs)} answers")  # fmt: skip
            results = [bad] * len(reqs)
        link = self.links[i]
        if gen != link.gen:
            link.busy -= len(reqs)
            self.handled += len(reqs)
            link.granted += len(reqs)
            self._queue(i, pp.Credit(len(reqs)))
            return
        fast: list[pp.PoolMessage] = []
        limit = self.max_answer
        for req, result in zip(reqs, results, strict=True):
            if type(result) is bytes and len(result) <= limit:
                link.busy -= 1
                link.done += 1
                self.handled += 1
                fast.append(pp.Answer(req.id, result))
            elif isinstance(result, AvpError):
                self._finish(i, gen, req, None, self._protocol_error(req, result))
            elif isinstance(result, BaseException):
                self._finish(i, gen, req, None, self._failed(req, None, result))
            elif result is None:  # dropped by the app: past its deadline
                link.busy -= 1
                self._drop_expired(i, req)
            elif type(result) is not bytes and inspect.isawaitable(result):
                fut = asyncio.ensure_future(result)
                self._tasks.add(fut)
                fut.add_done_callback(lambda f, r=req: self._done(i, gen, r, None, f))
            else:
                self._finish(i, gen, req, None, result)
        if fast:
            self._queue_many(i, fast)

    def _decode(self, req: pp.Request) -> Message:
        if req.raw:
            return Message.decode(req.raw)
        from chargegw.gateway.forwarding import rebuild

        return rebuild(req.decoded or {})

    def _done(
        self, i: int, gen: int, req: pp.Request, msg: Message | None, fut: asyncio.Future[Any]
    ) -> None:
        self._tasks.discard(fut)
        if fut.cancelled():
            result: Any = self._failed(req, msg, RuntimeError("handler cancelled"))
        elif (exc := fut.exception()) is not None:
            result = self._failed(req, msg, exc)
        else:
            result = fut.result()
        if result is None and gen == self.links[i].gen:  # dropped by the app: past its deadline
            self.links[i].busy -= 1
            self._drop_expired(i, req)
        else:
            self._finish(i, gen, req, msg, result)
        self._schedule_flush()

    def _finish(self, i: int, gen: int, req: pp.Request, msg: Message | None, result: Any) -> None:
        link = self.links[i]
        link.busy -= 1
        self.handled += 1
        try:
            if type(result) is bytes:
                raw = result
            elif isinstance(result, Message):
                raw = result.encode()
            elif result is None:
                raise RuntimeError("the handler returned no answer")
            else:
                raw = bytes(result)
        except Exception as exc:
            raw = self._failed(req, msg, exc)
        if len(raw) > self.max_answer:
            raw = self._failed(req, msg, ValueError(f"answer of {len(raw)} bytes is too large"))
        if gen == link.gen:
            link.done += 1
            self._queue(i, pp.Answer(req.id, raw))
        else:
            link.granted += 1
            self._queue(i, pp.Credit(1))

    def _failed(self, req: pp.Request, msg: Message | None, exc: BaseException) -> bytes:
        """5012, logged with the Session-Id; the worker lives on."""
        self.errors += 1
        sid = _session_id(req.raw) if req.raw else "?"
        log.error(
            "application %d failed on Session-Id %s: %s: %s (answering 5012)",
            req.app,
            sid,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        return self._error_answer(req, msg, UNABLE_TO_COMPLY, "the application failed")

    def _protocol_error(self, req: pp.Request, exc: AvpError) -> bytes:
        """A request the gateway let through (it checks top-level structure only) but that
        decodes badly deeper down: the per-RFC answer with the codec's Result-Code."""
        self.errors += 1
        try:
            hdr_only = _header_message(req.raw)
            ans = hdr_only.answer(
                exc.result_code,
                origin_host=self.origin_host,
                origin_realm=self.origin_realm,
                error_message=exc.error_message or None,
                failed_avp=exc.failed_avp,
            )
            return _with_session(ans, req.raw).encode()
        except Exception:
            return self._error_answer(req, None, exc.result_code or UNABLE_TO_COMPLY, str(exc))

    def _error_answer(self, req: pp.Request, msg: Message | None, code: int, text: str) -> bytes:
        try:
            base = msg if msg is not None else _with_session(_header_message(req.raw), req.raw)
            return base.answer(
                code,
                origin_host=self.origin_host,
                origin_realm=self.origin_realm,
                error_message=text,
            ).encode()
        except Exception:
            log.exception("cannot build a %d answer", code)
            return _minimal_answer(req, code, self.origin_host, self.origin_realm)

    # Outgoing batches -----------------------------------------------------------------

    def _queue(self, i: int, m: pp.PoolMessage) -> None:
        link = self.links[i]
        box = link.outbox
        box.append(m)
        if link.stuck:
            return  # the tick retries
        if len(box) >= FLUSH_AT:
            self._send_link(i)  # a big batch: let the gateway forward these while we go on
            return
        self._dirty.add(i)
        if not self._flush_scheduled:
            self._schedule_flush()

    def _queue_many(self, i: int, ms: list[pp.PoolMessage]) -> None:
        link = self.links[i]
        box = link.outbox
        box.extend(ms)
        if link.stuck:
            return
        if len(box) >= FLUSH_AT:
            self._send_link(i)
            return
        self._dirty.add(i)
        if not self._flush_scheduled:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, set()
        for i in dirty:
            self._send_link(i)

    def _send_link(self, i: int) -> None:
        link = self.links[i]
        msgs, link.outbox = link.outbox, []
        if not msgs:
            link.stuck = False
            return
        frames = _frames(msgs, self.max_frame)
        sent = 0
        try:
            for frame, n in frames:
                link.sock.send(frame, zmq.NOBLOCK)
                sent += n
            link.stuck = False
        except zmq.Again:
            # The pipe is full: keep what is left, in order, and try again on the next
            # tick. Answers and Credits carry slots; dropping them would shrink the window.
            link.outbox[:0] = msgs[sent:]
            if not link.stuck:
                log.warning("gateway %s not reading: holding %d messages", link.endpoint,
                            len(msgs) - sent)  # fmt: skip
            link.stuck = True
        except zmq.ZMQError as exc:
            log.warning("send to %s failed: %s", link.endpoint, exc)
        if link.ls is not None:
            link.ls.kick()

    # Worker-initiated requests --------------------------------------------------------

    def send_request(
        self, request: Message, *, peer: str | None = None, timeout: float = 5.0
    ) -> Awaitable[Message]:
        assert self._loop is not None, "send_request needs the worker loop running"
        fut: asyncio.Future[Message] = self._loop.create_future()
        try:
            raw = request.encode()
        except Exception as exc:
            fut.set_exception(SendError(UNABLE_TO_COMPLY, f"cannot encode the request: {exc}"))
            return fut
        if len(raw) > self.max_answer:
            fut.set_exception(
                SendError(UNABLE_TO_COMPLY, f"request of {len(raw)} bytes is too large")
            )
            return fut
        order = self._link_order(peer)
        if not order:
            fut.set_exception(SendError(UNABLE_TO_DELIVER, "no gateway connected"))
            return fut
        self._send_out(fut, raw, peer or "", timeout, order)
        return fut

    def _link_order(self, peer: str | None) -> list[int]:
        live = [i for i, link in enumerate(self.links) if link.acked]
        if not live:
            return []
        preferred = self._peer_link.get(peer) if peer else None
        if preferred is not None and preferred.acked:
            first = self.links.index(preferred)
        else:
            self._rr = (self._rr + 1) % len(live)
            first = live[self._rr]
        return [first] + [i for i in live if i != first]

    def _send_out(
        self, fut: asyncio.Future[Message], raw: bytes, peer: str, timeout: float, order: list[int]
    ) -> None:
        assert self._loop is not None
        i, rest = order[0], order[1:]
        link = self.links[i]
        oid = self._next_out
        self._next_out += 1
        inner: asyncio.Future[Message] = self._loop.create_future()
        timer = self._loop.call_later(timeout + 1.0, self._out_timeout, link, oid)
        link.out_pending[oid] = (inner, timer)
        self._queue(i, pp.OutRequest(oid, raw, peer, timeout))
        self._schedule_flush()

        def relay(f: asyncio.Future[Message]) -> None:
            if fut.done():
                return
            exc = f.exception() if not f.cancelled() else SendError(UNABLE_TO_DELIVER, "cancelled")
            if exc is None:
                fut.set_result(f.result())
            elif isinstance(exc, SendError) and exc.result_code == UNABLE_TO_DELIVER and rest:
                # That gateway cannot reach the peer (or went away): try the next one.
                live = [j for j in rest if self.links[j].acked]
                if live:
                    self._send_out(fut, raw, peer, timeout, live)
                    return
                fut.set_exception(exc)
            else:
                fut.set_exception(exc)

        inner.add_done_callback(relay)

    def _out_answer(self, link: _Link, m: pp.OutAnswer) -> None:
        entry = link.out_pending.pop(m.id, None)
        if entry is None:
            return
        fut, timer = entry
        if timer is not None:
            timer.cancel()
        if fut.done():
            return
        if m.error:
            fut.set_exception(SendError(m.error, m.reason or "error"))
            return
        try:
            fut.set_result(Message.decode(m.raw))
        except CodecError as exc:
            fut.set_exception(SendError(UNABLE_TO_COMPLY, f"undecodable answer: {exc}"))

    def _out_timeout(self, link: _Link, oid: int) -> None:
        entry = link.out_pending.pop(oid, None)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(
                SendError(UNABLE_TO_DELIVER, "no answer from the gateway in time")
            )

    def _fail_out_requests(self, link: _Link, why: str) -> None:
        pending, link.out_pending = link.out_pending, {}
        for fut, timer in pending.values():
            if timer is not None:
                timer.cancel()
            if not fut.done():
                fut.set_exception(SendError(UNABLE_TO_DELIVER, why))

    # Scheduling for applications ------------------------------------------------------

    def call_later(self, delay: float, callback: Any) -> None:
        loop = self._loop or asyncio.get_event_loop()

        def run() -> None:
            try:
                res = callback()
                if inspect.isawaitable(res):
                    fut = asyncio.ensure_future(res)
                    self._tasks.add(fut)
                    fut.add_done_callback(self._task_done)
            except Exception:
                log.exception("scheduled callback failed")

        loop.call_later(delay, run)

    def _task_done(self, fut: asyncio.Future[Any]) -> None:
        self._tasks.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            log.error("scheduled task failed", exc_info=fut.exception())

    def stats(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "handled": self.handled,
            "errors": self.errors,
            "links": [
                {
                    "endpoint": link.endpoint,
                    "gen": link.gen,
                    "acked": link.acked,
                    "busy": link.busy,
                    "requests": link.requests,
                    "free": link.granted - (link.received - link.done),
                    "stale_dropped": link.stale,
                    "expired_dropped": link.expired,
                }
                for link in self.links
            ],
        }


def _frames(msgs: list[pp.PoolMessage], limit: int) -> list[tuple[bytes, int]]:
    """`msgs` as frames of at most `limit` bytes (the gateway's inbound limit), each with
    how many messages it holds. Every message fits alone (answers are capped)."""
    frame = pp.encode(msgs)
    if len(frame) <= limit or len(msgs) == 1:
        return [(frame, len(msgs))]
    half = len(msgs) // 2
    return _frames(msgs[:half], limit) + _frames(msgs[half:], limit)


# Helpers for answering a request that could not be decoded as a whole ----------------

_AVP_HDR = struct.Struct("!I I")


def _session_id(raw: bytes) -> str:
    """The Session-Id from raw bytes, for logs ('?' when there is none)."""
    try:
        pos, end = 20, min(len(raw), int.from_bytes(raw[1:4], "big"))
        while pos + 8 <= end:
            code, fl = _AVP_HDR.unpack_from(raw, pos)
            length = fl & 0xFFFFFF
            if length < 8:
                break
            if code == 263 and not fl & 0x80000000:
                return raw[pos + 8 : pos + length].decode("utf-8", "replace")
            pos += (length + 3) & ~3
    except Exception:
        pass
    return "?"


def _header_message(raw: bytes) -> Message:
    """A request with the same header and no AVPs (to build an answer from)."""
    flags_code, app, hbh, e2e = struct.unpack_from("!IIII", raw, 4)
    return Message(
        code=flags_code & 0xFFFFFF,
        app_id=app,
        flags=flags_code >> 24,
        hop_by_hop=hbh,
        end_to_end=e2e,
    )


def _with_session(m: Message, raw: bytes) -> Message:
    sid = _session_id(raw)
    if sid != "?":
        m.set("Session-Id", sid)
    return m


def _minimal_answer(req: pp.Request, code: int, origin_host: str, origin_realm: str) -> bytes:
    """Last resort, built by hand: header, Result-Code, Origin-Host, Origin-Realm."""

    def avp(c: int, data: bytes) -> bytes:
        n = 8 + len(data)
        return struct.pack("!II", c, 0x40000000 | n) + data + b"\0" * (-n % 4)

    body = (
        avp(268, code.to_bytes(4, "big"))
        + avp(264, origin_host.encode())
        + avp(296, origin_realm.encode())
    )
    e2e = struct.unpack_from("!I", req.raw, 16)[0] if len(req.raw) >= 20 else 0
    flags = 0x40 | (0x20 if 3000 <= code < 4000 else 0)
    return (
        struct.pack(
            "!IIIII", (1 << 24) | (20 + len(body)), (flags << 24) | req.cmd, req.app, req.hbh, e2e
        )
        + body
    )


def run_worker(
    config: Any,
    *,
    stop: asyncio.Event | None = None,
    parent_pid: int | None = None,
    **overrides: Any,
) -> None:
    """Blocking entry point used by `chargegw worker` (installs signal handlers). With
    `parent_pid`, the worker also stops when that process is gone (launcher crashed)."""
    import signal

    rt = WorkerRuntime.from_config(config, **overrides)
    rt.client_keys()  # PoolKeyError before anything starts
    rt.load_apps()

    async def main() -> None:
        ev = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, ev.set)
            except (NotImplementedError, RuntimeError):
                pass
        if parent_pid:

            def watch() -> None:
                if os.getppid() != parent_pid:
                    log.warning("worker %s: parent %d is gone, stopping", rt.worker_id, parent_pid)
                    ev.set()
                else:
                    loop.call_later(1.0, watch)

            loop.call_later(1.0, watch)
        await rt.run(ev, drain_timeout=config.pool.deadline + 1.0)

    _run_loop(main())


def _run_loop(coro: Any) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


__all__ = ["EX_CONFIG", "AppLoadError", "WorkerRuntime", "load_handler", "run_worker"]
