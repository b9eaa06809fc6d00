"""Worker processes (`chargegw worker`) against an in-test PoolServer: a SIGKILLed or hung
worker loses no request; each is answered by another worker or with an error in time."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_pool_io import aio, make_gateway, make_request, until

from chargegw.gateway.pool import NoWorker
from chargegw.workers.testapp import TEST_APP_ID, TEST_VENDOR

pytestmark = pytest.mark.timeout(90)

DEADLINE = 4.0


def write_config(tmp_path: Path, endpoint: str) -> Path:
    cfg = tmp_path / "w.toml"
    cfg.write_text(
        f"""
data_dir = "{tmp_path}/data"
[worker]
gateways = ["{endpoint}"]
heartbeat_interval = 0.1
heartbeat_timeout = 0.4
[logging]
level = "warning"
[[applications]]
app_id = {TEST_APP_ID}
handler = "chargegw.workers.testapp:SlowApp"
vendor_id = {TEST_VENDOR}
[applications.config]
delay = 0.05
[[applications]]
app_id = 1
handler = "chargegw.workers.testapp:BlockApp"
[applications.config]
delay = 2.0
only_first = true
"""
    )
    return cfg


def spawn(cfg: Path, wid: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "chargegw.cli", "worker", "--config", str(cfg), "--id", wid],
        start_new_session=True,
    )


def kill_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait(timeout=10)


@aio
async def test_sigkill_under_load_loses_no_request(tmp_path: Path) -> None:
    ep = f"ipc://{tmp_path}/gw.ipc"
    gw = make_gateway(ep, deadline=DEADLINE)
    cfg = write_config(tmp_path, ep)
    procs = [spawn(cfg, "wa"), spawn(cfg, "wb")]
    try:
        await until(lambda: len(gw.core.workers) == 2, timeout=20, what="two workers")
        submitted: dict[int, float] = {}
        shed = 0
        n = 0
        t_end = time.monotonic() + 2.0
        killed = False
        while time.monotonic() < t_end:
            for _ in range(10):
                try:
                    gw.submit(make_request(n))
                    submitted[1000 + n] = time.monotonic()
                except NoWorker:
                    shed += 1
                n += 1
            if not killed and time.monotonic() > t_end - 1.2:
                held = len(gw.core.workers[b"wa"].inflight)
                os.killpg(procs[0].pid, signal.SIGKILL)
                killed = True
                assert held > 0, "the killed worker held requests"
            await asyncio.sleep(0.01)
        await until(
            lambda: len(gw.answers) == len(submitted),
            timeout=DEADLINE + 2,
            what="every request answered",
        )
        assert shed == 0
        late = [h for h, t0 in submitted.items() if gw.answered_at[h] - t0 > DEADLINE]
        assert late == []
        codes = [int(gw.answers[h].get("Result-Code")) for h in submitted]
        assert codes.count(2001) == len(submitted), {c: codes.count(c) for c in set(codes)}
        assert gw.core.counters.resent > 0
        assert b"wa" not in gw.core.workers
    finally:
        kill_all(procs)
        gw.server.close(goodbye=False)


@aio
async def test_hung_worker_is_dropped_and_its_requests_resent(tmp_path: Path) -> None:
    ep = f"ipc://{tmp_path}/gw.ipc"
    gw = make_gateway(ep, deadline=DEADLINE)
    cfg = write_config(tmp_path, ep)
    procs = [spawn(cfg, "wa"), spawn(cfg, "wb")]
    try:
        await until(lambda: len(gw.core.workers) == 2, timeout=20, what="two workers")
        gw.submit(make_request(0), app=1)  # hangs whichever worker takes it
        hung = gw.core.pending[next(iter(gw.core.pending))].worker
        for i in range(1, 41):
            gw.submit(make_request(i))
        on_hung = [
            p.hbh for p in gw.core.pending.values() if p.worker == hung and p.app == TEST_APP_ID
        ]
        assert on_hung
        await until(lambda: len(gw.answers) == 41, timeout=DEADLINE, what="all answered")
        assert hung not in gw.core.workers or gw.core.counters.workers_dropped >= 1
        assert [int(gw.answers[1000 + i].get("Result-Code")) for i in range(41)] == [2001] * 41
        assert gw.core.counters.resent >= len(on_hung) + 1
    finally:
        kill_all(procs)
        gw.server.close(goodbye=False)
