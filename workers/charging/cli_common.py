"""What the accounts, cdr and ledger commands share: finding the store a deployment uses."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .config import GyConfig, load
from .store import Store, StoreConfig, open_store


def add_store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        help="the deployment's config file (default: $CHARGEGW_CONFIG or built-in)",
    )
    parser.add_argument("--data-dir", help="data directory (overrides the config's data_dir)")
    parser.add_argument(
        "--store-url", help="use this Redis (redis://host:port/db) instead of the configured store"
    )


def load_gy(args: argparse.Namespace) -> tuple[str, GyConfig]:
    """The data directory and the Gy application's config of the deployment."""
    from chargegw.config import load_config

    cfg = load_config(args.config)
    data_dir = args.data_dir or cfg.data_path
    table: dict[str, Any] = {}
    for app in cfg.applications:
        if app.handler.endswith("charging.gy:CreditControlApp"):
            table = dict(app.config)
    return data_dir, load(GyConfig, "Gy", table)


def open_from_args(args: argparse.Namespace) -> tuple[Store, GyConfig]:
    data_dir, gy = load_gy(args)
    store_cfg = gy.store
    if args.store_url:
        store_cfg = StoreConfig(
            backend="redis", url=args.store_url, prefix=store_cfg.prefix, timeout=2.0
        )
    else:
        store_cfg = StoreConfig(
            backend=store_cfg.backend,
            path=store_cfg.path,
            url=store_cfg.url,
            prefix=store_cfg.prefix,
            timeout=5.0,
        )
    return open_store(store_cfg, data_dir), gy


def fail(prog: str, message: str) -> int:
    print(f"chargegw {prog}: {message}", file=sys.stderr)
    return 1
