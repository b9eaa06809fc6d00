"""The worker's own figures, reported to every gateway as cumulative `Stats` messages.

The gateway exports them (gateway/metrics.py), summed over its workers, so Prometheus
scrapes one endpoint and never a worker. What is counted here:

- time in the worker per application, from the dispatch of a drained batch to its answer
  being queued for the gateway (a histogram over protocol.WORKER_TIME_BUCKETS);
- the charging store's batch commits (latency histogram, errors) and whether the store
  answered its last operation;
- the OCS's granted and used units and debited and refunded micro-units by rating group,
  at most MAX_RGS groups per worker (the rest fold into protocol.RG_OTHER);
- error answers for a failure of the worker's own (`failed`: a handler's exception, a
  store that did not answer), and how many were 3004, for `chargegw status`.

Why cumulative and since process start: a Stats that is lost, repeated or read twice
changes nothing, and the gateway turns each into a delta against the previous one of the
same `boot`, so its totals stay monotonic across worker restarts and drops.

The request path pays one clock read per application batch and, per answer (or per batch
of answers that left together), one bisect and two increments; everything else happens
once a heartbeat in `message`; error answers cost an increment on their own (error) path
only. One `STATS` per process: the applications' hooks
(workers/charging/gy.py, sy.py) reach it without being handed anything.
"""

from __future__ import annotations

import bisect
import secrets
from time import perf_counter
from typing import Any

from chargegw.codec.constants import ResultCode
from chargegw.ipc import protocol as pp

MAX_RGS = pp.MAX_STATS_RGS - 1  # rating groups counted apart; the rest are RG_OTHER
_MAX_COUNT = (1 << 62) - 1
_TOO_BUSY = int(ResultCode.DIAMETER_TOO_BUSY)


class AppTimer:
    """One application's time-in-worker histogram (per-bucket counts; the last: beyond)."""

    __slots__ = ("app", "counts", "sum")

    def __init__(self, app: int) -> None:
        self.app = app
        self.counts = [0] * (len(pp.WORKER_TIME_BUCKETS) + 1)
        self.sum = 0.0

    def since(self, t0: float, n: int = 1) -> None:
        """`n` answers queued now for requests dispatched at `t0` (perf_counter)."""
        dt = perf_counter() - t0
        self.counts[bisect.bisect_left(pp.WORKER_TIME_BUCKETS, dt)] += n
        self.sum += dt * n


class WorkerStats:
    """Everything a worker reports in `Stats`."""

    def __init__(self) -> None:
        self.boot = secrets.randbits(62)  # this process's figures (a restart starts anew)
        self.apps: dict[int, AppTimer] = {}
        self.store_counts = [0] * (len(pp.STORE_BUCKETS) + 1)
        self.store_sum = 0.0
        self.store_errors = 0
        self.store = pp.STORE_NONE
        self.units: dict[int, list[int]] = {}  # rating group -> [granted, used, debited, refunded]
        self._rows: dict[str, list[int]] = {}  # service key ("rg:sid") -> its row in `units`
        self.errors = 0  # error answers for a failure here (see `failed`)
        self.busy = 0  # of those, 3004 DIAMETER_TOO_BUSY

    def timer(self, app: int) -> AppTimer:
        t = self.apps.get(app)
        if t is None:
            t = self.apps[app] = AppTimer(app)
        return t

    # The store -------------------------------------------------------------------------

    def store_answered(self, ok: bool) -> None:
        """The store's last operation answered (True) or failed to (False)."""
        self.store = pp.STORE_OK if ok else pp.STORE_DOWN

    def store_failed(self) -> None:
        """A batch commit (or another store operation) met an unavailable store."""
        self.store_errors += 1
        self.store = pp.STORE_DOWN

    def failed(self, result_code: int, n: int = 1) -> None:
        """`n` requests answered `result_code` for a failure in this worker: a handler's
        exception, or a store that did not answer (not a request's own fault, such as a
        malformed one or an exhausted balance)."""
        self.errors += n
        if result_code == _TOO_BUSY:
            self.busy += n

    def committed(self, seconds: float, outcomes: Any, *, ok: bool = True) -> None:
        """One batch commit took `seconds`; count its outcomes' units by rating group.
        An outcome is a charging Outcome (duck-typed: `replay`, `services` with `key`,
        `granted`, `used`, `charged`) or an exception for an operation that failed alone;
        a replay was counted when it was first applied. `ok`: the store answered (not when
        one of a batch's operations met it unavailable, counted by `store_failed`)."""
        self.store_counts[bisect.bisect_left(pp.STORE_BUCKETS, seconds)] += 1
        self.store_sum += seconds
        if ok:
            self.store = pp.STORE_OK
        rows = self._rows
        for out in outcomes:
            if getattr(out, "replay", None) is not False:  # an exception, or a replay
                continue
            for svc in out.services:
                charged = svc.charged
                if not (svc.granted or svc.used or charged):
                    continue
                row = rows.get(svc.key)
                if row is None:
                    if len(rows) >= 4096:  # keys are the peer's to choose: bounded
                        rows.clear()
                    row = rows[svc.key] = self._row(svc.key)
                if charged < 0:  # a refund: money given back, units returned
                    row[3] += -charged
                    continue
                row[0] += svc.granted
                row[1] += svc.used
                row[2] += charged

    def _row(self, key: str) -> list[int]:
        head = key.partition(":")[0]
        try:
            rg = int(head) if head else pp.RG_OTHER
        except ValueError:
            rg = pp.RG_OTHER
        if rg < 0 or rg > 0xFFFFFFFF:
            rg = pp.RG_OTHER
        row = self.units.get(rg)
        if row is None:
            if len(self.units) >= MAX_RGS and rg != pp.RG_OTHER:
                rg = pp.RG_OTHER
                row = self.units.get(rg)
            if row is None:
                row = self.units[rg] = [0, 0, 0, 0]
        return row

    # The message -----------------------------------------------------------------------

    def message(self, shards: int, handled: int = pp.NOT_SENT) -> pp.Stats:
        """The cumulative figures now (clamped to what the gateway accepts); `handled`: the
        requests the worker finished (the runtime counts them)."""
        return pp.Stats(
            boot=self.boot,
            apps=[
                pp.AppTime(t.app, [min(c, _MAX_COUNT) for c in t.counts], t.sum)
                for t in list(self.apps.values())[: pp.MAX_STATS_APPS]
            ],
            store_counts=[min(c, _MAX_COUNT) for c in self.store_counts],
            store_sum=self.store_sum,
            store_errors=min(self.store_errors, _MAX_COUNT),
            units=[
                pp.Units(rg, *(min(v, _MAX_COUNT) for v in row))
                for rg, row in self.units.items()
            ],
            shards=shards,
            store=self.store,
            handled=min(handled, _MAX_COUNT),
            errors=min(self.errors, _MAX_COUNT),
            busy=min(self.busy, _MAX_COUNT),
        )


STATS = WorkerStats()
