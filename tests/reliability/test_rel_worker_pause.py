"""A worker paused (SIGSTOP) for longer than `pool.heartbeat_timeout` under load, then resumed
(SIGCONT): the gateway declares it gone, and what it held must be resent at once to the
shard's new owner, not wait out the pool deadline (3002); when it comes back it registers
again. The workers' stores are idempotent per Session-Id / CC-Request-Number, so nothing may
be charged twice, and the ledger must reconcile.

The pool can only resend once it has declared the worker gone, after heartbeat_timeout of
silence: with the reliability harness's generous heartbeats (5 s) above the deadline (4 s)
the deadline comes first and what the paused worker held is answered 3002 (measured: 20 of
40 held), so this test runs with heartbeat_timeout below the deadline, as the defaults are
(3 s / 4 s)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from chargegw.loadtest import reliability as rel

pytestmark = pytest.mark.timeout(120)

HB_INTERVAL = 0.25
HB_TIMEOUT = 1.5  # < the pool deadline (4 s): a silent worker is dropped before it passes
DEADLINE = 4.0
PAUSE = 2.5  # > HB_TIMEOUT


def pausable(workdir: Path, workers: int) -> rel.Gateway:
    """`chargegw run` with heartbeats short enough that a paused worker is dropped well
    within the pool deadline (the harness's own are generous: 0.5 s / 5 s)."""
    return rel.Gateway(workdir, workers=workers, heartbeat_interval=HB_INTERVAL,
                       heartbeat_timeout=HB_TIMEOUT, deadline=DEADLINE)  # fmt: skip


def test_paused_worker_requests_are_resent_not_left_to_the_deadline(tmp_path: Path) -> None:
    duration = 7.0
    with pausable(tmp_path, workers=2) as gw:
        out = tmp_path / "load.json"
        load = subprocess.Popen(
            [*rel.CLI, "load", "--port", str(gw.port), "--json", str(out), "--quiet",
             "--duration", str(duration), "--concurrency", "20", "--updates", "2",
             "--subscribers", "200", "--timeout", "8", "--max-error-rate", "1",
             "--verify-ledger", "--ledger-config", str(gw.cfg)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        time.sleep(2.5)  # the generator's ledger snapshot and first sessions
        victim = gw.worker_pids()[0]
        os.kill(victim, signal.SIGSTOP)
        try:
            time.sleep(PAUSE)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGCONT)
        text = load.communicate(timeout=120)[0].decode(errors="replace")
        rep = orjson.loads(out.read_bytes()) if out.exists() else {}
        log = gw.output()
        dup = gw.double_charges()
        alive = gw.alive()
    s = rep.get("summary") or {}
    codes = {int(k): v for k, v in (s.get("result_codes") or {}).items()}
    lat = s.get("latency_ms") or {}
    drops = re.findall(r"dropped \(silent\): (\d+) in flight, (\d+) resent, (\d+) answered", log)
    expired = log.count("timed out in its worker")
    shown = (f"codes={codes} latency={lat} drops={drops} expired={expired} "
             f"money={ {k: v for k, v in (rep.get('money') or {}).items() if k != 'expected'} }\n"
             f"{text[-1500:]}\n{log[-3000:]}")  # fmt: skip
    assert alive, shown
    assert drops, "the paused worker was not declared gone: " + shown
    assert sum(int(held) for held, _r, _a in drops) > 0, "it held nothing: " + shown
    assert s.get("timeouts", 0) == 0 and s.get("lost", 0) == 0, shown
    # Resent at once: nothing waited out the pool deadline (3002 from the gateway's clock).
    assert expired == 0 and codes.get(3002, 0) == 0, shown
    assert float(lat.get("max", 1e9)) < (DEADLINE - 0.5) * 1000, shown
    assert not dup, f"charged twice: {dup[:5]}\n{shown}"
    money = rep.get("money") or {}
    assert money.get("ledger_ok"), shown
