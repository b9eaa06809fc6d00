"""A private Redis Cluster on loopback for the store tests (issue 10: "Redis Cluster, not a
home-made replication scheme, is how state leaves one machine"): `masters` redis-server
processes with `--cluster-enabled yes` (and `replicas` replicas per master), joined by
`redis-cli --cluster create`, handed out once every node reports `cluster_state:ok`. No
persistence. `missing()` names what is not installed, for a skip reason."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def missing() -> str | None:
    """Why a cluster cannot be started here, or None."""
    for exe in ("redis-server", "redis-cli"):
        if shutil.which(exe) is None:
            return f"{exe} not installed (apt-get install -y redis-server redis-tools)"
    return None


def _field(info: str, name: str) -> str:
    """The value of `name:` in an INFO reply."""
    for line in info.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(name)


def _free_pair() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 >= 65536:
            continue
        try:
            with socket.socket() as b:
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisCluster:
    """`masters` primaries (and `replicas` replicas each) on loopback; `url` is the
    `redis+cluster://` URL of all of them. Stopped (and its folder removed) on exit."""

    def __init__(
        self,
        masters: int = 3,
        replicas: int = 0,
        extra: tuple[str, ...] = (),
        node_timeout_ms: int = 2000,
    ) -> None:
        self.masters, self.replicas, self.extra = masters, replicas, extra
        self.node_timeout_ms = node_timeout_ms
        self.ports: list[int] = []
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.dir = ""

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def cli(self, port: int, *args: str, timeout: float = 20) -> str:
        exe = shutil.which("redis-cli")
        assert exe is not None
        r = subprocess.run([exe, "-p", str(port), *args], capture_output=True, text=True,
                           timeout=timeout)  # fmt: skip
        return r.stdout + r.stderr

    def _spawn(self, port: int) -> None:
        exe = shutil.which("redis-server")
        assert exe is not None
        wd = Path(self.dir) / str(port)
        wd.mkdir(exist_ok=True)
        self.procs[port] = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(self.node_timeout_ms),
             # a replica's full sync starts at once (the default waits 5 s for others)
             "--repl-diskless-sync-delay", "0",
             "--save", "", "--appendonly", "no", "--dir", str(wd), "--loglevel", "warning", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def _wait_ping(self, port: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.procs[port].poll() is not None:
                raise RuntimeError(f"redis-server on {port} exited")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as c:
                    c.sendall(b"PING\r\n")
                    if c.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on {port} did not start")

    def state_ok(self) -> bool:
        """Every live node sees the cluster as ok and knows every other node, every replica
        is in sync with its primary, every node's gossiped view of who replicates whom is
        what each node says of itself (`roles`; it lags the nodes' own for a while after
        the cluster is made, and a replica's failover needs the primaries' votes on it),
        `masters` of them are primaries, and each primary has every replica that follows
        it acknowledge a write (`_acked`)."""
        want = len(self.ports)
        own: dict[int, int | None] = {}
        for p in self.live():
            info = self.cli(p, "cluster", "info")
            if "cluster_state:ok" not in info or f"cluster_known_nodes:{want}" not in info:
                return False
            repl = self.cli(p, "info", "replication")
            if "role:slave" in repl and "master_link_status:up" not in repl:
                return False
            own[p] = int(_field(repl, "master_port")) if "role:slave" in repl else None
        if sum(1 for m in own.values() if m is None) != self.masters:
            return False  # (a restarted primary not yet turned into its successor's replica)
        if any(self._view(p, own) != own for p in own):
            return False
        followers = {p: sum(1 for m in own.values() if m == p) for p, m in own.items() if m is None}
        return all(self._acked(p, n) for p, n in followers.items() if n)

    def _acked(self, port: int, replicas: int, wait_ms: int = 100) -> bool:
        """Whether the primary on `port` has `replicas` replicas acknowledge a write (WAIT
        after a SET and DEL of a key of its own, on one connection) within `wait_ms`. A
        replica whose side of the link is up may not count yet: a primary starts a replica's
        command stream only at the replica's first ACK (sent once a second), so a first WAIT
        just after the cluster is made or a node rejoins took up to 0.8 s."""
        with socket.create_connection(("127.0.0.1", port), timeout=5 + wait_ms / 1000) as c:
            f = c.makefile("rb")
            for i in range(64):  # a key of one of this node's slots (else -MOVED)
                key = f"cg-fixture-ack:{i}"
                c.sendall(f"SET {key} 1\r\n".encode())
                line = f.readline()
                if line.startswith(b"+OK"):
                    break
                if not line.startswith(b"-MOVED"):
                    return False  # (CLUSTERDOWN, LOADING...: not ready yet)
            else:
                return True  # a primary without slots takes no write to wait for
            c.sendall(f"DEL {key}\r\nWAIT {replicas} {wait_ms}\r\n".encode())
            f.readline()
            got = f.readline()
        return got.startswith(b":") and int(got[1:]) >= replicas

    def live(self) -> list[int]:
        return [p for p in self.ports if self.procs[p].poll() is None]

    def _view(self, port: int, live: dict[int, int | None]) -> dict[int, int | None]:
        """The node on `port`'s gossiped view (CLUSTER NODES): each node of `live` -> the
        port of its primary (None: a primary); nodes it flags as failing are left out."""
        out: dict[int, int | None] = {}
        ids: dict[str, int] = {}
        rows = [ln.split() for ln in self.cli(port, "cluster", "nodes").splitlines()]
        for r in rows:
            if len(r) >= 4:
                ids[r[0]] = int(r[1].split("@")[0].rsplit(":", 1)[1])
        for r in rows:
            if len(r) >= 4 and "fail" not in r[2] and ids[r[0]] in live:
                out[ids[r[0]]] = None if "master" in r[2] else ids.get(r[3])
        return out

    def roles(self) -> dict[int, int | None]:
        """Each live node's port -> the port of its primary (None: it is a primary), as the
        first live node sees the cluster (once `state_ok`, every node agrees)."""
        live = self.live()
        return self._view(live[0], dict.fromkeys(live))

    def kill(self, port: int) -> None:
        self.procs[port].kill()
        self.procs[port].wait(10)

    def restart(self, port: int, timeout: float = 30.0) -> None:
        """Start a killed node again (its nodes.conf brings it back as a replica, when a
        replica took its place), until the cluster is whole and in sync."""
        self._spawn(port)
        deadline = time.monotonic() + timeout
        self._wait_ping(port, deadline)
        while not self.state_ok():
            if time.monotonic() >= deadline:
                raise RuntimeError(f"node {port} did not rejoin the cluster")
            time.sleep(0.05)

    def start(self, timeout: float = 30.0) -> RedisCluster:
        self.dir = tempfile.mkdtemp(prefix="cg-rcluster-")
        deadline = time.monotonic() + timeout
        try:
            if not self.ports:  # (a test may choose them first, to name the URL early)
                self.ports = [_free_pair() for _ in range(self.masters * (1 + self.replicas))]
            for p in self.ports:
                self._spawn(p)
            for p in self.ports:
                self._wait_ping(p, deadline)
            out = self.cli(self.ports[0], "--cluster", "create",
                           *(f"127.0.0.1:{p}" for p in self.ports),
                           "--cluster-replicas", str(self.replicas), "--cluster-yes",
                           timeout=timeout)  # fmt: skip
            if "[OK] All 16384 slots covered" not in out:
                raise RuntimeError(f"redis-cli --cluster create failed: {out[-800:]}")
            while not self.state_ok():
                if time.monotonic() >= deadline:
                    raise RuntimeError("the cluster did not reach cluster_state:ok")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if "--appendonly" in self.extra:  # else each redis-server takes seconds to stop
            for port, proc in self.procs.items():
                if proc.poll() is None:
                    self.cli(port, "config", "set", "appendonly", "no")
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
