"""Redis failover (issue 10): the workers' store is a Sentinel-monitored primary with one
replica (`replicas = 1`: a batch counts once the replica holds it). The primary is SIGKILLed
while the bundled generator runs Gy sessions through `chargegw run`; the Sentinel promotes the
replica. The gap is answered with RFC codes (no request left to time out), service resumes
by itself, and the usage the generator reported is exactly what the ledger rated: no
answered charge was lost in the failover, none was made twice."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import orjson
import pytest
from redis_ha import redis_ha

from chargegw.loadtest import reliability as rel

pytestmark = pytest.mark.timeout(240)


def test_a_redis_primary_killed_mid_run_fails_over_and_no_answered_charge_is_lost(
    tmp_path: Path,
) -> None:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server not installed (apt-get install -y redis-server)")
    # Two replicas: after the failover one is left to acknowledge (replicas = 1 is strict: a
    # primary with no replica in sync answers 3004 rather than risk an answered charge).
    with redis_ha(tmp_path / "redis", fsync="everysec", replicas=2) as ha:
        store = (
            f'[applications.config.store]\nbackend = "redis"\nurl = "{ha.url}"\n'
            "timeout = 1.0\nreplicas = 1\nreplica_wait = 0.5\n"
        )
        apps = (
            "[[applications]]\napp_id = 4\n"
            'handler = "chargegw.workers.charging.gy:CreditControlApp"\n' + store
        )
        out = tmp_path / "load.json"
        with rel.Gateway(tmp_path / "gw", workers=2, extra=apps) as gw:
            load = subprocess.Popen(
                [*rel.CLI, "load", "--port", str(gw.port), "--json", str(out), "--quiet",
                 "--scenario", "gy", "--duration", "14", "--concurrency", "10", "--timeout",
                 "6", "--updates", "2", "--subscribers", "200", "--max-error-rate", "1",
                 "--verify-ledger", "--ledger-config", str(gw.cfg)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
            ha.wait_for_keys("cg:{s*}:s:*")  # sessions: the generator's load is running
            time.sleep(1.5)
            ha.kill_primary()
            t_kill = time.monotonic()
            while ha.master_port() not in ha.replicas:
                assert time.monotonic() < t_kill + 30, "the Sentinel did not fail over"
                time.sleep(0.1)
            failover_s = time.monotonic() - t_kill
            text = load.communicate(timeout=120)[0].decode(errors="replace")
            assert out.exists(), text[-3000:]
            assert gw.alive(), gw.output()[-3000:]
            log = gw.output()
    rep = orjson.loads(out.read_bytes())
    s = rep["summary"]
    codes = {int(k): v for k, v in s["result_codes"].items()}
    assert s["timeouts"] == 0 and s["lost"] == 0 and s["mismatches"] == 0, s
    assert set(codes) <= {2001, 3002, 3004, 5012}, codes
    assert sum(v for k, v in codes.items() if k != 2001) > 0, codes  # the gap was seen
    series = s["series"]
    tail = series[-3:-1]  # the last whole seconds, well after the failover (~3 s)
    assert all(x["answered"] > 0 and x["errors"] == 0 for x in tail), (series, failover_s,
                                                                       log[-3000:])  # fmt: skip
    money = rep["money"]
    assert money["ledger_ok"], money.get("ledger_problems")
    assert money["passed"], money  # rated what the answered usage reports cost, no more or less
