"""`chargegw bench node` runs end to end (a smoke run: structure, not speed) and its maths."""

from __future__ import annotations

import argparse

import orjson
import pytest

from chargegw.peer import bench
from chargegw.peer.loop import uvloop_available


def test_summary_and_percentiles() -> None:
    lat = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    s = bench._summary(lat, elapsed=2.0, errors=1)
    assert s["requests"] == 100 and s["rps"] == 50.0 and s["errors"] == 1
    assert s["p50_ms"] == 51.0 and s["p99_ms"] == 99.0


def test_best_within_one_ms_against_python_diameter_peak() -> None:
    report = {
        "ours": {
            "asyncio": [
                {"concurrency": 1, "rps": 5000.0, "p50_ms": 0.2},
                {"concurrency": 50, "rps": 20000.0, "p50_ms": 2.5},
            ],
            "uvloop": [{"concurrency": 10, "rps": 15000.0, "p50_ms": 0.6}],
        },
        "python_diameter": {
            "results": [{"concurrency": 10, "rps": 1200.0}, {"concurrency": 50, "rps": 1500.0}]
        },
    }
    best = bench._best_within(report, 1.0)
    assert best is not None
    assert (best["loop"], best["concurrency"], best["x_python_diameter_peak"]) == (
        "uvloop",
        10,
        10.0,
    )


@pytest.mark.timeout(120)
def test_bench_node_smoke_run(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    bench.configure(parser)
    out = f"{tmp_path}/node.json"
    args = parser.parse_args(
        [
            "--levels",
            "1,4",
            "--duration",
            "0.3",
            "--warmup",
            "0.1",
            "--loop",
            "auto",
            "--no-python-diameter",
            "--json",
            out,
        ]
    )
    assert bench.run(args) == 0
    report = orjson.loads(open(out, "rb").read())
    kind = "uvloop" if uvloop_available() else "asyncio"
    rows = report["ours"][kind]
    assert [r["concurrency"] for r in rows] == [1, 4]
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in rows)
    assert "req/s" in capsys.readouterr().out
