"""Soak: `chargegw run` under mixed open-loop load for --minutes, RSS and open file descriptors
of the gateway and of every worker sampled each second, the gateway's tables every few.

    python -m chargegw.loadtest.soak --minutes 10 --rate 500 --json soak.json

Passes when, after the warm-up (the first fifth of the run), each process's anonymous memory
(RssAnon: heap and the like, where a leak shows) stays within 10% of its first post-warm-up
sample, its descriptor count does not grow, the gateway's tables (requests pending and
zombie, remembered session routes, the duplicate cache, deferred answers) do not grow (the
mean of the last minute within 10% plus 1,000 entries of the first post-warm-up minute's), and
the load run itself reported no timeout, mismatch or lost request. Total RSS and its
file-backed part (RssFile) are recorded too: the SQLite store maps its files (`mmap_size`),
so a worker's RSS grows with the ledger's file while its heap stays flat.

`--memlog DIR` has every process append its memory figures there every few seconds
(CHARGEGW_MEMLOG, src/chargegw/memory.py): RssAnon, glibc's heap (taken, mmap'd, in use, free)
and Python's allocated blocks, with each trim of the heap. That tells a leak (blocks or
`used` grow) from the allocator keeping freed memory (`free` grows).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import zmq

from chargegw.ipc import protocol as pp

from .reliability import Gateway, fd_count, rss_kb, start_load

TABLES_EVERY = 5.0  # seconds between two status queries of the gateway's tables
# Entries a table may differ by between two minutes without growing: the session routes
# follow the live sessions (hundreds at 500 sessions/s, more behind a stall), pending follows
# what is in flight (up to the workers' credit).
TABLE_SLACK = 1000


def fd_targets(pid: int) -> list[str]:
    """What each open descriptor of a process is (socket:[n], a path, anon_inode:...)."""
    base = f"/proc/{pid}/fd"
    out = []
    try:
        for fd in sorted(os.listdir(base), key=int):
            try:
                out.append(f"{fd}={os.readlink(os.path.join(base, fd))}")
            except OSError:
                pass  # closed meanwhile
    except OSError:
        pass
    return out


def gateway_tables(endpoint: str, timeout: float = 2.0) -> dict[str, int]:
    """The sizes of the gateway's tables from its status socket ({} when it does not answer)."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, 64 << 20)
    try:
        sock.connect(endpoint)
        sock.send(pp.encode_one(pp.StatusQuery()))
        if not sock.poll(int(timeout * 1000)):
            return {}
        for m in pp.decode(sock.recv()):
            if isinstance(m, pp.StatusReply):
                doc = orjson.loads(m.json)
                pool = doc.get("pool", {})
                out = {k: int(pool.get(k, 0)) for k in ("pending", "zombies", "session_routes")}
                out.update({k: int(v) for k, v in (doc.get("tables") or {}).items()})
                return out
        return {}
    except (zmq.ZMQError, pp.ProtocolError, ValueError):
        return {}
    finally:
        sock.close(linger=0)


def judge(
    series: list[dict[str, Any]], tables: list[dict[str, Any]], seconds: float
) -> tuple[list[str], dict[str, dict[str, int]]]:
    """The failures after the warm-up, and per process/table its figures (first post-warm-up
    sample, last, max)."""
    warm_t = seconds / 5
    warm = [s for s in series if s["t"] >= warm_t]
    failures: list[str] = []
    figures: dict[str, dict[str, int]] = {}
    if not warm:
        return ["no sample after the warm-up"], figures
    for key in warm[0]:
        if key == "t":
            continue
        first, peak = warm[0][key], max(s.get(key, 0) for s in warm)
        figures[key] = {"start": first, "end": warm[-1].get(key, 0), "max": peak}
        if key.endswith("_anon_kb") and first and peak > first * 1.10:
            failures.append(f"{key}: {first} -> {peak} kB after the warm-up (> 10%)")
        if key.endswith("_fds") and peak > first:
            failures.append(f"{key}: {first} -> {peak} descriptors after the warm-up")
    twarm = [s for s in tables if s["t"] >= warm_t]
    if twarm:
        t0, t1 = twarm[0]["t"], twarm[-1]["t"]
        head = [s for s in twarm if s["t"] < t0 + 60] or twarm[:1]
        tail = [s for s in twarm if s["t"] > t1 - 60] or twarm[-1:]
        for key in twarm[0]:
            if key == "t":
                continue
            a = sum(s.get(key, 0) for s in head) / len(head)
            b = sum(s.get(key, 0) for s in tail) / len(tail)
            figures[f"gateway_{key}"] = {
                "start": round(a),
                "end": round(b),
                "max": max(s.get(key, 0) for s in twarm),
            }
            if b > a * 1.10 + TABLE_SLACK:
                failures.append(
                    f"gateway table {key}: {a:.0f} -> {b:.0f} entries (last minute "
                    "against the first after the warm-up)"
                )
    return failures, figures


def soak(workdir: Path, minutes: float, rate: float, workers: int = 2) -> dict[str, Any]:
    seconds = minutes * 60
    series: list[dict[str, Any]] = []
    tables: list[dict[str, Any]] = []
    fd_events: list[dict[str, Any]] = []
    with Gateway(workdir, workers=workers) as gw:
        status = f"ipc://{gw.data_dir}/status.ipc"
        out = workdir / "load.json"
        load = start_load(
            gw,
            out,
            "--scenario",
            "mix",
            "--rate",
            str(rate),
            "--duration",
            str(seconds),
            "--subscribers",
            "5000",
            "--timeout",
            "5",
            "--max-error-rate",
            "0.001",
        )
        t0 = time.monotonic()
        next_tables = 0.0
        most: dict[str, int] = {}  # per process, the most descriptors seen so far
        while load.poll() is None:
            t = round(time.monotonic() - t0, 1)
            procs = {
                "gateway": gw.pid,
                **{f"worker{i}": p for i, p in enumerate(sorted(gw.worker_pids()))},
            }
            series.append(
                {
                    "t": t,
                    **{f"{k}_rss_kb": rss_kb(p) for k, p in procs.items()},
                    **{f"{k}_anon_kb": rss_kb(p, "RssAnon") for k, p in procs.items()},
                    **{f"{k}_file_kb": rss_kb(p, "RssFile") for k, p in procs.items()},
                    **{f"{k}_fds": fd_count(p) for k, p in procs.items()},
                }
            )
            for k, p in procs.items():
                n = series[-1][f"{k}_fds"]
                if n > most.get(k, n):  # a new most: say what is open (what the verdict flags)
                    fd_events.append({"t": t, "process": k, "fds": fd_targets(p)})
                most[k] = max(n, most.get(k, n))
            if t >= next_tables:
                next_tables = t + TABLES_EVERY
                got = gateway_tables(status)
                if got:
                    tables.append({"t": t, **got})
            time.sleep(1.0)
        rep = orjson.loads(out.read_bytes()) if out.exists() else {}
    failures, figures = judge(series, tables, seconds)
    s = rep.get("summary") or {}
    for k in ("timeouts", "mismatches", "lost"):
        if s.get(k):
            failures.append(f"load: {s[k]} {k}")
    return {
        "minutes": minutes,
        "rate": rate,
        "series": series,
        "tables": tables,
        "fd_events": fd_events,
        "figures": figures,
        "load_summary": s,
        "failures": failures,
        "passed": not failures,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=500.0, help="sessions started per second")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--memlog", metavar="DIR", help="each process's memory figures, there")
    a = p.parse_args(argv)
    if a.memlog:
        os.makedirs(a.memlog, exist_ok=True)
        os.environ["CHARGEGW_MEMLOG"] = os.path.abspath(a.memlog)  # the gateway's children too
    with tempfile.TemporaryDirectory(prefix="chargegw-soak-") as tmp:
        r = soak(Path(tmp), a.minutes, a.rate, a.workers)
    print(
        f"soak {a.minutes} min at {a.rate}/s: {'ok' if r['passed'] else 'FAIL'} "
        "(after the warm-up: start, end, max)"
    )
    for key, f in r["figures"].items():
        print(f"  {key:28} {f['start']:>9} {f['end']:>9} {f['max']:>9}")
    s = r["load_summary"]
    print(f"  load: {s.get('sent', '?')} requests, result codes {s.get('result_codes')}")
    for f in r["failures"]:
        print(f"  {f}")
    for ev in r["fd_events"]:
        if ev["t"] >= a.minutes * 12:  # after the warm-up (a fifth of the run)
            print(f"  {ev['process']} at {ev['t']} s had open: {' '.join(ev['fds'])}")
    if a.json:
        Path(a.json).write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2))
    return 0 if r["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
