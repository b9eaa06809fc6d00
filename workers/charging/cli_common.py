"""What the accounts, cdr and ledger commands share: finding the store a deployment uses."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .config import GyConfig, RfConfig, load
from .store import CdrStore, Store, StoreConfig, open_cdr_store, open_store


def add_store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        help="the deployment's config file (default: $CHARGEGW_CONFIG or built-in)",
    )
    parser.add_argument("--data-dir", help="data directory (overrides the config's data_dir)")
    parser.add_argument(
        "--store-url",
        help="use this Redis instead of the configured store (redis://HOST:PORT/DB, "
        "redis+sentinel://HOST:PORT/MASTER or redis+cluster://HOST:PORT[,HOST:PORT...])",
    )


def _app_table(args: argparse.Namespace, handler: str) -> tuple[str, dict[str, Any]]:
    """The data directory and the config table of the application served by `handler`."""
    from chargegw.config import load_config

    cfg = load_config(args.config)
    data_dir = args.data_dir or cfg.data_path
    table: dict[str, Any] = {}
    for app in cfg.applications:
        if app.handler.endswith(handler):
            table = dict(app.config)
    return data_dir, table


def load_gy(args: argparse.Namespace) -> tuple[str, GyConfig]:
    """The data directory and the Gy application's config of the deployment."""
    data_dir, table = _app_table(args, "charging.gy:CreditControlApp")
    return data_dir, load(GyConfig, "Gy", table)


def _cli_store(args: argparse.Namespace, cfg: StoreConfig) -> StoreConfig:
    """The app's store table as a command uses it: `--store-url`, longer waits, no retries."""
    fields = {f: getattr(cfg, f) for f in cfg.__struct_fields__}
    fields.update(timeout=5.0, start_timeout=0.0)
    if args.store_url:
        fields.update(backend="redis", url=args.store_url, cdr_url="", timeout=2.0)
    return StoreConfig(**fields)


def open_from_args(args: argparse.Namespace) -> tuple[Store, GyConfig]:
    data_dir, gy = load_gy(args)
    return open_store(_cli_store(args, gy.store), data_dir), gy


def open_cdrs_from_args(args: argparse.Namespace) -> CdrStore:
    """The CDR store of the deployment's Rf application."""
    data_dir, table = _app_table(args, "charging.rf:AccountingApp")
    rf = load(RfConfig, "Rf", table)
    return open_cdr_store(_cli_store(args, rf.store), data_dir)


def fail(prog: str, message: str) -> int:
    print(f"chargegw {prog}: {message}", file=sys.stderr)
    return 1
