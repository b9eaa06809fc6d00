"""Latency-targeted admission (gateway/latency.py, PoolCore.adapt): each worker's limit
follows the answers' latency towards `pool.latency_target_ms`, and what does not fit under
the limit gets 3004 at once. Sans-IO: the clock is an argument."""

from __future__ import annotations

import pytest

from chargegw.codec import ResultCode
from chargegw.config import ConfigError, load_config
from chargegw.gateway.latency import MAX_GROWTH, MIN_LIMIT, next_limit
from chargegw.gateway.pool import OUT_OF_REACH_INTERVALS, NoWorker, PoolCore

APP = 4
DEADLINE = 4.0


def test_next_limit_scales_by_target_over_latency_within_bounds() -> None:
    # twice the target: half the limit (Little's law at a steady rate)
    assert next_limit(100, 128, 50, 0.010, True, 0.005) == 50
    # ten times the target: at most halved per step
    assert next_limit(100, 128, 50, 0.050, True, 0.005) == 50
    # never below MIN_LIMIT, nor above the credit
    assert next_limit(10, 128, 50, 0.050, True, 0.005) == MIN_LIMIT
    assert next_limit(4, 4, 50, 0.050, True, 0.005) == 4  # a credit below MIN_LIMIT stays
    # faster than the target: grows by the ratio, at most MAX_GROWTH, at most the credit
    assert next_limit(40, 128, 50, 0.004, True, 0.005) == 50
    assert next_limit(40, 128, 50, 0.001, True, 0.005) == int(40 * MAX_GROWTH)
    assert next_limit(100, 128, 50, 0.001, True, 0.005) == 128
    assert next_limit(MIN_LIMIT, 128, 5, 0.0049, True, 0.005) == MIN_LIMIT + 1  # grows by 1
    # no answers: a busy worker keeps its limit, an idle one is trusted with more
    assert next_limit(20, 128, 0, 0.0, True, 0.005) == 20
    assert next_limit(20, 128, 0, 0.0, False, 0.005) == 30


def core(target: float) -> PoolCore:
    c = PoolCore(deadline=DEADLINE, heartbeat_timeout=3.0, latency_target=target)
    c.register(b"w", worker_id="w", credit=128, apps=[APP], now=0.0)
    return c


def offer(c: PoolCore, i: int, now: float, peer: str = "p"):
    return c.offer(peer=peer, hbh=i, app=APP, cmd=272, session_id=b"s%d" % i, raw=b"x",
                   now=now, wall_now=1000.0 + now)  # fmt: skip


def cycle(c: PoolCore, n: int, sent: float, latency: float, start: int = 0) -> list[int]:
    """Place n requests at `sent`, answer them `latency` later, then adapt. The ids placed."""
    ids = [offer(c, start + i, sent, peer=f"p{i}").id for i in range(n)]
    for rid in ids:
        assert c.answer(b"w", rid, sent + latency) is not None
    c.adapt()
    return ids


def test_slow_answers_shrink_the_limit_and_the_excess_gets_3004_at_once() -> None:
    c = core(0.005)
    w = c.workers[b"w"]
    cycle(c, 20, 0.0, 0.020)  # 4x the target: halved
    assert w.limit == 64 and w.available == 64
    cycle(c, 20, 1.0, 0.020, start=100)
    assert w.limit == 32
    placed = [offer(c, 200 + i, 2.0, peer=f"p{i}") for i in range(40)]  # none holds a share
    refused = [p for p in placed if not hasattr(p, "id")]
    assert len(placed) - len(refused) == 32  # the credit (128) would have taken all 40
    assert {r.result_code for r in refused} == {ResultCode.DIAMETER_TOO_BUSY}
    assert c.counters.shed_busy == 8
    assert c.occupancy() == 1.0  # full at its limit, not at a quarter of its credit
    with pytest.raises(NoWorker):
        c.place(peer="p", hbh=1, app=APP, cmd=272, session_id=b"x", raw=b"", now=2.0,
                wall_now=1002.0)  # fmt: skip


def test_fast_answers_give_the_slots_back_up_to_the_credit() -> None:
    c = core(0.005)
    w = c.workers[b"w"]
    for k in range(4):
        cycle(c, 8, float(k), 0.050, start=100 * k)
    assert w.limit == MIN_LIMIT
    for k in range(4, 20):
        cycle(c, MIN_LIMIT, float(k), 0.001, start=100 * k)
    assert w.limit == w.credit == 128 and w.available == 128


def test_withheld_slots_still_reconcile_with_the_workers_free_count() -> None:
    c = core(0.005)
    w = c.workers[b"w"]
    cycle(c, 20, 0.0, 0.020)
    held = [offer(c, 100 + i, 1.0) for i in range(10)]
    assert w.limit == 64 and w.available == 54
    # the worker granted 128 and holds 10: it reports 118 free, having received all sent
    assert c.reconcile(b"w", w.gen, 118, w.sent) is True
    assert c.reconcile(b"w", w.gen, 54, w.sent) is False
    # the limit may fall below what is held: nothing more is placed until enough is answered
    for _ in range(3):
        cycle(c, 0, 0.0, 0.0)  # no answers while busy: the limit holds
    assert w.limit == 64
    for p in held:
        c.answer(b"w", p.id, 1.5)  # 500 ms each: halved
    c.adapt()
    assert w.limit == 32 and w.available == 32


def test_the_fair_share_is_taken_of_the_limit() -> None:
    c = core(0.005)
    w = c.workers[b"w"]
    cycle(c, 20, 0.0, 0.020)
    cycle(c, 20, 1.0, 0.020, start=100)
    assert w.limit == 32
    placed = 0
    for i in range(32):
        if hasattr(offer(c, 300 + i, 2.0, peer="flood"), "id"):
            placed += 1
    assert placed == 24 and c.counters.shed_fair >= 1  # 32 - 32 // 4 kept for the others
    assert hasattr(offer(c, 400, 2.0, peer="good"), "id")


def test_off_by_default_the_limit_is_the_credit() -> None:
    c = PoolCore(deadline=DEADLINE, heartbeat_timeout=3.0)
    c.register(b"w", worker_id="w", credit=128, apps=[APP], now=0.0)
    cycle(c, 20, 0.0, 1.0)
    w = c.workers[b"w"]
    assert w.limit == 128 and w.available == 128
    assert c.status(0.0)["workers"][0]["limit"] == 128


def test_a_target_the_worker_cannot_meet_at_its_floor_is_reported() -> None:
    c = core(0.003)
    w = c.workers[b"w"]
    k = 0
    while w.limit > MIN_LIMIT:  # 6 ms answers: halved down to the floor
        cycle(c, MIN_LIMIT, float(k), 0.006, start=100 * k)
        k += 1
    assert c.out_of_reach() == [] and w.floored == 1  # the step that reached the floor
    for _ in range(OUT_OF_REACH_INTERVALS - 2):
        cycle(c, MIN_LIMIT, float(k), 0.006, start=100 * k)
        cycle(c, 0, float(k), 0.0)  # an interval without answers changes nothing
        k += 1
    assert c.out_of_reach() == []
    cycle(c, MIN_LIMIT, float(k), 0.006, start=100 * k)
    k += 1
    slow = c.out_of_reach()
    assert [(ident, round(mean, 6), floor) for ident, mean, floor in slow] == [
        ("w", 0.006, MIN_LIMIT)
    ]
    row = c.status(0.0)["workers"][0]
    assert row["target_out_of_reach"] is True and row["latency_ms"] == 6.0
    # one interval under the target: in reach again, and the count starts over
    cycle(c, MIN_LIMIT, float(k), 0.002, start=100 * k)
    assert c.out_of_reach() == [] and w.floored == 0
    assert c.status(0.0)["workers"][0]["target_out_of_reach"] is False


def test_slow_answers_above_the_floor_are_not_out_of_reach() -> None:
    # a worker slower than the target but still above its floor is being shrunk, not stuck
    c = core(0.003)
    w = c.workers[b"w"]
    for k in range(OUT_OF_REACH_INTERVALS + 5):
        cycle(c, 20, float(k), 0.004, start=100 * k)
        w.available += 64 - w.limit  # held up (as bursts of fast answers would)
        w.limit = 64
    assert c.out_of_reach() == [] and w.floored == 0
    c.set_latency_target(0.0)
    assert c.out_of_reach() == []


@pytest.mark.parametrize("value", ["-1", "4000", "5000.5"])
def test_a_target_outside_zero_to_the_deadline_is_refused(tmp_path, value: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[pool]\ndeadline = 4.0\nlatency_target_ms = {value}\n")
    with pytest.raises(ConfigError, match="latency_target_ms"):
        load_config(cfg)


def _stuck_core() -> PoolCore:
    c = core(0.003)
    for k in range(OUT_OF_REACH_INTERVALS + 10):
        cycle(c, MIN_LIMIT, float(k), 0.006, start=100 * k)
    assert c.out_of_reach()
    return c


def test_the_gateway_says_an_unreachable_target_once_a_minute(caplog) -> None:
    from types import SimpleNamespace

    from chargegw.gateway.frontend import REACH_LOG_EVERY, Gateway

    gw = SimpleNamespace(core=_stuck_core(), _reach_said=-REACH_LOG_EVERY)
    with caplog.at_level("WARNING", logger="chargegw.gateway"):
        Gateway._say_out_of_reach(gw, 100.0)  # type: ignore[arg-type]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and gw._reach_said == 100.0
    assert (
        "pool.latency_target_ms 3 is out of reach for 1 worker(s): w answers in 6.0 ms" in said[0]
    )
    assert f"no more than {MIN_LIMIT} requests in flight" in said[0]
    # nothing to say for a worker in reach
    gw2 = SimpleNamespace(core=core(0.003), _reach_said=-REACH_LOG_EVERY)
    caplog.clear()
    Gateway._say_out_of_reach(gw2, 100.0)  # type: ignore[arg-type]
    assert caplog.records == [] and gw2._reach_said == -REACH_LOG_EVERY


def test_status_shows_a_worker_out_of_the_targets_reach() -> None:
    from chargegw.gateway.status_workers import render_workers

    c = _stuck_core()
    doc = {"pool": c.status(0.0)}
    lines = render_workers(doc, {})
    row = next(line for line in lines if line.strip().startswith("w "))
    assert "latency target out of reach (6.0 ms at its floor)" in row
    c.set_latency_target(0.0)
    row = next(
        ln for ln in render_workers({"pool": c.status(0.0)}, {}) if ln.strip().startswith("w ")
    )
    assert "out of reach" not in row
