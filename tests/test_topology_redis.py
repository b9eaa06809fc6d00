"""The docker-compose topology without containers: a private redis-server (or a 3-primary Redis
Cluster), `chargegw gateway` with its pool on tcp:// (CURVE), and three `chargegw worker`
processes on the Redis store.
The bundled load generator runs Gy sessions while one worker is killed with SIGKILL; every
session step is answered (by the worker's successor, or with an RFC error), and the money
the generator's usage reports should have cost is what the ledger shows (--verify-ledger),
with `chargegw ledger check` reconciling afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from conftest import free_port

from chargegw.config import load_config
from chargegw.gateway.status_cli import query
from chargegw.ipc.security import status_endpoint

pytestmark = pytest.mark.timeout(180)

CLI = [sys.executable, "-m", "chargegw.cli"]
WORKERS = ("w1", "w2", "w3")


@contextlib.contextmanager
def spawn(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as fh:
        p = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield p
    finally:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


def write_config(d: Path, redis_url: str, port: int, pool_port: int) -> Path:
    keys = d / "keys"
    subprocess.run([*CLI, "keys", "generate", "--dir", str(keys)], check=True, capture_output=True)
    store = f'[applications.config.store]\nbackend = "redis"\nurl = "{redis_url}"\n'
    cfg = d / "chargegw.toml"
    cfg.write_text(
        f'data_dir = "{d / "data"}"\n'
        f'[[listen]]\naddress = "127.0.0.1"\nport = {port}\n'
        f'[pool]\nbind = ["tcp://127.0.0.1:{pool_port}"]\n'
        f'curve_secret_key = "{keys}/gateway/gateway.key_secret"\n'
        f'curve_workers = "{keys}/gateway/workers"\n'
        f'[worker]\ngateways = ["tcp://127.0.0.1:{pool_port}"]\n'
        f'curve_secret_key = "{keys}/worker/worker.key_secret"\n'
        f'curve_server_key = "{keys}/worker/gateway.key"\n'
        '[[applications]]\napp_id = 4\nhandler = "chargegw.workers.charging.gy:CreditControlApp"\n'
        + store
        + '[[applications]]\napp_id = 3\nhandler = "chargegw.workers.charging.rf:AccountingApp"\n'
        + store
        + "[[applications]]\napp_id = 16777302\nvendor_id = 10415\n"
        'handler = "chargegw.workers.charging.sy:SpendingLimitApp"\n' + store
    )
    return cfg


def workers_registered(cfg: Path) -> list[dict[str, object]]:
    with contextlib.suppress(TimeoutError):
        return list(query(status_endpoint(load_config(str(cfg))), 1.0)["pool"]["workers"])
    return []


@contextlib.contextmanager
def single_redis(d: Path) -> Iterator[str]:
    """A private redis-server on a unix socket; yields its URL."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not installed (apt-get install -y redis-server)")
    sock = d / "redis.sock"
    (d / "redis").mkdir()
    # Redis 7.0 has no WAITAOF: the CDR store (Rf) needs appendfsync always to start.
    redis_argv = [exe, "--port", "0", "--unixsocket", str(sock), "--save", "",
                  "--appendonly", "yes", "--appendfsync", "always", "--dir", str(d / "redis")]  # fmt: skip
    with spawn(redis_argv, d / "redis.log"):
        end = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < end, (d / "redis.log").read_text()
            time.sleep(0.05)
        yield f"unix://{sock}"


@contextlib.contextmanager
def cluster_redis(d: Path) -> Iterator[str]:
    """A private 3-primary Redis Cluster (tests/redis_cluster.py); yields its URL."""
    from redis_cluster import RedisCluster, missing

    why = missing()
    if why:
        pytest.skip(why)
    with RedisCluster(masters=3, extra=("--appendonly", "yes", "--appendfsync", "always")) as c:
        yield c.url


@pytest.mark.parametrize("redis", ["single", "cluster"])
def test_gateway_three_curve_workers_on_redis_survive_a_killed_worker(
    tmp_path: Path, redis: str
) -> None:
    port, pool_port = free_port(), free_port()
    server = single_redis if redis == "single" else cluster_redis
    with server(tmp_path) as url:
        cfg = write_config(tmp_path, url, port, pool_port)
        with contextlib.ExitStack() as stack:
            gw = stack.enter_context(
                spawn([*CLI, "gateway", "-c", str(cfg)], tmp_path / "gateway.log")
            )
            procs = {
                w: stack.enter_context(
                    spawn([*CLI, "worker", "-c", str(cfg), "--id", w], tmp_path / f"{w}.log")
                )
                for w in WORKERS
            }
            end = time.monotonic() + 60
            while len(workers_registered(cfg)) < len(WORKERS):
                assert gw.poll() is None, (tmp_path / "gateway.log").read_text()
                assert time.monotonic() < end, (tmp_path / "gateway.log").read_text()
                time.sleep(0.2)
            out = tmp_path / "load.json"
            load = subprocess.Popen(
                [*CLI, "load", "--port", str(port), "--scenario", "gy", "--updates", "3",
                 "--duration", "8", "--warmup", "0", "--concurrency", "20", "--timeout", "6",
                 "--verify-ledger", "--ledger-config", str(cfg), "--json", str(out), "--quiet",
                 "--max-error-rate", "0.05"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )  # fmt: skip
            time.sleep(3.5)
            victim = procs["w2"]
            os.killpg(victim.pid, signal.SIGKILL)  # the worker and nothing else
            victim.wait(5)
            text = load.communicate(timeout=120)[0].decode(errors="replace")
            report = orjson.loads(out.read_bytes())
            left = workers_registered(cfg)
            status = query(status_endpoint(load_config(str(cfg))), 2.0)["pool"]
        check = subprocess.run(
            [*CLI, "ledger", "check", "-c", str(cfg), "--json"], capture_output=True, text=True
        )
    s = report["summary"]
    assert s["sent"] > 500, text
    assert s["lost"] == 0 and s["mismatches"] == 0 and s["unexpected_answers"] == 0, s
    # The killed worker's in-flight requests were resent or answered with an RFC code;
    # nothing waited past its deadline.
    assert s["timeouts"] == 0, s
    codes = {int(k) for k in s["result_codes"]}
    assert codes <= {2001, 3002, 3004, 5030}, s["result_codes"]
    assert s["ok_2001"] >= 0.95 * s["answered"], s["result_codes"]
    money = report["money"]
    assert money is not None and money.get("passed") is True, money
    assert check.returncode == 0, check.stdout + check.stderr
    assert sorted(str(w["id"]) for w in left) == ["w1", "w3"]
    if status.get("shards"):  # sharded store: every shard owned by a survivor
        owned = sum(int(w.get("shards_owned", 0)) for w in status["workers"])
        assert owned == status["shards"], status
