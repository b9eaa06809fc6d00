"""`chargegw gateway --config F`: the front end alone (workers connect to it separately).

Like `chargegw run`, it opens the Diameter listeners only once `launcher.min_workers`
workers have registered, and exits with an error after `launcher.ready_timeout` seconds
without them."""

from __future__ import annotations

import argparse
import asyncio
import sys

import zmq

from chargegw.config import Config
from chargegw.gateway.metrics import install_status, start_metrics
from chargegw.gateway.service import load_or_exit, log, reloader, startup_line
from chargegw.process import install_signals, run_loop, setup_logging


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", help="TOML config file (default: embedded defaults, or $CHARGEGW_CONFIG)"
    )
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="overrides logging.level"
    )


def run(args: argparse.Namespace) -> int:
    config = load_or_exit(args.config)
    if config is None:
        return 2
    setup_logging(args.log_level or config.logging.level, config.logging, role="gateway")
    return run_loop(_main(args, config))


async def _main(args: argparse.Namespace, config: Config) -> int:
    from chargegw.gateway.frontend import Gateway, NotReady

    gw = Gateway(config)
    install_status(gw)  # rates and latency for `chargegw status`
    stop = asyncio.Event()
    install_signals(
        stop, reloader(args.config, gw.reload, initial=config, on_level=gw.pool.set_log_level)
    )
    lc = config.launcher
    try:
        gw.start_pool()
    except (OSError, zmq.ZMQError) as exc:
        print(f"chargegw gateway: cannot start: {exc}", file=sys.stderr)
        return 1
    metrics = await start_metrics(gw, config)  # /readyz says 503 until the workers come
    try:
        try:
            opened = await gw.open(
                min_workers=lc.min_workers, ready_timeout=lc.ready_timeout, abort=stop
            )
        except (OSError, zmq.ZMQError) as exc:
            print(f"chargegw gateway: cannot start: {exc}", file=sys.stderr)
            return 1
        except NotReady as exc:
            print(f"chargegw gateway: {exc}", file=sys.stderr)
            await gw.stop(drain_timeout=0.0)
            return 1
        if opened:
            print(startup_line(gw, config), flush=True)
            await stop.wait()
        log.info("stopping: draining in-flight requests, then DPR to peers")
        await gw.stop()
        return 0
    finally:
        if metrics is not None:
            await metrics.close()
