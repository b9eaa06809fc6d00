"""`chargegw bench store`: reserve+debit operations per second for each backend.

One operation is one credit-control update on an open session: debit the used units, release
the old reservation and reserve a new grant, with its idempotency record, in one atomic store
step (what every CCR-U costs). Runs with 1 and with N processes on a fresh store, then checks
the ledger invariants, prints the figures and writes a JSON report with orjson.

`sharded` (issue 10) is the SQLite store with each process owning a disjoint set of shards
(it claims them into its own file, so processes commit in parallel); it is printed beside
its ANCHOR, the single-file store measured in the same run with the same process counts.
Each process works on accounts of its own shards in both, so the two differ only in files.

`--cpu` (issue 10) measures instead the worker's CPU per CCR on the default store: one
process owning every shard of a sharded, durable SQLite store, drained batches of requests
from sessions of new subscribers (CCR-I, 3 CCR-U, CCR-T each, as erl-ccr-client sends),
timed with time.process_time (CPU, not wall: it stays comparable on a shared machine).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import orjson

from chargegw.sharding import DEFAULT_SHARDS, shard_of

from . import core
from .core import CCOp, ServiceReq
from .store import AccountRow, ProvisionRule, StoreConfig, ledger_check, open_store


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", choices=["sqlite", "sharded", "redis", "all"], default="all"
    )
    parser.add_argument(
        "--processes", default="1,2,4", help="comma-separated process counts (default 1,2,4)"
    )
    parser.add_argument(
        "--shards", type=int, default=DEFAULT_SHARDS, help="shards of the sharded store"
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per run")
    parser.add_argument(
        "--accounts", type=int, default=1000, help="accounts the sessions spread over"
    )
    parser.add_argument("--sessions", type=int, default=200, help="open sessions per process")
    parser.add_argument(
        "--redis-url", default="", help="use this Redis instead of a private redis-server"
    )
    parser.add_argument(
        "--batch",
        default="1,16",
        help="requests per store transaction (group commit), comma-separated",
    )
    parser.add_argument("--json", default="bench-store.json", help="report path ('' for none)")
    parser.add_argument(
        "--cpu",
        type=int,
        default=0,
        metavar="BATCHES",
        help="instead: CPU us per CCR over this many batches (sizes from --batch) of"
        " I/U/U/U/T sessions, in this process",
    )


def _mine(idx: int, procs: int, args: dict[str, Any]) -> tuple[frozenset[int], list[int]]:
    """Process `idx`'s shards (every procs-th) and the accounts in them."""
    n = args["shards"]
    shards = frozenset(s for s in range(n) if s % procs == idx)
    accts = [a for a in range(args["accounts"]) if shard_of(f"acct{a}", n) in shards]
    return shards, accts or [idx]


def _worker(
    cfg: StoreConfig, data_dir: str, idx: int, args: dict[str, Any], start: Any, q: Any
) -> None:
    store = open_store(cfg, data_dir, f"bench{idx}")
    shards, accts = _mine(idx, args["procs"], args)
    if args["sharded"]:
        store.assign_shards(shards)  # type: ignore[attr-defined]  # claims them
    sessions = [f"b{idx}-{i}" for i in range(args["sessions"])]
    numbers = dict.fromkeys(sessions, 0)
    now = time.time()
    for i, sid in enumerate(sessions):
        subs = [(0, f"9{accts[i % len(accts)]:09d}")]
        store.credit_control(
            CCOp(sid, 0, core.INITIAL, [ServiceReq("1:", 10, 60, 0, 600)], subs, now=now)
        )
    start.wait()
    ops = 0
    t0 = time.perf_counter()
    moved = 0
    end = t0 + args["seconds"]
    svc = [ServiceReq("1:", 10, 60, 60, 600)]
    batch = args["batch"]
    while True:
        if batch <= 1:
            for sid in sessions:
                numbers[sid] += 1
                store.credit_control(CCOp(sid, numbers[sid], core.UPDATE, svc, now=now))
        else:
            for k in range(0, len(sessions), batch):
                chunk = []
                for sid in sessions[k : k + batch]:
                    numbers[sid] += 1
                    chunk.append(CCOp(sid, numbers[sid], core.UPDATE, svc, now=now))
                out = store.credit_control_many(chunk) or []
                moved += sum(isinstance(o, Exception) for o in out)
        ops += len(sessions)
        if time.perf_counter() >= end:
            break
    q.put((ops - moved, time.perf_counter() - t0))


def _run(cfg: StoreConfig, procs: int, args: dict[str, Any]) -> dict[str, Any]:
    data_dir = tempfile.mkdtemp(prefix="cg-bench-")
    try:
        store = open_store(cfg, data_dir)
        rows = [
            AccountRow(f"acct{i}", 10**15, 0, False, [(0, f"9{i:09d}")])
            for i in range(args["accounts"])
        ]
        store.import_accounts(rows, time.time())
        ctx = mp.get_context("fork")
        start, q = ctx.Barrier(procs + 1), ctx.Queue()
        args = {**args, "procs": procs}
        ps = [
            ctx.Process(target=_worker, args=(cfg, data_dir, i, args, start, q))
            for i in range(procs)
        ]
        for p in ps:
            p.start()
        start.wait(timeout=120)
        results = [q.get(timeout=args["seconds"] + 120) for _ in ps]
        for p in ps:
            p.join(10)
        ops = sum(r[0] for r in results)
        wall = max(r[1] for r in results)
        rep = ledger_check(store)
        return {
            "processes": procs,
            "ops": ops,
            "seconds": round(wall, 3),
            "ops_per_s": round(ops / wall, 1),
            "ledger_ok": rep.ok,
            "debits": rep.debits,
        }
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


CPU_PREFIX = "4670"  # the provisioning rule's E.164 prefix (erl-ccr-client's numbers)
CPU_INFLIGHT = 50  # sessions in progress at once (erl-ccr-client's default concurrency)


def cpu_per_ccr(
    batches: int, batch: int = 20, shards: int = DEFAULT_SHARDS, warmup: int = 50
) -> dict[str, Any]:
    """CPU microseconds per CCR of one worker on the default store (see the module
    docstring): `warmup` batches, then `batches` timed ones of `batch` requests, each
    request of another session; every session is CCR-I (a new subscriber, provisioned by
    rule), 3 CCR-U and CCR-T. The ledger is checked afterwards (outside the timing)."""
    from .sqlite_store import open_sharded

    data_dir = tempfile.mkdtemp(prefix="cg-bench-cpu-")
    try:
        store = open_sharded(
            os.path.join(data_dir, "charging.db"), owner="cpu0", shards=shards, timeout=10.0
        )
        store.set_rules([ProvisionRule(0, CPU_PREFIX, 10**12, 0)])
        store.assign_shards(frozenset(range(shards)))
        now = time.time()
        grant = [ServiceReq("1:", 10, 60, 0, 600)]
        update = [ServiceReq("1:", 10, 60, 60, 600)]
        final = [ServiceReq("1:", 10, 60, 60, 0)]
        # each slot: (subscriber number, next request number); a finished slot starts anew
        slots = [[i, 0] for i in range(CPU_INFLIGHT)]
        nxt = CPU_INFLIGHT
        turn = 0

        def ops() -> list[CCOp]:
            nonlocal nxt, turn
            out = []
            for _ in range(batch):
                slot = slots[turn % len(slots)]
                turn += 1
                sub, n = slot
                data = f"{CPU_PREFIX}{sub:09d}"
                sid, shard = f"cpu;{sub}", shard_of(data, shards)
                if n == 0:
                    op = CCOp(sid, 0, core.INITIAL, grant, [(0, data)], now=now, shard=shard)
                elif n < 4:
                    op = CCOp(sid, n, core.UPDATE, update, now=now, shard=shard)
                else:
                    op = CCOp(sid, n, core.TERMINATION, final, now=now, shard=shard)
                    slot[0], nxt = nxt, nxt + 1
                    n = -1
                slot[1] = n + 1
                out.append(op)
            return out

        def drain(work: list[list[CCOp]]) -> int:
            """Runs the batches; the requests not applied."""
            failed = 0
            for chunk in work:
                out = store.credit_control_many(chunk)
                failed += len(chunk) if out is None else sum(isinstance(o, Exception) for o in out)
            return failed

        work = [ops() for _ in range(warmup + batches)]
        failed = drain(work[:warmup])
        t0 = time.process_time()
        failed += drain(work[warmup:])
        cpu = time.process_time() - t0
        rep = ledger_check(store)
        store.close()
        return {
            "batches": batches,
            "batch": batch,
            "ccrs": batches * batch,
            "cpu_us_per_ccr": round(cpu / (batches * batch) * 1e6, 1),
            "failed": failed,
            "ledger_ok": rep.ok,
            "debits": rep.debits,
        }
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def run_cpu(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {"benchmark": "store-cpu", "results": []}
    for b in [int(x) for x in str(args.batch).split(",") if x.strip()]:
        res = cpu_per_ccr(args.cpu, b, args.shards)
        report["results"].append(res)
        print(
            f"sqlite sharded durable batch={b:<3d} {res['cpu_us_per_ccr']:>7.1f} us CPU per CCR"
            f"  ({res['ccrs']} CCRs I/U/U/U/T, {res['failed']} failed,"
            f" ledger {'ok' if res['ledger_ok'] else 'FAILED'})"
        )
        sys.stdout.flush()
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    ok = all(r["ledger_ok"] and not r["failed"] for r in report["results"])
    return 0 if ok else 1


def run(args: argparse.Namespace) -> int:
    if args.cpu:
        return run_cpu(args)
    counts = [int(x) for x in str(args.processes).split(",") if x.strip()]
    batches = [int(x) for x in str(args.batch).split(",") if x.strip()]
    params = {
        "seconds": args.seconds,
        "accounts": args.accounts,
        "sessions": args.sessions,
        "shards": args.shards,
    }
    backends = ["sqlite", "sharded", "redis"] if args.backend == "all" else [args.backend]
    anchors: dict[tuple[int, int], float] = {}  # (processes, batch) -> single-file ops/s
    report: dict[str, Any] = {
        "benchmark": "store",
        "cpus": os.cpu_count(),
        "params": params,
        "results": [],
    }
    server = None
    try:
        for backend in backends:
            if backend == "redis":
                url = args.redis_url
                if not url:
                    from .testing import RedisServer

                    if shutil.which("redis-server") is None:
                        print("redis: skipped (no redis-server binary and no --redis-url)")
                        continue
                    server = RedisServer().start()
                    url = server.url
                cfgs = [
                    StoreConfig(backend="redis", url=url, prefix=f"bench{n}", timeout=5.0)
                    for n in counts
                ]
            else:
                cfgs = [
                    StoreConfig(backend="sqlite", timeout=10.0, shards=args.shards) for _ in counts
                ]
            for b in batches:
                for n, cfg in zip(counts, cfgs, strict=True):
                    if backend == "redis":
                        cfg = StoreConfig(
                            backend="redis", url=cfg.url, prefix=f"{cfg.prefix}b{b}", timeout=5.0
                        )
                    if backend == "sharded" and (n, b) not in anchors:  # measured beside it
                        anchor = _run(cfg, n, {**params, "batch": b, "sharded": False})
                        anchors[n, b] = anchor["ops_per_s"]
                    res = _run(cfg, n, {**params, "batch": b, "sharded": backend == "sharded"})
                    res["backend"] = backend
                    res["batch"] = b
                    if backend == "sqlite":
                        anchors[n, b] = res["ops_per_s"]
                    extra = ""
                    if backend == "sharded":
                        res["anchor_ops_per_s"] = anchors[n, b]
                        extra = f"  single-file anchor {anchors[n, b]:,.0f}"
                    report["results"].append(res)
                    print(
                        f"{backend:7s} processes={n} batch={b:<3d} {res['ops_per_s']:>10,.0f} reserve+debit ops/s{extra}"
                        f"  ({res['ops']} ops in {res['seconds']} s, ledger {'ok' if res['ledger_ok'] else 'FAILED'})"
                    )
                    sys.stdout.flush()
    finally:
        if server is not None:
            server.stop()
    if args.json:
        with open(args.json, "wb") as f:
            f.write(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        print(f"report: {args.json}")
    return 0 if all(r["ledger_ok"] for r in report["results"]) else 1


if __name__ == "__main__":  # pragma: no cover
    p = argparse.ArgumentParser()
    configure(p)
    sys.exit(run(p.parse_args()))
