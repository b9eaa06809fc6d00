"""Redis sweeps and notices: releasing sessions that went silent past Tcc (each shard's
`sweep` sorted set indexes its open sessions by expiry; finished ones expire by their own
TTL), and taking the server-initiated work (RAR after a top-up, ASR after a block) that
`redis_accounts` queued. A sharded store sweeps the shards it owns, fenced like its
credit control; an unsharded one sweeps them all."""

from __future__ import annotations

import time
from functools import partial

import msgspec

from .. import core
from ..store import Notice
from .common import SWEEP_BUDGET
from .redis_db import Fenced, RedisTables, acct_dec, enc, sess_dec


class RedisSweeps(RedisTables):
    def _served(self) -> list[int]:
        return sorted(self._owned) if self._sharded else list(range(self.shards))

    def sweep(self, now: float, closed_ttl: float, limit: int = 500) -> int:
        """Release silent sessions, one compare-and-set each, for at most SWEEP_BUDGET
        seconds (it runs on the worker's loop); the rest waits for the next tick."""
        shards = self._served()

        def due() -> list[list[bytes]]:
            pipe = self.r.pipeline(transaction=False)
            for n in shards:
                pipe.zrangebyscore(self._ksweep(n), "-inf", now, start=0, num=limit)
            return list(pipe.execute())

        found = self._call(due)
        deadline = time.monotonic() + SWEEP_BUDGET
        released = 0
        for n, members in zip(shards, found, strict=True):
            for m in members:
                if time.monotonic() >= deadline or released >= limit:
                    return released
                a, _, sid = m.decode().partition("\n")
                try:
                    res = self._retry(partial(self._sweep_one, n, a, sid, now, closed_ttl))
                except Fenced:
                    break  # no longer ours: its new owner sweeps it
                released += res == "released"
        return released

    def _sweep_one(self, n: int, a: str, sid: str, now: float, closed_ttl: float) -> str:
        ka, ks = self._ka(a), self._ksn(n, sid)
        raw_a, raw_s = self.r.mget([ka, ks])
        member = f"{a}\n{sid}"
        if raw_s is None:
            self.r.zrem(self._ksweep(n), member)
            return "gone"
        s = sess_dec.decode(raw_s)
        if s.expires >= now:  # refreshed since it was indexed
            self.r.zadd(self._ksweep(n), {member: s.expires})
            return "kept"
        if s.state != core.OPEN:  # finished: it expires by its TTL; just drop it from the index
            self.r.zrem(self._ksweep(n), member)
            return "finished"
        acct = acct_dec.decode(raw_a) if raw_a else None
        core.release_session(acct, s, now, closed_ttl)
        ttl_ms = max(1, int(closed_ttl * 1000))
        sc = self._script(n)
        sc.compare(ka, raw_a)
        sc.compare(ks, raw_s)
        if acct is not None:
            sc.set(ka, enc.encode(acct))
        sc.set(ks, enc.encode(s), ttl_ms)
        sc.cmd("srem", self._kss(a), sid)
        sc.cmd("zrem", self._ksweep(n), member)
        ksidx = self._ksidx(sid)
        self._run(sc, lambda pipe: pipe.set(ksidx, a, px=ttl_ms))
        return "released"

    def take_notices(self, limit: int = 100) -> list[Notice]:
        """The queued RAR/ASR notices, from the store-wide list `cg:notices` (one LPOP: a
        single-key command, so it works on a cluster); any worker may take them."""
        raw = self._call(lambda: self.r.lpop(f"{self.p}:notices", limit))
        return [msgspec.msgpack.decode(x, type=Notice) for x in raw or []]
