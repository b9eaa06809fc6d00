"""examples/client.py without asyncio: a BlockingNode, as python-diameter's threaded Node.

python examples/server.py --port 3868 &  python examples/blocking_client.py --port 3868
"""

from __future__ import annotations

import argparse

from chargegw.codec import APP_CREDIT_CONTROL
from chargegw.codec.commands import CreditControlRequest
from chargegw.peer import BlockingNode, NodeConfig, peer_from_uri

HOST, REALM, SERVER = "client.example.com", "example.com", "server.example.com"


def main(port: int) -> None:
    server = peer_from_uri(f"aaa://127.0.0.1:{port};transport=tcp", name=SERVER, realm=REALM)
    config = NodeConfig(
        origin_host=HOST, origin_realm=REALM, auth_apps=[APP_CREDIT_CONTROL], peers=[server]
    )
    with BlockingNode(config) as node:  # the event loop runs in a background thread
        node.wait_open(SERVER)
        session = node.session_id()  # RFC 6733 8.8: "client.example.com;<high>;<low>"
        for number, kind in enumerate((1, 2, 3)):  # INITIAL, UPDATE, TERMINATION
            ccr = CreditControlRequest(
                session_id=session,
                origin_host=HOST,
                origin_realm=REALM,
                destination_realm=REALM,
                auth_application_id=APP_CREDIT_CONTROL,
                service_context_id="32251@3gpp.org",
                cc_request_type=kind,
                cc_request_number=number,
            )
            cca = node.send_request(ccr, timeout=5.0)  # blocks until the answer
            print(f"CCR {kind} -> {cca.result_code}, granted {cca.granted_service_unit}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=3868)
    main(parser.parse_args().port)
