"""Counters and HDR latency histograms of a load run, mergeable exactly across processes.

Latencies are recorded in microseconds into HdrHistogram (3 significant digits: a reported
percentile is within 0.1% of the true one), per step kind and overall, plus one histogram per
one-second interval for the time series. Each process ships its recorder as a plain dict (the
histograms base64-encoded); `merge` adds the histograms bucket by bucket, so the merged
percentiles are those of the union of all samples, not an average of per-process figures.
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import accumulate
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour
DIGITS = 3

COUNTERS = (
    "sent",
    "answered",
    "ok",
    "errors",
    "timeouts",
    "mismatches",
    "lost",
    "unexpected_answers",
    "sessions_started",
    "sessions_completed",
    "sessions_failed",
    "warmup_sent",
    "warmup_answered",
    "abated",  # session starts not sent: DOIC loss abatement (RFC 7683), --doic
    "resent",  # sends again, T flag, of requests unanswered when a connection dropped
)
MISMATCH_KINDS = ("session_id", "number", "command", "end_to_end", "echo", "malformed")
CONN_EVENTS = (
    "connected",
    "closed_by_server",
    "dpr_from_server",
    "garbage",
    "connect_failed",
    "reconnected",  # dropped connections re-opened (--reconnect)
    "reconnect_failed",  # dropped connections given up after the --reconnect patience
)
SERVER_REQUESTS = ("DWR", "DPR", "RAR", "ASR", "SNR", "other")
# Result-Codes that get a latency histogram of their own (the first seen; the rest are only
# counted): an answer's code comes from the server, so the set must be bounded.
CODE_HISTOGRAMS = 16
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def result_class(code: int) -> str:
    return f"{code // 1000}xxx" if 1000 <= code < 6000 else "other"


class Interval:
    """One second of the run: counts and the latencies of answers that arrived in it."""

    __slots__ = ("index", "sent", "answered", "errors", "timeouts", "hist")

    def __init__(self, index: int) -> None:
        self.index = index
        self.sent = self.answered = self.errors = self.timeouts = 0
        self.hist = new_histogram()

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "sent": self.sent,
            "answered": self.answered,
            "errors": self.errors,
            "timeouts": self.timeouts,
            "hist": self.hist.encode().decode() if self.hist.get_total_count() else "",
        }


class Recorder:
    """What one process saw. Only requests intended after the warm-up enter the figures."""

    def __init__(self) -> None:
        self.c: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self.by_result: dict[int, int] = {}
        self.mismatch: dict[str, int] = dict.fromkeys(MISMATCH_KINDS, 0)
        self.conn: dict[str, int] = dict.fromkeys(CONN_EVENTS, 0)
        self.server_requests: dict[str, int] = dict.fromkeys(SERVER_REQUESTS, 0)
        self.hist = new_histogram()  # answers whose code has no histogram of its own
        self.lag = new_histogram()  # intended -> actual send time
        self.by_step: dict[str, HdrHistogram] = {}
        # latency by Result-Code: under overload a 3004 should be quick, a 2001 may not be
        self.by_code: dict[int, HdrHistogram] = {}
        self.step_sent: dict[str, int] = {}
        self.problems: list[str] = []
        # flow index -> [usage reports answered 2001, reports whose fate is unknown]; warm-up
        # included, because the OCS debits those too
        self.usage: dict[str, list[int]] = {}
        self.measure_start = 0.0
        self.first_send = 0.0
        self.last_answer = 0.0
        self.end = 0.0
        self.interval: Interval | None = None

    def problem(self, text: str) -> None:
        """A plain-language line for the report; repeated ones are kept once."""
        if text not in self.problems and len(self.problems) < 50:
            self.problems.append(text)

    def on_sent(self, step: str, measured: bool) -> None:
        if measured:
            self.c["sent"] += 1
            self.step_sent[step] = self.step_sent.get(step, 0) + 1
            if self.interval is not None:
                self.interval.sent += 1
        else:
            self.c["warmup_sent"] += 1

    def on_answer(self, step: str, rc: int, latency_us: int, measured: bool, now: float) -> None:
        if not measured:
            self.c["warmup_answered"] += 1
            return
        c = self.c
        c["answered"] += 1
        self.by_result[rc] = self.by_result.get(rc, 0) + 1
        ok = 2000 <= rc < 3000
        if ok:
            c["ok"] += 1
        else:
            c["errors"] += 1
        lat = min(max(latency_us, LOWEST_US), HIGHEST_US)
        # by Result-Code (the codes past CODE_HISTOGRAMS in `hist`); all of them together
        # are added up in to_dict: one record per answer, not two
        h = self.by_code.get(rc)
        if h is None:
            h = self.hist if len(self.by_code) >= CODE_HISTOGRAMS else new_histogram()
            if h is not self.hist:
                self.by_code[rc] = h
        h.record_value(lat)
        h = self.by_step.get(step)
        if h is None:
            h = self.by_step[step] = new_histogram()
        h.record_value(lat)
        self.last_answer = now
        iv = self.interval
        if iv is not None:
            iv.answered += 1
            if not ok:
                iv.errors += 1
            iv.hist.record_value(lat)

    def on_usage(self, flow: int, certain: bool) -> None:
        u = self.usage.get(str(flow))
        if u is None:
            u = self.usage[str(flow)] = [0, 0]
        u[0 if certain else 1] += 1

    def on_mismatch(self, kind: str, measured: bool) -> None:
        if measured:
            self.c["mismatches"] += 1
            self.mismatch[kind] += 1

    def on_timeout(self, measured: bool) -> None:
        if measured:
            self.c["timeouts"] += 1
            if self.interval is not None:
                self.interval.timeouts += 1

    def _all(self) -> HdrHistogram:
        """Every measured answer's latency: the per-code histograms and the rest added."""
        h = new_histogram()
        for part in (self.hist, *self.by_code.values()):
            if part.get_total_count():
                h.add(part)
        return h

    def to_dict(self) -> dict[str, Any]:
        return {
            "counters": dict(self.c),
            "by_result": {str(k): v for k, v in self.by_result.items()},
            "mismatch": dict(self.mismatch),
            "conn": dict(self.conn),
            "server_requests": dict(self.server_requests),
            "hist": self._all().encode().decode() if self.c["answered"] else "",
            "lag": self.lag.encode().decode() if self.lag.get_total_count() else "",
            "by_step": {k: h.encode().decode() for k, h in self.by_step.items()},
            "by_code": {str(k): h.encode().decode() for k, h in self.by_code.items()},
            "step_sent": dict(self.step_sent),
            "problems": list(self.problems),
            "usage": {k: list(v) for k, v in self.usage.items()},
            "measure_start": self.measure_start,
            "last_answer": self.last_answer,
            "end": self.end,
        }


def _decode(s: str) -> HdrHistogram:
    h = new_histogram()
    if s:
        h.add(HdrHistogram.decode(s))
    return h


def _add(into: HdrHistogram, s: str) -> None:
    if s:
        into.add(HdrHistogram.decode(s))


def _walk(h: HdrHistogram) -> tuple[int, list[int]]:
    """(index of the first bucket, running totals of the counts from there to the last
    populated bucket): the populated span only. hdrh's own percentile and mean walk all of
    the histogram's ~23,500 buckets in Python, 113 ms a call here, which once a second
    inside the generator's loop (the progress line) stalled its sends that long every
    second: an open-loop run went out in bursts."""
    lo = h.get_counts_array_index(h.min_value) if h.min_value <= h.max_value else 0
    lo = 0 if h.counts[0] else lo  # a recorded 0 is not in min_value
    hi = h.get_counts_array_index(h.max_value)
    return lo, list(accumulate(h.counts[lo : hi + 1]))


def _at(h: HdrHistogram, lo: int, cum: list[int], percentile: float) -> int:
    """hdrh's get_value_at_percentile, from `_walk`'s running totals."""
    i = bisect_left(cum, h.get_target_count_at_percentile(percentile))
    value = h.get_value_from_index(lo + min(i, len(cum) - 1))
    return h.get_highest_equivalent_value(value) if percentile else value


def latency_ms(h: HdrHistogram) -> dict[str, float | None]:
    """min, mean, p50, p90, p99, p99.9, max in milliseconds (None with no samples); the same
    figures as hdrh's getters (tests/test_loadtest_stats.py), over the populated span."""
    if not h.get_total_count():
        return {k: None for k in ("min", "mean", *(n for n, _ in PERCENTILES), "max")}
    lo, cum = _walk(h)
    total = 0
    prev = 0
    for i, c in enumerate(cum):
        if c != prev:
            total += (c - prev) * h._hdr_median_equiv_value(h.get_value_from_index(lo + i))
            prev = c
    return {
        "min": round(h.get_min_value() / 1000, 3),
        "mean": round(total / h.total_count / 1000, 3),
        **_percentiles(h, lo, cum),
    }


def _percentiles(h: HdrHistogram, lo: int, cum: list[int]) -> dict[str, float | None]:
    out: dict[str, float | None] = {
        name: round(_at(h, lo, cum, p) / 1000, 3) for name, p in PERCENTILES
    }
    out["max"] = round(h.get_max_value() / 1000, 3)
    return out


def percentiles_ms(h: HdrHistogram) -> dict[str, float | None]:
    """`latency_ms` without min and mean (whose walk is most of its cost): the once-a-second
    figures of the time series."""
    if not h.get_total_count():
        return {k: None for k in (*(n for n, _ in PERCENTILES), "max")}
    return _percentiles(h, *_walk(h))


def p99_ms(h: HdrHistogram) -> float | None:
    """The progress line's figure, cheaper than `latency_ms`."""
    if not h.get_total_count():
        return None
    lo, cum = _walk(h)
    return round(_at(h, lo, cum, 99.0) / 1000, 3)


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Add per-process recorder dicts into one: counters summed, histograms added exactly."""
    c = dict.fromkeys(COUNTERS, 0)
    by_result: dict[str, int] = {}
    mismatch = dict.fromkeys(MISMATCH_KINDS, 0)
    conn = dict.fromkeys(CONN_EVENTS, 0)
    sreq = dict.fromkeys(SERVER_REQUESTS, 0)
    hist = new_histogram()
    lag = new_histogram()
    by_step: dict[str, HdrHistogram] = {}
    by_code: dict[str, HdrHistogram] = {}
    step_sent: dict[str, int] = {}
    problems: list[str] = []
    usage: dict[str, list[int]] = {}
    for p in parts:
        for k, (a, b) in p["usage"].items():
            u = usage.setdefault(k, [0, 0])
            u[0] += a
            u[1] += b
        for k, v in p["counters"].items():
            c[k] += v
        for k, v in p["by_result"].items():
            by_result[k] = by_result.get(k, 0) + v
        for src, dst in ((p["mismatch"], mismatch), (p["conn"], conn),
                         (p["server_requests"], sreq), (p["step_sent"], step_sent)):
            for k, v in src.items():
                dst[k] = dst.get(k, 0) + v
        _add(hist, p["hist"])
        _add(lag, p["lag"])
        for k, s in p["by_step"].items():
            _add(by_step.setdefault(k, new_histogram()), s)
        for k, s in p.get("by_code", {}).items():
            if k in by_code or len(by_code) < CODE_HISTOGRAMS:
                _add(by_code.setdefault(k, new_histogram()), s)
        for line in p["problems"]:
            if line not in problems:
                problems.append(line)
    starts = [p["measure_start"] for p in parts if p["measure_start"]]
    ends = [p["last_answer"] or p["end"] for p in parts]
    return {
        "counters": c,
        "by_result": by_result,
        "mismatch": mismatch,
        "conn": conn,
        "server_requests": sreq,
        "hist": hist,
        "lag": lag,
        "by_step": by_step,
        "by_code": by_code,
        "step_sent": step_sent,
        "problems": problems,
        "usage": usage,
        "measure_start": min(starts) if starts else 0.0,
        "end": max(ends) if ends else 0.0,
    }


def merge_intervals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Interval dicts from all processes -> one row per second with exact percentiles."""
    acc: dict[int, tuple[dict[str, int], HdrHistogram]] = {}
    for r in rows:
        counts, h = acc.setdefault(
            r["index"], ({"sent": 0, "answered": 0, "errors": 0, "timeouts": 0}, new_histogram())
        )
        for k in counts:
            counts[k] += r[k]
        _add(h, r["hist"])
    out = []
    for i in sorted(acc):
        counts, h = acc[i]
        lat = percentiles_ms(h)
        out.append({"t": i + 1, **counts, "p50": lat["p50"], "p90": lat["p90"],
                    "p99": lat["p99"], "max": lat["max"]})
    return out


def summarize(m: dict[str, Any], series: list[dict[str, Any]], offered: float | None) -> dict[str, Any]:
    """The `summary` object of the JSON report (schema documented in loadtest/README.md)."""
    c = m["counters"]
    elapsed = max(m["end"] - m["measure_start"], 1e-9) if m["measure_start"] else 0.0
    classes: dict[str, int] = {}
    for k, v in m["by_result"].items():
        cl = result_class(int(k))
        classes[cl] = classes.get(cl, 0) + v
    failed = c["errors"] + c["timeouts"] + c["mismatches"] + c["lost"]
    return {
        "sent": c["sent"],
        "answered": c["answered"],
        "ok": c["ok"],
        "ok_2001": int(m["by_result"].get("2001", 0)),
        "errors": c["errors"],
        "timeouts": c["timeouts"],
        "mismatches": c["mismatches"],
        "lost": c["lost"],
        "unexpected_answers": c["unexpected_answers"],
        "error_rate": round(failed / c["sent"], 6) if c["sent"] else 0.0,
        "elapsed_s": round(elapsed, 3),
        "answers_per_s": round(c["answered"] / elapsed, 1) if elapsed else 0.0,
        "offered_rate": offered,
        "sessions_started": c["sessions_started"],
        "sessions_completed": c["sessions_completed"],
        "sessions_failed": c["sessions_failed"],
        "abated": c.get("abated", 0),
        "resent": c.get("resent", 0),
        "reconnects": m["conn"].get("reconnected", 0),
        "result_codes": dict(sorted(m["by_result"].items(), key=lambda kv: int(kv[0]))),
        "result_classes": dict(sorted(classes.items())),
        "mismatch_kinds": m["mismatch"],
        "latency_ms": latency_ms(m["hist"]),
        "latency_ms_by_result": {
            k: latency_ms(h) for k, h in sorted(m["by_code"].items(), key=lambda kv: int(kv[0]))
        },
        "send_lag_ms": latency_ms(m["lag"]),
        "by_step": {
            k: {"sent": m["step_sent"].get(k, 0), "answered": h.get_total_count(),
                "latency_ms": latency_ms(h)}
            for k, h in sorted(m["by_step"].items())
        },
        "connections": m["conn"],
        "server_requests": m["server_requests"],
        "warmup": {"sent": c["warmup_sent"], "answered": c["warmup_answered"]},
        "usage_reports": {k: {"answered_2001": a, "unknown": b}
                          for k, (a, b) in sorted(m["usage"].items())},
        "series": series,
    }
