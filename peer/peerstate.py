"""The peer-state half of the sans-IO peer machine: fsm actions, watchdog, CER/CEA, DWR, DPR.

`PeerState` turns the pure units (fsm, watchdog, capabilities) into one peer's behaviour:
RFC 6733 5.6 actions are carried out on its `Link`s (bytes queued, closes asked for), the
open/closed transitions update what routing reads and start failover. No I/O and no clock:
`now` is passed in. `PeerConnection` (peer/connection.py) adds the message paths.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from chargegw.codec import CodecError, Message, Peek
from chargegw.codec.constants import CMD_CER, CMD_DPR, CMD_DWR, DisconnectCause, ResultCode
from chargegw.peer import capabilities as capmod
from chargegw.peer.admission import tls_identity_error
from chargegw.peer.capabilities import CapabilitiesError, PeerCapabilities
from chargegw.peer.config import PeerConfig
from chargegw.peer.errors import RequestError, RequestTimeout
from chargegw.peer.fsm import OPEN_STATES, Action, PeerStateMachine, State
from chargegw.peer.fsm import Event as Fsm
from chargegw.peer.link import (
    AnswerReceived,
    CancelConnect,
    Connect,
    Context,
    Event,
    Failover,
    Link,
    PeerDown,
    PeerUp,
    RequestReceived,
)
from chargegw.peer.stats import Counters
from chargegw.peer.watchdog import Watchdog, WdAction, WdState

log = logging.getLogger("chargegw.peer")

RC = ResultCode
_R = 0x80000000


class PeerState:
    """One peer: its state machine, watchdog, links and what it learnt from CER/CEA.

    The base of `PeerConnection` (peer/connection.py), which adds the message paths."""

    def __init__(
        self,
        name: str,
        ctx: Context,
        config: PeerConfig | None = None,
        *,
        tw: float | None = None,
        rand: Callable[[float, float], float] | None = None,
    ) -> None:
        cfg = ctx.config
        self.name = name
        self.key = name.lower()
        # the same as octets: duplicate-cache keys of this peer's own requests share it
        self.key_octets = self.key.encode()
        self.ctx = ctx
        self.config = config
        self.realm: str | None = config.realm if config is not None else None
        self.fsm = PeerStateMachine(
            cfg.origin_host, name, cea_timeout=cfg.cea_timeout, dpa_timeout=cfg.dpa_timeout
        )
        if tw is None:
            tw = config.tw if config is not None and config.tw is not None else cfg.tw
        self.watchdog = Watchdog(tw, rand)
        self.link: Link | None = None  # the open link
        self.i: Link | None = None  # the link we initiated
        self.r: Link | None = None  # the link the peer initiated
        self.caps: PeerCapabilities | None = None
        self.apps: frozenset[int] = frozenset()  # common applications
        self.remote_apps: frozenset[int] = frozenset()
        self.remote_relay = False
        self.disc_cause_rcvd: int | None = None
        self.orderly = False  # the last close was a DPR/DPA exchange
        self.stats = {"requests_in": 0, "requests_out": 0, "errors_out": 0, "dwr_in": 0}
        self.counters = Counters()  # rates, answers by class, latency: peer/stats.py
        self._later: OrderedDict[int, Any] = OrderedDict()  # hbh -> dup key (deferred answers)
        self._events: list[Event] = []
        self._batch: RequestReceived | None = None  # the requests of the events being made

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name} {self.fsm.state.value} wd={self.watchdog.state}>"
        )

    # -- what the adapter and the router read --------------------------------------------------

    @property
    def state(self) -> State:
        return self.fsm.state

    @property
    def usable(self) -> bool:
        """Requests may be routed here: open, watchdog OKAY, link not closing."""
        link = self.link
        return (
            link is not None
            and self.fsm.state in OPEN_STATES
            and self.watchdog.state is WdState.OKAY
            and not link.closing
        )

    @property
    def outstanding(self) -> int:
        link = self.link
        return len(link.pending) if link is not None else 0

    def supports(self, app_id: int) -> bool:
        """The peer advertised `app_id` (or relays everything)."""
        return self.remote_relay or app_id in self.remote_apps

    def next_deadline(self) -> float | None:
        """The earliest time `timer` has something to do (None: nothing timed)."""
        times = [self.fsm.deadline]
        if self.link is not None:
            times.append(self.watchdog.deadline)
            times.append(self.link.pending.next_deadline())
        real = [t for t in times if t is not None]
        return min(real) if real else None

    def _take(self) -> list[Event]:
        events = self._events
        if events:
            self._events = []
            self._batch = None
        return events

    # -- events in: lifecycle ------------------------------------------------------------------

    def start(self, now: float) -> list[Event]:
        """Connect to the peer (fsm Start): returns Connect for the adapter."""
        self._fsm(Fsm.START, now)
        return self._take()

    def connected(self, link: Link, now: float) -> list[Event]:
        """The connection we asked for is up (I-Rcv-Conn-Ack): sends our CER on it."""
        if self.fsm.state not in (State.WAIT_CONN_ACK, State.WAIT_CONN_ACK_ELECT):
            link.close()
            return self._take()
        link.machine = self
        self.i = link
        self._fsm(Fsm.I_RCV_CONN_ACK, now, link)
        return self._take()

    def connect_failed(self, now: float) -> list[Event]:
        self._fsm(Fsm.I_RCV_CONN_NACK, now)
        return self._take()

    def accept_cer(
        self,
        link: Link,
        cer: Message,
        caps: PeerCapabilities,
        common: frozenset[int],
        now: float,
    ) -> list[Event]:
        """An inbound link whose CER the admission accepted (R-Conn-CER): election, CEA."""
        link.caps = caps
        link.common = common
        link.cer = cer
        self._fsm(Fsm.R_CONN_CER, now, link, peer_host=caps.origin_host)
        if link.machine is not self and not link.closing:
            link.close()
        return self._take()

    def close(self, now: float, cause: int = DisconnectCause.REBOOTING) -> list[Event]:
        """Stop: DPR when open (the peer leaves routing at once), else clean up."""
        self._fsm(Fsm.STOP, now, cause=cause)
        return self._take()

    def connection_lost(self, link: Link, now: float) -> list[Event]:
        link.closed = True
        if link is self.i:
            self._fsm(Fsm.I_PEER_DISC, now, link)
        elif link is self.r:
            self._fsm(Fsm.R_PEER_DISC, now, link)
        if len(link.pending):
            self._events.append(Failover(link.pending.drain()))
        return self._take()

    def timer(self, now: float) -> list[Event]:
        """Timeouts: the fsm's, the watchdog's, and requests past their deadline."""
        fsm = self.fsm
        if fsm.deadline is not None and now >= fsm.deadline:
            self._fsm(Fsm.TIMEOUT, now)
        link = self.link
        wd = self.watchdog
        if link is not None and wd.deadline is not None and now >= wd.deadline:
            self._wd(wd.timer(now), now)
        link = self.link
        if link is not None and len(link.pending):
            nd = link.pending.next_deadline()
            if nd is not None and nd <= now:
                commands = self.ctx.commands
                for e in link.pending.expire(now):
                    self.counters.timeouts += 1
                    commands.get(e.meta[0], int.from_bytes(e.data[5:8], "big")).timeouts += 1
                    err = RequestTimeout(f"no answer from {self.name} within {e.timeout} s")
                    self._events.append(AnswerReceived(e.waiter, None, err))
        return self._take()

    # -- carrying out the state machine ---------------------------------------------------------

    def _fsm(
        self,
        event: Fsm,
        now: float,
        link: Link | None = None,
        msg: Message | None = None,
        peer_host: str | None = None,
        cause: int | None = None,
    ) -> None:
        prev = self.fsm.state
        for action in self.fsm.handle(event, now, peer_host=peer_host):
            try:
                self._do(action, link, msg, cause)
            except Exception:
                log.exception("%s: action %s failed", self.name, action.value)
        new = self.fsm.state
        if new is not prev:
            log.debug("%s: %s --%s--> %s", self.name, prev.value, event.value, new.value)
            self._transition(prev, new, now)

    def _do(
        self, action: Action, link: Link | None, msg: Message | None, cause: int | None
    ) -> None:
        ctx = self.ctx
        cfg = ctx.config
        if action is Action.I_SND_CONN_REQ:
            self._events.append(Connect())
        elif action is Action.R_ACCEPT:
            assert link is not None
            self.r = link
            link.machine = self
        elif action is Action.R_SND_CEA:
            c = self.r
            if c is not None:
                c.send(capmod.build_cea(cfg, c.cer, host_ips=c.host_ips).encode())
        elif action is Action.I_SND_CER:
            c = self.i
            if c is not None:
                cer = capmod.build_cer(cfg, c.host_ips)
                cer.hop_by_hop = c.pending.new_hbh()
                cer.end_to_end = ctx.e2e.next()
                c.send(cer.encode())
        elif action is Action.CLEANUP:
            self._events.append(CancelConnect())
            if self.i is not None:
                self.i.abort()
                self.i = None
        elif action is Action.ERROR:
            self._events.append(CancelConnect())
            for c in (self.i, self.r):
                if c is not None:
                    c.close()
            self.i = self.r = None
        elif action is Action.I_DISC:
            if self.i is not None:
                self.i.close()
                self.i = None
        elif action is Action.R_DISC:
            if self.r is not None:
                self.r.close()
                self.r = None
        elif action is Action.R_REJECT:
            if link is not None:
                state = self.fsm.state
                wait = state not in OPEN_STATES and state is not State.CLOSING
                rc = RC.ELECTION_LOST if wait else RC.DIAMETER_UNABLE_TO_COMPLY
                text = "election lost" if wait else "already connected to this peer"
                link.send(capmod.build_cea(cfg, link.cer, rc, error_message=text).encode())
                link.close()
        elif action is Action.SND_DPR:
            c = self.link
            if c is not None:
                dpr = capmod.build_dpr(cfg, DisconnectCause.REBOOTING if cause is None else cause)
                dpr.hop_by_hop = c.pending.new_hbh()
                dpr.end_to_end = ctx.e2e.next()
                c.send(dpr.encode())
        elif action is Action.SND_DPA:
            c = self.link
            if c is not None and msg is not None:
                c.send(capmod.build_dpa(cfg, msg).encode())
        # ELECT, PROCESS_CER, PROCESS_CEA: the capabilities were checked and stored on the link
        # before the event.

    def _transition(self, prev: State, new: State, now: float) -> None:
        if new in OPEN_STATES and prev not in OPEN_STATES:
            link = self.i if new is State.I_OPEN else self.r
            if link is None:  # cannot happen with the RFC table; be safe
                log.error("%s: open without a connection", self.name)
                return
            self.link = link
            link.open = True
            caps: PeerCapabilities = link.caps
            self.caps = caps
            self.apps = link.common
            self.remote_apps = frozenset(caps.app_ids())
            self.remote_relay = caps.relay
            if self.realm is None or self.config is None:
                self.realm = caps.origin_realm
            self.orderly = False
            log.info(
                "%s: %s via %s %s (apps %s)",
                self.name,
                new.value,
                link.kind,
                link.remote,
                sorted(self.apps),
            )
            self._wd(self.watchdog.connection_up(now), now)
            self._events.append(PeerUp(link))
        elif new is State.CLOSED:
            old = self.link
            self.link = None
            for c in (self.i, self.r):
                if c is not None:
                    c.close()
            self.i = self.r = None
            if old is not None:
                old.open = False
                old.close()
                if len(old.pending):
                    self._events.append(Failover(old.pending.drain()))
            if prev in OPEN_STATES or prev is State.CLOSING:
                if self.orderly:
                    self.watchdog.reset()
                else:
                    self._wd(self.watchdog.connection_down(now), now)
                log.info("%s: closed%s", self.name, " (DPR/DPA)" if self.orderly else "")
            self._events.append(PeerDown(self.orderly))

    def _wd(self, actions: list[WdAction], now: float) -> None:
        for action in actions:
            link = self.link
            if action is WdAction.SEND_DWR:
                if link is not None:
                    dwr = capmod.build_dwr(self.ctx.config)
                    dwr.hop_by_hop = link.pending.new_hbh()
                    dwr.end_to_end = self.ctx.e2e.next()
                    link.send(dwr.encode())
            elif action is WdAction.FAILOVER:
                log.warning("%s: watchdog %s, failing over", self.name, self.watchdog.state.value)
                if link is not None and len(link.pending):
                    self._events.append(Failover(link.pending.drain()))
            elif action is WdAction.FAILBACK:
                log.info("%s: watchdog OKAY again", self.name)
            elif action is WdAction.CLOSE:
                log.warning("%s: watchdog closes the connection", self.name)
                if link is not None:
                    event = Fsm.I_PEER_DISC if link is self.i else Fsm.R_PEER_DISC
                    link.abort()
                    self._fsm(event, now, link)

    # -- before the peer is open ---------------------------------------------------------------

    def _pre_open(self, link: Link, data: bytes, now: float) -> None:
        fc = int.from_bytes(data[4:8], "big")
        app = int.from_bytes(data[8:12], "big")
        code = fc & 0xFFFFFF
        if link.initiator:
            if link is not self.i:
                link.close()
                return
            if code == CMD_CER and not fc & _R and app == 0:
                self._on_cea(link, data, now)
            else:
                log.info("%s: code %d while waiting for CEA", self.name, code)
                self._fsm(Fsm.I_RCV_NON_CEA, now, link)
            return
        # An accepted responder link awaiting the election: the peer should be quiet.
        log.info("%s: code %d on a connection awaiting election, dropped", self.name, code)

    def _on_cea(self, link: Link, data: bytes, now: float) -> None:
        cfg = self.ctx.config
        try:
            msg = Message.decode(data, max_length=cfg.max_message_length)
            caps, common = capmod.check_cea(msg, cfg, self.name)
            why = tls_identity_error(link, caps.origin_host)
            if why is not None:
                raise CapabilitiesError(RC.DIAMETER_UNKNOWN_PEER, why, caps=caps)
        except (CodecError, CapabilitiesError) as exc:
            rc = getattr(exc, "result_code", None)
            log.warning("%s: CEA refused (%s): %s", self.name, rc, exc)
            self._fsm(Fsm.I_RCV_BAD_CEA, now, link)
            return
        link.caps = caps
        link.common = common
        self._fsm(Fsm.I_RCV_CEA, now, link)

    # -- base protocol messages on an open link ------------------------------------------------

    def _base_request(self, link: Link, data: bytes, p: Peek, now: float) -> None:
        """DWR, DPR, a CER on an open link (its peek checked the framing), or another
        application-0 request (the application path)."""
        code = p.code
        cfg = self.ctx.config
        if code == CMD_DWR:
            self.stats["dwr_in"] += 1
            link.send(capmod.build_dwa(cfg, Message.from_peek(data, p)).encode())
        elif code == CMD_DPR:
            dpr = Message.from_peek(data, p)
            try:
                cause = dpr.get("Disconnect-Cause")
            except CodecError:
                cause = None
            self.disc_cause_rcvd = None if cause is None else int(cause)
            self.orderly = True
            log.info("%s: DPR received (cause %s)", self.name, cause)
            ev = Fsm.I_RCV_DPR if link is self.i else Fsm.R_RCV_DPR
            self._fsm(ev, now, link, msg=dpr)
        elif code == CMD_CER:
            cer = Message.from_peek(data, p)
            text = "CER on an open connection"
            cea = capmod.build_cea(cfg, cer, RC.DIAMETER_UNABLE_TO_COMPLY, error_message=text)
            link.send(cea.encode())
        else:
            self._request(link, data, p, now)

    def _base_answer(self, link: Link, data: bytes, code: int, hbh: int, now: float) -> None:
        """DWA, DPA, a stray CEA, or the answer to an application-0 request we sent."""
        if code == CMD_DWR:
            link.pending.pop(hbh)
            self._wd(self.watchdog.dwa_received(now), now)
        elif code == CMD_DPR:
            link.pending.pop(hbh)
            if self.fsm.state is State.CLOSING:
                self.orderly = True
                self._fsm(Fsm.I_RCV_DPA if link is self.i else Fsm.R_RCV_DPA, now, link)
        elif code == CMD_CER:
            pass  # a stray CEA
        else:
            entry = link.pending.pop(hbh)
            if entry is not None and entry.waiter is not None:
                try:
                    self._events.append(AnswerReceived(entry.waiter, Message.decode(data)))
                except CodecError as exc:
                    err = RequestError(exc.result_code, str(exc))
                    self._events.append(AnswerReceived(entry.waiter, None, err))

    def _request(self, link: Link, data: bytes, p: Peek, now: float) -> None:
        raise NotImplementedError  # PeerConnection
