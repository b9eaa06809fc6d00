"""Relay and proxy agents (RFC 6733 2.8, 6.1.8, 6.1.9, 6.2.2): the sans-IO forwarding core.

A `RelayAgent` sits on a node's `Context` (`ctx.agent`). The peer machine hands it every
application request before looking for a local handler; the agent either leaves the request
to the node (it is for this node, or not proxiable) or takes it: it answers an error itself
(3005 loop, 3002/3003 no route, 3004 too many pending, 3008 E bit) or forwards it.

Forwarding reuses what the peer machine already has for our own requests: the upstream
link's pending table gives the request a fresh hop-by-hop id and matches the answer only on
that link (and checks its end-to-end id); its timeout, the watchdog and failover (resend to
an alternate with the T flag) work unchanged. The waiter of a forwarded request is a
`Forwarded`: it looks like the adapter's future (`done`, `set_result`, `set_exception`), so
the asyncio Node and the in-memory test node resolve it as they would their own; resolving
it puts the original hop-by-hop id back and queues the answer, untouched otherwise (the
upstream's Result-Code stands), on the link the request came in on.

Before forwarding, the agent appends a Route-Record holding the identity of the peer the
request came from (RFC 6733 6.1.8; the next agent finds *our* identity there, which is how a
loop through us is seen), and excludes from the candidates every identity already recorded,
so a request never goes back to a node it passed (predictive loop avoidance, 6.1.9).

A redirect agent (mode "redirect", RFC 6733 6.1.7) forwards nothing: it answers each
request that is not its own with 3006 DIAMETER_REDIRECT_INDICATION naming, in Redirect-Host
AVPs, the servers its routing table holds for the request (`servers`, bound by the adapter),
and how long the client may cache that (Redirect-Host-Usage, Redirect-Max-Cache-Time). A relay
or proxy that gets a 3006 from upstream follows it once: the request goes to the first
Redirect-Host that is a live peer here and was not tried, keeping the original deadline;
with none, the 3006 goes downstream unchanged, for the client to follow.

No sockets, no loop, no clock: `now` is passed in, bytes are queued on `Link`s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from chargegw.codec import Avp, Message, Peek
from chargegw.codec.constants import APP_RELAY, FLAG_ERROR, FLAG_PROXIABLE, ResultCode
from chargegw.peer.routing import RoutingError
from chargegw.peer.stats import rc_class
from chargegw.peer.uri import DiameterURIError, parse_diameter_uri, redirect_uri

if TYPE_CHECKING:
    from chargegw.peer.config import PeerConfig
    from chargegw.peer.connection import PeerConnection
    from chargegw.peer.link import Link
    from chargegw.peer.routing import RoutingTable

log = logging.getLogger("chargegw.peer.relay")

RC = ResultCode
Mode = Literal["relay", "proxy", "redirect"]
# select(app, destination host, destination realm, excluded names) -> a peer machine,
# or RoutingError (3002/3003): the node's routing table over its live peers.
Select = Callable[[int, "str | None", "str | None", Iterable[str]], Any]
# servers(app, destination host, destination realm) -> the DiameterURIs a redirect agent
# names (RoutingError 3002/3003 for none): the node's routing table, usable peers or not.
Servers = Callable[[int, "str | None", "str | None"], list[str]]
REDIRECTS = 1  # 3006 answers a relay or proxy follows for one request


@dataclass(slots=True)
class AgentConfig:
    """How the agent behaves. `apps`: the applications a proxy forwards (and advertises);
    a relay or a redirect agent takes every application and advertises Relay (0xffffffff)."""

    mode: Mode = "relay"
    apps: frozenset[int] = field(default_factory=frozenset)
    # Forwarded requests awaiting an answer on one upstream link; beyond it: 3004 TOO_BUSY.
    max_pending: int = 10_000
    # Seconds to wait for the upstream's answer (None: the node's request_timeout); on
    # expiry the downstream gets 3002.
    request_timeout: float | None = None
    # A redirect agent's Redirect-Host-Usage (0 DONT_CACHE ... 6 ALL_USER) and, when it is
    # not DONT_CACHE, Redirect-Max-Cache-Time in seconds.
    redirect_usage: int = 0
    redirect_cache_time: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("relay", "proxy", "redirect"):
            raise ValueError(f"mode: {self.mode!r} is not 'relay', 'proxy' or 'redirect'")
        self.apps = frozenset(int(a) for a in self.apps)
        if self.mode == "proxy" and not self.apps:
            raise ValueError("apps: a proxy must name the applications it proxies")
        if self.mode != "proxy" and self.apps:
            raise ValueError(
                f"apps: a {self.mode} agent takes every application; apps is for a proxy"
            )
        if APP_RELAY in self.apps:
            raise ValueError("apps: the Relay id is advertised by mode = 'relay', not listed")
        if self.max_pending < 1:
            raise ValueError("max_pending: must be >= 1")
        if not 0 <= self.redirect_usage <= 6:
            raise ValueError("redirect_usage: must be 0 (DONT_CACHE) to 6 (ALL_USER)")
        if self.redirect_usage and not 0 < self.redirect_cache_time < 1 << 32:
            raise ValueError("redirect_cache_time: must be > 0 seconds when redirect_usage is set")

    def forwards(self, app_id: int) -> bool:
        return self.mode != "proxy" or app_id in self.apps


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def append_avp(data: bytes, avp: bytes) -> bytes:
    """The message `data` with one encoded AVP appended and its length fixed (no reorder)."""
    n = len(data) + len(avp)
    return data[:1] + n.to_bytes(3, "big") + data[4:] + avp


class Forwarded:
    """One forwarded request, as the upstream pending table's waiter: resolving it answers
    the downstream once, on the link the request came in on, with its own hop-by-hop id.
    `out`, `meta`, `sent_at` and `timeout` are what a redirect (3006) needs to send the same
    request on, by the same deadline; `hops`: the redirects it has followed."""

    __slots__ = (
        "agent", "ingress", "link", "request", "out", "meta", "sent_at", "timeout", "hops",
        "via", "_done",
    )  # fmt: skip

    def __init__(
        self,
        agent: RelayAgent,
        ingress: PeerConnection,
        link: Link,
        request: bytes,
        out: bytes = b"",
        meta: Any = None,
        sent_at: float = 0.0,
        timeout: float = 0.0,
        hops: int = 0,
    ) -> None:
        self.agent = agent
        self.ingress = ingress
        self.link = link
        self.request = request  # the downstream's octets (its hop-by-hop id, for errors)
        self.out = out  # as sent upstream (with our Route-Record)
        self.meta = meta
        self.sent_at = sent_at
        self.timeout = timeout
        self.hops = hops
        self.via = ""  # the upstream it went to (a 3006 naming it again is not followed)
        self._done = False

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return False

    def set_result(self, answer: Message) -> None:
        """The upstream answered: restore the hop-by-hop id, pass it on as it came (a 3006
        is followed once, when a Redirect-Host is a live peer here)."""
        if self._done:
            return
        self._done = True
        stats = self.agent.stats
        link = self.link
        if link.closed or link.closing:
            stats["answers_dropped"] += 1  # the downstream went away: nowhere to send it
            return
        rc = answer.raw_value("Result-Code")
        code = int.from_bytes(rc, "big") if rc is not None and len(rc) == 4 else 0
        if code == RC.DIAMETER_REDIRECT_INDICATION and self.agent.follow(self, answer):
            return
        data = answer.raw or answer.encode()
        data = data[:12] + self.request[12:16] + data[16:]
        stats["answers_relayed"] += 1
        self.ingress.answer(link, data, None, 0.0, rc_class(code) if code else 0)

    def set_exception(self, exc: BaseException) -> None:
        """No answer will come (timeout, no alternate after failover, node stopping):
        the downstream gets 3002 from us, so it can retry elsewhere."""
        if self._done:
            return
        self._done = True
        stats = self.agent.stats
        if self.link.closed or self.link.closing:
            stats["answers_dropped"] += 1
            return
        rc = getattr(exc, "result_code", 0)
        if not 3000 <= rc < 4000:
            rc = RC.DIAMETER_UNABLE_TO_DELIVER
        stats["errors_upstream"] += 1
        self.ingress.send_error(self.link, self.request, rc, str(exc)[:200] or None)


class RelayAgent:
    """The forwarding decisions and their bookkeeping; `select` is bound by the adapter."""

    def __init__(
        self, config: AgentConfig, select: Select | None = None, servers: Servers | None = None
    ) -> None:
        self.config = config
        self.select = select
        self.servers = servers
        self.stats: dict[str, int] = {
            "forwarded": 0,
            "answers_relayed": 0,
            "answers_dropped": 0,
            "errors_upstream": 0,
            "loops": 0,
            "no_route": 0,
            "too_busy": 0,
            "redirected": 0,  # 3006 answered here (a redirect agent)
            "redirects_followed": 0,  # 3006 from upstream, the request sent on
        }

    def route_record(self, identity: str) -> bytes:
        """One encoded Route-Record AVP (its code and flags from the dictionary)."""
        return Avp.new("Route-Record", identity).encode()

    def is_local(self, ctx: Any, p: Peek) -> bool:
        """The request is this node's to handle (RFC 6733 6.1.4): not proxiable; an
        application this agent does not forward; addressed to our Destination-Host; or with
        no Destination-Host, for our realm (or no realm) and served by a local handler."""
        if not p.flags & FLAG_PROXIABLE or not self.config.forwards(p.app_id):
            return True
        _, k_dh, k_dr, _ = ctx.routing_keys
        vals = p.values
        dh = vals.get(k_dh)
        if dh is not None:
            return dh.lower() == ctx.own_host_b
        dr = vals.get(k_dr)
        if dr is None:
            return True
        handlers = ctx.handlers
        served = (p.app_id, p.code) in handlers or (p.app_id, None) in handlers
        return served and dr.lower() == ctx.own_realm_b

    def take(self, ingress: PeerConnection, link: Link, data: bytes, p: Peek, now: float) -> bool:
        """Called by the peer machine for each application request. False: the node handles
        it as usual. True: answered here (an error) or forwarded upstream."""
        ctx = ingress.ctx
        if self.is_local(ctx, p):
            return False
        if p.flags & FLAG_ERROR:
            ingress.send_error(link, data, RC.DIAMETER_INVALID_HDR_BITS, "E bit set in a request")
            return True
        if self.config.mode == "redirect":
            self._redirect(ingress, link, data, p)
            return True
        _, k_dh, k_dr, k_rr = ctx.routing_keys
        records = [r.lower() for r in p.all(k_rr)]
        if ctx.own_host_b in records:
            self.stats["loops"] += 1
            ingress.send_error(
                link, data, RC.DIAMETER_LOOP_DETECTED, "own identity in Route-Record"
            )
            return True
        dest_host = _text(p.values.get(k_dh))
        dest_realm = _text(p.values.get(k_dr))
        came_from = ingress.caps.origin_host if ingress.caps is not None else ingress.name
        # Never back to where it came from, nor to a node it already passed.
        exclude = (ingress.key, came_from.lower(), *(_text(r) or "" for r in records))
        target = self._select(ctx, p.app_id, dest_host, dest_realm, exclude)
        if isinstance(target, tuple):
            rc, why = target
            self.stats["no_route"] += 1
            ingress.send_error(link, data, rc, why)
            return True
        if target.outstanding >= self.config.max_pending:
            self.stats["too_busy"] += 1
            why = f"{self.config.max_pending} requests already pending on {target.name}"
            ingress.send_error(link, data, RC.DIAMETER_TOO_BUSY, why)
            return True
        out = append_avp(data, self.route_record(came_from))
        timeout = self.config.request_timeout or ctx.config.request_timeout
        meta = (p.app_id, dest_host, dest_realm, False, tuple(dict.fromkeys(exclude)))
        fwd = Forwarded(self, ingress, link, data, out, meta, now, timeout)
        fwd.via = target.name.lower()
        target.send_request(out, fwd, timeout, meta, now)
        self.stats["forwarded"] += 1
        return True

    def _redirect(self, ingress: PeerConnection, link: Link, data: bytes, p: Peek) -> None:
        """A redirect agent's answer: 3006 naming the servers for the request."""
        _, k_dh, k_dr, _ = ingress.ctx.routing_keys
        dest_host = _text(p.values.get(k_dh))
        dest_realm = _text(p.values.get(k_dr))
        if self.servers is None:
            ingress.send_error(link, data, RC.DIAMETER_UNABLE_TO_DELIVER, "no routing table")
            return
        try:
            uris = self.servers(p.app_id, dest_host, dest_realm)
        except RoutingError as exc:
            self.stats["no_route"] += 1
            ingress.send_error(link, data, exc.result_code, str(exc))
            return
        cfg = self.config
        extra = b"".join(Avp.new("Redirect-Host", u).encode() for u in uris)
        extra += Avp.new("Redirect-Host-Usage", cfg.redirect_usage).encode()
        if cfg.redirect_usage:
            extra += Avp.new("Redirect-Max-Cache-Time", cfg.redirect_cache_time).encode()
        self.stats["redirected"] += 1
        ingress.send_error(link, data, RC.DIAMETER_REDIRECT_INDICATION, None, extra=extra)

    def follow(self, fwd: Forwarded, answer: Message) -> bool:
        """A 3006 from upstream for `fwd`: send the same request to the first Redirect-Host
        that is a live peer here, supports the application and was not tried, by the
        original deadline (RFC 6733 6.1.7). False (the 3006 goes downstream as it came)
        when it has been redirected REDIRECTS times, or no Redirect-Host is usable here."""
        if fwd.hops >= REDIRECTS or self.select is None or fwd.meta is None:
            return False
        app, dest_host, dest_realm, pinned, tried = fwd.meta
        tried = (*tried, fwd.via)
        for text in answer.get_all("Redirect-Host"):
            try:
                host = parse_diameter_uri(str(text)).host.lower()
            except DiameterURIError:
                continue
            if host in tried:
                continue
            try:
                peer = self.select(app, host, None, tried)
            except RoutingError:
                continue
            if peer.name.lower() != host:  # a default route, not the host named
                continue
            meta = (app, dest_host, dest_realm, pinned, (*tried, host))
            nxt = Forwarded(
                self, fwd.ingress, fwd.link, fwd.request, fwd.out, meta, fwd.sent_at,
                fwd.timeout, fwd.hops + 1,
            )  # fmt: skip
            nxt.via = host
            try:
                peer.send_request(fwd.out, nxt, fwd.timeout, meta, fwd.sent_at)
            except Exception:  # its link closed meanwhile: try the next one
                continue
            self.stats["redirects_followed"] += 1
            return True
        return False

    def _select(
        self, ctx: Any, app: int, host: str | None, realm: str | None, exclude: tuple[str, ...]
    ) -> Any:
        if ctx.stopping:
            return RC.DIAMETER_UNABLE_TO_DELIVER, "agent is stopping"
        if self.select is None:
            return RC.DIAMETER_UNABLE_TO_DELIVER, "agent has no routing table"
        try:
            return self.select(app, host, realm, exclude)
        except RoutingError as exc:
            return exc.result_code, str(exc)


def redirect_hosts(
    table: RoutingTable,
    peers: Any,
    configs: Iterable[PeerConfig],
    app: int,
    host: str | None,
    realm: str | None,
) -> list[str]:
    """A redirect agent's Redirect-Host values (what an adapter binds as `servers`): the
    routing table's servers for the request, as DiameterURIs from their `[[peers]]` entries
    (port, TLS, SCTP). RoutingError (3002/3003) when there is none."""
    by_name = {pc.name.lower(): pc for pc in configs}
    return [redirect_uri(n, by_name.get(n)) for n in table.servers(peers, app, host, realm)]


def advertised(config: AgentConfig) -> tuple[bool, list[int]]:
    """What CER/CEA carry for this agent: (advertise Relay, the applications proxied)."""
    if config.mode != "proxy":
        return True, []
    return False, sorted(config.apps)


__all__ = [
    "REDIRECTS",
    "AgentConfig",
    "Forwarded",
    "Mode",
    "RelayAgent",
    "Select",
    "Servers",
    "advertised",
    "append_avp",
    "redirect_hosts",
]
