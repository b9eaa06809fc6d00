"""A Diameter Credit-Control client: one session (CCR-I, CCR-U, CCR-T) against examples/server.py.

python examples/client.py --port 3868
"""

from __future__ import annotations

import argparse

from chargegw.codec import APP_CREDIT_CONTROL
from chargegw.codec.commands import CreditControlRequest
from chargegw.peer import Node, NodeConfig, PeerConfig, run

HOST, REALM, SERVER = "client.example.com", "example.com", "server.example.com"


async def main(port: int) -> None:
    config = NodeConfig(
        origin_host=HOST,
        origin_realm=REALM,
        auth_apps=[APP_CREDIT_CONTROL],
        peers=[PeerConfig(SERVER, host="127.0.0.1", port=port, realm=REALM)],
    )
    async with Node(config) as node:
        await node.wait_open(SERVER)
        session = f"{HOST};1;1"
        for number, kind in enumerate((1, 2, 3)):  # INITIAL, UPDATE, TERMINATION
            ccr = CreditControlRequest(
                session_id=session,
                origin_host=HOST,
                origin_realm=REALM,
                destination_realm=REALM,  # routed by realm to the server
                auth_application_id=APP_CREDIT_CONTROL,
                service_context_id="32251@3gpp.org",
                cc_request_type=kind,
                cc_request_number=number,
            )
            cca = await node.request(ccr, timeout=5.0)
            print(
                f"CCR {kind} -> Result-Code {cca.result_code}, granted {cca.granted_service_unit}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=3868)
    run(main(parser.parse_args().port))
