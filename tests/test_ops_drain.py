"""SIGTERM under load (issue 12): `chargegw run` drains within `pool.drain_timeout`.

A raw peer keeps about 60 CCR-I in flight against an application that takes 0.3 s to answer,
then the launcher gets SIGTERM. What the peer must see, in order:
- every request in flight at the signal answered (2001), none lost;
- new CCR-I answered 3004 DIAMETER_TOO_BUSY while the gateway drains;
- then DPR (Disconnect-Cause REBOOTING), and the connection closed after its DPA;
and the launcher and its workers gone, within the drain bound plus the workers' stop.

A second case holds requests longer than the bound: the launcher still exits in time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from chargegw.codec.constants import CMD_CCR, CMD_DPR, CMD_DWR, DisconnectCause
from chargegw.peer.testing import RawPeer, make_ccr

pytestmark = pytest.mark.timeout(180)


def _app(delay: float, drain_timeout: float) -> str:
    return (
        f"[pool]\ndrain_timeout = {drain_timeout}\n"
        '[[applications]]\napp_id = 4\nhandler = "chargegw.workers.testapp:SlowApp"\n'
        f"[applications.config]\ndelay = {delay}\n"
    )


@dataclass
class Sent:
    at: float
    answered_at: float | None = None
    code: int | None = None


@dataclass
class Client:
    """One peer connection: sends CCR-I, matches answers by hop-by-hop id."""

    peer: RawPeer
    sent: dict[int, Sent] = field(default_factory=dict)
    dpr: Any = None
    dpr_at: float | None = None
    closed_at: float | None = None
    hbh: int = 1000

    def send(self) -> None:
        self.hbh += 1
        self.sent[self.hbh] = Sent(time.monotonic())
        self.peer.send_nowait(make_ccr("load.test", "test", "localdomain", hop_by_hop=self.hbh))

    def outstanding(self) -> int:
        return sum(1 for s in self.sent.values() if s.code is None)

    async def read(self) -> None:
        while True:
            try:
                msg = await self.peer.recv(timeout=60)
            except TimeoutError:
                return
            if msg is None:
                self.closed_at = time.monotonic()
                return
            if msg.is_request and msg.code == CMD_DWR:
                await self.peer.send(msg.answer(2001, origin_host="load.test", origin_realm="test"))
            elif msg.is_request and msg.code == CMD_DPR:
                self.dpr, self.dpr_at = msg, time.monotonic()
                await self.peer.send(msg.answer(2001, origin_host="load.test", origin_realm="test"))
            elif not msg.is_request and msg.code == CMD_CCR:
                s = self.sent.get(msg.hop_by_hop)
                assert s is not None and s.code is None, f"answer for {msg.hop_by_hop}"
                s.code = int(msg.get("Result-Code"))
                s.answered_at = time.monotonic()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie is gone for our purpose (its parent, the launcher, has exited).
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_sigterm_under_load_answers_in_flight_sheds_new_sends_dpr_and_stops(
    tmp_path: Path, chargegw_run: Any
) -> None:
    drain_timeout = 4.0
    with chargegw_run(tmp_path, workers=2, extra=_app(0.3, drain_timeout)) as gw:
        workers = gw.children()
        assert len(workers) == 2

        async def main() -> tuple[Client, float, float]:
            peer = await RawPeer.connect("127.0.0.1", gw.port)
            cea = await peer.handshake("load.test", "test")
            assert int(cea.get("Result-Code")) == 2001
            c = Client(peer)
            reader = asyncio.create_task(c.read())
            term_at = 0.0
            first_busy: float | None = None
            started = time.monotonic()
            # Load: one CCR-I every 5 ms (about 60 in flight, staggered, so that answers
            # keep coming while new requests arrive), for 1.5 s; then SIGTERM; then keep
            # offering CCR-I until 10 were shed with 3004, and stop sending (a request
            # crossing the DPR on the wire would have nobody to answer it, by the RFC).
            while True:
                busy = sum(1 for s in c.sent.values() if s.code == 3004)
                if busy and first_busy is None:
                    first_busy = time.monotonic()
                if busy >= 10 or c.dpr is not None or c.closed_at is not None:
                    break
                if not term_at and time.monotonic() - started > 1.5:
                    term_at = time.monotonic()
                    gw.proc.send_signal(signal.SIGTERM)
                if c.outstanding() < 80:
                    c.send()
                await asyncio.sleep(0.005)
                assert time.monotonic() - started < 30, "no 3004 after SIGTERM"
            await asyncio.wait_for(reader, 30)
            peer.close()
            assert first_busy is not None, "DPR came before any 3004"
            return c, term_at, first_busy

        c, term_at, first_busy = asyncio.run(main())
        rc = gw.proc.wait(30)
        exited_at = time.monotonic()

    assert rc == 0, gw.output()
    # Every request got exactly one answer before the connection closed.
    lost = [h for h, s in c.sent.items() if s.code is None]
    assert not lost, f"{len(lost)} requests never answered"
    before = [s for s in c.sent.values() if s.at < term_at]
    in_flight = [s for s in before if s.answered_at is not None and s.answered_at > term_at]
    assert len(before) > 60 and len(in_flight) >= 10, (len(before), len(in_flight))
    # In flight at the signal: answered by the application, not shed.
    assert {s.code for s in in_flight} == {2001}, [s.code for s in in_flight]
    # Once draining (the first 3004), new CCR-I are all shed: none reaches a worker.
    late = [s for s in c.sent.values() if s.at > first_busy]
    assert late and {s.code for s in late} == {3004}, {s.code for s in late}
    assert sum(1 for s in c.sent.values() if s.code == 3004) >= 10
    # Then DPR, after the last in-flight answer, and the close after our DPA.
    assert c.dpr is not None and c.dpr_at is not None, gw.output()
    assert int(c.dpr.get("Disconnect-Cause")) == DisconnectCause.REBOOTING
    assert c.dpr_at >= max(s.answered_at or 0 for s in in_flight)
    assert c.closed_at is not None and c.closed_at >= c.dpr_at
    # All within the bound: the drain (4 s) and the workers' stop.
    assert exited_at - term_at < drain_timeout + 10, exited_at - term_at
    assert all(_gone(w) for w in workers), workers


def test_sigterm_with_requests_longer_than_the_bound_still_stops_in_time(
    tmp_path: Path, chargegw_run: Any
) -> None:
    drain_timeout = 2.0
    with chargegw_run(tmp_path, workers=1, extra=_app(60.0, drain_timeout)) as gw:
        workers = gw.children()

        async def main() -> Client:
            peer = await RawPeer.connect("127.0.0.1", gw.port)
            await peer.handshake("load.test", "test")
            c = Client(peer)
            reader = asyncio.create_task(c.read())
            for _ in range(5):
                c.send()
            await asyncio.sleep(0.5)  # placed on the worker, which holds them for 60 s
            gw.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(reader, 60)
            peer.close()
            return c

        t0 = time.monotonic()
        c = asyncio.run(main())
        rc = gw.proc.wait(60)
        took = time.monotonic() - t0
    assert rc == 0, gw.output()
    assert c.dpr is not None, gw.output()
    assert c.dpr_at is not None and c.dpr_at - t0 < drain_timeout + 3
    # The bound holds: drain_timeout, DPR, then the workers' stop (bounded by the same).
    assert took < 2 * drain_timeout + 3, took
    assert all(_gone(w) for w in workers), workers
    print(f"stopped in {took:.1f}s, DPR after {c.dpr_at - t0:.1f}s")


def test_requests_still_held_at_the_bound_get_an_error_before_dpr(
    tmp_path: Path, chargegw_run: Any
) -> None:
    with chargegw_run(tmp_path, workers=1, extra=_app(60.0, 1.0)) as gw:

        async def main() -> Client:
            peer = await RawPeer.connect("127.0.0.1", gw.port)
            await peer.handshake("load.test", "test")
            c = Client(peer)
            reader = asyncio.create_task(c.read())
            for _ in range(5):
                c.send()
            await asyncio.sleep(0.5)
            gw.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(reader, 60)
            peer.close()
            return c

        c = asyncio.run(main())
        gw.proc.wait(60)
    assert {s.code for s in c.sent.values()} == {3002}, [s.code for s in c.sent.values()]
