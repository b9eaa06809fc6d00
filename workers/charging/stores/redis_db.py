"""Redis plumbing shared by the charging store and the CDR store: the client, error mapping
within the loop turn's budget, the key layout, and the one compare-and-set script through
which every change to an account or session is written.

Keys are designed for Redis Cluster: everything one credit-control request changes lives in
one hash slot, tagged with the account id (`cg:{ACCOUNT}:a` account, `cg:{ACCOUNT}:s:SID`
session, `cg:{ACCOUNT}:l` ledger, `cg:{ACCOUNT}:ss` its open sessions). Lookups that cross
slots (Subscription-Id -> account, Session-Id -> account, the sweep index) are plain keys
written beside the script in the same pipeline.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import msgspec

from ..core import Account, LedgerEntry, Session
from ..store import (
    ProvisionRule,
    StoreBusy,
    StoreUnavailable,
    SySubscription,
    spend_turn,
    turn_deadline,
    turn_spent,
)
from .common import CachedRules, Nowait

T = TypeVar("T")

# KEYS: account, session, ledger, open-session set, and for a refund the refunded debit
# event's record (same hash tag). ARGV: old/new account, old/new session, open flag, session
# id, session TTL (ms, 0 = none), old/new debit record, its TTL, then the ledger entries.
CAS = """
local a = redis.call('GET', KEYS[1])
if (a or '') ~= ARGV[1] then return 0 end
local s = redis.call('GET', KEYS[2])
if (s or '') ~= ARGV[3] then return 0 end
if #KEYS >= 5 then
  local r = redis.call('GET', KEYS[5])
  if (r or '') ~= ARGV[8] then return 0 end
end
if ARGV[2] ~= '' then redis.call('SET', KEYS[1], ARGV[2]) end
if ARGV[4] == '-' then redis.call('DEL', KEYS[2])
elseif ARGV[4] ~= '' then
  if ARGV[7] ~= '0' then redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[7])
  else redis.call('SET', KEYS[2], ARGV[4]) end
end
if #KEYS >= 5 and ARGV[9] ~= '' then
  redis.call('SET', KEYS[5], ARGV[9], 'PX', ARGV[10])
end
if ARGV[5] == '1' then redis.call('SADD', KEYS[4], ARGV[6])
elseif ARGV[5] == '0' then redis.call('SREM', KEYS[4], ARGV[6]) end
for i = 11, #ARGV do redis.call('RPUSH', KEYS[3], ARGV[i]) end
return 1
"""

enc = msgspec.msgpack.Encoder()
acct_dec = msgspec.msgpack.Decoder(Account)
sess_dec = msgspec.msgpack.Decoder(Session)
ledger_dec = msgspec.msgpack.Decoder(LedgerEntry)
rules_dec = msgspec.msgpack.Decoder(list[ProvisionRule])
sy_dec = msgspec.msgpack.Decoder(SySubscription)

SIDX_MAX = 100_000  # Session-Id -> account entries remembered per process


class Conflict(Exception):
    """A compare-and-set found its keys changed since they were read: read again, retry."""


def client(url: str, timeout: float) -> Any:
    """A redis-py client that fails (no retries) after `timeout` instead of hanging."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise StoreUnavailable(
            "the redis backend needs the 'redis' package (pip install chargegw[redis])"
        ) from exc
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


def redis_errors() -> tuple[tuple[type[BaseException], ...], type[BaseException]]:
    """The errors that mean "server unreachable", and the one for "server still loading"."""
    import redis

    return (redis.ConnectionError, redis.TimeoutError, OSError), redis.exceptions.BusyLoadingError


class RedisConn(Nowait):
    """One Redis connection. `_errors` use up the loop turn's store budget when met
    (`spend_turn`); `_busy` only fail the call."""

    r: Any
    url: str
    p: str  # key prefix
    _errors: tuple[type[BaseException], ...]
    _busy: tuple[type[BaseException], ...] = ()

    def _call(self, fn: Callable[[], T]) -> T:
        """`fn()`, with connection errors as StoreUnavailable. On an event loop, one that
        fails uses up the turn's store budget (`spend_turn`): the turn's other requests get
        3004 at once instead of each waiting out `timeout` on an unreachable server."""
        if turn_spent():
            raise StoreUnavailable(f"redis {self.url}: unavailable in this loop turn")
        try:
            return fn()
        except self._errors as exc:
            spend_turn()
            raise StoreUnavailable(f"redis {self.url}: {exc}") from exc
        except self._busy as exc:
            raise StoreUnavailable(f"redis {self.url}: {exc}") from exc

    def close(self) -> None:
        self.r.close()


class RedisTables(CachedRules, RedisConn):
    """The charging store's keys, the optimistic read-apply-CAS loop, and account writes."""

    retries: int
    _cas: Any
    _sidx: OrderedDict[str, str]  # Session-Id -> account, bounded cache

    # -- keys -----------------------------------------------------------------------------

    def _ka(self, a: str) -> str:
        return f"{self.p}:{{{a}}}:a"

    def _ks(self, a: str, sid: str) -> str:
        return f"{self.p}:{{{a}}}:s:{sid}"

    def _kl(self, a: str) -> str:
        return f"{self.p}:{{{a}}}:l"

    def _kss(self, a: str) -> str:
        return f"{self.p}:{{{a}}}:ss"

    def _ksubs(self, a: str) -> str:
        return f"{self.p}:{{{a}}}:subs"

    def _ksub(self, t: int, d: str) -> str:
        return f"{self.p}:sub:{t}:{d}"

    def _ksidx(self, sid: str) -> str:
        return f"{self.p}:sidx:{sid}"

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
                time.sleep(delay)
                delay = min(delay * 2, 0.005)
        raise StoreUnavailable(f"redis {self.url}: too much contention")

    def _queue_commit(
        self,
        pipe: Any,
        a: str,
        sid: str,
        old_a: bytes | None,
        new_a: Account | None,
        old_s: bytes | None,
        new_s: Session | None | str,
        ledger: Iterable[LedgerEntry] = (),
        open_flag: str = "",
        extra: Callable[[Any], None] | None = None,
        ttl_ms: int = 0,
        ref: tuple[str, bytes | None, Session | None, int] | None = None,
    ) -> int:
        """Queue the compare-and-set (and its index updates) on `pipe`; the CAS result's index.
        `ref` (session id, old bytes, new state, TTL ms) also compares and writes a refunded
        debit event's record in the same atomic step."""
        if isinstance(new_s, str):
            s_arg: bytes | str = new_s
        else:
            s_arg = enc.encode(new_s) if new_s is not None else b""
        keys = [self._ka(a), self._ks(a, sid), self._kl(a), self._kss(a)]
        r_old: bytes = b""
        r_new: bytes = b""
        r_ttl = "1"
        if ref is not None:
            keys.append(self._ks(a, ref[0]))
            r_old = ref[1] or b""
            r_new = enc.encode(ref[2]) if ref[2] is not None else b""
            r_ttl = str(max(ref[3], 1))
        args = [
            old_a or b"",
            enc.encode(new_a) if new_a is not None else b"",
            old_s or b"",
            s_arg,
            open_flag,
            sid,
            str(max(ttl_ms, 0)),
            r_old,
            r_new,
            r_ttl,
            *[enc.encode(e) for e in ledger],
        ]
        index = len(pipe)
        self._cas(keys=keys, args=args, client=pipe)
        if extra is not None:
            extra(pipe)
        return index

    def _commit(self, *args: Any, **kw: Any) -> None:
        """`_queue_commit` alone in a pipeline; Conflict when the CAS did not apply."""
        pipe = self.r.pipeline(transaction=False)
        index = self._queue_commit(pipe, *args, **kw)
        if not pipe.execute()[index]:
            raise Conflict

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
        self, a: str, fn: Callable[[Account | None], tuple[Account, list[LedgerEntry]]]
    ) -> Account:
        """Read the account, `fn` it (the new state and its ledger entries), and write it
        back with the CAS, retried on conflict."""

        def step() -> Account:
            raw = self.r.get(self._ka(a))
            acct, ledger = fn(acct_dec.decode(raw) if raw else None)
            # The session slot of the CAS is unused here: an impossible session id.
            self._commit(
                a,
                "\x00",
                raw,
                acct,
                None,
                None,
                ledger,
                "",
                lambda p: p.sadd(f"{self.p}:accounts", a),
            )
            return acct

        return self._retry(step)
