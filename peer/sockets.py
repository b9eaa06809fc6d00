"""The Node's sockets: listeners, outbound connections (TCP, TLS, SCTP), reconnects, DNS.

The transport half of the asyncio adapter (`Node` in peer/node.py is the other half): it
creates `Connection`s, fills their `Link` with the facts the sans-IO side needs (addresses,
TLS certificate names, Host-IP-Address values), and reports connections made, octets
received and connections lost. The reconnect policy after a DPR (BUSY, DO_NOT_WANT_TO_TALK_
TO_YOU, REBOOTING, backoff) lives here because it is timers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import random
import ssl
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from chargegw.codec.constants import DisconnectCause
from chargegw.peer import tls as tlsmod
from chargegw.peer.capabilities import is_allowed
from chargegw.peer.config import ListenConfig, NodeConfig, PeerConfig, TlsConfig
from chargegw.peer.fsm import State
from chargegw.peer.link import source_ip
from chargegw.peer.routing import RoutingTable
from chargegw.peer.transport import Connection

if TYPE_CHECKING:
    from chargegw.peer.admission import Admission
    from chargegw.peer.link import Context, Event, Link
    from chargegw.peer.node import PeerInfo
    from chargegw.peer.routing import Selector

log = logging.getLogger("chargegw.peer")
tls = tlsmod


class NodeSockets:
    """Listeners, connections and reconnect timers of a Node (a base class of Node)."""

    config: NodeConfig
    _peers: dict[str, PeerInfo]
    peers: dict[str, PeerInfo]

    if TYPE_CHECKING:  # provided by Node (peer/node.py)
        ctx: Context
        _admission: Admission
        _inbound: set[Link]
        _selector: Selector
        _routing: RoutingTable

        def _run(self, peer: PeerInfo, events: list[Event]) -> None: ...
        def _new_peer(self, pc: PeerConfig) -> PeerInfo: ...
        def conn_data(self, conn: Connection, data: bytes) -> None: ...
        def _disconnect(self, peer: PeerInfo, cause: int = 0) -> None: ...
        def _fail_all(self, link: Link, why: str) -> None: ...
        def _closed_all(self) -> bool: ...
        async def _tick_loop(self) -> None: ...

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        # (transport, host, configured port) -> (server, its bound addresses)
        self._servers: dict[tuple[str, str, int], tuple[Any, list[tuple[str, str, int]]]] = {}
        # A TLS listener's current server context, and the settings it was opened with: a
        # reload swaps the context in for new handshakes (`_tls_switch`).
        self._tls_ctx: dict[tuple[str, str, int], ssl.SSLContext] = {}
        self._tls_opened: dict[tuple[str, str, int], TlsConfig] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._started = False
        self.listen_addresses: list[tuple[str, str, int]] = []  # (transport, host, port)

    @property
    def _stopping(self) -> bool:
        return self.ctx.stopping

    @_stopping.setter
    def _stopping(self, value: bool) -> None:
        self.ctx.stopping = value

    # -- lifecycle ------------------------------------------------------------------------------

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
        link: Link | None
        for link in list(self._inbound):
            link.close()
        for peer in self._peers.values():
            self._cancel_reconnect(peer)
        deadline = loop.time() + timeout
        if graceful:
            # Drain: answers for our requests and answers from our handlers (half the time).
            drain_until = loop.time() + timeout / 2
            while loop.time() < drain_until and any(
                p.link is not None and (len(p.link.pending) or p.link.owner.inflight)
                for p in self._peers.values()
            ):
                await asyncio.sleep(0.01)
            for peer in list(self._peers.values()):
                if peer.is_open:
                    self._disconnect(peer, cause)
            while loop.time() < deadline and not self._closed_all():
                await asyncio.sleep(0.01)
        for peer in list(self._peers.values()):
            for link in (peer.link, peer.i, peer.r):
                if link is not None:
                    self._fail_all(link, "node stopped")
                    link.abort()
            if peer.connect_task is not None:
                peer.connect_task.cancel()
            peer.fsm.state = State.CLOSED
            peer.fsm.deadline = None
            peer.link = peer.i = peer.r = None
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

    async def __aenter__(self) -> Any:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def update_config(self, new: NodeConfig) -> None:
        """Reload peers, routes, allowlist and limits without dropping established connections.

        Removed peers get DPR(DO_NOT_WANT_TO_TALK_TO_YOU); new ones are connected; a kept peer
        takes its new settings at its next connection (and any BUSY/DO_NOT_WANT hold is
        lifted). Identity changes (Origin-Host/Realm) apply to new connections only. Peers
        the allowlist admitted and the new one does not get DPR(DO_NOT_WANT_TO_TALK_TO_YOU)
        too. TLS listeners' files are loaded again for new handshakes, and moved listeners
        open before the old ones close (`_relisten`). Files that do not load raise before
        anything changes.
        """
        old = self.config
        # Validate before applying: every TLS listener's files must load (raises otherwise,
        # and nothing of the new config is applied).
        contexts: dict[tuple[str, str, int], ssl.SSLContext] = {
            (lc.transport, lc.host, lc.port): _server_context(lc) for lc in new.listen
            if lc.transport == "tls"
        }  # fmt: skip
        self.config = new
        self.ctx.set_config(new)
        self._routing = RoutingTable(new.routes, new.default_route, self._selector)
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
                        self._run(peer, peer.close(self._loop.time()))
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
                    self._run(peer, peer.start(self._loop.time()))
        for key, pc in new_peers.items():
            if key not in self._peers:
                self._add_configured_peer(pc)
        self._resolve_sources()
        self._drop_disallowed(new)
        reopen = self._reload_tls(contexts)
        old_listen = [(lc.transport, lc.host, lc.port) for lc in old.listen]
        new_listen = [(lc.transport, lc.host, lc.port) for lc in new.listen]
        if old_listen != new_listen or reopen:
            task = self._loop.create_task(self._relisten(new.listen, contexts, reopen))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _drop_disallowed(self, new: NodeConfig) -> None:
        """DPR (DO_NOT_WANT_TO_TALK_TO_YOU) to every peer the allowlist admitted that the new
        one no longer does: a tightened allowlist must not wait for the peer to reconnect."""
        assert self._loop is not None
        configured = [pc.name for pc in new.peers]
        for peer in list(self._peers.values()):
            if not peer.dynamic or peer.removed or peer.fsm.state is State.CLOSED:
                continue
            src = peer.link.src if peer.link is not None else None
            loopback = src is not None and src.is_loopback and new.allow_loopback
            if is_allowed(peer.name, peer.realm or "", new.allow, configured, loopback_ok=loopback):
                continue
            log.warning("%s is no longer allowed (diameter.allow): disconnecting", peer.name)
            peer.removed = True
            if peer.is_open:
                self._disconnect(peer, DisconnectCause.DO_NOT_WANT_TO_TALK_TO_YOU)
            else:
                self._run(peer, peer.close(self._loop.time()))

    def _reload_tls(self, contexts: dict[tuple[str, str, int], ssl.SSLContext]) -> set[Any]:
        """New handshakes on a kept TLS listener use the context just loaded (certificate,
        key, CA). OpenSSL keeps the verify mode and cipher list of the listener's first
        context, so a change of verify_peer or ciphers reopens the listener instead: the
        keys returned."""
        reopen = set()
        for lc in self.config.listen:
            key = (lc.transport, lc.host, lc.port)
            was = self._tls_opened.get(key)
            if key not in contexts or key not in self._servers or was is None or lc.tls is None:
                continue
            if (was.verify_peer, was.ciphers) != (lc.tls.verify_peer, lc.tls.ciphers):
                reopen.add(key)
                continue
            self._tls_ctx[key] = contexts[key]
            log.info("TLS listener %s:%d: certificates reloaded", lc.host, lc.port)
        return reopen

    async def _relisten(
        self,
        listens: list[ListenConfig],
        contexts: dict[tuple[str, str, int], ssl.SSLContext] | None = None,
        reopen: set[Any] | frozenset[Any] = frozenset(),
    ) -> None:
        """Open the newly configured listeners first, then close the ones no longer
        configured, so that a moved listener never leaves the node with nothing open. If a
        new one cannot open, the old ones stay open (logged). A new listener on the address
        of one being removed (tcp to tls on one port), or one in `reopen`, cannot coexist
        with the old socket: that one is closed first, then opened."""
        contexts = contexts or {}
        wanted: dict[tuple[str, str, int], ListenConfig] = {
            (lc.transport, lc.host, lc.port): lc for lc in listens
        }
        gone = [k for k in self._servers if k not in wanted]
        held = {(k[1], k[2]): k for k in gone if k[2]}  # port 0 never collides
        in_place = set(reopen) | {
            k for k in wanted if k not in self._servers and (k[1], k[2]) in held
        }  # fmt: skip
        failed = False
        for key, lc in wanted.items():
            if key in self._servers and key not in in_place:
                continue
            if key in in_place:
                self._close_listener(held.get((key[1], key[2]), key))
            try:
                await self._listen(lc, contexts.get(key))
                log.info("listening on %s %s:%d", lc.transport, lc.host, lc.port)
            except (OSError, ValueError, ssl.SSLError) as exc:
                failed = True
                log.error("cannot listen on %s:%s: %s", lc.host, lc.port, exc)
        for key in gone:
            if key not in self._servers:
                continue
            if failed:
                log.warning(
                    "keeping the listener on %s:%d open: a new listener did not open", *key[1:]
                )
                continue
            self._close_listener(key)
        self.listen_addresses[:] = [a for _, addrs in self._servers.values() for a in addrs]

    def _close_listener(self, key: tuple[str, str, int]) -> None:
        entry = self._servers.pop(key, None)
        self._tls_ctx.pop(key, None)
        self._tls_opened.pop(key, None)
        if entry is not None:
            entry[0].close()
            log.info("closed the listener on %s %s:%d", *key)

    # -- Connection callbacks --------------------------------------------------------------------

    def _new_conn(self, initiator: bool, kind: str, verify: bool = False) -> Connection:
        cfg = self.config
        assert self._loop is not None
        conn = Connection(
            self,  # type: ignore[arg-type]
            self._loop,
            initiator=initiator,
            kind=kind,
            max_length=cfg.max_message_length,
            high_water=cfg.write_high_water,
            max_inflight=cfg.max_inflight_per_connection,
        )
        conn.link.tls_verify = verify
        if not initiator and not self._admission.accepted(conn.link, self._loop.time()):
            conn.refuse = "too many connections without CER"
        return conn

    def conn_made(self, conn: Connection) -> None:
        """Up (for TLS: handshake done): the facts for the machine; the pre-CER caps."""
        link = conn.link
        if link.kind == "tls" and link.tls_verify:
            link.cert_names = tlsmod.peer_cert_names(conn.transport)
        link.host_ips = self._host_ips(conn)
        if link.initiator:
            return
        assert self._loop is not None
        self._admission.made(link, self._loop.time(), conn.refuse)

    def conn_lost(self, conn: Connection, exc: Exception | None) -> None:
        link = conn.link
        self._admission.done(link)
        peer = link.machine
        if peer is None or self._loop is None:
            return
        self._run(peer, peer.connection_lost(link, self._loop.time()))

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

    # -- listening and connecting ---------------------------------------------------------------

    async def _listen(self, lc: ListenConfig, ctx: ssl.SSLContext | None = None) -> None:
        assert self._loop is not None
        if lc.transport == "sctp":
            from chargegw.peer import sctp

            server: asyncio.Server | sctp.SctpServer = await sctp.start_server(
                self._loop,
                lambda: self._new_conn(False, "sctp"),
                lc.host,
                lc.port,
                extra_addresses=lc.extra_addresses,
                streams=self.config.sctp_streams,
                nodelay=self.config.sctp_nodelay,
            )
        else:
            verify = False
            key = (lc.transport, lc.host, lc.port)
            if lc.transport == "tls":
                ctx = ctx or _server_context(lc)
                assert lc.tls is not None
                verify = lc.tls.verify_peer
                self._tls_ctx[key] = ctx
                self._tls_opened[key] = lc.tls
                ctx.sni_callback = lambda obj, _name, first: self._tls_switch(key, obj, first)
            else:
                ctx = None
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
        addrs: list[tuple[str, str, int]] = []
        for sock in server.sockets:
            name = sock.getsockname()
            addrs.append((lc.transport, name[0], name[1]))
        self._servers[(lc.transport, lc.host, lc.port)] = (server, addrs)
        self.listen_addresses.extend(addrs)

    def _tls_switch(self, key: Any, obj: ssl.SSLObject, first: ssl.SSLContext) -> None:
        """Called in each handshake on a TLS listener (OpenSSL's server-name callback, with
        or without SNI): hand the connection the listener's current context."""
        current = self._tls_ctx.get(key)
        if current is not None and current is not first:
            obj.context = current

    def _add_configured_peer(self, pc: PeerConfig) -> PeerInfo:
        peer = self._new_peer(pc)
        self._peers[peer.key] = peer
        self.peers[peer.name] = peer
        if pc.connect and not self._stopping:
            assert self._loop is not None
            self._run(peer, peer.start(self._loop.time()))
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
                    kw["ssl"] = tlsmod.client_context(tls)
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
            self._run(peer, peer.connect_failed(loop.time()))
            return
        peer.connect_task = None
        assert conn is not None
        if self._stopping:
            conn.close()
            return
        self._run(peer, peer.connected(conn.link, loop.time()))

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
            self._run(peer, peer.start(self._loop.time()))  # type: ignore[union-attr]

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
                self._run(peer, peer.start(self._loop.time()))  # type: ignore[union-attr]

    def _forget(self, peer: PeerInfo) -> None:
        if self._peers.get(peer.key) is peer:
            del self._peers[peer.key]
        if self.peers.get(peer.name) is peer:
            del self.peers[peer.name]

    # -- DNS names in PeerConfig.source ---------------------------------------------------------

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
                if only_missing and name in self._admission.resolved:
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
            self._admission.resolved.setdefault(name, frozenset())
            return
        ips = set()
        for info in infos:
            ip = source_ip(info[4])
            if ip is not None:
                ips.add(str(ip))
        self._admission.resolved[name] = frozenset(ips)


def _server_context(lc: ListenConfig) -> ssl.SSLContext:
    """The listener's server context; OSError naming the listener and its files when they
    do not load (OpenSSL's own message names neither; the CLIs report an OSError at start
    as "cannot start: ...")."""
    if lc.tls is None:
        raise ValueError(f"the TLS listener on {lc.host}:{lc.port} needs tls settings")
    try:
        return tls.server_context(lc.tls)
    except (OSError, ssl.SSLError, ValueError) as exc:
        t = lc.tls
        files = ", ".join(f"{k}={v}" for k, v in (("cert", t.certfile), ("key", t.keyfile),
                                                   ("ca", t.cafile)) if v)  # fmt: skip
        raise OSError(f"TLS listener {lc.host}:{lc.port}: cannot load {files}: {exc}") from exc
