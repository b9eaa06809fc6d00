"""Rf records on their own Redis connection (`cdr_url`, default the store's `url`), one
hash per session (`cg:cdr:{SID}`, field `number:sub`), written with HSETNX so each key is
stored once. A batch is acknowledged only once it is in the fsynced append-only file:
WAITAOF 1 0 on Redis 7.2+, else the server must run appendfsync always (checked at open,
or at the first write when the server was not up yet), and with `replicas` once that many
replicas hold it (WAIT). With `retention` each session's
hash expires that long after its last record.

On a Redis Cluster (`redis+cluster://`) the session hashes spread over the nodes by their
`{SID}` tag; every primary's settings are checked, and WAITAOF (and WAIT) go to each primary
the batch wrote, in the same pipeline after that node's writes, so a batch counts only once
every node that took part of it has it on disk. A record redirected by MOVED/ASK (its slot
migrating to another primary) is sent again to the new node with the same WAIT and WAITAOF
after it (`RedisConn._send`): its batch counts only once that node holds it too."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import msgspec

from ..store import Cdr, NotDurable, StoreUnavailable
from .common import SWEEP_BUDGET
from .redis_conn import Batch, RedisConn, is_cluster

_cdr_dec = msgspec.json.Decoder(Cdr)


class RedisCdr(RedisConn):
    timeout: float
    retention: int
    _mode: str  # "waitaof" or "always" once checked, "" before

    def _check(self) -> None:
        """How a commit is made durable on this server, or NotDurable."""
        if self._mode:
            return
        if is_cluster(self.r):
            c = self.r
            nodes = self._call(lambda: [c.get_redis_connection(n) for n in c.get_primaries()])
            modes = {self._check_node(node) for node in nodes}
            if len(modes) > 1:  # WAITAOF to a node before 7.2 would fail every batch
                raise NotDurable(
                    f"redis {self.url}: the cluster mixes Redis before and after 7.2; run one"
                    " version on every node"
                )
            self._mode = modes.pop()
        else:
            self._mode = self._check_node(self.r)

    def _check_node(self, r: Any) -> str:
        """One server's durable mode ("waitaof" or "always"), or NotDurable."""
        from redis.exceptions import ResponseError  # (a CONFIG GET refused: a managed Redis)

        info = self._call(lambda: r.info("server"))
        version = tuple(int(x) for x in str(info["redis_version"]).split(".")[:2])
        try:
            conf = self._call(lambda: r.config_get("append*"))
        except ResponseError as exc:
            raise NotDurable(
                f"redis {self.url}: cannot read the append-only settings ({exc}); the CDR store"
                " needs appendonly yes (and appendfsync always before Redis 7.2)"
            ) from exc
        if conf.get("appendonly") != "yes":
            raise NotDurable(
                f"redis {self.url}: appendonly is off, so an acknowledged CDR would not survive"
                " a restart or power cut; run the CDR Redis with appendonly yes"
            )
        if version >= (7, 2):
            return "waitaof"
        if conf.get("appendfsync") == "always":
            return "always"
        raise NotDurable(
            f"redis {self.url}: Redis {'.'.join(map(str, version))} has no WAITAOF and"
            f" appendfsync is {conf.get('appendfsync')!r}; set appendfsync always"
        )

    def _aof(self) -> tuple[Any, ...]:
        """WAITAOF for this server's own fsync (the replicas are WAIT's), within `timeout`."""
        return ("WAITAOF", 1, 0, max(1, int(self.timeout * 800)))

    def _acks(self) -> list[tuple[Any, ...]]:
        return [*super()._acks(), *([self._aof()] if self._mode == "waitaof" else [])]

    def _check_ack(self, cmd: tuple[Any, ...], got: Any) -> None:
        if cmd[0] != "WAITAOF":
            return super()._check_ack(cmd, got)
        self._check_aof(got)

    def _check_aof(self, got: Any) -> None:
        """StoreUnavailable unless a WAITAOF reply says the local append-only file has it."""
        if isinstance(got, Exception) or int(got[0]) < 1:
            raise StoreUnavailable(f"redis {self.url}: the append-only file was not fsynced")

    def _key(self, session_id: str) -> str:
        return f"{self.p}:cdr:{{{session_id}}}"

    def put_cdrs(self, cdrs: list[Cdr]) -> list[bool]:
        try:
            self._check()
        except NotDurable as exc:  # found at the first write: refuse the records (3004)
            raise StoreUnavailable(str(exc)) from exc
        if not cdrs:
            return []
        batch = Batch()
        step = 2 if self.retention else 1
        for c in cdrs:
            key = self._key(c.session_id)
            batch.cmd("HSETNX", key, f"{c.record_number}:{c.sub_session}", msgspec.json.encode(c))
            if self.retention:
                batch.cmd("EXPIRE", key, self.retention)

        def send() -> list[Any]:
            # each node written ends with WAIT (replicas: a failover keeps every CDR) and
            # WAITAOF (`_acks`); redirected records are sent again with them (`_send`)
            res = self._send(batch)
            for x in res:
                if isinstance(x, Exception):  # an error of any node fails the batch
                    raise x
            return res

        res = self._call(send)
        return [bool(res[i * step]) for i in range(len(cdrs))]

    def put_cdr(self, cdr: Cdr) -> bool:
        return self.put_cdrs([cdr])[0]

    def iter_cdrs(self, since: float | None = None) -> Iterator[Cdr]:
        r = self.r
        out: list[Cdr] = []
        keys = self._call(lambda: list(r.scan_iter(match=f"{self.p}:cdr:*", count=1000)))
        for key in keys:
            for raw in self._call(partial(r.hvals, key)):
                cdr = _cdr_dec.decode(raw)
                if since is None or cdr.received >= since:
                    out.append(cdr)
        out.sort(key=lambda c: c.received)
        yield from out

    def purge(self, before: float, budget: float = SWEEP_BUDGET) -> int:
        """Nothing to do: Redis expires each session's records by itself (`retention`)."""
        return 0
