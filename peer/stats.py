"""Per-peer and per-command statistics: counts, rates over the last interval, latency percentiles.

Kept cheap for the hot path: each counted event is a few integer increments on a slotted
object, and a latency is one `bisect` into fixed bucket bounds and one list increment (no
allocation per request). Rates and the last interval's percentiles are made when the adapter
calls `roll` (the Node's housekeeping tick, every `INTERVAL` seconds), not per request.

Latency is that of requests this node sent: from the first send to the answer (a failover
resend keeps the first send's time). Percentiles are a bucket's upper bound, so they are
accurate to one bucket (about 19 %, four buckets per doubling), from 10 us to 2 min.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

INTERVAL = 5.0  # seconds between rolls: the "last interval" of rates and percentiles
MAX_COMMANDS = 512  # per-command rows kept; later (app, code) pairs share one "other" row

_STEP = 2**0.25
BOUNDS_S: tuple[float, ...] = tuple(1e-5 * _STEP**i for i in range(96))  # 10 us .. ~2.8 min
_NB = len(BOUNDS_S) + 1  # the last bucket: beyond the bounds
_CLASSES = ("other", "1xxx", "2xxx", "3xxx", "4xxx", "5xxx")


def rc_class(rc: int | None) -> int:
    """The index of a Result-Code's class in the answer counters (0: none or out of range)."""
    if rc is None:
        return 0
    k = rc // 1000
    return k if 1 <= k <= 5 else 0


class Latency:
    """A fixed-bucket histogram of seconds: the current interval's, the last one's, and all."""

    __slots__ = ("cur", "last", "total")

    def __init__(self) -> None:
        self.cur = [0] * _NB
        self.last = [0] * _NB
        self.total = [0] * _NB

    def add(self, seconds: float) -> None:
        self.cur[bisect_left(BOUNDS_S, seconds)] += 1

    def roll(self) -> None:
        cur, total = self.cur, self.total
        for i, n in enumerate(cur):
            if n:
                total[i] += n
        self.last, self.cur = cur, self.last
        self.cur[:] = [0] * _NB

    @staticmethod
    def summary(counts: list[int]) -> dict[str, Any]:
        """{"count", "p50", "p90", "p99"} in milliseconds (None without samples)."""
        n = sum(counts)
        out: dict[str, Any] = {"count": n, "p50": None, "p90": None, "p99": None}
        if not n:
            return out
        for name, q in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
            want = q * n
            seen = 0
            for i, c in enumerate(counts):
                seen += c
                if seen >= want and c:
                    # beyond the last bound: reported as that bound (JSON has no infinity)
                    out[name] = round(BOUNDS_S[min(i, len(BOUNDS_S) - 1)] * 1000.0, 4)
                    break
        return out

    def to_dict(self) -> dict[str, Any]:
        everything = [a + b for a, b in zip(self.total, self.cur, strict=True)]
        return {"last_interval": self.summary(self.last), "all": self.summary(everything)}


class Counters:
    """One peer's, or one (application, command)'s, counts. `answers_in` / `answers_out` are
    indexed by Result-Code class (`rc_class`); `answers_out` counts as "other" the answers a
    raw handler hands back as octets (the node does not read them)."""

    __slots__ = (
        "requests_in",
        "requests_out",
        "answers_in",
        "answers_out",
        "timeouts",
        "latency",
        "_prev",
        "_rates",
    )

    def __init__(self) -> None:
        self.requests_in = 0
        self.requests_out = 0
        self.answers_in = [0] * 6
        self.answers_out = [0] * 6
        self.timeouts = 0
        self.latency = Latency()
        self._prev = (0, 0, 0, 0, 0)
        self._rates: tuple[float, ...] | None = None

    def _now_counts(self) -> tuple[int, int, int, int, int]:
        return (
            self.requests_in,
            self.requests_out,
            sum(self.answers_in),
            sum(self.answers_out),
            self.timeouts,
        )

    def roll(self, elapsed: float) -> None:
        """Close an interval of `elapsed` seconds: its rates and its latency histogram."""
        now = self._now_counts()
        if elapsed > 0:
            self._rates = tuple(
                round((a - b) / elapsed, 3) for a, b in zip(now, self._prev, strict=True)
            )
        self._prev = now
        self.latency.roll()

    def to_dict(self) -> dict[str, Any]:
        names = ("requests_in", "requests_out", "answers_in", "answers_out", "timeouts")
        rates = self._rates
        return {
            "requests_in": self.requests_in,
            "requests_out": self.requests_out,
            "answers_in": dict(zip(_CLASSES, self.answers_in, strict=True)),
            "answers_out": dict(zip(_CLASSES, self.answers_out, strict=True)),
            "timeouts": self.timeouts,
            "rate_per_s": None if rates is None else dict(zip(names, rates, strict=True)),
            "latency_ms": self.latency.to_dict(),
        }


class CommandStats:
    """The per-(application, command) rows of one node, bounded by `MAX_COMMANDS`."""

    __slots__ = ("rows", "other")

    def __init__(self) -> None:
        self.rows: dict[tuple[int, int], Counters] = {}
        self.other = Counters()

    def get(self, app: int, code: int) -> Counters:
        row = self.rows.get((app, code))
        if row is None:
            if len(self.rows) >= MAX_COMMANDS:
                return self.other
            row = self.rows[(app, code)] = Counters()
        return row

    def all(self) -> Iterable[Counters]:
        yield from self.rows.values()
        yield self.other


class NodeCounters(dict[str, int]):
    """The node-wide counters (a plain dict of ints, as `node.stats` always was). Calling it,
    `node.stats()`, returns the full report: these counters, per peer and per command."""

    __slots__ = ("report",)

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.report: Callable[[], dict[str, Any]] | None = None

    def __call__(self) -> dict[str, Any]:
        if self.report is None:
            raise RuntimeError("no statistics report attached (a Node attaches one)")
        return self.report()


def report(
    node_counters: dict[str, int],
    peers: Iterable[tuple[str, Counters]],
    commands: CommandStats,
    interval: float,
) -> dict[str, Any]:
    """The plain dict `Node.stats()` returns."""
    cmds = {f"{app}:{code}": row.to_dict() for (app, code), row in commands.rows.items()}
    other = commands.other
    if other.requests_in or other.requests_out:
        cmds["other"] = other.to_dict()
    return {
        "interval_s": interval,
        "node": dict(node_counters),
        "peers": {name: c.to_dict() for name, c in peers},
        "commands": cmds,
    }
