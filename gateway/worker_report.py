"""What a worker last reported about itself, as a row of `chargegw status` (per worker).

The gateway keeps each registered worker's latest `Stats` (gateway/metrics.py, `_Seen`)
for its Prometheus totals; this turns one into plain JSON for the status document, at the
moment an operator asks: nothing here runs per request or per heartbeat.

The figures are the worker's own, cumulative since its process started (`boot`), over
every gateway it serves: requests it finished, its error answers for a failure of its own
and the 3004 among them, its charging store's batch commits (count, summed seconds and
the histogram over protocol.STORE_BUCKETS, from which `chargegw status` derives a mean and
p99), the store operations that met the store unavailable, and the shards it owns. A count
an older worker does not send is null. Everything was bounds-checked on arrival.
"""

from __future__ import annotations

from typing import Any

from chargegw.ipc import protocol as pp

_STORE = {pp.STORE_OK: "ok", pp.STORE_DOWN: "down", pp.STORE_NONE: "none"}


def _count(v: int) -> int | None:
    return None if v == pp.NOT_SENT else v


def worker_row(seen: Any, now: float) -> dict[str, Any]:
    """{"report": ...} for a worker's status row: None before its first Ready was counted,
    else its store flag and the age of its last report, and its figures once a Stats came."""
    if seen is None:
        return {"report": None}
    rep: dict[str, Any] = {
        "age_s": round(max(0.0, now - seen.at), 3),
        "store": _STORE.get(seen.store, "none"),
    }
    if seen.boot is not None:
        counts = list(seen.store_counts)
        rep.update(
            boot=seen.boot,
            handled=_count(seen.handled),
            errors=_count(seen.errors),
            busy=_count(seen.busy),
            shards=seen.shards,
            store_commits=sum(counts),
            store_commit_s=round(seen.store_sum, 6),
            store_commit_counts=counts,
            store_errors=seen.store_errors,
        )
    return {"report": rep}
