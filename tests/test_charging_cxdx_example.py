"""The worked example of a user application: examples/cxdx_handler.py, loaded by `module:attr`."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from chargegw.codec import Message, commands
from chargegw.workers.charging.testing import FakeWorkerContext

ROOT = Path(__file__).resolve().parent.parent
VSAI = {"vendor_id": 10415, "auth_application_id": 16777216}


def load(spec: str):
    """What the worker runtime does with a handler string: import, then instantiate a class."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    mod, _, attr = spec.partition(":")
    obj = getattr(importlib.import_module(mod), attr)
    return obj() if isinstance(obj, type) else obj


def req(cls, **kw):
    base = dict(session_id="cx;1", origin_host="cscf.test", origin_realm="ims", destination_realm="hss",
                vendor_specific_application_id=VSAI, auth_session_state=1)  # fmt: skip
    base.update(kw)
    return Message.decode(getattr(commands, cls)(**base).encode())


def test_uar_sar_lir_flow(tmp_path):
    app = load("examples.cxdx_handler:CxDxApp")
    app.setup(
        FakeWorkerContext(
            str(tmp_path), {"scscf": "sip:s1.ims", "users": {"sip:bob@ims": "bob@ims"}}
        )
    )
    assert app.app_id == 16777216
    pub = "sip:bob@ims"
    a = app.handle(
        req(
            "UserAuthorizationRequest",
            user_name="bob@ims",
            public_identity=pub,
            visited_network_identifier=b"ims",
        )
    )
    assert a.experimental_result.experimental_result_code == 2001 and a.server_name == "sip:s1.ims"
    a = app.handle(req("LocationInfoRequest", public_identity=pub))
    assert a.experimental_result.experimental_result_code == 5003
    a = app.handle(
        req(
            "ServerAssignmentRequest",
            user_name="bob@ims",
            public_identity=[pub],
            server_name="sip:s1.ims",
            server_assignment_type=1,
            user_data_already_available=0,
        )
    )
    assert a.result_code == 2001 and a.user_name == "bob@ims"
    a = app.handle(req("LocationInfoRequest", public_identity=pub))
    assert a.result_code == 2001 and a.server_name == "sip:s1.ims"
    a = app.handle(
        req(
            "UserAuthorizationRequest",
            user_name="bob@ims",
            public_identity=pub,
            visited_network_identifier=b"ims",
        )
    )
    assert a.experimental_result.experimental_result_code == 2002
    a = app.handle(
        req(
            "UserAuthorizationRequest",
            user_name="eve@ims",
            public_identity="sip:eve@ims",
            visited_network_identifier=b"ims",
        )
    )
    assert a.experimental_result.experimental_result_code == 5001
    encoded = a.encode()
    assert Message.decode(encoded).session_id == "cx;1"


def test_registered_in_config_and_served_by_chargegw_run(tmp_path):
    """The documented registration, through the real gateway and a worker process."""
    import os
    import signal
    import socket
    import subprocess
    import time

    from chargegw.codec import FrameReader
    from chargegw.workers.charging.testing import free_port

    port = free_port()
    cfg = tmp_path / "cx.toml"
    cfg.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[[listen]]\naddress = "127.0.0.1"\nport = {port}\n'
        '[[applications]]\napp_id = 16777216\nvendor_id = 10415\nhandler = "examples.cxdx_handler:CxDxApp"\n'
        '[applications.config]\nusers = { "sip:carol@ims" = "carol@ims" }\n'
    )
    log = tmp_path / "run.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "chargegw.cli", "run", "-c", str(cfg), "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path),
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        # The Diameter port opens only once the worker registered, and says so.
        while "listening on" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            reader = FrameReader()

            def read() -> Message:
                while True:
                    msgs = reader.feed(s.recv(65536))
                    if msgs:
                        return Message.decode(msgs[0])

            s.sendall(
                commands.CapabilitiesExchangeRequest(
                    origin_host="cscf.test.example", origin_realm="test.example", host_ip_address=["127.0.0.1"],
                    vendor_id=0, product_name="t", vendor_specific_application_id=[VSAI], supported_vendor_id=[10415],
                ).encode()
            )  # fmt: skip
            assert read().result_code == 2001
            uar = commands.UserAuthorizationRequest(
                session_id="cx;9", origin_host="cscf.test.example", origin_realm="test.example",
                destination_realm="localdomain", vendor_specific_application_id=VSAI, auth_session_state=1,
                user_name="carol@ims", public_identity="sip:carol@ims", visited_network_identifier=b"ims",
            )  # fmt: skip
            uar.hop_by_hop = uar.end_to_end = 77
            s.sendall(uar.encode())
            a = read()
            assert a.hop_by_hop == 77 and a.experimental_result is not None, a.dump()
            assert a.experimental_result.experimental_result_code == 2001
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
