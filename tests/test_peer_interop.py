"""Interoperability with independent Diameter implementations (../shared/peers).

* freeDiameter's fd-client against our Node: CER/CEA, DWR/DWA both ways, the test_app flood
  answered 2001 with the Test-AVP echoed, and DPR/DPA when the client shuts down.
* Our Node as a client of freeDiameter's fd-server: CER/CEA, Test-Requests, DWR/DWA, DPR/DPA.
* Erlang/OTP's erl-ccr-client sending CCR-I/U/T sessions to our Node: every CCA valid.
* Each exchange is captured and checked with tshark-check.sh (0 malformed, no expert errors).

They skip with the reason where a tool is missing; CI installs them with setup.sh.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chargegw.codec import Avp, Message
from chargegw.peer import ListenConfig, Node, NodeConfig, PeerConfig

pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

PEERS = Path(__file__).resolve().parents[1].parent / "shared" / "peers"
TEST_APP = 16777215
TEST_CMD = 16777214
TEST_VENDOR = 999999
GW = "gw.localdomain"  # freeDiameter's acl_wl wants two labels
REALM = "localdomain"


def _need(*tools: str) -> None:
    if not PEERS.is_dir():
        pytest.skip(f"independent peers not found at {PEERS}")
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (../shared/peers/setup.sh installs it)")


def _capture_possible() -> str | None:
    if os.geteuid() != 0:
        return "capture.sh needs root"
    for tool in ("dumpcap", "tshark"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Capture:
    """capture.sh for a fixed time, then tshark-check.sh on the result."""

    def __init__(self, port: int, seconds: int, out: Path) -> None:
        self.port = port
        self.seconds = seconds
        self.out = out
        self.why_not = _capture_possible()
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        if self.why_not:
            return
        self.proc = await asyncio.create_subprocess_exec(
            "bash",
            str(PEERS / "capture.sh"),
            str(self.port),
            str(self.seconds),
            str(self.out),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        await asyncio.sleep(1.5)  # dumpcap needs a moment before it sees packets

    def _stop_early(self) -> None:
        """SIGINT our capture's own dumpcap (by pid): it finishes the file and capture.sh moves it."""
        assert self.proc is not None
        try:
            children = (
                Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            )
        except OSError:
            return
        for pid in children:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "dumpcap":
                    os.kill(int(pid), signal.SIGINT)
            except (OSError, ValueError):
                pass

    async def check(self) -> str:
        """End the capture (after a moment for the last packets) and validate it."""
        if self.proc is None:
            return f"capture skipped: {self.why_not}"
        await asyncio.sleep(1.0)
        self._stop_early()
        out, _ = await self.proc.communicate()
        assert self.proc.returncode == 0, out.decode(errors="replace")
        proc = await asyncio.create_subprocess_exec(
            "bash",
            str(PEERS / "tshark-check.sh"),
            "--port",
            str(self.port),
            str(self.out),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await proc.communicate()
        line = stdout.decode(errors="replace").strip()
        assert proc.returncode == 0, f"{line}\n{stderr.decode(errors='replace')[-3000:]}"
        assert "malformed=0" in line and "expert_errors=0" in line, line
        return line


def answer_test_request(msg: Message, peer: Any) -> Message:
    """freeDiameter test_app: 2001 and the Test-AVP echoed (it is not in our dictionary)."""
    ans = msg.answer(2001, origin_host=GW, origin_realm=REALM)
    for avp in msg.find_code(TEST_APP, TEST_VENDOR):
        ans.add(avp.copy())
    return ans


def gw_config(**kw: Any) -> NodeConfig:
    return NodeConfig(
        origin_host=GW,
        origin_realm=REALM,
        vendor_specific_apps=[(TEST_VENDOR, TEST_APP)],
        supported_vendors=[TEST_VENDOR],
        **kw,
    )


def test_freediameter_client_against_our_node(tmp_path: Path) -> None:
    _need("freeDiameterd")

    async def main() -> None:
        node = Node(gw_config(auth_apps=[4], listen=[ListenConfig(port=0)], tw=6.0))
        node.add_handler(TEST_APP, answer_test_request, TEST_CMD)
        await node.start()
        port = node.listen_addresses[0][2]
        cap = Capture(port, 22, tmp_path / "fd-client.pcap")
        await cap.start()
        try:
            proc = await asyncio.create_subprocess_exec(
                "bash",
                str(PEERS / "fd-client.sh"),
                "--port",
                str(port),
                "--peer-identity",
                GW,
                "--duration",
                "3",
                "--concurrency",
                "5",  # a smaller flood keeps the tshark check of the capture short
                "--tw",
                "6",
                "--hold",
                "8",
                "--workdir",
                str(tmp_path / "fd"),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            seen_open = False
            lines: list[str] = []
            assert proc.stdout is not None
            while True:
                raw = await proc.stdout.readline()
                if not raw:
                    break
                lines.append(raw.decode(errors="replace"))
                if "CONNECTED" in lines[-1]:
                    info = node.peers.get("client.localdomain")
                    seen_open = info is not None and info.state == "R-Open"
            await proc.wait()
            out = "".join(lines)
            assert proc.returncode == 0, out[-3000:]
            assert seen_open
            run = re.search(r"RUN 1: sent=(\d+) answered=(\d+) errors=(\d+)", out)
            assert run is not None, out[-3000:]
            sent, answered, errors = map(int, run.groups())
            assert sent > 100 and answered == sent and errors == 0
            # The client said goodbye with DPR: we answered and the peer is gone (it was not
            # configured, only admitted), and it sent DWRs while idle.
            for _ in range(100):
                if "client.localdomain" not in node.peers:
                    break
                await asyncio.sleep(0.05)
            assert "client.localdomain" not in node.peers
            line = await cap.check()
            if cap.proc is not None:
                cmds = dict(re.findall(r"(\d+):(\d+)", line.split("cmds=")[1].split()[0]))
                assert int(cmds.get("257", 0)) >= 2  # CER + CEA
                assert int(cmds.get("280", 0)) >= 2  # DWR + DWA
                assert int(cmds.get("282", 0)) >= 2  # DPR + DPA
                assert int(cmds.get("16777214", 0)) == 2 * sent
        finally:
            await node.stop(timeout=2)

    asyncio.run(main())


def test_our_node_as_client_of_freediameter(tmp_path: Path) -> None:
    _need("freeDiameterd")

    async def main() -> None:
        port = free_port()
        cap = Capture(port, 20, tmp_path / "fd-server.pcap")
        await cap.start()
        server = await asyncio.create_subprocess_exec(
            "bash",
            str(PEERS / "fd-server.sh"),
            "--port",
            str(port),
            "--tw",
            "6",
            "--workdir",
            str(tmp_path / "fd"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        node = Node(
            gw_config(peers=[PeerConfig("server.localdomain", port=port, realm=REALM)], tw=6.0)
        )
        try:
            assert server.stdout is not None
            while True:
                raw = await asyncio.wait_for(server.stdout.readline(), 120)
                assert raw, "fd-server exited before READY"
                if b"FD-SERVER READY" in raw:
                    break
            drain = asyncio.ensure_future(server.stdout.read())
            await node.start()
            info = await node.wait_open("server.localdomain", timeout=15)
            assert info.state == "I-Open"
            assert info.product_name == "freeDiameter" and info.remote_relay
            values = list(range(1000, 1020))
            answers = []
            for v in values:
                req = Message(code=TEST_CMD, app_id=TEST_APP, flags=0xC0)
                req.add("Session-Id", f"{GW};1;{v}")
                req.add("Destination-Realm", REALM)
                req.add("Origin-Host", GW)
                req.add("Origin-Realm", REALM)
                req.add(Avp(TEST_APP, v.to_bytes(4, "big"), vendor=TEST_VENDOR, flags=0x80))
                answers.append(node.request(req, timeout=5))
            for v, ans in zip(values, await asyncio.gather(*answers), strict=True):
                assert int(ans.result_code) == 2001
                echoed = ans.find_code(TEST_APP, TEST_VENDOR)
                assert [a.data for a in echoed] == [v.to_bytes(4, "big")]
            # Idle for more than Tw: both sides send DWR and get DWA.
            wd = info.watchdog
            await asyncio.sleep(9)
            assert info.stats["dwr_in"] >= 1
            assert wd.state.value == "OKAY" and not wd.pending
            await node.stop(timeout=5)  # DPR, wait for DPA
            assert info.state == "Closed" and info.orderly
            line = await cap.check()
            if cap.proc is not None:
                cmds = dict(re.findall(r"(\d+):(\d+)", line.split("cmds=")[1].split()[0]))
                assert int(cmds.get("257", 0)) >= 2 and int(cmds.get("282", 0)) >= 2
                assert (
                    int(cmds.get("280", 0)) >= 2
                )  # DWR + DWA (a DWR from either side resets both timers)
            drain.cancel()
        finally:
            await node.stop(timeout=1)
            if server.returncode is None:
                server.terminate()
                try:
                    await asyncio.wait_for(server.wait(), 15)
                except TimeoutError:
                    server.kill()

    asyncio.run(main())


def test_erlang_ccr_client_gets_valid_ccas(tmp_path: Path) -> None:
    _need("escript", "erl")

    async def main() -> None:
        granted: list[int] = []

        def on_ccr(ccr: Message, peer: Any) -> Message:
            kind = int(ccr.cc_request_type)
            extra: dict[str, Any] = {}
            if kind in (1, 2):  # INITIAL, UPDATE: grant time
                extra["granted_service_unit"] = {"cc_time": 600}
                granted.append(kind)
            return ccr.answer(
                2001,
                origin_host=GW,
                origin_realm=REALM,
                auth_application_id=4,
                cc_request_type=ccr.cc_request_type,
                cc_request_number=ccr.cc_request_number,
                **extra,
            )

        node = Node(
            NodeConfig(
                origin_host=GW, origin_realm=REALM, auth_apps=[4], listen=[ListenConfig(port=0)]
            )
        )
        node.add_handler(4, on_ccr, 272)
        await node.start()
        port = node.listen_addresses[0][2]
        cap = Capture(port, 14, tmp_path / "erl.pcap")
        await cap.start()
        try:
            proc = await asyncio.create_subprocess_exec(
                "escript",
                str(PEERS / "erl-ccr-client.escript"),
                "--port",
                str(port),
                "--sessions",
                "300",
                "--updates",
                "2",
                "--concurrency",
                "20",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out_b, _ = await asyncio.wait_for(proc.communicate(), 120)
            out = out_b.decode(errors="replace")
            assert proc.returncode == 0, out[-3000:]
            assert "RESULT ok" in out
            m = re.search(r"SENT=(\d+) ANSWERED=(\d+) OK=(\d+) ERRORS=(\d+)", out)
            assert m is not None and m.groups() == ("1200", "1200", "1200", "0"), out
            assert len(granted) == 900
            line = await cap.check()
            if cap.proc is not None:
                assert "result_codes=2001:" in line
                cmds = dict(re.findall(r"(\d+):(\d+)", line.split("cmds=")[1].split()[0]))
                assert int(cmds.get("272", 0)) == 2400
        finally:
            await node.stop(timeout=2)

    asyncio.run(main())


def test_peer_scripts_location_is_the_documented_one() -> None:
    """The tests find ../shared/peers from the repository root, as its README says."""
    if not PEERS.is_dir():
        pytest.skip(f"independent peers not found at {PEERS}")
    assert (PEERS / "fd-client.sh").is_file() and (PEERS / "tshark-check.sh").is_file()
    assert (
        subprocess.run(
            ["bash", str(PEERS / "capture.sh"), "--help"], capture_output=True
        ).returncode
        == 0
    )
