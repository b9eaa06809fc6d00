"""End to end: `chargegw run` with the built-in charging apps on a fresh data dir, driven by the
bundled load generator (and OTP's CCR client when installed), with a worker killed mid-load."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PEERS = Path(__file__).resolve().parents[2] / "shared" / "peers"
CLI = [sys.executable, "-m", "chargegw.cli"]


@pytest.fixture
def gateway(tmp_path, chargegw_run):
    with chargegw_run(tmp_path, workers=2, timeout=30) as gw:
        yield gw


def load(port: int, out: Path, sessions: int, concurrency: int = 20) -> dict:
    subprocess.run(
        [*CLI, "load", "--port", str(port), "--sessions", str(sessions), "--concurrency", str(concurrency),
         "--subscribers", "50", "--timeout", "10", "--json", str(out), "--quiet"],
        check=False, timeout=120, capture_output=True,
    )  # fmt: skip
    return json.loads(out.read_text())["summary"]


def ledger(cfg: Path) -> dict:
    r = subprocess.run(
        [*CLI, "ledger", "check", "-c", str(cfg), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    rep = json.loads(r.stdout)
    assert r.returncode == (0 if rep["ok"] else 1)
    return rep


def test_load_generator_and_ledger_out_of_the_box(gateway):
    port, cfg, tmp = gateway.port, gateway.cfg, gateway.log.parent
    summary = load(port, tmp / "load.json", sessions=300)
    assert summary["result_codes"] == {"2001": 900}, summary
    rep = ledger(cfg)
    assert rep["ok"], rep["problems"]
    # each session: 1 MB on CCR-U and 1 MB on CCR-T at 0.01 per started MiB
    assert rep["debits"] == 300 * 2 * 10_000 and rep["reserved"] == 0


@pytest.mark.interop
def test_otp_ccr_client_succeeds_against_the_demo_set(gateway):
    if shutil.which("escript") is None or not (PEERS / "erl-ccr-client.escript").exists():
        pytest.skip("Erlang/OTP escript or ../shared/peers/erl-ccr-client.escript not available")
    port, cfg = gateway.port, gateway.cfg
    r = subprocess.run(
        ["escript", str(PEERS / "erl-ccr-client.escript"), "--port", str(port), "--sessions", "200", "--updates", "2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "RESULT ok" in r.stdout, r.stdout + r.stderr
    rep = ledger(cfg)
    assert rep["ok"] and rep["debits"] == 200 * 3 * 10_000  # 3 x 60 s at 0.01 per minute


def test_worker_killed_under_load_never_charges_twice(gateway):
    port, cfg, tmp = gateway.port, gateway.cfg, gateway.log.parent
    out = tmp / "fault.json"
    client = subprocess.Popen(
        [*CLI, "load", "--port", str(port), "--sessions", "1000000", "--duration", "3", "--concurrency", "40",
         "--subscribers", "30", "--timeout", "10", "--json", str(out), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(1.5)
        workers = gateway.children()
        assert workers, "no worker processes found"
        os.kill(workers[0], signal.SIGKILL)
        client.wait(120)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    summary = json.loads(out.read_text())["summary"]
    rep = ledger(cfg)
    assert rep["ok"], rep["problems"]
    done, started = summary["sessions_completed"], summary["sessions_started"]
    assert done > 0
    assert 2 * 10_000 * done <= rep["debits"] <= 2 * 10_000 * started
