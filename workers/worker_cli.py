"""`chargegw worker --config F`: one worker process serving every configured gateway."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", "-c", help="TOML config file (default: embedded defaults, or $CHARGEGW_CONFIG)"
    )
    parser.add_argument("--id", help="routing identity (overrides worker.id)")
    parser.add_argument(
        "--gateway",
        action="append",
        metavar="ENDPOINT",
        help="gateway endpoint, repeatable (overrides worker.gateways)",
    )
    parser.add_argument(
        "--credit", type=int, help="slots granted to each gateway (overrides worker.credit)"
    )
    parser.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="overrides logging.level"
    )
    parser.add_argument(
        "--parent-pid", type=int, help=argparse.SUPPRESS
    )  # exit when this process is gone


def run(args: argparse.Namespace) -> int:
    from chargegw.config import ConfigError, load_config
    from chargegw.ipc.security import PoolKeyError
    from chargegw.process import EX_CONFIG, EX_TEMPFAIL, setup_logging
    from chargegw.workers.api import SetupUnavailable
    from chargegw.workers.runtime import AppLoadError, run_worker

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"chargegw worker: {exc}", file=sys.stderr)
        return 2
    # The id is known here when the launcher (or worker.id) gives one; else the runtime's.
    role = f"worker:{args.id or config.worker.id}" if args.id or config.worker.id else "worker"
    setup_logging(args.log_level or config.logging.level, config.logging, role=role)
    overrides: dict[str, Any] = {}
    if args.id:
        overrides["worker_id"] = args.id
    if args.gateway:
        overrides["gateways"] = args.gateway
    if args.credit is not None:
        if args.credit < 1:
            print("chargegw worker: --credit must be >= 1", file=sys.stderr)
            return 2
        overrides["credit"] = args.credit
    try:
        run_worker(config, parent_pid=args.parent_pid, **overrides)
    except AppLoadError as exc:
        if isinstance(exc.__cause__, SetupUnavailable):
            # Not the config's fault (a store still starting): the launcher retries with backoff.
            print(f"chargegw worker: not available yet: {exc}", file=sys.stderr)
            return EX_TEMPFAIL
        print(f"chargegw worker: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except PoolKeyError as exc:
        print(f"chargegw worker: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    return 0
