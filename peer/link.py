"""What the sans-IO peer machine knows of one transport connection, and what it hands back.

A `Link` is one transport connection as the pure machine sees it: the deframer, the requests
waiting for an answer on it, the bytes to send, a close request, and the facts the adapter
learnt from the socket (source address, TLS peer certificate names, local addresses). The
asyncio adapter (peer/transport.py) owns the socket and reads `out` / `close_mode`; the
machine never touches a socket. `wake` is the adapter's doorbell: rung when the first bytes
(or a close request) are queued, so the adapter can batch a loop iteration's output into one
write. With `wake` left None (tests, `PeerPair`) the output simply accumulates.

`Context` is what every peer machine of one node shares: the configuration, the duplicate
cache, the end-to-end id allocator, the handler table and the counters.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from chargegw.codec.header import DEFAULT_MAX_LENGTH, FrameReader
from chargegw.codec.peek import avp_key
from chargegw.peer.config import NodeConfig
from chargegw.peer.dupcache import DuplicateCache
from chargegw.peer.pending import EndToEndAllocator, PendingEntry, PendingTable
from chargegw.peer.stats import CommandStats, NodeCounters

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Link:
    """One transport connection, as data: no socket, no loop."""

    __slots__ = (
        "initiator",
        "kind",
        "reader",
        "pending",
        "out",
        "out_bytes",
        "wake",
        "machine",
        "open",
        "closing",
        "closed",
        "close_mode",
        "caps",
        "common",
        "cer",
        "src",
        "remote",
        "local",
        "tls_verify",
        "cert_names",
        "host_ips",
        "cer_deadline",
        "counted_src",
        "owner",
    )

    def __init__(
        self,
        *,
        initiator: bool,
        kind: str = "tcp",
        max_length: int = DEFAULT_MAX_LENGTH,
        remote: Any = None,
        local: Any = None,
        tls_verify: bool = False,
        cert_names: list[str] | None = None,
        host_ips: list[str] | None = None,
    ) -> None:
        self.initiator = initiator
        self.kind = kind
        self.reader = FrameReader(max_length)
        self.pending = PendingTable()
        self.out: list[bytes] = []
        self.out_bytes = 0
        self.wake: Callable[[], None] | None = None
        self.machine: Any = None  # the PeerConnection once CER/CEA made the peer known
        self.open = False  # I-Open / R-Open on this link
        self.closing = False
        self.closed = False
        self.close_mode: str | None = None  # "close" (flush, FIN) or "abort" (RST)
        self.caps: Any = None  # PeerCapabilities from the CER / CEA
        self.common: frozenset[int] = frozenset()
        self.cer: Any = None  # the accepted CER (its CEA is sent later, after election)
        self.remote = remote
        self.local = local
        self.src: IPAddress | None = source_ip(remote)
        self.tls_verify = tls_verify  # TLS with a verified peer certificate
        self.cert_names = cert_names  # its DNS SANs (None: no certificate)
        self.host_ips = host_ips or []  # Host-IP-Address values for our CER / CEA
        self.cer_deadline: float | None = None
        self.counted_src = False  # counted in the admission's per-source pre-CER count
        self.owner: Any = None  # the adapter's object for this link (its Connection)

    def __repr__(self) -> str:
        side = "I" if self.initiator else "R"
        name = self.machine.name if self.machine is not None else "?"
        return f"<Link {side} {self.kind} {name} {self.remote}>"

    def send(self, data: bytes) -> None:
        """Queue one encoded message (dropped once closing)."""
        if self.closing or self.closed:
            return
        out = self.out
        out.append(data)
        self.out_bytes += len(data)
        if len(out) == 1 and self.wake is not None:
            self.wake()

    def data_to_send(self) -> list[bytes]:
        """Take what is queued (the adapter writes it; tests read it)."""
        out, self.out = self.out, []
        self.out_bytes = 0
        return out

    def close(self) -> None:
        """Ask for an orderly close: what is queued goes first."""
        if self.closed or self.closing:
            return
        self.closing = True
        self.close_mode = "close"
        if self.wake is not None:
            self.wake()

    def abort(self) -> None:
        """Ask to drop the connection now, unsent bytes too."""
        if self.closed:
            return
        self.closing = True
        self.close_mode = "abort"
        self.out.clear()
        self.out_bytes = 0
        if self.wake is not None:
            self.wake()


class RawHandler:
    """An application handler that takes requests undecoded (`Node.add_raw_handler`): it is
    called as `fn(data, peek, peer)` with the request's octets and the codec's `Peek` of
    them (header and routing values), so that nothing parses the request a second time."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __repr__(self) -> str:
        return f"<RawHandler {self.fn!r}>"


class Context:
    """What all the peer machines of one node share (time-free, I/O-free)."""

    __slots__ = (
        "config",
        "dup",
        "e2e",
        "handlers",
        "handler_apps",
        "stats",
        "commands",
        "stopping",
        "own_host_b",
        "own_realm_b",
        "routing_keys",
        "agent",
    )

    def __init__(self, config: NodeConfig, e2e: EndToEndAllocator) -> None:
        self.config = config
        self.dup = DuplicateCache(
            config.dup_cache_size,
            config.dup_cache_ttl,
            config.dup_in_progress_ttl,
            config.dup_cache_bytes,
        )
        self.e2e = e2e
        # (app, command or None) -> the application's handler: a callable (request Message,
        # peer) or a RawHandler; the machine calls it (PeerConnection.handle_requests)
        self.handlers: dict[tuple[int, int | None], Any] = {}
        self.handler_apps: set[int] = set()
        self.stats = NodeCounters(
            framing_errors=0,
            rejected_cer=0,
            duplicates=0,
            handler_errors=0,
            refused_at_accept=0,
        )
        self.commands = CommandStats()  # per (application, command): peer/stats.py
        self.stopping = False
        self.own_host_b = b""
        self.own_realm_b = b""
        # The keys of what a request's peek is checked by: Origin-Host (duplicates),
        # Destination-Host, Destination-Realm, Route-Record (RFC 6733 6.1).
        self.routing_keys: tuple[int, int, int, int] = (
            avp_key("Origin-Host"),
            avp_key("Destination-Host"),
            avp_key("Destination-Realm"),
            avp_key("Route-Record"),
        )
        # A relay or proxy agent (peer/relay.py): sees each application request first.
        self.agent: Any = None
        self.set_config(config)

    def set_config(self, config: NodeConfig) -> None:
        self.config = config
        self.own_host_b = config.origin_host.lower().encode()
        self.own_realm_b = config.origin_realm.lower().encode()
        dup = self.dup
        dup.max_size = config.dup_cache_size
        dup.ttl = config.dup_cache_ttl
        dup.in_progress_ttl = config.dup_in_progress_ttl
        dup.max_bytes = config.dup_cache_bytes


# -- events the machine returns ----------------------------------------------------------------


class Connect:
    """Open a transport connection to the peer (RFC 6733 I-Snd-Conn-Req)."""

    __slots__ = ()


class CancelConnect:
    """Give up the connection attempt in progress, if any."""

    __slots__ = ()


class PeerUp:
    """The peer reached I-Open / R-Open on `link`."""

    __slots__ = ("link",)

    def __init__(self, link: Link) -> None:
        self.link = link


class PeerDown:
    """The peer is Closed (`orderly`: by a DPR/DPA exchange)."""

    __slots__ = ("orderly",)

    def __init__(self, orderly: bool) -> None:
        self.orderly = orderly


class RequestReceived:
    """Application requests that passed every check, in arrival order, from one link: hand
    the event back to the machine's `handle_requests`, which calls each one's handler. A
    batch per chunk of octets: one event, not one per request.

    Each request is (handler, request, peek, key): the request is a lazily indexed Message
    (from the peek, not walked again) or, for a RawHandler, the octets; `peek` is the codec's
    Peek (header, routing values); `key` is the duplicate-cache key (None: not tracked).
    """

    __slots__ = ("link", "requests")

    def __init__(self, link: Link, requests: list[tuple[Any, Any, Any, Any]]) -> None:
        self.link = link
        self.requests = requests


class AnswerReceived:
    """Resolve `waiter` (opaque: the adapter's future) with `message`, or fail it with `error`."""

    __slots__ = ("waiter", "message", "error")

    def __init__(self, waiter: Any, message: Any, error: BaseException | None = None) -> None:
        self.waiter = waiter
        self.message = message
        self.error = error


class Failover:
    """These pending requests lost their connection: resend elsewhere or fail them."""

    __slots__ = ("entries",)

    def __init__(self, entries: list[PendingEntry]) -> None:
        self.entries = entries


class FramingFault:
    """The byte stream broke: once the events before this one are handled (their answers
    queued), call `framing_reply(ctx, link, error)`: a 5011 answer where possible, close."""

    __slots__ = ("link", "error")

    def __init__(self, link: Link, error: Any) -> None:
        self.link = link
        self.error = error


Event = (
    FramingFault
    | Connect
    | CancelConnect
    | PeerUp
    | PeerDown
    | RequestReceived
    | AnswerReceived
    | Failover
)


def source_ip(addr: Any) -> IPAddress | None:
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
