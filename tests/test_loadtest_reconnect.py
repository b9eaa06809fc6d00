"""The generator's reconnect (`--reconnect`) and per-connection Origin-Host, against the stub
server: a dropped connection is re-opened, CER redone, unanswered requests resent with the T
flag, the same End-to-End id and Session-Id, and each request counts once."""

from __future__ import annotations

import asyncio
import struct
from collections import Counter, defaultdict
from typing import Any

from chargegw.codec import Message
from chargegw.loadtest.generator import LoadConfig, build_report, conn_origin_host, run_process
from chargegw.loadtest.stub import StubBehaviour, start_stub

_U32 = struct.Struct(">I")


def _run(cfg: LoadConfig, b: StubBehaviour) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        server, cfg.port = await start_stub(b)
        try:
            part = await run_process(cfg)
            return build_report(cfg, [part])
        finally:
            server.close()

    return asyncio.run(go())


def _key(frame: bytes) -> tuple[str, int, int]:
    """(Session-Id, command, request number) of a request frame."""
    m = Message.decode(frame)
    num = m.get("CC-Request-Number")
    if num is None:
        num = m.get("Accounting-Record-Number")
    return str(m.session_id), m.code, int(num)


def test_dropped_connection_is_reopened_and_unanswered_requests_resent_once() -> None:
    b = StubBehaviour(close_after=25, closes_left=2, record=True, delay=0.002)
    cfg = LoadConfig(kind="rf", sessions=40, updates=2, concurrency=8, timeout=3.0,
                     reconnect=5.0, record=True)
    s = _run(cfg, b)
    assert s["reconnects"] == 2, s["problems"]
    assert s["resent"] > 0
    # every request counted once, whatever the number of sends: 40 sessions x 4 ACRs
    assert s["sent"] == s["answered"] == s["ok_2001"] == 160, s
    assert s["lost"] == s["timeouts"] == s["mismatches"] == 0
    assert s["sessions_completed"] == 40
    assert s["connections"]["connected"] == 1
    # the server saw each resend as a T-flagged copy of a request it had received before
    sends: dict[tuple[str, int, int], list[bytes]] = defaultdict(list)
    for f in b.seen:
        sends[_key(f)].append(f)
    resent = [fs for fs in sends.values() if len(fs) > 1]
    assert sum(len(fs) - 1 for fs in resent) == s["resent"]
    for fs in resent:
        first, *again = fs
        assert not first[4] & 0x10
        for f in again:
            assert f[4] & 0x10, "a resend must carry the T flag"
            assert f[16:20] == first[16:20], "a resend keeps its End-to-End id"
            assert f[20:] == first[20:], "a resend is the same request"
    # --record: each ACR answered 2001, exactly once
    acked = s["acked_acrs"]
    assert len(acked) == 160 and len({(sid, n) for sid, n, _ in acked}) == 160
    assert Counter(n for _, n, _ in acked) == {0: 40, 1: 40, 2: 40, 3: 40}
    resent_keys = {k for k, fs in sends.items() if len(fs) > 1}
    assert {(sid, 271, n) for sid, n, r in acked if r} == resent_keys


def test_without_reconnect_a_drop_fails_what_was_outstanding() -> None:
    b = StubBehaviour(close_after=25, closes_left=1, delay=0.002)
    cfg = LoadConfig(kind="rf", sessions=40, updates=2, concurrency=8, timeout=3.0)
    s = _run(cfg, b)
    assert s["reconnects"] == 0 and s["resent"] == 0
    assert s["connections"]["closed_by_server"] == 1
    assert s["answered"] + s["lost"] == s["sent"] < 160
    assert "acked_acrs" not in s


def test_reconnect_gives_up_after_its_patience() -> None:
    async def go() -> tuple[dict[str, Any], float]:
        b = StubBehaviour(close_after=10, closes_left=1, delay=0.002)
        server, port = await start_stub(b)
        cfg = LoadConfig(kind="gy", sessions=50, updates=1, concurrency=4, timeout=2.0,
                         reconnect=0.6, port=port)

        async def stop_listening() -> None:  # nobody to reconnect to once it drops
            while b.closes_left:
                await asyncio.sleep(0.001)
            server.close()

        task = asyncio.create_task(stop_listening())
        t0 = asyncio.get_running_loop().time()
        part = await run_process(cfg)
        await task
        return build_report(cfg, [part]), asyncio.get_running_loop().time() - t0

    s, took = asyncio.run(go())
    assert s["connections"]["reconnect_failed"] == 1
    assert s["reconnects"] == 0
    assert any("could not reconnect" in p for p in s["problems"])
    assert s["answered"] + s["lost"] == s["sent"]
    assert took < 5.0


def test_each_connection_has_its_own_origin_host() -> None:
    b = StubBehaviour(record=True)
    cfg = LoadConfig(kind="gy", sessions=30, updates=0, concurrency=6, connections=3)
    s = _run(cfg, b)
    assert s["sent"] == s["answered"] == 60
    hosts = Counter(str(Message.decode(f).origin_host) for f in b.seen)
    assert set(hosts) == {"load-c1.localdomain", "load-c2.localdomain", "load-c3.localdomain"}
    for f in b.seen:  # the Session-Id starts with the Origin-Host of its connection
        m = Message.decode(f)
        assert str(m.session_id).startswith(f"{m.origin_host};")


def test_connection_numbers_are_global_across_processes() -> None:
    names = []
    for i in range(3):
        # as runner._split hands out 7 connections to 3 processes: 3, 2, 2
        share = 7 // 3 + (1 if i < 7 % 3 else 0)
        cfg = LoadConfig(processes=3, process_index=i, connections=share,
                         extra={"total_connections": 7})
        names += [conn_origin_host(cfg, k) for k in range(share)]
    assert names == [f"load-c{k}.localdomain" for k in range(1, 8)]
    assert conn_origin_host(LoadConfig(), 0) == "load.localdomain"


def test_dpr_from_the_server_is_followed_by_a_reconnect() -> None:
    b = StubBehaviour(dpr_after=20, closes_left=1, record=True, delay=0.002)
    cfg = LoadConfig(kind="gy", sessions=30, updates=1, concurrency=6, timeout=3.0,
                     reconnect=5.0)
    s = _run(cfg, b)
    assert s["connections"]["dpr_from_server"] == 1
    assert s["reconnects"] == 1, s["problems"]
    assert s["sent"] == s["answered"] == s["ok_2001"] == 90, s
    assert s["lost"] == s["timeouts"] == 0 and s["sessions_completed"] == 30
    # what the sessions sent after the DPR went on the new connection: nothing was lost and
    # each request reached the server once, plus the T-flagged copies counted as resent
    assert len(b.seen) == 90 + s["resent"]
