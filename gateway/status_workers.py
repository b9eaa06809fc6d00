"""The workers' section of `chargegw status`: one row per registered worker, and the
workers that left lately.

Each row joins what the gateway knows of a worker (registration, credit, requests in
flight, answers it matched, heartbeat age, draining) with what the worker last reported
about itself (`report`: requests it finished, error answers and 3004s, store commits and
failures, see gateway/worker_report.py). With two samples, per-worker rates and the mean
and p99 store commit time over the interval come from the difference, as for the
gateway's own counters; a worker that registered again (another `gen`) or restarted
(another `boot`) between them gets no rate rather than a wrong one.
"""

from __future__ import annotations

from typing import Any

from chargegw.gateway.metrics import quantile
from chargegw.ipc import protocol as pp

_BOUNDS = list(pp.STORE_BUCKETS)


def _commit_times(counts: list[int], total_s: float) -> dict[str, float]:
    n = sum(counts)
    if n <= 0 or len(counts) != len(_BOUNDS) + 1:
        return {}
    p99 = quantile(0.99, _BOUNDS, counts)
    return {
        "commit_ms_mean": round(total_s / n * 1000, 3),
        "commit_ms_p99": round((p99 or 0.0) * 1000, 3),
    }


def _rate(a: Any, b: Any, dt: float) -> float | None:
    if isinstance(a, int) and isinstance(b, int) and b >= a:
        return round((b - a) / dt, 3)
    return None


def derive_workers(before: dict[str, Any] | None, after: dict[str, Any], dt: float | None
                   ) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per worker id: rates over `dt` seconds (when both samples have the same registration
    and process) and commit times (over the interval when it committed, else since start)."""
    old: dict[str, dict[str, Any]] = {}
    if before is not None:
        for w in (before.get("pool") or {}).get("workers") or []:
            if isinstance(w, dict):
                old[str(w.get("id"))] = w
    out: dict[str, dict[str, Any]] = {}
    for w in (after.get("pool") or {}).get("workers") or []:
        if not isinstance(w, dict):
            continue
        row: dict[str, Any] = {}
        rep = w.get("report") or {}
        counts = list(rep.get("store_commit_counts") or [])
        total = float(rep.get("store_commit_s") or 0.0)
        window = "since start"
        prev = old.get(str(w.get("id")))
        if dt and prev is not None and prev.get("gen") == w.get("gen"):
            row["answered_per_s"] = _rate(prev.get("handled"), w.get("handled"), dt)
            prep = prev.get("report") or {}
            if rep.get("boot") is not None and prep.get("boot") == rep.get("boot"):
                for k in ("handled", "errors", "busy", "store_commits", "store_errors"):
                    row[f"{k}_per_s"] = _rate(prep.get(k), rep.get(k), dt)
                pc = list(prep.get("store_commit_counts") or [])
                if len(pc) == len(counts):
                    delta = [a - b for a, b in zip(counts, pc, strict=True)]
                    if sum(delta) > 0 and min(delta) >= 0:
                        counts = delta
                        total -= float(prep.get("store_commit_s") or 0.0)
                        window = "interval"
        times = _commit_times(counts, total)
        if times:
            row.update(times, commit_window=window)
        out[str(w.get("id"))] = row
    return out


def _n(v: Any) -> str:
    return "-" if v is None else str(v)


def _with_rate(v: Any, rate: Any) -> str:
    return _n(v) if rate is None else f"{_n(v)} ({rate:.1f}/s)"


def _where(w: dict[str, Any]) -> str:
    at = f"{w.get('host') or '?'} pid {w.get('pid') or '?'}"
    return f"{w['address']} ({at})" if w.get("address") else at


def _state(w: dict[str, Any]) -> str:
    rep = w.get("report")
    states = ["draining" if w.get("draining") else "serving"]
    if not rep:
        states.append("no report")
    elif rep.get("store") == "down":
        states.append("store down")
    if w.get("target_out_of_reach"):
        states.append(f"latency target out of reach ({w.get('latency_ms', 0):.1f} ms at its floor)")
    return ", ".join(states)


HEAD = (f"  {'worker':<20} {'inc':>3} {'where':<24} {'shards':>6} {'flight/credit':>13} "
        f"{'answered':>18} {'errors':>6} {'3004':>5} {'commits':>8} {'fail':>5} "
        f"{'commit ms mean/p99':>18} {'hb s':>5}  state")  # fmt: skip


def render_workers(doc: dict[str, Any], derived: dict[str, Any]) -> list[str]:
    """The rows for a person: a table, then the workers that left lately."""
    pool = doc.get("pool") or {}
    workers = pool.get("workers") or []
    rates: dict[str, dict[str, Any]] = derived.get("workers") or {}
    lines = [f"workers ({len(workers)}), pending {pool.get('pending', 0)}:"]
    if workers:
        lines.append(HEAD)
    for w in workers:
        d = rates.get(str(w.get("id"))) or {}
        rep = w.get("report") or {}
        inc = w.get("incarnation")
        ms = (f"{d['commit_ms_mean']:.2f}/{d['commit_ms_p99']:.2f}"
              if "commit_ms_mean" in d else "-")  # fmt: skip
        hb = w.get("heartbeat_s")
        lines.append(
            f"  {str(w.get('id'))[:20]:<20} {_n(inc if inc is not None and inc >= 0 else None):>3} "
            f"{_where(w)[:24]:<24} {_n(w.get('shards_owned')):>6} "
            f"{str(w.get('inflight')) + '/' + str(w.get('credit')):>13} "
            f"{_with_rate(w.get('handled'), d.get('answered_per_s')):>18} "
            f"{_n(rep.get('errors')):>6} {_n(rep.get('busy')):>5} "
            f"{_n(rep.get('store_commits')):>8} {_n(rep.get('store_errors')):>5} {ms:>18} "
            f"{'-' if hb is None else f'{hb:.1f}':>5}  {_state(w)}"
        )
    gone = pool.get("gone") or []
    if gone:
        lines.append(f"  left lately ({len(gone)}, newest first):")
        for g in gone[:8]:
            lines.append(
                f"    {g.get('id')} ({g.get('host') or '?'} pid {g.get('pid') or '?'}) "
                f"{g.get('ago_s', 0):.1f}s ago: {g.get('why')}"
            )
    return lines
