"""Soak: `chargegw run` under mixed open-loop load for --minutes, RSS and open file descriptors
of the gateway and of every worker sampled each second.

    python -m chargegw.loadtest.soak --minutes 10 --rate 500 --json soak.json

Passes when, after the warm-up (the first fifth of the run), each process's anonymous memory
(RssAnon: heap and the like, where a leak shows) stays within 10% of its first post-warm-up
sample and its descriptor count does not grow, and the load run itself reported no timeout,
mismatch or lost request. Total RSS and its file-backed part (RssFile) are recorded too: the
SQLite store maps its files (`mmap_size`), so a worker's RSS grows with the ledger's file
while its heap stays flat.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from .reliability import Gateway, fd_count, rss_kb, start_load


def soak(workdir: Path, minutes: float, rate: float, workers: int = 2) -> dict[str, Any]:
    seconds = minutes * 60
    series: list[dict[str, Any]] = []
    with Gateway(workdir, workers=workers) as gw:
        out = workdir / "load.json"
        load = start_load(gw, out, "--scenario", "mix", "--rate", str(rate), "--duration",
                          str(seconds), "--subscribers", "5000", "--timeout", "5",
                          "--max-error-rate", "0.001")
        t0 = time.monotonic()
        while load.poll() is None:
            procs = {"gateway": gw.pid, **{f"worker{i}": p
                                          for i, p in enumerate(sorted(gw.worker_pids()))}}
            series.append({"t": round(time.monotonic() - t0, 1),
                           **{f"{k}_rss_kb": rss_kb(p) for k, p in procs.items()},
                           **{f"{k}_anon_kb": rss_kb(p, "RssAnon") for k, p in procs.items()},
                           **{f"{k}_file_kb": rss_kb(p, "RssFile") for k, p in procs.items()},
                           **{f"{k}_fds": fd_count(p) for k, p in procs.items()}})
            time.sleep(1.0)
        rep = orjson.loads(out.read_bytes()) if out.exists() else {}
    warm = [s for s in series if s["t"] >= seconds / 5]
    failures: list[str] = []
    if warm:
        for key in warm[0]:
            if key == "t":
                continue
            first, peak = warm[0][key], max(s.get(key, 0) for s in warm)
            if key.endswith("_anon_kb") and first and peak > first * 1.10:
                failures.append(f"{key}: {first} -> {peak} kB after the warm-up (> 10%)")
            if key.endswith("_fds") and peak > first:
                failures.append(f"{key}: {first} -> {peak} descriptors after the warm-up")
    else:
        failures.append("no sample after the warm-up")
    s = rep.get("summary") or {}
    for k in ("timeouts", "mismatches", "lost"):
        if s.get(k):
            failures.append(f"load: {s[k]} {k}")
    return {"minutes": minutes, "rate": rate, "series": series, "load_summary": s,
            "failures": failures, "passed": not failures}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=500.0, help="sessions started per second")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", metavar="FILE")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="chargegw-soak-") as tmp:
        r = soak(Path(tmp), a.minutes, a.rate, a.workers)
    last = r["series"][-1] if r["series"] else {}
    print(f"soak {a.minutes} min at {a.rate}/s: {'ok' if r['passed'] else 'FAIL'}; last sample "
          f"{last}")
    for f in r["failures"]:
        print(f"  {f}")
    if a.json:
        Path(a.json).write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2))
    return 0 if r["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
