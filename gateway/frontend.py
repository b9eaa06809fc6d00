"""The front end: the Node (every peer connection, the base protocol) plus the worker pool.

Per application request the front end does the least it can, and parses each request once:
the Node's deframer finds its length, the codec's peek reads its header and routing values
in one pass (and checks its AVP framing), the Node makes every check from that peek, and our
raw handler gets the octets with the peek: the Session-Id (affinity) and, for the sharded
charging applications, the first Subscription-Id-Data (the account's shard) come from it, the
octets go to a worker with a small envelope, and None tells the Node not to wait. The
worker's answer bytes go back to the peer after a header check (pool_io), as they are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from chargegw.codec import CodecError, Message, Peek, ResultCode, append_avps, avp_key
from chargegw.config.schema import Config, is_loopback
from chargegw.gateway.latency import ADAPT_INTERVAL
from chargegw.gateway.metrics import AnswerStats, result_code
from chargegw.gateway.overload import OverloadReporter
from chargegw.gateway.pool import ROUTE_ENDS, ROUTE_FRESH, Pending, PoolCore
from chargegw.gateway.pool_io import OutRequestFailed, PoolServer
from chargegw.ipc import security as sec
from chargegw.peer.config import (
    AllowRule,
    ListenConfig,
    NodeConfig,
    PeerConfig,
    RouteConfig,
    TlsConfig,
    VendorApp,
)
from chargegw.peer.errors import ProtocolError, error_answer_bytes
from chargegw.peer.node import Node, RequestError

log = logging.getLogger("chargegw.gateway")

# The peek's keys the front end reads per request, from the dictionary.
_SESSION_ID = avp_key("Session-Id")
_OC_SUPPORTED = avp_key("OC-Supported-Features")  # RFC 7683: the sender is a reacting node
REACH_LOG_EVERY = 60.0  # seconds between warnings that the latency target is out of reach


def _tls(t: Any) -> TlsConfig | None:
    if t is None:
        return None
    return TlsConfig(
        certfile=t.cert or None,
        keyfile=t.key or None,
        cafile=t.ca or None,
        verify_peer=t.verify_peer,
    )


def _source(p: Any) -> list[str] | None:
    """Where a configured peer may connect from: `source`, else its `address`; "*" = any."""
    if "*" in p.source:
        return None
    return list(p.source) or [p.address]


def build_node_config(config: Config) -> NodeConfig:
    """Translate our schema into the peer layer's NodeConfig (also used on SIGHUP)."""
    auth: list[int] = []
    acct: list[int] = []
    vendor_apps: list[VendorApp] = []
    vendors: set[int] = set(config.diameter.supported_vendors)
    for app in config.applications:
        if app.vendor_id:
            vendor_apps.append(VendorApp(app.vendor_id, app.app_id, acct=app.is_acct))
            vendors.add(app.vendor_id)
        elif app.is_acct:
            acct.append(app.app_id)
        else:
            auth.append(app.app_id)
    ident = config.identity
    host_ips = list(ident.host_ip_addresses) or sorted(
        {lst.address for lst in config.listen if lst.address not in ("0.0.0.0", "::", "")}
        or {"127.0.0.1"}
    )
    d = config.diameter
    return NodeConfig(
        origin_host=ident.origin_host,
        origin_realm=ident.origin_realm,
        host_ip_addresses=host_ips,
        vendor_id=ident.vendor_id,
        product_name=ident.product_name,
        firmware_revision=ident.firmware_revision,
        auth_apps=auth,
        acct_apps=acct,
        vendor_specific_apps=vendor_apps,  # type: ignore[arg-type]
        supported_vendors=sorted(vendors),
        relay=d.relay,
        listen=[
            ListenConfig(
                host=lst.address, port=lst.port, transport=lst.transport, tls=_tls(lst.tls)
            )
            for lst in config.listen
        ],
        peers=[
            PeerConfig(
                name=p.name,
                host=p.address,
                port=p.port or None,
                transport=p.transport or "tcp",  # set by Peer.__post_init__; "" only to mypy
                realm=p.realm or None,
                connect=p.connect,
                tls=_tls(p.tls),
                tw=p.tw or None,
                source=_source(p),
            )
            for p in config.peers
        ],
        routes=[
            RouteConfig(realm=r.realm, peers=list(r.peers), app_id=r.app_id or None)
            for r in config.routes
        ],
        default_route=list(d.default_route),
        # allow_any admits anyone; otherwise [[peers]] and the rules, and with no rules any
        # peer over loopback, but only while no listener is reachable from outside.
        allow=None if d.allow_any else [AllowRule(host=a.host, realm=a.realm) for a in d.allow],
        allow_loopback=not d.allow and all(is_loopback(lst.address) for lst in config.listen),
        tw=d.tw,
        request_timeout=d.request_timeout,
        max_message_length=d.max_message_length,
        dup_cache_size=d.dup_cache_size,
        dup_cache_bytes=d.dup_cache_bytes,
        cer_timeout=d.cer_timeout,
        tls_handshake_timeout=d.tls_handshake_timeout,
        max_pre_cer=d.max_pre_cer_connections,
        max_pre_cer_per_source=d.max_pre_cer_per_source,
        check_destination=d.check_destination,
        validate_requests=d.validate_requests,
    )


def pool_options(config: Any) -> dict[str, Any]:
    """The PoolServer settings a config implies (keys, limits, status socket, commands)."""
    return {
        "curve_secret_key": config.pool.curve_secret_key,
        "curve_workers": config.pool.curve_workers,
        "max_frame": sec.frame_limit(config.diameter.max_message_length),
        "status_endpoint": sec.status_endpoint(config),
        "out_commands": sec.DEFAULT_OUT_COMMANDS | set(config.pool.out_commands),
        "out_apps": [a.app_id for a in config.applications],
    }


class NotReady(Exception):
    """Too few workers registered in time: the Diameter listeners were not opened."""


class Gateway:
    """Owns the Node and the PoolServer and wires them together."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.node = Node(build_node_config(config))
        self.core = PoolCore(
            deadline=config.pool.deadline,
            heartbeat_timeout=config.pool.heartbeat_timeout,
            max_credit=config.pool.max_credit,
            vnodes=config.pool.vnodes,
            latency_target=config.pool.latency_target_ms / 1000.0,
        )
        self.pool = PoolServer(
            self.core,
            config.pool_endpoints(),
            deliver=self._deliver,
            error_answer=self._late_error,
            out_request=self._out_request,
            status_extra=self._status_extra,
            heartbeat_interval=config.pool.heartbeat_interval,
            log=log,
            **pool_options(config),
        )
        if config.pool.heartbeat_timeout >= config.pool.deadline:
            log.warning(
                "pool.heartbeat_timeout (%g s) is not below pool.deadline (%g s): the requests"
                " held by a worker that falls silent will be answered 3002 at their deadline"
                " before the worker is declared gone and they can be sent to another",
                config.pool.heartbeat_timeout,
                config.pool.deadline,
            )
        self.app_ids = [a.app_id for a in config.applications]
        for app_id in self.app_ids:
            self.node.add_raw_handler(app_id, self._handle)
        self.errors_sent = 0
        self.draining = False
        self.started_at = time.time()
        self.metrics = AnswerStats()
        self.pool.on_answer = self._answered
        # DOIC (RFC 7683): peers whose latest request carried OC-Supported-Features get the
        # overload report appended to their answers.
        self.overload = OverloadReporter(now_wall=time.time())
        self._oc_peers: set[str] = set()
        self._refusals: dict[tuple[int, str, bytes], ProtocolError] = {}  # see _refuse
        self._oc_last = (0, 0)  # (placed, shed) at the previous overload update
        self._reach_said = -REACH_LOG_EVERY  # when the target was last said out of reach
        self._oc_timer: asyncio.TimerHandle | None = None
        self._adapt_timer: asyncio.TimerHandle | None = None

    async def start(
        self,
        *,
        min_workers: int = 0,
        ready_timeout: float = 60.0,
        abort: asyncio.Event | None = None,
    ) -> bool:
        """Bind the worker pool, then `open` the Diameter listeners (see there)."""
        self.start_pool()
        return await self.open(min_workers=min_workers, ready_timeout=ready_timeout, abort=abort)

    def start_pool(self) -> None:
        """Bind the worker pool: workers can register and the status query answers, while
        no Diameter port is open yet."""
        self.pool.start()
        self._oc_timer = asyncio.get_running_loop().call_later(1.0, self._overload_tick)
        self._set_latency_target(self.core.latency_target)

    def _set_latency_target(self, target: float) -> None:
        """Apply `pool.latency_target_ms` (in seconds here): at start and on SIGHUP."""
        self.core.set_latency_target(target)
        if target > 0 and self._adapt_timer is None:
            self._adapt_timer = asyncio.get_running_loop().call_later(
                ADAPT_INTERVAL, self._adapt_tick
            )

    def _adapt_tick(self) -> None:
        """Every ADAPT_INTERVAL while a target is set: the workers' latency limits."""
        if self.core.latency_target <= 0:
            self._adapt_timer = None
            return
        self._adapt_timer = asyncio.get_running_loop().call_later(ADAPT_INTERVAL, self._adapt_tick)
        self.core.adapt()

    def _overload_tick(self) -> None:
        """Once a second: the DOIC report from the pool's occupancy and its 3004 sheds."""
        self._oc_timer = asyncio.get_running_loop().call_later(1.0, self._overload_tick)
        c = self.core.counters
        shed_now = c.shed_busy + c.shed_fair  # both are 3004s for want of a worker's slot
        placed, shed = c.placed - self._oc_last[0], shed_now - self._oc_last[1]
        self._oc_last = (c.placed, shed_now)
        share = shed / (placed + shed) if placed + shed else 0.0
        now = time.monotonic()
        self.overload.update(now, self.core.occupancy(), share)
        self.core.age_routes(now)  # sessions that never end: their routes age out
        self.core.age_peers(now)  # who else sends: the fair share's window
        if now - self._reach_said >= REACH_LOG_EVERY:
            self._say_out_of_reach(now)

    def _say_out_of_reach(self, now: float) -> None:
        """A latency target no worker can meet sheds most of the traffic for nothing: say so
        (a config to fix), at most once every REACH_LOG_EVERY seconds."""
        slow = self.core.out_of_reach()
        if not slow:
            return
        self._reach_said = now
        ident, mean, floor = max(slow, key=lambda x: x[1])
        log.warning(
            "pool.latency_target_ms %g is out of reach for %d worker(s): %s answers in %.1f ms"
            " on average with no more than %d requests in flight, so most requests beyond"
            " that get 3004; raise the target above that (or add workers)",
            self.core.latency_target * 1000, len(slow), ident, mean * 1000, floor,
        )  # fmt: skip

    async def open(
        self,
        *,
        min_workers: int = 0,
        ready_timeout: float = 60.0,
        abort: asyncio.Event | None = None,
    ) -> bool:
        """Open the Diameter listeners once `min_workers` workers have registered, so that
        no peer meets an open port with nobody behind it (every request would get 3002).
        False when `abort` was set first (a signal, a fatal worker error); NotReady when the
        workers did not come within `ready_timeout` seconds."""
        try:
            if not await self._wait_workers(min_workers, ready_timeout, abort):
                return False
            await self.node.start()
        except BaseException:
            self.pool.close(goodbye=False)
            raise
        return True

    def ready_workers(self) -> int:
        """Registered workers that take new requests."""
        return sum(1 for w in self.core.workers.values() if not w.draining)

    async def _wait_workers(self, want: int, timeout: float, abort: asyncio.Event | None) -> bool:
        if self.ready_workers() >= want:
            return True
        log.info(
            "waiting for %d worker%s to register before opening the Diameter port (up to %.0fs)",
            want,
            "s" if want != 1 else "",
            timeout,
        )
        end = time.monotonic() + timeout
        while (have := self.ready_workers()) < want:
            if abort is not None and abort.is_set():
                return False
            if time.monotonic() >= end:
                raise NotReady(
                    f"{have} of {want} workers registered within {timeout:.0f}s, so the "
                    "Diameter port stays closed (launcher.min_workers, launcher.ready_timeout; "
                    "the workers' log lines above say why they did not come)"
                )
            await asyncio.sleep(0.05)
        log.info(
            "%d worker%s registered: opening the Diameter listeners", have, "s" if have != 1 else ""
        )
        return True

    def readiness(self) -> tuple[bool, str]:
        """For /readyz: the Diameter listeners are open, not draining, and at least
        launcher.min_workers workers are registered."""
        if self.draining:
            return False, "draining"
        if not self.node.listen_addresses:
            return False, "Diameter listeners not open"
        want, have = self.config.launcher.min_workers, self.ready_workers()
        if have < max(want, 1 if self.app_ids else 0):
            return False, f"{have} of {want} workers registered"
        return True, f"ready: {have} workers, listening"

    def listen_addresses(self) -> list[tuple[str, int]]:
        return [(host, port) for _transport, host, port in self.node.listen_addresses]

    async def stop(self, *, drain_timeout: float | None = None) -> None:
        """Graceful stop: new requests get 3004 (a peer with another gateway fails over);
        what the workers hold is answered (up to the bound); then the Node stops listening
        and sends DPR; then the pool closes. DPR comes after the drain because a peer
        closes the connection on DPA, and answers still in the workers would be lost."""
        timeout = self.config.pool.drain_timeout if drain_timeout is None else drain_timeout
        self.draining = True
        left = await self.pool.drain(timeout)
        if left:
            log.warning("%d requests still in flight after %.1fs of draining", left, timeout)
            # Answered before DPR, so that no peer waits out its own timeout for them.
            for p in self.core.expire(float("inf")):
                self._late_error(p, ResultCode.DIAMETER_UNABLE_TO_DELIVER, "gateway stopping")
        try:
            await self.node.stop(graceful=True, timeout=max(1.0, min(timeout, 5.0)))
        finally:
            if self._oc_timer is not None:
                self._oc_timer.cancel()
            if self._adapt_timer is not None:
                self._adapt_timer.cancel()
            self.pool.close()

    def reload(self, config: Config) -> None:
        """SIGHUP: peers, routes and allowlists, the admitted worker keys
        (pool.curve_workers: a worker whose key was removed is dropped) and the latency
        objective (pool.latency_target_ms; 0 gives every worker its credit back); established
        connections stay up. A key directory that cannot be read keeps the running config."""
        node_config = build_node_config(config)
        admitted, dropped = self.pool.reload_keys(config.pool.curve_workers)
        if admitted or dropped:
            log.info("SIGHUP: %d worker keys admitted, %d workers dropped", admitted, dropped)
        self.node.update_config(node_config)
        target = config.pool.latency_target_ms / 1000.0
        if target != self.core.latency_target:
            log.info(
                "SIGHUP: pool.latency_target_ms %g -> %g",
                self.core.latency_target * 1000,
                config.pool.latency_target_ms,
            )
            self._set_latency_target(target)
        self.config = config

    # The hot path ---------------------------------------------------------------------

    def _handle(self, raw: bytes, p: Peek, peer: Any) -> ProtocolError | None:
        app = p.app_id
        self.metrics.request(app, p.code)
        vals = p.values  # the Node's peek: read by key, once each
        oc = _OC_SUPPORTED in vals
        name = peer.name
        if oc:
            self._oc_peers.add(name)
        elif self._oc_peers:
            self._oc_peers.discard(name)
        if self.draining:
            return self._refuse(p, ResultCode.DIAMETER_TOO_BUSY, "gateway shutting down", oc)
        sid = vals.get(_SESSION_ID) or b""  # the affinity key
        core = self.core
        shard = -1
        route = 0
        if app in core.shard_apps:  # charging state: to the owner of the account's shard
            ends = p.ends_session
            shard = core.session_routes.get(sid, -1)
            if shard < 0:
                # Learnt now, dropped if the session does not start; not even learnt for a
                # first request that is also the last (an event, under overload mostly shed).
                shard = core.route_shard(app, sid, p.subscription_data, remember=not ends)
                route = ROUTE_FRESH
            if ends:
                route |= ROUTE_ENDS  # dropped once answered
        refused = self.pool.offer(
            peer=name,
            hbh=p.hop_by_hop,
            app=app,
            cmd=p.code,
            session_id=sid,
            raw=raw,
            shard=shard,
            route=route,
        )
        if refused is None:
            return None
        if route:
            core.forget_route(sid)  # shed: the session did not start, or it ends here
        return self._refuse(p, refused.result_code, refused.reason, oc)

    def _answered(self, p: Pending, raw: bytes) -> None:
        """A worker's answer left (PoolServer.on_answer): count it by its Result-Code."""
        rc = result_code(raw)  # read once: the metrics and the route both need it
        self.metrics.answer(p.app, p.cmd, rc, self._latency(p))
        if p.route & ROUTE_FRESH and not 2000 <= rc < 3000:
            # The session's first request failed: its client will not go on with it.
            self.core.forget_route(p.session_id)

    def _latency(self, p: Pending) -> float:
        # Placed at deadline - pool.deadline (monotonic): no timestamp kept per request.
        return max(0.0, time.monotonic() - (p.deadline - self.core.deadline))

    def _deliver(self, peer: str, raw: bytes, *, cache: bool = True) -> None:
        """Send an answer. Only a worker's answers are kept by the Node for duplicates
        (cache=True); an error made here reports a passing condition, and a T-flagged
        retransmission must be tried again rather than get that stale error. A reacting
        node's answers carry the DOIC overload report."""
        if peer in self._oc_peers:
            raw = append_avps(raw, self.overload.extra)
        try:
            self.node.send_answer(peer, raw, cache=cache)
        except Exception as exc:  # the peer went away meanwhile: nothing to answer to
            log.debug("answer for %s not sent: %s", peer, exc)

    def _refuse(self, p: Peek, code: int, reason: str, oc: bool) -> ProtocolError:
        """The locally made error for the request being handled, for `_handle` to return:
        the Node sends a handler's ProtocolError through its error-answer boundary and does
        not keep it in the duplicate cache (returned answer octets would be kept); returned
        rather than raised, so shedding does not pay for unwinding. A reacting node (`oc`:
        the request carries OC-Supported-Features) gets the DOIC report on it too, as on a
        worker's answer: a 3004 shed here is the overload it must hear of first.

        The error is made once per (code, reason, report) and handed out again: under
        overload every request is shed, and the Node only reads it (never raised)."""
        self.errors_sent += 1
        code = int(code)
        self.metrics.answer(p.app_id, p.code, code, 0.0)
        extra = self.overload.extra if oc else b""
        key = (code, reason, extra)
        err = self._refusals.get(key)
        if err is None:
            if len(self._refusals) >= 64:  # a new report each update: the old ones go
                self._refusals.clear()
            err = self._refusals[key] = ProtocolError(code, reason, extra=extra)
        return err

    def _error(self, request: bytes, code: int, reason: str) -> bytes:
        """Through the peer layer's one error-answer boundary, from the request's octets:
        the generic grammar for 3xxx, and the command's own required AVPs (e.g. CCA's
        CC-Request-*) for the rest."""
        self.errors_sent += 1
        ident = self.config.identity
        raw = error_answer_bytes(
            request,
            code,
            origin_host=ident.origin_host,
            origin_realm=ident.origin_realm,
            error_message=reason,
        )
        if raw is None:
            raise ValueError(f"cannot build a {code} answer")
        return raw

    def _late_error(self, p: Pending, code: int, reason: str) -> None:
        self.metrics.answer(p.app, p.cmd, int(code), self._latency(p))
        try:
            self._deliver(p.peer, self._error(p.raw, code, reason), cache=False)
        except Exception:
            log.exception("cannot answer %d for Session-Id %s", code, p.session_id)

    # Worker-initiated requests --------------------------------------------------------

    async def _out_request(self, raw: bytes, peer: str, timeout: float) -> bytes:
        try:
            msg = Message.decode(raw)
        except CodecError as exc:
            raise OutRequestFailed(
                ResultCode.DIAMETER_UNABLE_TO_COMPLY, f"the worker's request does not decode: {exc}"
            ) from None
        target = peer if peer and self._peer_open(peer) else None
        try:
            ans = await self.node.request(msg, peer=target, timeout=timeout)
        except RequestError as exc:
            raise OutRequestFailed(
                getattr(exc, "result_code", ResultCode.DIAMETER_UNABLE_TO_DELIVER)
                or ResultCode.DIAMETER_UNABLE_TO_DELIVER,
                str(exc),
            ) from None
        except TimeoutError:
            raise OutRequestFailed(
                ResultCode.DIAMETER_UNABLE_TO_DELIVER, "no answer from the peer in time"
            ) from None
        out = ans.raw
        return out if out is not None else ans.encode()

    def _peer_open(self, name: str) -> bool:
        info = self.node.peers.get(name)
        if info is None:  # the table is keyed by the name as the peer spelled it
            low = name.lower()
            info = next((p for n, p in self.node.peers.items() if n.lower() == low), None)
        return info is not None and info.usable

    # Status ---------------------------------------------------------------------------

    def _status_extra(self) -> dict[str, Any]:
        peers = [info.to_dict() for info in list(self.node.peers.values())]
        ident = self.config.identity
        return {
            "origin_host": ident.origin_host,
            "origin_realm": ident.origin_realm,
            "listen": [f"{h}:{p}" for h, p in self.listen_addresses()],
            "applications": self.app_ids,
            "peers": peers,
            "errors_sent": self.errors_sent,
            "draining": self.draining,
            "node": dict(self.node.stats),
            # The Node's bounded tables (dup_cache_size entries; deferred answers by peer):
            # the soak checks that they stop growing.
            "tables": {
                "dup_cache": len(self.node.ctx.dup),
                "answers_later": sum(len(info._later) for info in list(self.node.peers.values())),
                "oc_peers": len(self._oc_peers),
            },
        }
