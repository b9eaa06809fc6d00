"""`chargegw load` stopped early by SIGINT/SIGTERM ends gracefully: no new session starts, the
started ones finish, and the report is written as for a normal end (one process or several)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from chargegw.workers.charging.testing import free_port

pytestmark = pytest.mark.timeout(120)
CLI = [sys.executable, "-m", "chargegw.cli"]


@pytest.mark.parametrize(("processes", "sig"), [(1, signal.SIGINT), (2, signal.SIGTERM)])
def test_a_long_run_stopped_by_a_signal_reports_what_it_did(
    tmp_path: Path, processes: int, sig: int
) -> None:
    port = free_port()
    stub = subprocess.Popen(
        [sys.executable, "-m", "chargegw.loadtest.stub", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    out = tmp_path / "load.json"
    try:
        assert stub.stdout is not None and b"STUB READY" in stub.stdout.readline()
        load = subprocess.Popen(
            [*CLI, "load", "--port", str(port), "--scenario", "gy", "--duration", "600",
             "--warmup", "0", "--concurrency", "8", "--processes", str(processes),
             "--connections", str(processes), "--json", str(out), "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        time.sleep(4.0 + 2.0 * processes)  # imports (spawned children too), CER, some load
        t = time.monotonic()
        load.send_signal(sig)
        text = load.communicate(timeout=60)[0].decode(errors="replace")
        stopped_in = time.monotonic() - t
    finally:
        stub.kill()
        stub.wait(10)
    assert out.exists(), text[-2000:]
    s = orjson.loads(out.read_bytes())["summary"]
    assert stopped_in < 20, stopped_in  # not the 600 s asked for
    assert s["answered"] > 0 and s["answered"] == s["sent"], s
    assert s["timeouts"] == 0 and s["lost"] == 0 and s["mismatches"] == 0, s
    # the sessions that were started finished: every CCR-I has its CCR-T
    steps = s["by_step"]
    assert steps["gy-initial"]["answered"] == steps["gy-terminate"]["answered"], steps
