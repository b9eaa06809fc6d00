"""The sans-IO per-peer machine: RFC 6733 peer logic with no sockets, no loop and no clock.

`PeerConnection` is one peer identity (it may briefly hold two links, the one we initiated
and the one the peer initiated, until the election). It drives the state machine (fsm), the
RFC 3539 watchdog, the capabilities exchange, the pending requests of its links, failover and
duplicate detection. It consumes bytes (`receive_data`), events (`start`, `connected`,
`accept_cer`, `send_request`, `close`, `connection_lost`, `timer`) and `now`; it queues the
bytes to send on its `Link`s and returns `Event`s (peer up/down, request / answer received,
failover, connect) for the adapter (peer/node.py) or a test (`PeerPair`) to act on.

The receive path does the least work per message, and reads each header once: a request is
read by the codec's one peek (header and routing values in one pass, AVP framing checked),
every check is made from that peek, and its handler gets either the octets with the peek (a
RawHandler: the gateway's front end, which forwards them) or a Message over the same octets
whose index is built only when the handler reads; answers are matched by hop-by-hop id and
decoded only to be handed over. `handle_requests` calls the handlers the adapter hands back
in a RequestReceived event and sends what they answer at once; only awaitables go back to
the adapter, which owns the loop.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from typing import Any

from chargegw.codec import AvpError, CodecError, FramingError, Message, Peek, peek
from chargegw.codec import error_answer as codec_error_answer
from chargegw.codec.constants import ResultCode
from chargegw.peer.admission import framing_reply
from chargegw.peer.dupcache import IN_PROGRESS
from chargegw.peer.errors import (
    ProtocolError,
    RequestError,
    answer_for_codec_error,
)
from chargegw.peer.link import (
    AnswerReceived,
    Event,
    FramingFault,
    Link,
    RawHandler,
    RequestReceived,
)
from chargegw.peer.peerstate import PeerState
from chargegw.peer.stats import rc_class
from chargegw.peer.watchdog import WdState

log = logging.getLogger("chargegw.peer")

_FC_APP_HBH = struct.Struct(">III")  # flags|code, app, hop-by-hop (from offset 4)
_E = 0x20 << 24
RC = ResultCode
_RESULT_CODE = "Result-Code"
# A handler's request and answer: (request, peek, dup key, what the handler returned)
Deferred = tuple[Any, Peek, Any, Any]


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


class PeerConnection(PeerState):
    """One peer, sans-IO: bytes and events in, bytes (on its links) and events out."""

    # -- events in: bytes ----------------------------------------------------------------------

    def receive_data(self, link: Link, data: bytes, now: float) -> list[Event]:
        """Octets from the link: deframe and handle every complete message."""
        try:
            frames = link.reader.feed(data)
        except FramingError as exc:
            self.framing_error(link, exc, now)
            return self._take()
        if frames:
            self._frames(link, frames, now)
        return self._take()

    def framing_error(self, link: Link, exc: FramingError, now: float) -> None:
        """Unrecoverable framing: serve the good frames before it, then (FramingFault) say
        why (5011) and close, after their answers."""
        if link.open and exc.frames:
            try:
                self._frames(link, exc.frames, now)
            except Exception:  # the frames' own faults are logged there; still close below
                log.exception("%r: frame handling failed", link)
        self._events.append(FramingFault(link, exc))

    def receive_frames(self, link: Link, frames: list[bytes], now: float) -> list[Event]:
        """Whole messages from the link (already deframed)."""
        self._frames(link, frames, now)
        return self._take()

    def _frames(self, link: Link, frames: list[bytes], now: float) -> None:
        events = self._events
        if not link.open:
            for i, data in enumerate(frames):
                if link.closing or link.closed:
                    break
                try:
                    self._pre_open(link, data, now)
                except Exception:
                    log.exception("%r: handling a message before open", link)
                    link.abort()
                    break
                if link.open:
                    rest = frames[i + 1 :]
                    if rest:
                        self._frames(link, rest, now)
                    break
            return
        wd = self.watchdog
        wd.last_rx = now
        discard = False
        if wd.state is not WdState.OKAY:
            self._wd(wd.message_received(now), now)
            discard = wd.state is WdState.REOPEN and self.ctx.config.reopen_discards_requests
        unpack = _FC_APP_HBH.unpack_from
        pop = link.pending.pop
        decode = Message.decode
        max_length = self.ctx.config.max_message_length
        for data in frames:
            if data[4] & 0x80:  # a request: the peek is its one read of header and routing
                try:
                    p = peek(data, max_length=max_length)
                except CodecError as exc:
                    self._malformed_request(link, data, exc, discard)
                    continue
                except Exception:  # a codec bug must not take the connection down
                    log.exception("%s: request peek failed", self.name)
                    self.send_error(link, data, RC.DIAMETER_UNABLE_TO_COMPLY, "unreadable request")
                    continue
                try:
                    if p.app_id == 0:
                        self._base_request(link, data, p, now)
                    elif not discard:
                        self._request(link, data, p, now)
                except Exception:
                    log.exception("%s: request handling failed", self.name)
                continue
            fc, app, hbh = unpack(data, 4)
            if app == 0:
                try:
                    self._base_answer(link, data, fc & 0xFFFFFF, hbh, now)
                except Exception:
                    log.exception("%s: base message handling failed", self.name)
                continue
            entry = pop(hbh)
            if entry is None:
                log.debug("%s: answer with unknown hop-by-hop %#x dropped", self.name, hbh)
                continue
            if entry.waiter is None:
                continue
            if entry.data[16:20] != data[16:20]:
                log.warning("%s: answer end-to-end mismatch, dropped", self.name)
                err = RequestError(RC.DIAMETER_UNABLE_TO_DELIVER, "answer end-to-end id mismatch")
                events.append(AnswerReceived(entry.waiter, None, err))
                continue
            cmd = self.ctx.commands.get(app, fc & 0xFFFFFF)
            latency = now - (entry.deadline - entry.timeout)  # from the first send
            self.counters.latency.add(latency)
            cmd.latency.add(latency)
            try:
                ans = decode(data)
                rc = ans.raw_value(_RESULT_CODE)
                cls = rc_class(int.from_bytes(rc, "big")) if rc is not None and len(rc) == 4 else 0
                self.counters.answers_in[cls] += 1
                cmd.answers_in[cls] += 1
                events.append(AnswerReceived(entry.waiter, ans))
            except CodecError as exc:
                err = RequestError(exc.result_code, f"undecodable answer: {exc}")
                events.append(AnswerReceived(entry.waiter, None, err))
            except Exception as exc:  # a codec bug must not take the connection down
                log.exception("%s: answer decoding failed", self.name)
                err = RequestError(RC.DIAMETER_UNABLE_TO_COMPLY, f"undecodable answer: {exc}")
                events.append(AnswerReceived(entry.waiter, None, err))

    # -- events in: application ----------------------------------------------------------------

    def send_request(self, data: bytes, waiter: Any, timeout: float, meta: Any, now: float) -> int:
        """Send an encoded request on the open link and track it; returns its hop-by-hop id.

        `meta` is (app, dest_host, dest_realm, pinned, tried): what failover needs."""
        link = self.link
        if link is None:
            raise RequestError(RC.DIAMETER_UNABLE_TO_DELIVER, f"peer {self.name!r} is not open")
        pending = link.pending
        hbh = pending.new_hbh()
        data = data[:12] + hbh.to_bytes(4, "big") + data[16:]
        pending.add(hbh, now, timeout, waiter, data, meta)
        self.stats["requests_out"] += 1
        self.counters.requests_out += 1
        self.ctx.commands.get(meta[0], int.from_bytes(data[5:8], "big")).requests_out += 1
        link.send(data)
        return hbh

    def send_untracked(self, msg: Message) -> bool:
        """Fire a request without tracking an answer (answers are dropped)."""
        link = self.link or self.i or self.r
        if link is None:
            return False
        msg.hop_by_hop = link.pending.new_hbh()
        if not msg.end_to_end:
            msg.end_to_end = self.ctx.e2e.next()
        link.send(msg.encode())
        return True

    def resend(self, entry: Any, tried: tuple[str, ...], now: float) -> None:
        """Failover target: send `entry`'s request here with the T flag (RFC 6733 5.5.4)."""
        link = self.link
        assert link is not None
        hbh = link.pending.new_hbh()
        buf = bytearray(entry.data)
        buf[4] |= 0x10  # T: possibly a retransmission
        buf[12:16] = hbh.to_bytes(4, "big")
        data = bytes(buf)
        app, dest_host, dest_realm, _, _ = entry.meta
        link.pending.add(
            hbh,
            now,
            entry.timeout,
            entry.waiter,
            data,
            (app, dest_host, dest_realm, False, tried),
            deadline=entry.deadline,
        )
        self.counters.requests_out += 1  # counted once per command, at the first send
        link.send(data)

    def answer(self, link: Link, data: bytes, key: Any, now: float, cls: int = 0) -> None:
        """Send the handler's answer and keep it for duplicates (T flag). `cls`: its
        Result-Code class when known (`rc_class`), 0 for octets the node did not read."""
        self._count_out(int.from_bytes(data[8:12], "big"), int.from_bytes(data[5:8], "big"), cls)
        link.send(data)
        if key is not None:
            self.ctx.dup.put(key, data, now)

    def answer_later(self, link: Link, hbh: int, key: Any, now: float, begun: bool) -> None:
        """The handler answers later (`send_answer`): a copy arriving meanwhile is dropped."""
        if key is None:
            return
        dup = self.ctx.dup
        if not begun:
            dup.begin(key, now)
        later = self._later
        later[hbh] = key
        if len(later) > dup.max_size:
            later.popitem(last=False)

    def send_answer(self, data: bytes, now: float, cache: bool = True) -> bool:
        """An answer a handler deferred; cache=False: a passing error, not kept."""
        link = self.link or self.r or self.i
        if link is None:
            return False
        self._count_out(int.from_bytes(data[8:12], "big"), int.from_bytes(data[5:8], "big"), 0)
        link.send(data)
        if self._later:
            key = self._later.pop(int.from_bytes(data[12:16], "big"), None)
            if key is not None:
                if cache:
                    self.ctx.dup.put(key, data, now)
                else:
                    self.ctx.dup.forget(key)
        return True

    def handle_requests(self, ev: RequestReceived, now: float) -> list[Deferred]:
        """Call the handlers of a RequestReceived batch (as the peer, `self`) and send what
        they answer. Returns the requests whose handler returned something else (an
        awaitable: the adapter runs it, then calls `answer` or `handler_failed`)."""
        link = ev.link
        send = link.send
        dup = self.ctx.dup
        counters = self.counters
        commands = self.ctx.commands
        deferred: list[Deferred] = []
        for handler, req, p, key in ev.requests:
            try:
                if type(handler) is RawHandler:
                    res = handler.fn(req, p, self)
                else:
                    res = handler(req, self)
            except Exception as exc:
                self.handler_failed(link, req, exc, key)
                continue
            if type(res) is bytes:
                counters.answers_out[0] += 1
                commands.get(p.app_id, p.code).answers_out[0] += 1
                send(res)
                if key is not None:
                    dup.put(key, res, now)
            elif res is None:  # answered later by send_answer
                self.answer_later(link, p.hop_by_hop, key, now, False)
            elif isinstance(res, ProtocolError):  # returned rather than raised: the shed path
                self.refused(link, req, res, key, p.app_id, p.code)
            elif isinstance(res, Message):
                out = answer_bytes(res, p, self.ctx.config)
                self.answer(link, out, key, now, answer_class(res))
            else:
                deferred.append((req, p, key, res))
        return deferred

    def handler_failed(
        self, link: Link, req: Message | bytes, exc: BaseException, key: Any
    ) -> None:
        """The handler raised: its Result-Code (ProtocolError / AvpError) or 5012. Not cached,
        so a retransmission after a passing failure is handled again."""
        if isinstance(exc, AvpError):  # a value the handler read was bad: its answer as such
            exc = ProtocolError(exc.result_code, str(exc)[:200], exc.failed_avps)
        if isinstance(exc, ProtocolError):
            self.refused(link, req, exc, key, *_app_code(req))
            return
        if key is not None:
            self.ctx.dup.forget(key)
        self.ctx.stats["handler_errors"] += 1
        app, code = _app_code(req)
        self.ctx.commands.get(app, code).answers_out[5] += 1
        log.error("handler for app %d command %d failed", app, code, exc_info=exc)
        self.send_error(link, req, RC.DIAMETER_UNABLE_TO_COMPLY, "internal error")

    def send_error(
        self,
        link: Link,
        req: Message | bytes,
        rc: int,
        text: str | None = None,
        failed: Any = None,
        extra: bytes = b"",
    ) -> None:
        """An error answer made here; `extra`: encoded AVPs appended to it."""
        self._send_error(link, req, ProtocolError(rc, text, failed, extra=extra))

    def refused(
        self, link: Link, req: Message | bytes, err: ProtocolError, key: Any, app: int, code: int
    ) -> None:
        """A handler's ProtocolError, raised or returned (returning it spares unwinding the
        handler's frames: the gateway sheds 3004 so). Not kept for duplicates: it reports a
        passing condition, and a retransmission must be handled again."""
        if key is not None:
            self.ctx.dup.forget(key)
        cls = rc_class(err.result_code)
        self.ctx.commands.get(app, code).answers_out[cls] += 1
        self._send_error(link, req, err, cls)

    def _send_error(
        self, link: Link, req: Message | bytes, err: ProtocolError, cls: int = -1
    ) -> None:
        """Through the codec's one error-answer builder (what peer/errors.encode_error does,
        without its extra call: this is every shed request's answer); `cls`: the Result-Code
        class when the caller has it."""
        cfg = self.ctx.config
        try:
            ans = codec_error_answer(req, err, cfg.origin_host, cfg.origin_realm, extra=err.extra)
        except FramingError:  # not even a header: nothing to answer to
            return
        self.stats["errors_out"] += 1
        self.counters.answers_out[rc_class(err.result_code) if cls < 0 else cls] += 1
        link.send(ans)

    def _count_out(self, app: int, code: int, cls: int) -> None:
        self.counters.answers_out[cls] += 1
        self.ctx.commands.get(app, code).answers_out[cls] += 1

    # -- application requests ------------------------------------------------------------------

    def _request(self, link: Link, data: bytes, p: Peek, now: float) -> None:
        """Check a request from its peek (handler known, header bits, destination, loops,
        duplicates; the full grammar when `validate_requests`); a good one joins the
        RequestReceived batch, a bad one gets its error answer."""
        self.stats["requests_in"] += 1
        ctx = self.ctx
        _, _, flags, code, app, _, e2e, vals, more = p
        agent = ctx.agent
        if agent is not None and agent.take(self, link, data, p, now):
            return  # forwarded, or answered by the agent (peer/relay.py)
        handlers = ctx.handlers
        handler = handlers.get((app, code))
        if handler is None:
            handler = handlers.get((app, None))
            if handler is None:
                self._unsupported(link, data, app, code)
                return
        self.counters.requests_in += 1
        ctx.commands.get(app, code).requests_in += 1
        if flags & 0x20:  # E
            self.send_error(link, data, RC.DIAMETER_INVALID_HDR_BITS, "E bit set in a request")
            return
        cfg = ctx.config
        k_oh, k_dh, k_dr, k_rr = ctx.routing_keys
        rr = vals.get(k_rr)
        if rr is not None or cfg.check_destination:
            rrs = None
            if rr is not None:
                rrs = [rr, *more[k_rr]] if more is not None and k_rr in more else [rr]
            bad = self._check_destination(vals.get(k_dh), vals.get(k_dr), rrs)
            if bad is not None:
                self.send_error(link, data, bad[0], bad[1])
                return
        req: Message | bytes = data
        if type(handler) is not RawHandler or cfg.validate_requests:
            msg = Message.from_peek(data, p)
            if cfg.validate_requests:
                try:
                    msg.validate()
                except CodecError as exc:
                    ans = answer_for_codec_error(
                        msg, exc, origin_host=cfg.origin_host, origin_realm=cfg.origin_realm
                    )
                    if ans is not None:
                        self._count_out(app, code, rc_class(exc.result_code))
                        link.send(ans)
                    return
            if type(handler) is not RawHandler:
                req = msg
        dup = ctx.dup
        key = None
        oh = vals.get(k_oh)
        if oh is not None and dup.max_size:
            host = oh.lower()
            if host == self.key_octets:  # the usual case: one shared object, not a copy each
                host = self.key_octets
            key = (host, e2e)
            hit = dup.get(key, now)
            if hit is not None:
                ctx.stats["duplicates"] += 1
                if hit is IN_PROGRESS:
                    log.info("%s: duplicate of a request still being handled, dropped", self.name)
                else:
                    link.send(hit[:12] + data[12:16] + hit[16:])
                return
        batch = self._batch
        if batch is None or batch.link is not link:
            batch = self._batch = RequestReceived(link, [])
            self._events.append(batch)
        batch.requests.append((handler, req, p, key))

    def _unsupported(self, link: Link, data: bytes, app: int, code: int) -> None:
        """No handler: 3001 for a command of a served application, else 3007."""
        if app in self.ctx.handler_apps:
            rc, text = RC.DIAMETER_COMMAND_UNSUPPORTED, f"command {code} not supported"
        else:
            rc, text = RC.DIAMETER_APPLICATION_UNSUPPORTED, f"application {app} not supported"
        self.send_error(link, data, rc, text)

    def _malformed_request(self, link: Link, data: bytes, exc: CodecError, discard: bool) -> None:
        """A request whose peek failed (an AVP's length, RFC 6733 7.5: 5014 with Failed-AVP).
        The header is whole (the deframer checked it): the header checks come first, as for
        a well-formed request, then the codec's own answer for the fault."""
        fc, app, _ = _FC_APP_HBH.unpack_from(data, 4)
        ctx = self.ctx
        if app != 0:
            if discard:
                return
            self.stats["requests_in"] += 1
            code = fc & 0xFFFFFF
            agent = ctx.agent
            local = agent is None or not agent.config.forwards(app)
            if local and (app, code) not in ctx.handlers and (app, None) not in ctx.handlers:
                self._unsupported(link, data, app, code)
                return
            if fc & _E:
                self.send_error(link, data, RC.DIAMETER_INVALID_HDR_BITS, "E bit set in a request")
                return
        cfg = ctx.config
        ans = answer_for_codec_error(
            data, exc, origin_host=cfg.origin_host, origin_realm=cfg.origin_realm
        )
        if ans is not None:
            self.stats["errors_out"] += 1
            link.send(ans)

    def _check_destination(
        self, dh: bytes | None, dr: bytes | None, rr: list[bytes] | None
    ) -> tuple[int, str] | None:
        """3005 for a loop through us, 3002/3003 for a request that is not for this node."""
        ctx = self.ctx
        own = ctx.own_host_b
        if rr:
            for value in rr:
                if value.lower() == own:
                    return RC.DIAMETER_LOOP_DETECTED, "own identity in Route-Record"
        if not ctx.config.check_destination:
            return None
        if dh is not None and dh.lower() != own:
            return RC.DIAMETER_UNABLE_TO_DELIVER, f"Destination-Host {_text(dh)} is not this node"
        if dr is not None and dr.lower() != ctx.own_realm_b and not ctx.config.relay:
            return RC.DIAMETER_REALM_NOT_SERVED, f"realm {_text(dr)} not served here"
        return None


def answer_bytes(res: Message, p: Peek, config: Any) -> bytes:
    """A handler's Message answer, encoded, with the request's hop-by-hop and end-to-end ids
    (an answer built from scratch has none), and this node's Origin-Host and Origin-Realm
    where the handler left them out (RFC 6733 6.2 requires both; `msg.answer(2001)` alone
    has neither, as python-diameter's `generate_answer` would fill)."""
    if res.hop_by_hop != p.hop_by_hop or res.end_to_end != p.end_to_end:
        res.hop_by_hop = p.hop_by_hop
        res.end_to_end = p.end_to_end
    if res.raw_value("Origin-Host") is None:
        res.set("Origin-Host", config.origin_host)
    if res.raw_value("Origin-Realm") is None:
        res.set("Origin-Realm", config.origin_realm)
    return res.encode()


def answer_class(res: Message) -> int:
    """The Result-Code class of a handler's Message answer, for the statistics (0: none)."""
    rc = res.raw_value(_RESULT_CODE)
    return rc_class(int.from_bytes(rc, "big")) if rc is not None and len(rc) == 4 else 0


def _app_code(req: Message | bytes) -> tuple[int, int]:
    if isinstance(req, Message):
        return req.app_id, req.code
    return int.from_bytes(req[8:12], "big"), int.from_bytes(req[5:8], "big")


def plan_failover(
    failed_key: str,
    entries: list[Any],
    select: Callable[[int, Any, Any, tuple[str, ...]], Any],
    stopping: bool = False,
) -> list[tuple[Any, Any, tuple[str, ...] | str]]:
    """Where each pending request of a lost peer goes: [(entry, alternate, tried)] or
    [(entry, None, why)]. `select(app, dest_host, dest_realm, tried)` returns a peer or
    raises (RoutingError): pinned requests, ones for that very Destination-Host, and ones
    with no alternate fail (3002)."""
    out: list[tuple[Any, Any, tuple[str, ...] | str]] = []
    for e in entries:
        app, dest_host, dest_realm, pinned, tried = e.meta
        if pinned or stopping:
            out.append((e, None, f"peer {failed_key} went away"))
            continue
        if dest_host is not None and str(dest_host).lower() == failed_key:
            out.append((e, None, f"Destination-Host {failed_key} went away"))
            continue
        tried = (*tried, failed_key)
        try:
            alt = select(app, dest_host, dest_realm, tried)
        except Exception:
            out.append((e, None, f"peer {failed_key} went away, no alternate"))
            continue
        out.append((e, alt, tried))
    return out


__all__ = [
    "PeerConnection",
    "answer_bytes",
    "answer_class",
    "framing_reply",
    "plan_failover",
]  # framing_reply: admission.py
