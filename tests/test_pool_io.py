"""The ZeroMQ pool end to end inside one event loop: PoolServer (gateway side) and
WorkerRuntime instances (worker side) over ipc:// in tmp_path. No Diameter peer: requests
are submitted to the PoolServer directly and answers collected from its callbacks."""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zmq

from chargegw.codec import Avp, Message
from chargegw.gateway.pool import NoWorker, Pending, PoolCore
from chargegw.gateway.pool_io import OutRequestFailed, PoolServer
from chargegw.ipc import protocol as pp
from chargegw.ipc.security import DEFAULT_OUT_COMMANDS
from chargegw.workers.api import AppSpec, Incoming
from chargegw.workers.runtime import WorkerRuntime
from chargegw.workers.testapp import TEST_APP_ID, TEST_AVP, TEST_CMD, TEST_VENDOR

pytestmark = pytest.mark.timeout(60)


def aio(fn: Any) -> Any:
    """Run an async test in a fresh event loop (no pytest-asyncio here)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        return asyncio.run(asyncio.wait_for(fn(*args, **kw), 45))

    return wrapper


HB = 0.1
HB_TIMEOUT = 0.4


def make_request(i: int, sid: str | None = None) -> bytes:
    m = Message(
        code=TEST_CMD, app_id=TEST_APP_ID, flags=0xC0, hop_by_hop=1000 + i, end_to_end=5000 + i
    )
    m.set("Session-Id", sid or f"client.localdomain;1;{i}")
    m.set("Origin-Host", "client.localdomain")
    m.set("Origin-Realm", "localdomain")
    m.set("Destination-Realm", "localdomain")
    m.add(Avp(TEST_AVP, i.to_bytes(4, "big"), vendor=TEST_VENDOR, flags=0x80))
    return m.encode()


@dataclass
class Gw:
    server: PoolServer
    core: PoolCore
    endpoint: str
    answers: dict[int, Message] = field(default_factory=dict)  # hbh -> answer
    errors: list[tuple[int, int]] = field(default_factory=list)  # (hbh, result code)
    answered_at: dict[int, float] = field(default_factory=dict)

    def submit(self, raw: bytes, app: int = TEST_APP_ID) -> None:
        m = Message.decode(raw)
        self.server.submit(
            peer="client.localdomain",
            hbh=m.hop_by_hop,
            app=app,
            cmd=m.code,
            session_id=m.raw_value("Session-Id") or b"",
            raw=raw,
            ref=m,
        )

    def total(self) -> int:
        return len(self.answers)


def make_gateway(
    endpoint: str, *, deadline: float = 4.0, out_request: Any = None, **options: Any
) -> Gw:
    core = PoolCore(deadline=deadline, heartbeat_timeout=HB_TIMEOUT)
    gw: Gw

    def deliver(peer: str, raw: bytes) -> None:
        m = Message.decode(raw)
        assert m.hop_by_hop not in gw.answers, "answered twice"
        gw.answers[m.hop_by_hop] = m
        gw.answered_at[m.hop_by_hop] = time.monotonic()

    def error_answer(p: Pending, code: int, reason: str) -> None:
        ans = p.ref.answer(
            code, origin_host="gw.localdomain", origin_realm="localdomain", error_message=reason
        )
        gw.errors.append((p.hbh, code))
        deliver(p.peer, ans.encode())

    server = PoolServer(
        core,
        [endpoint],
        deliver=deliver,
        error_answer=error_answer,
        out_request=out_request,
        heartbeat_interval=HB,
        **options,
    )
    gw = Gw(server, core, endpoint)
    server.start()
    return gw


def make_worker(
    endpoints: list[str], apps: list[AppSpec], *, credit: int = 64, wid: str | None = None
) -> WorkerRuntime:
    return WorkerRuntime(
        gateways=endpoints,
        apps=apps,
        credit=credit,
        worker_id=wid,
        heartbeat_interval=HB,
        heartbeat_timeout=HB_TIMEOUT,
        data_dir="/tmp",
    )


TEST = AppSpec(TEST_APP_ID, "chargegw.workers.testapp:TestApp")


def slow(delay: float, app_id: int = TEST_APP_ID) -> AppSpec:
    return AppSpec(app_id, "chargegw.workers.testapp:SlowApp", {"delay": delay})


class Workers:
    def __init__(self) -> None:
        self.items: list[tuple[WorkerRuntime, asyncio.Event, asyncio.Task[None]]] = []

    def start(self, rt: WorkerRuntime) -> WorkerRuntime:
        stop = asyncio.Event()
        self.items.append((rt, stop, asyncio.ensure_future(rt.run(stop, drain_timeout=2.0))))
        return rt

    async def stop(self, rt: WorkerRuntime) -> None:
        for r, ev, task in self.items:
            if r is rt:
                ev.set()
                await asyncio.wait_for(task, 5)

    def freeze(self, rt: WorkerRuntime) -> None:
        """The worker goes silent without a word (a hung or dead process)."""
        for r, _ev, task in self.items:
            if r is rt:
                task.cancel()
                if rt._tick_handle is not None:
                    rt._tick_handle.cancel()
                for link in rt.links:
                    if link.ls is not None:
                        link.ls.close(linger=0)
                        link.ls = None


@asynccontextmanager
async def pool(tmp_path: Path, **kw: Any) -> AsyncIterator[tuple[Gw, Workers]]:
    gw = make_gateway(f"ipc://{tmp_path}/gw.ipc", **kw)
    ws = Workers()
    try:
        yield gw, ws
    finally:
        for _rt, ev, _task in ws.items:
            ev.set()
        await asyncio.gather(*(t for _, _, t in ws.items), return_exceptions=True)
        gw.server.close(goodbye=False)


async def until(cond: Any, timeout: float = 5.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@aio
async def test_roundtrip_echoes_test_avp(tmp_path: Path) -> None:
    async with pool(tmp_path) as (gw, ws):
        ws.start(make_worker([gw.endpoint], [TEST]))
        await until(lambda: len(gw.core.workers) == 1, what="registration")
        for i in range(50):
            gw.submit(make_request(i))
        await until(lambda: gw.total() == 50, what="50 answers")
        for i in range(50):
            a = gw.answers[1000 + i]
            assert a.end_to_end == 5000 + i and not a.is_request
            assert int(a.get("Result-Code")) == 2001
            assert a.find_code(TEST_AVP, TEST_VENDOR)[0].data == i.to_bytes(4, "big")
            assert a.get("Session-Id") == f"client.localdomain;1;{i}"
        assert gw.core.counters.answered == 50
        w = next(iter(gw.core.workers.values()))
        assert w.available == w.credit == 64


@aio
async def test_credit_bounds_inflight_and_3004_when_full(tmp_path: Path) -> None:
    async with pool(tmp_path) as (gw, ws):
        rt = ws.start(make_worker([gw.endpoint], [slow(0.3)], credit=3))
        await until(lambda: len(gw.core.workers) == 1, what="registration")
        for i in range(3):
            gw.submit(make_request(i))
        with pytest.raises(NoWorker) as exc:
            gw.submit(make_request(3))
        assert exc.value.result_code == 3004
        await asyncio.sleep(0.1)
        assert sum(link.busy for link in rt.links) == 3  # the worker never holds more
        await until(lambda: gw.total() == 3, what="3 answers")
        await until(lambda: next(iter(gw.core.workers.values())).available == 3, what="credit back")
        gw.submit(make_request(4))
        await until(lambda: gw.total() == 4, what="answer after credit came back")
        assert all(int(a.get("Result-Code")) == 2001 for a in gw.answers.values())


def test_handler_exception_answers_5012_and_worker_lives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("ERROR", logger="chargegw.worker")
    asyncio.run(asyncio.wait_for(_handler_exception(tmp_path), 45))
    assert any(
        "Session-Id client.localdomain;1;1" in r.getMessage() and "5012" in r.getMessage()
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]


async def _handler_exception(tmp_path: Path) -> None:
    async with pool(tmp_path) as (gw, ws):
        apps = [TEST, AppSpec(1, "chargegw.workers.testapp:FailApp")]
        rt = ws.start(make_worker([gw.endpoint], apps))
        await until(lambda: len(gw.core.workers) == 1, what="registration")
        gw.submit(make_request(1), app=1)
        gw.submit(make_request(2))
        await until(lambda: gw.total() == 2, what="2 answers")
        assert int(gw.answers[1001].get("Result-Code")) == 5012
        assert int(gw.answers[1002].get("Result-Code")) == 2001
        assert rt.errors == 1
        gw.submit(make_request(3))
        await until(lambda: gw.total() == 3, what="the worker still serves")


@aio
async def test_silent_worker_is_dropped_and_its_requests_resent(tmp_path: Path) -> None:
    async with pool(tmp_path) as (gw, ws):
        a = ws.start(make_worker([gw.endpoint], [slow(0.5)], wid="a"))
        b = ws.start(make_worker([gw.endpoint], [slow(0.05)], wid="b"))
        await until(lambda: len(gw.core.workers) == 2, what="registration")
        for i in range(40):
            gw.submit(make_request(i))
        on_a = [p.hbh for p in gw.core.pending.values() if p.worker == b"a"]
        assert on_a, "affinity should have put some sessions on a"
        await asyncio.sleep(0.05)
        ws.freeze(a)
        t0 = time.monotonic()
        await until(lambda: gw.total() == 40, timeout=4.0, what="all answered")
        assert b"a" not in gw.core.workers
        assert gw.core.counters.resent == len(on_a)
        assert all(int(m.get("Result-Code")) == 2001 for m in gw.answers.values())
        # b saw them flagged as possible duplicates
        assert b.apps[TEST_APP_ID].app.seen_retransmit == len(on_a)
        # failover happened after the heartbeat timeout, well before the deadline
        assert max(gw.answered_at[h] for h in on_a) - t0 < HB_TIMEOUT + 1.5


@aio
async def test_deadline_passed_in_worker_answers_3002_then_slot_returns(tmp_path: Path) -> None:
    async with pool(tmp_path, deadline=0.3) as (gw, ws):
        ws.start(make_worker([gw.endpoint], [slow(0.8)], credit=1))
        await until(lambda: len(gw.core.workers) == 1, what="registration")
        gw.submit(make_request(1))
        await until(lambda: gw.total() == 1, what="gateway's own answer")
        assert gw.errors == [(1001, 3002)]
        assert gw.answers[1001].is_error
        w = next(iter(gw.core.workers.values()))
        with pytest.raises(NoWorker):  # the worker still holds it
            gw.submit(make_request(2))
        await until(lambda: w.available == 1, what="late answer frees the slot")
        assert gw.core.counters.late_answers == 1
        assert gw.total() == 1  # the late answer was not sent twice


@aio
async def test_affinity_one_session_one_worker(tmp_path: Path) -> None:
    async with pool(tmp_path) as (gw, ws):
        rts = [ws.start(make_worker([gw.endpoint], [TEST], wid=f"w{i}")) for i in range(3)]
        await until(lambda: len(gw.core.workers) == 3, what="registration")
        n = 0
        for s in range(12):
            before = [rt.handled for rt in rts]
            for _ in range(5):
                gw.submit(make_request(n, sid=f"sess-{s}"))
                n += 1
            await until(lambda n=n: gw.total() == n, what="answers")
            delta = [rt.handled - b for rt, b in zip(rts, before, strict=True)]
            assert sorted(delta) == [0, 0, 5], delta
        assert gw.core.counters.affinity_misses == 0
        assert all(rt.handled > 0 for rt in rts)


@aio
async def test_gateway_restart_worker_registers_again(tmp_path: Path) -> None:
    ep = f"ipc://{tmp_path}/gw.ipc"
    gw1 = make_gateway(ep)
    ws = Workers()
    rt = ws.start(make_worker([ep], [TEST]))
    try:
        await until(lambda: len(gw1.core.workers) == 1, what="first registration")
        gw1.server.close()  # says goodbye
        gw2 = make_gateway(ep)
        try:
            await until(
                lambda: len(gw2.core.workers) == 1,
                timeout=5,
                what="registration with the new gateway",
            )
            gw2.submit(make_request(1))
            await until(lambda: gw2.total() == 1, what="answer")
            assert rt.links[0].acked
        finally:
            gw2.server.close(goodbye=False)
    finally:
        await ws.stop(rt)


@aio
async def test_unknown_worker_gets_reset_and_reregisters(tmp_path: Path) -> None:
    async with pool(tmp_path) as (gw, ws):
        rt = ws.start(make_worker([gw.endpoint], [TEST], wid="w"))
        await until(lambda: len(gw.core.workers) == 1, what="registration")
        gen = rt.links[0].gen
        gw.server.drop_worker(b"w", "test")  # as if it had been silent
        assert not gw.core.workers
        await until(
            lambda: len(gw.core.workers) == 1, timeout=3, what="re-registration after Reset"
        )
        assert rt.links[0].gen == gen + 1
        gw.submit(make_request(1))
        await until(lambda: gw.total() == 1, what="answer")


@aio
async def test_a_reregistering_worker_gets_what_it_held_again_at_once(tmp_path: Path) -> None:
    """The only worker registers again (a new gen) while it holds requests: they are resent
    to its new registration at once, after the acknowledgement that starts it (a request
    before it would be dropped unapplied as the old registration's, and wait out the
    deadline), and answered 2001 long before the deadline; none is answered twice."""
    async with pool(tmp_path, deadline=3.0) as (gw, ws):
        rt = ws.start(make_worker([gw.endpoint], [slow(0.2)], wid="w"))
        await until(lambda: len(gw.core.workers) == 1, what="registration")
        for i in range(5):
            gw.submit(make_request(i))
        await until(lambda: rt.links[0].received == 5, what="the worker holds them")
        t0 = time.monotonic()
        rt._reregister(0, "test: as if the gateway had gone silent")
        await until(lambda: gw.total() == 5, timeout=2.5, what="answers before the deadline")
        assert gw.errors == []
        assert all(int(m.get("Result-Code")) == 2001 for m in gw.answers.values())
        assert gw.core.counters.resent == 5 and rt.links[0].stale == 0
        assert max(gw.answered_at.values()) - t0 < 1.5
        w = gw.core.workers[b"w"]
        await until(lambda: w.available == w.credit, what="every slot back")


@aio
async def test_worker_initiated_request(tmp_path: Path) -> None:
    seen: list[tuple[str, float, int]] = []

    async def out_request(raw: bytes, peer: str, timeout: float) -> bytes:
        m = Message.decode(raw)
        seen.append((peer, timeout, m.code))
        if peer == "fail.localdomain":
            raise OutRequestFailed(3002, "peer not connected")
        return m.answer(2001, origin_host="client.localdomain", origin_realm="localdomain").encode()

    # test_app's command is a user application's server-initiated command (declared).
    out = {*DEFAULT_OUT_COMMANDS, TEST_CMD}
    async with pool(tmp_path, out_request=out_request, out_commands=out) as (gw, ws):
        ws.start(
            make_worker(
                [gw.endpoint], [AppSpec(TEST_APP_ID, "chargegw.workers.testapp:AskPeerApp")]
            )
        )
        await until(lambda: len(gw.core.workers) == 1, what="registration")
        gw.submit(make_request(1))
        await until(lambda: gw.total() == 1, what="answer")
        assert seen == [("client.localdomain", 2.0, TEST_CMD)]
        assert int(gw.answers[1001].get("Result-Code")) == 2001
        # The error path: the SendError's Result-Code reaches the application.
        m = Message.decode(make_request(2))
        gw.server.submit(
            peer="fail.localdomain",
            hbh=1002,
            app=TEST_APP_ID,
            cmd=TEST_CMD,
            session_id=b"s",
            raw=m.encode(),
            ref=m,
        )
        await until(lambda: gw.total() == 2, what="answer 2")
        assert int(gw.answers[1002].get("Result-Code")) == 3002


@aio
async def test_two_gateways_share_one_worker(tmp_path: Path) -> None:
    gw1 = make_gateway(f"ipc://{tmp_path}/gw1.ipc")
    gw2 = make_gateway(f"ipc://{tmp_path}/gw2.ipc")
    ws = Workers()
    rt = ws.start(make_worker([gw1.endpoint, gw2.endpoint], [TEST], credit=4))
    try:
        await until(
            lambda: len(gw1.core.workers) == 1 and len(gw2.core.workers) == 1,
            what="both registered",
        )
        for i in range(4):
            gw1.submit(make_request(i))
            gw2.submit(make_request(10 + i))
        await until(lambda: gw1.total() == 4 and gw2.total() == 4, what="answers on both")
        assert set(gw1.answers) == {1000, 1001, 1002, 1003}
        assert set(gw2.answers) == {1010, 1011, 1012, 1013}
    finally:
        await ws.stop(rt)
        gw1.server.close(goodbye=False)
        gw2.server.close(goodbye=False)


class GarbageApp:
    """Answers with bytes that are not an answer to the request."""

    app_id = TEST_APP_ID

    def setup(self, ctx: Any) -> None:
        pass

    def handle_batch(self, requests: list[Incoming]) -> list[bytes]:
        # a request-less header, wrong hop-by-hop
        return [b"\x01\x00\x00\x14" + b"\x00" * 16 for _ in requests]


@aio
async def test_bad_frames_and_bad_answers_do_not_crash(tmp_path: Path) -> None:
    async with pool(tmp_path) as (gw, ws):
        ws.start(make_worker([gw.endpoint], [AppSpec(TEST_APP_ID, f"{__name__}:GarbageApp")]))
        await until(lambda: len(gw.core.workers) == 1, what="registration")
        rogue = zmq.Context.instance().socket(zmq.DEALER)
        rogue.setsockopt(zmq.LINGER, 0)
        rogue.connect(gw.endpoint)
        try:
            for junk in (b"", b"\x09junk", b"\x01\xff\xff", pp.encode_one(pp.Answer(1, b"x"))[:-1]):
                rogue.send(junk)
            rogue.send_multipart([b"a", b"b", b"c"])
            rogue.send(pp.encode_one(pp.Answer(12345, b"not registered")))
            await until(lambda: gw.server.bad_frames >= 4, what="bad frames counted")
            assert rogue.poll(2000), "an unregistered sender is told to register"
            assert isinstance(pp.decode(rogue.recv())[0], pp.Reset)
        finally:
            rogue.close(linger=0)
        gw.submit(make_request(1))
        await until(lambda: gw.total() == 1, what="an answer")
        assert int(gw.answers[1001].get("Result-Code")) == 5012
        assert gw.server.bad_answers == 1


@aio
async def test_status_query_on_the_operator_socket_only(tmp_path: Path) -> None:
    import os
    import stat

    from chargegw.gateway.status_cli import query, render

    status_ep = f"ipc://{tmp_path}/run/status.ipc"
    async with pool(tmp_path, status_endpoint=status_ep) as (gw, ws):
        ws.start(make_worker([gw.endpoint], [TEST], wid="status-w"))
        await until(lambda: len(gw.core.workers) == 1, what="registration")
        run = asyncio.get_running_loop().run_in_executor
        with pytest.raises(TimeoutError):  # the worker endpoint does not answer it
            await run(None, query, gw.endpoint, 0.5)
        assert stat.S_IMODE(os.stat(tmp_path / "run" / "status.ipc").st_mode) == 0o600
        assert stat.S_IMODE(os.stat(tmp_path / "run").st_mode) == 0o700
        doc = await run(None, query, status_ep, 3.0)
        assert [w["id"] for w in doc["pool"]["workers"]] == ["status-w"]
        assert doc["pool"]["counters"]["placed"] == 0
        assert "status-w" in render(doc)


@aio
async def test_worker_goodbye_drains_then_leaves(tmp_path: Path) -> None:
    async with pool(tmp_path) as (gw, ws):
        a = ws.start(make_worker([gw.endpoint], [slow(0.3)], wid="a"))
        await until(lambda: len(gw.core.workers) == 1, what="registration")
        for i in range(5):
            gw.submit(make_request(i))
        stopping = asyncio.ensure_future(ws.stop(a))
        await until(
            lambda: gw.core.workers.get(b"a") is None or gw.core.workers[b"a"].draining,
            what="draining",
        )
        with pytest.raises(NoWorker):
            gw.submit(make_request(99))  # no new work for a draining worker
        await stopping
        await until(lambda: not gw.core.workers, what="goodbye")
        assert sorted(gw.answers) == [1000, 1001, 1002, 1003, 1004]
        assert all(int(m.get("Result-Code")) == 2001 for m in gw.answers.values())
        assert gw.core.counters.resent == 0


@aio
async def test_second_gateway_on_the_same_ipc_path_is_refused(tmp_path: Path) -> None:
    gw = make_gateway(f"ipc://{tmp_path}/gw.ipc")
    try:
        with pytest.raises(OSError, match="in use by another running gateway"):
            make_gateway(f"ipc://{tmp_path}/gw.ipc")
    finally:
        gw.server.close(goodbye=False)
    again = make_gateway(f"ipc://{tmp_path}/gw.ipc")  # a stale file is fine
    again.server.close(goodbye=False)


class BatchApp:
    """`handle_batch`: answers a whole drained batch at once; request 3 raises (5012),
    and with `later` the list comes back from an awaitable."""

    app_id = TEST_APP_ID
    later = False
    batches: list[int] = []

    def setup(self, ctx: Any) -> None:
        self.ctx = ctx

    def _one(self, raw: bytes) -> Any:
        m = Message.decode(raw)
        if m.hop_by_hop == 1003:
            return RuntimeError("boom")
        return m.answer(
            2001, origin_host=self.ctx.origin_host, origin_realm=self.ctx.origin_realm
        ).encode()

    def handle_batch(self, requests: list[Incoming]) -> Any:
        assert all(r.ctx.peer == "client.localdomain" for r in requests)
        type(self).batches.append(len(requests))
        answers = [self._one(r.raw) for r in requests]
        if not self.later:
            return answers

        async def deferred() -> list[Any]:
            await asyncio.sleep(0.01)
            return answers

        return deferred()


class LaterBatchApp(BatchApp):
    later = True


@pytest.mark.parametrize("app", ["BatchApp", "LaterBatchApp"])
@aio
async def test_batch_hook_answers_every_request_of_a_batch(tmp_path: Path, app: str) -> None:
    BatchApp.batches = []
    async with pool(tmp_path) as (gw, ws):
        ws.start(make_worker([gw.endpoint], [AppSpec(TEST_APP_ID, f"{__name__}:{app}")]))
        await until(lambda: len(gw.core.workers) == 1, what="registration")
        for i in range(40):
            gw.submit(make_request(i))
        await until(lambda: gw.total() == 40, what="all answers")
        codes = {hbh: int(m.get("Result-Code")) for hbh, m in gw.answers.items()}
        assert codes.pop(1003) == 5012
        assert set(codes.values()) == {2001} and len(codes) == 39
        assert sum(BatchApp.batches) == 40 and max(BatchApp.batches) > 1  # batched, not 1 by 1
        # every slot came back: the window is whole again
        w = next(iter(gw.core.workers.values()))
        await until(lambda: w.available == w.credit, what="credit returned")


class MixedBatchApp:
    """Every kind of `handle_batch` entry, chosen by the request's number (hbh - 1000):
    0 bytes, 1 a Message, 2 an awaitable of bytes, 3 None (expired: dropped unapplied),
    4 a DiameterError (its own Result-Code), 5 another exception (5012)."""

    app_id = TEST_APP_ID
    calls: list[int] = []

    def setup(self, ctx: Any) -> None:
        self.ctx = ctx

    def _answer(self, r: Incoming) -> Message:
        return r.message.answer(
            2001, origin_host=self.ctx.origin_host, origin_realm=self.ctx.origin_realm
        )

    def handle_batch(self, requests: list[Incoming]) -> list[Any]:
        from chargegw.codec.errors import DiameterError

        type(self).calls.append(len(requests))
        out: list[Any] = []
        for r in requests:
            kind = (int.from_bytes(r.raw[12:16], "big") - 1000) % 6
            if kind == 0:
                out.append(self._answer(r).encode())
            elif kind == 1:
                out.append(self._answer(r))
            elif kind == 2:

                async def later(r: Incoming = r) -> bytes:
                    await asyncio.sleep(0.01)
                    return self._answer(r).encode()

                out.append(later())
            elif kind == 3:
                out.append(None)
            elif kind == 4:
                out.append(DiameterError(5030, "no such user"))
            else:
                out.append(RuntimeError("boom"))
        return out


@aio
async def test_handle_batch_entries_of_every_kind(tmp_path: Path) -> None:
    """One dispatch path: bytes, Message and awaitable answers; None is Expired (3002 from
    the gateway, slot back); a DiameterError keeps its Result-Code; anything else is 5012."""
    MixedBatchApp.calls = []
    async with pool(tmp_path) as (gw, ws):
        rt = ws.start(
            make_worker([gw.endpoint], [AppSpec(TEST_APP_ID, f"{__name__}:MixedBatchApp")])
        )
        await until(lambda: len(gw.core.workers) == 1, what="registration")
        for i in range(36):
            gw.submit(make_request(i))
        await until(lambda: gw.total() == 36, what="all answers")
        want = {0: 2001, 1: 2001, 2: 2001, 3: 3002, 4: 5030, 5: 5012}
        for i in range(36):
            assert int(gw.answers[1000 + i].get("Result-Code")) == want[i % 6], i
        assert sorted(h for h, c in gw.errors) == [1000 + i for i in range(36) if i % 6 == 3]
        assert gw.core.counters.worker_expired == 6
        assert rt.links[0].expired == 6
        assert gw.answers[1004].get("Error-Message") == "no such user"
        assert sum(MixedBatchApp.calls) == 36 and len(MixedBatchApp.calls) < 36  # batched
        w = next(iter(gw.core.workers.values()))
        await until(lambda: w.available == w.credit, what="credit returned")


class RawAndHandleApp:
    """Defines the removed `handle_raw` beside `handle`: only `handle` may be called."""

    app_id = TEST_APP_ID
    decoded = 0

    def setup(self, ctx: Any) -> None:
        self.ctx = ctx

    def handle_raw(self, raw: bytes, ctx: Any) -> bytes:
        raise AssertionError("handle_raw is not an entry point any more")

    def handle(self, request: Message, ctx: Any) -> Message:
        assert ctx.peer == "client.localdomain" and ctx.deadline > time.time()
        type(self).decoded += 1
        return request.answer(
            2001, origin_host=self.ctx.origin_host, origin_realm=self.ctx.origin_realm
        )


@aio
async def test_handle_only_app_is_adapted_and_handle_raw_is_ignored(tmp_path: Path) -> None:
    RawAndHandleApp.decoded = 0
    async with pool(tmp_path) as (gw, ws):
        rt = ws.start(
            make_worker([gw.endpoint], [AppSpec(TEST_APP_ID, f"{__name__}:RawAndHandleApp")])
        )
        await until(lambda: len(gw.core.workers) == 1, what="registration")
        for i in range(10):
            gw.submit(make_request(i))
        await until(lambda: gw.total() == 10, what="answers")
        assert {int(m.get("Result-Code")) for m in gw.answers.values()} == {2001}
        assert RawAndHandleApp.decoded == 10 and rt.errors == 0


def test_adapter_keeps_each_failure_to_its_request() -> None:
    """The one wrapper from `handle` to `handle_batch`: an undecodable request or a raising
    handler is that entry's exception; the others are answered; a request is decoded only
    when the application asks for `message`."""
    from chargegw.codec import AvpError
    from chargegw.workers.api import RequestContext
    from chargegw.workers.apps import batch_entry

    class App:
        def handle(self, request: Message, ctx: Any) -> Any:
            if request.hop_by_hop == 1001:
                raise ValueError("no")
            return request.hop_by_hop

    good = make_request(0)
    ctx = RequestContext("p", time.time() + 5)
    bad = bytearray(make_request(2))
    bad[20 + 5 : 20 + 8] = (4).to_bytes(3, "big")  # the first AVP's length: too short
    reqs = [Incoming(good, ctx), Incoming(make_request(1), ctx), Incoming(bytes(bad), ctx)]
    out = batch_entry(App())(reqs)
    assert out[0] == 1000
    assert isinstance(out[1], ValueError)
    assert isinstance(out[2], AvpError)
    lazy = Incoming(good, ctx)
    assert lazy._message is None
    assert lazy.message is lazy.message and lazy.message.hop_by_hop == 1000


# A worker's pipe that is full (zmq.Again) -----------------------------------------------


class Pipes:
    """The gateway's ROUTER as the sender sees it: each identity's pipe takes `room[ident]`
    more frames (None: no limit) and then refuses with zmq.Again, the high-water mark; an
    identity in `gone` is EHOSTUNREACH (ROUTER_MANDATORY). What went, in order, is kept."""

    def __init__(self, real: zmq.Socket) -> None:
        self.real = real  # the bound socket, for what the server asks of it besides sends
        self.room: dict[bytes, int | None] = {}
        self.gone: set[bytes] = set()
        self.sent: list[tuple[bytes, list[pp.PoolMessage]]] = []
        self._to: bytes | None = None  # the identity part of a message being sent

    def send_multipart(self, parts: list[bytes], flags: int = 0) -> None:
        ident, frame = parts
        self.send(ident, flags | zmq.SNDMORE)
        self.send(frame, flags)

    def send(self, data: bytes, flags: int = 0) -> None:
        """As a ROUTER: the first part names the pipe, and the refusal comes on it."""
        assert flags & zmq.NOBLOCK
        if self._to is None:
            assert flags & zmq.SNDMORE, "a message to a worker has two parts"
            if data in self.gone:
                raise zmq.ZMQError(errno.EHOSTUNREACH)
            room = self.room.get(data)
            if room is not None:
                if room <= 0:
                    raise zmq.Again(errno.EAGAIN)
                self.room[data] = room - 1
            self._to = data
            return
        assert not flags & zmq.SNDMORE
        ident, self._to = self._to, None
        self.sent.append((ident, pp.decode(data)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def got(self, ident: bytes, kind: type = pp.Request) -> list[Any]:
        return [m for i, msgs in self.sent if i == ident for m in msgs if type(m) is kind]

    def frames_to(self, ident: bytes) -> int:
        return sum(i == ident for i, _ in self.sent)


@asynccontextmanager
async def piped(tmp_path: Path, **kw: Any) -> AsyncIterator[tuple[Gw, Pipes]]:
    """A gateway whose sends go through `Pipes`; workers register with a Ready frame handed
    in as if it came off the socket, and stay alive (no silence check in these tests)."""
    gw = make_gateway(f"ipc://{tmp_path}/gw.ipc", **kw)
    gw.core.heartbeat_timeout = 60.0
    real = gw.server._sock
    assert real is not None
    pipes = Pipes(real)
    gw.server._sock = pipes  # type: ignore[assignment]
    try:
        yield gw, pipes
    finally:
        gw.server._sock = real
        gw.server.close(goodbye=False)


def register(gw: Gw, ident: bytes, *, credit: int = 64, gen: int = 1) -> None:
    ready = pp.Ready(worker_id=ident.decode(), credit=credit, apps=[TEST_APP_ID], gen=gen)
    gw.server._on_frames([[ident, pp.encode_one(ready)]])
    assert ident in gw.core.workers


@aio
async def test_full_pipe_keeps_the_worker_and_delivers_everything_once_in_order(
    tmp_path: Path,
) -> None:
    """zmq.Again is a slow worker, not a lost one: nothing is dropped while its pipe is
    full, and when it frees, what waited goes once each, in the order it was placed."""
    async with piped(tmp_path) as (gw, pipes):
        register(gw, b"w")
        await asyncio.sleep(0)
        assert pipes.got(b"w", pp.Heartbeat), "the registration's acknowledgement went"
        pipes.room[b"w"] = 0  # full from now on
        for i in range(30):
            gw.submit(make_request(i))
            if i % 3 == 2:
                await asyncio.sleep(0)  # several boxes, one a loop turn
        await asyncio.sleep(0.3)  # ticks come and try again; the pipe stays full
        assert b"w" in gw.core.workers, "a full pipe dropped a live worker"
        assert gw.errors == [] and gw.total() == 0
        assert pipes.got(b"w") == []
        assert gw.server.held_back > 0
        assert len(gw.core.pending) == 30
        before, freed = len(pipes.sent), time.time()
        pipes.room[b"w"] = None
        await until(lambda: len(pipes.got(b"w")) >= 30, timeout=2.0, what="held requests")
        # Of the heartbeats queued while it waited one goes, stamped when it went (the
        # worker takes its clock offset from it).
        first = pipes.sent[before][1]
        beats = [m for m in first if type(m) is pp.Heartbeat]
        assert len(beats) == 1 and beats[0].t >= freed
        await asyncio.sleep(0.2)  # more ticks: nothing goes twice
        assert [m.hbh for m in pipes.got(b"w")] == [1000 + i for i in range(30)]
        assert all(not m.retransmit for m in pipes.got(b"w"))
        assert gw.core.counters.resent == 0 and gw.errors == []
        # nothing held; a tick's heartbeat may sit in the outbox until the turn's flush
        assert gw.server._held == {}
        assert all(type(m) is pp.Heartbeat for ms in gw.server._outbox.values() for m in ms)


@aio
async def test_a_box_refused_halfway_keeps_only_what_did_not_go(tmp_path: Path) -> None:
    """A box split into several frames (`max_frame`) whose pipe fills after two of them:
    the rest, and what is queued after it, go later, in order, and nothing goes twice."""
    async with piped(tmp_path, max_frame=1500) as (gw, pipes):
        register(gw, b"w")
        await asyncio.sleep(0)
        pipes.room[b"w"] = 2
        for i in range(20):  # one loop turn: one box, several frames
            gw.submit(make_request(i))
        await asyncio.sleep(0)
        first = [m.hbh for m in pipes.got(b"w")]
        assert 0 < len(first) < 20, "two frames went, the rest waits"
        assert pipes.frames_to(b"w") == 2 + 1  # the acknowledgement before
        for i in range(20, 25):  # queued behind what waits
            gw.submit(make_request(i))
        await asyncio.sleep(0.15)
        assert b"w" in gw.core.workers and len(pipes.got(b"w")) == len(first)
        pipes.room[b"w"] = None
        await until(lambda: len(pipes.got(b"w")) >= 25, timeout=2.0, what="the rest")
        await asyncio.sleep(0.15)
        assert [m.hbh for m in pipes.got(b"w")] == [1000 + i for i in range(25)]


@aio
async def test_a_held_request_past_its_deadline_is_not_sent_after_its_3002(
    tmp_path: Path,
) -> None:
    """The deadline answers a request still held for a full pipe (3002); when the pipe
    frees, that request must not reach the worker (it would run it after the 3002), and
    its slot comes back (the worker will never answer it)."""
    async with piped(tmp_path, deadline=0.3) as (gw, pipes):
        register(gw, b"w", credit=4)
        await asyncio.sleep(0)
        pipes.room[b"w"] = 0
        for i in range(3):
            gw.submit(make_request(i))
        await until(lambda: gw.total() == 3, timeout=2.0, what="3002 at the deadline")
        assert sorted(gw.errors) == [(1000 + i, 3002) for i in range(3)]
        assert b"w" in gw.core.workers
        gw.submit(make_request(3))  # still has a slot: placed and held too
        pipes.room[b"w"] = None
        await until(lambda: len(pipes.got(b"w")) >= 1, timeout=2.0, what="the live one")
        await asyncio.sleep(0.15)
        assert [m.hbh for m in pipes.got(b"w")] == [1003]
        w = gw.core.workers[b"w"]
        assert w.available == 3 and w.inflight == {pipes.got(b"w")[0].id}
        assert w.sent == 1 and gw.core.zombies == {}
        # What reached the worker reconciles: its free count (4 granted, 1 received, none
        # answered) is the gateway's available + (sent - received).
        assert gw.core.reconcile(b"w", 1, free=3, received=1) is True


@aio
async def test_an_unreachable_worker_is_still_dropped(tmp_path: Path) -> None:
    """EHOSTUNREACH: its connection is gone; it is dropped and what it held placed again
    (here on the other worker)."""
    async with piped(tmp_path) as (gw, pipes):
        register(gw, b"a")
        register(gw, b"b")
        await asyncio.sleep(0)
        pipes.gone.add(b"a")
        for i in range(20):
            gw.submit(make_request(i))
        await asyncio.sleep(0)
        assert b"a" not in gw.core.workers and b"b" in gw.core.workers
        assert gw.server.gone[-1][0]["why"] == "unreachable"
        assert sorted(m.hbh for m in pipes.got(b"b")) == [1000 + i for i in range(20)]
        assert gw.errors == [] and gw.server.held_back == 0


@aio
async def test_real_router_holds_for_a_peer_that_does_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real ROUTER (small high-water mark) and a worker that registers, keeps sending
    heartbeats, and reads nothing: its pipe fills, it stays registered, and when it reads
    it gets every request once, in order. Then it closes: unreachable, dropped."""
    import chargegw.gateway.pool_io as pool_io

    monkeypatch.setattr(pool_io, "HWM", 2)
    async with pool(tmp_path, deadline=10.0) as (gw, _ws):
        gw.core.heartbeat_timeout = 5.0  # its heartbeats keep it; a stalled test does not drop it
        peer = zmq.Context.instance().socket(zmq.DEALER)
        peer.setsockopt(zmq.LINGER, 0)
        peer.setsockopt(zmq.RCVHWM, 2)
        peer.setsockopt(zmq.ROUTING_ID, b"slow")
        peer.connect(gw.endpoint)
        try:
            ready = pp.Ready(worker_id="slow", credit=500, apps=[TEST_APP_ID], gen=1)
            peer.send(pp.encode_one(ready))
            await until(lambda: b"slow" in gw.core.workers, what="registration")
            beat = pp.encode_one(pp.Heartbeat(time.time()))
            pad = bytes(64 * 1024)
            n = 0
            for n in range(1, 200):  # until the pipe and the socket buffers are full
                m = Message.decode(make_request(n))
                gw.server.submit(peer="client.localdomain", hbh=m.hop_by_hop, app=TEST_APP_ID,
                                 cmd=m.code, session_id=m.raw_value("Session-Id") or b"",
                                 raw=make_request(n) + pad, ref=m)  # fmt: skip
                peer.send(beat)
                await asyncio.sleep(0.005)
                if gw.server.held_back and n >= 10:
                    break
            assert gw.server.held_back > 0, "the pipe never filled"
            for _ in range(6):  # ticks retry and are refused; the worker is alive
                peer.send(beat)
                await asyncio.sleep(0.1)
            assert b"slow" in gw.core.workers, "a full pipe dropped a live worker"
            assert gw.errors == [] and gw.core.counters.resent == 0
            got: list[int] = []
            end = time.monotonic() + 10
            while len(got) < n and time.monotonic() < end:
                while peer.poll(0):
                    for msg in pp.decode(peer.recv()):
                        if type(msg) is pp.Request:
                            got.append(msg.hbh)
                peer.send(beat)
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            while peer.poll(0):
                got += [x.hbh for x in pp.decode(peer.recv()) if type(x) is pp.Request]
            assert got == [1000 + i for i in range(1, n + 1)]
        finally:
            peer.close(linger=0)
        # Its connection closes: the next send finds no pipe (EHOSTUNREACH) and drops it.
        gw.core.heartbeat_timeout = 60.0  # not for silence
        end = time.monotonic() + 5
        extra = 0
        while b"slow" in gw.core.workers and time.monotonic() < end:
            gw.submit(make_request(1000 + extra))
            extra += 1
            await asyncio.sleep(0.05)
        assert b"slow" not in gw.core.workers
        assert gw.server.gone[-1][0]["why"] == "unreachable"
        # Everything it held is answered (3002: no other worker), once each.
        assert not gw.core.pending and gw.total() == n + extra == len(gw.errors)
