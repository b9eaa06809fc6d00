"""The operator's HTTP endpoint: Prometheus `/metrics`, `/healthz` and `/readyz`.

Served from the gateway's own asyncio loop, so a scrape reads the pool, the Node and the
peer table between two events, never while they change (no lock, no thread). The per-
request path pays only for what cannot be read later: a dict increment per request, and
per answer a Result-Code scan, a dict increment and a histogram bucket. Everything else
(pool counters, credit, peers, the Node's duplicates) is read from the objects that already
keep it, at scrape time, by `GatewayCollector`.

Labels are bounded: application id, command code, Result-Code, and a peer's Origin-Host
(peers are configured or admitted, so their number is bounded by the operator). Never a
Session-Id or a subscriber.

The HTTP side is hostile input like every socket: a request line and headers of at most
8 KiB within 5 s, at most 32 connections at once, one request per connection.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from chargegw.codec import avp_key
from chargegw.codec.constants import AVP_VENDOR
from chargegw.gateway.pool_io import SERVER_COUNTERS
from chargegw.gateway.worker_report import worker_row
from chargegw.ipc import protocol as pp
from chargegw.process import current_level

log = logging.getLogger("chargegw.gateway.metrics")

# Seconds from the front end's read of a request to its answer leaving; 0.5 ms .. 10 s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

# The codes come from the dictionary (one source of truth); the walk below is a few integer
# comparisons per top-level AVP header, about a quarter of what codec.peek costs for the same
# answer, because it runs for every answer the front end sends.
_RESULT_CODE = avp_key("Result-Code")
_EXPERIMENTAL_RESULT = avp_key("Experimental-Result")
_EXPERIMENTAL_RESULT_CODE = avp_key("Experimental-Result-Code")
_VENDOR_BIT = AVP_VENDOR
_RC_CODE = _RESULT_CODE.to_bytes(4, "big")
_ER_CODE = _EXPERIMENTAL_RESULT.to_bytes(4, "big")


def result_code(raw: bytes) -> int:
    """The answer's Result-Code, else its Experimental-Result-Code, else 0 (none, or the
    octets do not frame): a walk over the top-level AVP headers, no decode (about 1.5 us
    for a CCA)."""
    n = len(raw)
    i = 20
    exp = 0
    fb = int.from_bytes
    while i + 8 <= n:
        code = raw[i : i + 4]
        length = fb(raw[i + 5 : i + 8], "big")
        if length < 8 or i + length > n:
            return exp
        if code == _RC_CODE and length >= 12 and not raw[i + 4] & _VENDOR_BIT:
            return fb(raw[i + 8 : i + 12], "big")
        if code == _ER_CODE and not exp and not raw[i + 4] & _VENDOR_BIT:
            exp = _inner_code(raw, i + 8, i + length)
        i += (length + 3) & ~3
    return exp


def _inner_code(raw: bytes, i: int, end: int) -> int:
    while i + 8 <= end:
        code = int.from_bytes(raw[i : i + 4], "big")
        length = int.from_bytes(raw[i + 5 : i + 8], "big")
        if length < 8 or i + length > end:
            return 0
        if code == _EXPERIMENTAL_RESULT_CODE and not raw[i + 4] & _VENDOR_BIT and length >= 12:
            return int.from_bytes(raw[i + 8 : i + 12], "big")
        i += (length + 3) & ~3
    return 0


class AnswerStats:
    """Requests in and answers out by (application, command[, Result-Code]), and the
    front-end-to-answer latency: the only figures counted on the request path."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.requests: dict[tuple[int, int], int] = {}
        self.answers: dict[tuple[int, int, int], int] = {}
        self.latency_counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.latency_sum = 0.0

    def request(self, app: int, cmd: int) -> None:
        k = (app, cmd)
        self.requests[k] = self.requests.get(k, 0) + 1

    def answer(self, app: int, cmd: int, code: int, seconds: float) -> None:
        k = (app, cmd, code)
        self.answers[k] = self.answers.get(k, 0) + 1
        self.latency_counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.latency_sum += seconds

    def families(self) -> Iterator[Any]:
        req = CounterMetricFamily(
            "chargegw_requests",
            "Application requests the front end handed on, by application and command",
            labels=["app", "command"],
        )
        for (app, cmd), v in sorted(self.requests.items()):
            req.add_metric([str(app), str(cmd)], v)
        yield req
        ans = CounterMetricFamily(
            "chargegw_answers",
            "Answers the front end sent to those requests, by application, command and "
            "Result-Code (Experimental-Result-Code when there is no Result-Code; 0 = none)",
            labels=["app", "command", "result_code"],
        )
        for (app, cmd, code), v in sorted(self.answers.items()):
            ans.add_metric([str(app), str(cmd), str(code)], v)
        yield ans
        cum = 0
        bks: list[tuple[str, float]] = []
        for bound, c in zip((*self.buckets, float("inf")), self.latency_counts, strict=True):
            cum += c
            bks.append(("+Inf" if bound == float("inf") else repr(bound), cum))
        h = HistogramMetricFamily(
            "chargegw_answer_latency_seconds",
            "From the front end's read of a request to its answer leaving",
        )
        h.add_metric([], bks, sum_value=self.latency_sum)
        yield h


def status_section(stats: AnswerStats) -> dict[str, Any]:
    """The front end's own figures for `chargegw status`: requests and answers by
    Result-Code, and the latency histogram, with a monotonic clock so that the CLI can make
    rates and percentiles from two samples (a wall clock may step between them)."""
    answers: dict[str, int] = {}
    for (_app, _cmd, code), v in stats.answers.items():
        answers[str(code)] = answers.get(str(code), 0) + v
    return {
        "clock_s": time.monotonic(),
        "requests": sum(stats.requests.values()),
        "answers": answers,
        "latency": {
            "bounds_s": list(stats.buckets),  # upper bounds; the last count is beyond them
            "counts": list(stats.latency_counts),
            "sum_s": stats.latency_sum,
        },
    }


def install_status(gw: Any) -> None:
    """Add `status_section` to the gateway's status document (under "front_end")."""
    before = gw.pool.status_extra
    worker_figures(gw)  # before any worker registers (its Ready carries its store's state)

    def extra() -> dict[str, Any]:
        doc = before() if before is not None else {}
        doc["front_end"] = status_section(gw.metrics)
        doc["log_level"] = current_level()  # what SIGHUP last applied
        return doc

    gw.pool.status_extra = extra


def quantile(q: float, bounds: list[float], counts: list[int]) -> float | None:
    """The q-quantile of a bucketed histogram (per-bucket counts, the last one beyond
    `bounds`), interpolated linearly inside its bucket as Prometheus's histogram_quantile
    does; the last bound when it falls beyond them; None for no observations."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, c in enumerate(counts):
        if c and seen + c >= rank:
            if i >= len(bounds):
                return bounds[-1]
            lo = bounds[i - 1] if i else 0.0
            return lo + (bounds[i] - lo) * (rank - seen) / c
        seen += c
    return bounds[-1]


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


# PoolCore/PoolServer counters exported as chargegw_pool_<name>_total, with their meaning.
POOL_COUNTERS: dict[str, str] = {
    "placed": "Requests placed on a worker",
    "answered": "Worker answers matched to a pending request",
    "shed_busy": "Requests shed with 3004 (no worker credit)",
    "shed_fair": "Requests shed with 3004: their peer held its share of a nearly full worker",
    "shard_moves": "Requests placed again on a shard's owner after a worker's Moved",
    "no_worker": "Requests answered 3002: no live worker serves the application",
    "expired": "Requests answered 3002 because their deadline passed in the pool",
    "resent": "Requests placed again when their worker was lost or registered again (resends)",
    "failed_over_lost": "Requests answered 3002: their worker was lost and no resend was possible",
    "late_answers": "Worker answers after the gateway had answered itself",
    "stray_answers": "Worker answers for ids this gateway does not hold",
    "workers_dropped": "Workers dropped (exit, heartbeat timeout, reset)",
    "workers_superseded": "Workers replaced by a later incarnation of theirs (a restart)",
    "affinity_misses": "Requests placed on another worker than the session's ring owner",
    "identity_refused": "Worker registrations refused: a live identity under another key",
    "credit_mismatch": "Worker heartbeats whose free count did not reconcile",
    "worker_expired": "Requests a worker dropped unapplied (deadline passed)",
    "bad_frames": "Malformed frames from workers",
    "bad_answers": "Invalid answers from workers (answered 5012)",
    "out_requests": "Worker-initiated requests sent to peers",
    "out_refused": "Worker-initiated requests refused",
    "oversize": "Worker frames over the size limit",
    "held_back": "Sends to a worker whose pipe was full (held and sent later, not dropped)",
}

# Node counters exported as chargegw_node_<name>_total.
NODE_COUNTERS: dict[str, str] = {
    "duplicates": "Requests answered from the duplicate cache (T-flag retransmissions)",
    "framing_errors": "Connections closed on a framing error",
    "rejected_cer": "CERs rejected",
    "handler_errors": "Requests whose handler raised",
    "refused_at_accept": "Connections refused at accept (pre-CER limits)",
}


# Worker figures --------------------------------------------------------------------------

_MAX_COUNT = (1 << 62) - 1
_MAX_SUM = 1e15  # seconds; any real sum stays far below
MAX_APPS = 64  # application labels in the gateway's totals; beyond: app="other"
MAX_RGS = 256  # rating-group labels in the gateway's totals; beyond: rating_group="other"
MAX_SEEN = 1024  # workers whose last report is remembered (registered ones are never evicted)
_OTHER = -1
_WORKER_LABEL = 64  # characters of a worker id used as a label value


class _Seen:
    """The last report of one worker identity (its cumulative figures, of process `boot`)."""

    __slots__ = ("apps", "at", "boot", "busy", "errors", "handled", "shards", "store",
                 "store_counts", "store_errors", "store_sum", "units")  # fmt: skip

    def __init__(self) -> None:
        self.boot: int | None = None
        self.apps: dict[int, tuple[list[int], float]] = {}
        self.store_counts: list[int] = []
        self.store_sum = 0.0
        self.store_errors = 0
        self.units: dict[int, tuple[int, int, int, int]] = {}
        self.shards = 0
        self.store = pp.STORE_NONE
        self.at = 0.0  # monotonic time of the last Ready or Stats
        self.handled = self.errors = self.busy = pp.NOT_SENT  # for `chargegw status` only


def _counts_ok(counts: list[int], n: int) -> bool:
    return len(counts) == n and all(type(c) is int and 0 <= c <= _MAX_COUNT for c in counts)


def _sum_ok(x: float) -> bool:
    return type(x) is float and math.isfinite(x) and 0.0 <= x <= _MAX_SUM


def _valid(m: pp.Stats) -> bool:
    """Sizes, ranges and shapes of a worker's Stats (msgspec checked the types)."""
    nt = len(pp.WORKER_TIME_BUCKETS) + 1
    if len(m.apps) > pp.MAX_STATS_APPS or len(m.units) > pp.MAX_STATS_RGS:
        return False
    if len({a.app for a in m.apps}) != len(m.apps) or len({u.rg for u in m.units}) != len(m.units):
        return False
    for a in m.apps:
        if not (0 <= a.app <= 0xFFFFFFFF and _counts_ok(a.counts, nt) and _sum_ok(a.sum)):
            return False
    if m.store_counts and not _counts_ok(m.store_counts, len(pp.STORE_BUCKETS) + 1):
        return False
    if not (_sum_ok(m.store_sum) and 0 <= m.store_errors <= _MAX_COUNT):
        return False
    for u in m.units:
        if not (u.rg == pp.RG_OTHER or 0 <= u.rg <= 0xFFFFFFFF):
            return False
        if not all(0 <= v <= _MAX_COUNT for v in (u.granted, u.used, u.debited, u.refunded)):
            return False
    if not all(v == pp.NOT_SENT or 0 <= v <= _MAX_COUNT for v in (m.handled, m.errors, m.busy)):
        return False
    return 0 <= m.shards <= 1 << 20 and m.store in (pp.STORE_NONE, pp.STORE_DOWN, pp.STORE_OK)


def _grow(total: list[int], new: list[int], old: list[int]) -> None:
    """total += max(0, new - old), element by element (`old` may be empty: zeros)."""
    for k, v in enumerate(new):
        d = v - (old[k] if k < len(old) else 0)
        if d > 0:
            total[k] += d


class WorkerFigures:
    """The workers' Stats summed over workers, as monotonic totals.

    A worker reports cumulative figures since its process started; each report adds its
    growth over the previous report of the same identity and `boot` (a new boot: all of
    it), never a decrease. So a worker that restarts, or is dropped and never returns, keeps
    what it counted in the totals; a report lost or repeated changes nothing; a malformed
    one is refused whole and counted (`refused`), and a hostile worker can at most inflate
    figures, never crash the gateway or grow its label sets beyond MAX_APPS and MAX_RGS."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.seen: dict[bytes, _Seen] = {}
        nt = len(pp.WORKER_TIME_BUCKETS) + 1
        self.app_time: dict[int, tuple[list[int], list[float]]] = {}
        self._nt = nt
        self.store_counts = [0] * (len(pp.STORE_BUCKETS) + 1)
        self.store_sum = 0.0
        self.store_errors = 0
        self.units: dict[int, list[int]] = {}  # rg -> [granted, used, debited, refunded]
        self.refused = 0
        self._logged = 0.0

    def ingest(self, ident: bytes, m: Any, now: float) -> None:
        """A registered worker's Ready (its store flag) or Stats; never raises."""
        try:
            if type(m) is pp.Ready:
                s = self._seen(ident)
                s.store = m.store if m.store in (pp.STORE_OK, pp.STORE_DOWN) else pp.STORE_NONE
                s.at = now
            elif type(m) is pp.Stats:
                if not _valid(m):
                    self._refuse(ident, "out of bounds")
                    return
                self._add(self._seen(ident), m, now)
        except Exception as exc:  # a bug here must not cost the pool its frame
            self._refuse(ident, f"{type(exc).__name__}: {exc}")

    def _refuse(self, ident: bytes, why: str) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._logged >= 5.0:
            self._logged = now
            log.warning("refused a Stats message from worker %r (%s; %d so far)",
                        ident[:64], why, self.refused)  # fmt: skip

    def _seen(self, ident: bytes) -> _Seen:
        s = self.seen.get(ident)
        if s is None:
            if len(self.seen) >= MAX_SEEN:
                live = self.core.workers
                for old in list(self.seen):
                    if old not in live:
                        del self.seen[old]
                        if len(self.seen) < MAX_SEEN // 2:
                            break
            s = self.seen[ident] = _Seen()
        return s

    def _add(self, s: _Seen, m: pp.Stats, now: float) -> None:
        same = s.boot == m.boot
        for a in m.apps:
            prev = s.apps.get(a.app) if same else None
            key = a.app if a.app in self.app_time or len(self.app_time) < MAX_APPS else _OTHER
            tot = self.app_time.get(key)
            if tot is None:
                tot = self.app_time[key] = ([0] * self._nt, [0.0])
            _grow(tot[0], a.counts, prev[0] if prev else [])
            tot[1][0] += max(0.0, a.sum - (prev[1] if prev else 0.0))
        _grow(self.store_counts, m.store_counts, s.store_counts if same else [])
        self.store_sum += max(0.0, m.store_sum - (s.store_sum if same else 0.0))
        self.store_errors += max(0, m.store_errors - (s.store_errors if same else 0))
        for u in m.units:
            new = (u.granted, u.used, u.debited, u.refunded)
            old = s.units.get(u.rg) if same else None
            key = u.rg if u.rg in self.units or len(self.units) < MAX_RGS else _OTHER
            row = self.units.get(key)
            if row is None:
                row = self.units[key] = [0, 0, 0, 0]
            _grow(row, list(new), list(old) if old else [])
        # What this report said becomes the baseline (a decrease resets it: never negative).
        if not same:
            s.apps, s.units = {}, {}
        s.boot = m.boot
        for a in m.apps:
            s.apps[a.app] = (a.counts, a.sum)
        for u in m.units:
            s.units[u.rg] = (u.granted, u.used, u.debited, u.refunded)
        s.store_counts, s.store_sum, s.store_errors = m.store_counts, m.store_sum, m.store_errors
        s.shards, s.store, s.at = m.shards, m.store, now
        s.handled, s.errors, s.busy = m.handled, m.errors, m.busy

    def stores_ok(self, now: float, within: float) -> int:
        """Registered workers taking requests whose store answered its last operation, as
        they said within `within` seconds (a worker without a store counts: nothing to ask)."""
        n = 0
        for ident, w in list(self.core.workers.items()):
            s = self.seen.get(ident)
            if w.draining or s is None or now - s.at > within:
                continue
            if s.store != pp.STORE_DOWN:
                n += 1
        return n

    def families(self) -> Iterator[Any]:
        h = HistogramMetricFamily(
            "chargegw_worker_time_seconds",
            "Time in the workers per application, from dispatch to the answer queued for "
            "the gateway (summed over workers, reported once a heartbeat)",
            labels=["app"],
        )
        for app, (counts, total) in sorted(self.app_time.items()):
            label = "other" if app == _OTHER else str(app)
            h.add_metric([label], _buckets(pp.WORKER_TIME_BUCKETS, counts), sum_value=total[0])
        yield h
        c = HistogramMetricFamily(
            "chargegw_store_commit_seconds",
            "The charging store's batch commits in the workers (Gy: one per drained batch)",
        )
        c.add_metric([], _buckets(pp.STORE_BUCKETS, self.store_counts), sum_value=self.store_sum)
        yield c
        yield _counter(
            "chargegw_store_errors",
            "Charging-store operations that met the store unavailable, in the workers",
            self.store_errors,
        )
        units = CounterMetricFamily(
            "chargegw_ocs_units",
            "Service units the OCS granted and that were reported used, by rating group "
            "(service units as rated: octets, seconds or events)",
            labels=["rating_group", "kind"],
        )
        money = CounterMetricFamily(
            "chargegw_ocs_money_micros",
            "Micro-units the OCS debited (usage and direct debits) and refunded, by rating group",
            labels=["rating_group", "kind"],
        )
        for rg, row in sorted(self.units.items()):
            label = "other" if rg == _OTHER else str(rg)
            units.add_metric([label, "granted"], row[0])
            units.add_metric([label, "used"], row[1])
            money.add_metric([label, "debited"], row[2])
            money.add_metric([label, "refunded"], row[3])
        yield units
        yield money
        shards = GaugeMetricFamily(
            "chargegw_worker_shards",
            "Charging shards each registered worker owns, as it reported",
            labels=["worker"],
        )
        store = GaugeMetricFamily(
            "chargegw_worker_store_up",
            "1 when the worker's charging store answered its last operation, 0 when not "
            "(workers without a store are left out)",
            labels=["worker"],
        )
        for ident, w in sorted(self.core.workers.items()):
            s = self.seen.get(ident)
            if s is None:
                continue
            name = str(w.worker_id)[:_WORKER_LABEL]
            shards.add_metric([name], s.shards)
            if s.store != pp.STORE_NONE:
                store.add_metric([name], 1 if s.store == pp.STORE_OK else 0)
        yield shards
        yield store
        yield _counter(
            "chargegw_worker_stats_refused",
            "Worker Stats messages refused as malformed (sizes, ranges, shapes)",
            self.refused,
        )


def _buckets(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    cum = 0
    out: list[tuple[str, float]] = []
    for bound, c in zip((*bounds, math.inf), counts, strict=True):
        cum += c
        out.append(("+Inf" if bound == math.inf else repr(bound), cum))
    return out


def worker_figures(gw: Any) -> WorkerFigures:
    """The gateway's WorkerFigures, made and hooked to its pool on first use."""
    figs = getattr(gw, "worker_figures", None)
    if figs is None:
        figs = WorkerFigures(gw.core)
        gw.worker_figures = figs
        gw.pool.on_stats = figs.ingest
        gw.pool.worker_report = lambda ident: worker_row(figs.seen.get(ident), time.monotonic())
    return figs


def readiness(gw: Any) -> tuple[bool, str]:
    """/readyz: the gateway's own readiness (listeners open, not draining, enough workers
    registered), and the store answers: at least as many registered workers as it wants
    said, within a heartbeat timeout, that their store answered its last operation."""
    ok, why = gw.readiness()
    if not ok:
        return ok, why
    want = max(gw.config.launcher.min_workers, 1 if gw.app_ids else 0)
    have = worker_figures(gw).stores_ok(time.monotonic(), gw.core.heartbeat_timeout)
    if have < want:
        return False, f"{have} of {want} workers report their store answering"
    return True, why + ", stores answering"


class GatewayCollector(Collector):
    """Reads the gateway's own figures at scrape time."""

    def __init__(self, gw: Any) -> None:
        self.gw = gw

    def collect(self) -> Iterator[Any]:
        gw = self.gw
        yield from gw.metrics.families()
        yield from worker_figures(gw).families()
        core = gw.core
        workers = [w for w in core.workers.values()]
        live = [w for w in workers if not w.draining]
        yield _gauge("chargegw_pool_workers", "Registered workers taking new requests", len(live))
        yield _gauge(
            "chargegw_pool_workers_draining", "Registered workers that are draining",
            len(workers) - len(live),
        )  # fmt: skip
        yield _gauge(
            "chargegw_pool_credit", "Request slots the registered workers granted",
            sum(w.credit for w in workers),
        )  # fmt: skip
        yield _gauge(
            "chargegw_pool_limit",
            "Request slots the workers may hold now (the credit, less what the latency limit"
            " withholds)",
            sum(w.limit for w in workers),
        )  # fmt: skip
        yield _gauge(
            "chargegw_pool_credit_in_use", "Granted slots holding a request now",
            sum(max(0, w.limit - w.available) for w in workers),
        )  # fmt: skip
        yield _gauge("chargegw_pool_pending", "Requests waiting on a worker", len(core.pending))
        yield _gauge(
            "chargegw_pool_zombies", "Requests answered by the gateway that a worker still holds",
            len(core.zombies),
        )  # fmt: skip
        counters = core.counters.to_dict()
        pool = gw.pool
        for name in SERVER_COUNTERS:
            counters[name] = getattr(pool, name)
        for name, doc in POOL_COUNTERS.items():
            yield _counter(f"chargegw_pool_{name}", doc, counters.get(name, 0))
        stats = dict(gw.node.stats)
        for name, doc in NODE_COUNTERS.items():
            yield _counter(f"chargegw_node_{name}", doc, stats.get(name, 0))
        yield _counter(
            "chargegw_errors_sent", "Error answers the front end made itself", gw.errors_sent
        )
        peer = GaugeMetricFamily(
            "chargegw_peer_state",
            "1 for each known peer's current RFC 6733 state (peer = its Origin-Host)",
            labels=["peer", "state"],
        )
        up = GaugeMetricFamily(
            "chargegw_peer_up", "1 when the peer's connection is open for requests", labels=["peer"]
        )
        for info in list(gw.node.peers.values()):
            state = getattr(info.state, "value", str(info.state))
            peer.add_metric([info.name, state], 1)
            up.add_metric([info.name], 1 if info.usable else 0)
        yield peer
        yield up
        ready, _why = readiness(gw)
        yield _gauge("chargegw_ready", "1 when /readyz answers 200", 1 if ready else 0)
        yield _gauge("chargegw_draining", "1 while the gateway drains", 1 if gw.draining else 0)
        yield _gauge(
            "chargegw_start_time_seconds", "When the gateway started (Unix time)", gw.started_at
        )


class MetricsServer:
    """`/metrics`, `/healthz`, `/readyz` on the gateway's loop."""

    MAX_HEAD = 8192
    READ_TIMEOUT = 5.0
    MAX_CONNECTIONS = 32

    def __init__(self, gw: Any, address: str = "127.0.0.1", port: int = 9464) -> None:
        self.gw = gw
        self.address = address
        self.port = port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(GatewayCollector(gw))
        if hasattr(gw, "pool"):  # hooked to the pool now: the workers' Ready and Stats count
            worker_figures(gw)
        self._server: asyncio.AbstractServer | None = None
        self._open = 0
        self.requests = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.address, self.port, limit=self.MAX_HEAD
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except TimeoutError:
                pass
            self._server = None

    def respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for one request; also used by tests directly."""
        path = path.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path == "/healthz":
            return 200, "text/plain", b"ok\n"
        if path == "/readyz":
            ready, why = readiness(self.gw)
            return (200 if ready else 503), "text/plain", (why + "\n").encode()
        return 404, "text/plain", b"not found: /metrics, /healthz, /readyz\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open += 1
        try:
            if self._open > self.MAX_CONNECTIONS:
                return
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.READ_TIMEOUT)
            except (
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                TimeoutError,
                ConnectionError,
            ):
                return
            parts = head.split(b"\r\n", 1)[0].split()
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
                status, ctype, body = 400, "text/plain", b"bad request\n"
                method = ""
            else:
                method = parts[0].decode("ascii", "replace")
                try:
                    status, ctype, body = self.respond(method, parts[1].decode("ascii", "replace"))
                except Exception:  # a collector bug: say so, and keep serving
                    log.exception("metrics: %s failed", parts[1][:64])
                    status, ctype, body = 500, "text/plain", b"internal error\n"
            self.requests += 1
            reason = {200: "OK", 400: "Bad Request", 404: "Not Found",
                      405: "Method Not Allowed", 500: "Internal Server Error",
                      503: "Service Unavailable"}[status]  # fmt: skip
            hdr = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            writer.write(hdr if method == "HEAD" else hdr + body)
            try:
                await asyncio.wait_for(writer.drain(), self.READ_TIMEOUT)
            except (TimeoutError, ConnectionError):
                pass
        except Exception:
            log.exception("metrics request failed")
        finally:
            self._open -= 1
            writer.close()


async def start_metrics(gw: Any, config: Any) -> MetricsServer | None:
    """Start the endpoint `[metrics]` asks for (None when disabled). An address in use is
    logged, not fatal: the gateway's job is Diameter, and a second gateway on one host
    with the default port must still serve."""
    mc = config.metrics
    if not mc.enabled:
        return None
    srv = MetricsServer(gw, mc.address, mc.port)
    try:
        await srv.start()
    except OSError as exc:
        log.warning("metrics endpoint %s:%d not started: %s", mc.address, mc.port, exc)
        return None
    log.info("metrics on %s/metrics (health %s/healthz, readiness %s/readyz)",
             srv.url, srv.url, srv.url)  # fmt: skip
    return srv
