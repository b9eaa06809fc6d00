"""`chargegw run` runs the memory housekeeping (chargegw.memory.MemoryKeeper) in the gateway
and in every worker: with CHARGEGW_MEMLOG set, each process writes its figures there. (The
trim itself is tested in tests/test_soak_memory.py; this checks the wiring through
run_loop, which the soak's flat heap depends on.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from chargegw import memory
from chargegw.loadtest import reliability as rel

pytestmark = pytest.mark.timeout(120)


def test_gateway_and_workers_keep_their_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memlog = tmp_path / "memlog"
    memlog.mkdir()
    monkeypatch.setenv(memory.ENV_MEMLOG, str(memlog))  # inherited by `chargegw run`
    with rel.Gateway(tmp_path / "gw", workers=2) as gw:
        pids = {gw.pid, *gw.worker_pids()}
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if {int(p.stem.split("-")[1]) for p in memlog.glob("mem-*.jsonl")} >= pids:
                break
            time.sleep(0.2)
    roles = {}
    for f in memlog.glob("mem-*.jsonl"):
        doc = json.loads(f.read_text().splitlines()[0])
        roles[int(f.stem.split("-")[1])] = doc["role"]
        assert doc["anon_kb"] > 0 and doc["py_blocks"] > 0
        if memory._glibc() is not None:
            assert doc["used"] > 0 and doc["free"] >= 0
    assert set(roles) >= pids, roles
    assert roles[gw.pid] == "gateway"
    assert sorted(r.split(":")[0] for p, r in roles.items() if p != gw.pid) == ["worker"] * 2
