"""`chargegw status`: rates from two samples on the gateway's clock, latency percentiles
from the front end's histogram, `--json`, and a non-zero exit when no worker is registered."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from chargegw.gateway.bench import Proc
from chargegw.gateway.metrics import AnswerStats, quantile, status_section
from chargegw.gateway.status_cli import EX_NO_WORKER, derive, render
from chargegw.workers.charging.testing import free_port

CLI = [sys.executable, "-m", "chargegw.cli"]


def _doc(stats: AnswerStats, clock: float, placed: int, workers: int = 1) -> dict[str, Any]:
    fe = status_section(stats)
    fe["clock_s"] = clock
    return {
        "uptime_s": clock,
        "pool": {
            "workers": [{"id": f"w{i}"} for i in range(workers)],
            "counters": {"placed": placed},
        },
        "front_end": fe,
    }


def test_quantile_interpolates_inside_the_bucket() -> None:
    bounds = [0.001, 0.01, 0.1]
    assert quantile(0.5, bounds, [0, 0, 0, 0]) is None
    # 100 answers all in (0.001, 0.01]: the median is halfway through that bucket.
    assert quantile(0.5, bounds, [0, 100, 0, 0]) == pytest.approx(0.0055)
    # 90 fast and 10 slow: p90 is the top of the first bucket, p99 inside the third.
    assert quantile(0.9, bounds, [90, 0, 10, 0]) == pytest.approx(0.001)
    assert quantile(0.99, bounds, [90, 0, 10, 0]) == pytest.approx(0.01 + 0.09 * 0.9)
    # Beyond the last bound: the last bound (no upper edge to interpolate to).
    assert quantile(0.99, bounds, [0, 0, 0, 5]) == 0.1


def test_rates_and_percentiles_come_from_the_two_samples() -> None:
    s = AnswerStats()
    for _ in range(1000):  # before the interval: slow answers
        s.request(4, 272)
        s.answer(4, 272, 2001, 0.2)
    first = _doc(s, 100.0, placed=1000)
    for _ in range(500):  # in it: 500 fast ones and 10 errors, over 2 s
        s.request(4, 272)
        s.answer(4, 272, 2001, 0.0007)
    for _ in range(10):
        s.request(4, 272)
        s.answer(4, 272, 3004, 0.0)
    second = _doc(s, 102.0, placed=1500)
    d = derive(first, second)
    assert d["interval_s"] == 2.0
    assert d["rates"]["requests"] == 255.0 and d["rates"]["answers"] == 255.0
    assert d["rates"]["answers.2001"] == 250.0 and d["rates"]["answers.3004"] == 5.0
    assert d["rates"]["pool.placed"] == 250.0
    # The interval's answers were all under 1 ms: the 200 ms ones before it do not count.
    assert d["latency"]["window"] == "interval" and d["latency"]["answers"] == 510
    assert d["latency"]["p99_ms"] <= 1.0
    text = render(second, d)
    assert "per second over the last 2s" in text
    assert "answer latency (interval, 510 answers)" in text
    assert "answers.3004" in text and "5.0/s" in text
    # One sample: no rates, percentiles since start (the slow ones dominate p50).
    one = derive(None, second)
    assert "rates" not in one and one["latency"]["window"] == "since start"
    assert one["latency"]["p50_ms"] > 100
    # A gateway that restarted between the samples: counters went down, no rates.
    assert "rates" not in derive(second, _doc(AnswerStats(), 1.0, placed=3))


def _wait_status(args: list[str], want_rc: int, timeout: float = 60.0) -> Any:
    end = time.monotonic() + timeout
    while True:
        out = subprocess.run([*CLI, "status", *args], capture_output=True, text=True, timeout=60)
        if out.returncode == want_rc or time.monotonic() > end:
            return out
        time.sleep(0.3)


def test_status_during_load_shows_rates_and_latency(tmp_path: Path, chargegw_run: Any) -> None:
    with chargegw_run(tmp_path, workers=1) as gw:
        load = subprocess.Popen(
            [*CLI, "load", "--port", str(gw.port), "--sessions", "100000", "--updates", "1",
             "--concurrency", "10", "--timeout", "10", "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(1.0)  # let the load connect and run
            out = subprocess.run(
                [*CLI, "status", "--config", str(gw.cfg), "--json", "--interval", "1.5"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            text = subprocess.run(
                [*CLI, "status", "--config", str(gw.cfg), "--interval", "0.5"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
        finally:
            load.kill()
            load.wait()
    assert out.returncode == 0, out.stderr
    doc = orjson.loads(out.stdout)
    assert len(doc["pool"]["workers"]) == 1  # the gateway's document, unchanged
    assert 1.4 <= doc["interval_s"] <= 3.0
    rates = doc["rates"]
    assert rates["requests"] > 10, rates  # the load is running
    # Every request the front end took is placed on the worker and answered: the rates
    # agree to within what is in flight at either sample.
    assert abs(rates["pool.placed"] - rates["requests"]) <= 20 / doc["interval_s"] + 1, rates
    assert rates.get("answers.2001", 0) > 0, rates
    lat = doc["latency"]
    assert lat["window"] == "interval" and lat["answers"] > 10
    assert 0 < lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"] < 10_000
    assert text.returncode == 0, text.stderr
    assert "answer latency (interval" in text.stdout and "/s" in text.stdout


def test_status_exits_non_zero_when_no_worker_is_registered(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[[listen]]\naddress = "127.0.0.1"\nport = {port}\n'
    )
    gw = Proc([*CLI, "gateway", "--config", str(cfg)])
    try:
        gw.wait_line(r"waiting for 1 worker to register", 60)
        for args in (["--interval", "0"], ["--json", "--interval", "0.2"]):
            out = _wait_status(["--config", str(cfg), *args], EX_NO_WORKER)
            assert out.returncode == EX_NO_WORKER, (out.returncode, out.stderr)
            assert "no worker is registered" in out.stderr
            assert "3002" in out.stderr
        doc = orjson.loads(out.stdout)  # --json still prints the document
        assert doc["pool"]["workers"] == []
    finally:
        gw.stop()
