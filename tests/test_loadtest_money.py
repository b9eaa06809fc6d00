"""The load generator's money check against `chargegw run` with the built-in OCS and SQLite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chargegw.loadtest.money import expected_debits, parse_tariffs
from chargegw.loadtest.scenarios import preset

CLI = [sys.executable, "-m", "chargegw.cli"]


@pytest.fixture
def gateway(tmp_path, chargegw_run):
    with chargegw_run(tmp_path, workers=1, timeout=30) as gw:
        yield gw.port, gw.cfg, tmp_path


def _load(port: int, cfg: Path, out: Path, *extra: str) -> tuple[int, dict]:
    r = subprocess.run(
        [*CLI, "load", "--port", str(port), "--scenario", "gy", "--updates", "2",
         "--rating-group", "1", "--rating-group", "100", "--sessions", "60",
         "--concurrency", "10", "--subscribers", "20", "--timeout", "10", "--quiet",
         "--verify-ledger", "--ledger-config", str(cfg), "--json", str(out), *extra],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    return r.returncode, json.loads(out.read_text())


def test_verify_ledger_matches_and_catches_a_wrong_tariff(gateway) -> None:
    port, cfg, tmp = gateway
    rc, rep = _load(port, cfg, tmp / "a.json")
    m = rep["money"]
    assert rep["summary"]["result_codes"] == {"2001": 240}, rep["summary"]
    # 60 sessions x (2 CCR-U + CCR-T) x 2 rating groups x one started MiB at 0.01
    assert m["expected"]["low_micro"] == m["expected"]["high_micro"] == 60 * 3 * 2 * 10_000
    assert m["rated_delta_micro"] == 60 * 3 * 2 * 10_000
    assert m["passed"] and m["ledger_ok"] and rc == 0
    # the generator believing in another tariff must fail the run (exit 1), not pass it
    rc, rep = _load(port, cfg, tmp / "b.json", "--expect-tariff", "1=0.01/1048576",
                    "--expect-tariff", "100=0.02/1048576")
    assert rep["money"]["passed"] is False and rc == 1
    assert rep["money"]["rated_delta_micro"] == 60 * 3 * 2 * 10_000


def test_expected_debits_widen_with_unknown_outcomes() -> None:
    scn = preset("gy", rating_groups=[100], used_octets=3 * 1_048_576 + 1)
    t = parse_tariffs(["100=0.01/1048576"])
    e = expected_debits(scn, {"0": {"answered_2001": 10, "unknown": 2}}, t)
    assert (e["low_micro"], e["high_micro"]) == (10 * 40_000, 12 * 40_000)  # 4 started blocks
    with pytest.raises(ValueError, match="rating group 7"):
        expected_debits(preset("gy", rating_groups=[7]), {}, t)
