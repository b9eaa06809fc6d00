"""The front end with the real Node, in one event loop: a Diameter client Node (or a raw
TCP peer) talks to the Gateway, whose workers run in-process over ipc://."""

from __future__ import annotations

import asyncio
import functools
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

from chargegw.codec import Avp, Message
from chargegw.config import Config, load_config
from chargegw.gateway.frontend import Gateway, build_node_config
from chargegw.peer.config import NodeConfig, PeerConfig, VendorApp
from chargegw.peer.node import Node
from chargegw.peer.testing import RawPeer, make_ccr, result_code
from chargegw.workers.runtime import WorkerRuntime
from chargegw.workers.testapp import TEST_APP_ID, TEST_AVP, TEST_CMD, TEST_VENDOR

pytestmark = pytest.mark.timeout(60)
GW = "gw.localdomain"
CLIENT = "client.localdomain"


def aio(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        return asyncio.run(asyncio.wait_for(fn(*args, **kw), 45))

    return wrapper


def config(tmp_path: Path, apps: list[dict[str, Any]] | None = None, **pool: Any) -> Config:
    doc: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "listen": [{"address": "127.0.0.1", "port": 0}],
        "pool": {"heartbeat_interval": 0.1, "heartbeat_timeout": 0.5, **pool},
        "worker": {"heartbeat_interval": 0.1, "heartbeat_timeout": 0.5},
        "applications": apps
        or [
            {
                "app_id": TEST_APP_ID,
                "handler": "chargegw.workers.testapp:TestApp",
                "vendor_id": TEST_VENDOR,
            }
        ],
    }
    return msgspec.convert(doc, Config)


def test_req(i: int = 1, sid: str | None = None) -> Message:
    m = Message(code=TEST_CMD, app_id=TEST_APP_ID, flags=0xC0)
    m.set("Session-Id", sid or f"{CLIENT};x;{i}")
    m.set("Origin-Host", CLIENT)
    m.set("Origin-Realm", "localdomain")
    m.set("Destination-Realm", "localdomain")
    m.add(Avp(TEST_AVP, i.to_bytes(4, "big"), vendor=TEST_VENDOR, flags=0x80))
    return m


test_req.__test__ = False  # type: ignore[attr-defined]


@asynccontextmanager
async def running(
    cfg: Config, *, workers: int = 1, client_handler: Any = None
) -> AsyncIterator[tuple[Gateway, Node, list[WorkerRuntime]]]:
    gw = Gateway(cfg)
    await gw.start()
    port = gw.listen_addresses()[0][1]
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []
    rts: list[WorkerRuntime] = []
    for i in range(workers):
        rt = WorkerRuntime.from_config(cfg, worker_id=f"w{i}")
        ev = asyncio.Event()
        stops.append((ev, asyncio.ensure_future(rt.run(ev, drain_timeout=2))))
        rts.append(rt)
    client = Node(
        NodeConfig(
            origin_host=CLIENT,
            origin_realm="localdomain",
            auth_apps=[4],
            vendor_specific_apps=[VendorApp(TEST_VENDOR, TEST_APP_ID)],
            peers=[PeerConfig(GW, port=port, realm="localdomain")],
        )
    )
    if client_handler is not None:
        client.add_handler(TEST_APP_ID, client_handler)
    await client.start()
    try:
        await client.wait_open(GW, timeout=10)
        for _ in range(200):
            if len(gw.core.workers) == workers:
                break
            await asyncio.sleep(0.02)
        assert len(gw.core.workers) == workers
        yield gw, client, rts
    finally:
        await client.stop(timeout=1)
        for ev, _ in stops:
            ev.set()
        await asyncio.gather(*(t for _, t in stops), return_exceptions=True)
        await gw.stop(drain_timeout=1)


@aio
async def test_test_app_through_node_and_cea_advertises_it(tmp_path: Path) -> None:
    async with running(config(tmp_path)) as (gw, client, _):
        info = client.peers[GW]
        assert TEST_APP_ID in info.apps
        answers = await asyncio.gather(
            *(client.request(test_req(i), timeout=5) for i in range(100))
        )
        for i, a in enumerate(answers):
            assert result_code(a) == 2001
            assert a.find_code(TEST_AVP, TEST_VENDOR)[0].data == i.to_bytes(4, "big")
        assert gw.core.counters.answered == 100


def test_node_config_advertises_configured_apps() -> None:
    nc = build_node_config(load_config(None, env={}))
    assert set(nc.auth_apps) == {4}
    assert nc.acct_apps == [3]
    assert {(v.vendor_id, v.app_id) for v in nc.vendor_apps()} == {
        (10415, 16777302),
        (999999, 16777215),
    }
    assert set(nc.supported_vendors) == {10415, 999999}
    assert nc.origin_host == "gw.localdomain"


@aio
async def test_unknown_application_gets_3007_and_no_worker_gets_3002(tmp_path: Path) -> None:
    async with running(config(tmp_path)) as (gw, client, rts):
        ccr = make_ccr(CLIENT, "localdomain", "localdomain")
        ans = await client.request(ccr, peer=GW, timeout=5)
        assert result_code(ans) == 3007 and ans.is_error
        for rt in rts:  # take the worker away: the app is configured but nobody serves it
            for link in rt.links:
                link.ls.close(linger=0)  # type: ignore[union-attr]
                link.ls = None
            rt._tick_handle.cancel()  # type: ignore[union-attr]
        gw.pool.drop_worker(b"w0", "test")
        ans = await client.request(test_req(), timeout=5)
        assert result_code(ans) == 3002 and ans.is_error
        assert gw.core.counters.no_worker == 1


@aio
async def test_all_workers_full_answers_3004_at_once(tmp_path: Path) -> None:
    apps = [
        {
            "app_id": TEST_APP_ID,
            "handler": "chargegw.workers.testapp:SlowApp",
            "vendor_id": TEST_VENDOR,
            "config": {"delay": 0.5},
        }
    ]
    cfg = config(tmp_path, apps)
    cfg.worker.credit = 4
    async with running(cfg) as (gw, client, _):
        tasks = [asyncio.ensure_future(client.request(test_req(i), timeout=5)) for i in range(10)]
        # Well before the handler's 0.5 s: the six that found no slot are answered at once.
        done, _ = await asyncio.wait(tasks, timeout=0.3)
        busy = [t.result() for t in done]
        assert len(busy) == 6 and all(result_code(a) == 3004 and a.is_error for a in busy)
        rest = await asyncio.gather(*(t for t in tasks if t not in done))
        assert [result_code(a) for a in rest] == [2001] * 4
        assert gw.core.counters.shed_busy == 6


@aio
async def test_malformed_request_is_answered_by_front_end_and_never_reaches_a_worker(
    tmp_path: Path,
) -> None:
    async with running(config(tmp_path)) as (gw, _client, rts):
        port = gw.listen_addresses()[0][1]
        raw = await RawPeer.connect("127.0.0.1", port)
        try:
            cea = await raw.handshake(
                "raw.localdomain", "localdomain", vendor_apps=[(TEST_VENDOR, TEST_APP_ID)]
            )
            assert result_code(cea) == 2001
            good = test_req(5).encode()
            # An AVP whose length runs past the end of the message (RFC 6733 7.5: 5014).
            bad = bytearray(good)
            first_len = struct.unpack_from("!I", bad, 24)[0] & 0xFFFFFF
            struct.pack_into("!I", bad, 24, (0x40 << 24) | (first_len + 4000))
            await raw.send(bytes(bad))
            ans = await raw.recv(timeout=5)
            assert ans is not None and not ans.is_request
            assert result_code(ans) in (5014, 5009, 5004, 3009)
            await raw.send(good)
            ok = await raw.recv(timeout=5)
            assert ok is not None and result_code(ok) == 2001
        finally:
            raw.close()
        assert gw.core.counters.placed == 1
        assert sum(rt.handled for rt in rts) == 1


@aio
async def test_worker_initiated_request_reaches_the_peer(tmp_path: Path) -> None:
    apps = [
        {
            "app_id": TEST_APP_ID,
            "handler": "chargegw.workers.testapp:AskPeerApp",
            "vendor_id": TEST_VENDOR,
        }
    ]
    seen: list[int] = []

    def client_handler(msg: Message, peer: Any) -> Message:
        seen.append(msg.hop_by_hop)
        return msg.answer(2001, origin_host=CLIENT, origin_realm="localdomain")

    # test_app's request is the user application's declared server-initiated command.
    cfg = config(tmp_path, apps, out_commands=[TEST_CMD])
    async with running(cfg, client_handler=client_handler) as (gw, client, _):
        ans = await client.request(test_req(), timeout=5)
        assert result_code(ans) == 2001
        assert len(seen) == 1
        assert gw.pool.out_requests == 1


@aio
async def test_worker_initiated_request_of_an_undeclared_command_never_reaches_a_peer(
    tmp_path: Path,
) -> None:
    apps = [
        {
            "app_id": TEST_APP_ID,
            "handler": "chargegw.workers.testapp:AskPeerApp",
            "vendor_id": TEST_VENDOR,
        }
    ]
    seen: list[int] = []

    def client_handler(msg: Message, peer: Any) -> Message:
        seen.append(msg.hop_by_hop)
        return msg.answer(2001, origin_host=CLIENT, origin_realm="localdomain")

    async with running(config(tmp_path, apps), client_handler=client_handler) as (gw, client, _):
        ans = await client.request(test_req(), timeout=5)
        assert result_code(ans) == 3001  # the SendError's code, as AskPeerApp reports it
        assert seen == [] and gw.pool.out_refused == 1


@aio
async def test_worker_initiated_request_by_realm(tmp_path: Path) -> None:
    apps = [
        {
            "app_id": TEST_APP_ID,
            "handler": "chargegw.workers.testapp:AskPeerApp",
            "vendor_id": TEST_VENDOR,
            "config": {"by_realm": True},
        }
    ]

    def client_handler(msg: Message, peer: Any) -> Message:
        return msg.answer(2002, origin_host=CLIENT, origin_realm="localdomain")

    cfg = config(tmp_path, apps, out_commands=[TEST_CMD])
    async with running(cfg, client_handler=client_handler) as (_gw, client, _):
        ans = await client.request(test_req(), timeout=5)
        assert result_code(ans) == 2002  # the peer's answer travelled back to the application


@aio
async def test_graceful_stop_answers_in_flight_before_dpr(tmp_path: Path) -> None:
    apps = [
        {
            "app_id": TEST_APP_ID,
            "handler": "chargegw.workers.testapp:SlowApp",
            "vendor_id": TEST_VENDOR,
            "config": {"delay": 0.4},
        }
    ]
    cfg = config(tmp_path, apps)
    gw = Gateway(cfg)
    await gw.start()
    port = gw.listen_addresses()[0][1]
    rt = WorkerRuntime.from_config(cfg, worker_id="w0")
    ev = asyncio.Event()
    wt = asyncio.ensure_future(rt.run(ev, drain_timeout=2))
    raw = await RawPeer.connect("127.0.0.1", port)
    try:
        await raw.handshake(
            "raw.localdomain", "localdomain", vendor_apps=[(TEST_VENDOR, TEST_APP_ID)]
        )
        for _ in range(100):
            if gw.core.workers:
                break
            await asyncio.sleep(0.02)
        for i in range(5):
            m = test_req(i)
            m.hop_by_hop = 100 + i
            m.end_to_end = 100 + i
            await raw.send(m)
        await asyncio.sleep(0.1)
        stopping = asyncio.ensure_future(gw.stop(drain_timeout=3))
        got: list[Message] = []
        while True:
            msg = await raw.recv(timeout=5)
            assert msg is not None
            if msg.code == 282 and msg.is_request:  # DPR
                await raw.send(
                    msg.answer(2001, origin_host="raw.localdomain", origin_realm="localdomain")
                )
                break
            got.append(msg)
        assert sorted(m.hop_by_hop for m in got) == [100, 101, 102, 103, 104]
        assert all(result_code(m) == 2001 for m in got)
        await stopping
    finally:
        raw.close()
        ev.set()
        await asyncio.gather(wt, return_exceptions=True)


@aio
async def test_reload_adds_a_peer_without_dropping_connections(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    async with running(cfg) as (gw, client, _):
        doc = msgspec.to_builtins(cfg)
        doc["peers"] = [{"name": "new.localdomain", "realm": "localdomain"}]
        doc["diameter"]["allow"] = [{"host": "*.localdomain"}]
        gw.reload(msgspec.convert(doc, Config))
        assert "new.localdomain" in [p.name for p in gw.node.config.peers]
        assert gw.node.config.allow is not None
        ans = await client.request(test_req(), timeout=5)  # the old connection still works
        assert result_code(ans) == 2001
        assert client.peers[GW].is_open


def test_one_forwarding_mode() -> None:
    """The front end forwards the raw request only: the "decoded" mode and its config key
    (pool.forward) are gone, so a config that still sets it is refused by name."""
    from chargegw.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="forward"):
        load_config(None, env={"CHARGEGW_POOL__FORWARD": "decoded"})
    assert not hasattr(Gateway, "_handle_decoded")


def test_session_id_affinity_key() -> None:
    """The affinity key the front end submits: the raw Session-Id octets of the codec's
    peek, as a decode would read them; absent, the key is empty."""
    from chargegw.codec import peek

    raw = test_req(1, sid="abc;1").encode()
    assert peek(raw).session_id == Message.decode(raw).raw_value("Session-Id") == b"abc;1"
    no_sid = Message(code=TEST_CMD, app_id=TEST_APP_ID, flags=0xC0)
    no_sid.set("Origin-Host", CLIENT)
    assert peek(no_sid.encode()).session_id is None


def test_front_end_forwards_from_the_nodes_peek_and_parses_a_request_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9: the deframer finds the length, the peek reads header and routing values in
    one pass, and nothing else on the front end parses the request (the Gateway's handler
    table, driven in memory without sockets)."""
    from test_peer_raw import parse_counts

    from chargegw.peer.testing import MemoryNode, PeerPair

    gw = Gateway(config(tmp_path))
    submitted: list[dict[str, Any]] = []
    monkeypatch.setattr(gw.pool, "offer", lambda **kw: submitted.append(kw))
    front = MemoryNode(gw.node.config)
    front.ctx.handlers = gw.node.ctx.handlers
    front.ctx.handler_apps = gw.node.ctx.handler_apps
    client = MemoryNode(
        NodeConfig(
            origin_host=CLIENT,
            origin_realm="localdomain",
            vendor_specific_apps=[VendorApp(TEST_VENDOR, TEST_APP_ID)],
            peers=[PeerConfig(GW, port=3868, realm="localdomain")],
        )
    )
    pair = PeerPair(client, front).connect()
    assert pair.b_peer.usable
    req = test_req(7, sid="client;peek;7")
    client.request(req, pair.now, peer=GW)
    sent = b"".join(pair.la.data_to_send())
    m = pair.lb.machine
    with parse_counts() as n:
        front.handle(m, m.receive_data(pair.lb, sent, pair.now), pair.now)
    assert n == {"peek": 1, "decode": 0, "from_peek": 0, "scan_into": 0}
    assert submitted == [
        {
            "peer": CLIENT,
            "hbh": req.hop_by_hop,
            "app": TEST_APP_ID,
            "cmd": TEST_CMD,
            "session_id": b"client;peek;7",
            "raw": sent,
            "shard": -1,  # the test application is not sharded
            "route": 0,  # nor are its session routes remembered
        }
    ]
    assert pair.lb.data_to_send() == []  # forwarded: the worker answers, not the Node
    gw.pool.close(goodbye=False)


def test_a_heartbeat_timeout_not_below_the_deadline_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A silent worker's requests are resent only once it is declared gone: with
    heartbeat_timeout >= deadline they would all reach their deadline (3002) first."""
    with caplog.at_level("WARNING", logger="chargegw"):
        Gateway(config(tmp_path, deadline=4.0, heartbeat_timeout=5.0))
    assert any("heartbeat_timeout" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="chargegw"):
        Gateway(config(tmp_path / "ok", deadline=4.0, heartbeat_timeout=3.0))
    assert not any("heartbeat_timeout" in r.getMessage() for r in caplog.records)
