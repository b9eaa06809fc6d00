"""Hostile processes on the gateway <-> worker pool: real ZeroMQ sockets on 127.0.0.1 (and
ipc in tmp_path) against a PoolServer, with a well-behaved worker beside the rogue one.

A rogue without an admitted CURVE key never registers; an admitted one cannot take over a
live identity, send requests other than the server-initiated commands, or make the gateway
hold a huge frame; status is not served on the worker endpoint. Slots are never lost
(zmq.Again) and the heartbeats' `free` reconciles; requests past their deadline are never
applied, and the ledger reconciles after the money cases."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from chargegw.codec import Avp, Message, commands
from chargegw.gateway.pool import Pending, PoolCore
from chargegw.gateway.pool_io import PoolServer
from chargegw.ipc import protocol as pp
from chargegw.ipc import security as sec
from chargegw.workers.api import AppSpec
from chargegw.workers.charging.store import ledger_check
from chargegw.workers.runtime import WorkerRuntime
from chargegw.workers.testapp import TEST_APP_ID, TEST_AVP, TEST_CMD, TEST_VENDOR

pytestmark = pytest.mark.timeout(90)

HB = 0.1
HB_TIMEOUT = 0.6
MAX_LEN = 64 * 1024  # diameter.max_message_length of these pools
TEST = AppSpec(TEST_APP_ID, "chargegw.workers.testapp:TestApp")
GY = AppSpec(4, "chargegw.workers.charging.gy:CreditControlApp", {"demo": {"enabled": True}})


def aio(fn: Any) -> Any:
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        return asyncio.run(asyncio.wait_for(fn(*args, **kw), 60))

    return wrapper


async def until(cond: Any, timeout: float = 8.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def plain_request(i: int) -> bytes:
    m = Message(
        code=TEST_CMD, app_id=TEST_APP_ID, flags=0xC0, hop_by_hop=1000 + i, end_to_end=5000 + i
    )
    m.set("Session-Id", f"client.localdomain;1;{i}")
    m.set("Origin-Host", "client.localdomain")
    m.set("Origin-Realm", "localdomain")
    m.set("Destination-Realm", "localdomain")
    m.add(Avp(TEST_AVP, i.to_bytes(4, "big"), vendor=TEST_VENDOR, flags=0x80))
    return m.encode()


def ccr_i(i: int, msisdn: str) -> bytes:
    req = commands.CreditControlRequest(
        session_id=f"client.test;ccr;{i}",
        origin_host="client.test",
        origin_realm="test",
        destination_realm="ocs",
        auth_application_id=4,
        service_context_id="32251@3gpp.org",
        cc_request_type=1,
        cc_request_number=0,
        subscription_id=[{"subscription_id_type": 0, "subscription_id_data": msisdn}],
        requested_service_unit={"cc_time": 600},
    )
    req.hop_by_hop = req.end_to_end = 1000 + i
    return req.encode()


@dataclass
class Keys:
    dir: Path

    @property
    def gateway_secret(self) -> str:
        return str(self.dir / "gateway" / "gateway.key_secret")

    @property
    def workers_dir(self) -> str:
        return str(self.dir / "gateway" / "workers")

    @property
    def server_public(self) -> str:
        return str(self.dir / "worker" / "gateway.key")

    def worker_secret(self, name: str) -> str:
        return str(self.dir / "worker" / f"{name}.key_secret")


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    # "good" and "inside" are admitted; "inside" plays an admitted but compromised worker.
    sec.generate(str(tmp_path / "keys"), ["good", "inside"])
    return Keys(tmp_path / "keys")


@dataclass
class Gw:
    server: PoolServer
    core: PoolCore
    endpoint: str  # as a worker connects to it
    answers: dict[int, Message] = field(default_factory=dict)  # hbh -> answer
    errors: list[tuple[int, int]] = field(default_factory=list)
    out: list[int] = field(default_factory=list)  # commands sent to "peers"

    def submit(self, raw: bytes) -> None:
        m = Message.decode(raw)
        self.server.submit(
            peer="client.localdomain",
            hbh=m.hop_by_hop,
            app=m.app_id,
            cmd=m.code,
            session_id=m.raw_value("Session-Id") or b"",
            raw=raw,
            ref=m,
        )

    def codes(self) -> list[int]:
        return [int(m.get("Result-Code")) for _, m in sorted(self.answers.items())]


def start_gateway(
    endpoint: str,
    keys: Keys | None,
    tmp_path: Path,
    *,
    deadline: float = 4.0,
    hb: tuple[float, float] = (HB, HB_TIMEOUT),
) -> Gw:
    core = PoolCore(deadline=deadline, heartbeat_timeout=hb[1])
    gw: Gw

    def deliver(peer: str, raw: bytes) -> None:
        m = Message.decode(raw)
        assert m.hop_by_hop not in gw.answers, "answered twice"
        gw.answers[m.hop_by_hop] = m

    def error_answer(p: Pending, code: int, reason: str) -> None:
        gw.errors.append((p.hbh, code))
        deliver(p.peer, p.ref.answer(code, origin_host="gw.test", origin_realm="test").encode())

    async def out_request(raw: bytes, peer: str, timeout: float) -> bytes:
        m = Message.decode(raw)
        gw.out.append(m.code)
        return m.answer(2001, origin_host="client.test", origin_realm="test").encode()

    server = PoolServer(
        core,
        [endpoint],
        deliver=deliver,
        error_answer=error_answer,
        out_request=out_request,
        heartbeat_interval=hb[0],
        curve_secret_key=keys.gateway_secret if keys else "",
        curve_workers=keys.workers_dir if keys else "",
        max_frame=sec.frame_limit(MAX_LEN),
        status_endpoint=f"ipc://{tmp_path}/run/status.ipc",
    )
    server.start()
    ep = endpoint if endpoint.startswith("ipc://") else server.bound[-1]
    gw = Gw(server, core, ep)
    return gw


def make_worker(
    gw: Gw, keys: Keys | None, apps: list[AppSpec], wid: str, **kw: Any
) -> WorkerRuntime:
    return WorkerRuntime(
        gateways=[gw.endpoint],
        apps=apps,
        worker_id=wid,
        heartbeat_interval=HB,
        heartbeat_timeout=HB_TIMEOUT,
        data_dir=kw.pop("data_dir", "/tmp"),
        curve_secret_key=keys.worker_secret("good") if keys else "",
        curve_server_key=keys.server_public if keys else "",
        max_frame=sec.frame_limit(MAX_LEN),
        **kw,
    )


@asynccontextmanager
async def running(gw: Gw, *workers: WorkerRuntime) -> AsyncIterator[list[WorkerRuntime]]:
    stops = [asyncio.Event() for _ in workers]
    tasks = [
        asyncio.ensure_future(w.run(ev, drain_timeout=1.0))
        for w, ev in zip(workers, stops, strict=True)
    ]
    try:
        yield list(workers)
    finally:
        for ev in stops:
            ev.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        gw.server.close(goodbye=False)


class Rogue:
    """A raw DEALER on the pool: CURVE with `secret` (a key file) or none at all."""

    def __init__(self, endpoint: str, keys: Keys | None, secret: str | None, ident: bytes) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTING_ID, ident)
        if secret is not None and keys is not None:
            public, sec_key = zmq.auth.load_certificate(secret)
            server, _ = zmq.auth.load_certificate(keys.server_public)
            self.sock.setsockopt(zmq.CURVE_SERVERKEY, server)
            self.sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
            self.sock.setsockopt(zmq.CURVE_SECRETKEY, sec_key)
        self.monitor = self.sock.get_monitor_socket(
            zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
            | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        )  # fmt: skip
        self.sock.connect(endpoint)

    def send(self, *msgs: pp.PoolMessage) -> None:
        self.sock.send(pp.encode(list(msgs)), zmq.NOBLOCK)

    def received(self) -> list[pp.PoolMessage]:
        out: list[pp.PoolMessage] = []
        while self.sock.poll(0):
            out += pp.decode(self.sock.recv())
        return out

    def events(self) -> list[int]:
        out = []
        while self.monitor.poll(0):
            out.append(recv_monitor_message(self.monitor)["event"])
        return out

    async def wait_event(self, event: int, timeout: float = 5.0) -> list[int]:
        seen: list[int] = []
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            seen += self.events()
            if event in seen:
                return seen
            await asyncio.sleep(0.02)
        raise AssertionError(f"no event {event} on the rogue's socket (saw {seen})")

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=0)
        self.ctx.term()


def ready(wid: str, gen: int, credit: int = 8) -> pp.Ready:
    return pp.Ready(worker_id=wid, credit=credit, apps=[TEST_APP_ID], gen=gen)


# Authentication --------------------------------------------------------------------------


@aio
async def test_worker_without_an_admitted_key_never_registers(tmp_path: Path, keys: Keys) -> None:
    gw = start_gateway("tcp://127.0.0.1:0", keys, tmp_path)
    stranger_dir = tmp_path / "stranger"
    sec.generate(str(stranger_dir), ["stranger"])  # a valid key pair, not in the allowlist
    good = make_worker(gw, keys, [TEST], "good")
    async with running(gw, good):
        await until(lambda: b"good" in gw.core.workers, what="the good worker registers")
        plain = Rogue(gw.endpoint, None, None, b"plain")  # no CURVE at all
        stranger = Rogue(
            gw.endpoint,
            keys,
            str(stranger_dir / "worker" / "stranger.key_secret"),
            b"stranger",
        )
        try:
            for r, wid in ((plain, "plain"), (stranger, "stranger")):
                r.send(ready(wid, 1, credit=1000))
                r.send(pp.Answer(1, b"\x01" * 40))  # a forged grant for a guessed id
            assert pp.Answer  # the forged answers must never reach a peer:
            await stranger.wait_event(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
            for i in range(20):
                gw.submit(plain_request(i))
            await until(lambda: len(gw.answers) == 20, what="answers")
            assert gw.codes() == [2001] * 20  # the good worker's traffic is untouched
            assert set(gw.core.workers) == {b"good"}
            assert good.handled == 20
            assert plain.received() == [] and stranger.received() == []
        finally:
            plain.close()
            stranger.close()


@aio
async def test_a_key_removed_on_reload_drops_its_worker_and_never_registers_again(
    tmp_path: Path, keys: Keys
) -> None:
    # SIGHUP re-reads pool.curve_workers (Gateway.reload -> PoolServer.reload_keys): an
    # operator revokes a compromised worker's key without restarting the gateway.
    gw = start_gateway("tcp://127.0.0.1:0", keys, tmp_path)
    good = make_worker(gw, keys, [TEST], "good")
    async with running(gw, good):
        await until(lambda: b"good" in gw.core.workers, what="the good worker registers")
        inside = Rogue(gw.endpoint, keys, keys.worker_secret("inside"), b"inside")
        again = late = None
        try:
            inside.send(ready("inside", 1, credit=64))
            await until(lambda: b"inside" in gw.core.workers, what="the inside worker registers")
            for i in range(40):  # some are placed on "inside", which never answers
                gw.submit(plain_request(i))
            await until(lambda: gw.core.workers[b"inside"].inflight, what="work for inside")
            (Path(keys.workers_dir) / "inside.key").unlink()
            assert gw.server.reload_keys(keys.workers_dir) == (1, 1)
            assert set(gw.core.workers) == {b"good"}
            # what "inside" held was placed again: every request answered, by "good"
            await until(lambda: len(gw.answers) == 40, what="answers")
            assert gw.codes() == [2001] * 40 and good.handled == 40
            await until(lambda: any(isinstance(m, pp.Goodbye) for m in inside.received()),
                        what="goodbye")  # fmt: skip
            # Its connection was admitted before and stays, but it cannot register on it...
            inside.send(ready("inside", 2, credit=64))
            await until(lambda: any(isinstance(m, pp.Goodbye) for m in inside.received()),
                        what="a second goodbye")  # fmt: skip
            assert set(gw.core.workers) == {b"good"}
            # ...and a new connection with that key fails CURVE's handshake.
            again = Rogue(gw.endpoint, keys, keys.worker_secret("inside"), b"inside-2")
            await again.wait_event(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
            # A key added and reloaded is admitted without a restart.
            sec.generate(str(keys.dir), ["late"])
            assert gw.server.reload_keys(keys.workers_dir) == (2, 0)
            late = Rogue(gw.endpoint, keys, keys.worker_secret("late"), b"late")
            late.send(ready("late", 1))
            await until(lambda: b"late" in gw.core.workers, what="the new key registers")
            # A directory that cannot be read keeps the running keys.
            with pytest.raises(sec.PoolKeyError, match="pool.curve_workers"):
                gw.server.reload_keys(str(tmp_path / "missing"))
            assert b"late" in gw.core.workers and b"good" in gw.core.workers
        finally:
            for r in (inside, again, late):
                if r is not None:
                    r.close()


def test_tcp_without_keys_refuses_to_start_naming_the_config_keys(tmp_path: Path) -> None:
    async def main() -> None:
        server = PoolServer(
            PoolCore(deadline=1, heartbeat_timeout=1),
            ["tcp://127.0.0.1:0"],
            deliver=lambda p, r: None,
            error_answer=lambda p, c, r: None,
        )
        with pytest.raises(sec.PoolKeyError, match=r"pool\.curve_secret_key"):
            server.start()
        server.close(goodbye=False)

    asyncio.run(main())
    rt = WorkerRuntime(gateways=["tcp://127.0.0.1:5555"], apps=[TEST])
    with pytest.raises(sec.PoolKeyError, match=r"worker\.curve_secret_key"):
        rt.client_keys()


def test_keys_generate_writes_private_secret_files(tmp_path: Path) -> None:
    written = sec.generate(str(tmp_path / "k"), ["w1"])
    secrets = [p for p in written if p.name.endswith(".key_secret")]
    assert {p.name for p in secrets} == {"gateway.key_secret", "w1.key_secret"}
    for p in secrets:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert stat.S_IMODE(p.parent.stat().st_mode) == 0o700
    # the gateway's side holds no worker secret, the worker's side no gateway secret
    assert not list((tmp_path / "k" / "gateway").rglob("w1.key_secret"))
    assert not list((tmp_path / "k" / "worker").rglob("gateway.key_secret"))
    assert sec.generate(str(tmp_path / "k"), ["w1"]) == []  # re-running keeps the keys


@aio
async def test_ipc_pool_socket_is_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    gw = start_gateway(f"ipc://{data}/gateway.ipc", None, tmp_path)
    try:
        assert stat.S_IMODE(os.stat(data / "gateway.ipc").st_mode) == 0o600
        assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    finally:
        gw.server.close(goodbye=False)


# Identity --------------------------------------------------------------------------------


@aio
async def test_admitted_key_cannot_take_over_a_live_identity(tmp_path: Path, keys: Keys) -> None:
    # Slow heartbeats: w1 stays registered for a while after its connection is gone.
    gw = start_gateway("tcp://127.0.0.1:0", keys, tmp_path, hb=(5.0, 30.0))
    victim = Rogue(gw.endpoint, keys, keys.worker_secret("good"), b"w1")  # the real "w1"
    thief = None
    try:
        victim.send(ready("w1", 1))
        await until(lambda: b"w1" in gw.core.workers, what="w1 registers")
        owner = gw.core.workers[b"w1"].owner
        assert owner  # bound to the key it registered with
        # While w1 is connected, a second connection under its routing id does not take
        # it over (no ROUTER_HANDOVER): w1's requests still go to w1.
        thief = Rogue(gw.endpoint, keys, keys.worker_secret("inside"), b"w1")
        await thief.wait_event(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        await asyncio.sleep(0.2)
        gw.submit(plain_request(1))
        await until(lambda: any(isinstance(m, pp.Request) for m in victim.received()),
                    what="the request reaches the real w1")  # fmt: skip
        assert gw.core.workers[b"w1"].gen == 1
        assert not any(isinstance(m, pp.Request) for m in thief.received())
        # w1's connection drops; before the gateway notices, the thief connects under its
        # routing id and registers: refused, not adopted.
        thief.close()
        victim.close()
        victim = None
        await asyncio.sleep(0.1)
        thief = Rogue(gw.endpoint, keys, keys.worker_secret("inside"), b"w1")
        await thief.wait_event(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        thief.send(ready("w1", 3))
        await until(lambda: gw.core.counters.identity_refused >= 1, what="refusal")
        w = gw.core.workers.get(b"w1")
        assert w is None or (w.owner == owner and w.gen == 1)  # never adopted
        await until(
            lambda: any(isinstance(m, pp.Goodbye) for m in thief.received()), what="goodbye"
        )
    finally:
        if victim is not None:
            victim.close()
        if thief is not None:
            thief.close()
        gw.server.close(goodbye=False)


# Worker-initiated requests ---------------------------------------------------------------


@aio
async def test_worker_may_send_only_server_initiated_commands(tmp_path: Path, keys: Keys) -> None:
    gw = start_gateway("tcp://127.0.0.1:0", keys, tmp_path)
    r = Rogue(gw.endpoint, keys, keys.worker_secret("inside"), b"inside")
    try:
        r.send(ready("inside", 1))
        await until(lambda: b"inside" in gw.core.workers, what="registration")

        def req(code: int, app: int = 4, flags: int = 0xC0) -> bytes:
            m = Message(code=code, app_id=app, flags=flags, hop_by_hop=1, end_to_end=1)
            m.set("Session-Id", "ocs;1")
            m.set("Origin-Host", "gw.test")
            m.set("Origin-Realm", "test")
            m.set("Destination-Realm", "test")
            return m.encode()

        r.send(
            pp.OutRequest(1, req(272)),  # a CCR, as if the gateway were a client
            pp.OutRequest(2, req(257, app=0)),  # a CER
            pp.OutRequest(3, req(258, flags=0x40)),  # a RAR "answer"
            pp.OutRequest(4, b"\x01\x00\x00\x10garbage!"),
            pp.OutRequest(5, req(258)),  # RAR: allowed
            pp.OutRequest(6, req(274)),  # ASR: allowed
            pp.OutRequest(7, req(258, app=99)),  # RAR of an application not configured
        )
        got: dict[int, pp.OutAnswer] = {}

        def collect() -> bool:
            for m in r.received():
                if isinstance(m, pp.OutAnswer):
                    got[m.id] = m
            return len(got) == 7

        gw.server.out_apps = frozenset({4, TEST_APP_ID})
        await until(collect, what="seven out answers")
        assert {i for i, m in got.items() if m.error == 0} == {5, 6}
        assert all(got[i].error == 3001 for i in (1, 2, 3, 4, 7))
        assert sorted(gw.out) == [258, 274]  # nothing else reached a peer
        assert gw.server.out_refused == 5
    finally:
        r.close()
        gw.server.close(goodbye=False)


# Size ------------------------------------------------------------------------------------


@aio
async def test_oversize_frame_drops_the_connection(tmp_path: Path, keys: Keys) -> None:
    gw = start_gateway("tcp://127.0.0.1:0", keys, tmp_path)
    good = make_worker(gw, keys, [TEST], "good")
    async with running(gw, good):
        await until(lambda: b"good" in gw.core.workers, what="the good worker registers")
        r = Rogue(gw.endpoint, keys, keys.worker_secret("inside"), b"inside")
        try:
            await r.wait_event(zmq.EVENT_HANDSHAKE_SUCCEEDED)
            huge = pp.Answer(1, b"\0" * (8 * sec.frame_limit(MAX_LEN)))
            r.send(ready("inside", 1), huge)  # one frame: valid, but far too big
            await r.wait_event(zmq.EVENT_DISCONNECTED)
            await asyncio.sleep(0.2)
            assert b"inside" not in gw.core.workers  # the frame was never read
            for i in range(10):
                gw.submit(plain_request(i))
            await until(lambda: len(gw.answers) == 10, what="answers")
            assert gw.codes() == [2001] * 10
        finally:
            r.close()


@aio
async def test_worker_drops_an_oversize_frame_from_its_gateway(tmp_path: Path) -> None:
    ep = f"ipc://{tmp_path}/fake.ipc"
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(ep)
    gw = Gw(server=None, core=None, endpoint=ep)  # type: ignore[arg-type]
    rt = make_worker(gw, None, [TEST], "w")
    stop = asyncio.Event()
    task = asyncio.ensure_future(rt.run(stop, drain_timeout=0.5))
    try:
        await until(lambda: router.poll(0), what="the worker's Ready")
        ident, frame = router.recv_multipart()
        gen = next(m.gen for m in pp.decode(frame) if isinstance(m, pp.Ready))
        big = [pp.Request(1, "p", 1, TEST_APP_ID, TEST_CMD, time.time() + 5, plain_request(1)),
               pp.Request(2, "p", 2, TEST_APP_ID, TEST_CMD, time.time() + 5, b"\0" * 2 * MAX_LEN)]  # fmt: skip
        frame = pp.encode([pp.Heartbeat(time.time(), gen=gen), *big])
        assert len(frame) > sec.frame_limit(MAX_LEN)
        router.send_multipart([ident, frame])
        await asyncio.sleep(0.5)
        assert rt.links[0].requests == 0  # never read
        # the link comes back and serves a frame of the right size
        small = pp.encode([pp.Heartbeat(time.time(), gen=gen), big[0]])
        end = time.monotonic() + 8
        while rt.links[0].requests == 0 and time.monotonic() < end:
            router.send_multipart([ident, small])  # lost until the worker is back
            await asyncio.sleep(0.2)
            while router.poll(0):  # a gateway reads all the time
                router.recv_multipart()
        assert rt.links[0].requests >= 1
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        router.close(linger=0)
        ctx.term()


# Status ----------------------------------------------------------------------------------


@aio
async def test_status_is_not_served_on_the_worker_endpoint(tmp_path: Path, keys: Keys) -> None:
    from chargegw.gateway.status_cli import query

    gw = start_gateway("tcp://127.0.0.1:0", keys, tmp_path)
    r = Rogue(gw.endpoint, keys, keys.worker_secret("inside"), b"inside")
    try:
        r.send(ready("inside", 1), pp.StatusQuery())
        await until(lambda: b"inside" in gw.core.workers, what="registration")
        r.send(pp.StatusQuery())
        await asyncio.sleep(0.3)
        assert not any(isinstance(m, pp.StatusReply) for m in r.received())
        path = tmp_path / "run" / "status.ipc"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        doc = await asyncio.get_running_loop().run_in_executor(None, query, f"ipc://{path}", 3.0)
        assert [w["id"] for w in doc["pool"]["workers"]] == ["inside"]
    finally:
        r.close()
        gw.server.close(goodbye=False)


# Credit ----------------------------------------------------------------------------------


class AgainSocket:
    """Wraps a worker's DEALER: the next `n` sends raise zmq.Again (a full pipe)."""

    def __init__(self, sock: zmq.Socket) -> None:
        self._sock = sock
        self.fail = 0
        self.failed = 0

    def send(self, data: bytes, flags: int = 0) -> None:
        if self.fail > 0:
            self.fail -= 1
            self.failed += 1
            raise zmq.Again()
        self._sock.send(data, flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


@aio
async def test_zmq_again_loses_no_credit_and_free_reconciles(tmp_path: Path) -> None:
    gw = start_gateway(f"ipc://{tmp_path}/gw.ipc", None, tmp_path, deadline=3.0)
    rt = make_worker(gw, None, [TEST], "w", credit=16)
    async with running(gw, rt):
        await until(lambda: b"w" in gw.core.workers, what="registration")
        link = rt.links[0]
        wrapped = AgainSocket(link.sock)
        link.sock = wrapped  # type: ignore[assignment]
        for round_ in range(4):
            wrapped.fail = 3  # the next answers hit a full pipe
            for i in range(16):
                gw.submit(plain_request(round_ * 16 + i))
            await until(lambda n=(round_ + 1) * 16: len(gw.answers) == n, what="answers")
        assert wrapped.failed == 12
        assert gw.codes() == [2001] * 64  # no 3002 for a lost answer, no 3004 for lost credit
        w = gw.core.workers[b"w"]
        assert w.available == w.credit == 16 and not w.inflight
        checked = gw.core.counters.credit_checked
        await until(lambda: gw.core.counters.credit_checked >= checked + 3, what="heartbeats")
        assert gw.core.counters.credit_mismatch == 0


@aio
async def test_heartbeat_free_that_does_not_reconcile_resets_the_worker(tmp_path: Path) -> None:
    gw = start_gateway(f"ipc://{tmp_path}/gw.ipc", None, tmp_path)
    r = Rogue(gw.endpoint, None, None, b"liar")
    try:
        r.send(ready("liar", 7, credit=4))
        await until(lambda: b"liar" in gw.core.workers, what="registration")
        r.send(pp.Heartbeat(time.time(), free=400, gen=7, received=0))  # 396 slots invented
        r.send(pp.Heartbeat(time.time(), free=400, gen=7, received=0))
        await until(lambda: b"liar" not in gw.core.workers, what="the liar dropped")
        assert gw.core.counters.credit_mismatch == 2
        await until(lambda: any(isinstance(m, pp.Reset) for m in r.received()), what="Reset")
    finally:
        r.close()
        gw.server.close(goodbye=False)


# Expired requests (money) ----------------------------------------------------------------


def _gy(rt: WorkerRuntime) -> Any:
    return rt.apps[4].app


def _ledger_ok(rt: WorkerRuntime) -> None:
    app = _gy(rt)
    rep = ledger_check(app.store, app.rater.tariff_by_key)
    assert rep.ok, rep.problems


@aio
async def test_expired_requests_are_dropped_unapplied(tmp_path: Path) -> None:
    gw = start_gateway(f"ipc://{tmp_path}/gw.ipc", None, tmp_path)
    data = tmp_path / "store"
    block = AppSpec(TEST_APP_ID, "chargegw.workers.testapp:BlockApp", {"delay": 0.4})
    rt = make_worker(gw, None, [GY, block], "w", credit=32, data_dir=str(data))
    async with running(gw, rt):
        await until(lambda: b"w" in gw.core.workers, what="registration")
        # 1. Past its deadline when it arrives (as after a stall): dropped on receipt.
        gw.core.deadline = -0.5
        for i in range(5):
            gw.submit(ccr_i(i, f"467000000100{i}"))
        await until(lambda: len(gw.answers) == 5, what="3002s")
        # 2. In time on arrival, past it at dispatch: a blocking request ahead of it in the
        # same batch uses up its time.
        gw.core.deadline = 0.2
        gw.submit(plain_request(50))
        gw.submit(ccr_i(9, "4670000001009"))
        await until(lambda: len(gw.answers) == 7, what="3002s")
        await until(lambda: rt.links[0].expired == 6, what="the worker drops six")
        assert all(code == 3002 for _, code in gw.errors)
        store = _gy(rt).store
        for n in [*range(5), 9]:
            acct = store.get_account(f"467000000100{n}")
            assert acct is None or acct.account.reserved == 0  # no credit reserved for Tcc
        w = gw.core.workers[b"w"]
        await until(lambda: w.available == w.credit, what="every slot back")
        # The well-behaved traffic: in time, applied.
        gw.core.deadline = 4.0
        gw.submit(ccr_i(20, "4670000001020"))
        await until(lambda: 1020 in gw.answers, what="the CCR-I answered")
        assert int(gw.answers[1020].get("Result-Code")) == 2001
        assert store.get_account("4670000001020").account.reserved > 0
        _ledger_ok(rt)
        assert gw.core.counters.credit_mismatch == 0


def test_keys_cli_generates_and_a_missing_key_file_is_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    cli = [sys.executable, "-m", "chargegw.cli"]
    out = subprocess.run(
        [*cli, "keys", "generate", "--dir", str(tmp_path / "k")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "curve_secret_key" in out.stdout
    secret = tmp_path / "k" / "gateway" / "gateway.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    with pytest.raises(sec.PoolKeyError, match=r"worker\.curve_server_key.*nope"):
        sec.client_keys(str(tmp_path / "k" / "worker" / "worker.key_secret"), "nope")
