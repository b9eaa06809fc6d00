"""`chargegw bench scaleout`: G gateways and W workers with the real OCS, driven by the
bundled generator (loadtest/scaleout.py). The arithmetic, and one short run of two gateways
sharing their workers on loopback: every request answered, the ledger reconciled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from chargegw.loadtest.scaleout import gateways_for, split, summarize, table

pytestmark = pytest.mark.timeout(240)


def test_gateways_default_to_one_per_two_workers() -> None:
    assert [gateways_for(n, 0) for n in (1, 2, 3, 4, 8)] == [1, 1, 2, 2, 4]
    assert gateways_for(8, 3) == 3


def test_in_flight_is_split_evenly_over_the_gateways() -> None:
    assert split(100, 3) == [34, 33, 33]
    assert split(50, 1) == [50]
    assert sum(split(400, 4)) == 400


def test_efficiency_is_per_worker_against_the_first_step() -> None:
    steps = [
        {"workers": 1, "gateways": 1, "cca_per_s": 1000.0, "workers_us_per_ccr": 100.0},
        {"workers": 2, "gateways": 1, "cca_per_s": 1800.0, "workers_us_per_ccr": 110.0},
        {"workers": 8, "gateways": 4, "cca_per_s": 6960.0, "workers_us_per_ccr": 112.0},
    ]
    sm = summarize(steps)
    assert [s["efficiency"] for s in steps] == [1.0, 0.9, 0.87]
    assert steps[2]["worker_cpu_vs_first"] == 1.12
    assert sm["efficiency"] == 0.87 and sm["met"] is True
    steps[2]["oversubscribed"] = True  # more processes than cores: sharing, not scaling
    assert summarize(steps)["met"] is False
    steps[2]["oversubscribed"] = False
    steps[2]["cca_per_s"] = 6000.0
    assert summarize(steps)["met"] is False  # 0.75
    text = table({"cores": 16, "steps": steps, "summary": summarize(steps)})
    assert "efficiency 1 -> 8 workers: 0.75 (target 0.85, not met)" in text
    assert summarize([{"workers": 1, "cca_per_s": 0.0}]) == {}
    summarize(steps, otp=2000.0)  # the anchor's CCA/s
    assert [s["ratio_otp"] for s in steps] == [0.5, 0.9, 3.0]
    assert "x OTP" in table({"cores": 16, "steps": steps, "anchor": {"skipped": "no escript"}})


def test_the_anchor_is_otps_server_under_the_same_generator(tmp_path: Path) -> None:
    import argparse
    import shutil

    from chargegw.gateway.bench import CACHE, PEERS
    from chargegw.loadtest.scaleout import anchor, configure, ports_for

    if not shutil.which("escript") or not (CACHE / "erl").exists():
        pytest.skip("escript or OTP's diameter peers missing (../shared/peers/setup.sh erlang)")
    parser = argparse.ArgumentParser()
    configure(parser)
    a = parser.parse_args(["--duration", "1.5", "--warmup", "0.5", "--peers-dir", str(PEERS)])
    res = anchor(tmp_path, a, ports_for(1, 0)[0])
    assert res["load_rc"] == 0 and res["cca_per_s"] > 0, res
    assert res["server_us_per_ccr"] > 0 and res["in_flight"] == 50


def test_two_gateways_share_their_workers_under_the_generator(tmp_path: Path) -> None:
    out = tmp_path / "so.json"
    p = subprocess.run(
        [sys.executable, "-m", "chargegw.cli", "bench", "scaleout", "--workers", "1,2",
         "--gateways", "2", "--duration", "2", "--warmup", "0.5", "--no-anchor",
         "--concurrency-per-worker", "10", "--base-port", "0", "--json", str(out),
         "--keep", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=200,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    rep = orjson.loads(out.read_bytes())
    assert [s["workers"] for s in rep["steps"]] == [1, 2]
    for s in rep["steps"]:
        assert s["gateways"] == 2 and s["errors"] == 0 and s["ledger_ok"] is True
        assert len(s["cca_per_s_each"]) == 2 and min(s["cca_per_s_each"]) > 0  # both served
        assert s["gateway_us_per_ccr"] > 0 and s["workers_us_per_ccr"] > 0
        assert s["load_rc"] == [0, 0]
    assert rep["summary"]["from_workers"] == 1 and rep["summary"]["to_workers"] == 2
    assert "chargegw bench scaleout" in p.stdout
