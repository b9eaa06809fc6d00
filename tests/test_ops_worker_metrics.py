"""Worker figures through the gateway (issue 12): time in the worker, store commits and
errors, the OCS's units and money by rating group, shards owned, the store-ok flag, and
the worker log level that follows the gateway's SIGHUP.

The unit tests drive `WorkerStats` (the worker side) and `WorkerFigures` (the gateway's
sum) with cumulative reports, including restarts, drops, repeats and hostile ones. The
end-to-end tests run `chargegw run` and `chargegw load`, and compare the scrape with what
the pool answered, the generator's ledger check and the store's shard count; /readyz is
checked against a redis-server that is stopped and started again."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from test_metrics import _get, _samples, _sum  # the HTTP and exposition readers, shared

from chargegw.config import Config
from chargegw.gateway.frontend import Gateway
from chargegw.gateway.metrics import MAX_RGS, MetricsServer, WorkerFigures, readiness
from chargegw.ipc import protocol as pp
from chargegw.workers.charging.core import Outcome, ServiceResult
from chargegw.workers.charging.testing import free_port
from chargegw.workers.stats import MAX_RGS as WORKER_RGS
from chargegw.workers.stats import WorkerStats

CLI = [sys.executable, "-m", "chargegw.cli"]
NT = len(pp.WORKER_TIME_BUCKETS) + 1
NS = len(pp.STORE_BUCKETS) + 1


# Helpers ----------------------------------------------------------------------------------


class _W:
    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.draining = False


class _Core:
    def __init__(self) -> None:
        self.workers: dict[bytes, _W] = {}


def _stats(boot: int, n: int = 0, *, units: list[pp.Units] | None = None, **kw: Any) -> pp.Stats:
    """A report with `n` answers of app 4 in the first bucket, n commits, n errors."""
    return pp.Stats(
        boot=boot,
        apps=[pp.AppTime(4, [n] + [0] * (NT - 1), n * 0.001)],
        store_counts=[n] + [0] * (NS - 1),
        store_sum=n * 0.002,
        store_errors=n,
        units=units if units is not None else [pp.Units(100, 10 * n, 5 * n, 7 * n, n)],
        **kw,
    )


def _totals(f: WorkerFigures) -> tuple[int, int, int, list[int]]:
    return (
        sum(f.app_time[4][0]) if 4 in f.app_time else 0,
        sum(f.store_counts),
        f.store_errors,
        list(f.units.get(100, [0, 0, 0, 0])),
    )


# The worker side --------------------------------------------------------------------------


def test_worker_stats_count_units_by_rating_group_and_fold_beyond_the_bound() -> None:
    st = WorkerStats()
    outs: list[Any] = [
        Outcome(2001, [ServiceResult("100:", 2001, granted=1000, used=400, charged=30)]),
        Outcome(
            2001,
            [
                ServiceResult("100:7", 2001, granted=50, used=0, charged=0),
                ServiceResult("2:", 2001, granted=0, used=9, charged=4),
            ],
        ),  # fmt: skip
        Outcome(
            2001, [ServiceResult("100:", 2001, granted=999, used=999, charged=999)], replay=True
        ),  # fmt: skip  # counted when first applied, not again
        Outcome(2001, [ServiceResult("100:", 2001, granted=3, charged=-12)]),  # a refund
        RuntimeError("this one failed alone"),
    ]
    st.committed(0.0003, outs)
    assert st.units[100] == [1050, 400, 30, 12]
    assert st.units[2] == [0, 9, 4, 0]
    assert sum(st.store_counts) == 1 and st.store == pp.STORE_OK
    # Hostile keys and more groups than the bound: all land, bounded, in RG_OTHER.
    st.committed(0.0, [Outcome(2001, [ServiceResult(f"{rg}:", 2001, used=1, charged=1)
                                      for rg in range(1000, 1000 + 2 * WORKER_RGS)])])  # fmt: skip
    st.committed(0.0, [Outcome(2001, [ServiceResult("x:", 2001, used=1, charged=1),
                                      ServiceResult("-5:", 2001, used=1, charged=1)])])  # fmt: skip
    assert len(st.units) == WORKER_RGS + 1
    assert st.units[pp.RG_OTHER][1] == 2 * WORKER_RGS - (WORKER_RGS - 2) + 2
    total_used = sum(row[1] for row in st.units.values())
    assert total_used == 400 + 9 + 2 * WORKER_RGS + 2  # nothing lost by folding
    st.store_failed()
    assert st.store == pp.STORE_DOWN and st.store_errors == 1
    st.committed(0.001, [], ok=False)  # a batch that met the store down stays down
    assert st.store == pp.STORE_DOWN
    m = pp.decode(pp.encode([st.message(shards=5)]))[0]
    assert isinstance(m, pp.Stats) and m.shards == 5 and m.boot == st.boot
    assert len(m.units) == WORKER_RGS + 1 and len(m.store_counts) == NS


def test_time_in_worker_is_one_bisect_per_batch_of_answers() -> None:
    st = WorkerStats()
    t = st.timer(4)
    t0 = time.perf_counter() - 0.003  # 3 ms ago
    t.since(t0, 10)
    assert sum(t.counts) == 10
    k = next(i for i, c in enumerate(t.counts) if c)
    assert pp.WORKER_TIME_BUCKETS[k - 1] < 0.003 <= pp.WORKER_TIME_BUCKETS[k]
    assert 0.03 <= t.sum < 0.5


# The gateway side -------------------------------------------------------------------------


def test_gateway_totals_stay_monotonic_across_repeats_restarts_and_drops() -> None:
    core = _Core()
    core.workers[b"a"] = _W("host-w0.1")
    core.workers[b"b"] = _W("host-w1.1")
    f = WorkerFigures(core)
    f.ingest(b"a", _stats(1, 10), 1.0)
    f.ingest(b"b", _stats(2, 3), 1.0)
    assert _totals(f) == (13, 13, 13, [130, 65, 91, 13])
    f.ingest(b"a", _stats(1, 10), 2.0)  # a repeat changes nothing
    assert _totals(f) == (13, 13, 13, [130, 65, 91, 13])
    f.ingest(b"a", _stats(1, 15), 3.0)  # it grew by 5
    assert _totals(f)[0] == 18
    # Worker a restarts under the same identity: a new boot, counting from 2 again.
    f.ingest(b"a", _stats(9, 2), 4.0)
    assert _totals(f) == (20, 20, 20, [200, 100, 140, 20])
    # A decrease within one boot (a bug, or hostile) adds nothing and resets the baseline.
    f.ingest(b"a", _stats(9, 1), 5.0)
    assert _totals(f)[0] == 20
    f.ingest(b"a", _stats(9, 4), 6.0)
    assert _totals(f)[0] == 23
    # Worker b is dropped for good: what it counted stays in the totals.
    del core.workers[b"b"]
    assert _totals(f)[0] == 23
    text = _render(f)
    assert _sum(text, "chargegw_worker_time_seconds_count", app="4") == 23
    assert _sum(text, "chargegw_worker_time_seconds_bucket", app="4", le="+Inf") == 23
    assert _sum(text, "chargegw_ocs_money_micros_total", rating_group="100", kind="debited") == 161
    assert _sum(text, "chargegw_store_errors_total") == 23
    # Only registered workers are listed by worker id.
    assert {dict(k)["worker"] for n, k in text if n == "chargegw_worker_shards"} == {"host-w0.1"}


def _render(f: WorkerFigures) -> dict[Any, float]:
    from prometheus_client import generate_latest
    from prometheus_client.registry import Collector, CollectorRegistry

    class C(Collector):
        def collect(self) -> Any:
            return f.families()

    reg = CollectorRegistry(auto_describe=False)
    reg.register(C())
    return _samples(generate_latest(reg).decode())


def test_hostile_stats_are_refused_whole_and_never_raise() -> None:
    core = _Core()
    core.workers[b"a"] = _W("a")
    f = WorkerFigures(core)
    f.ingest(b"a", _stats(1, 5), 1.0)
    before = _totals(f)
    bad = [
        pp.Stats(boot=1, apps=[pp.AppTime(4, [1] * (NT + 1), 0.0)]),  # wrong bucket count
        pp.Stats(boot=1, apps=[pp.AppTime(4, [-1] + [0] * (NT - 1), 0.0)]),  # negative
        pp.Stats(boot=1, apps=[pp.AppTime(4, [1 << 63] + [0] * (NT - 1), 0.0)]),  # huge
        pp.Stats(boot=1, apps=[pp.AppTime(4, [1] + [0] * (NT - 1), math.nan)]),
        pp.Stats(boot=1, apps=[pp.AppTime(4, [1] + [0] * (NT - 1), math.inf)]),
        pp.Stats(boot=1, apps=[pp.AppTime(4, [0] * NT, 0.0)] * 2),  # the same app twice
        pp.Stats(boot=1, apps=[pp.AppTime(a, [0] * NT, 0.0) for a in range(65)]),
        pp.Stats(boot=1, units=[pp.Units(rg, 1) for rg in range(pp.MAX_STATS_RGS + 1)]),
        pp.Stats(boot=1, units=[pp.Units(-7, 1)]),
        pp.Stats(boot=1, units=[pp.Units(1, -1)]),
        pp.Stats(boot=1, store_counts=[1, 2, 3]),
        pp.Stats(boot=1, store_sum=-1.0),
        pp.Stats(boot=1, shards=-1),
        pp.Stats(boot=1, store=7),
    ]
    for m in bad:
        f.ingest(b"a", m, 2.0)
    f.ingest(b"a", object(), 2.0)  # not even a Stats: ignored
    f.ingest(b"a", pp.Stats(boot=1, apps=[None]), 2.0)  # type: ignore[list-item]  # a bug's shape
    assert f.refused == len(bad) + 1
    assert _totals(f) == before
    # Over the wire a badly typed field fails the frame's decoding, as any bad frame does.
    with pytest.raises(pp.ProtocolError):
        pp.decode(bytes([pp.PROTOCOL_VERSION]) + msgspec.msgpack.encode([[15, "boot"]]))


def test_gateway_rating_group_labels_are_bounded_over_many_workers() -> None:
    core = _Core()
    f = WorkerFigures(core)
    per = pp.MAX_STATS_RGS - 1
    for w in range(8):  # 8 workers x 64 distinct groups = 512 groups
        units = [pp.Units(w * per + k, 1, 1, 1) for k in range(per)]
        f.ingest(f"w{w}".encode(), pp.Stats(boot=w, units=units), 1.0)
    assert len(f.units) == MAX_RGS + 1
    assert sum(row[1] for row in f.units.values()) == 8 * per  # folded, not lost
    assert f.units[-1][1] == 8 * per - MAX_RGS


# Readiness asks the store ------------------------------------------------------------------


def test_readyz_follows_the_workers_store_flag(tmp_path: Path) -> None:
    cfg = msgspec.convert(
        {"data_dir": str(tmp_path / "data"), "listen": [{"address": "127.0.0.1", "port": 0}],
         "launcher": {"min_workers": 1}},
        Config,
    )  # fmt: skip

    async def main() -> None:
        gw = Gateway(cfg)
        gw.start_pool()
        await gw.node.start()
        srv = MetricsServer(gw, "127.0.0.1", 0)
        try:
            ident = b"w.test"

            def send(*msgs: pp.PoolMessage) -> tuple[int, bytes]:
                # As if the worker sent them; read before the loop runs on (the pool would
                # drop this worker, unreachable, at its next flush).
                gw.pool._on_frames([[ident, pp.encode(list(msgs))]])
                status, _ctype, body = srv.respond("GET", "/readyz")
                return status, body

            ready = pp.Ready(worker_id="w.test", credit=4, apps=gw.app_ids, store=pp.STORE_OK)
            assert gw.readiness()[0] is False  # no worker yet
            status, body = send(ready)
            assert status == 200, body
            status, body = send(ready, pp.Stats(boot=1, store=pp.STORE_DOWN))
            assert status == 503 and b"store" in body, body
            assert readiness(gw)[0] is False
            status, body = send(ready, pp.Stats(boot=1, store=pp.STORE_OK))
            assert status == 200, body
            # A hostile report on the wire (NaN, and "store down"): refused whole, nothing of
            # it applied, and the pool carries on with the rest of the frame.
            refused = gw.worker_figures.refused
            status, body = send(pp.Stats(boot=1, store_sum=math.nan, store=pp.STORE_DOWN), ready)
            assert gw.worker_figures.refused == refused + 1
            assert status == 200 and ident in gw.core.workers, body
            # A report too old no longer counts: "recently" is the heartbeat timeout.
            gw.worker_figures.seen[ident].at -= gw.core.heartbeat_timeout + 1
            assert srv.respond("GET", "/readyz")[0] == 503
            assert srv.respond("GET", "/healthz")[0] == 200  # alive all along
        finally:
            await gw.stop(drain_timeout=0.0)

    asyncio.run(asyncio.wait_for(main(), 30))


# End to end -------------------------------------------------------------------------------

METRICS = '[metrics]\naddress = "127.0.0.1"\nport = 0\n'


def _base(out: str) -> str:
    m = re.search(r"metrics on (http://127\.0\.0\.1:\d+)/metrics", out)
    assert m, out
    return m.group(1)


def test_worker_series_add_up_during_a_load_run(tmp_path: Path, chargegw_run: Any) -> None:
    with chargegw_run(tmp_path, workers=2, extra=METRICS, timeout=90) as gw:
        base = _base(gw.output())
        # Both workers' reports with the assignment settled: each owns a share and the
        # shares add up (the first to register holds all 64 until the second takes half;
        # a sum of 64 alone can be the first's stale report).
        end = time.monotonic() + 20
        while True:
            owned = [
                v for (n, _), v in _samples(_get(base + "/metrics")[1]).items()
                if n == "chargegw_worker_shards"
            ]  # fmt: skip
            if len(owned) == 2 and min(owned) > 0 and sum(owned) == 64:
                break
            assert time.monotonic() < end, (owned, gw.output())
            time.sleep(0.2)
        before = _samples(_get(base + "/metrics")[1])
        out = tmp_path / "load.json"
        load = subprocess.Popen(
            [*CLI, "load", "--port", str(gw.port), "--scenario", "gy", "--updates", "2",
             "--rating-group", "1", "--rating-group", "100", "--sessions", "60",
             "--rate", "25", "--subscribers", "20", "--timeout", "10", "--quiet",
             "--verify-ledger", "--ledger-config", str(gw.cfg), "--json", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        # Paced at 25 sessions a second (60 sessions: about 2.4 s), so that the run outlasts
        # the workers' one-a-heartbeat reports: a closed loop of 10 ended before the first
        # report once the generator stopped stalling every second, and no scrape during the
        # run could see a move.
        during: dict[Any, float] = {}
        while load.poll() is None:  # a scrape while the load runs: the worker series move
            during = _samples(_get(base + "/metrics")[1])
            if _sum(during, "chargegw_worker_time_seconds_count") > _sum(
                before, "chargegw_worker_time_seconds_count"
            ):
                break
            time.sleep(0.05)
        load_out, _ = load.communicate(timeout=240)
        assert out.exists(), load_out
        rep = json.loads(out.read_text())

        def moved(s: dict[Any, float], name: str, **match: str) -> float:
            return _sum(s, name, **match) - _sum(before, name, **match)

        # Reports come once a heartbeat: wait until the workers' count has caught up
        # with the answers the pool matched (it must, exactly, and soon).
        end = time.monotonic() + 15
        while True:
            after = _samples(_get(base + "/metrics")[1])
            answered = moved(after, "chargegw_pool_answered_total")
            counted = moved(after, "chargegw_worker_time_seconds_count")
            if counted == answered or time.monotonic() > end:
                break
            time.sleep(0.2)

    summary, money = rep["summary"], rep["money"]
    assert summary["result_codes"] == {"2001": 240}, summary
    assert moved(during, "chargegw_worker_time_seconds_count") > 0, "no move during the run"
    # Time in the worker: one observation per answer the workers made, all for Gy (app 4).
    assert counted == answered == summary["answered"], (counted, answered, summary)
    assert moved(after, "chargegw_worker_time_seconds_count", app="4") == counted
    assert moved(after, "chargegw_worker_time_seconds_bucket", app="4", le="+Inf") == counted
    assert moved(after, "chargegw_worker_time_seconds_sum", app="4") > 0
    # Store commits: at least one per drained batch, at most one per placement of a
    # request: first placements, and those placed again (after a worker's Moved while a
    # shard is claimed, or resent when its worker was taken for lost on a starved machine),
    # each of which was in a batch on the worker it went to. (The full suite once saw 275
    # commits for 240 requests, against a bound of one per request.)
    commits = moved(after, "chargegw_store_commit_seconds_count")
    placements = sum(
        moved(after, f"chargegw_pool_{name}_total") for name in ("placed", "shard_moves", "resent")
    )
    assert 1 <= commits <= placements, (commits, placements)
    assert moved(after, "chargegw_store_errors_total") == 0
    # Money: what the workers say they debited is what the ledger rated during the run,
    # split evenly over the two rating groups (the same tariff and usage).
    debited = {
        rg: moved(after, "chargegw_ocs_money_micros_total", rating_group=rg, kind="debited")
        for rg in ("1", "100")
    }
    assert money["ledger_ok"] and money["passed"], money
    assert sum(debited.values()) == money["rated_delta_micro"] > 0, (debited, money)
    assert debited["1"] == debited["100"]
    for rg in ("1", "100"):
        used = moved(after, "chargegw_ocs_units_total", rating_group=rg, kind="used")
        granted = moved(after, "chargegw_ocs_units_total", rating_group=rg, kind="granted")
        assert used > 0 and granted > 0, (rg, used, granted)
    # Shards: every one of the store's 64 owned by exactly one of the two workers.
    shards = {dict(k)["worker"]: v for (n, k), v in after.items() if n == "chargegw_worker_shards"}
    assert len(shards) == 2 and sum(shards.values()) == 64, shards
    assert all(v > 0 for v in shards.values()), shards
    ups = [v for (n, _k), v in after.items() if n == "chargegw_worker_store_up"]
    assert ups == [1, 1], ups
    assert _sum(after, "chargegw_worker_stats_refused_total") == 0


def test_worker_log_level_follows_sighup(tmp_path: Path, chargegw_run: Any) -> None:
    with chargegw_run(tmp_path, workers=1, extra='[logging]\nlevel = "info"\n') as gw:
        assert "debug lines on" not in gw.output()
        text = gw.cfg.read_text()
        gw.cfg.write_text(text.replace('level = "info"', 'level = "debug"'))
        gw.proc.send_signal(signal.SIGHUP)
        end = time.monotonic() + 20
        # Written at DEBUG by the running worker: only once it applied the new level.
        while not re.search(r"worker \S+: debug lines on", gw.output()):
            assert time.monotonic() < end, gw.output()
            time.sleep(0.1)
        line = next(x for x in gw.output().splitlines() if "debug lines on" in x)
        assert "DEBUG" in line and "worker" in line, line
        assert len(gw.children()) == 1  # the same worker: not restarted to get it


# /readyz against a stopped redis-server ------------------------------------------------------


@contextlib.contextmanager
def _redis(port: int, d: Path) -> Any:
    redis = pytest.importorskip("redis")
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server binary not installed")
    argv = [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(d)]  # fmt: skip
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        probe = redis.Redis(port=port, socket_timeout=0.2)
        end = time.monotonic() + 10
        while True:
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < end, "redis-server did not start"
                time.sleep(0.05)
        yield p
    finally:
        p.terminate()
        p.wait(10)


def _wait_status(url: str, want: int, seconds: float) -> str:
    end = time.monotonic() + seconds
    while True:
        status, body = _get(url)
        if status == want:
            return body
        assert time.monotonic() < end, (status, body)
        time.sleep(0.2)


def test_readyz_asks_the_store(tmp_path: Path, chargegw_run: Any) -> None:
    rport = free_port()
    store = (
        f'[applications.config.store]\nbackend = "redis"\nurl = "redis://127.0.0.1:{rport}/0"\n'
        "timeout = 0.5\n"
    )
    apps = (
        '[[applications]]\napp_id = 4\nhandler = "chargegw.workers.charging.gy:CreditControlApp"\n'
    )
    with _redis(rport, tmp_path) as server:
        with chargegw_run(tmp_path, workers=1, extra=METRICS + apps + store, timeout=90) as gw:
            base = _base(gw.output())
            assert "stores answering" in _wait_status(base + "/readyz", 200, 10)
            assert _sum(_samples(_get(base + "/metrics")[1]), "chargegw_worker_store_up") == 1
            server.terminate()
            server.wait(10)
            why = _wait_status(base + "/readyz", 503, 20)
            assert "store" in why, why
            assert _get(base + "/healthz")[0] == 200
            down = _samples(_get(base + "/metrics")[1])
            assert _sum(down, "chargegw_worker_store_up") == 0
            assert _sum(down, "chargegw_ready") == 0
            with _redis(rport, tmp_path):  # it answers again: ready again
                _wait_status(base + "/readyz", 200, 20)
