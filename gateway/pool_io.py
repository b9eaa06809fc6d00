"""The gateway's ZeroMQ ROUTER: carries out what PoolCore decides.

Requests placed during one loop turn are batched per worker into one frame. Answers are
drained in batches and handed to `deliver(peer, raw)`. A periodic tick (every
`TICK` seconds) expires deadlines, sends heartbeats, drops silent workers and re-checks
the socket (see chargegw/ipc/zmqloop.py for why).

Trust (see chargegw/ipc/security.py): a pool with a tcp:// endpoint is CURVE on all its
endpoints, and a ZAP handler admits only the allowlisted worker keys; ipc:// sockets are
mode 0600 in a 0700 directory. No routing-id handover: a live identity stays with its
connection, and a Ready from another key under it is refused. Every frame is bounded
(ZMQ_MAXMSGSIZE in, batches split out). Workers may only send the server-initiated
commands (RAR, ASR, SNR and `pool.out_commands`).

Status is served on a separate ipc:// ROUTER (`pool.status_bind`, mode 0600) that only
the operator's user can reach: a DEALER that sends `StatusQuery` gets a `StatusReply` with
the JSON document (`chargegw status` does this). The worker endpoints never answer it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Collection
from typing import Any, Unpack

import orjson
import zmq

from chargegw.codec.constants import ResultCode
from chargegw.codec.header import HEADER
from chargegw.gateway.pool import (
    MAX_PLACED,
    IdentityInUse,
    NoWorker,
    Pending,
    PoolCore,
    Refused,
    RequestArgs,
    ShardCountMismatch,
    WorkerState,
)
from chargegw.gateway.pool_out import OutRequestFailed, OutRequestFn, OutRequests
from chargegw.ipc import protocol as pp
from chargegw.ipc import security as sec
from chargegw.ipc.zmqloop import LoopSocket

# Counters kept here rather than in the core's `Counters` (they are about frames and the
# socket); `chargegw status` and /metrics show them with the core's.
SERVER_COUNTERS = ("bad_frames", "bad_answers", "out_requests", "out_refused", "oversize",
                   "held_back")  # fmt: skip
_NOBLOCK = int(zmq.NOBLOCK)
_MORE_NOBLOCK = int(zmq.SNDMORE) | _NOBLOCK
TICK = 0.05
RETRY_PAUSE = 0.02  # seconds before a request its shard's owner refused is offered again
FLUSH_AT = 64  # messages for one worker that go out at once instead of at the end of the turn
GONE_KEPT = 32  # workers that left, remembered for `chargegw status` (the latest)
GONE_TEXT = 256  # characters of a gone worker's id and host kept
HWM = 100_000  # messages queued per worker pipe (each way) before a send is refused (zmq.Again)

DeliverFn = Callable[[str, bytes], None]
ErrorFn = Callable[[Pending, int, str], None]


class PoolServer(OutRequests):
    def __init__(
        self,
        core: PoolCore,
        endpoints: list[str],
        *,
        deliver: DeliverFn,
        error_answer: ErrorFn,
        out_request: OutRequestFn | None = None,
        status_extra: Callable[[], dict[str, Any]] | None = None,
        heartbeat_interval: float = 1.0,
        log: logging.Logger | None = None,
        context: zmq.Context | None = None,
        curve_secret_key: str = "",
        curve_workers: str = "",
        max_frame: int = sec.frame_limit(1 << 20),
        status_endpoint: str | None = None,
        out_commands: Collection[int] = sec.DEFAULT_OUT_COMMANDS,
        out_apps: Collection[int] | None = None,
    ) -> None:
        self.core = core
        self.endpoints = endpoints
        self.deliver = deliver
        self.error_answer = error_answer
        self.out_request = out_request
        self.status_extra = status_extra
        self.heartbeat_interval = heartbeat_interval
        self.log = log or logging.getLogger("chargegw.gateway.pool")
        self._ctx_arg = context
        self._ctx = context or zmq.Context.instance()
        self._own_ctx: zmq.Context | None = None
        self._auth: Any = None
        # The admitted worker keys (z85) with CURVE, None on ipc://: checked again at every
        # registration, so a key removed on SIGHUP (reload_keys) cannot register again on
        # the connection it already has.
        self._admitted: frozenset[bytes] | None = None
        self.curve_secret_key = curve_secret_key
        self.curve_workers = curve_workers
        self.max_frame = max_frame
        self.status_endpoint = status_endpoint
        self.out_commands = frozenset(out_commands)
        self.out_apps = frozenset(out_apps) if out_apps is not None else None
        self._status_ls: LoopSocket | None = None
        self._sock: zmq.Socket | None = None
        self._ls: LoopSocket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: dict[bytes, list[pp.PoolMessage]] = {}
        # Workers whose pipe was full (zmq.Again) at the last try: their box starts with
        # what it refused. True once due for another try (the worker was heard from, or the
        # tick came); until then a full pipe would only refuse again.
        self._held: dict[bytes, bool] = {}
        self.held_back = 0  # times a worker's full pipe refused a box (kept, sent later)
        self._flush_scheduled = False
        self._tick_handle: asyncio.TimerHandle | None = None
        self._last_hb = 0.0
        self._reset_sent: dict[bytes, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.bad_frames = 0
        self.bad_answers = 0
        self.out_requests = 0
        self.out_refused = 0
        self.oversize = 0
        self.started = time.time()
        self.on_idle: asyncio.Event | None = None
        # Told of each worker answer that left (the gateway's metrics); errors made here
        # go through error_answer, which counts its own.
        self.on_answer: Callable[[Pending, bytes], None] | None = None
        # Told of each registered worker's Ready and Stats (the metrics' worker figures;
        # hostile input it must survive itself).
        self.on_stats: Callable[[bytes, pp.PoolMessage, float], None] | None = None
        # What a worker reported, for its row of the status document (the metrics' figures).
        self.worker_report: Callable[[bytes], dict[str, Any]] | None = None
        # The latest workers that left, and why, for `chargegw status`.
        self.gone: deque[tuple[dict[str, Any], float]] = deque(maxlen=GONE_KEPT)
        self.log_level: str | None = None  # set by SIGHUP: sent to every worker, new ones too

    # Life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Bind; PoolKeyError (an OSError naming the config keys) when a tcp:// endpoint
        has no CURVE keys."""
        self._loop = asyncio.get_running_loop()
        curve = sec.needs_curve(self.endpoints)
        keys = sec.server_keys(self.curve_secret_key, self.curve_workers) if curve else None
        if keys is not None:
            self._admitted = frozenset(sec.allowed_keys(keys.allowed_dir))
            if not self._admitted:
                self.log.warning("pool.curve_workers %s admits no worker key", keys.allowed_dir)
            if self._ctx_arg is None:  # one ZAP handler per context: a context of our own
                self._ctx = self._own_ctx = zmq.Context()
            self._auth = sec.start_authenticator(self._ctx, keys)
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # No handover: a second connection under a live routing id does not take it over.
        sock.setsockopt(zmq.ROUTER_HANDOVER, 0)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, HWM)
        sock.setsockopt(zmq.RCVHWM, HWM)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_frame)
        # ZMTP heartbeats close dead connections, freeing their routing ids for reconnects.
        sock.setsockopt(zmq.HEARTBEAT_IVL, max(1, int(self.heartbeat_interval * 1000)))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(1, int(self.core.heartbeat_timeout * 1000)))
        if keys is not None:
            sec.curve_server(sock, keys)
        status: zmq.Socket | None = None
        try:
            for ep in self.endpoints:
                sec.bind(sock, ep)
            if self.status_endpoint:
                status = self._ctx.socket(zmq.ROUTER)
                status.setsockopt(zmq.LINGER, 0)
                status.setsockopt(zmq.MAXMSGSIZE, sec.STATUS_QUERY_MAX)
                sec.bind(status, self.status_endpoint)
        except BaseException:
            sock.close(linger=0)
            if status is not None:
                status.close(linger=0)
            self._stop_auth()
            raise
        self._sock = sock
        # With CURVE, frames come with their metadata: the sender's key owns its identity.
        self._ls = LoopSocket(self._loop, sock, self._on_frames, copy=keys is None)
        if status is not None:
            self._status_ls = LoopSocket(self._loop, status, self._on_status)
        self._tick_handle = self._loop.call_later(TICK, self._tick)

    def reload_keys(self, workers_dir: str) -> tuple[int, int]:
        """SIGHUP: admit the worker keys now in `workers_dir` (pool.curve_workers). New
        connections are checked against them by the ZAP handler; a registered worker whose
        key is no longer there is dropped at once (what it held is resent, its shards move
        under fencing, as for a silent worker) and told goodbye, and its connection, which
        CURVE admitted before, can no longer register. Returns (keys admitted, workers
        dropped); PoolKeyError (the running keys kept) when the directory cannot be read.
        Without CURVE (ipc://) there is nothing to reload."""
        if self._auth is None or self._admitted is None:
            return 0, 0
        try:
            admitted = frozenset(sec.allowed_keys(workers_dir))
        except (OSError, ValueError) as exc:  # no such directory, or a key file that is not one
            raise sec.PoolKeyError(f"pool.curve_workers {workers_dir}: {exc}") from None
        self._auth.configure_curve(domain=sec.ZAP_DOMAIN, location=workers_dir)
        self._admitted = admitted
        self.curve_workers = workers_dir
        revoked = [i for i, w in self.core.workers.items() if w.owner not in admitted]
        for ident in revoked:
            self._drop(ident, "its key was removed from pool.curve_workers")
            self._send_now(ident, pp.Goodbye(reason="key no longer admitted"))
        if self._outbox and not self._flush_scheduled:
            self._flush()
        if not admitted:
            self.log.warning("pool.curve_workers %s admits no worker key", workers_dir)
        return len(admitted), len(revoked)

    def _stop_auth(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._own_ctx is not None:
            self._own_ctx.term()
            self._own_ctx = None

    @property
    def bound(self) -> list[str]:
        """The endpoints as bound (a tcp port 0 or '*' resolved)."""
        if self._sock is None:
            return []
        last = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return [*self.endpoints[:-1], last] if self.endpoints else []

    async def drain(self, timeout: float) -> int:
        """Wait until no request is pending or `timeout` passes; returns what is left."""
        end = time.monotonic() + timeout
        while self.core.pending and time.monotonic() < end:
            await asyncio.sleep(0.02)
        return len(self.core.pending)

    def close(self, *, goodbye: bool = True) -> None:
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        for t in list(self._tasks):
            t.cancel()
        if self._sock is not None and goodbye:
            bye = pp.encode_one(pp.Goodbye(reason="gateway stopping"))
            for ident in list(self.core.workers):
                try:
                    self._sock.send_multipart([ident, bye], zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
        if self._ls is not None:
            self._ls.close(linger=200 if goodbye else 0)
            self._ls = None
        if self._status_ls is not None:
            self._status_ls.close()
            self._status_ls = None
        self._sock = None
        self._stop_auth()

    # Requests in ----------------------------------------------------------------------

    def submit(self, **kw: Unpack[RequestArgs]) -> None:
        """Place a request on a worker; raises NoWorker (3004 or 3002) when none can take it.
        `route`: when the session's route is dropped (PoolCore.place)."""
        refused = self.offer(**kw)
        if refused is not None:
            raise NoWorker(refused.result_code, refused.reason)

    def offer(
        self,
        *,
        peer: str,
        hbh: int,
        app: int,
        cmd: int,
        session_id: bytes,
        raw: bytes,
        ref: Any = None,
        shard: int = -1,
        route: int = 0,
    ) -> Refused | None:
        """`submit`, returning its refusal (a plain value) rather than raising it: the front
        end's shed path (see PoolCore.offer). The arguments are named, not packed into a
        dict and out again, and the clocks are read only for a request that is placed
        (two clock reads cost a shed 3004 about 1.3 us here): this runs for every request."""
        core = self.core
        w = core.target(peer, app, session_id, shard)
        if isinstance(w, Refused):
            return w
        p = core.put(
            w, peer=peer, hbh=hbh, app=app, cmd=cmd, session_id=session_id, raw=raw,
            now=time.monotonic(), wall_now=time.time(), ref=ref, shard=shard, route=route,
        )  # fmt: skip
        self._queue(p.worker, self._request(p))
        return None

    @staticmethod
    def _request(p: Pending) -> pp.Request:
        return pp.Request(
            p.id, p.peer, p.hbh, p.app, p.cmd, p.wall_deadline, p.raw, p.retransmit, p.shard
        )

    def _resend(self, ident: bytes, p: Pending) -> None:
        """A request held back for its shard owner's claim, unless it moved or ended since."""
        if self.core.pending.get(p.id) is p and p.worker == ident:
            self._queue(ident, self._request(p))

    def _send_assignments(self) -> None:
        """Queue each changed shard set (Assign) ahead of any request placed by it: the
        worker claims a shard before it handles a request routed by it."""
        core = self.core
        for ident, shards in core.take_assignments().items():
            self._queue(ident, pp.Assign(shards, core.epoch))

    def _queue(self, ident: bytes, msg: pp.PoolMessage) -> None:
        box = self._outbox.get(ident)
        if box is None:
            self._outbox[ident] = [msg]
        else:
            box.append(msg)
            if len(box) >= FLUSH_AT and ident not in self._held:
                # A big burst: let the worker start on it while we parse the rest.
                self._send_box(ident, self._outbox.pop(ident))
                return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        sock = self._sock
        if sock is None:
            return
        # Until the outbox is empty but for boxes held back and not due: sending may drop
        # a worker, which places its requests on others (more boxes).
        while self._outbox:
            if self._held:
                held = self._held
                boxes = {i: b for i, b in self._outbox.items() if held.get(i) is not False}
                if not boxes:
                    break
                for ident in boxes:
                    del self._outbox[ident]
            else:
                boxes, self._outbox = self._outbox, {}
            for ident, msgs in boxes.items():
                self._send_box(ident, msgs)
        if self._ls is not None:
            self._ls.kick()

    def _send_box(self, ident: bytes, msgs: list[pp.PoolMessage]) -> None:
        sock = self._sock
        if sock is None:
            return
        held = self._held.pop(ident, None) is not None
        if held:
            msgs = self._still_due(ident, msgs)
        frames = self._frames(ident, msgs)
        for i, (frame, _part) in enumerate(frames):
            try:
                # send_multipart's own loop and `SNDMORE | flags` (enum arithmetic) cost as
                # much as the sends: two plain sends with int flags, same semantics.
                sock.send(ident, _MORE_NOBLOCK)
                sock.send(frame, _NOBLOCK)
            except zmq.Again:
                # Its pipe is full (the high-water mark): a live worker that reads slowly
                # (CPU-starved, say). Dropping it would place everything it holds again
                # elsewhere, more load in an overload. Keep what did not go, in order and
                # ahead of anything queued since, and try again when it is due. The
                # multipart message is all or nothing: the refusal comes on its first part.
                rest = [m for _f, part in frames[i:] for m in part]
                later = self._outbox.pop(ident, None)
                self._outbox[ident] = rest + later if later else rest
                self._held[ident] = False
                self.held_back += 1
                if not held:
                    self.log.warning("worker %r not reading: holding %d messages", ident, len(rest))
                return
            except zmq.ZMQError as exc:
                # Unreachable (EHOSTUNREACH: its connection is gone) or a broken socket.
                self.log.warning("worker %r unreachable (%s): dropping it", ident, exc.strerror)
                self._drop(ident, "unreachable")
                return
        if held and frames:
            self.log.info("worker %r reads again: what was held went", ident)

    def _still_due(self, ident: bytes, msgs: list[pp.PoolMessage]) -> list[pp.PoolMessage]:
        """A held box before it goes: a request it holds that is no longer this worker's
        (its deadline passed and the 3002 left, or it was placed elsewhere) must not reach
        the worker now; an expired one's slot comes back here, since the worker will never
        answer it. A heartbeat is stamped afresh (the worker takes its clock offset from
        it), and of the plain ones only the first goes (the rest queued while it waited)."""
        core = self.core
        out: list[pp.PoolMessage] = []
        now = time.time()
        beat = False
        for m in msgs:
            t = type(m)
            if t is pp.Request:
                assert isinstance(m, pp.Request)
                p = core.pending.get(m.id)
                if p is None or p.worker != ident:
                    core.withdraw(ident, m.id)  # gives back an expired request's slot
                    continue
            elif t is pp.Heartbeat:
                assert isinstance(m, pp.Heartbeat)
                if m.free == -1:  # not a drain acknowledgement
                    if beat:
                        continue
                    beat = True
                m = pp.Heartbeat(now, m.free, m.gen, m.received)
            out.append(m)
        return out

    def _frames(
        self, ident: bytes, msgs: list[pp.PoolMessage]
    ) -> list[tuple[bytes, list[pp.PoolMessage]]]:
        """`msgs` in frames of at most `max_frame` bytes (the worker's inbound limit), each
        with the messages it holds. A request that cannot fit alone is taken back and
        answered 5012 here."""
        frame = pp.encode(msgs)
        if len(frame) <= self.max_frame:
            return [(frame, msgs)] if msgs else []
        if len(msgs) > 1:
            half = len(msgs) // 2
            return self._frames(ident, msgs[:half]) + self._frames(ident, msgs[half:])
        m = msgs[0]
        self.oversize += 1
        if type(m) is pp.Request:
            p = self.core.withdraw(ident, m.id)
            if p is not None:
                self.log.warning("request for Session-Id %s too large for the pool", _sid(p))
                self.error_answer(
                    p, ResultCode.DIAMETER_UNABLE_TO_COMPLY, "request too large for the pool"
                )
        else:
            self.log.error("%s of %d bytes too large for the pool", type(m).__name__, len(frame))
        return []

    # Frames in ------------------------------------------------------------------------

    def _on_frames(self, batch: list[list[Any]]) -> None:
        now = time.monotonic()
        core = self.core
        held = self._held
        for frames in batch:
            if len(frames) != 2:
                self.bad_frames += 1
                continue
            ident, frame = frames
            src: zmq.Frame | None = None
            if type(ident) is not bytes:  # CURVE: zmq.Frame with the sender's User-Id
                src = frame
                ident, frame = ident.bytes, frame.buffer
            if held and ident in held:
                held[ident] = True  # it reads again, maybe: its held box is due
            try:
                msgs = pp.decode(frame)
            except pp.ProtocolError as exc:
                self.bad_frames += 1
                self.log.warning("bad frame from %r: %s", ident, exc)
                continue
            known = core.seen(ident, now)
            for m in msgs:
                if type(m) is pp.Answer:
                    if known:
                        p = core.answer(ident, m.id, now)
                        if p is not None:
                            self._deliver(p, m.raw)
                    else:
                        self._reset(ident, now)
                else:
                    known = self._control(ident, m, known, now, src)
        if self._outbox and not self._flush_scheduled:
            self._flush()

    def _on_status(self, batch: list[list[bytes]]) -> None:
        """The operator's socket: StatusQuery gets the status document, nothing else."""
        ls = self._status_ls
        if ls is None:
            return
        for frames in batch:
            if len(frames) != 2:
                continue
            try:
                msgs = pp.decode(frames[1])
            except pp.ProtocolError:
                continue
            if any(type(m) is pp.StatusQuery for m in msgs):
                reply = pp.encode_one(pp.StatusReply(json=orjson.dumps(self.status())))
                try:
                    ls.sock.send_multipart([frames[0], reply], zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
        ls.kick()

    def _deliver(self, p: Pending, raw: bytes) -> None:
        # Cheap sanity check, so a buggy worker cannot put garbage on a peer's connection.
        if len(raw) >= 20:
            vl, fc, _app, hbh, _e2e = HEADER.unpack_from(raw)
            if (
                vl == (0x01000000 | len(raw))
                and not fc & 0x80000000
                and hbh == p.hbh
                and (fc & 0xFFFFFF) == p.cmd
            ):
                self.deliver(p.peer, raw)
                if self.on_answer is not None:
                    self.on_answer(p, raw)
                return
        self.bad_answers += 1
        self.log.error("invalid answer from a worker for Session-Id %s: answering 5012", _sid(p))
        self.error_answer(
            p, ResultCode.DIAMETER_UNABLE_TO_COMPLY, "the handler produced an invalid answer"
        )

    def _control(
        self, ident: bytes, m: pp.PoolMessage, known: bool, now: float, src: Any = None
    ) -> bool:
        core = self.core
        t = type(m)
        if t is pp.Ready:
            assert isinstance(m, pp.Ready)
            if m.version != pp.PROTOCOL_VERSION:
                self._send_now(
                    ident, pp.Goodbye(reason=f"protocol version {m.version} unsupported")
                )
                return known
            owner = _user_id(src)
            if self._admitted is not None and owner not in self._admitted:
                # admitted by CURVE when it connected, removed since (reload_keys)
                self.log.warning("registration refused: worker %s's key is no longer admitted",
                                 m.worker_id[:64])
                self._send_now(ident, pp.Goodbye(reason="key no longer admitted"))
                return known
            old = core.workers.get(ident)
            before = dict(core.workers)
            try:
                moved, failed = core.register(
                    ident,
                    worker_id=m.worker_id,
                    credit=m.credit,
                    apps=m.apps,
                    now=now,
                    gen=m.gen,
                    pid=m.pid,
                    host=m.host,
                    owner=owner,
                    shards=m.shards,
                    shard_apps=m.shard_apps,
                    address=_peer_address(src),
                )
            except IdentityInUse as exc:
                self.log.warning("registration refused: %s", exc)
                self._send_now(ident, pp.Goodbye(reason="identity in use by a live worker"))
                return known
            except ShardCountMismatch as exc:
                self.log.error("registration refused: %s", exc)
                self._send_now(ident, pp.Goodbye(reason=str(exc)))
                return known
            if old is not None and old is not core.workers.get(ident):
                # A new registration: what was queued for the old one is placed again.
                self._discard_box(ident)
            for gone, was in before.items():
                if gone != ident and gone not in core.workers:
                    self._gone(was, f"replaced by its restart {m.worker_id[:64]}", now)
                    # An earlier incarnation of this worker (PoolCore.register): its process
                    # is gone; what it held (what was queued for it too) is placed again below.
                    self._discard_box(gone)
                    self.log.warning(
                        "worker %r replaced by its restart %s: what it held is resent",
                        gone,
                        m.worker_id,
                    )
            self._send_assignments()
            self._reset_sent.pop(ident, None)
            if not known:
                self.log.info(
                    "worker %s registered (pid %s on %s, credit %d, apps %s)",
                    m.worker_id,
                    m.pid,
                    m.host or "?",
                    m.credit,
                    m.apps,
                )
            # The acknowledgement that starts the registration on the worker's side. It goes
            # before the requests placed again: what the old registration held may be resent
            # to this one, and the worker drops, unapplied, requests that come before it.
            self._queue(ident, pp.Heartbeat(time.time(), gen=m.gen))
            if self.log_level is not None:
                self._queue(ident, pp.LogLevel(self.log_level))
            self._settle(moved, failed, "worker re-registered")
            if self.on_stats is not None:
                self.on_stats(ident, m, now)
            return True
        if t is pp.StatusQuery:  # not on the worker endpoints (see _on_status)
            self.bad_frames += 1
            return known
        if not known:
            if t is not pp.Goodbye:
                self._reset(ident, now)
            return known
        if t is pp.Heartbeat:
            assert isinstance(m, pp.Heartbeat)
            w = core.workers.get(ident)
            if w is not None:
                w.heartbeat_at = now
            self._reconcile(ident, m)
        elif t is pp.Stats:
            if self.on_stats is not None:
                self.on_stats(ident, m, now)
        elif t is pp.Expired:
            assert isinstance(m, pp.Expired)
            core.counters.worker_expired += 1
            w = core.workers.get(ident)
            if w is not None:
                w.expired += 1
            p = core.answer(ident, m.id, now)
            if p is not None:  # the worker's clock saw the deadline pass first
                self.error_answer(
                    p,
                    ResultCode.DIAMETER_UNABLE_TO_DELIVER,
                    "deadline passed before the worker ran it",
                )
        elif t is pp.Moved:
            assert isinstance(m, pp.Moved)
            target, p = core.moved(ident, m.id, m.shard)
            if target is not None and p is not None:
                if target == ident and m.shard == p.shard:
                    # Its owner is still claiming the shard: ask again shortly (the
                    # deadline bounds it), not at once in a loop.
                    assert self._loop is not None
                    self._loop.call_later(RETRY_PAUSE, self._resend, target, p)
                else:
                    self._queue(target, self._request(p))
            elif p is not None:
                looped = p.placed >= MAX_PLACED
                self.log.warning(
                    "request for Session-Id %s moved to shard %d %s: answering %s",
                    _sid(p),
                    m.shard,
                    "too often" if looped else "whose owner cannot take it now",
                    "3002" if looped else "3004",
                )
                if looped:
                    code = ResultCode.DIAMETER_UNABLE_TO_DELIVER
                else:
                    code = ResultCode.DIAMETER_TOO_BUSY
                self.error_answer(p, code, f"shard {m.shard} cannot take it ({m.reason})")
        elif t is pp.Credit:
            assert isinstance(m, pp.Credit)
            core.add_credit(ident, m.n)
        elif t is pp.OutRequest:
            assert isinstance(m, pp.OutRequest)
            self._start_out_request(ident, m)
        elif t is pp.Goodbye:
            assert isinstance(m, pp.Goodbye)
            if m.drain:
                self.log.info("worker %r is draining (%s)", ident, m.reason)
                core.set_draining(ident)
                self._send_assignments()  # its shards go to the others now
                # Acknowledge; it reaches the worker after any request already sent to it.
                w = core.workers.get(ident)
                gen = w.gen if w is not None else -1
                self._queue(ident, pp.Heartbeat(time.time(), free=pp.DRAIN_ACK, gen=gen))
            else:
                self.log.info("worker %r said goodbye (%s)", ident, m.reason)
                self._drop(ident, "goodbye")
                return False
        else:
            self.bad_frames += 1
        return known

    def _reconcile(self, ident: bytes, m: pp.Heartbeat) -> None:
        """The worker's `free` must match this side's count. Two mismatches in a row mean
        slots were lost (or invented): the worker registers afresh (Reset), which settles
        everything it held and restarts both counts."""
        ok = self.core.reconcile(ident, m.gen, m.free, m.received)
        if ok is False:
            w = self.core.workers[ident]
            self.log.warning(
                "worker %s reports %d free slots, this gateway counts %d available and %d "
                "on the way",
                w.worker_id,
                m.free,
                w.free_here(),
                w.sent - m.received,
            )
            if w.mismatches >= 2:
                self._drop(ident, "credit count out of step")
                self._send_now(ident, pp.Reset(reason="credit count out of step: register again"))

    def set_log_level(self, level: str) -> None:
        """SIGHUP changed `logging.level`: tell every registered worker now (LogLevel), and
        each worker that registers from now on."""
        self.log_level = level
        for ident in list(self.core.workers):
            self._queue(ident, pp.LogLevel(level))

    def _reset(self, ident: bytes, now: float) -> None:
        last = self._reset_sent.get(ident, 0.0)
        if now - last >= self.heartbeat_interval:
            self._reset_sent[ident] = now
            self._send_now(ident, pp.Reset(reason="unknown worker: register again"))
            if len(self._reset_sent) > 10_000:
                self._reset_sent.clear()

    def _send_now(self, ident: bytes, m: pp.PoolMessage) -> None:
        if self._sock is None:
            return
        try:
            self._sock.send_multipart([ident, pp.encode_one(m)], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass

    # Faults ---------------------------------------------------------------------------

    def drop_worker(self, ident: bytes, why: str) -> None:
        """Told from outside that a worker is gone (the launcher saw its process exit)."""
        self._drop(ident, why)
        if self._outbox and not self._flush_scheduled:
            self._flush()

    def _drop(self, ident: bytes, why: str) -> None:
        w = self.core.workers.get(ident)
        if w is None:
            return
        held = len(w.inflight)
        now = time.monotonic()
        self._gone(w, why, now)
        moved, failed = self.core.drop(ident, now)
        self._discard_box(ident)
        self._send_assignments()
        self.log.warning(
            "worker %s dropped (%s): %d in flight, %d resent, %d answered 3002",
            w.worker_id,
            why,
            held,
            len(moved),
            len(failed),
        )
        self._settle(moved, failed, f"worker lost ({why})")

    def _discard_box(self, ident: bytes) -> None:
        """What was queued (or held back) for a registration that ended: the core places
        its requests again."""
        self._outbox.pop(ident, None)
        self._held.pop(ident, None)

    def _gone(self, w: WorkerState, why: str, now: float) -> None:
        """Remember a worker that left (bounded: the latest GONE_KEPT; a copy of a few
        fields, not the registration with its sets, and of the strings the worker chose at
        most GONE_TEXT characters, so what is kept after it left stays small)."""
        row = {"id": w.worker_id[:GONE_TEXT], "host": w.host[:GONE_TEXT], "pid": w.pid,
               "address": w.address, "why": why, "at": time.time(), "handled": w.handled}  # fmt: skip
        self.gone.append((row, now))

    def _settle(self, moved: list[tuple[bytes, Pending]], failed: list[Pending], why: str) -> None:
        for ident, p in moved:
            self._queue(ident, self._request(p))
        for p in failed:
            self.error_answer(p, ResultCode.DIAMETER_UNABLE_TO_DELIVER, why)

    def _tick(self) -> None:
        assert self._loop is not None
        self._tick_handle = self._loop.call_later(TICK, self._tick)
        try:
            now = time.monotonic()
            for p in self.core.expire(now):
                self.log.warning(
                    "request for Session-Id %s timed out in its worker: answering 3002", _sid(p)
                )
                self.error_answer(
                    p,
                    ResultCode.DIAMETER_UNABLE_TO_DELIVER,
                    "no answer from the application in time",
                )
            for ident in self.core.silent(now):
                self._drop(ident, "silent")
            if now - self._last_hb >= self.heartbeat_interval:
                self._last_hb = now
                t = time.time()
                for ident, w in self.core.workers.items():
                    self._queue(ident, pp.Heartbeat(t, gen=w.gen))
            if self._held:
                # What a full pipe refused is due again (ZeroMQ tells no per-worker
                # writability: a ROUTER's POLLOUT means any pipe, not this one).
                for ident in self._held:
                    self._held[ident] = True
                if not self._flush_scheduled:
                    self._flush()
            if self._ls is not None:
                self._ls.kick()
        except Exception:  # the tick must survive anything
            self.log.exception("pool tick failed")

    # Status ---------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        doc: dict[str, Any] = {
            "time": time.time(),
            "uptime_s": round(time.time() - self.started, 3),
            "endpoints": self.bound,
            "pool": self.core.status(now, self.worker_report),
        }
        doc["pool"]["gone"] = [
            {**row, "ago_s": round(max(0.0, now - at), 3)} for row, at in reversed(self.gone)
        ]
        doc["pool"]["counters"].update({n: getattr(self, n) for n in SERVER_COUNTERS})
        if self.status_extra is not None:
            try:
                doc.update(self.status_extra())
            except Exception as exc:
                doc["status_error"] = str(exc)
        return doc


def _sid(p: Pending) -> str:
    return p.session_id.decode("utf-8", "replace") or "(none)"


def _peer_address(src: Any) -> str:
    """The remote address of a CURVE (tcp://) connection, as ZeroMQ names it; "" on ipc."""
    if src is None:
        return ""
    try:
        return str(src.get("Peer-Address") or "")[:64]
    except (zmq.ZMQError, UnicodeDecodeError):
        return ""


def _user_id(src: Any) -> bytes:
    """The CURVE key (z85) a frame came with, as the ZAP handler named it; b"" on ipc."""
    if src is None:
        return b""
    try:
        return (src.get("User-Id") or "").encode()
    except zmq.ZMQError:
        return b""


__all__ = [
    "OutRequestFailed",
    "PoolServer",
    "NoWorker",
]
