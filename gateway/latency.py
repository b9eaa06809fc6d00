"""Latency-targeted admission for the worker pool, without sockets or clocks (sans-IO).

A worker's credit bounds how many requests it holds, not how long they wait: at 256 slots
and 5,000 answers a second a full worker keeps each request about 50 ms. An operator with a
latency objective sets `pool.latency_target_ms`; then each worker also has a `limit` (at
most its credit) that this controller moves so that the mean time a request spends with
the worker (gateway to worker and back) stays near the target. What does not fit under the
limit gets 3004 DIAMETER_TOO_BUSY at once, the same shed as a full credit, and the DOIC
report (gateway/overload.py) asks the reacting nodes to send less.

Once every ADAPT_INTERVAL, per worker, from the answers of that interval:
- mean latency above the target: the limit scales by target / mean (Little's law: at a
  steady rate, requests held = rate x time held, so this is the limit at which the time
  held would have been the target), at most halving per step;
- at or below it: the limit grows by the same ratio, at most by MAX_GROWTH per step, so a
  worker that is fast again is trusted with more in steps rather than at once;
- no answer at all: an idle worker's limit grows (nothing waits on it); a busy one that
  answered nothing keeps its limit (a stall says nothing about the rate).

It never goes below MIN_LIMIT: a batch-draining worker needs some requests at a time to stay
efficient, and a target below what a worker can do at all would otherwise shut it off
(then every request beyond MIN_LIMIT is shed: a target is a promise the operator makes,
so keep it above the worker's unloaded latency). A worker held at that floor while its
mean stays above the target is reported (PoolCore.out_of_reach: the gateway's log, `chargegw
status`): the target is out of its reach, and only a higher target or a faster worker gives
back the throughput. Off (target 0) the limit is the credit.
"""

from __future__ import annotations

ADAPT_INTERVAL = 0.05  # seconds between adjustments
MIN_LIMIT = 8
MAX_GROWTH = 1.5


def floor_limit(credit: int) -> int:
    """The lowest limit a worker of this credit gets."""
    return min(MIN_LIMIT, credit)


def next_limit(
    limit: int, credit: int, answered: int, mean_s: float, busy: bool, target_s: float
) -> int:
    """The next limit of one worker (see the module docstring). `answered`: answers in the
    interval, `mean_s` their mean latency in seconds, `busy`: it holds requests now."""
    if answered <= 0:
        if busy:
            return min(limit, credit)
        ratio = MAX_GROWTH
    else:
        ratio = target_s / mean_s if mean_s > 0 else MAX_GROWTH
        ratio = max(0.5, min(MAX_GROWTH, ratio))
    new = int(limit * ratio)
    if ratio > 1 and new == limit:
        new += 1  # small limits must still be able to grow
    return max(floor_limit(credit), min(credit, new))
