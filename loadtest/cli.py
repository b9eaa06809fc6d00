"""`chargegw load`: drive a gateway with Gy sessions and report throughput and latency."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from .generator import LoadConfig, Stats, run_load


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3868)
    p.add_argument("--origin-host", default="load.localdomain")
    p.add_argument("--origin-realm", default="localdomain")
    p.add_argument("--dest-realm", default="localdomain")
    p.add_argument("--dest-host", default=None)
    p.add_argument("--sessions", type=int, default=1000, help="sessions to run (default 1000)")
    p.add_argument("--updates", type=int, default=1, help="CCR-U per session (default 1)")
    p.add_argument("--concurrency", type=int, default=50, help="sessions in flight (default 50)")
    p.add_argument("--duration", type=float, default=None, help="stop starting sessions after S s")
    p.add_argument("--rate", type=float, default=None, help="sessions started per second")
    p.add_argument("--msisdn-base", type=int, default=4670000000000)
    p.add_argument("--subscribers", type=int, default=10000, help="distinct MSISDNs used")
    p.add_argument("--rating-group", type=int, default=100)
    p.add_argument("--timeout", type=float, default=5.0, help="per-request timeout in seconds")
    p.add_argument("--json", metavar="FILE", help="write the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _progress(stats: Stats, rate: float) -> None:
    print(
        f"  sent={stats.sent} answered={stats.answered} ok={stats.ok} timeouts={stats.timeouts} "
        f"sessions={stats.sessions_done}/{stats.sessions_started} rate={rate:,.0f}/s",
        file=sys.stderr,
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    cfg = LoadConfig(
        host=args.host,
        port=args.port,
        origin_host=args.origin_host,
        origin_realm=args.origin_realm,
        destination_realm=args.dest_realm,
        destination_host=args.dest_host,
        sessions=args.sessions,
        updates=args.updates,
        concurrency=args.concurrency,
        duration=args.duration,
        rate=args.rate,
        msisdn_base=args.msisdn_base,
        subscribers=args.subscribers,
        rating_group=args.rating_group,
        timeout=args.timeout,
        progress=0 if args.quiet else 1.0,
    )
    try:
        summary: dict[str, Any] = asyncio.run(run_load(cfg, on_progress=_progress))
    except (ConnectionError, OSError, TimeoutError) as exc:
        print(f"chargegw load: cannot run against {cfg.host}:{cfg.port}: {exc}", file=sys.stderr)
        return 2
    lat = summary["latency_ms"]
    print(
        f"sessions {summary['sessions_completed']}/{summary['sessions_started']} completed, "
        f"{summary['answered']}/{summary['sent']} answered ({summary['ok_2001']} x 2001, "
        f"{summary['errors']} other, {summary['timeouts']} timeouts) in {summary['elapsed_s']} s: "
        f"{summary['answers_per_s']:,.0f} answers/s, p50 {lat['p50']} ms, p99 {lat['p99']} ms"
    )
    if summary["result_codes"]:
        print("result codes: " + ", ".join(f"{k}={v}" for k, v in summary["result_codes"].items()))
    if args.json:
        with open(args.json, "wb") as f:
            f.write(
                orjson.dumps({"config": vars(args), "summary": summary}, option=orjson.OPT_INDENT_2)
            )
    return 0 if summary["timeouts"] == 0 and summary["answered"] == summary["sent"] else 1
