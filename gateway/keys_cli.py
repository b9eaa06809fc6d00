"""`chargegw keys generate --dir DIR`: the CURVE key pairs for a tcp:// worker pool."""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    gen = sub.add_parser("generate", help="write the gateway and worker key pairs")
    gen.add_argument("--dir", "-d", default="keys", help="output directory (default ./keys)")
    gen.add_argument(
        "--worker",
        action="append",
        metavar="NAME",
        help="a worker key pair to write and admit, repeatable (default: one named 'worker')",
    )
    gen.add_argument("--force", action="store_true", help="replace existing key pairs")


def run(args: argparse.Namespace) -> int:
    import os

    from chargegw.ipc.security import generate

    workers = args.worker or ["worker"]
    try:
        written = generate(args.dir, workers, force=args.force)
    except (OSError, ValueError) as exc:
        print(f"chargegw keys: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"keys in {args.dir} already exist (use --force to replace them)")
    d = os.path.abspath(args.dir)
    print(
        "\nconfig for the gateway:\n"
        "  [pool]\n"
        f'  curve_secret_key = "{d}/gateway/gateway.key_secret"\n'
        f'  curve_workers = "{d}/gateway/workers"\n'
        "config for a worker:\n"
        "  [worker]\n"
        f'  curve_secret_key = "{d}/worker/{workers[0]}.key_secret"\n'
        f'  curve_server_key = "{d}/worker/gateway.key"'
    )
    return 0
