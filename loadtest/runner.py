"""Run a load configuration in one process or `processes` processes, and merge the results.

With P > 1 each child process owns its share of connections, sessions and rate. The children
connect first; once all have completed CER/CEA the parent hands them one common start time on
the system-wide monotonic clock, so their one-second intervals line up. Each child sends an
interval row a second (for the live progress line) and its recorder at the end; the parent
adds the HDR histograms, so merged percentiles are exact.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import queue
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .generator import ConnectError, LoadConfig, build_report, run_process
from .stats import merge_intervals

Progress = Callable[[dict[str, Any]], None]


class Ticks:
    """Collects per-process interval rows; emits one merged progress row per second."""

    def __init__(self, processes: int, on_progress: Progress | None) -> None:
        self.p = processes
        self.on_progress = on_progress
        self.rows: dict[int, list[dict[str, Any]]] = {}
        self.totals: dict[int, dict[str, int]] = {}

    def add(self, proc: int, row: dict[str, Any]) -> None:
        self.totals[proc] = row["total"]
        got = self.rows.setdefault(row["index"], [])
        got.append(row)
        if len(got) >= self.p:
            del self.rows[row["index"]]
            self._emit(got)

    def _emit(self, rows: list[dict[str, Any]]) -> None:
        if self.on_progress is None:
            return
        merged = merge_intervals(rows)[0]
        total: dict[str, int] = {}
        for t in self.totals.values():
            for k, v in t.items():
                total[k] = total.get(k, 0) + v
        self.on_progress({**merged, "total": total})


def _split(cfg: LoadConfig, i: int) -> LoadConfig:
    p = cfg.processes
    conns = max(1, cfg.connections // p + (1 if i < cfg.connections % p else 0))
    # the total stays known to each child: its connections are numbered in it (Origin-Host)
    return replace(cfg, process_index=i, connections=conns,
                   extra={**cfg.extra, "total_connections": cfg.connections})


def _child(cfg: LoadConfig, q: Any, go: Any, start: Any) -> None:
    i = cfg.process_index

    async def main() -> None:
        from .generator import Engine  # noqa: PLC0415 - the child builds its own engine

        eng = Engine(cfg, lambda row: q.put(("tick", i, row)))
        await eng.connect()
        q.put(("ready", i, None))
        ok = await asyncio.to_thread(go.wait, 120)
        if not ok or start.value < 0:  # another process failed to connect: do not run
            await eng.close()
            q.put(("aborted", i, None))
            return
        q.put(("done", i, await eng.run(start.value)))

    try:
        try:
            import uvloop  # noqa: PLC0415

            uvloop.run(main())
        except ImportError:
            asyncio.run(main())
    except ConnectError as exc:
        q.put(("error", i, str(exc)))
    except Exception as exc:  # noqa: BLE001 - reported by the parent, never a traceback
        q.put(("error", i, f"process {i}: {type(exc).__name__}: {exc}"))


def run_config(cfg: LoadConfig, on_progress: Progress | None = None) -> dict[str, Any]:
    """Run `cfg`; return the report summary. Raises ConnectError when the target is unusable."""
    if cfg.processes <= 1:
        ticks = Ticks(1, on_progress)

        async def one() -> dict[str, Any]:
            part = await run_process(cfg, lambda row: ticks.add(0, row))
            return build_report(cfg, [part])

        try:
            import uvloop  # noqa: PLC0415

            return uvloop.run(one())
        except ImportError:
            return asyncio.run(one())
    return _run_multi(cfg, on_progress)


def _run_multi(cfg: LoadConfig, on_progress: Progress | None) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    go = ctx.Event()
    start = ctx.Value("d", 0.0)
    procs = [ctx.Process(target=_child, args=(_split(cfg, i), q, go, start), daemon=True)
             for i in range(cfg.processes)]
    for p in procs:
        p.start()
    ticks = Ticks(cfg.processes, on_progress)
    ready: set[int] = set()
    parts: dict[int, dict[str, Any]] = {}
    errors: list[str] = []
    aborted = 0

    def forward(sig: int, _frame: Any) -> None:
        """A stop for the parent is a graceful stop for every child (they report as usual)."""
        for p in procs:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    old_handlers: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old_handlers[sig] = signal.signal(sig, forward)
        except ValueError:  # not the main thread: no forwarding
            break
    # generous: spawn and import take seconds on a busy machine; each run ends by itself
    hard_end = time.monotonic() + 60 + cfg.connect_timeout + cfg.warmup + (cfg.duration or 0) + (
        cfg.timeout * 4)
    try:
        while len(parts) + len(errors) + aborted < cfg.processes:
            try:
                kind, i, payload = q.get(timeout=0.5)
            except queue.Empty:
                dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
                if dead and not errors:
                    errors.append(f"a generator process exited with code {dead[0].exitcode}")
                if not any(p.is_alive() for p in procs) and q.empty():
                    errors.append("generator processes ended without a result")
                    break
                if cfg.duration is not None and time.monotonic() > hard_end:
                    errors.append("generator processes did not finish in time")
                    break
                continue
            if kind == "ready":
                ready.add(i)
                if len(ready) == cfg.processes:
                    start.value = time.monotonic() + 0.2
                    go.set()
            elif kind == "tick":
                ticks.add(i, payload)
            elif kind == "done":
                parts[i] = payload
            elif kind == "aborted":
                aborted += 1
            elif kind == "error":
                errors.append(payload)
                if len(ready) < cfg.processes:
                    start.value = -1.0  # the others must not start a partial run
                go.set()
        if errors and not parts:
            raise ConnectError(errors[0])
    finally:
        for signum, h in old_handlers.items():
            signal.signal(signum, h)
        go.set()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
    summary = build_report(cfg, [parts[i] for i in sorted(parts)])
    summary["problems"] = errors + summary["problems"]
    return summary
