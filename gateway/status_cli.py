"""`chargegw status`: ask a running gateway for its peers, workers and counters.

The query goes to the gateway's status socket, an ipc:// socket of mode 0600 that only the
operator's user can reach (never the worker endpoints): a DEALER sends a `StatusQuery` and
the gateway replies `StatusReply` with a JSON document. The endpoint comes from
`--endpoint`, or from the config (`pool.status_bind`, default ipc://<data_dir>/status.ipc).
"""

from __future__ import annotations

import argparse
import secrets
import sys
from typing import Any

import orjson
import zmq

from chargegw.ipc import protocol as pp


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", help="TOML config file (to find the endpoint)")
    parser.add_argument(
        "--endpoint", "-e", help="the gateway's status socket (ipc://; default from the config)"
    )
    parser.add_argument("--json", action="store_true", help="print the raw JSON document")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait (default 2)")


def query(endpoint: str, timeout: float = 2.0) -> dict[str, Any]:
    """The status document; raises TimeoutError when nothing answers."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.ROUTING_ID, b"status-" + secrets.token_hex(4).encode())
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, 64 << 20)  # the status document; bounded all the same
    try:
        sock.connect(endpoint)
        sock.send(pp.encode_one(pp.StatusQuery()))
        deadline_ms = int(timeout * 1000)
        while sock.poll(deadline_ms):
            for m in pp.decode(sock.recv()):
                if isinstance(m, pp.StatusReply):
                    return orjson.loads(m.json)
        raise TimeoutError(f"no answer from {endpoint} in {timeout:g}s (is the gateway running?)")
    finally:
        sock.close(linger=0)


def run(args: argparse.Namespace) -> int:
    endpoint = args.endpoint
    if not endpoint:
        from chargegw.config import ConfigError, load_config

        try:
            cfg = load_config(args.config)
        except ConfigError as exc:
            print(f"chargegw status: {exc}", file=sys.stderr)
            return 2
        from chargegw.ipc.security import status_endpoint

        endpoint = status_endpoint(cfg)
    try:
        doc = query(endpoint, args.timeout)
    except (TimeoutError, zmq.ZMQError, pp.ProtocolError) as exc:
        print(f"chargegw status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    print(render(doc))
    return 0


def render(doc: dict[str, Any]) -> str:
    pool = doc.get("pool", {})
    lines = [
        f"gateway {doc.get('origin_host', '?')} (realm {doc.get('origin_realm', '?')}), "
        f"up {doc.get('uptime_s', 0):.0f}s, listening on {', '.join(doc.get('listen', [])) or '-'}"
        f"{' (draining)' if doc.get('draining') else ''}",
        f"worker endpoints: {', '.join(doc.get('endpoints', []))}",
        "",
        f"peers ({len(doc.get('peers', []))}):",
    ]
    for p in doc.get("peers", []):
        lines.append(
            f"  {p.get('name')}  {p.get('state')}  wd={p.get('watchdog', '-')}  apps={p.get('apps')}  "
            f"in={p.get('requests_in', 0)} out={p.get('requests_out', 0)} outstanding={p.get('outstanding', 0)}"
        )
    workers = pool.get("workers", [])
    lines += ["", f"workers ({len(workers)}), pending {pool.get('pending', 0)}:"]
    for w in workers:
        lines.append(
            f"  {w['id']}  pid={w.get('pid')}  apps={w.get('apps')}  credit={w['credit']}  "
            f"available={w['available']}  inflight={w['inflight']}  handled={w['handled']}"
            f"{'  draining' if w.get('draining') else ''}  silent={w.get('silent_s')}s"
        )
    if "launcher" in doc:
        la = doc["launcher"]
        lines.append(f"  launcher: {la.get('workers')} slots, restarts {la.get('restarts')}")
    lines += ["", "counters:"]
    counters = pool.get("counters", {})
    lines += [f"  {k:<18} {v}" for k, v in counters.items()]
    return "\n".join(lines)
