"""The soak's verdict (chargegw.loadtest.soak.judge) on made-up series: what it must fail and
what it must let pass, so that a change to the rule shows here before a 10-minute run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from chargegw.loadtest.soak import TABLE_SLACK, fd_targets, judge


def _series(anon: list[int], fds: int = 30) -> list[dict[str, Any]]:
    return [{"t": float(t), "gateway_anon_kb": a, "gateway_fds": fds} for t, a in enumerate(anon)]


def _tables(sizes: list[int]) -> list[dict[str, Any]]:
    return [{"t": float(t * 5), "dup_cache": n} for t, n in enumerate(sizes)]


def test_growth_during_the_warm_up_is_not_judged_and_flat_passes() -> None:
    anon = [30_000 + 700 * t for t in range(100)] + [100_000] * 400  # warm-up: first 100 s
    failures, figures = judge(_series(anon), _tables([100_000] * 100), 500)
    assert failures == []
    assert figures["gateway_anon_kb"] == {"start": 100_000, "end": 100_000, "max": 100_000}


def test_a_peak_over_ten_percent_fails_even_if_it_went_back() -> None:
    anon = [100_000] * 300 + [110_500] + [100_000] * 199  # one second at +10.5%
    failures, _ = judge(_series(anon), [], 500)
    assert len(failures) == 1 and failures[0].startswith("gateway_anon_kb: 100000 -> 110500")
    ok, _ = judge(_series([100_000] * 300 + [109_900] + [100_000] * 199), [], 500)
    assert ok == []


def test_descriptors_may_not_grow_after_the_warm_up() -> None:
    series = _series([100_000] * 500)
    series[400]["gateway_fds"] = 31
    failures, _ = judge(series, [], 500)
    assert failures == ["gateway_fds: 30 -> 31 descriptors after the warm-up"]


def test_a_table_that_keeps_growing_fails_one_within_the_slack_passes() -> None:
    growing = [1_000 + 200 * i for i in range(100)]  # 5 s apart: +2,400 a minute
    failures, figures = judge(_series([100_000] * 500), _tables(growing), 500)
    assert failures and failures[0].startswith("gateway table dup_cache")
    wobbly = [5_000 + (TABLE_SLACK // 2) * (i % 2) for i in range(100)]
    ok, _ = judge(_series([100_000] * 500), _tables(wobbly), 500)
    assert ok == []


def test_fd_targets_names_what_a_process_holds_open(tmp_path: Path) -> None:
    path = tmp_path / "held"
    with open(path, "w"):
        held = fd_targets(os.getpid())
    assert any(t.endswith(f"={path}") for t in held)
    assert not any(t.endswith(f"={path}") for t in fd_targets(os.getpid()))
