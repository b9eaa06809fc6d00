"""`chargegw bench load`: the load generator's own ceiling, against anchors in the same run.

Parts (all by default; `--only` picks):
- fd: freeDiameter's fd-server (../shared/peers/fd-server.sh) driven first by freeDiameter's
  own C client (fd-client.sh, test_app benchmark mode) and then by `chargegw load --scenario
  test_app` at the same concurrency and duration. The ratio ours / fd-client is the figure the
  issue asks for (target >= 0.8).
- null: the stub server (`python -m chargegw.loadtest.stub`, byte-level answers): the
  generator's ceiling with a server that costs almost nothing, for test_app and Gy I/U/T.
- erl: Erlang/OTP's erl-ccr-server (RFC 4006) with the Gy scenario.
Client and server share the machine's cores, so compare ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from chargegw.gateway.bench import Proc  # output to a file: a full pipe would stall it

from .generator import ConnectError, LoadConfig
from .report import write_json
from .runner import run_config
from .scenarios import preset

PEERS = Path(os.environ.get("CHARGEGW_PEERS_DIR",
                            Path(__file__).resolve().parents[1].parent / "shared" / "peers"))
CACHE = Path(os.environ.get("PEERS_CACHE", "/var/tmp/diameter-peers"))


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    p.add_argument("--concurrency", type=int, default=100, help="requests/sessions in flight")
    p.add_argument("--processes", type=int, default=1, help="generator processes (ours)")
    p.add_argument("--only", action="append", choices=["fd", "null", "erl"], help="parts to run")
    p.add_argument("--peers-dir", default=str(PEERS))
    p.add_argument("--base-port", type=int, default=39300)
    p.add_argument("--json", metavar="F", help="write the report here")


def _wait_port(port: int, timeout: float = 15.0) -> None:
    """Some servers print READY before their listener accepts; wait until it does."""
    end = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)


def _ours(kind: str, port: int, a: argparse.Namespace, ps: bool = True,
          **kw: Any) -> dict[str, Any]:
    cfg = LoadConfig(port=port, scenario=preset(kind, ps_information=ps), kind=kind, concurrency=a.concurrency,
                     duration=a.duration, sessions=None, warmup=1.0, processes=a.processes,
                     connections=a.processes, **kw)
    try:
        s = run_config(cfg)
    except ConnectError as exc:
        return {"error": str(exc)}
    lat = s["latency_ms"]
    out = {k: s[k] for k in ("sent", "answered", "ok", "errors", "timeouts", "mismatches",
                             "answers_per_s", "error_rate")}
    out |= {"p50_ms": lat["p50"], "p99_ms": lat["p99"], "problems": s["problems"]}
    print(f"  chargegw load {kind:<9} -> :{port}: {s['answers_per_s']:>10,.1f} answers/s "
          f"(p50 {lat['p50']} ms, p99 {lat['p99']} ms, {s['errors']} errors, "
          f"{s['timeouts']} timeouts, {s['mismatches']} mismatches)", flush=True)
    return out


def part_fd(a: argparse.Namespace, port: int) -> dict[str, Any]:
    if not shutil.which("freeDiameterd") or not (CACHE / "test_app.fdx").exists():
        return {"skipped": "freeDiameterd or test_app.fdx missing (../shared/peers/setup.sh fd)"}
    server = Proc(["bash", str(Path(a.peers_dir) / "fd-server.sh"), "--port", str(port)])
    res: dict[str, Any] = {"concurrency": a.concurrency, "duration_s": a.duration}
    try:
        server.wait_line(r"FD-SERVER READY", 60)
        _wait_port(port)
        dur = str(max(3, int(a.duration)))
        out = subprocess.run(
            ["bash", str(Path(a.peers_dir) / "fd-client.sh"), "--port", str(port),
             "--peer-identity", "server.localdomain", "--duration", dur,
             "--concurrency", str(a.concurrency)],
            capture_output=True, text=True, timeout=float(dur) + 120,
        )
        m = re.search(r"RESULT median_answers_per_s=(\d+)", out.stdout + out.stderr)
        res["fd_client"] = {"answers_per_s": int(m.group(1)) if m else None}
        if not m:
            res["fd_client"]["output"] = (out.stdout + out.stderr)[-800:]
        print(f"  fd-client (C)           -> :{port}: "
              f"{res['fd_client']['answers_per_s'] or 0:>10,.1f} answers/s", flush=True)
        res["chargegw_load"] = _ours("test_app", port, a)
    finally:
        server.stop(signal.SIGINT)
    fd = res["fd_client"]["answers_per_s"]
    ours = res["chargegw_load"].get("answers_per_s")
    res["ratio"] = round(ours / fd, 3) if fd and ours else None
    res["target_ratio"] = 0.8
    print(f"  ratio chargegw load / fd-client: {res['ratio']} (target >= 0.8)", flush=True)
    return res


def part_null(a: argparse.Namespace, port: int) -> dict[str, Any]:
    server = Proc([sys.executable, "-m", "chargegw.loadtest.stub", "--port", str(port)])
    try:
        server.wait_line(r"STUB READY", 30)
        return {k: _ours(k, port, a) for k in ("test_app", "gy")}
    finally:
        server.stop(signal.SIGINT)


def part_erl(a: argparse.Namespace, port: int) -> dict[str, Any]:
    if not shutil.which("escript"):
        return {"skipped": "escript missing (../shared/peers/setup.sh erlang)"}
    server = Proc(["escript", str(Path(a.peers_dir) / "erl-ccr-server.escript"),
                   "--port", str(port)])
    try:
        server.wait_line(r"ERL-CCR-SERVER READY", 60)
        _wait_port(port)
        # OTP's RFC 4006 dictionary lacks the 3GPP AVPs: plain RFC 4006 CCRs
        return {"gy": _ours("gy", port, a, ps=False)}
    finally:
        server.stop(signal.SIGINT)


def run(a: argparse.Namespace) -> int:
    parts = a.only or ["fd", "null", "erl"]
    print(f"chargegw bench load: concurrency {a.concurrency}, {a.duration:g} s per run, "
          f"{a.processes} generator process(es); client and server share this machine")
    report: dict[str, Any] = {"bench": "load", "params": vars(a).copy(), "parts": {}}
    port = a.base_port
    for name, fn in (("fd", part_fd), ("null", part_null), ("erl", part_erl)):
        if name in parts:
            print(f"[{name}]", flush=True)
            try:
                report["parts"][name] = fn(a, port)
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
                report["parts"][name] = {"error": str(exc)}
                print(f"  {name}: {exc}", file=sys.stderr)
            port += 1
    if a.json:
        write_json(a.json, report)
    return 0
