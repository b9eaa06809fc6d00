"""`chargegw bench store` runs end to end and writes its JSON report (figures are not judged)."""

from __future__ import annotations

import argparse

import orjson

from chargegw.workers.charging import bench


def test_bench_store_writes_a_report(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    bench.configure(parser)
    out = tmp_path / "bench-store.json"
    args = parser.parse_args(
        ["--backend", "sqlite", "--processes", "1,2", "--batch", "1,4", "--seconds", "0.2",
         "--sessions", "10", "--accounts", "5", "--json", str(out)]
    )  # fmt: skip
    assert bench.run(args) == 0
    report = orjson.loads(out.read_bytes())
    results = report["results"]
    assert [(r["processes"], r["batch"]) for r in results] == [(1, 1), (2, 1), (1, 4), (2, 4)]
    assert all(r["ledger_ok"] and r["ops"] > 0 and r["debits"] > 0 for r in results)
    assert "reserve+debit ops/s" in capsys.readouterr().out


def test_bench_store_cpu_runs_sessions_to_the_end(tmp_path, capsys):
    """`--cpu`: I/U/U/U/T sessions of new subscribers, every request applied, ledger right."""
    parser = argparse.ArgumentParser()
    bench.configure(parser)
    out = tmp_path / "cpu.json"
    args = parser.parse_args(["--cpu", "30", "--batch", "1,20", "--json", str(out)])
    assert bench.run(args) == 0
    results = orjson.loads(out.read_bytes())["results"]
    assert [(r["batch"], r["ccrs"]) for r in results] == [(1, 30), (20, 600)]
    for r in results:
        assert r["ledger_ok"] and r["failed"] == 0 and r["cpu_us_per_ccr"] > 0
        # warm-up and timed requests round-robin over the in-flight sessions, each going
        # I, U, U, U, T: every U and T reports 60 units at 10 per 60
        total = (50 + 30) * r["batch"]
        paid = sum(1 for k in range(total) if (k // bench.CPU_INFLIGHT) % 5)
        assert r["debits"] == 10 * paid
    assert "us CPU per CCR" in capsys.readouterr().out
