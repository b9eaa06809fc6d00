"""The generator's latency figures: its own walk over a histogram's populated buckets must
give exactly what hdrh's getters give (they walk every bucket, 113 ms a call, which once a
second stalled the generator's sends), for any recorded values."""

from __future__ import annotations

import random

import pytest
from hdrh.histogram import HdrHistogram

from chargegw.loadtest import stats


def _hdrh(h: HdrHistogram) -> dict[str, float | None]:
    """The figures from hdrh's own (slow) getters."""
    pv = h.get_percentile_to_value_dict([p for _, p in stats.PERCENTILES])
    return {
        "min": round(h.get_min_value() / 1000, 3),
        "mean": round(h.get_mean_value() / 1000, 3),
        **{name: round(pv[p] / 1000, 3) for name, p in stats.PERCENTILES},
        "max": round(h.get_max_value() / 1000, 3),
    }


DRAWS = {
    "small": lambda r: r.randint(0, 50),
    "uniform": lambda r: r.randint(100, 200_000),
    "exponential": lambda r: int(r.expovariate(1 / 3000)),
    "extremes": lambda r: r.choice([0, 1, 7, 12_345, 3_000_000_000]),
}


@pytest.mark.parametrize("kind", sorted(DRAWS))
@pytest.mark.parametrize("n", [1, 2, 3, 100, 5000])
def test_latency_figures_equal_hdrh(kind: str, n: int) -> None:
    r = random.Random(f"{kind}-{n}")
    h = stats.new_histogram()
    for _ in range(n):
        h.record_value(DRAWS[kind](r))
    want = _hdrh(h)
    assert stats.latency_ms(h) == want
    got = stats.percentiles_ms(h)
    assert got == {k: want[k] for k in got}
    assert stats.p99_ms(h) == round(h.get_value_at_percentile(99.0) / 1000, 3)


def test_empty_histogram_has_no_figures() -> None:
    h = stats.new_histogram()
    assert set(stats.latency_ms(h).values()) == {None}
    assert set(stats.percentiles_ms(h).values()) == {None}
    assert stats.p99_ms(h) is None


def test_interval_rows_merge_exactly() -> None:
    """Two processes' rows for one second: the merged percentiles are those of the union."""
    r = random.Random(7)
    a, b, both = stats.Interval(3), stats.Interval(3), stats.new_histogram()
    for iv in (a, b):
        for _ in range(2000):
            v = r.randint(200, 90_000)
            iv.hist.record_value(v)
            both.record_value(v)
        iv.sent = iv.answered = 2000
    (row,) = stats.merge_intervals([a.to_dict(), b.to_dict()])
    want = _hdrh(both)
    assert row["t"] == 4 and row["sent"] == 4000
    assert {k: row[k] for k in ("p50", "p90", "p99", "max")} == {
        k: want[k] for k in ("p50", "p90", "p99", "max")
    }
