"""The bundled load generator's engine: M peer connections, sessions, two load models.

Everything per request is callback-driven (no task or future per request): a request is
rendered from its template, written, and parked in its connection's `pending` dict by
hop-by-hop id; the answer's callback checks it, records its latency and sends the session's
next step. Timeouts are found by one sweeper walking each `pending` dict from its oldest entry.

Load models:
- open loop (`rate`): session i is *intended* to start at t0 + i/rate, whatever the server does,
  and every latency is measured from the request's intended send time. A stalled server (or a
  stalled generator) therefore shows up in the percentiles instead of silently lowering the
  offered load: no coordinated omission.
- closed loop (`concurrency`): that many sessions in flight; a new one starts when one ends.
Both stop after `sessions` sessions or `duration` seconds after the warm-up; requests intended
during the `warmup` seconds are sent but kept out of the figures.

Each connection is its own peer, with its own Origin-Host (`origin_host` alone for a single
connection, else `<first label>-c<k>.<rest>`): a Diameter node keeps one connection per peer
(RFC 6733 5.6.4), so N connections under one name would be refused as an election loser.

Reconnect (`reconnect` > 0, off by default): a connection the server drops (killed,
restarted, or a DPR) is re-opened with exponential backoff for at most `reconnect` seconds, CER
is redone, and every request sent on it but not answered is sent again with the T flag (RFC
6733 5.5.4), the same End-to-End id and the same Session-Id, so that the server can tell the
retransmission from a new request. Requests the sessions want to send meanwhile wait for the
connection. A request counts once in the figures whatever the number of sends; its latency is
measured from its first intended send, so the outage shows in the percentiles.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from chargegw.codec import ResultCode
from chargegw.codec.commands import DisconnectPeerRequest
from chargegw.codec.constants import CMD_ACR

from .conn import ConnectError, LoadConn, Session
from .scenarios import Flow, Identity, Scenario, build_flows, preset
from .stats import Interval, Recorder, merge_intervals, summarize
from .stats import merge as merge_records
from .wire import AnswerView, with_oc_supported

_U32 = struct.Struct(">I")
_FLAG_T = 0x10  # the T bit of the command flags: a retransmission (RFC 6733 3)
_ACR = CMD_ACR.to_bytes(3, "big")
# The one clock of the run: high resolution (uvloop's loop.time() counts whole milliseconds)
# and system-wide, so that processes share one start time.
_now = time.monotonic


@dataclass
class LoadConfig:
    host: str = "127.0.0.1"
    port: int = 3868
    origin_host: str = "load.localdomain"
    origin_realm: str = "localdomain"
    destination_realm: str = "localdomain"
    destination_host: str | None = None
    scenario: Scenario | None = None  # None: the `kind` preset with the fields below
    kind: str = "gy"
    sessions: int | None = 1000  # None with a duration: as many as the duration allows
    updates: int = 1
    interval: float = 0.0
    concurrency: int = 50  # closed loop: sessions in flight (all processes together)
    rate: float | None = None  # open loop: sessions started per second (all processes)
    duration: float | None = None  # seconds after the warm-up
    warmup: float = 0.0
    connections: int = 1  # peer connections (all processes together, at least one each)
    processes: int = 1
    msisdn_base: int = 4670000000000
    subscribers: int = 10000
    rating_group: int | None = None
    service_identifier: int | None = None
    octets_per_update: int | None = None
    timeout: float = 5.0
    connect_timeout: float = 5.0
    progress: float = 1.0  # kept for compatibility; progress ticks are one a second
    seed: int | None = None
    doic: bool = False  # act as a DOIC reacting node (RFC 7683): honour overload reports
    reconnect: float = 0.0  # seconds of patience to re-open a dropped connection; 0: off
    record: bool = False  # keep (Session-Id, Accounting-Record-Number) of each ACR answered 2001
    process_index: int = 0  # set per child process
    extra: dict[str, Any] = field(default_factory=dict)

    def build_scenario(self) -> Scenario:
        if self.scenario is not None:
            return self.scenario
        scn = preset(
            self.kind,
            updates=self.updates,
            interval=self.interval,
            rating_groups=[self.rating_group] if self.rating_group is not None else None,
            service_identifier=self.service_identifier,
            used_octets=self.octets_per_update,
        )
        scn.msisdn_base, scn.subscribers = self.msisdn_base, self.subscribers
        return scn

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


class Engine:
    """One process's share of the run."""

    def __init__(self, cfg: LoadConfig, on_tick: Callable[[dict[str, Any]], None] | None = None,
                 ) -> None:
        self.cfg = cfg
        self.scn = cfg.build_scenario()
        self.ident = Identity(cfg.origin_host, cfg.origin_realm, cfg.destination_realm,
                              cfg.destination_host)
        self.tag = f"{int(time.time())}.{os.getpid()}"
        self.flows = self._flows(self.ident)
        # The overload report in force (DOIC): its sequence, reduction and expiry.
        self.olr_seq = -1
        self.reduction = 0
        self.olr_until = 0.0
        self.weights = [f.weight for f in self.flows]
        self.rng = random.Random(None if cfg.seed is None else cfg.seed + cfg.process_index)
        self.rec = Recorder()
        self.on_tick = on_tick
        self.conns: list[LoadConn] = []
        self.rr = 0
        self.counter = 0
        self.active = 0
        self.stopping = False
        self.t0 = 0.0
        self.stop_at = float("inf")
        self.intervals: list[dict[str, Any]] = []
        self.loop = asyncio.get_running_loop()
        self.idle: asyncio.Event = asyncio.Event()
        # (Session-Id, Accounting-Record-Number) of every ACR answered 2001 (cfg.record)
        self.acked: list[tuple[str, int, bool]] = []

    def _flows(self, ident: Identity) -> list[Flow]:
        flows = build_flows(self.scn, ident, self.tag)
        if self.cfg.doic:
            done: set[int] = set()
            for f in flows:
                for t in f.steps:
                    if id(t) not in done:
                        done.add(id(t))
                        t.raw = with_oc_supported(t.raw)
        return flows

    # -- connections --------------------------------------------------------------------

    def _new_conn(self, i: int) -> LoadConn:
        """Connection i of this process, with its own Origin-Host, templates and Session-Ids."""
        host = conn_origin_host(self.cfg, i)
        ident = replace(self.ident, origin_host=host)
        flows = self.flows if host == self.ident.origin_host else self._flows(ident)
        return LoadConn(self, i, ident, flows, f"{host};{self.tag};".encode())

    async def _open(self, conn: LoadConn) -> None:
        """TCP connect and CER/CEA on `conn`; ConnectError says why it cannot be used."""
        cfg = self.cfg
        conn.reset()
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: conn, cfg.host, cfg.port),
                cfg.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            self.rec.conn["connect_failed"] += 1
            raise ConnectError(f"cannot connect to {cfg.target}: "
                               f"{exc or 'timed out'}") from None
        try:
            cea = await asyncio.wait_for(conn.cea, cfg.connect_timeout)
        except TimeoutError:
            raise ConnectError(
                f"{cfg.target} accepted the TCP connection but sent no CEA within "
                f"{cfg.connect_timeout:g} s"
            ) from None
        except ConnectError as exc:
            raise ConnectError(f"{cfg.target}: {exc}") from None
        rc = cea.get("Result-Code")
        if rc != ResultCode.DIAMETER_SUCCESS:
            raise ConnectError(f"{cfg.target} refused our CER with Result-Code {rc} "
                               f"({cea.get('Error-Message') or 'no Error-Message'})")
        conn.open = conn.established = True

    async def connect(self) -> None:
        cfg = self.cfg
        for i in range(max(1, cfg.connections)):
            conn = self._new_conn(i)
            self.conns.append(conn)
            try:
                await self._open(conn)
            except ConnectError:
                await self.close()
                raise
            self.rec.conn["connected"] += 1

    def on_conn_lost(self, conn: LoadConn, exc: BaseException | None) -> None:
        rec = self.rec
        outstanding = len(conn.pending)
        if conn.reconnecting is not None or not conn.established:
            return  # a failed attempt to open it: the one opening it reports that
        if not (conn.closing or conn.server_dpr) and not self.stopping or outstanding:
            rec.conn["closed_by_server"] += 1
            if not self._may_reconnect(conn):
                rec.problem(
                    f"connection {conn.index} to {self.cfg.target} was closed by the server "
                    f"mid-run ({exc or 'EOF'}) with {outstanding} requests outstanding"
                )
        if self._may_reconnect(conn):
            conn.reconnecting = self.loop.create_task(self._reconnect(conn))
            return
        self._fail_conn(conn)

    def on_server_dpr(self, conn: LoadConn) -> None:
        """The server is leaving (a graceful stop, maybe a restart): with --reconnect, the
        connection is re-opened once the server has closed it; what sessions send meanwhile
        waits for it instead of failing."""
        if conn.reconnecting is None and self._may_reconnect(conn):
            conn.reconnecting = self.loop.create_task(self._reconnect(conn, after_dpr=True))

    def _may_reconnect(self, conn: LoadConn) -> bool:
        """A dropped connection is re-opened when asked to, unless we closed it ourselves or
        the run is over with nothing left to finish on it."""
        return (self.cfg.reconnect > 0 and not conn.closing
                and (not self.stopping or bool(conn.sessions or conn.pending)))

    async def _reconnect(self, conn: LoadConn, after_dpr: bool = False) -> None:
        """Re-open `conn` with backoff (50 ms doubling to 1 s) within `cfg.reconnect` seconds,
        then resend its unanswered requests (T flag) and send what waited meanwhile. After a
        DPR, first wait (at most 5 s) for the server to close the connection (RFC 6733 5.4)."""
        rec = self.rec
        give_up = _now() + self.cfg.reconnect
        delay = 0.05
        why = ""
        try:
            if after_dpr:
                try:
                    await asyncio.wait_for(asyncio.shield(conn.lost), 5.0)
                except TimeoutError:
                    if conn.transport is not None:
                        conn.transport.abort()
                    await conn.lost
            while True:
                await asyncio.sleep(min(delay, max(0.0, give_up - _now())))
                delay = min(1.0, delay * 2)
                try:
                    await self._open(conn)
                    break
                except ConnectError as exc:
                    why = str(exc)
                    if conn.transport is not None:
                        conn.transport.abort()
                    if _now() >= give_up:
                        rec.conn["reconnect_failed"] += 1
                        rec.problem(f"connection {conn.index}: could not reconnect to "
                                    f"{self.cfg.target} within {self.cfg.reconnect:g} s "
                                    f"({why})")
                        conn.reconnecting = None
                        self._fail_conn(conn)
                        return
        except asyncio.CancelledError:
            conn.reconnecting = None
            self._fail_conn(conn)
            raise
        conn.reconnecting = None
        rec.conn["reconnected"] += 1
        self._resend(conn)

    def _resend(self, conn: LoadConn) -> None:
        """Every request of `conn` sent but not answered goes again: a new hop-by-hop id (a
        new connection), the T flag, the same End-to-End id, Session-Id and number. It stays
        one request in the figures (`resent` counts the sends)."""
        now = _now()
        timeout = self.cfg.timeout
        old = list(conn.pending.values())
        conn.pending.clear()
        for s in old:
            t = s.flow.steps[s.step]
            hbh, _ = conn.next_ids()
            frame = t.render(hbh, s.e2e, s.sid, s.sub, s.step, s.echo)
            frame[4] |= _FLAG_T
            s.deadline = now + timeout
            s.resent = True
            conn.pending[hbh] = s
            conn.queue(frame)
            self.rec.c["resent"] += 1
        waiting, conn.backlog = conn.backlog, []
        for s, intended in waiting:
            self.send(s, intended)

    def _fail_conn(self, conn: LoadConn) -> None:
        """The connection is gone for good: what it carried fails."""
        rec = self.rec
        for s in list(conn.pending.values()):
            if s.measured:
                rec.c["lost"] += 1
            if s.flow.steps[s.step].usage:
                rec.on_usage(s.flow.index, False)
            self.end_session(s, False)
        conn.pending.clear()
        waiting, conn.backlog = conn.backlog, []
        for s, _ in waiting:  # never sent: nothing the server could have charged
            if s.conn.sessions.get(s.sid_full) is s:
                self.end_session(s, False)
        for s in list(conn.sessions.values()):  # sessions waiting between steps
            if s.handle is not None:
                s.handle.cancel()
                self.end_session(s, False)
        if not any(c.open or c.reconnecting is not None for c in self.conns):
            if not self.stopping:
                rec.problem("no open connection left: the run ended early")
            self.stopping = True
            self._check_idle()

    async def close(self) -> None:
        """DPR on every open connection, wait briefly for DPA, then close."""
        for c in self.conns:
            c.closing = True
            if c.reconnecting is not None:
                c.reconnecting.cancel()
        for c in self.conns:
            if c.open and c.transport is not None and not c.transport.is_closing():
                hbh, e2e = c.next_ids()
                dpr = DisconnectPeerRequest(hop_by_hop=hbh, end_to_end=e2e,
                                            origin_host=c.ident.origin_host,
                                            origin_realm=c.ident.origin_realm,
                                            disconnect_cause=0)
                c.flush()
                c.transport.write(dpr.encode())
        waits = [c.dpa for c in self.conns if c.open and not c.dead]
        if waits:
            await asyncio.wait(waits, timeout=1.0)
        for c in self.conns:
            c.closing = True
            if c.transport is not None:
                c.transport.close()

    # -- sessions -----------------------------------------------------------------------

    def _pick_conn(self) -> LoadConn | None:
        """The next open connection; else one being re-opened (its session waits for it)."""
        n = len(self.conns)
        for _ in range(n):
            self.rr = (self.rr + 1) % n
            c = self.conns[self.rr]
            if c.open:
                return c
        for c in self.conns:
            if c.reconnecting is not None:
                return c
        return None

    def start_session(self, intended: float) -> bool:
        conn = self._pick_conn()
        if conn is None:
            return False
        cfg = self.cfg
        n = self.counter
        self.counter += 1
        flows = conn.flows
        flow = flows[0] if len(flows) == 1 else self.rng.choices(flows, self.weights)[0]
        sid = f"{cfg.process_index % 100:02d}{n % 10**10:010d}".encode()
        s = Session(conn, flow, sid, conn.sid_prefix + sid,
                    self.scn.subscriber(n * max(1, cfg.processes) + cfg.process_index))
        conn.sessions[s.sid_full] = s
        self.active += 1
        if intended >= self.rec.measure_start:
            self.rec.c["sessions_started"] += 1
        self.send(s, intended)
        return True

    def send(self, s: Session, intended: float) -> None:
        s.handle = None
        conn = s.conn
        if not conn.open or conn.transport is None:
            if conn.reconnecting is not None:
                conn.backlog.append((s, intended))  # sent once the connection is back
            else:
                self.end_session(s, False)
            return
        t = s.flow.steps[s.step]
        hbh, e2e = conn.next_ids()
        s.e2e = e2e
        s.intended = intended
        s.deadline = intended + self.cfg.timeout
        s.resent = False
        s.measured = intended >= self.rec.measure_start
        if t.echo_off >= 0:
            s.echo = self.rng.getrandbits(31)
        conn.pending[hbh] = s
        conn.queue(t.render(hbh, e2e, s.sid, s.sub, s.step, s.echo))
        self.rec.on_sent(t.step, s.measured)
        if s.measured:  # how late the generator itself is: its share of every latency
            self.rec.lag.record_value(max(1, int((_now() - intended) * 1e6)))

    def on_answer(self, s: Session, frame: bytes) -> None:
        now = _now()
        t = s.flow.steps[s.step]
        rec = self.rec
        bad = None
        if frame[5:8] != t.raw[5:8] or frame[8:12] != t.raw[8:12]:
            bad = "command"
        elif _U32.unpack_from(frame, 16)[0] != s.e2e:
            bad = "end_to_end"
        else:
            v = AnswerView(frame, t.num_code or -1)
            if v.olr is not None:  # the peer's overload report holds whatever the answer
                self._on_olr(now, *v.olr)
            if v.malformed:
                bad = "malformed"
            elif v.session_id != s.sid_full:
                bad = "session_id"
            elif t.num_code is not None and v.number != s.step and not (
                frame[4] & 0x20 and v.number == -1
            ):  # an E-bit answer (RFC 6733 7.2, e.g. the gateway's 3004) may omit the number
                bad = "number"
            elif t.echo_off >= 0 and v.echo != s.echo and v.result_code == 2001:
                bad = "echo"
        if bad is not None:
            rec.on_mismatch(bad, s.measured)
            if t.usage:
                rec.on_usage(s.flow.index, False)
            self.end_session(s, False)
            return
        rc = v.result_code
        if t.usage:
            rec.on_usage(s.flow.index, rc == 2001)
        if rc == 2001 and self.cfg.record and frame[5:8] == _ACR:
            self.acked.append((s.sid_full.decode(), s.step, s.resent))
        rec.on_answer(t.step, rc, int((now - s.intended) * 1e6), s.measured, now)
        last = len(s.flow.steps) - 1
        if 2000 <= rc < 3000:
            if s.step >= last:
                self.end_session(s, True)
                return
            s.step = last if s.aborted else s.step + 1
        elif s.step == 0 or s.step >= last:
            self.end_session(s, False)
            return
        else:
            s.step = last  # close what was opened, so reservations are released
        iv = s.flow.interval
        if iv > 0:
            s.handle = self.loop.call_later(iv, self.send, s, now + iv)
        else:
            self.send(s, now)

    def _on_olr(self, now: float, seq: int, reduction: int, validity: int) -> None:
        """A newer overload report replaces the one in force; validity 0 ends it."""
        if seq <= self.olr_seq:
            return
        self.olr_seq = seq
        self.reduction = reduction if validity else 0
        self.olr_until = now + validity

    def _abate(self, now: float) -> bool:
        """Loss abatement: drop this share of new sessions while a report is in force."""
        r = self.reduction
        if not r:
            return False
        if now >= self.olr_until:
            self.reduction = 0
            return False
        return self.rng.random() * 100 < r

    def end_session(self, s: Session, ok: bool) -> None:
        s.conn.sessions.pop(s.sid_full, None)
        self.active -= 1
        if s.measured:
            self.rec.c["sessions_completed" if ok else "sessions_failed"] += 1
        if self.cfg.rate is None and not self.stopping:
            now = _now()
            if self._may_start(now) and self.start_session(now):
                return
            self.stopping = True
        self._check_idle()

    def _stop_on_signals(self) -> list[int]:
        """SIGINT/SIGTERM end the run early and gracefully: no new session starts, the ones
        started finish (or time out), and the report is written as for a normal end, so a
        long run stopped by hand (or by a harness once its own work is done) still has its
        figures. The signals handled (none off the main thread)."""
        loop = asyncio.get_running_loop()
        handled: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.stop_early)
            except (ValueError, RuntimeError, NotImplementedError):
                continue  # not the main thread, or no signals here
            handled.append(sig)
        return handled

    def stop_early(self) -> None:
        """Start no new session from now on; the run ends when the started ones have."""
        self.stop_at = min(self.stop_at, _now())
        if self.active <= 0:
            self.stopping = True
        self._check_idle()

    def _may_start(self, now: float) -> bool:
        limit = self._session_limit()
        return (limit is None or self.counter < limit) and now < self.stop_at

    def _session_limit(self) -> int | None:
        cfg = self.cfg
        total = cfg.sessions if cfg.sessions is not None else (None if cfg.duration else 1000)
        if total is None:
            return None
        p, i = max(1, cfg.processes), cfg.process_index
        return total // p + (1 if i < total % p else 0)

    def _check_idle(self) -> None:
        if self.stopping and self.active <= 0:
            self.idle.set()

    # -- the run ------------------------------------------------------------------------

    async def _open_loop(self) -> None:
        cfg = self.cfg
        assert cfg.rate
        rate = cfg.rate / max(1, cfg.processes)
        # stagger processes so that their arrivals interleave instead of coinciding
        offset = cfg.process_index / (rate * max(1, cfg.processes))
        limit = self._session_limit()
        i = 0
        while not self.stopping:
            now = _now()
            nxt = self.t0 + offset + i / rate
            while nxt <= now:
                if nxt >= self.stop_at or (limit is not None and i >= limit):
                    self.stopping = True
                    break
                if self._abate(now):
                    if nxt >= self.rec.measure_start:
                        self.rec.c["abated"] += 1
                    i += 1
                    nxt = self.t0 + offset + i / rate
                    continue
                if not self.start_session(nxt):
                    self.stopping = True
                    break
                i += 1
                nxt = self.t0 + offset + i / rate
            if self.stopping:
                break
            await asyncio.sleep(max(0.0, nxt - _now()))
        self._check_idle()

    async def _sweeper(self) -> None:
        timeout = self.cfg.timeout
        period = min(0.05, timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = _now()
            for c in self.conns:
                if c.reconnecting is not None:
                    continue  # its requests are not in flight: they are resent on reconnect
                expired = []
                for hbh, s in c.pending.items():
                    if s.deadline > now:
                        break
                    expired.append(hbh)
                for hbh in expired:
                    s = c.pending.pop(hbh)
                    self.rec.on_timeout(s.measured)
                    if s.flow.steps[s.step].usage:
                        self.rec.on_usage(s.flow.index, False)
                    self.end_session(s, False)

    async def _ticker(self) -> None:
        rec = self.rec
        await asyncio.sleep(max(0.0, rec.measure_start - _now()))
        index = 0
        rec.interval = Interval(0)
        while True:
            await asyncio.sleep(max(0.0, rec.measure_start + index + 1 - _now()))
            self._emit_interval()
            index += 1
            rec.interval = Interval(index)

    def _emit_interval(self) -> None:
        iv = self.rec.interval
        if iv is None:
            return
        row = iv.to_dict()
        self.intervals.append(row)
        if self.on_tick is not None:
            c = self.rec.c
            self.on_tick({**row, "total": {k: c[k] for k in (
                "sent", "answered", "errors", "timeouts", "mismatches", "lost",
                "sessions_started")}})

    async def run(self, start_at: float | None = None) -> dict[str, Any]:
        """Run (after `connect`) and return this process's recorder dict and intervals."""
        cfg = self.cfg
        now = _now()
        self.t0 = max(now, start_at or now)
        self.rec.measure_start = self.t0 + cfg.warmup
        if cfg.duration is not None:
            self.stop_at = self.rec.measure_start + cfg.duration
        await asyncio.sleep(max(0.0, self.t0 - _now()))
        while _now() < self.t0:  # uvloop's timers may fire up to a millisecond early
            await asyncio.sleep(0)
        tasks = [asyncio.create_task(self._sweeper()), asyncio.create_task(self._ticker())]
        stops = self._stop_on_signals()
        try:
            if cfg.rate:
                tasks.append(asyncio.create_task(self._open_loop()))
            else:
                limit = self._session_limit()
                n = max(1, cfg.concurrency // max(1, cfg.processes)
                        + (1 if cfg.process_index < cfg.concurrency % max(1, cfg.processes)
                           else 0))
                for _ in range(n if limit is None else min(n, limit)):
                    if not self.start_session(_now()):
                        break
                if self.active == 0:
                    self.stopping = True
            self._check_idle()
            await self.idle.wait()
        finally:
            for sig in stops:
                asyncio.get_running_loop().remove_signal_handler(sig)
            for t in tasks:
                t.cancel()
            self.rec.end = _now()
            if self.rec.interval is not None and (self.rec.interval.sent
                                                  or self.rec.interval.answered):
                self._emit_interval()
            await self.close()
        out: dict[str, Any] = {"record": self.rec.to_dict(), "intervals": self.intervals}
        if self.cfg.record:
            out["acked_acrs"] = self.acked
        return out


async def run_process(cfg: LoadConfig, on_tick: Callable[[dict[str, Any]], None] | None = None,
                      start_at: float | None = None) -> dict[str, Any]:
    eng = Engine(cfg, on_tick)
    await eng.connect()
    return await eng.run(start_at)


def conn_origin_host(cfg: LoadConfig, i: int) -> str:
    """The Origin-Host of this process's connection i: `cfg.origin_host` for a run of one
    connection, else the first label suffixed with the global connection number
    (load.localdomain -> load-c1.localdomain, load-c2.localdomain, ...)."""
    if cfg.processes <= 1 and cfg.connections <= 1:
        return cfg.origin_host
    # connections are split between processes as runner._split does: a share each, the
    # remainder one each to the first processes
    p, k = max(1, cfg.processes), cfg.process_index
    total = cfg.connections if p == 1 else cfg.extra.get("total_connections", cfg.connections * p)
    first = k * (total // p) + min(k, total % p) if p > 1 else 0
    label, dot, rest = cfg.origin_host.partition(".")
    return f"{label}-c{first + i + 1}{dot}{rest}"


def build_report(cfg: LoadConfig, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge the processes' results into the report's `summary`."""
    merged = merge_records([p["record"] for p in parts])
    series = merge_intervals([r for p in parts for r in p["intervals"]])
    out = summarize(merged, series, cfg.rate) | {"problems": merged["problems"]}
    if cfg.record:
        out["acked_acrs"] = [a for p in parts for a in p.get("acked_acrs", [])]
    if out["timeouts"]:
        out["problems"].append(
            f"{out['timeouts']} requests got no answer from {cfg.target} within "
            f"{cfg.timeout:g} s (counted as timeouts)")
    if out["mismatches"]:
        kinds = ", ".join(f"{k} {v}" for k, v in out["mismatch_kinds"].items() if v)
        out["problems"].append(
            f"{out['mismatches']} answers did not match their request ({kinds})")
    lag, lat = out["send_lag_ms"]["p99"], out["latency_ms"]["p99"]
    if lag is not None and lat is not None and lag > 1.0 and lag > 0.25 * lat:
        out["problems"].append(
            f"the generator itself sent late (send lag p99 {lag} ms of latency p99 {lat} ms): "
            "the figures measure the generator too; add --processes or lower the rate"
        )
    return out


async def run_load(cfg: LoadConfig, *, on_progress: Any = None) -> dict[str, Any]:
    """One process, in the running loop: the summary dict (the JSON report's `summary`)."""
    part = await run_process(cfg, on_progress)
    return build_report(cfg, [part])
