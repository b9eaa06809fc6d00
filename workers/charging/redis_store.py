"""The scale-out store: Redis (one server, Sentinel, or a Redis Cluster named by
`redis+cluster://HOST:PORT[,HOST:PORT...]`), shared by workers on many hosts, and the engine
of sharded charging state (issue 10).

Keys are tagged by shard, `cg:{sN}:...`, so everything of one shard is one hash slot (see
`stores.redis_db` for the layout). A request's rows are applied by `core` in Python and
written with one compare-and-set script that commits only if the rows it was decided on are
unchanged and the writer still holds the shard; the money rules are the same code as
SQLite's and each change is atomic. Connection or timeout errors raise StoreUnavailable after
`timeout`, never hang; redis-py reconnects by itself on the next call once the server is back.
The Gy store never waits for the append-only file (no WAIT/WAITAOF per request): Redis's
own `appendfsync` decides what a power cut may lose.

The sharding interface (what the sharded wrapper and the runtime call):
- `shards` (int): the store's shard count, fixed when the store is made (`cg:layout`); a
  store opened with another `shards=` raises LayoutError.
- `claim(shard) -> int`: INCR the shard's fencing token `cg:{sN}:gen`; this process writes the
  shard at that gen from now on, and every script it sends for the shard checks it: a newer
  claim (another owner) fences this one off, and its requests get `NotOwner(shard)`, nothing
  applied. The owner caches the shard's hot rows (accounts, sessions, identities).
- `release(shard)`: forget the shard (its cache too); `assign(shards)` claims the new ones and
  releases the others, idempotently. `owned() -> frozenset[int]`.
- Before the first claim the store is unsharded-compatible: it serves every shard, with no
  gen check (tests, CLIs, one-process tools, several unsharded processes side by side).
- `credit_control_many(ops, wait)`: one element per op, its Outcome or exception. An op's
  shard is `op.shard` when it has one >= 0; else shard_of(first Subscription-Id-Data) for
  CCR-I/event, else the Session-Id index. `NotOwner(n)` when shard n is not owned (sharded),
  `ShardMoved(m)` when the subscription is an alias of shard m (`cg:alias:T:D`) or the
  session lives in shard m (`cg:sidx:SID`). Unsharded, those are followed instead.
- Admin writes (import, top-up, block, Sy counts) check no gen: the owner's script sees them
  as a changed row and plans again on a fresh read.
- A store written with the account-tagged layout (before issue 10) is refused with
  LayoutError at open; `migrate_redis_layout(url, prefix=...)` rewrites it once, with the
  workers stopped.

Rf records live in `RedisCdrStore`, on a connection of their own: each batch is acknowledged
only once the server has fsynced its append-only file (WAITAOF on Redis 7.2+; before that the
server must run `appendonly yes` with `appendfsync always`, checked when the store opens).

This module makes the connections and assembles the classes; each concern is a module of
`stores/` (see its docstring for the map).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable

from .store import StoreUnavailable
from .stores.common import SWEEP_BUDGET
from .stores.redis_accounts import RedisAccounts
from .stores.redis_cc import RedisCreditControl
from .stores.redis_cdr import RedisCdr
from .stores.redis_db import Conflict, LayoutError, redis_errors
from .stores.redis_db import client as _client  # looked up here at each open (tests fake it)
from .stores.redis_sweep import RedisSweeps
from .stores.redis_sy import RedisSy

__all__ = [
    "SWEEP_BUDGET",
    "Conflict",
    "LayoutError",
    "RedisCdrStore",
    "RedisStore",
    "migrate_redis_layout",
]


class RedisStore(RedisCreditControl, RedisSweeps, RedisAccounts, RedisSy):
    """See the module docstring. One instance per process."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "cg",
        timeout: float = 0.5,
        retries: int = 200,
        shards: int | None = None,
        check_layout: bool = True,
        replicas: int = 0,
        replica_wait: float = 0.1,
    ) -> None:
        """`shards`: the count this deployment expects (None: the store's, or
        sharding.DEFAULT_SHARDS for a new one). The layout is checked here when Redis is up,
        else before the first command."""
        self._init_shards(shards)
        self._wanted: frozenset[int] | None = None  # an Assign not yet claimed (Redis away)
        self._claim_retry_at = 0.0
        self.r = _client(url, timeout)
        self._errors, busy = redis_errors()
        self._busy = (busy,)
        import redis

        self._noscript = redis.exceptions.NoScriptError
        self.url = url
        self.p = prefix
        self.retries = retries
        self.replicas = replicas
        self.replica_wait_ms = max(1, int(replica_wait * 1000))
        self._sidx = OrderedDict()
        self._rules = []
        self._rules_at = 0.0
        if not check_layout:  # `migrate_redis_layout`: it writes the layout itself
            return
        try:
            self._call(lambda: None)
        except StoreUnavailable:
            pass  # not up yet: checked before the first command

    def claim(self, shard: int) -> int:
        """Take shard `shard` over: its new gen (every later script of it checks this gen)."""
        return self._claim_many([shard])[shard]

    def _claim_many(self, shards: Iterable[int]) -> dict[int, int]:
        todo = sorted(set(shards))
        for n in todo:
            if not 0 <= n < self.shards:
                raise ValueError(f"shard {n} out of range 0..{self.shards - 1}")

        def incr() -> list[int]:
            pipe = self.r.pipeline(transaction=False)
            for n in todo:
                pipe.incr(self._kgen(n))
            return [int(g) for g in pipe.execute()]

        gens = dict(zip(todo, self._call(incr), strict=True))
        self._sharded = True
        for n, g in gens.items():
            self._forget_shard(n)  # others wrote it before this claim
            self._owned[n] = g
        return gens

    def release(self, shard: int) -> None:
        """Stop serving `shard` (its new owner's claim fences any script still in flight)."""
        self._sharded = True
        self._lose(shard)

    def assign(self, shards: Iterable[int]) -> None:
        """Own exactly `shards`: claim the ones not held, release the others (idempotent)."""
        want = set(shards)
        for n in set(self._owned) - want:
            self.release(n)
        new = want - set(self._owned)
        if new:
            self._claim_many(new)
        self._sharded = True

    def owned(self) -> frozenset[int]:
        return frozenset(self._owned)

    # The names the charging applications call (the same as the sharded SQLite store's).

    @property
    def shard_count(self) -> int:
        return self.shards

    def assign_shards(self, shards: Iterable[int]) -> None:
        """The runtime's Assign (via Gy/Sy): own exactly `shards`. When Redis cannot be
        reached the claim is kept and retried before later requests (at most once a
        second), so the shards are taken as soon as Redis is back instead of being refused
        (NotOwner) until the next Assign."""
        want = frozenset(s for s in shards if 0 <= s < self.shards)
        self._wanted = want
        self._claim_wanted()

    def _claim_wanted(self) -> None:
        want = self._wanted
        if want is None:
            return
        self._claim_retry_at = time.monotonic() + 1.0
        try:
            self.assign(want)
        except StoreUnavailable:
            self._sharded = True  # serve nothing not yet claimed
            for n in set(self._owned) - want:
                self.release(n)
            return
        self._wanted = None

    def _before_batch(self) -> None:
        """Called before each batch: a claim that failed while Redis was away is retried."""
        if self._wanted is not None and time.monotonic() >= self._claim_retry_at:
            self._claim_wanted()

    def owns(self, shard: int) -> bool:
        """Whether this process serves `shard` now (unsharded: every shard)."""
        return not self._sharded or shard in self._owned


def migrate_redis_layout(url: str, *, prefix: str = "cg", shards: int | None = None) -> int:
    """Rewrite a store of the account-tagged layout (before issue 10) into the shard-tagged
    one, with every worker stopped; the number of accounts moved (0: nothing to do)."""
    store = RedisStore(url, prefix=prefix, timeout=30.0, shards=shards, check_layout=False)
    try:
        return store.migrate_layout()
    finally:
        store.close()


class RedisCdrStore(RedisCdr):
    """Rf records on their own Redis connection (see `stores.redis_cdr`)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "cg",
        timeout: float = 0.5,
        retention: float = 0.0,
        replicas: int = 0,
        replica_wait: float = 0.1,
    ) -> None:
        self.r = _client(url, timeout)
        self.replicas = replicas
        self.replica_wait_ms = max(1, int(replica_wait * 1000))
        import redis

        down, busy = redis_errors()
        self._errors = (*down, busy)  # here a server still loading is down like any other
        self._busy = ()
        self._noscript = redis.exceptions.NoScriptError
        self.url = url
        self.p = prefix
        self.timeout = timeout
        self.retention = int(retention)
        self._mode = ""
        try:
            self._check()
        except StoreUnavailable:
            pass  # not up yet: checked before the first write
