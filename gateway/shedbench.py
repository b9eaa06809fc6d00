"""The gateway's own 3004 (shed: every worker for the application full), timed inside the
process from the request's octets arriving to the answer's octets queued for the socket.

    python -m chargegw.gateway.shedbench [--n 20000] [--cpu]

The gateway's front end (`Gateway._handle`, the real one, with a real PoolCore whose one
worker has no free slot) sits behind the peer layer's sans-IO machine (peer/testing.py's
MemoryNode and PeerPair: no socket, no event loop), so what is timed is the peer machine's
read (deframe, peek, checks), the front end's routing and the pool's refusal, and the error
answer's encoding. Printed beside two anchors measured in the same run, on the same machine:
a DWR answered by the peer machine itself, and a CCR answered by a raw handler that returns
ready-made octets (the least any answer costs on this path). Figures are microseconds per
request (median of 7 rounds); on a shared machine compare the ratios, not the figures, and
time with `--cpu` (the process's CPU time: a round the scheduler took the core from is not
charged the wait). Also printed: the codec's peek alone (every request's one read of its
header and routing values), on the Gy CCR-U test vector and on a CCR shaped as the Erlang
load client sends it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from chargegw.codec import Message, peek
from chargegw.codec.bench import load_vectors
from chargegw.config.schema import Config
from chargegw.gateway.frontend import Gateway, build_node_config
from chargegw.peer.link import RawHandler
from chargegw.peer.testing import MemoryNode, PeerPair, make_ccr, make_dwr

GY = 4


def _config() -> Config:
    import msgspec  # noqa: PLC0415

    return msgspec.convert(
        {"diameter": {"allow_any": True}, "listen": [{"address": "127.0.0.1", "port": 3868}]},
        Config,
    )


def _front(oc: bool, shards: int = 0) -> tuple[PeerPair, Any]:
    """The client node `a` connected to the gateway's machine `b`, whose Gy handler is the
    front end's, over a pool with one worker that has granted no free slot (`shards`: its
    store's shard count, Gy then routed by shard)."""
    cfg = _config()
    gw = Gateway(cfg)
    gw.core.register(
        b"w", worker_id="w", credit=1, apps=[GY], now=0.0, shards=shards,
        shard_apps=[GY] if shards else [],
    )  # fmt: skip
    gw.core.workers[b"w"].available = 0  # full: every request is shed with 3004
    if oc:
        gw.overload.update(0.0, 0.9, 0.0)  # a report in force
    node_cfg = build_node_config(cfg)
    b = MemoryNode(node_cfg)
    b.add_handler(GY, RawHandler(gw._handle))
    a_cfg = build_node_config(
        __import__("msgspec").convert(
            {"identity": {"origin_host": "client.localdomain"}, "diameter": {"allow_any": True},
             "peers": [{"name": node_cfg.origin_host, "address": "127.0.0.1", "port": 3868}]},
            Config,
        )
    )  # fmt: skip
    a = MemoryNode(a_cfg, address=("127.0.0.1", 40000))
    pair = PeerPair(a, b).connect()
    return pair, gw


def _frame(oc: bool) -> bytes:
    realm = _config().identity.origin_realm
    m = make_ccr("client.localdomain", "localdomain", realm, session_id="client;1;1")
    if oc:
        m.set("OC-Supported-Features", {"oc_feature_vector": 1})
    m.hop_by_hop = m.end_to_end = 1
    return m.encode()


def _time(
    pair: PeerPair, frame: bytes, n: int, clock: Callable[[], float] = time.perf_counter
) -> tuple[float, bytes]:
    """Microseconds per request from octets in to answer octets queued (b's side)."""
    lb, node = pair.lb, pair.b
    m = lb.machine
    assert m is not None
    now = pair.now
    out = b""
    buf = bytearray(frame)
    t0 = clock()
    for i in range(n):
        buf[16:20] = (i + 2).to_bytes(4, "big")  # a new end-to-end id: no duplicate hit
        node.handle(m, m.receive_data(lb, bytes(buf), now), now)
        out = lb.out[-1] if lb.out else out
        lb.out.clear()
        lb.out_bytes = 0
    return (clock() - t0) / n * 1e6, bytes(out)


def _erl_ccr() -> bytes:
    """A CCR-U as an erl-ccr-client-like load client sends it: the base AVPs, one
    Subscription-Id, Requested-Service-Unit{CC-Time}."""
    m = make_ccr(
        "erl.client.localdomain", "localdomain", _config().identity.origin_realm,
        session_id="erl.client.localdomain;1733238000;1;42", request_type=2, number=1,
        subscription_id=[{"subscription_id_type": 0, "subscription_id_data": "491701234567"}],
        requested_service_unit={"cc_time": 60},
    )  # fmt: skip
    m.hop_by_hop = m.end_to_end = 1
    return m.encode()


def _time_peek(frame: bytes, n: int, clock: Callable[[], float]) -> float:
    """Microseconds per peek of `frame` (the routing values, as the peer machine asks)."""
    t0 = clock()
    for _ in range(n):
        peek(frame)
    return (clock() - t0) / n * 1e6


def run(n: int, rounds: int = 7, *, cpu: bool = False) -> dict[str, Any]:
    clock = time.process_time if cpu else time.perf_counter
    pair, gw = _front(oc=False)
    oc_pair, _ = _front(oc=True)
    ready = Message.decode(_frame(False)).answer(2001, origin_host="gw", origin_realm="r").encode()
    anchor_pair, _ = _front(oc=False)
    anchor_pair.b.add_handler(GY, RawHandler(lambda raw, p, peer: ready))
    dwr = make_dwr("client.localdomain", "localdomain").encode()
    cases = {
        "shed_3004": (pair, _frame(False)),
        "shed_3004_with_oc_olr": (oc_pair, _frame(True)),
        "anchor_ready_answer": (anchor_pair, _frame(False)),
        "anchor_dwr_dwa": (pair, dwr),
    }
    peeks = {"peek_gy_ccr_u": load_vectors()["ccr_u"], "peek_erl_ccr": _erl_ccr()}
    figures: dict[str, list[float]] = {k: [] for k in (*cases, *peeks)}
    last: dict[str, bytes] = {}
    for _ in range(rounds):
        for name, (pr, frame) in cases.items():
            us, last[name] = _time(pr, frame, n, clock)
            figures[name].append(us)
        for name, frame in peeks.items():
            figures[name].append(_time_peek(frame, n, clock))
    out: dict[str, Any] = {k: round(statistics.median(v), 2) for k, v in figures.items()}
    for name in ("shed_3004", "shed_3004_with_oc_olr"):
        ans = Message.decode(last[name])
        out[f"{name}_result_code"] = ans.get("Result-Code")
        out[f"{name}_has_oc_olr"] = ans.get("OC-OLR") is not None
    out["n"] = n
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20_000, help="requests per round and case")
    p.add_argument("--cpu", action="store_true", help="time with the process's CPU time")
    a = p.parse_args(argv)
    r = run(a.n, cpu=a.cpu)
    for k, v in r.items():
        print(f"{k:32} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
