"""The relay agent on real sockets between two independent Diameter nodes:

    freeDiameter fd-client  ->  `chargegw relay`  ->  freeDiameter fd-server.sh

fd-client floods Test-Requests through the relay for a few seconds; every one must come
back 2001 with its Test-AVP (fd-client asserts the echo), none lost, none an error. Both
legs are captured (capture.sh) and must pass tshark-check.sh, and the upstream leg must carry
the Route-Record the relay adds (the downstream leg none). Skips, saying why, where a tool
is missing (../shared/peers/setup.sh installs them).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chargegw.workers.testapp import (
    TEST_CMD,
)  # freeDiameter test_app's command (not in the dictionary)

pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT.parent / "shared" / "peers"
CACHE = Path(os.environ.get("PEERS_CACHE", "/var/tmp/diameter-peers"))
RELAY = "relay.localdomain"
SERVER = "server.localdomain"
CLIENT = "client.localdomain"
FLOOD_S = 5


def _why_not() -> str | None:
    if not PEERS.is_dir():
        return f"independent peers not found at {PEERS}"
    if shutil.which("freeDiameterd") is None or not (CACHE / "test_app.fdx").is_file():
        return "freeDiameter and its test_app are not installed (../shared/peers/setup.sh fd)"
    return None


def _capture_why_not() -> str | None:
    if os.geteuid() != 0:
        return "capture.sh needs root"
    for tool in ("dumpcap", "tshark"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (../shared/peers/setup.sh tshark)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_line(path: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        m = rx.search(text)
        if m:
            return m.group(0)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r} in {path}:\n{path.read_text(errors='replace')[-3000:]}")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


class Capture:
    """capture.sh on one port; `finish()` ends our own dumpcap early (SIGINT by pid)."""

    def __init__(self, port: int, out: Path, log: Path) -> None:
        self.port, self.out = port, out
        self.proc = subprocess.Popen(
            ["bash", str(PEERS / "capture.sh"), str(port), "120", str(out)],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def finish(self) -> None:
        time.sleep(1.0)  # the last packets
        pid = self.proc.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        for child in children:
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == "dumpcap":
                    os.kill(int(child), signal.SIGINT)
            except (OSError, ValueError):
                pass
        assert self.proc.wait(30) == 0, f"capture.sh failed for port {self.port}"

    def check(self) -> str:
        res = subprocess.run(
            ["bash", str(PEERS / "tshark-check.sh"), "--port", str(self.port), str(self.out)],
            capture_output=True,
            timeout=180,
        )
        line = res.stdout.decode(errors="replace").strip()
        assert res.returncode == 0, f"{line}\n{res.stderr.decode(errors='replace')[-3000:]}"
        assert "malformed=0" in line and "expert_errors=0" in line, line
        return line

    def route_records(self) -> list[str]:
        """Every Route-Record value in the capture (tshark's own reading)."""
        res = subprocess.run(
            ["tshark", "-r", str(self.out), "-d", f"tcp.port=={self.port},diameter",
             "-Y", f"diameter.flags.request == 1 && diameter.cmd.code == {TEST_CMD}",
             "-T", "fields", "-E", "occurrence=a", "-e", "diameter.Route-Record"],
            capture_output=True,
            timeout=180,
        )  # fmt: skip
        text = res.stdout.decode(errors="replace")  # one line per frame, values joined by ","
        return [v for line in text.splitlines() for v in line.split(",") if v]


def relay_toml(tmp: Path, port: int, upstream: int) -> Path:
    path = tmp / "relay.toml"
    path.write_text(
        f"""
data_dir = "{tmp / "data"}"
[identity]
origin_host = "{RELAY}"
origin_realm = "localdomain"
[[listen]]
address = "127.0.0.1"
port = {port}
[agent]
mode = "relay"
[[agent.routes]]
realm = "localdomain"
peers = ["{SERVER}"]
[[peers]]
name = "{SERVER}"
realm = "localdomain"
address = "127.0.0.1"
port = {upstream}
connect = true
[metrics]
enabled = false
"""
    )
    return path


def test_fd_client_through_chargegw_relay_to_fd_server(tmp_path: Path) -> None:
    why = _why_not()
    if why:
        pytest.skip(why)
    capture_why = _capture_why_not()
    a, b = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    try:
        server_log = tmp_path / "fd-server.log"
        server = subprocess.Popen(
            ["bash", str(PEERS / "fd-server.sh"), "--port", str(a), "--identity", SERVER],
            stdout=server_log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        procs.append(server)
        wait_line(server_log, "FD-SERVER READY", server, 30)
        caps: list[Capture] = []
        if capture_why is None:
            caps = [
                Capture(b, tmp_path / "down.pcap", tmp_path / "cap-down.log"),
                Capture(a, tmp_path / "up.pcap", tmp_path / "cap-up.log"),
            ]
            time.sleep(2.0)  # dumpcap needs a moment before it sees packets
        relay_log = tmp_path / "relay.log"
        relay = subprocess.Popen(
            [sys.executable, "-m", "chargegw.cli", "relay", "-c", str(relay_toml(tmp_path, b, a))],
            stdout=relay_log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        procs.append(relay)
        wait_line(relay_log, f"{re.escape(SERVER)}: I-Open", relay, 30)

        client = subprocess.run(
            ["bash", str(PEERS / "fd-client.sh"), "--port", str(b), "--peer-identity", RELAY,
             "--duration", str(FLOOD_S), "--concurrency", "100",
             "--workdir", str(tmp_path / "fd-client")],
            capture_output=True,
            timeout=FLOOD_S + 120,
        )  # fmt: skip
        out = client.stdout.decode(errors="replace")
        run = re.search(r"RUN 1: sent=(\d+) answered=(\d+) errors=(\d+)", out)
        assert client.returncode == 0 and run, out + client.stderr.decode(errors="replace")
        sent, answered, errors = (int(x) for x in run.groups())
        assert sent > 100 and answered == sent and errors == 0, out
        assert "INCOMPLETE" not in out

        assert stop(relay) == 0
        stats = re.search(r"agent forwarded=(\d+) answers_relayed=(\d+) answers_dropped=(\d+)",
                          relay_log.read_text())  # fmt: skip
        assert stats, relay_log.read_text()[-3000:]
        forwarded, relayed, dropped = (int(x) for x in stats.groups())
        assert forwarded == relayed == sent and dropped == 0
        stop(server)
        if capture_why is not None:
            pytest.skip(f"chain passed ({sent} answers, 0 errors); capture skipped: {capture_why}")
        for cap in caps:
            cap.finish()
        down, up = caps
        for cap in caps:
            line = cap.check()
            m = re.search(r"cmds=(\S+) result_codes=(\S+)", line)
            assert m, line
            codes = dict(kv.split(":") for kv in m.group(2).split(","))
            assert set(codes) == {"2001"}, line  # every answer on both legs, CEA/DWA/DPA too
            cmds = dict(kv.split(":") for kv in m.group(1).split(","))
            assert int(cmds[str(TEST_CMD)]) == 2 * sent, line  # each request and its answer
        # The relay adds one Route-Record (the client's identity) upstream, none downstream.
        up_rr = up.route_records()
        assert len(up_rr) == sent and set(up_rr) == {CLIENT}, set(up_rr)
        assert not down.route_records()
    finally:
        for proc in reversed(procs):
            stop(proc)
