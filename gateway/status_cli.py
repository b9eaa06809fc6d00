"""`chargegw status`: ask a running gateway for its peers, workers and counters.

The query goes to the gateway's status socket, an ipc:// socket of mode 0600 that only the
operator's user can reach (never the worker endpoints): a DEALER sends a `StatusQuery` and
the gateway replies `StatusReply` with a JSON document. The endpoint comes from
`--endpoint`, or from the config (`pool.status_bind`, default ipc://<data_dir>/status.ipc).

Counters are totals since start; rates need a time base, so the CLI takes two samples
`--interval` seconds apart and divides the change by the gateway's own monotonic clock
between them (not this process's: the gap between asking and answering is not counted).
Latency percentiles come the same way from the front end's histogram: over the interval
when answers were made in it, else since start (the output says which). Per-worker rows
and their rates: gateway/status_workers.py.

Exit status: 0; 1 when the gateway does not answer; 2 for a config error; 3 when it
answers but has no worker registered (every application request would get 3002).
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from typing import Any

import orjson
import zmq

from chargegw.gateway.metrics import quantile
from chargegw.gateway.status_workers import derive_workers, render_workers
from chargegw.ipc import protocol as pp

EX_NO_WORKER = 3
QUANTILES = (0.5, 0.9, 0.99)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", help="TOML config file (to find the endpoint)")
    parser.add_argument(
        "--endpoint", "-e", help="the gateway's status socket (ipc://; default from the config)"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the gateway's JSON document, with the rates and percentiles added",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="seconds between the two samples rates are made from (default 1; 0: one "
        "sample, no rates)",
    )
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait (default 2)")


def query(endpoint: str, timeout: float = 2.0) -> dict[str, Any]:
    """The status document; raises TimeoutError when nothing answers."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.ROUTING_ID, b"status-" + secrets.token_hex(4).encode())
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, 64 << 20)  # the status document; bounded all the same
    try:
        sock.connect(endpoint)
        sock.send(pp.encode_one(pp.StatusQuery()))
        deadline_ms = int(timeout * 1000)
        while sock.poll(deadline_ms):
            for m in pp.decode(sock.recv()):
                if isinstance(m, pp.StatusReply):
                    return orjson.loads(m.json)
        raise TimeoutError(f"no answer from {endpoint} in {timeout:g}s (is the gateway running?)")
    finally:
        sock.close(linger=0)


def run(args: argparse.Namespace) -> int:
    endpoint = args.endpoint
    if not endpoint:
        from chargegw.config import ConfigError, load_config

        try:
            cfg = load_config(args.config)
        except ConfigError as exc:
            print(f"chargegw status: {exc}", file=sys.stderr)
            return 2
        from chargegw.ipc.security import status_endpoint

        endpoint = status_endpoint(cfg)
    try:
        first = query(endpoint, args.timeout)
        doc = first
        if args.interval > 0:
            time.sleep(args.interval)
            doc = query(endpoint, args.timeout)
    except (TimeoutError, zmq.ZMQError, pp.ProtocolError) as exc:
        print(f"chargegw status: {exc}", file=sys.stderr)
        return 1
    derived = derive(first, doc) if doc is not first else derive(None, doc)
    if args.json:
        out = {**doc, **derived}
        sys.stdout.buffer.write(orjson.dumps(out, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(render(doc, derived))
    if not doc.get("pool", {}).get("workers"):
        print(
            f"chargegw status: no worker is registered with the gateway at {endpoint}: every "
            "application request gets 3002 (start workers, or see their logs for why they "
            "did not register: worker.gateways, worker.curve_* keys)",
            file=sys.stderr,
        )
        return EX_NO_WORKER
    return 0


def _clock(doc: dict[str, Any]) -> float | None:
    fe = doc.get("front_end")
    if isinstance(fe, dict) and isinstance(fe.get("clock_s"), int | float):
        return float(fe["clock_s"])
    up = doc.get("uptime_s")
    return float(up) if isinstance(up, int | float) else None


def _counters(doc: dict[str, Any]) -> dict[str, float]:
    """Every total in the document, flat: pool counters, the Node's, the front end's."""
    out: dict[str, float] = {}
    for k, v in doc.get("pool", {}).get("counters", {}).items():
        out[f"pool.{k}"] = v
    for k, v in (doc.get("node") or {}).items():
        if isinstance(v, int | float):
            out[f"node.{k}"] = v
    if isinstance(doc.get("errors_sent"), int | float):
        out["errors_sent"] = doc["errors_sent"]
    fe = doc.get("front_end") or {}
    if "requests" in fe:
        out["requests"] = fe["requests"]
        out["answers"] = sum(fe.get("answers", {}).values())
        for code, v in fe.get("answers", {}).items():
            out[f"answers.{code}"] = v
    return out


def derive(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """Rates per second between two status documents, and latency percentiles (over the
    interval when it saw answers, else since start). With no `before`, or a gateway that
    restarted between the samples, only the percentiles since start."""
    out: dict[str, Any] = {}
    t0 = _clock(before) if before is not None else None
    t1 = _clock(after)
    c1 = _counters(after)
    if before is not None and t0 is not None and t1 is not None and t1 > t0:
        c0 = _counters(before)
        if all(c1.get(k, 0) >= v for k, v in c0.items()):  # else a restart: no rates
            dt = t1 - t0
            out["interval_s"] = round(dt, 3)
            out["rates"] = {k: round((v - c0.get(k, 0)) / dt, 3) for k, v in c1.items()}
    out["workers"] = derive_workers(before, after, out.get("interval_s"))
    lat = (after.get("front_end") or {}).get("latency")
    if isinstance(lat, dict):
        bounds = list(lat.get("bounds_s", []))
        counts = list(lat.get("counts", []))
        window = "since start"
        old = (before.get("front_end") or {}).get("latency") if before is not None else None
        if "rates" in out and isinstance(old, dict) and len(old.get("counts", [])) == len(counts):
            delta = [a - b for a, b in zip(counts, old["counts"], strict=True)]
            if sum(delta) > 0:
                counts, window = delta, "interval"
        if bounds and sum(counts) > 0:
            out["latency"] = {
                "window": window,
                "answers": sum(counts),
                **{
                    f"p{round(q * 100)}_ms": round(quantile(q, bounds, counts) * 1000, 3)  # type: ignore[operator]
                    for q in QUANTILES
                },
            }
    return out


def render(doc: dict[str, Any], derived: dict[str, Any] | None = None) -> str:
    """The document for a person: peers, workers, then every counter with its rate."""
    derived = derived or {}
    lines = [
        f"gateway {doc.get('origin_host', '?')} (realm {doc.get('origin_realm', '?')}), "
        f"up {doc.get('uptime_s', 0):.0f}s, listening on {', '.join(doc.get('listen', [])) or '-'}"
        f"{' (draining)' if doc.get('draining') else ''}",
        f"worker endpoints: {', '.join(doc.get('endpoints', []))}",
        "",
        f"peers ({len(doc.get('peers', []))}):",
    ]
    for p in doc.get("peers", []):
        lines.append(
            f"  {p.get('name')}  {p.get('state')}  wd={p.get('watchdog', '-')}  apps={p.get('apps')}  "
            f"in={p.get('requests_in', 0)} out={p.get('requests_out', 0)} outstanding={p.get('outstanding', 0)}"
        )
    lines += ["", *render_workers(doc, derived)]
    if "launcher" in doc:
        la = doc["launcher"]
        lines.append(f"  launcher: {la.get('workers')} slots, restarts {la.get('restarts')}")
    rates: dict[str, float] = derived.get("rates", {})
    if "interval_s" in derived:
        lines += ["", f"counters (total, and per second over the last {derived['interval_s']:g}s):"]
    else:
        lines += ["", "counters (totals since start; --interval > 0 adds rates):"]
    for k, v in _counters(doc).items():
        rate = f"  {rates[k]:>10.1f}/s" if k in rates else ""
        lines.append(f"  {k:<28} {v:>12g}{rate}")
    lat = derived.get("latency")
    if lat:
        qs = "  ".join(
            f"p{round(q * 100)} {lat[f'p{round(q * 100)}_ms']:.2f} ms" for q in QUANTILES
        )
        lines += ["", f"answer latency ({lat['window']}, {lat['answers']} answers): {qs}"]
    return "\n".join(lines)
