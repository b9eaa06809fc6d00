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
