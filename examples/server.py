"""A Diameter Credit-Control server in a few lines: grants 1 MB to every CCR.

python examples/server.py --port 3868
"""

from __future__ import annotations

import argparse
import asyncio

from chargegw.codec import APP_CREDIT_CONTROL, Message
from chargegw.peer import ListenConfig, Node, NodeConfig, PeerInfo, run

HOST, REALM = "server.example.com", "example.com"


def on_ccr(ccr: Message, peer: PeerInfo) -> Message:
    # A sync handler is called inline; an `async def` handler works too.
    return ccr.answer(
        2001,
        origin_host=HOST,
        origin_realm=REALM,
        auth_application_id=APP_CREDIT_CONTROL,
        cc_request_type=ccr.cc_request_type,
        cc_request_number=ccr.cc_request_number,
        granted_service_unit={"cc_total_octets": 1_000_000},
    )


async def main(port: int) -> None:
    config = NodeConfig(
        origin_host=HOST,
        origin_realm=REALM,
        auth_apps=[APP_CREDIT_CONTROL],
        listen=[ListenConfig(host="127.0.0.1", port=port)],
    )
    node = Node(config)
    node.add_handler(APP_CREDIT_CONTROL, on_ccr, command=272)
    await node.start()
    print(f"listening on {node.listen_addresses}", flush=True)
    await asyncio.Event().wait()  # until Ctrl-C


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=3868)
    run(main(parser.parse_args().port))
