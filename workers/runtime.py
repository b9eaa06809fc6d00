"""The worker process: DEALER sockets to every gateway, credit, heartbeats, applications.

One asyncio loop per process. Each gateway link (workers/link.py) is a DEALER whose
routing id is the worker id, so a gateway recognises the worker across reconnects.

One request path: frames are drained in batches, the requests of a batch are grouped by
application, and each application's `handle_batch` is called once per batch with a list
of `Incoming` (workers/api.py; a `handle`-only application is adapted in workers/apps.py).
Answers that come back at once leave in one frame per batch; awaitable ones are flushed
at the end of the loop turn they complete in.

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
when it arrives and again just before dispatch (and when the application returns None
for it), and `Expired(id)` returns its slot.

tcp:// links are CURVE clients (worker.curve_secret_key, worker.curve_server_key); every
link has a maximum inbound frame size (diameter.max_message_length plus the envelope).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable
from functools import partial
from typing import Any

import zmq

from chargegw.codec import Message, ResultCode
from chargegw.ipc import protocol as pp
from chargegw.ipc import security as sec
from chargegw.ipc.zmqloop import LoopSocket
from chargegw.process import (
    EX_CONFIG,
    EX_TEMPFAIL,
    install_signals,
    run_loop,
    set_level,
    watch_parent,
)
from chargegw.workers.api import AppSpec, SendError
from chargegw.workers.apps import AppContext, AppLoadError, LoadedApp, batch_entry, load_handler
from chargegw.workers.dispatch import RequestPath
from chargegw.workers.link import Link
from chargegw.workers.outbound import Outbound
from chargegw.workers.stats import STATS, WorkerStats


def _shard_count(app: Any) -> int:
    """An application's shard count (0: not sharded)."""
    n = getattr(app, "shards", 0)
    return n if type(n) is int and n > 0 else 0


_Request = pp.Request  # looked up once per message on the request path
TICK = 0.1
FLUSH_AT = 64  # answers for one gateway that go out at once instead of at the end of the turn

log = logging.getLogger("chargegw.worker")


class WorkerRuntime(RequestPath):
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
        self.apps: dict[int, LoadedApp] = {}
        self.links: list[Link] = []
        self._peer_link: dict[str, Link] = {}
        self.out = Outbound(self)
        self._dirty: set[int] = set()  # indexes of links with something in their outbox
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._last_hb = 0.0
        self._tasks: set[asyncio.Future[Any]] = set()
        # call_later before the loop runs (applications' set-up in `chargegw worker` runs
        # before it starts): scheduled when `run` starts, not on a loop that never runs.
        self._deferred: list[tuple[float, Any]] = []
        self._stopping = False
        self._expired_logged = 0.0
        self.handled = 0
        self.errors = 0
        self.figures: WorkerStats = STATS  # reported to the gateways once a heartbeat

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
        ctx = AppContext(
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
        # After setup: an application may choose its entry point from its config.
        self.apps[spec.app_id] = LoadedApp(spec.app_id, app, ctx, batch_entry(app))

    # Running --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, drain_timeout: float = 10.0) -> None:
        """Serve until `stop` is set, then drain and say goodbye."""
        self._keys = self.client_keys()
        if not self.apps:
            self.load_apps()
        self._loop = asyncio.get_running_loop()
        deferred, self._deferred = self._deferred, []
        for delay, callback in deferred:
            self.call_later(delay, callback)
        for ep in self.gateways:
            # A process-unique starting gen: a restarted worker with the same id is a new
            # registration, never mistaken for the dead one.
            link = Link(
                endpoint=ep,
                sock=self._socket(ep),
                last_heard=time.monotonic(),
                gen=secrets.randbits(31),
                unacked_since=time.monotonic(),
            )
            idx = len(self.links)
            self.links.append(link)
            link.ls = LoopSocket(self._loop, link.sock, partial(self._on_frames, idx))
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
        link.ls = LoopSocket(self._loop, link.sock, partial(self._on_frames, i))
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
                    fut.set_exception(
                        SendError(ResultCode.DIAMETER_UNABLE_TO_DELIVER, "worker stopping")
                    )
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
                shards=self._shard_count(),
                shard_apps=sorted(a for a, e in self.apps.items() if _shard_count(e.app)),
                store=self.figures.store,
            ),
        )

    def _shard_count(self) -> int:
        """The charging store's shard count, as its sharded applications report it."""
        return max((_shard_count(e.app) for e in self.apps.values()), default=0)

    def _assign(self, i: int, m: pp.Assign) -> None:
        """A gateway's complete set of shards for us: the applications own the union over
        every gateway (claimed in the store before any request routed by it is handled,
        since the gateway sends Assign first on the same ordered pipe)."""
        link = self.links[i]
        link.shards = frozenset(s for s in m.shards if s >= 0)
        owned = frozenset().union(*(x.shards for x in self.links))
        for entry in self.apps.values():
            assign = getattr(entry.app, "assign_shards", None)
            if assign is None:
                continue
            try:
                assign(owned)
            except Exception:  # the store refuses now: requests get NotOwner and move on
                log.exception("application %d could not take its shards", entry.app_id)
        log.info(
            "gateway %s assigned %d shards (epoch %d); %d owned in all",
            link.endpoint,
            len(link.shards),
            m.epoch,
            len(owned),
        )

    def _reregister(self, i: int, why: str) -> None:
        link = self.links[i]
        link.gen += 1
        link.acked = False
        link.unacked_since = time.monotonic()
        log.info("worker %s registering again with %s (%s)", self.worker_id, link.endpoint, why)
        self.out.fail(link, f"gateway link reset ({why})")
        if not self._stopping:
            self._send_ready(i)

    def _tick(self) -> None:
        assert self._loop is not None
        self._tick_handle = self._loop.call_later(TICK, self._tick)
        try:
            now = time.monotonic()
            beat = now - self._last_hb >= self.heartbeat_interval
            stats: pp.Stats | None = None
            if beat:
                self._last_hb = now
                owned = len(frozenset().union(*(x.shards for x in self.links)))
                stats = self.figures.message(owned, handled=self.handled)
            for i, link in enumerate(self.links):
                if link.stuck:
                    link.send(self.max_frame)  # what zmq.Again held back; nothing new meanwhile
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
                    self._queue(
                        i,
                        pp.Heartbeat(time.time(), link.free, gen=link.gen, received=link.received),
                    )
                    if stats is not None:
                        self._queue(i, stats)
                if link.ls is not None:
                    link.ls.kick()
        except Exception:
            log.exception("worker tick failed")

    # Frames in ------------------------------------------------------------------------

    def _on_frames(self, i: int, batch: list[list[bytes]]) -> None:
        # What the batch queues leaves in the one flush at the end: no call_soon for it.
        self._flush_scheduled = True
        try:
            link = self.links[i]
            link.last_heard = time.monotonic()
            grouped: dict[int, list[pp.Request]] = {}
            now = time.time() + link.offset  # the gateway's clock, once per batch
            for frames in batch:
                try:
                    msgs = pp.decode(frames[-1])
                except pp.ProtocolError as exc:
                    log.warning("bad frame from gateway %s: %s", link.endpoint, exc)
                    continue
                for m in msgs:
                    # `type(m) is X` narrows m for mypy without an isinstance per message
                    if type(m) is _Request:
                        if not link.acked:  # sent under a registration the gateway fails over
                            link.stale += 1
                            continue
                        link.received += 1
                        if m.deadline <= now:  # as _expired says, with the batch's clock
                            self._drop_expired(i, m)
                            continue
                        reqs = grouped.get(m.app)
                        if reqs is None:
                            grouped[m.app] = [m]
                        else:
                            reqs.append(m)
                    elif type(m) is pp.OutAnswer:
                        self.out.answer(link, m)
                    elif type(m) is pp.Heartbeat:
                        link.offset = m.t - time.time()
                        now = time.time() + link.offset
                        if m.gen == link.gen:
                            link.acked = True
                        if m.free == pp.DRAIN_ACK:
                            link.drain_acked = True
                    elif type(m) is pp.Assign:
                        self._assign(i, m)
                    elif type(m) is pp.LogLevel:
                        self._set_level(m.level)
                    elif type(m) is pp.Reset:
                        self._reregister(i, "gateway does not know us")
                    elif type(m) is pp.Goodbye:
                        self._reregister(i, "gateway said goodbye")
            for app_id, reqs in grouped.items():
                self._dispatch(i, app_id, reqs)
        finally:
            self._flush()

    def _set_level(self, level: str) -> None:
        """The gateway's SIGHUP changed `logging.level`: apply it to this process now."""
        level = level[:16]
        try:
            old = set_level(level)
        except ValueError as exc:
            log.warning("gateway asked for log level %r: %s", level, exc)
            return
        if old != logging.getLogger("chargegw").level:
            log.warning("worker %s: log level is now %s (the gateway's reload)",
                        self.worker_id, level)  # fmt: skip
            log.debug("worker %s: debug lines on", self.worker_id)  # only when they are

    # Outgoing batches -----------------------------------------------------------------

    def _queue(self, i: int, m: pp.PoolMessage) -> None:
        link = self.links[i]
        box = link.outbox
        box.append(m)
        if link.stuck:
            return  # the tick retries
        if len(box) >= FLUSH_AT:
            link.send(self.max_frame)  # a big batch: let the gateway forward these meanwhile
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
            link.send(self.max_frame)
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
        dirty = self._dirty
        if dirty:
            self._dirty = set()
            links = self.links
            for i in dirty:
                links[i].send(self.max_frame)

    # Worker-initiated requests --------------------------------------------------------

    def send_request(
        self, request: Message, *, peer: str | None = None, timeout: float = 5.0
    ) -> Awaitable[Message]:
        return self.out.send_request(request, peer=peer, timeout=timeout)

    # Scheduling for applications ------------------------------------------------------

    def call_later(self, delay: float, callback: Any) -> None:
        loop = self._loop
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not running yet: `run` schedules it on its loop
                self._deferred.append((delay, callback))
                return

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
                    "free": link.free,
                    "stale_dropped": link.stale,
                    "expired_dropped": link.expired,
                }
                for link in self.links
            ],
        }


def run_worker(
    config: Any,
    *,
    stop: asyncio.Event | None = None,
    parent_pid: int | None = None,
    **overrides: Any,
) -> None:
    """Blocking entry point used by `chargegw worker` (installs signal handlers). With
    `parent_pid`, the worker also stops when that process is gone (launcher crashed)."""
    rt = WorkerRuntime.from_config(config, **overrides)
    rt.client_keys()  # PoolKeyError before anything starts
    rt.load_apps()

    async def main() -> None:
        ev = stop or asyncio.Event()
        install_signals(ev)
        if parent_pid:
            watch_parent(parent_pid, ev)
        await rt.run(ev, drain_timeout=config.pool.deadline + 1.0)

    run_loop(main())


__all__ = [
    "EX_CONFIG",
    "EX_TEMPFAIL",
    "AppLoadError",
    "WorkerRuntime",
    "load_handler",
    "run_worker",
]
