"""`chargegw load`: drive any Diameter server with charging scenarios; report honest figures.

Exit status: 0 when the run passed (no timeouts, mismatches or lost requests, and within
`--max-error-rate` / `--max-p99-ms` when given), 1 when it did not, 2 when it could not run
(unreachable target, CER refused, bad arguments). See loadtest/README.md.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import orjson

from chargegw import __version__

from . import money
from .generator import ConnectError, LoadConfig
from .report import SCHEMA, ProgressLine, plot, print_table, write_json
from .runner import run_config
from .scenarios import PRESETS, load_scenario_file, preset, read_subscriber_csv


def configure(p: argparse.ArgumentParser) -> None:
    t = p.add_argument_group("target")
    t.add_argument("--host", default="127.0.0.1")
    t.add_argument("--port", type=int, default=3868)
    t.add_argument("--origin-host", default="load.localdomain")
    t.add_argument("--origin-realm", default="localdomain")
    t.add_argument("--dest-realm", default="localdomain")
    t.add_argument("--dest-host", default=None)
    t.add_argument("--compare", nargs="+", metavar="HOST:PORT", default=None,
                   help="also run against these targets, one after another; print ratios")
    s = p.add_argument_group("scenario")
    s.add_argument("--scenario", default="gy",
                   help=f"a preset ({', '.join(PRESETS)}) or a TOML scenario file")
    s.add_argument("--updates", type=int, default=None, help="CCR-U / ACR-INTERIM per session")
    s.add_argument("--interval", type=float, default=None, help="seconds between session steps")
    s.add_argument("--rating-group", type=int, action="append", default=None,
                   help="rating group of each MSCC (repeat for several; default 100)")
    s.add_argument("--service-identifier", type=int, default=None)
    s.add_argument("--used-octets", type=int, default=None,
                   help="Used-Service-Unit CC-Total-Octets per rating group per report")
    s.add_argument("--requested-action", type=int, default=None,
                   help="gy-event: 0 direct debiting, 1 refund, 2 check balance, 3 price")
    s.add_argument("--no-ps-information", dest="ps_information", action="store_false",
                   default=None, help="leave out the 3GPP Service-Information (plain RFC 4006)")
    s.add_argument("--msisdn-base", type=int, default=4670000000000)
    s.add_argument("--subscribers", type=int, default=10000, help="distinct MSISDNs used")
    s.add_argument("--subscribers-csv", default=None, help="MSISDNs, first column, one length")
    m = p.add_argument_group("load model")
    m.add_argument("--sessions", type=int, default=None,
                   help="sessions to run (default 1000 without --duration, else no limit)")
    m.add_argument("--duration", type=float, default=None, help="seconds to run after warm-up")
    m.add_argument("--warmup", type=float, default=0.0, help="seconds excluded from figures")
    m.add_argument("--concurrency", type=int, default=50,
                   help="closed loop: sessions in flight (default 50)")
    m.add_argument("--rate", type=float, default=None,
                   help="open loop: sessions started per second, latency from intended time")
    m.add_argument("--connections", type=int, default=1,
                   help="peer connections (default 1); with more than one, each is its own "
                        "peer: Origin-Host load-c1.localdomain, load-c2..., from --origin-host")
    m.add_argument("--processes", type=int, default=1, help="generator processes (default 1)")
    m.add_argument("--timeout", type=float, default=5.0, help="per-request timeout in seconds")
    m.add_argument("--doic", action="store_true",
                   help="act as a DOIC reacting node (RFC 7683): send OC-Supported-Features and "
                        "abate new sessions (open loop) by the overload reports received")
    m.add_argument("--connect-timeout", type=float, default=5.0)
    m.add_argument("--reconnect", type=float, default=0.0, metavar="SECONDS",
                   help="when the server drops a connection (killed, restarted, DPR), re-open "
                        "it with backoff for at most SECONDS, redo CER and resend each "
                        "unanswered request with the T flag, same End-to-End id and "
                        "Session-Id (RFC 6733 5.5.4); counted as reconnects/resent. Default "
                        "0: off, a dropped connection fails its requests (a benchmark should "
                        "show the drop, not ride over it)")
    m.add_argument("--seed", type=int, default=None, help="seed of the mix's flow choice")
    g = p.add_argument_group("gates and ramp")
    g.add_argument("--max-error-rate", type=float, default=None,
                   help="fail (exit 1) above this fraction of failed requests, e.g. 0.001")
    g.add_argument("--max-p99-ms", type=float, default=None, help="fail (exit 1) above this p99")
    g.add_argument("--ramp", default=None, metavar="FROM:TO:STEP/SECONDS",
                   help="open-loop rate steps; reports the knee (highest passing rate)")
    mo = p.add_argument_group("money check (Gy)")
    mo.add_argument("--expect-tariff", action="append", default=None, metavar="RG=PRICE/UNIT",
                    help="tariff per rating group, e.g. 100=0.01/1048576 (default: the config's)")
    mo.add_argument("--verify-ledger", action="store_true",
                    help="compare expected debits with `chargegw ledger check --json` before/after")
    mo.add_argument("--ledger-config", default=None,
                    help="the gateway's config file (tariffs and store) for the money check")
    o = p.add_argument_group("output")
    o.add_argument("--json", metavar="FILE", help="write the report as JSON (schema chargegw-load/1)")
    o.add_argument("--plot", metavar="FILE.png", help="throughput and percentiles over time")
    o.add_argument("--record", metavar="FILE",
                   help="write the identity of every ACR answered 2001 as JSON lines "
                        '{"session_id": ..., "record_number": N, "resent": BOOL} (resent: '
                        "answered after a reconnect's T-flagged resend), to check a CDR store")
    o.add_argument("--quiet", action="store_true", help="no progress line")


def config_from_args(args: argparse.Namespace) -> LoadConfig:
    over: dict[str, Any] = {
        "updates": args.updates,
        "interval": args.interval,
        "rating_groups": args.rating_group,
        "service_identifier": args.service_identifier,
        "used_octets": args.used_octets,
        "requested_action": args.requested_action,
        "ps_information": args.ps_information,
    }
    if args.scenario in PRESETS:
        scn = preset(args.scenario, **over)
        scn.msisdn_base, scn.subscribers = args.msisdn_base, args.subscribers
    else:
        scn = load_scenario_file(args.scenario, **over)
    if args.subscribers_csv:
        scn.subscriber_list = read_subscriber_csv(args.subscribers_csv)
    for name in ("processes", "connections", "concurrency"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1")
    return LoadConfig(
        host=args.host, port=args.port, origin_host=args.origin_host,
        origin_realm=args.origin_realm, destination_realm=args.dest_realm,
        destination_host=args.dest_host, scenario=scn, kind=scn.kind,
        sessions=args.sessions, duration=args.duration, warmup=args.warmup,
        concurrency=args.concurrency, rate=args.rate,
        connections=max(args.connections, args.processes), processes=args.processes,
        timeout=args.timeout, connect_timeout=args.connect_timeout, seed=args.seed,
        updates=scn.flows[0].updates, doic=args.doic,
        reconnect=max(0.0, args.reconnect), record=bool(args.record),
    )


def params(cfg: LoadConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d.pop("process_index")
    d.pop("extra")
    d["model"] = "open" if cfg.rate else "closed"
    subs = d["scenario"].get("subscriber_list")
    if subs:
        d["scenario"]["subscriber_list"] = f"{len(subs)} entries"
    return d


def gates(summary: dict[str, Any], max_err: float | None, max_p99: float | None) -> list[str]:
    """The limits a run exceeded, in words; empty when it passed."""
    out = []
    if max_err is not None and summary["error_rate"] > max_err:
        out.append(f"error rate {summary['error_rate']:.4%} > {max_err:.4%}")
    p99 = summary["latency_ms"]["p99"]
    if max_p99 is not None and (p99 is None or p99 > max_p99):
        out.append(f"p99 {p99} ms > {max_p99} ms")
    if max_err is None and (summary["timeouts"] or summary["mismatches"] or summary["lost"]):
        out.append(f"{summary['timeouts']} timeouts, {summary['mismatches']} mismatches, "
                   f"{summary['lost']} lost")
    if summary["sent"] == 0:
        out.append("nothing was sent")
    return out


def parse_ramp(text: str) -> tuple[float, float, float, float]:
    m = re.fullmatch(r"\s*([\d.]+):([\d.]+):([\d.]+)/([\d.]+)\s*", text)
    if not m:
        raise ValueError(f"--ramp {text!r}: expected FROM:TO:STEP/SECONDS, e.g. 1000:20000:1000/10")
    a, b, step, secs = (float(x) for x in m.groups())
    if step <= 0 or secs <= 0 or b < a or a <= 0:
        raise ValueError(f"--ramp {text!r}: need 0 < FROM <= TO, STEP > 0, SECONDS > 0")
    return a, b, step, secs


def _one(cfg: LoadConfig, args: argparse.Namespace, title: str) -> dict[str, Any]:
    total = (cfg.warmup + cfg.duration) if cfg.duration else None
    bar = ProgressLine(total, cfg.sessions, enabled=not args.quiet)
    try:
        summary = run_config(cfg, bar)
    finally:
        bar.stop()
    acked = summary.pop("acked_acrs", None)
    if acked is not None and args.record:
        with open(args.record, "ab") as f:
            f.writelines(orjson.dumps({"session_id": sid, "record_number": n, "resent": r})
                         + b"\n" for sid, n, r in acked)
    print_table(summary, title)
    return summary


def _ramp(cfg: LoadConfig, args: argparse.Namespace) -> dict[str, Any]:
    a, b, step, secs = parse_ramp(args.ramp)
    max_err = 0.001 if args.max_error_rate is None else args.max_error_rate
    max_p99 = 100.0 if args.max_p99_ms is None else args.max_p99_ms
    steps, knee = [], None
    rate = a
    while rate <= b + 1e-9:
        c = LoadConfig(**{**asdict(cfg), "rate": rate, "duration": secs, "sessions": None,
                          "scenario": cfg.scenario})
        s = _one(c, args, f"ramp step: {rate:,.0f} sessions/s offered against {cfg.target}")
        failed = gates(s, max_err, max_p99)
        steps.append({"rate": rate, "answers_per_s": s["answers_per_s"],
                      "p99_ms": s["latency_ms"]["p99"], "error_rate": s["error_rate"],
                      "passed": not failed, "failures": failed, "summary": s})
        if failed:
            break
        knee = rate
        rate += step
    print(f"\nramp against {cfg.target} (p99 <= {max_p99} ms, errors <= {max_err:.3%}):")
    for st in steps:
        mark = "ok  " if st["passed"] else "FAIL"
        print(f"  {mark} offered {st['rate']:>10,.0f}/s  answered {st['answers_per_s']:>10,.1f}/s"
              f"  p99 {st['p99_ms']} ms  errors {st['error_rate']:.3%}"
              + (f"  ({'; '.join(st['failures'])})" if st["failures"] else ""))
    print(f"knee: {'none (the first step failed)' if knee is None else f'{knee:,.0f} sessions/s'}")
    return {"steps": steps, "knee_rate": knee, "max_error_rate": max_err, "max_p99_ms": max_p99}


def _compare(
    cfg: LoadConfig, args: argparse.Namespace, first: dict[str, Any]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{"target": cfg.target, "summary": first}]
    for t in args.compare:
        host, _, port = t.rpartition(":")
        c = LoadConfig(**{**asdict(cfg), "host": host or "127.0.0.1", "port": int(port),
                          "scenario": cfg.scenario})
        s: dict[str, Any] | None
        try:
            s = _one(c, args, f"chargegw load against {c.target}")
        except ConnectError as exc:
            print(f"chargegw load: {exc}", file=sys.stderr)
            s = None
        rows.append({"target": c.target, "summary": s})
    base = first["answers_per_s"] or None
    print("\ncomparison (same scenario, one after another):")
    for r in rows:
        s = r["summary"]
        if s is None:
            r["ratio"] = None
            print(f"  {r['target']:<22} could not run")
            continue
        r["ratio"] = round(s["answers_per_s"] / base, 3) if base else None
        print(f"  {r['target']:<22} {s['answers_per_s']:>10,.1f} answers/s  p50 "
              f"{s['latency_ms']['p50']} ms  p99 {s['latency_ms']['p99']} ms  errors "
              f"{s['error_rate']:.3%}  ratio {r['ratio']}")
    return rows


def _money(cfg: LoadConfig, summary: dict[str, Any], tariffs: dict[int, tuple[int, int]],
           before: dict[str, Any] | None, args: argparse.Namespace) -> dict[str, Any]:
    exp = money.expected_debits(cfg.build_scenario(), summary["usage_reports"], tariffs)
    low, high = exp["low_micro"], exp["high_micro"]
    rng = money.fmt(low) if low == high else f"{money.fmt(low)} .. {money.fmt(high)}"
    print(f"money: the OCS should have rated {rng} for the usage this run reported")
    out: dict[str, Any] = {"expected": exp}
    if before is not None:
        res = money.verify(before, money.ledger_snapshot(args.ledger_config), exp)
        out |= res
        print(f"money: ledger rated {money.fmt(res['rated_delta_micro'])} during the run, ledger "
              f"{'OK' if res['ledger_ok'] else 'FAILED'}: "
              f"{'match' if res['passed'] else 'MISMATCH'}")
        for p in res["ledger_problems"]:
            print(f"  ledger problem: {p}")
    return out


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
        if args.ramp:
            parse_ramp(args.ramp)
    except (ValueError, OSError) as exc:
        print(f"chargegw load: {exc}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "schema": SCHEMA, "tool": f"chargegw load {__version__}",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": cfg.target, "params": params(cfg), "summary": None,
        "gates": None, "ramp": None, "compare": None, "money": None,
    }
    tariffs = before = None
    if args.expect_tariff or args.verify_ledger:
        try:
            tariffs = (money.parse_tariffs(args.expect_tariff) if args.expect_tariff
                       else money.tariffs_from_config(args.ledger_config))
            money.expected_debits(cfg.build_scenario(), {}, tariffs)  # fail early on gaps
            if args.verify_ledger:
                before = money.ledger_snapshot(args.ledger_config)
        except (ValueError, OSError, subprocess.SubprocessError) as exc:
            print(f"chargegw load: money check: {exc}", file=sys.stderr)
            return 2
    if args.record:
        try:
            open(args.record, "wb").close()  # each run of this command writes a fresh file
        except OSError as exc:
            print(f"chargegw load: --record: {exc}", file=sys.stderr)
            return 2
    t0 = time.monotonic()
    try:
        if args.ramp:
            report["ramp"] = _ramp(cfg, args)
            steps = report["ramp"]["steps"]
            report["summary"] = steps[-1]["summary"] if steps else None
            failed = [] if report["ramp"]["knee_rate"] is not None else ["no step passed"]
        else:
            summary = _one(cfg, args, f"chargegw load: {cfg.kind} against {cfg.target}")
            report["summary"] = summary
            failed = gates(summary, args.max_error_rate, args.max_p99_ms)
            if args.compare:
                report["compare"] = _compare(cfg, args, summary)
    except ConnectError as exc:
        print(f"chargegw load: {exc}", file=sys.stderr)
        report["problems"] = [str(exc)]
        if args.json:
            write_json(args.json, report)
        return 2
    if tariffs is not None and report["summary"] is not None:
        report["money"] = _money(cfg, report["summary"], tariffs, before, args)
        if report["money"].get("passed") is False:
            failed.append("the ledger does not match the usage reported")
    report["gates"] = {"max_error_rate": args.max_error_rate, "max_p99_ms": args.max_p99_ms,
                       "passed": not failed, "failures": failed}
    report["wall_s"] = round(time.monotonic() - t0, 3)
    if args.json:
        write_json(args.json, report)
    if args.plot and report["summary"] is not None:
        err = plot(args.plot, report["summary"], f"chargegw load {cfg.kind} -> {cfg.target}")
        if err:
            print(f"chargegw load: {err}", file=sys.stderr)
    if failed:
        print("FAIL: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0
