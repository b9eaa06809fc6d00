"""Per-worker figures in `chargegw status`: what the gateway keeps of each worker and what
the worker reports about itself (Stats' trailing handled/errors/busy), joined into one row.

Unit tests: the protocol's trailing fields in both directions of a version skew, hostile
counts refused, the CLI's per-worker rates. In-process pool (PoolServer and WorkerRuntimes
over ipc://): the rows follow traffic, error answers, deadline timeouts and a worker that
falls silent; over CURVE tcp://, the row names the worker's address and an admitted worker's
lying Stats are refused while the gateway goes on. Real processes (`chargegw run` + `chargegw load`): answered and commits rise
with load, and a SIGKILLed worker leaves the table and is listed with why."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import orjson
import pytest
from test_pool_io import (
    TEST,
    aio,
    make_request,
    make_worker,
    pool,
    slow,
    until,
)

from chargegw.gateway.metrics import WorkerFigures, worker_figures
from chargegw.gateway.status_cli import derive, render
from chargegw.gateway.worker_report import worker_row
from chargegw.ipc import protocol as pp
from chargegw.workers.api import AppSpec
from chargegw.workers.stats import WorkerStats

CLI = [sys.executable, "-m", "chargegw.cli"]
NS = len(pp.STORE_BUCKETS) + 1


# The protocol ------------------------------------------------------------------------------


def test_stats_trailing_fields_survive_a_version_skew_both_ways() -> None:
    new = pp.Stats(boot=7, shards=3, handled=10, errors=2, busy=1)
    fields = msgspec.msgpack.decode(pp.encode_one(new)[1:])[0]
    # An older worker's Stats stops before the trailing counts: they read NOT_SENT.
    old = bytes([pp.PROTOCOL_VERSION]) + msgspec.msgpack.encode([fields[:-3]])
    (m,) = pp.decode(old)
    assert isinstance(m, pp.Stats) and m.shards == 3
    assert (m.handled, m.errors, m.busy) == (pp.NOT_SENT,) * 3
    # A newer worker's Stats with fields we do not know yet still decodes.
    newer = bytes([pp.PROTOCOL_VERSION]) + msgspec.msgpack.encode([[*fields, 99, "x"]])
    (m,) = pp.decode(newer)
    assert isinstance(m, pp.Stats) and (m.handled, m.errors, m.busy) == (10, 2, 1)


def test_worker_counts_error_answers_and_3004_apart() -> None:
    s = WorkerStats()
    s.failed(5012)
    s.failed(3004, 3)
    m = s.message(0, handled=40)
    assert (m.handled, m.errors, m.busy) == (40, 4, 3)
    assert s.message(0).handled == pp.NOT_SENT  # no runtime count given: not sent


class _W:
    def __init__(self, wid: str) -> None:
        self.worker_id = wid
        self.draining = False


def test_report_row_and_hostile_counts_refused_whole() -> None:
    core = SimpleNamespace(workers={b"a": _W("a")})
    f = WorkerFigures(core)
    assert worker_row(f.seen.get(b"a"), 1.0) == {"report": None}
    counts = [0] * NS
    counts[2], counts[5] = 9, 1
    f.ingest(b"a", pp.Stats(boot=1, store_counts=counts, store_sum=0.02, store_errors=2,
                            handled=50, errors=4, busy=3, store=pp.STORE_OK), 1.0)  # fmt: skip
    rep = worker_row(f.seen[b"a"], 3.5)["report"]
    assert rep["age_s"] == 2.5 and rep["store"] == "ok"
    assert (rep["handled"], rep["errors"], rep["busy"]) == (50, 4, 3)
    assert rep["store_commits"] == 10 and rep["store_errors"] == 2
    for bad in (
        pp.Stats(boot=1, handled=-2),
        pp.Stats(boot=1, errors=1 << 62),
        pp.Stats(boot=1, busy=-100),
    ):
        f.ingest(b"a", bad, 2.0)
    assert f.refused == 3
    assert worker_row(f.seen[b"a"], 3.5)["report"]["handled"] == 50  # the last good one
    # An older worker: its counts are unknown (null), not zero.
    f.ingest(b"a", pp.Stats(boot=1), 4.0)
    rep = worker_row(f.seen[b"a"], 4.0)["report"]
    assert rep["handled"] is None and rep["errors"] is None and rep["busy"] is None


def _doc(clock: float, handled: int, commits: list[int], commit_s: float, *, boot: int = 1,
         gen: int = 5) -> dict[str, Any]:  # fmt: skip
    rep = {"boot": boot, "handled": handled, "errors": 0, "busy": 0, "store_errors": 0,
           "store_commits": sum(commits), "store_commit_counts": commits,
           "store_commit_s": commit_s}  # fmt: skip
    w = {"id": "h-w0.1", "incarnation": 1, "gen": gen, "handled": handled, "inflight": 0,
         "credit": 8, "host": "h", "pid": 9, "report": rep}  # fmt: skip
    return {"uptime_s": clock, "pool": {"workers": [w], "counters": {"placed": handled}}}


def test_cli_per_worker_rates_and_interval_commit_times() -> None:
    slow_c, fast_c = [0] * NS, [0] * NS
    slow_c[-2] = 100  # 100 commits of ~1-2.5 s before the interval
    fast_c[-2], fast_c[1] = 100, 50  # then 50 of under 0.25 ms in it
    a = _doc(10.0, 1000, slow_c, 150.0)
    b = _doc(12.0, 1400, fast_c, 150.01)
    d = derive(a, b)["workers"]["h-w0.1"]
    assert d["answered_per_s"] == 200.0 and d["handled_per_s"] == 200.0
    assert d["store_commits_per_s"] == 25.0
    assert d["commit_window"] == "interval" and d["commit_ms_p99"] <= 0.25
    assert d["commit_ms_mean"] == pytest.approx(0.2, abs=0.01)
    text = render(b, derive(a, b))
    assert "h-w0.1" in text and "1400 (200.0/s)" in text and "h pid 9" in text
    # A restart (another boot) or another registration between the samples: no rates.
    d = derive(a, _doc(12.0, 1400, fast_c, 150.01, boot=2))["workers"]["h-w0.1"]
    assert "handled_per_s" not in d and d["commit_window"] == "since start"
    d = derive(a, _doc(12.0, 1400, fast_c, 150.01, gen=6))["workers"]["h-w0.1"]
    assert "answered_per_s" not in d


# In-process pool ---------------------------------------------------------------------------


def _row(doc: dict[str, Any], wid: str) -> dict[str, Any] | None:
    return next((w for w in doc["pool"]["workers"] if w["id"] == wid), None)


@aio
async def test_rows_follow_traffic_errors_timeouts_and_silence(tmp_path: Path) -> None:
    async with pool(tmp_path, deadline=0.5) as (gw, ws):
        worker_figures(SimpleNamespace(core=gw.core, pool=gw.server))
        apps = [TEST, AppSpec(1, "chargegw.workers.testapp:FailApp"), slow(1.0, 2)]
        a = make_worker([gw.endpoint], apps, wid="a.1")
        b = make_worker([gw.endpoint], [TEST], wid="b.1")
        a.figures, b.figures = WorkerStats(), WorkerStats()  # one per process, really
        ws.start(a)
        ws.start(b)
        await until(lambda: len(gw.core.workers) == 2, what="registration")
        await until(lambda: all((_row(gw.server.status(), w) or {}).get("report")
                                for w in ("a.1", "b.1")), what="reports")  # fmt: skip
        doc = gw.server.status()
        assert _row(doc, "a.1")["handled"] == 0 and _row(doc, "a.1")["incarnation"] == 1
        n = 40
        for i in range(n):
            gw.submit(make_request(i))
        for i in range(n, n + 3):
            gw.submit(make_request(i), app=1)  # only worker a serves it: 5012 from there
        gw.submit(make_request(99), app=2)  # slower than the deadline: 3002 by the gateway
        await until(lambda: gw.total() == n + 4, what="answers")

        def figures() -> tuple[int, int, int]:
            rows = gw.server.status()["pool"]["workers"]
            return (sum(w["handled"] for w in rows),
                    sum(w["report"]["handled"] or 0 for w in rows),
                    _row(gw.server.status(), "a.1")["report"]["errors"])  # fmt: skip

        # The slow one's late answer counts too (at 1 s): the worker did finish it.
        await until(lambda: figures() == (n + 4, n + 4, 3), what="the figures to add up")
        doc = gw.server.status()
        ra, rb = _row(doc, "a.1"), _row(doc, "b.1")
        assert ra is not None and rb is not None
        assert ra["timeouts"] == 1 and rb["timeouts"] == 0  # the slow one was on a
        assert rb["report"]["errors"] == 0 and ra["report"]["busy"] == 0
        assert 0 <= ra["heartbeat_s"] < 1.0 and ra["registered_s"] > 0
        text = render(doc, derive(None, doc))
        assert "a.1" in text and "b.1" in text and "flight/credit" in text
        # b falls silent: it leaves the table and is listed with why.
        ws.freeze(b)
        await until(lambda: _row(gw.server.status(), "b.1") is None, what="b dropped")
        doc = gw.server.status()
        gone = doc["pool"]["gone"]
        # Its connection is closed: the next send finds it unreachable, or it is silent first.
        assert [g["id"] for g in gone] == ["b.1"] and gone[0]["why"] in ("silent", "unreachable")
        assert gone[0]["handled"] == rb["handled"]
        assert "left lately" in render(doc) and gone[0]["why"] in render(doc)


@aio
async def test_a_draining_worker_is_marked_then_listed_as_gone(tmp_path: Path) -> None:
    async with pool(tmp_path) as (gw, ws):
        worker_figures(SimpleNamespace(core=gw.core, pool=gw.server))
        a = ws.start(make_worker([gw.endpoint], [slow(0.8)], wid="d.1"))
        await until(lambda: len(gw.core.workers) == 1, what="registration")
        gw.submit(make_request(1))
        await until(lambda: _row(gw.server.status(), "d.1")["inflight"] == 1, what="held")
        stop = asyncio.ensure_future(ws.stop(a))  # it drains: Goodbye(drain), then goodbye
        await until(lambda: (_row(gw.server.status(), "d.1") or {}).get("draining"),
                    what="draining")  # fmt: skip
        doc = gw.server.status()
        assert "draining" in render(doc) and not doc["pool"]["gone"]
        await stop
        await until(lambda: gw.server.status()["pool"]["gone"], what="gone")
        doc = gw.server.status()
        assert _row(doc, "d.1") is None and gw.total() == 1
        assert doc["pool"]["gone"][0]["id"] == "d.1" and doc["pool"]["gone"][0]["handled"] == 1


# Real processes ----------------------------------------------------------------------------


def _status(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "status", "--config", str(cfg), *args],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def _wait_json(cfg: Path, cond: Any, timeout: float = 30.0) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        out = _status(cfg, "--json", "--interval", "0")
        doc = orjson.loads(out.stdout) if out.stdout else {}
        if doc and cond(doc):
            return doc
        assert time.monotonic() < end, doc.get("pool")
        time.sleep(0.3)


@pytest.mark.timeout(180)
def test_real_workers_figures_rise_with_load_and_a_killed_one_leaves(
    tmp_path: Path, chargegw_run: Any
) -> None:
    with chargegw_run(tmp_path, workers=2) as gw:
        doc = _wait_json(gw.cfg, lambda d: all(w.get("report", {}) and "boot" in w["report"]
                                               for w in d["pool"]["workers"]))  # fmt: skip
        before = {w["id"]: w for w in doc["pool"]["workers"]}
        sessions = 150
        load = subprocess.run(
            [*CLI, "load", "--port", str(gw.port), "--sessions", str(sessions),
             "--updates", "1", "--concurrency", "4", "--timeout", "10", "--quiet"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert load.returncode == 0, load.stdout + load.stderr
        sent = 3 * sessions  # CCR-I, one CCR-U, CCR-T each

        def settled(d: dict[str, Any]) -> bool:
            ws = d["pool"]["workers"]
            return sum(w["report"].get("handled") or 0 for w in ws) >= sent + sum(
                before[w["id"]]["report"]["handled"] for w in ws
            )

        doc = _wait_json(gw.cfg, settled)
        rows = doc["pool"]["workers"]
        answered = sum(w["handled"] - before[w["id"]]["handled"] for w in rows)
        assert answered == sent == doc["pool"]["counters"]["answered"]
        for w in rows:
            old = before[w["id"]]["report"]
            rep = w["report"]
            assert w["handled"] > before[w["id"]]["handled"], w  # both took some sessions
            assert rep["store_commits"] > old["store_commits"] and rep["store"] == "ok"
            assert rep["errors"] == 0 and rep["busy"] == 0 and rep["store_errors"] == 0
            assert w["pid"] in gw.children() and w["shards_owned"] > 0
        assert sum(w["shards_owned"] for w in rows) == 64
        text = _status(gw.cfg, "--interval", "0.3")
        assert text.returncode == 0, text.stderr
        for w in rows:
            assert w["id"] in text.stdout and f"pid {w['pid']}" in text.stdout
        # SIGKILL one: it leaves the table, the launcher's next incarnation takes its place.
        victim = rows[0]
        os.kill(victim["pid"], signal.SIGKILL)
        doc = _wait_json(
            gw.cfg,
            lambda d: (
                victim["id"] not in {w["id"] for w in d["pool"]["workers"]} and d["pool"]["gone"]
            ),
        )
        gone = doc["pool"]["gone"][0]
        assert gone["id"] == victim["id"] and "SIGKILL" in gone["why"]
        assert gone["pid"] == victim["pid"]
        text = _status(gw.cfg, "--interval", "0")
        assert "left lately" in text.stdout and victim["id"] in text.stdout
        name = victim["name"]
        doc = _wait_json(gw.cfg, lambda d: any(w["name"] == name and w["incarnation"] == 2
                                               for w in d["pool"]["workers"]))  # fmt: skip


@aio
async def test_curve_worker_row_names_its_address_and_survives_hostile_stats(
    tmp_path: Path,
) -> None:
    from chargegw.gateway.pool import PoolCore
    from chargegw.gateway.pool_io import PoolServer
    from chargegw.ipc import security as sec
    from chargegw.workers.runtime import WorkerRuntime

    sec.generate(str(tmp_path / "keys"), ["good"])
    k = tmp_path / "keys"
    core = PoolCore(deadline=4.0, heartbeat_timeout=0.4)
    server = PoolServer(
        core, ["tcp://127.0.0.1:0"], deliver=lambda *a: None, error_answer=lambda *a: None,
        heartbeat_interval=0.1, curve_secret_key=str(k / "gateway" / "gateway.key_secret"),
        curve_workers=str(k / "gateway" / "workers"),
    )  # fmt: skip
    server.start()
    figs = worker_figures(SimpleNamespace(core=core, pool=server))
    rt = WorkerRuntime(
        gateways=[server.bound[-1]], apps=[TEST], worker_id="c.1", heartbeat_interval=0.1,
        heartbeat_timeout=0.4, data_dir=str(tmp_path),
        curve_secret_key=str(k / "worker" / "good.key_secret"),
        curve_server_key=str(k / "worker" / "gateway.key"),
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.ensure_future(rt.run(stop, drain_timeout=1.0))
    try:
        await until(lambda: (_row(server.status(), "c.1") or {}).get("report"), what="report")
        row = _row(server.status(), "c.1")
        assert row is not None and row["address"] == "127.0.0.1"
        assert "127.0.0.1 (" in render(server.status())
        # An admitted worker lies: a negative count, then far too many rating groups.
        rt._queue(0, pp.Stats(boot=1, handled=-7))
        rt._queue(0, pp.Stats(boot=1, units=[pp.Units(rg, 1) for rg in range(5000)]))
        rt._flush()
        await until(lambda: figs.refused == 2, what="both refused")
        await asyncio.sleep(0.3)  # its honest reports go on
        row = _row(server.status(), "c.1")
        assert row is not None and row["report"]["handled"] is not None
        assert row["report"]["handled"] >= 0 and row["report"]["boot"] == rt.figures.boot
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
        server.close(goodbye=False)
