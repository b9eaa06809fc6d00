"""`chargegw bench {codec,node,gateway,store,load,reliability,scaleout} [options]`: the benchmarks, one module each.

Each target lives with the code it measures and provides `configure(parser)` and `run(args)`.
It is imported only when asked for, so one benchmark does not pay for another's imports; a
target whose module does not exist yet says so and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

TARGETS: dict[str, tuple[str, str]] = {
    "codec": ("chargegw.codec.bench", "encode and decode-and-read against python-diameter"),
    "node": ("chargegw.peer.bench", "two Nodes on loopback, CCR/CCA round trips"),
    "gateway": ("chargegw.gateway.bench", "the gateway with its workers under load"),
    "store": ("chargegw.workers.charging.bench", "the charging store's operations"),
    "load": ("chargegw.loadtest.bench", "the load generator against fd-server, beside fd-client"),
    "reliability": ("chargegw.loadtest.reliability", "faults, overload and fuzz against chargegw run"),
    "scaleout": ("chargegw.loadtest.scaleout", "the real OCS on G gateways and W workers, scaling"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=sorted(TARGETS), help="what to measure")
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the target's own options")
    parser.epilog = "targets: " + "; ".join(f"{k}: {v[1]}" for k, v in TARGETS.items())


def run(args: argparse.Namespace) -> int:
    module_name, help_ = TARGETS[args.target]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(
                f"chargegw bench {args.target}: not built yet ({module_name} is missing)",
                file=sys.stderr,
            )
            return 2
        raise
    parser = argparse.ArgumentParser(prog=f"chargegw bench {args.target}", description=help_)
    module.configure(parser)
    return int(module.run(parser.parse_args(args.options)) or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chargegw bench")
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
