"""SIGHUP (issue 12): what a reload changes on a running gateway, each on its own.

- a tightened `diameter.allow` sends DPR (DO_NOT_WANT_TO_TALK_TO_YOU) to the connected
  peers it no longer admits, and keeps the others;
- TLS certificate files changed on disk are used for new handshakes; established
  connections stay; files that do not load leave the whole running config in place;
- a moved listener opens the new address before the old one closes (and a new address
  that cannot open leaves the old one open);
- a changed `logging.level` applies at once, through the real signal, in `chargegw run`.

The in-process tests call `Gateway.reload`, the function SIGHUP's handler hands the new
config to (gateway/service.py `reloader`, also exercised here).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from chargegw.codec.constants import CMD_DPR, CMD_DWR, DisconnectCause
from chargegw.config import Config
from chargegw.gateway.frontend import Gateway
from chargegw.gateway.service import reloader
from chargegw.peer.testing import RawPeer, make_dwr
from chargegw.process import current_level, set_level
from chargegw.workers.charging.testing import free_port

pytest.importorskip("cryptography")
from test_peer_tls import make_ca, make_cert  # noqa: E402  (the test PKI helpers)

CLI = [sys.executable, "-m", "chargegw.cli"]


def _config(tmp_path: Path, **over: Any) -> Config:
    doc: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "listen": [{"address": "127.0.0.1", "port": 0}],
    }
    doc.update(over)
    return msgspec.convert(doc, Config)


def _run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 60))


async def _until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


async def _alive(peer: RawPeer, host: str) -> bool:
    """The connection still carries requests: a DWR gets its DWA."""
    await peer.send(make_dwr(host, "test", hop_by_hop=77))
    try:
        dwa = await peer.recv_until(CMD_DWR, request=False, timeout=3)
    except TimeoutError:
        return False
    return dwa is not None and int(dwa.get("Result-Code")) == 2001


# Allowlist ------------------------------------------------------------------------------


def test_tightened_allowlist_sends_dpr_to_peers_it_drops(tmp_path: Path) -> None:
    allow = [{"host": "a.test", "realm": "test"}, {"host": "b.test", "realm": "test"}]

    async def main() -> None:
        gw = Gateway(_config(tmp_path, diameter={"allow": allow}))
        gw.start_pool()
        await gw.node.start()
        try:
            port = gw.listen_addresses()[0][1]
            a = await RawPeer.connect("127.0.0.1", port)
            b = await RawPeer.connect("127.0.0.1", port)
            for peer, host in ((a, "a.test"), (b, "b.test")):
                cea = await peer.handshake(host, "test")
                assert int(cea.get("Result-Code")) == 2001
            await _until(lambda: len(gw.node.peers) == 2, "both peers open")
            gw.reload(_config(tmp_path, diameter={"allow": allow[:1]}))
            dpr = await b.recv_until(CMD_DPR, request=True)
            assert dpr is not None
            assert int(dpr.get("Disconnect-Cause")) == DisconnectCause.DO_NOT_WANT_TO_TALK_TO_YOU
            await b.send(dpr.answer(2001, origin_host="b.test", origin_realm="test"))
            assert await b.closed()
            await _until(lambda: "b.test" not in gw.node.peers, "b.test forgotten")
            # a.test is still admitted: same connection, still answered.
            assert await _alive(a, "a.test")
            assert gw.node.peers["a.test"].usable
            # And b.test cannot come back: its CER now gets 3010.
            b2 = await RawPeer.connect("127.0.0.1", port)
            cea = await b2.handshake("b.test", "test")
            assert int(cea.get("Result-Code")) == 3010
            for p in (a, b, b2):
                p.close()
        finally:
            await gw.stop(drain_timeout=0.0)

    _run(main)


# TLS --------------------------------------------------------------------------------------


def _client_ctx(ca: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    ctx.check_hostname = False
    return ctx


def test_changed_tls_files_are_used_for_new_connections(tmp_path: Path) -> None:
    k1, c1, ca1 = make_ca(tmp_path, "one")
    k2, c2, ca2 = make_ca(tmp_path, "two")
    cert1, key1 = make_cert(tmp_path, k1, c1, "gw.test", "one")
    cert2, key2 = make_cert(tmp_path, k2, c2, "gw.test", "two")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_bytes(cert1.read_bytes())
    key.write_bytes(key1.read_bytes())
    tls = {"cert": str(cert), "key": str(key), "verify_peer": False}
    port = free_port()
    listen = [{"address": "127.0.0.1", "port": port, "transport": "tls", "tls": tls}]

    async def main() -> None:
        cfg = _config(tmp_path, listen=listen)
        gw = Gateway(cfg)
        gw.start_pool()
        await gw.node.start()
        try:
            old = await RawPeer.connect("127.0.0.1", port, ssl=_client_ctx(ca1))
            assert int((await old.handshake("old.test", "test")).get("Result-Code")) == 2001
            # The operator renews the certificate in place (a new CA, same paths): SIGHUP.
            cert.write_bytes(cert2.read_bytes())
            key.write_bytes(key2.read_bytes())
            gw.reload(_config(tmp_path, listen=listen))
            new = await RawPeer.connect("127.0.0.1", port, ssl=_client_ctx(ca2))
            assert int((await new.handshake("new.test", "test")).get("Result-Code")) == 2001
            with pytest.raises(ssl.SSLCertVerificationError):  # the old certificate is gone
                await RawPeer.connect("127.0.0.1", port, ssl=_client_ctx(ca1))
            assert await _alive(old, "old.test")  # the established connection stays
            assert gw.listen_addresses() == [("127.0.0.1", port)]  # the same socket

            # Files that do not load: the reload is refused as a whole, before anything
            # of it applies (the allowlist below is not taken either).
            (tmp_path / "bad.pem").write_text("not a certificate\n")
            bad = [{**listen[0], "tls": {**tls, "cert": str(tmp_path / "bad.pem")}}]
            with pytest.raises(OSError, match=r"cannot load cert=.*bad\.pem"):
                gw.reload(_config(tmp_path, listen=bad, diameter={"allow": [{"host": "x"}]}))
            assert gw.node.config.allow is None or gw.node.config.allow == []
            again = await RawPeer.connect("127.0.0.1", port, ssl=_client_ctx(ca2))
            assert int((await again.handshake("again.test", "test")).get("Result-Code")) == 2001
            for p in (old, new, again):
                p.close()
        finally:
            await gw.stop(drain_timeout=0.0)

    _run(main)


def test_reloader_keeps_the_running_config_when_tls_files_do_not_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = tmp_path / "good.toml"
    good.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    applied: list[Config] = []

    def apply(cfg: Config) -> None:
        for lc in cfg.listen:
            if lc.transport == "tls":
                raise ssl.SSLError("[SSL] PEM lib")
        applied.append(cfg)

    bad = tmp_path / "bad.toml"
    bad.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[logging]\nlevel = "debug"\n'
        '[[listen]]\ntransport = "tls"\n[listen.tls]\ncert = "/nope.pem"\nverify_peer = false\n'
    )
    before = current_level()
    with caplog.at_level(logging.INFO, logger="chargegw"):
        reloader(str(bad), apply, initial=_config(tmp_path))()
    assert not applied
    assert "keeping the running config" in caplog.text
    assert current_level() == before  # the level in the refused file is not applied either


# Listeners --------------------------------------------------------------------------------


def test_a_moved_listener_opens_the_new_address_before_closing_the_old(tmp_path: Path) -> None:
    p1, p2, p3 = free_port(), free_port(), free_port()

    def at(port: int) -> list[dict[str, Any]]:
        return [{"address": "127.0.0.1", "port": port}]

    async def main() -> None:
        gw = Gateway(_config(tmp_path, listen=at(p1)))
        gw.start_pool()
        await gw.node.start()
        seen: list[tuple[int, bool, bool]] = []
        listen = gw.node._listen

        async def spy(lc: Any, ctx: Any = None) -> None:
            await listen(lc, ctx)
            # Right after the new listener opened: both addresses accept.
            loop = asyncio.get_running_loop()
            old_ok = await loop.run_in_executor(None, _accepts, p1)
            new_ok = await loop.run_in_executor(None, _accepts, lc.port)
            seen.append((lc.port, old_ok, new_ok))

        gw.node._listen = spy  # type: ignore[method-assign]
        try:
            peer = await RawPeer.connect("127.0.0.1", p1)
            assert int((await peer.handshake("c.test", "test")).get("Result-Code")) == 2001
            gw.reload(_config(tmp_path, listen=at(p2)))
            await _until(lambda: gw.listen_addresses() == [("127.0.0.1", p2)], "the move")
            assert seen == [(p2, True, True)], seen
            loop = asyncio.get_running_loop()
            assert not await loop.run_in_executor(None, _accepts, p1)
            assert await _alive(peer, "c.test")  # accepted before the move: kept

            # A new address that cannot open: the old one stays open, and says so.
            with socket.socket() as busy:
                busy.bind(("127.0.0.1", p3))
                busy.listen()
                gw.reload(_config(tmp_path, listen=at(p3)))
                await asyncio.sleep(0.3)
                assert gw.listen_addresses() == [("127.0.0.1", p2)]
                assert await loop.run_in_executor(None, _accepts, p2)
            peer.close()
        finally:
            await gw.stop(drain_timeout=0.0)

    _run(main)


# Log level, through the real signal -------------------------------------------------------


def _status(cfg: Path) -> dict[str, Any]:
    out = subprocess.run(
        [*CLI, "status", "--config", str(cfg), "--json", "--interval", "0"],
        capture_output=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return dict(orjson.loads(out.stdout))


def test_sighup_applies_a_log_level_and_a_moved_listener_at_once(
    tmp_path: Path, chargegw_run: Any
) -> None:
    with chargegw_run(tmp_path, workers=1, extra='[logging]\nlevel = "info"\n') as gw:
        assert _status(gw.cfg)["log_level"] == "info"
        new_port = free_port()
        text = gw.cfg.read_text().replace(f"port = {gw.port}", f"port = {new_port}")
        gw.cfg.write_text(text.replace('level = "info"', 'level = "debug"'))
        gw.proc.send_signal(signal.SIGHUP)
        end = time.monotonic() + 20
        while "log level is now debug" not in gw.output():
            assert time.monotonic() < end, gw.output()
            time.sleep(0.1)
        assert _status(gw.cfg)["log_level"] == "debug"
        while not _accepts(new_port):
            assert time.monotonic() < end, gw.output()
            time.sleep(0.1)
        assert not _accepts(gw.port)
        assert f"127.0.0.1:{new_port}" in _status(gw.cfg)["listen"]
        # A file that does not load: the running config (and level) stays.
        gw.cfg.write_text(text.replace('level = "info"', 'level = "loud"'))
        gw.proc.send_signal(signal.SIGHUP)
        while "keeping the running config" not in gw.output():
            assert time.monotonic() < end, gw.output()
            time.sleep(0.1)
        gw.cfg.write_text(text.replace('level = "info"', 'level = "debug"'))  # for `status`
        assert _status(gw.cfg)["log_level"] == "debug"
        assert gw.proc.poll() is None


def test_set_level_applies_to_loggers_that_set_their_own() -> None:
    own = logging.getLogger("chargegw.test.own")
    own.setLevel(logging.ERROR)
    old = set_level("debug")
    try:
        assert current_level() == "debug"
        assert own.level == logging.DEBUG
    finally:
        set_level(old)
        own.setLevel(logging.NOTSET)


def test_sighup_sets_changes_and_clears_the_latency_objective(tmp_path: Path) -> None:
    """pool.latency_target_ms on reload: set, the limits start moving every ADAPT_INTERVAL
    (a worker whose answers take 4x the target has its limit halved); cleared, every
    worker has its whole credit back at once and the adjusting stops."""

    async def main() -> None:
        gw = Gateway(_config(tmp_path))  # the pool not started: no I/O to the made-up worker
        try:
            core = gw.core
            core.register(b"w", worker_id="w", credit=128, apps=[4], now=time.monotonic())
            w = core.workers[b"w"]
            assert core.latency_target == 0.0 and gw._adapt_timer is None
            gw.reload(_config(tmp_path, pool={"latency_target_ms": 5.0}))
            assert core.latency_target == 0.005 and gw._adapt_timer is not None
            now = time.monotonic()
            for i in range(10):
                p = core.offer(peer=f"p{i}", hbh=i, app=4, cmd=272, session_id=b"s%d" % i,
                               raw=b"x", now=now, wall_now=0.0)  # fmt: skip
                core.answer(b"w", p.id, now + 0.020)
            await _until(lambda: w.limit == 64, "the limit halved by the adjusting timer")
            gw.reload(_config(tmp_path, pool={"latency_target_ms": 0}))
            assert core.latency_target == 0.0
            assert w.limit == w.credit == 128 and w.available == 128
            await asyncio.sleep(0.15)
            assert gw._adapt_timer is None  # stopped at its next tick
        finally:
            if gw._adapt_timer is not None:
                gw._adapt_timer.cancel()
            gw.pool.close()

    _run(main)
