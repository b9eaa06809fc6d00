"""Redis plumbing of the charging store: the sharded key layout, the one compare-and-set
script through which every change is written, and the owner's cache of its shards' hot rows.
The connection (one server, Sentinel or Redis Cluster) is `redis_conn`'s; its names are
re-exported here.

Key layout (issue 10): everything of shard N carries the hash tag `{sN}`, so one shard is one
hash slot (Redis Cluster) and one script can change any of it atomically:

| key | what |
|---|---|
| `cg:{sN}:gen` | the shard's fencing token: claim = INCR |
| `cg:{sN}:a:ACCT` | an account (msgpack) of shard N = shard_of(ACCT) |
| `cg:{sN}:s:SID` | a session (or event record), in its account's shard |
| `cg:{sN}:l` | the shard's ledger (a list; history, never rewritten) |
| `cg:{sN}:accts` | the shard's account ids |
| `cg:{sN}:ss:ACCT` / `:subs:ACCT` / `:sy:ACCT` | an account's open sessions / identities / Sy sessions |
| `cg:{sN}:sub:TYPE:DATA` | identity -> account id, in the account's shard |
| `cg:{sN}:sweep` | the shard's open sessions by expiry (member `ACCT\\nSID`) |
| `cg:alias:TYPE:DATA` | identity -> account shard, where shard_of(DATA) is another shard |
| `cg:sidx:SID` | Session-Id -> account id (fallback routing of CCR-U/T) |
| `cg:sy:SID` | a Sy subscription by its Sy Session-Id |
| `cg:layout`, `cg:rules`, `cg:seeded`, `cg:notices` | store-wide |

Every script (`CAS`: credit control, sweeps, admin writes) names keys of one shard only, so
of one hash slot: on a Redis Cluster it runs on that slot's node, and a script whose keys
span slots is refused (CROSSSLOT) before anything is applied. The untagged keys (alias,
sidx, sy, layout, rules, seeded, notices) are only ever read or written by single-key
commands, alone or in a non-transactional pipeline (which a cluster client splits by node):
never inside a script or a MULTI. Alias, sidx and sy are looked up by what a request carries
(an identity, a Session-Id) before its shard is known, so no shard's tag would place them.

The old layout (keys tagged by account, `cg:{ACCT}:a`, the set `cg:accounts`) is detected at
open and refused with `LayoutError`, naming `redis_store.migrate_redis_layout`. No key was
renamed for Redis Cluster, so the layout version stays 2.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import msgspec

from chargegw.sharding import DEFAULT_SHARDS, MAX_SHARDS, shard_of

from ..core import Account, LedgerEntry, Session
from ..store import (
    ProvisionRule,
    StoreBusy,
    StoreError,
    StoreUnavailable,
    SySubscription,
    turn_deadline,
)
from .common import CachedRules
from .redis_conn import CLUSTER_SCHEME as CLUSTER_SCHEME
from .redis_conn import SENTINEL_SCHEME as SENTINEL_SCHEME
from .redis_conn import Batch as Batch
from .redis_conn import RedisConn as RedisConn
from .redis_conn import client as client
from .redis_conn import is_cluster as is_cluster
from .redis_conn import parse_cluster_url as parse_cluster_url
from .redis_conn import parse_sentinel_url as parse_sentinel_url
from .redis_conn import redis_errors as redis_errors

T = TypeVar("T")

LAYOUT_VERSION = 2

# The one write script. KEYS[1] is the shard's fencing token, KEYS[2..c+1] the compared keys.
# ARGV: the gen this writer claimed ('' = unsharded, no check); c; the c values the writer
# based its decision on ('' = absent); then write operations (name, key index, arguments).
# The whole list is checked before anything is read or written (every operation known, with
# its arguments and a key index that names a key; the count adds up), so a damaged call is
# refused, never half applied. The token and compared keys are read with one MGET (each
# redis.call costs the server more than the command itself). Returns {1} applied, {-1}
# fenced (nothing applied), or {0, current values...} when a compared key changed (nothing
# applied; the caller now holds a fresh read and retries).
CAS = """
local A, n = ARGV, #ARGV
local c = tonumber(A[2])
if not c or c < 0 or c % 1 ~= 0 or n < c + 2 or #KEYS < c + 1 then
  return redis.error_reply('chargegw CAS: bad arguments')
end
local W = {set = 3, setpx = 4, setnx = 3, del = 2, sadd = 3, srem = 3, rpush = 3, zadd = 4,
           zrem = 3}
local i = c + 3
while i <= n do
  local w = W[A[i]]
  if not w then return redis.error_reply('chargegw CAS: unknown operation ' .. tostring(A[i])) end
  local k = tonumber(A[i + 1])
  if not k or KEYS[k] == nil then return redis.error_reply('chargegw CAS: bad key index') end
  i = i + w
end
if i ~= n + 1 then return redis.error_reply('chargegw CAS: bad argument count') end
local got = redis.call('MGET', unpack(KEYS, 1, c + 1))
if A[1] ~= '' and got[1] ~= A[1] then return {-1} end
local cur, same = {0}, true
for j = 1, c do
  local v = got[j + 1] or ''
  cur[j + 1] = v
  if v ~= A[j + 2] then same = false end
end
if not same then return cur end
i = c + 3
while i <= n do
  local o, k = A[i], KEYS[tonumber(A[i + 1])]
  if o == 'set' then redis.call('SET', k, A[i + 2]); i = i + 3
  elseif o == 'setpx' then redis.call('SET', k, A[i + 2], 'PX', A[i + 3]); i = i + 4
  elseif o == 'setnx' then redis.call('SET', k, A[i + 2], 'NX'); i = i + 3
  elseif o == 'del' then redis.call('DEL', k); i = i + 2
  elseif o == 'sadd' then redis.call('SADD', k, A[i + 2]); i = i + 3
  elseif o == 'srem' then redis.call('SREM', k, A[i + 2]); i = i + 3
  elseif o == 'rpush' then redis.call('RPUSH', k, A[i + 2]); i = i + 3
  elseif o == 'zadd' then redis.call('ZADD', k, A[i + 2], A[i + 3]); i = i + 4
  else redis.call('ZREM', k, A[i + 2]); i = i + 3 end
end
return {1}
"""
CAS_SHA = hashlib.sha1(CAS.encode()).hexdigest()
APPLIED, CONFLICT, FENCED = 1, 0, -1

enc = msgspec.msgpack.Encoder()
acct_dec = msgspec.msgpack.Decoder(Account)
sess_dec = msgspec.msgpack.Decoder(Session)
ledger_dec = msgspec.msgpack.Decoder(LedgerEntry)
rules_dec = msgspec.msgpack.Decoder(list[ProvisionRule])
sy_dec = msgspec.msgpack.Decoder(SySubscription)

SIDX_MAX = 100_000  # Session-Id -> account entries remembered per process
CACHE_MAX = 200_000  # cached rows (accounts, sessions, identities) per process


class Conflict(Exception):
    """A compare-and-set found its keys changed since they were read: read again, retry."""


class LayoutError(StoreError):
    """The Redis store holds another key layout or shard count than this process expects."""


class Fenced(Exception):
    """A script of shard `shard` met a newer claim: this writer no longer owns it."""

    def __init__(self, shard: int) -> None:
        super().__init__(f"shard {shard} fenced")
        self.shard = shard


class Script:
    """One call of the CAS script being built: what it compares, what it writes, and the
    values the written string keys will hold (for the owner's cache)."""

    __slots__ = ("keys", "index", "ncmp", "vals", "ops", "new", "shard", "gen")

    def __init__(self, shard: int, gen_key: str, gen: int | None) -> None:
        self.shard = shard
        self.gen = gen
        self.keys: list[str] = [gen_key]
        self.index: dict[str, int] = {}
        self.vals: list[bytes] = []
        self.ops: list[bytes | str] = []
        self.new: dict[str, bytes] = {}  # string key -> value after the script (b"" = deleted)

    def compare(self, key: str, value: bytes | None) -> None:
        """Apply only if `key` still holds `value` (None/b"": absent). Before any write."""
        if key in self.index:
            return
        assert not self.ops
        self.keys.append(key)
        self.index[key] = len(self.keys)
        self.vals.append(value or b"")

    def _k(self, key: str) -> str:
        i = self.index.get(key)
        if i is None:
            self.keys.append(key)
            i = self.index[key] = len(self.keys)
        return str(i)

    def set(self, key: str, value: bytes, px: int = 0) -> None:
        if px:
            self.ops += ["setpx", self._k(key), value, str(px)]
        else:
            self.ops += ["set", self._k(key), value]
        self.new[key] = value

    def setnx(self, key: str, value: bytes | str) -> None:
        self.ops += ["setnx", self._k(key), value]

    def delete(self, key: str) -> None:
        self.ops += ["del", self._k(key)]
        self.new[key] = b""

    def cmd(self, name: str, key: str, *args: bytes | str) -> None:
        """sadd, srem, rpush, zadd (score, member), zrem."""
        self.ops += [name, self._k(key), *args]

    def queue(self, pipe: Any) -> None:
        """EVALSHA on `pipe` (a `Batch`; the script is loaded at open and again after a
        NOSCRIPT). On a cluster the batch sends it to its first key's node (the shard's
        slot's primary), which refuses keys of another slot (CROSSSLOT)."""
        gen = b"" if self.gen is None else b"%d" % self.gen
        keys = self.keys
        pipe.execute_command(
            "EVALSHA", CAS_SHA, len(keys), *keys, gen, len(self.vals), *self.vals, *self.ops
        )

    @property
    def compared(self) -> list[str]:
        return self.keys[1 : 1 + len(self.vals)]


class RedisTables(CachedRules, RedisConn):
    """The charging store's keys and shard state, the owner's row cache, the script runner,
    and account writes."""

    retries: int
    shards: int
    _sidx: OrderedDict[str, str]  # Session-Id -> account, bounded cache
    _owned: dict[int, int]  # shard -> the gen this process claimed it at
    _sharded: bool  # a shard was claimed: serve owned shards only (else all, no fencing)
    _cache: dict[str, bytes]  # hot rows as last written or read (b"" = absent)
    _layout_ok: bool
    _noscript: type[Exception]
    _want_shards: int | None

    # -- layout ---------------------------------------------------------------------------

    def _ready(self) -> None:
        if not self._layout_ok:
            self._check_layout()

    def _check_layout(self) -> None:
        """Adopt the store's shard count, or record ours in a new store; refuse the old
        account-tagged layout and a shard count other than the configured one."""
        key = f"{self.p}:layout"
        raw = self.r.get(key)
        if raw is None:
            if self.r.exists(f"{self.p}:accounts", f"{self.p}:sweep"):
                raise LayoutError(
                    f"redis {self.url} prefix {self.p!r} holds the account-tagged layout of"
                    " chargegw before issue 10; stop every worker, run"
                    " chargegw.workers.charging.redis_store.migrate_redis_layout(url,"
                    " prefix=...) once, then start them again"
                )
            want = self._want_shards or DEFAULT_SHARDS
            self.r.set(key, f"{LAYOUT_VERSION} {want}", nx=True)
            raw = self.r.get(key)
        version, _, count = (raw or b"").decode().partition(" ")
        if version != str(LAYOUT_VERSION) or not count.isdigit():
            raise LayoutError(f"redis {self.url} prefix {self.p!r}: unknown layout {raw!r}")
        n = int(count)
        if self._want_shards is not None and self._want_shards != n:
            raise LayoutError(
                f"redis {self.url} prefix {self.p!r} has {n} shards, the config says"
                f" {self._want_shards}: the shard count of a store is fixed when it is made"
            )
        self.shards = n
        self.r.script_load(CAS)
        self._layout_ok = True

    def _init_shards(self, shards: int | None) -> None:
        if shards is not None and not 0 < shards <= MAX_SHARDS:
            raise LayoutError(f"shards must be 1..{MAX_SHARDS}, not {shards}")
        self._want_shards = shards
        self.shards = shards or DEFAULT_SHARDS
        self._layout_ok = False
        self._owned = {}
        self._sharded = False
        self._cache = {}

    # -- keys -----------------------------------------------------------------------------

    def _sh(self, a: str) -> int:
        """An account's shard."""
        return shard_of(a, self.shards)

    def _t(self, n: int) -> str:
        return f"{self.p}:{{s{n}}}"

    def _kgen(self, n: int) -> str:
        return f"{self.p}:{{s{n}}}:gen"

    def _ka(self, a: str) -> str:
        return f"{self.p}:{{s{self._sh(a)}}}:a:{a}"

    def _ks(self, a: str, sid: str) -> str:
        """A session of account `a` (in the account's shard)."""
        return f"{self.p}:{{s{self._sh(a)}}}:s:{sid}"

    def _ksn(self, n: int, sid: str) -> str:
        return f"{self.p}:{{s{n}}}:s:{sid}"

    def _kl(self, n: int) -> str:
        return f"{self.p}:{{s{n}}}:l"

    def _kaccts(self, n: int) -> str:
        return f"{self.p}:{{s{n}}}:accts"

    def _ksweep(self, n: int) -> str:
        return f"{self.p}:{{s{n}}}:sweep"

    def _kss(self, a: str) -> str:
        return f"{self.p}:{{s{self._sh(a)}}}:ss:{a}"

    def _ksubs(self, a: str) -> str:
        return f"{self.p}:{{s{self._sh(a)}}}:subs:{a}"

    def _ksub(self, n: int, t: int, d: str) -> str:
        """Identity -> account id, in shard `n` (its account's)."""
        return f"{self.p}:{{s{n}}}:sub:{t}:{d}"

    def _kalias(self, t: int, d: str) -> str:
        """Identity -> its account's shard. Untagged (looked up before the shard is known):
        single-key GET/SET/DEL only, never in a script."""
        return f"{self.p}:alias:{t}:{d}"

    def _ksidx(self, sid: str) -> str:
        """Session-Id -> account. Untagged (it finds the shard): single-key GET/SET only,
        queued after a script in the same pipeline, never in it."""
        return f"{self.p}:sidx:{sid}"

    # -- shards and the cache -------------------------------------------------------------

    def _serves(self, n: int) -> bool:
        """Whether shard `n` is served here. A shard assigned to this process whose claim
        waits for Redis to come back (`RedisStore._wanted`) raises StoreUnavailable: its
        requests get 3004 at once, where NotOwner would have the gateway wait out its
        deadline for an owner that is already this process."""
        if not self._sharded or n in self._owned:
            return True
        wanted = getattr(self, "_wanted", None)
        if wanted is not None and n in wanted:
            raise StoreUnavailable(f"redis {self.url}: shard {n} not claimed yet (unreachable)")
        return False

    def _gen(self, n: int) -> int | None:
        """The gen a script of shard `n` checks (None: unsharded, unchecked)."""
        return self._owned.get(n) if self._sharded else None

    def _forget_shard(self, n: int) -> None:
        """Drop shard `n`'s cached rows (lost, released, or just claimed: others wrote)."""
        tag = self._t(n) + ":"
        for k in [k for k in self._cache if k.startswith(tag)]:
            del self._cache[k]

    def _cache_put(self, items: Iterable[tuple[str, bytes]]) -> None:
        c = self._cache
        for k, v in items:
            c[k] = v
        if len(c) > CACHE_MAX:  # drop the oldest tenth (insertion order)
            for k in list(c)[: CACHE_MAX // 10]:
                del c[k]

    def _script(self, n: int, gen: bool = True) -> Script:
        return Script(n, self._kgen(n), self._gen(n) if gen else None)

    def _settle(self, sc: Script, res: Any) -> int:
        """Book a script's reply: the cache learns the values written (applied) or the fresh
        ones (conflict); a fenced shard is no longer owned. The reply's code; a NOSCRIPT
        (a server that lost the script: `_execute` loaded it again) counts as a conflict
        (nothing was applied)."""
        if isinstance(res, Exception):
            if isinstance(res, self._noscript):
                return CONFLICT
            raise res
        code = int(res[0])
        if code == APPLIED:
            self._cache_put(sc.new.items())
        elif code == CONFLICT:  # what is there now; an absence is read again when needed
            for k, v in zip(sc.compared, res[1:], strict=True):
                if v:
                    self._cache_put([(k, v)])
                else:
                    self._cache.pop(k, None)
        else:
            self._lose(sc.shard)
        return code

    def _execute(self, batch: Batch) -> list[Any]:
        """The batch's replies, errors as values (`RedisConn._send`: one round trip, one per
        node on a cluster, in parallel). A server that lost the script (restart, SCRIPT
        FLUSH) replies NOSCRIPT to each of its scripts (nothing applied: planned again by
        the caller) and gets it loaded again, once.

        With `replicas` each primary's share ends with WAIT on the same connection: its
        writes count only once that many replicas hold them, so a failover to one of them
        loses no answered change. Fewer in time, or a node that cannot be reached:
        StoreUnavailable for the whole batch (3004; what the primary applied is found by
        the client's retry, which is idempotent). A write redirected by MOVED/ASK (a slot
        migrating) is sent again with a WAIT on its new node (`_send`)."""
        res = self._send(batch)
        noscript = self._noscript
        for x in res:
            if isinstance(x, noscript):
                self.r.script_load(CAS)
                break
        return res

    def _lose(self, n: int) -> None:
        if self._owned.pop(n, None) is not None:
            self._forget_shard(n)

    def _run(self, sc: Script, extra: Callable[[Any], None] | None = None) -> None:
        """One script alone in a pipeline (with `extra` commands after it): Conflict when a
        compared key changed, Fenced when the shard was claimed by someone newer."""
        batch = Batch()
        sc.queue(batch)
        if extra is not None:
            extra(batch)
        code = self._settle(sc, self._execute(batch)[0])
        if code == CONFLICT:
            raise Conflict
        if code == FENCED:
            raise Fenced(sc.shard)

    # -- writes ---------------------------------------------------------------------------

    def _retry(self, fn: Callable[[], T]) -> T:
        """Run an optimistic read-apply-CAS step until it commits without a conflict.

        The sleeps between tries are bounded by `turn_deadline` (on an event loop, the turn's
        budget), and inside `nowait()` a conflict raises StoreBusy after a few quick tries."""
        delay = 0.0001
        deadline = 0.0
        for attempt in range(self.retries):
            try:
                return self._call(fn)
            except Conflict:
                if self._nowait and attempt >= 3:
                    raise StoreBusy(f"redis {self.url}: contention") from None
                if not deadline:
                    deadline = turn_deadline(self.retries * 0.005)
                if time.monotonic() >= deadline:
                    break
                if attempt:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.005)
        raise StoreUnavailable(f"redis {self.url}: too much contention")

    def _remember(self, sid: str, account: str) -> None:
        self._sidx[sid] = account
        if len(self._sidx) > SIDX_MAX:
            self._sidx.popitem(last=False)

    def rules(self) -> list[ProvisionRule]:
        raw = self._call(lambda: self.r.get(f"{self.p}:rules"))
        return rules_dec.decode(raw) if raw else []

    def _get_account(self, a: str) -> Account | None:
        raw = self._call(lambda: self.r.get(self._ka(a)))
        return acct_dec.decode(raw) if raw else None

    def _update_account(
        self,
        a: str,
        fn: Callable[[Account | None], tuple[Account, list[LedgerEntry]]],
        more: Callable[[Script], None] | None = None,
    ) -> Account:
        """Read the account, `fn` it (the new state and its ledger entries), and write it
        back with the CAS, retried on conflict; `more` adds writes of the same shard.

        An admin write: it checks no gen (the owner's scripts see it as a conflict, drop
        their cached row and read again)."""
        n = self._sh(a)
        ka = self._ka(a)

        def step() -> Account:
            raw = self.r.get(ka)
            acct, ledger = fn(acct_dec.decode(raw) if raw else None)
            sc = self._script(n, gen=False)
            sc.compare(ka, raw)
            sc.set(ka, enc.encode(acct))
            sc.cmd("sadd", self._kaccts(n), a)
            for e in ledger:
                sc.cmd("rpush", self._kl(n), enc.encode(e))
            if more is not None:
                more(sc)
            self._run(sc)
            return acct

        return self._retry(step)
