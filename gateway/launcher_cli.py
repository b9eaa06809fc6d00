"""`chargegw run [--config F] [--workers N]`: the gateway plus N supervised workers.

The gateway runs in this process; workers are child processes (`chargegw worker`) with
ids this launcher assigns, so when one exits the gateway fails its requests over at once
instead of waiting for the heartbeat timeout. A crashed worker is restarted with
exponential backoff (reset once it has stayed up `launcher.stable_after` seconds); a slot
that exits `launcher.crash_limit` times within `launcher.crash_window` seconds stops the
launcher with an error instead of restarting forever.

The Diameter listeners open only once `launcher.min_workers` workers have registered, so a
peer never meets an open port with no worker behind it; if they do not come within
`launcher.ready_timeout` seconds, the launcher stops with an error.

Shutdown (SIGTERM/SIGINT): the gateway drains and sends DPR, then the workers get SIGTERM
(they finish what they hold and say goodbye), then SIGKILL after a bound.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from typing import Any

import zmq

from chargegw.config import Config
from chargegw.gateway.metrics import install_status, start_metrics
from chargegw.gateway.service import load_or_exit, log, reloader, startup_line
from chargegw.gateway.supervisor import Supervisor, describe_rc
from chargegw.process import install_signals, run_loop, setup_logging


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", help="TOML config file (default: embedded defaults, or $CHARGEGW_CONFIG)"
    )
    parser.add_argument(
        "--workers",
        "-w",
        type=int,
        help="worker processes (default: launcher.workers, 0 = one per core)",
    )
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="overrides logging.level"
    )


def check_handlers(config: Config) -> str | None:
    """Import every handler now, so a typo fails at start and not in a restart loop."""
    for i, app in enumerate(config.applications):
        mod_name, _, attr = app.handler.partition(":")
        try:
            obj: Any = importlib.import_module(mod_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except Exception as exc:
            return f"config error: applications[{i}].handler: cannot load {app.handler!r}: {type(exc).__name__}: {exc}"
    return None


def run(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)
    if config is None:
        return 2
    if args.workers is not None and args.workers < 0:
        print("chargegw run: --workers must be >= 0", file=sys.stderr)
        return 2
    problem = check_handlers(config)
    if problem:
        print(f"chargegw: {problem}", file=sys.stderr)
        return 2
    level = args.log_level or config.logging.level
    setup_logging(level, config.logging, role="gateway")
    n = args.workers if args.workers is not None else config.launcher.workers
    n = n or os.cpu_count() or 1
    return run_loop(_main(args, config, n, level))


async def _main(args: argparse.Namespace, config: Config, n: int, level: str) -> int:
    from chargegw.gateway.frontend import Gateway, NotReady

    gw = Gateway(config)
    install_status(gw)  # rates and latency for `chargegw status`
    try:
        gw.start_pool()
    except (OSError, zmq.ZMQError) as exc:
        print(f"chargegw run: cannot start the gateway: {exc}", file=sys.stderr)
        return 1
    metrics = await start_metrics(gw, config)
    gateways = [_connectable(ep) for ep in (config.pool_endpoints()[:-1] + gw.pool.bound[-1:])]
    sup = Supervisor(
        config,
        n,
        config_path=args.config,
        gateways=gateways,
        level=level,
        on_exit=lambda ident, rc: gw.pool.drop_worker(ident, f"process exited ({describe_rc(rc)})"),
    )
    extra = gw.pool.status_extra

    def status_extra() -> dict[str, Any]:
        doc = extra() if extra is not None else {}
        doc.update(sup.status())
        return doc

    gw.pool.status_extra = status_extra
    stop = asyncio.Event()
    sup.on_fatal = stop.set
    sup.start()

    def on_level(level: str) -> None:  # restarted workers by argument, running ones by LogLevel
        sup.set_level(level)
        gw.pool.set_log_level(level)

    install_signals(stop, reloader(args.config, gw.reload, initial=config, on_level=on_level))
    # The Diameter port opens only once the workers are there (or never: a crash loop,
    # an application config error, a signal or the ready timeout stops us first).
    failure: str | None = None
    lc = config.launcher
    if lc.min_workers > n:
        log.warning(
            "launcher.min_workers is %d but this launcher starts %d: the rest must come from "
            "other hosts within launcher.ready_timeout (%.0fs)",
            lc.min_workers,
            n,
            lc.ready_timeout,
        )
    try:
        opened = await gw.open(
            min_workers=lc.min_workers, ready_timeout=lc.ready_timeout, abort=stop
        )
    except (OSError, zmq.ZMQError) as exc:
        failure, opened = f"cannot start the gateway: {exc}", False
    except NotReady as exc:
        failure, opened = str(exc), False
    if opened:
        print(startup_line(gw, config, workers=n), flush=True)
        await stop.wait()
    log.info("stopping: draining in-flight requests, DPR to peers, then the workers")
    try:
        await gw.stop(drain_timeout=None if opened else 0.0)
    finally:
        await sup.stop()
    if metrics is not None:
        await metrics.close()
    log.info("stopped")
    if sup.config_error:
        return 2
    failure = sup.crash_loop or failure
    if failure:
        print(f"chargegw run: {failure}", file=sys.stderr)
        return 1
    return 0


def _connectable(ep: str) -> str:
    for wild in ("tcp://0.0.0.0:", "tcp://*:"):
        if ep.startswith(wild):
            return "tcp://127.0.0.1:" + ep[len(wild) :]
    return ep
