"""The `chargegw` console command.

Each subcommand lives in the module that owns its logic; this file only maps names to
modules, imported on demand so that `chargegw decode` does not pay for zmq or asyncio.
A subcommand module provides `configure(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from chargegw import __version__

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("chargegw.gateway.launcher_cli", "gateway plus N supervised workers (all-in-one)"),
    "gateway": ("chargegw.gateway.gateway_cli", "the front-end process alone"),
    "worker": ("chargegw.workers.worker_cli", "one worker process"),
    "relay": ("chargegw.gateway.relay_cli", "a relay or proxy agent ([agent]), no workers"),
    "load": ("chargegw.loadtest.cli", "the bundled Diameter load generator"),
    "decode": ("chargegw.codec.cli_decode", "decode hex, raw or pcap Diameter messages"),
    "dict": ("chargegw.codec.cli_dict", "show or import dictionary definitions"),
    "accounts": ("chargegw.workers.accounts_cli", "import, show and top up accounts"),
    "cdr": ("chargegw.workers.cdr_cli", "export offline-charging records"),
    "ledger": ("chargegw.workers.ledger_cli", "check the ledger reconciliation invariant"),
    "bench": ("chargegw.bench", "benchmarks: codec, node, gateway, store, load"),
    "status": ("chargegw.gateway.status_cli", "query a running gateway's status"),
    "keys": ("chargegw.gateway.keys_cli", "generate CURVE keys for a tcp:// worker pool"),
}


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = [
        f"chargegw {__version__}: Diameter charging gateway",
        "",
        "usage: chargegw COMMAND ...",
        "",
    ]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "Run 'chargegw COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        print(__version__)
        return 0
    name = argv[0]
    if name not in SUBCOMMANDS:
        print(f"chargegw: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, help_ = SUBCOMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(f"chargegw {name}: not built yet ({module_name} is missing)", file=sys.stderr)
            return 2
        raise
    parser = argparse.ArgumentParser(prog=f"chargegw {name}", description=help_)
    module.configure(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
