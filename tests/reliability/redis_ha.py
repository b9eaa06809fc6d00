"""A private Redis primary, its replica and one Sentinel on loopback ports, for the failover
tests (issue 10: "a Redis primary that fails over mid-run gives 3004 for the gap and then
resumes"). Persistence: append-only file, fsync `always` (what the CDR store needs before
Redis 7.2) or `everysec` (the Gy store's usual choice: a failover, not a power cut, is then
what the replica covers)."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from chargegw.workers.charging.testing import free_port

MASTER = "cgm"


@dataclass
class RedisHA:
    d: Path
    fsync: str = "always"  # appendfsync of the data nodes
    n_replicas: int = 1
    primary: int = 0
    replicas: list[int] = field(default_factory=list)
    sentinel: int = 0
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel}/{MASTER}"

    def _server(self, name: str, port: int, *extra: str) -> None:
        exe = shutil.which("redis-server")
        assert exe is not None
        wd = self.d / name
        wd.mkdir(parents=True, exist_ok=True)
        self.procs[name] = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "yes", "--appendfsync", self.fsync, "--dir", str(wd), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def cli(self, port: int, *args: str) -> str:
        exe = shutil.which("redis-cli")
        assert exe is not None
        r = subprocess.run([exe, "-p", str(port), *args], capture_output=True, text=True,
                           timeout=10)  # fmt: skip
        return r.stdout

    def start(self) -> RedisHA:
        self.primary, self.sentinel = free_port(), free_port()
        self.replicas = [free_port() for _ in range(self.n_replicas)]
        self._server("primary", self.primary)
        for i, port in enumerate(self.replicas):
            self._server(f"replica{i}", port, "--replicaof", "127.0.0.1", str(self.primary))
        conf = self.d / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel}\nbind 127.0.0.1\ndir {self.d}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary} 1\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 4000\n"
        )
        exe = shutil.which("redis-server")
        assert exe is not None
        self.procs["sentinel"] = subprocess.Popen(
            [exe, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        end = time.monotonic() + 20
        # the replicas are in sync and the Sentinel knows them (else it has none to promote)
        while not all(
            "master_link_status:up" in self.cli(port, "info", "replication")
            and str(port) in self.cli(self.sentinel, "sentinel", "replicas", MASTER)
            for port in self.replicas
        ):
            assert time.monotonic() < end, "redis primary/replicas/sentinel did not come up"
            time.sleep(0.1)
        return self

    @property
    def replica(self) -> int:
        return self.replicas[0]

    def master_port(self) -> int:
        out = self.cli(self.sentinel, "sentinel", "get-master-addr-by-name", MASTER).split()
        return int(out[1]) if len(out) == 2 else 0

    def wait_for_keys(self, pattern: str, timeout: float = 30.0) -> None:
        """Until the primary holds a key matching `pattern`."""
        import redis

        r = redis.Redis(port=self.primary, socket_timeout=1.0)
        end = time.monotonic() + timeout
        try:
            while next(r.scan_iter(match=pattern, count=1000), None) is None:
                assert time.monotonic() < end, f"no key {pattern} appeared"
                time.sleep(0.05)
        finally:
            r.close()

    def kill_primary(self) -> None:
        self.procs["primary"].send_signal(signal.SIGKILL)
        self.procs["primary"].wait(10)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)


@contextlib.contextmanager
def redis_ha(d: Path, fsync: str = "always", replicas: int = 1) -> Iterator[RedisHA]:
    ha = RedisHA(d, fsync, replicas)
    try:
        yield ha.start()
    finally:
        ha.stop()
