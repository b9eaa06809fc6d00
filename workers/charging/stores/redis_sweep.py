"""Redis sweeps and notices: releasing sessions that went silent past Tcc (the `sweep`
sorted set indexes open sessions by expiry; finished ones expire by their own TTL), and
taking the server-initiated work (RAR after a top-up, ASR after a block) that
`redis_accounts` queued."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import msgspec

from .. import core
from ..store import Notice
from .common import SWEEP_BUDGET
from .redis_db import RedisTables, acct_dec, sess_dec


class RedisSweeps(RedisTables):
    def sweep(self, now: float, closed_ttl: float, limit: int = 500) -> int:
        """Release silent sessions, one compare-and-set each, for at most SWEEP_BUDGET
        seconds (it runs on the worker's loop); the rest waits for the next tick."""
        members = self._call(
            lambda: self.r.zrangebyscore(f"{self.p}:sweep", "-inf", now, start=0, num=limit)
        )
        deadline = time.monotonic() + SWEEP_BUDGET
        released = 0
        for m in members:
            if time.monotonic() >= deadline:
                break
            a, _, sid = m.decode().partition("\n")
            res = self._retry(partial(self._sweep_one, a, sid, now, closed_ttl))
            released += res == "released"
        return released

    def _sweep_one(self, a: str, sid: str, now: float, closed_ttl: float) -> str:
        raw_a, raw_s = self.r.mget([self._ka(a), self._ks(a, sid)])
        member = f"{a}\n{sid}"
        if raw_s is None:
            self.r.zrem(f"{self.p}:sweep", member)
            return "gone"
        s = sess_dec.decode(raw_s)
        if s.expires >= now:  # refreshed since it was indexed
            self.r.zadd(f"{self.p}:sweep", {member: s.expires})
            return "kept"
        if s.state != core.OPEN:  # finished: it expires by its TTL; just drop it from the index
            self.r.zrem(f"{self.p}:sweep", member)
            return "finished"
        acct = acct_dec.decode(raw_a) if raw_a else None
        core.release_session(acct, s, now, closed_ttl)
        ttl_ms = max(1, int(closed_ttl * 1000))

        def unindex(pipe: Any) -> None:
            pipe.zrem(f"{self.p}:sweep", member)
            pipe.set(self._ksidx(sid), a, px=ttl_ms)

        self._commit(a, sid, raw_a, acct, raw_s, s, (), "0", unindex, ttl_ms)
        return "released"

    def take_notices(self, limit: int = 100) -> list[Notice]:
        raw = self._call(lambda: self.r.lpop(f"{self.p}:notices", limit))
        return [msgspec.msgpack.decode(x, type=Notice) for x in raw or []]
