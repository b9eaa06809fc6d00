"""Admission of inbound connections before their CER (RFC 6733 5.6.1), without I/O.

An inbound connection is anonymous until its CER names a peer. Until then it costs us a
descriptor and a buffer, so it is capped (in total and per source address) and timed
(`cer_timeout`, which starts at accept and so covers a TLS handshake). The CER itself is
checked against the allowlist, the peer's `source` binding and, over verified TLS, the
certificate's DNS names; a refusal is answered (3010 / 5xxx CEA) and the link closed.

The facts come in as data on the `Link` (source address, certificate names); the host names
in `PeerConfig.source` are resolved by the adapter into `resolved`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from typing import Any

from chargegw.codec import CodecError, FramingError, Message
from chargegw.codec.constants import CMD_CER, ResultCode
from chargegw.peer import capabilities as capmod
from chargegw.peer.capabilities import CapabilitiesError, PeerCapabilities
from chargegw.peer.errors import answer_for_codec_error, build_error_answer
from chargegw.peer.link import Context, IPAddress, Link

log = logging.getLogger("chargegw.peer")


def san_matches(pattern: str, host: str) -> bool:
    """RFC 6125 DNS-ID match: exact, or a "*." wildcard standing for one leftmost label."""
    pattern = pattern.lower().rstrip(".")
    host = host.lower().rstrip(".")
    if pattern == host:
        return True
    if pattern.startswith("*.") and "." in host:
        return host.split(".", 1)[1] == pattern[2:] and pattern.count(".") >= 2
    return False


def tls_identity_error(link: Link, origin_host: str) -> str | None:
    """Why a verified TLS peer's certificate does not name `origin_host` (None: it does).

    Certificate verification alone says only that the CA signed *some* name; the Diameter
    identity is the Origin-Host, so a certificate's DNS SANs must include it.
    """
    if link.kind != "tls" or not link.tls_verify:
        return None
    names = link.cert_names
    if names is None:
        return "no verified peer certificate"
    if any(san_matches(n, origin_host) for n in names):
        return None
    return f"certificate names {names or 'no DNS SAN'}, not Origin-Host {origin_host!r}"


def source_allowed(sources: list[str], src: IPAddress, resolved: dict[str, frozenset[str]]) -> bool:
    text = str(src)
    for entry in sources:
        try:
            net = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if text in resolved.get(entry.lower(), ()):
                return True
            continue
        if src.version == net.version and src in net:
            return True
    return False


def framing_reply(ctx: Context, link: Link, exc: FramingError) -> None:
    """After a framing fault: a 5011 answer where one can be built (even before CER), close."""
    ctx.stats["framing_errors"] += 1
    log.warning("%r: framing error: %s", link, exc)
    bad = exc.rest
    if (
        exc.result_code == ResultCode.DIAMETER_UNSUPPORTED_VERSION
        and len(bad) >= 20
        and bad[4] & 0x80
    ):
        cfg = ctx.config
        ans = build_error_answer(
            bad[:20],
            ResultCode.DIAMETER_UNSUPPORTED_VERSION,
            cfg.origin_host,
            cfg.origin_realm,
            str(exc),
        )
        if ans:
            link.send(ans)
        link.close()
        return
    if link.open:
        link.close()
        return
    link.abort()


class Admission:
    """The pre-CER connection set of one node, and the CER check."""

    __slots__ = ("ctx", "inbound", "by_src", "resolved", "refused_at", "want_resolve")

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.inbound: set[Link] = set()  # accepted, CER not yet accepted
        self.by_src: Counter[Any] = Counter()  # the same, by source address
        self.resolved: dict[str, frozenset[str]] = {}  # host names in PeerConfig.source
        self.refused_at = -1e18  # last "closed at accept" log line (rate limit)
        self.want_resolve = False  # a source check failed: the adapter should resolve again

    def accepted(self, link: Link, now: float) -> bool:
        """At accept (before a TLS handshake): start the CER timer; False: over the total cap."""
        if len(self.inbound) >= self.ctx.config.max_pre_cer:
            return False
        link.cer_deadline = now + self.ctx.config.cer_timeout
        self.inbound.add(link)
        return True

    def made(self, link: Link, now: float, refuse: str | None = None) -> bool:
        """The connection is up (TLS: handshake done). False: aborted, with the reason logged."""
        cfg = self.ctx.config
        src = link.src
        why = refuse
        if why is None and self.ctx.stopping:
            why = "stopping"
        elif why is None and self.by_src[src] >= cfg.max_pre_cer_per_source:
            why = f"too many connections without CER from {src}"
        elif why is None and (
            link.closing or (link.cer_deadline is not None and now >= link.cer_deadline)
        ):
            why = "no CER in time (the TLS handshake used up the CER timer)"
        if why is not None:
            # Closed before any decoding work: a flood of idle connections must not use up
            # memory or descriptors, or crowd out well-behaved peers.
            self.done(link)
            self.ctx.stats["refused_at_accept"] += 1
            if now - self.refused_at >= 1.0:
                self.refused_at = now
                log.warning("%r: closed at accept: %s", link, why)
            link.abort()
            return False
        link.counted_src = True
        self.by_src[src] += 1
        return True

    def done(self, link: Link) -> None:
        """The link leaves the pre-CER set (accepted, refused, closed or timed out)."""
        link.cer_deadline = None
        self.inbound.discard(link)
        if link.counted_src:
            link.counted_src = False
            src = link.src
            n = self.by_src[src] - 1
            if n > 0:
                self.by_src[src] = n
            else:
                del self.by_src[src]

    def expire(self, now: float) -> None:
        """Abort the links whose CER did not come in time."""
        for link in [x for x in self.inbound if x.cer_deadline is not None]:
            if now >= link.cer_deadline:  # type: ignore[operator]
                log.info("%r: no CER within %.1f s, closing", link, self.ctx.config.cer_timeout)
                self.done(link)
                link.abort()

    def receive(
        self, link: Link, data: bytes
    ) -> tuple[Message, PeerCapabilities, frozenset[int], list[bytes]] | None:
        """Octets on an anonymous link: deframe; the first message must be an acceptable CER.

        Returns (CER, caps, common apps, the frames after it) for the peer's machine
        (`PeerConnection.accept_cer`), or None (nothing complete yet, or refused: then the
        answer is queued and the link is closing)."""
        try:
            frames = link.reader.feed(data)
        except FramingError as exc:
            framing_reply(self.ctx, link, exc)
            return None
        if not frames or link.closing:
            return None
        got = self.receive_cer(link, frames[0])
        if got is None:
            return None
        self.done(link)
        return (*got, frames[1:])

    def receive_cer(
        self, link: Link, data: bytes
    ) -> tuple[Message, PeerCapabilities, frozenset[int]] | None:
        """The first message on an anonymous link: its CER's (msg, caps, common apps), or None
        when refused (the answer is queued on the link and the link is closing)."""
        ctx = self.ctx
        cfg = ctx.config
        hdr = data[4:12]
        code = int.from_bytes(hdr[1:4], "big")
        if not (hdr[0] & 0x80 and code == CMD_CER and hdr[4:8] == b"\0\0\0\0"):
            log.info("%r: message (code %d) before CER, closing", link, code)
            link.close()
            return None
        try:
            msg = Message.decode(data, max_length=cfg.max_message_length)
        except CodecError as exc:
            ans = answer_for_codec_error(
                data, exc, origin_host=cfg.origin_host, origin_realm=cfg.origin_realm
            )
            if ans:
                link.send(ans)
            link.close()
            return None
        configured = [pc.name for pc in cfg.peers]
        src = link.src
        try:
            caps, common = capmod.check_cer(
                msg, cfg, configured, from_loopback=src is not None and src.is_loopback
            )
            why = self.identity_error(link, caps.origin_host)
            if why is not None:
                raise CapabilitiesError(ResultCode.DIAMETER_UNKNOWN_PEER, why, caps=caps)
        except CapabilitiesError as exc:
            ctx.stats["rejected_cer"] += 1
            who = exc.caps.origin_host if exc.caps else "?"
            log.warning("%r: CER from %s refused: %d %s", link, who, exc.result_code, exc)
            cea = capmod.build_cea(
                cfg,
                msg,
                exc.result_code,
                host_ips=link.host_ips,
                error_message=str(exc),
                failed_avp=exc.failed_avps or None,
            )
            link.send(cea.encode())
            link.close()
            return None
        return msg, caps, common

    def identity_error(self, link: Link, origin_host: str) -> str | None:
        """Why this link may not speak as `origin_host` (None: it may).

        A configured peer with `source` set is bound to those addresses; over verified TLS
        the certificate must name the Origin-Host.
        """
        why = tls_identity_error(link, origin_host)
        if why is not None:
            return why
        key = origin_host.lower()
        pc = next((p for p in self.ctx.config.peers if p.name.lower() == key), None)
        if pc is None or pc.source is None:
            return None
        src = link.src
        if src is not None and source_allowed(pc.source, src, self.resolved):
            return None
        self.want_resolve = True  # DNS may have moved: look again
        return f"peer {origin_host!r} may not connect from {src}"
