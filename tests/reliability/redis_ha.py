"""A private Redis primary, its replicas and one Sentinel on loopback ports, for the failover
tests (issue 10: "a Redis primary that fails over mid-run gives 3004 for the gap and then
resumes"). Persistence: append-only file, fsync `always` (what the CDR store needs before
Redis 7.2) or `everysec` (the Gy store's usual choice: a failover, not a power cut, is then
what the replica covers).

`replicas = N` in the store makes a write count only once N replicas acknowledge it (WAIT),
so a replica that is not in sync turns every write into 3004. A test therefore starts only
once Redis is settled (`wait_synced`: each replica follows the primary with its link up and
no sync in progress, a write on the primary is acknowledged by every replica, the Sentinel
knows them all), and after a failover judges the store only once the replica that was not
promoted follows the new primary again. Each node logs to `<dir>/<name>/redis.log`
(`logs()`, for failure messages)."""

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
PROBE = "redis_ha:probe"  # written and deleted at once by `_missing`'s WAIT probe


def _fields(text: str) -> dict[str, str]:
    """`INFO` output as a dict."""
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def _records(text: str) -> list[dict[str, str]]:
    """A `SENTINEL REPLICAS` reply as redis-cli prints it off a terminal (one line per string,
    each record's pairs starting with `name`) as a list of dicts."""
    lines = text.splitlines()
    out: list[dict[str, str]] = []
    for k, v in zip(lines[::2], lines[1::2], strict=False):
        if k == "name":
            out.append({})
        if out:
            out[-1][k] = v
    return out


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
             "yes", "--appendfsync", self.fsync, "--dir", str(wd), "--logfile",
             str(wd / "redis.log"),
             # A replica that needs a full sync (at start; after a failover, the one not
             # promoted when it was ahead of the new primary) gets it at once: by default a
             # primary waits 5 s for more replicas before a diskless sync starts, and WAIT
             # refuses every write until it is done.
             "--repl-diskless-sync-delay", "0", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def cli(self, port: int, *args: str, stdin: str | None = None) -> str:
        """redis-cli's output (`stdin`: commands sent on one connection, one a line)."""
        exe = shutil.which("redis-cli")
        assert exe is not None
        try:
            r = subprocess.run([exe, "-p", str(port), *args], capture_output=True, text=True,
                               input=stdin, timeout=10)  # fmt: skip
        except subprocess.TimeoutExpired:
            return ""
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
            f"logfile {self.d / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary} 1\n"
            # Sentinel PINGs once a second: a 1 s limit took a just-promoted primary that
            # was slow to answer its first PING for a dead one and failed over again.
            f"sentinel down-after-milliseconds {MASTER} 3000\n"
            f"sentinel failover-timeout {MASTER} 4000\n"
        )
        exe = shutil.which("redis-server")
        assert exe is not None
        self.procs["sentinel"] = subprocess.Popen(
            [exe, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        # Sentinel reads a master's replicas from its INFO every 10 s: allow for two rounds.
        self.wait_synced(self.primary, self.replicas, timeout=30.0, sentinel=True)
        return self

    def _missing(self, primary: int, replicas: list[int], sentinel: bool) -> str:
        """What keeps `replicas` from acknowledging `primary`'s writes at once ('' if none)."""
        for port in replicas:
            i = _fields(self.cli(port, "info", "replication"))
            if i.get("master_port") != str(primary):
                return f"replica {port} follows {i.get('master_port')}, not {primary}"
            if i.get("master_link_status") != "up" or i.get("master_sync_in_progress") != "0":
                return f"replica {port}: link {i.get('master_link_status')}, sync in progress " \
                       f"{i.get('master_sync_in_progress')}"  # fmt: skip
        p = _fields(self.cli(primary, "info", "replication"))
        online = [v for k, v in p.items() if k.startswith("slave") and "state=online" in v]
        if len(online) < len(replicas):
            return f"primary {primary} has {len(online)} replicas online: {p}"
        # One connection: the WAIT counts the replicas that hold this connection's writes.
        out = self.cli(primary, stdin=f"SET {PROBE} 1\nDEL {PROBE}\nWAIT {len(replicas)} 1000\n")
        acked = out.split()[-1] if out.split() else ""
        if not acked.isdigit() or int(acked) < len(replicas):
            return f"primary {primary}: a write acknowledged by {acked!r} replicas"
        if sentinel:
            known = {
                r.get("port"): r
                for r in _records(self.cli(self.sentinel, "sentinel", "replicas", MASTER))
            }
            for port in replicas:
                r = known.get(str(port), {})
                if r.get("flags") != "slave":  # not s_down, disconnected or unknown
                    return f"Sentinel on replica {port}: {r or 'unknown'}"
        return ""

    def wait_synced(
        self, primary: int, replicas: list[int], timeout: float, sentinel: bool = False
    ) -> float:
        """Until every one of `replicas` acknowledges `primary`'s writes (and, with `sentinel`,
        the Sentinel knows each as a reachable replica, one it may promote): the time it
        took. After `timeout` seconds, AssertionError naming what was missing, with the logs."""
        t0 = time.monotonic()
        while why := self._missing(primary, replicas, sentinel):
            assert time.monotonic() < t0 + timeout, f"redis not in sync: {why}\n{self.logs()}"
            time.sleep(0.1)
        return time.monotonic() - t0

    @property
    def replica(self) -> int:
        return self.replicas[0]

    def master_port(self) -> int:
        out = self.cli(self.sentinel, "sentinel", "get-master-addr-by-name", MASTER).split()
        return int(out[1]) if len(out) == 2 else 0

    def logs(self, lines: int = 15) -> str:
        """The last lines of every node's log and the Sentinel's."""
        parts = []
        for f in sorted(self.d.glob("*/redis.log")) + [self.d / "sentinel.log"]:
            if f.exists():
                tail = f.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {f.relative_to(self.d)}\n" + "\n".join(tail))
        return "\n".join(parts)

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
