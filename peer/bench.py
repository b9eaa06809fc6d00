"""`chargegw bench node`: a client Node and a server Node on loopback, CCR-U in, fixed CCA out.

Each side runs in its own process (one core each on a 2-core machine). For every concurrency
level C the client keeps C requests in flight for the measured window and records each
request's round trip. The same run measures python-diameter 0.9.0 (its threaded Node and
SimpleThreadingApplication) when it is installed, and prints the ratio.

    chargegw bench node [--levels 1,10,50,200] [--duration 3] [--loop both] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import socket
import statistics
import sys
import threading
import time
from typing import Any

APP_CC = 4
CMD_CC = 272
SERVER = "server.bench.example"
CLIENT = "client.bench.example"
REALM = "bench.example"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--levels", default="1,5,10,20,50,200", help="concurrency levels (comma list)"
    )
    parser.add_argument("--duration", type=float, default=3.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds per level")
    parser.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio", "both"),
        default="both",
        help="event loop for our nodes (both: measure each; auto: uvloop when installed)",
    )
    parser.add_argument(
        "--answer",
        choices=("build", "template"),
        default="template",
        help="server handler: the fixed CCA, pre-encoded, with the request's ids (default), or "
        "build it per request with ccr.answer() (codec cost included)",
    )
    parser.add_argument("--no-python-diameter", action="store_true", help="skip python-diameter")
    parser.add_argument(
        "--pd-levels", default=None, help="levels for python-diameter (default: --levels)"
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")


# -- messages ------------------------------------------------------------------------------------


def _ccr_template() -> bytes:
    from chargegw.codec import class_for, get_dictionary

    ccr = class_for(get_dictionary(), APP_CC, CMD_CC, True)(
        session_id=f"{CLIENT};1;1;bench",
        origin_host=CLIENT,
        origin_realm=REALM,
        destination_realm=REALM,
        auth_application_id=APP_CC,
        service_context_id="32251@3gpp.org",
        cc_request_type=2,
        cc_request_number=1,
        subscription_id=[{"subscription_id_type": 0, "subscription_id_data": "46700000001"}],
        multiple_services_credit_control=[
            {
                "rating_group": 1,
                "requested_service_unit": {},
                "used_service_unit": [{"cc_total_octets": 1000000}],
            }
        ],
    )
    return ccr.encode()


def _percentile(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    idx = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[idx]


def _summary(latencies: list[float], elapsed: float, errors: int) -> dict[str, Any]:
    lat = sorted(latencies)
    return {
        "requests": len(lat),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "rps": round(len(lat) / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(_percentile(lat, 0.50) * 1000, 3),
        "p99_ms": round(_percentile(lat, 0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(lat) * 1000, 3) if lat else None,
    }


# -- our node --------------------------------------------------------------------------------------


def _our_server_main(port_pipe: Any, loop_kind: str, answer_mode: str) -> None:
    from chargegw.peer import ListenConfig, Node, NodeConfig
    from chargegw.peer.loop import run

    async def main() -> None:
        cfg = NodeConfig(
            origin_host=SERVER,
            origin_realm=REALM,
            auth_apps=[APP_CC],
            listen=[ListenConfig(host="127.0.0.1", port=0)],
        )
        node = Node(cfg)
        if answer_mode == "template":
            from chargegw.codec import Message

            sample = Message.decode(_ccr_template())
            tmpl = sample.answer(
                2001,
                origin_host=SERVER,
                origin_realm=REALM,
                auth_application_id=APP_CC,
                cc_request_type=2,
                cc_request_number=1,
            ).encode()
            head = tmpl[:12]
            tail = tmpl[20:]

            def handler(msg: Any, peer: Any) -> Any:  # bytes or a Message
                raw = msg.raw
                return head + raw[12:20] + tail

        else:

            def handler(msg: Any, peer: Any) -> Any:
                return msg.answer(
                    2001,
                    origin_host=SERVER,
                    origin_realm=REALM,
                    auth_application_id=APP_CC,
                    cc_request_type=msg.cc_request_type,
                    cc_request_number=msg.cc_request_number,
                    multiple_services_credit_control=[
                        {
                            "rating_group": 1,
                            "granted_service_unit": {"cc_total_octets": 1000000},
                            "result_code": 2001,
                        }
                    ],
                )

        node.add_handler(APP_CC, handler, CMD_CC)
        await node.start()
        port_pipe.send(node.listen_addresses[0][2])
        await asyncio.Event().wait()

    run(main(), use_uvloop=(loop_kind == "uvloop"))


def proc_cpu_seconds(pid: int) -> float | None:
    """user+system CPU seconds of a process (Linux /proc), to report CPU per request."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _cpu_us(before: float | None, after: float | None, n: int) -> float | None:
    if before is None or after is None or not n:
        return None
    return round((after - before) / n * 1e6, 1)


async def _our_client(
    port: int, levels: list[int], duration: float, warmup: float, server_pid: int = 0
) -> list[dict[str, Any]]:
    from chargegw.codec import Message
    from chargegw.peer import Node, NodeConfig, PeerConfig, RequestError

    cfg = NodeConfig(
        origin_host=CLIENT,
        origin_realm=REALM,
        auth_apps=[APP_CC],
        peers=[PeerConfig(SERVER, host="127.0.0.1", port=port, realm=REALM)],
        request_timeout=10.0,
    )
    node = Node(cfg)
    await node.start()
    await node.wait_open(SERVER, timeout=10)
    template = _ccr_template()
    decode = Message.decode
    loop = asyncio.get_running_loop()
    results = []
    for level in levels:
        state: dict[str, Any] = {
            "latencies": [],
            "errors": 0,
            "measuring": False,
            "stop_at": loop.time() + warmup + duration,
        }

        async def worker(st: dict[str, Any]) -> None:
            perf = time.perf_counter
            request = node.request
            latencies = st["latencies"]
            stop_at = st["stop_at"]
            while loop.time() < stop_at:
                msg = decode(template)
                msg.end_to_end = 0
                t0 = perf()
                try:
                    await request(msg)
                except RequestError:
                    st["errors"] += 1
                    continue
                if st["measuring"]:
                    latencies.append(perf() - t0)

        tasks = [loop.create_task(worker(state)) for _ in range(level)]
        await asyncio.sleep(warmup)
        state["measuring"] = True
        t_start = time.perf_counter()
        c0 = time.process_time()
        s0 = proc_cpu_seconds(server_pid) if server_pid else None
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t_start
        c1 = time.process_time()
        s1 = proc_cpu_seconds(server_pid) if server_pid else None
        row = {"concurrency": level, **_summary(state["latencies"], elapsed, state["errors"])}
        # CPU per request: robust where wall-clock figures suffer from a shared machine.
        n = len(state["latencies"])
        row["client_cpu_us_per_req"] = _cpu_us(c0, c1, n)
        row["server_cpu_us_per_req"] = _cpu_us(s0, s1, n)
        results.append(row)
    await node.stop(timeout=2)
    return results


def _our_client_main(
    port: int,
    levels: list[int],
    duration: float,
    warmup: float,
    loop_kind: str,
    out: Any,
    server_pid: int = 0,
) -> None:
    from chargegw.peer.loop import run

    out.send(
        run(
            _our_client(port, levels, duration, warmup, server_pid),
            use_uvloop=(loop_kind == "uvloop"),
        )
    )


def bench_ours(
    levels: list[int], duration: float, warmup: float, loop_kind: str, answer_mode: str
) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    server = ctx.Process(target=_our_server_main, args=(send, loop_kind, answer_mode), daemon=True)
    server.start()
    try:
        if not recv.poll(30):
            raise RuntimeError("our server did not start")
        port = recv.recv()
        crecv, csend = ctx.Pipe(duplex=False)
        client = ctx.Process(
            target=_our_client_main,
            args=(port, levels, duration, warmup, loop_kind, csend, server.pid),
            daemon=True,
        )
        client.start()
        budget = len(levels) * (duration + warmup + 15) + 30
        if not crecv.poll(budget):
            client.terminate()
            raise RuntimeError("our client did not finish")
        results = crecv.recv()
        client.join(10)
        return results
    finally:
        server.terminate()
        server.join(10)


# -- python-diameter ---------------------------------------------------------------------------------


def python_diameter_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("python-diameter")
    except Exception:
        return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pd_server_main(port: int, ready: Any) -> None:
    import logging

    logging.disable(logging.CRITICAL)
    from diameter.message.constants import (
        APP_DIAMETER_CREDIT_CONTROL_APPLICATION,
        E_RESULT_CODE_DIAMETER_SUCCESS,
    )
    from diameter.node import Node
    from diameter.node.application import SimpleThreadingApplication

    node = Node(SERVER, REALM, ip_addresses=["127.0.0.1"], tcp_port=port)
    node.idle_timeout = 3600
    client = node.add_peer(f"aaa://{CLIENT}", REALM)

    def handle(app: Any, msg: Any) -> Any:
        ans = app.generate_answer(msg)
        ans.result_code = E_RESULT_CODE_DIAMETER_SUCCESS
        ans.cc_request_type = msg.cc_request_type
        ans.cc_request_number = msg.cc_request_number
        return ans

    app = SimpleThreadingApplication(
        APP_DIAMETER_CREDIT_CONTROL_APPLICATION, is_auth_application=True, request_handler=handle
    )
    node.add_application(app, [client])
    node.start()
    ready.send(True)
    threading.Event().wait()


class _PdState:
    def __init__(self, stop_at: float) -> None:
        self.stop_at = stop_at
        self.latencies: list[float] = []
        self.errors = 0
        self.lock = threading.Lock()
        self.measuring = threading.Event()


def _pd_worker(st: _PdState, app: Any, make: Any) -> None:
    perf = time.perf_counter
    while time.monotonic() < st.stop_at:
        msg = make()
        t0 = perf()
        try:
            app.send_request(msg, timeout=10)
        except Exception:
            with st.lock:
                st.errors += 1
            continue
        if st.measuring.is_set():
            dt = perf() - t0
            with st.lock:
                st.latencies.append(dt)


def _pd_client_main(port: int, levels: list[int], duration: float, warmup: float, out: Any) -> None:
    import logging

    logging.disable(logging.CRITICAL)
    from diameter.message.commands.credit_control import CreditControlRequest
    from diameter.message.constants import APP_DIAMETER_CREDIT_CONTROL_APPLICATION
    from diameter.node import Node
    from diameter.node.application import SimpleThreadingApplication

    node = Node(CLIENT, REALM)
    node.idle_timeout = 3600
    server = node.add_peer(
        f"aaa://{SERVER}:{port}", REALM, ip_addresses=["127.0.0.1"], is_persistent=True
    )
    app = SimpleThreadingApplication(
        APP_DIAMETER_CREDIT_CONTROL_APPLICATION, is_auth_application=True
    )
    node.add_application(app, [server])
    node.start()
    app.wait_for_ready(30)

    def make() -> Any:
        ccr = CreditControlRequest()
        ccr.session_id = f"{CLIENT};1;1;bench"
        ccr.origin_host = CLIENT.encode()
        ccr.origin_realm = REALM.encode()
        ccr.destination_realm = REALM.encode()
        ccr.auth_application_id = APP_DIAMETER_CREDIT_CONTROL_APPLICATION
        ccr.service_context_id = "32251@3gpp.org"
        ccr.cc_request_type = 2
        ccr.cc_request_number = 1
        ccr.add_subscription_id(subscription_id_type=0, subscription_id_data="46700000001")
        ccr.add_multiple_services_credit_control(rating_group=1)
        return ccr

    results = []
    for level in levels:
        st = _PdState(time.monotonic() + warmup + duration)
        threads = [
            threading.Thread(target=_pd_worker, args=(st, app, make), daemon=True)
            for _ in range(level)
        ]
        for t in threads:
            t.start()
        time.sleep(warmup)
        st.measuring.set()
        t_start = time.perf_counter()
        for t in threads:
            t.join(duration + warmup + 30)
        elapsed = time.perf_counter() - t_start
        results.append({"concurrency": level, **_summary(st.latencies, elapsed, st.errors)})
    out.send(results)
    node.stop(wait_timeout=2, force=True)
    os._exit(0)


def bench_python_diameter(
    levels: list[int], duration: float, warmup: float
) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    port = _free_port()
    rrecv, rsend = ctx.Pipe(duplex=False)
    server = ctx.Process(target=_pd_server_main, args=(port, rsend), daemon=True)
    server.start()
    try:
        if not rrecv.poll(30):
            raise RuntimeError("python-diameter server did not start")
        rrecv.recv()
        crecv, csend = ctx.Pipe(duplex=False)
        client = ctx.Process(
            target=_pd_client_main, args=(port, levels, duration, warmup, csend), daemon=True
        )
        client.start()
        budget = len(levels) * (duration + warmup + 40) + 60
        if not crecv.poll(budget):
            client.terminate()
            raise RuntimeError("python-diameter client did not finish")
        results = crecv.recv()
        client.join(5)
        if client.is_alive():
            client.terminate()
        return results
    finally:
        server.terminate()
        server.join(10)


# -- the command ---------------------------------------------------------------------------------


def _levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def run(args: argparse.Namespace) -> int:
    from chargegw.peer.loop import uvloop_available

    levels = _levels(args.levels)
    loops: list[str]
    if args.loop == "both":
        loops = ["asyncio", "uvloop"] if uvloop_available() else ["asyncio"]
    elif args.loop == "auto":
        loops = ["uvloop" if uvloop_available() else "asyncio"]
    else:
        if args.loop == "uvloop" and not uvloop_available():
            print("uvloop is not installed", file=sys.stderr)
            return 2
        loops = [args.loop]
    report: dict[str, Any] = {
        "benchmark": "node",
        "what": "client Node -> server Node on 127.0.0.1/TCP, CCR-U answered with a fixed CCA",
        "answer_mode": args.answer,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "ours": {},
        "python_diameter": None,
    }
    for kind in loops:
        print(f"chargegw Node ({kind}) ...", flush=True)
        report["ours"][kind] = bench_ours(levels, args.duration, args.warmup, kind, args.answer)
    pd_version = python_diameter_version()
    if not args.no_python_diameter and pd_version:
        pd_levels = _levels(args.pd_levels) if args.pd_levels else levels
        print(f"python-diameter {pd_version} ...", flush=True)
        try:
            report["python_diameter"] = {
                "version": pd_version,
                "results": bench_python_diameter(pd_levels, args.duration, args.warmup),
            }
        except Exception as exc:
            report["python_diameter"] = {"version": pd_version, "error": str(exc)}
    elif not pd_version:
        report["python_diameter"] = {"error": "not installed"}
    report["best_within_1ms"] = _best_within(report, 1.0)
    _print_table(report)
    if args.json:
        import orjson

        with open(args.json, "wb") as fh:
            fh.write(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        print(f"wrote {args.json}")
    return 0


def _best_within(report: dict[str, Any], p50_ms: float) -> dict[str, Any] | None:
    """Our highest throughput whose median latency stays within p50_ms, against pd's peak."""
    best: dict[str, Any] | None = None
    for kind, rows in report["ours"].items():
        for r in rows:
            if r["p50_ms"] <= p50_ms and (best is None or r["rps"] > best["rps"]):
                best = {"loop": kind, **r}
    pd = report.get("python_diameter") or {}
    peak = max((r["rps"] for r in pd.get("results", [])), default=0.0)
    if best is not None and peak:
        best["python_diameter_peak_rps"] = peak
        best["x_python_diameter_peak"] = round(best["rps"] / peak, 1)
    return best


def _print_table(report: dict[str, Any]) -> None:
    pd = report.get("python_diameter") or {}
    pd_by_c = {r["concurrency"]: r for r in pd.get("results", [])}
    pd_best = max((r["rps"] for r in pd_by_c.values()), default=0.0)
    print()
    header = (
        f"{'loop':<8} {'conc':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'err':>4} "
        f"{'cli us':>7} {'srv us':>7} | {'pd req/s':>9} {'pd p50':>8} {'pd p99':>8} | "
        f"{'x pd':>6} {'x pd best':>9}"
    )
    print(header)
    print("-" * len(header))
    for kind, rows in report["ours"].items():
        for r in rows:
            p = pd_by_c.get(r["concurrency"])
            ratio = f"{r['rps'] / p['rps']:.1f}" if p and p["rps"] else "-"
            x_best = f"{r['rps'] / pd_best:.1f}" if pd_best else "-"
            pd_cols = (
                f"{p['rps']:>9.0f} {p['p50_ms']:>8.2f} {p['p99_ms']:>8.2f}"
                if p
                else f"{'-':>9} {'-':>8} {'-':>8}"
            )
            cli = r.get("client_cpu_us_per_req")
            srv = r.get("server_cpu_us_per_req")
            print(
                f"{kind:<8} {r['concurrency']:>5} {r['rps']:>9.0f} {r['p50_ms']:>8.3f} "
                f"{r['p99_ms']:>8.3f} {r['errors']:>4} {cli if cli is not None else '-':>7} "
                f"{srv if srv is not None else '-':>7} | {pd_cols} | {ratio:>6} {x_best:>9}"
            )
    if pd.get("error"):
        print(f"python-diameter: {pd['error']}")
    best = report.get("best_within_1ms")
    if best:
        line = (
            f"best with p50 <= 1 ms: {best['rps']:.0f} req/s ({best['loop']}, concurrency "
            f"{best['concurrency']}, p50 {best['p50_ms']:.3f} ms)"
        )
        if best.get("x_python_diameter_peak"):
            line += f" = {best['x_python_diameter_peak']:.1f}x python-diameter's peak"
        print(line)
