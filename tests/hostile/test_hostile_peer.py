"""Hostile peers against the Diameter peer layer, on real loopback sockets.

Who may speak (allowlist, source addresses, TLS certificates naming the Origin-Host), how
long an unauthenticated connection may sit (TLS handshake, CER timer), how much memory a
peer can make us hold (connections before CER, frame size, framing copies, the duplicate
cache), and that the gateway's own transient errors are not replayed to retransmissions.
Where it matters a well-behaved peer works beside the hostile one. No money moves in these
cases: the handlers are in-process test handlers, there is no ledger to reconcile.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import ipaddress
import ssl
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
import pytest

from chargegw.codec import Avp, FrameReader, Message
from chargegw.codec.constants import CMD_CCR
from chargegw.config import Config
from chargegw.gateway.frontend import Gateway, build_node_config
from chargegw.peer import ListenConfig, Node, NodeConfig, TlsConfig
from chargegw.peer.config import PeerConfig, VendorApp
from chargegw.peer.dupcache import DuplicateCache
from chargegw.peer.testing import RawPeer, make_ccr, make_cer, result_code
from chargegw.workers.runtime import WorkerRuntime
from chargegw.workers.testapp import TEST_APP_ID, TEST_AVP, TEST_CMD, TEST_VENDOR

pytestmark = pytest.mark.timeout(60)

REALM = "test.example"
SERVER = "server.test.example"
GOOD = "good.test.example"
EVIL = "evil.test.example"


def aio(fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        return asyncio.run(asyncio.wait_for(fn(*args, **kw), 45))

    return wrapper


def cca(req: Message, _peer: Any) -> Message:
    return req.answer(  # type: ignore[attr-defined,no-any-return]
        2001,
        origin_host=SERVER,
        origin_realm=REALM,
        auth_application_id=4,
        cc_request_type=req.cc_request_type,  # type: ignore[attr-defined]
        cc_request_number=req.cc_request_number,  # type: ignore[attr-defined]
    )


async def serve(cfg: NodeConfig) -> tuple[Node, int]:
    node = Node(cfg)
    node.add_handler(4, cca, CMD_CCR)  # type: ignore[arg-type]
    await node.start()
    return node, node.listen_addresses[0][2]


async def good_peer_works(port: int, name: str = GOOD, local: str = "127.0.0.1") -> None:
    """A well-behaved peer: CER -> 2001, CCR -> 2001."""
    p = await RawPeer.connect("127.0.0.1", port, local_addr=(local, 0))
    try:
        assert result_code(await p.handshake(name, REALM)) == 2001
        await p.send(make_ccr(name, REALM, REALM))
        ans = await p.recv_until(CMD_CCR, request=False)
        assert ans is not None and result_code(ans) == 2001
    finally:
        p.close()


async def refused_3010(port: int, name: str, local: str = "127.0.0.1", **kw: Any) -> None:
    p = await RawPeer.connect("127.0.0.1", port, local_addr=(local, 0), **kw)
    try:
        cea = await p.handshake(name, REALM)
        assert result_code(cea) == 3010 and cea.is_error
        assert await p.closed(3.0)
    finally:
        p.close()


def gateway_config(**doc: Any) -> Config:
    return msgspec.convert(doc, Config)


def peer_gateway_config(**doc: Any) -> Config:
    """A gateway config whose identity matches the test peers' realm."""
    return gateway_config(identity={"origin_host": SERVER, "origin_realm": REALM}, **doc)


# -- who is admitted ----------------------------------------------------------------------------


@aio
async def test_unknown_peer_gets_3010_when_a_listener_faces_the_network() -> None:
    # What build_node_config makes of a deployment listening on a public address with one
    # configured peer and no allow rules; the Node then listens on loopback for the test.
    cfg = build_node_config(
        peer_gateway_config(
            listen=[{"address": "192.0.2.10", "port": 3868}],
            peers=[{"name": GOOD, "source": ["127.0.0.0/8"]}],
        )
    )
    cfg.listen = [ListenConfig(port=0)]
    cfg.auth_apps = [4]
    node, port = await serve(cfg)
    try:
        await refused_3010(port, EVIL)
        await good_peer_works(port)
        assert EVIL not in node.peers
    finally:
        await node.stop(timeout=1)


@aio
async def test_loopback_only_default_stays_open_on_loopback() -> None:
    cfg = build_node_config(peer_gateway_config(listen=[{"address": "127.0.0.1", "port": 0}]))
    cfg.auth_apps = [4]
    node, port = await serve(cfg)
    try:
        await good_peer_works(port, "anyone.test.example")
    finally:
        await node.stop(timeout=1)


@aio
async def test_configured_name_from_another_source_address_is_refused() -> None:
    # `address` doubles as the source binding when `source` is not given.
    cfg = build_node_config(
        peer_gateway_config(
            listen=[{"address": "127.0.0.1", "port": 0}],
            peers=[{"name": GOOD, "address": "127.0.0.2"}],
        )
    )
    cfg.auth_apps = [4]
    node, port = await serve(cfg)
    try:
        await refused_3010(port, GOOD, local="127.0.0.3")  # claims GOOD from elsewhere
        assert GOOD not in node.peers or not node.peers[GOOD].is_open
        await good_peer_works(port, GOOD, local="127.0.0.2")  # the real one
        assert node.stats["rejected_cer"] == 1
    finally:
        await node.stop(timeout=1)


# -- TLS ----------------------------------------------------------------------------------------


def _pki(tmp: Path) -> dict[str, Path]:
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("hostile test CA"))
        .issuer_name(name("hostile test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    out = {"ca": tmp / "ca.pem"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for host in (SERVER, GOOD):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(host))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        out[host + ".pem"] = tmp / f"{host}.pem"
        out[host + ".key"] = tmp / f"{host}.key"
        out[host + ".pem"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[host + ".key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return out


def _tls_server_cfg(pki: dict[str, Path], **kw: Any) -> NodeConfig:
    tls = TlsConfig(
        certfile=str(pki[SERVER + ".pem"]),
        keyfile=str(pki[SERVER + ".key"]),
        cafile=str(pki["ca"]),
    )
    return NodeConfig(
        origin_host=SERVER,
        origin_realm=REALM,
        auth_apps=[4],
        listen=[ListenConfig(port=0, transport="tls", tls=tls)],
        **kw,
    )


def _client_ctx(pki: dict[str, Path]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(pki["ca"]))
    ctx.load_cert_chain(str(pki[GOOD + ".pem"]), str(pki[GOOD + ".key"]))
    return ctx


@aio
async def test_tls_certificate_must_name_the_cer_origin_host(tmp_path: Path) -> None:
    pki = _pki(tmp_path)
    node, port = await serve(_tls_server_cfg(pki))
    try:
        # A valid certificate for GOOD, signed by the trusted CA, claiming to be EVIL.
        p = await RawPeer.connect("127.0.0.1", port, ssl=_client_ctx(pki), server_hostname=SERVER)
        try:
            cea = await p.handshake(EVIL, REALM)
            assert result_code(cea) == 3010
            assert await p.closed(3.0)
        finally:
            p.close()
        assert EVIL not in node.peers
        # The same certificate under its own name is served.
        p = await RawPeer.connect("127.0.0.1", port, ssl=_client_ctx(pki), server_hostname=SERVER)
        try:
            assert result_code(await p.handshake(GOOD, REALM)) == 2001
            await p.send(make_ccr(GOOD, REALM, REALM))
            ans = await p.recv_until(CMD_CCR, request=False)
            assert ans is not None and result_code(ans) == 2001
        finally:
            p.close()
    finally:
        await node.stop(timeout=1)


@aio
async def test_tls_verify_peer_without_a_ca_refuses_to_start(tmp_path: Path) -> None:
    pki = _pki(tmp_path)
    cfg = _tls_server_cfg(pki)
    assert cfg.listen[0].tls is not None
    cfg.listen[0].tls.cafile = None  # would fall back to the system store
    with pytest.raises((ValueError, OSError), match="CA file"):  # OSError names the listener
        await Node(cfg).start()
    client = Node(
        NodeConfig(
            origin_host=GOOD,
            origin_realm=REALM,
            auth_apps=[4],
            reconnect_min=30.0,
            peers=[PeerConfig(SERVER, port=1, transport="tls", tls=TlsConfig())],
        )
    )
    await client.start()
    try:
        await asyncio.sleep(0.2)  # its connect attempt fails on the missing CA, not on TLS
        assert not client.peers[SERVER].is_open
    finally:
        await client.stop(timeout=1)


@aio
@pytest.mark.parametrize("which", ["handshake", "cer"])
async def test_silent_connection_to_a_tls_listener_is_closed_quickly(
    tmp_path: Path, which: str
) -> None:
    pki = _pki(tmp_path)
    if which == "handshake":  # the handshake bound (asyncio's default is 60 s)
        cfg = _tls_server_cfg(pki, tls_handshake_timeout=0.5, cer_timeout=30.0)
    else:  # the CER timer runs from accept, over the handshake
        cfg = _tls_server_cfg(pki, tls_handshake_timeout=30.0, cer_timeout=0.5)
    node, port = await serve(cfg)
    try:
        silent = await RawPeer.connect("127.0.0.1", port)  # plain TCP: no ClientHello
        try:
            if which == "handshake":
                assert await silent.closed(3.0)
            else:  # counted, then dropped from the pre-CER set at its deadline
                await asyncio.sleep(0.1)
                assert len(node._inbound) == 1
                await asyncio.sleep(0.6)
                assert not node._inbound
        finally:
            silent.close()
        if which == "cer":  # a handshake finished after the CER deadline: closed at once
            slow = await RawPeer.connect("127.0.0.1", port)
            await asyncio.sleep(0.7)
            try:
                await slow.writer.start_tls(_client_ctx(pki), server_hostname=SERVER)
                await slow.send(make_cer(GOOD, REALM))
                assert await slow.closed(3.0)
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                slow.close()
            await asyncio.sleep(0.1)
            assert node.stats["refused_at_accept"] == 1 and GOOD not in node.peers
        p = await RawPeer.connect("127.0.0.1", port, ssl=_client_ctx(pki), server_hostname=SERVER)
        try:
            assert result_code(await p.handshake(GOOD, REALM)) == 2001
        finally:
            p.close()
    finally:
        await node.stop(timeout=1)


# -- memory -------------------------------------------------------------------------------------


@aio
async def test_pre_cer_connection_flood_is_capped_per_source_and_in_total() -> None:
    cfg = NodeConfig(
        origin_host=SERVER,
        origin_realm=REALM,
        auth_apps=[4],
        listen=[ListenConfig(port=0)],
        max_pre_cer=6,
        max_pre_cer_per_source=3,
    )
    node, port = await serve(cfg)
    held: list[RawPeer] = []
    try:
        for _ in range(3):
            held.append(await RawPeer.connect("127.0.0.1", port, local_addr=("127.0.0.9", 0)))
        extra = await RawPeer.connect("127.0.0.1", port, local_addr=("127.0.0.9", 0))
        assert await extra.closed(2.0)  # the 4th from one source is closed at accept
        extra.close()
        for p in held:
            assert not await p.closed(0.05)
        # Another source still gets in, and a well-behaved peer works meanwhile.
        await good_peer_works(port, GOOD, local="127.0.0.2")
        for i in range(3):
            held.append(await RawPeer.connect("127.0.0.1", port, local_addr=(f"127.0.1.{i}", 0)))
        over = await RawPeer.connect("127.0.0.1", port, local_addr=("127.0.2.1", 0))
        assert await over.closed(2.0)  # the 7th without CER in total
        over.close()
        assert len(node._inbound) == 6
        assert node.stats["refused_at_accept"] == 2
    finally:
        for p in held:
            p.close()
        await node.stop(timeout=1)


@aio
async def test_default_maximum_message_length_is_64k() -> None:
    assert Config().diameter.max_message_length == 65536
    cfg = NodeConfig(origin_host=SERVER, origin_realm=REALM, auth_apps=[4])
    assert cfg.max_message_length == 65536
    cfg.listen = [ListenConfig(port=0)]
    node, port = await serve(cfg)
    try:
        p = await RawPeer.connect("127.0.0.1", port)
        try:
            assert result_code(await p.handshake(EVIL, REALM)) == 2001
            big = make_ccr(EVIL, REALM, REALM)
            big.set("User-Name", "x" * 70_000)
            await p.send(big)
            assert await p.closed(3.0)
        finally:
            p.close()
        await good_peer_works(port)
        assert node.stats["framing_errors"] == 1
    finally:
        await node.stop(timeout=1)


def test_a_frame_trickled_in_small_reads_is_not_recopied_per_read() -> None:
    frame = make_ccr(GOOD, REALM, REALM)
    frame.set("User-Name", "x" * (2 << 20))
    data = frame.encode()
    reader = FrameReader(4 << 20)
    assert reader.feed(data[: 1 << 20]) == []
    tracemalloc.start()
    try:
        for i in range(32):  # each small read must cost its own size, not the buffer's
            off = (1 << 20) + i * 100
            assert reader.feed(data[off : off + 100]) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 << 10, peak
    rest = (1 << 20) + 3200
    assert reader.feed(data[rest:] + data[:20]) == [data]  # and the frame comes out whole
    assert reader.buffered == 20


def test_duplicate_cache_is_bounded_by_bytes() -> None:
    cache = DuplicateCache(max_size=100_000, ttl=240.0, max_bytes=10_000)
    for i in range(100):
        cache.put(("peer", i), bytes(1000), 0.0)
    assert cache.nbytes <= 10_000 and len(cache) == 10
    assert cache.get(("peer", 0), 1.0) is None and cache.get(("peer", 99), 1.0) is not None
    cache.put(("peer", "huge"), bytes(20_000), 0.0)  # larger than the bound: not kept
    assert cache.get(("peer", "huge"), 1.0) is None and cache.nbytes <= 10_000
    cache.forget(("peer", 99))
    assert cache.nbytes == 9000
    assert build_node_config(Config()).dup_cache_bytes == Config().diameter.dup_cache_bytes


# -- locally made errors ------------------------------------------------------------------------

GW = "gw.localdomain"
CLIENT = "client.localdomain"


def _test_req(e2e: int, retransmit: bool = False) -> Message:
    m = Message(code=TEST_CMD, app_id=TEST_APP_ID, flags=0xD0 if retransmit else 0xC0)
    m.set("Session-Id", f"{CLIENT};hostile;{e2e}")
    m.set("Origin-Host", CLIENT)
    m.set("Origin-Realm", "localdomain")
    m.set("Destination-Realm", "localdomain")
    m.add(Avp(TEST_AVP, (7).to_bytes(4, "big"), vendor=TEST_VENDOR, flags=0x80))
    m.end_to_end = e2e
    return m


@aio
@pytest.mark.parametrize("case", ["no-worker", "deadline"])
async def test_gateway_errors_are_not_replayed_to_retransmissions(
    tmp_path: Path, case: str
) -> None:
    handler = "chargegw.workers.testapp:TestApp"
    app: dict[str, Any] = {"app_id": TEST_APP_ID, "handler": handler, "vendor_id": TEST_VENDOR}
    if case == "deadline":
        app["handler"] = "chargegw.workers.testapp:SlowApp"
        app["config"] = {"delay": 0.6}
    cfg = gateway_config(
        data_dir=str(tmp_path / "data"),
        listen=[{"address": "127.0.0.1", "port": 0}],
        pool={"heartbeat_interval": 0.1, "heartbeat_timeout": 0.5, "deadline": 0.3},
        worker={"heartbeat_interval": 0.1, "heartbeat_timeout": 0.5},
        applications=[app],
    )
    gw = Gateway(cfg)
    await gw.start()
    port = gw.listen_addresses()[0][1]
    client = Node(
        NodeConfig(
            origin_host=CLIENT,
            origin_realm="localdomain",
            auth_apps=[4],
            vendor_specific_apps=[VendorApp(TEST_VENDOR, TEST_APP_ID)],
            peers=[PeerConfig(GW, port=port, realm="localdomain")],
        )
    )
    stop = asyncio.Event()
    task: asyncio.Future[None] | None = None

    async def start_worker() -> None:
        nonlocal task
        rt = WorkerRuntime.from_config(cfg, worker_id="w0")
        task = asyncio.ensure_future(rt.run(stop, drain_timeout=1))
        for _ in range(200):
            if gw.core.workers:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("worker did not register")

    await client.start()
    try:
        await client.wait_open(GW, timeout=10)
        if case == "deadline":
            await start_worker()
        first = await client.request(_test_req(4242), timeout=5)
        assert result_code(first) == 3002 and first.is_error  # no worker / deadline passed
        if case == "no-worker":
            await start_worker()
            again = await client.request(_test_req(4242, retransmit=True), timeout=5)
            assert result_code(again) == 2001  # handled afresh, by the worker
        else:
            again = await client.request(_test_req(4242, retransmit=True), timeout=5)
            assert result_code(again) == 3002
            assert gw.core.counters.expired == 2  # it went to the pool again
        assert gw.node.stats["duplicates"] == 0
    finally:
        await client.stop(timeout=1)
        stop.set()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        await gw.stop(drain_timeout=1)
