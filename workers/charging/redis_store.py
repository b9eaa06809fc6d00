"""The scale-out store: Redis (standalone or Cluster), shared by workers on many hosts.

Keys are designed for Redis Cluster: everything one credit-control request changes lives in
one hash slot, tagged with the account id (see `stores.redis_db`). A request reads the
account and session (one MGET), applies `core` in Python, and writes the result with one
compare-and-set script (EVALSHA) that commits only if neither key changed since the read;
on a conflict it re-reads and retries. So the money rules are the same code as SQLite's and
each change is atomic. Connection or timeout errors raise StoreUnavailable after `timeout`,
never hang; redis-py reconnects by itself on the next call once the server is back.

Rf records live in `RedisCdrStore`, on a connection of their own: each batch is acknowledged
only once the server has fsynced its append-only file (WAITAOF on Redis 7.2+; before that the
server must run `appendonly yes` with `appendfsync always`, checked when the store opens).

This module makes the connections and assembles the classes; each concern is a module of
`stores/` (see its docstring for the map).
"""

from __future__ import annotations

from collections import OrderedDict

from .store import StoreUnavailable
from .stores.common import SWEEP_BUDGET
from .stores.redis_accounts import RedisAccounts
from .stores.redis_cc import RedisCreditControl
from .stores.redis_cdr import RedisCdr
from .stores.redis_db import CAS, Conflict, redis_errors
from .stores.redis_db import client as _client  # looked up here at each open (tests fake it)
from .stores.redis_sweep import RedisSweeps
from .stores.redis_sy import RedisSy

__all__ = ["SWEEP_BUDGET", "Conflict", "RedisCdrStore", "RedisStore"]


class RedisStore(RedisCreditControl, RedisSweeps, RedisAccounts, RedisSy):
    """See the module docstring. One instance per process."""

    def __init__(
        self, url: str, *, prefix: str = "cg", timeout: float = 0.5, retries: int = 200
    ) -> None:
        self.r = _client(url, timeout)
        self._errors, busy = redis_errors()
        self._busy = (busy,)
        self.url = url
        self.p = prefix
        self.retries = retries
        self._cas = self.r.register_script(CAS)
        self._sidx = OrderedDict()
        self._rules = []
        self._rules_at = 0.0


class RedisCdrStore(RedisCdr):
    """Rf records on their own Redis connection (see `stores.redis_cdr`)."""

    def __init__(
        self, url: str, *, prefix: str = "cg", timeout: float = 0.5, retention: float = 0.0
    ) -> None:
        self.r = _client(url, timeout)
        import redis

        down, busy = redis_errors()
        self._errors = (*down, busy)  # here a server still loading is down like any other
        self._busy = ()
        self._response_error = redis.ResponseError
        self.url = url
        self.p = prefix
        self.timeout = timeout
        self.retention = int(retention)
        self._mode = ""
        try:
            self._check()
        except StoreUnavailable:
            pass  # not up yet: checked before the first write
