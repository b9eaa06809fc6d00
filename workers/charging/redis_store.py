"""The scale-out store: Redis (standalone or Cluster), shared by workers on many hosts.

Keys are designed for Redis Cluster: everything one credit-control request changes lives in
one hash slot, tagged with the account id (`cg:{ACCOUNT}:a` account, `cg:{ACCOUNT}:s:SID`
session, `cg:{ACCOUNT}:l` ledger, `cg:{ACCOUNT}:ss` its open sessions). A request reads the
account and session (one MGET), applies `core` in Python, and writes the result with one
compare-and-set script (EVALSHA) that commits only if neither key changed since the read;
on a conflict it re-reads and retries. So the money rules are the same code as SQLite's and
each change is atomic. Lookups that cross slots (Subscription-Id -> account, Session-Id ->
account, the sweep index) are plain keys written beside the script in the same pipeline.
Connection or timeout errors raise StoreUnavailable after `timeout`, never hang; redis-py
reconnects by itself on the next call once the server is back.

Rf records live in `RedisCdrStore`, on a connection of their own: each batch is acknowledged
only once the server has fsynced its append-only file (WAITAOF on Redis 7.2+; before that the
server must run `appendonly yes` with `appendfsync always`, checked when the store opens).
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec

from . import core
from .core import Account, CCOp, LedgerEntry, Outcome, Session
from .store import (
    AccountInfo,
    AccountRow,
    Cdr,
    NotDurable,
    Notice,
    ProvisionRule,
    StoreBusy,
    StoreError,
    StoreUnavailable,
    SySubscription,
    match_rule,
    spend_turn,
    turn_deadline,
    turn_spent,
)

# KEYS: account, session, ledger, open-session set, and for a refund the refunded debit
# event's record (same hash tag). ARGV: old/new account, old/new session, open flag, session
# id, session TTL (ms, 0 = none), old/new debit record, its TTL, then the ledger entries.
_CAS = """
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

_enc = msgspec.msgpack.Encoder()
_acct_dec = msgspec.msgpack.Decoder(Account)
_sess_dec = msgspec.msgpack.Decoder(Session)
_ledger_dec = msgspec.msgpack.Decoder(LedgerEntry)
_rules_dec = msgspec.msgpack.Decoder(list[ProvisionRule])
_sy_dec = msgspec.msgpack.Decoder(SySubscription)
_cdr_dec = msgspec.json.Decoder(Cdr)


SWEEP_BUDGET = 0.02  # seconds one sweep call may take


class Conflict(Exception):
    pass


def _client(url: str, timeout: float) -> Any:
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


class RedisStore:
    """See the module docstring. One instance per process."""

    def __init__(
        self, url: str, *, prefix: str = "cg", timeout: float = 0.5, retries: int = 200
    ) -> None:
        self.r = _client(url, timeout)
        import redis

        self._errors: tuple[type[BaseException], ...] = (
            redis.ConnectionError,
            redis.TimeoutError,
            OSError,
        )
        self._busy = redis.exceptions.BusyLoadingError
        self.url = url
        self.p = prefix
        self.retries = retries
        self._cas = self.r.register_script(_CAS)
        self._nowait = False
        self._sidx: OrderedDict[str, str] = OrderedDict()  # Session-Id -> account, bounded cache
        self._rules: list[ProvisionRule] = []
        self._rules_at = 0.0

    # -- keys -----------------------------------------------------------------------------

    def _ka(self, a: str) -> str:
        return f"{self.p}:{{{a}}}:a"

    def _ks(self, a: str, sid: str) -> str:
        return f"{self.p}:{{{a}}}:s:{sid}"

    def _kl(self, a: str) -> str:
        return f"{self.p}:{{{a}}}:l"

    def _kss(self, a: str) -> str:
        return f"{self.p}:{{{a}}}:ss"

    def _ksub(self, t: int, d: str) -> str:
        return f"{self.p}:sub:{t}:{d}"

    def _ksidx(self, sid: str) -> str:
        return f"{self.p}:sidx:{sid}"

    # -- plumbing -------------------------------------------------------------------------

    def _call(self, fn: Callable[[], object]) -> object:
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

    def _retry(self, fn: Callable[[], object]) -> object:
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

    @contextlib.contextmanager
    def nowait(self) -> Iterator[None]:
        """Inside it, contention raises StoreBusy instead of sleeping."""
        before, self._nowait = self._nowait, True
        try:
            yield
        finally:
            self._nowait = before

    def _queue_commit(
        self,
        pipe: object,
        a: str,
        sid: str,
        old_a: bytes | None,
        new_a: Account | None,
        old_s: bytes | None,
        new_s: Session | None | str,
        ledger: Iterable[LedgerEntry] = (),
        open_flag: str = "",
        extra: Callable[[object], None] | None = None,
        ttl_ms: int = 0,
        ref: tuple[str, bytes | None, Session | None, int] | None = None,
    ) -> int:
        """Queue the compare-and-set (and its index updates) on `pipe`; the CAS result's index.
        `ref` (session id, old bytes, new state, TTL ms) also compares and writes a refunded
        debit event's record in the same atomic step."""
        if isinstance(new_s, str):
            s_arg: bytes | str = new_s
        else:
            s_arg = _enc.encode(new_s) if new_s is not None else b""
        keys = [self._ka(a), self._ks(a, sid), self._kl(a), self._kss(a)]
        r_old: bytes = b""
        r_new: bytes = b""
        r_ttl = "1"
        if ref is not None:
            keys.append(self._ks(a, ref[0]))
            r_old = ref[1] or b""
            r_new = _enc.encode(ref[2]) if ref[2] is not None else b""
            r_ttl = str(max(ref[3], 1))
        args = [
            old_a or b"",
            _enc.encode(new_a) if new_a is not None else b"",
            old_s or b"",
            s_arg,
            open_flag,
            sid,
            str(max(ttl_ms, 0)),
            r_old,
            r_new,
            r_ttl,
            *[_enc.encode(e) for e in ledger],
        ]
        index = len(pipe)  # type: ignore[arg-type]
        self._cas(keys=keys, args=args, client=pipe)
        if extra is not None:
            extra(pipe)
        return index

    def _commit(self, *args: object, **kw: object) -> None:
        pipe = self.r.pipeline(transaction=False)
        index = self._queue_commit(pipe, *args, **kw)  # type: ignore[arg-type]
        if not pipe.execute()[index]:
            raise Conflict

    def _current_rules(self) -> list[ProvisionRule]:
        now = time.monotonic()
        if now - self._rules_at > 5.0:
            raw = self._call(lambda: self.r.get(f"{self.p}:rules"))
            self._rules = _rules_dec.decode(raw) if raw else []
            self._rules_at = now
        return self._rules

    def _remember(self, sid: str, account: str) -> None:
        self._sidx[sid] = account
        if len(self._sidx) > 100_000:
            self._sidx.popitem(last=False)

    # -- credit control -------------------------------------------------------------------

    def _account_for(self, op: CCOp) -> tuple[str | None, ProvisionRule | None]:
        """The account of the request's session, else of its identities, else a provisioning rule."""
        return self._accounts_for_many([op])[0]

    def credit_control(self, op: CCOp) -> Outcome:
        a, rule = self._account_for(op)
        if a is None:
            early = core.precheck(op, None)
            return early if early is not None else core.Outcome(core.USER_UNKNOWN)
        out = self._retry(lambda: self._cc(op, a, rule))
        assert isinstance(out, Outcome)
        return out

    def credit_control_many(
        self, ops: list[CCOp], wait: bool = True
    ) -> list[Outcome | Exception] | None:
        """A batch in three round trips: account lookups, one read per request, and all the
        compare-and-set scripts in one pipeline. Requests on an account already in the batch,
        and any whose CAS lost a race, are then done one by one.

        One element per request: its outcome or the exception it met, so each request is
        answered by its own fate. When Redis fails before anything was written, the whole
        batch gets the StoreUnavailable; when it fails during the CAS pipeline, only the
        requests whose CAS result is unknown get it; a request already decided keeps its
        outcome."""
        out: list[Outcome | Exception | None] = [None] * len(ops)
        try:
            accounts = self._accounts_for_many(ops)
        except StoreUnavailable as exc:
            return [exc] * len(ops)
        wave: list[int] = []
        later: list[int] = []
        seen: set[str] = set()
        sessions: set[str] = set()
        for i, (op, (a, _)) in enumerate(zip(ops, accounts, strict=True)):
            if op.session_id in sessions:  # follows an earlier request of its session
                later.append(i)
                continue
            sessions.add(op.session_id)
            if a is None:
                early = core.precheck(op, None)
                out[i] = early if early is not None else core.Outcome(core.USER_UNKNOWN)
            elif a in seen:
                later.append(i)
            else:
                seen.add(a)
                wave.append(i)
        if wave:
            pipe = self.r.pipeline(transaction=False)
            for i in wave:
                a = accounts[i][0]
                assert a is not None
                pipe.mget(self._cc_keys(ops[i], a))
            try:
                reads = self._call(pipe.execute)
            except StoreUnavailable as exc:
                return [exc if x is None else x for x in out]
            pipe = self.r.pipeline(transaction=False)
            queued: list[tuple[int, Outcome, int]] = []
            for i, raws in zip(wave, reads, strict=True):  # type: ignore[arg-type]
                a, rule = accounts[i]
                assert a is not None
                try:
                    outcome, commit = self._plan(ops[i], a, rule, *raws)
                except Exception as exc:
                    out[i] = exc
                    continue
                if commit is None:
                    out[i] = outcome
                else:
                    queued.append((i, outcome, self._queue_commit(pipe, *commit)))
            if queued:
                try:
                    results = self._call(pipe.execute)
                except StoreUnavailable as exc:
                    # Some of these scripts may have run: their requests get 3004, and a resend
                    # is answered from what the store then holds.
                    return [exc if x is None else x for x in out]
                for i, outcome, index in queued:
                    if results[index]:  # type: ignore[index]
                        out[i] = outcome
                        self._remember(ops[i].session_id, accounts[i][0] or "")
                    else:
                        later.append(i)
        for n, i in enumerate(sorted(later)):
            try:
                out[i] = self.credit_control(ops[i])
            except StoreUnavailable as exc:
                for j in sorted(later)[n:]:
                    out[j] = exc
                break
            except Exception as exc:
                out[i] = exc
        return out  # type: ignore[return-value]

    def _cc_keys(self, op: CCOp, a: str) -> list[str]:
        """What one request reads: account, session, and for a refund the debit it names."""
        keys = [self._ka(a), self._ks(a, op.session_id)]
        if op.req_type == core.EVENT and op.action == core.REFUND_ACCOUNT and op.ref:
            keys.append(self._ks(a, op.ref))
        return keys

    def _accounts_for_many(self, ops: list[CCOp]) -> list[tuple[str | None, ProvisionRule | None]]:
        found: list[tuple[str | None, ProvisionRule | None] | None] = []
        pipe = self.r.pipeline(transaction=False)
        for op in ops:
            a = self._sidx.get(op.session_id)
            if a is not None:
                found.append((a, None))
                continue
            found.append(None)
            pipe.get(self._ksidx(op.session_id))
            for t, d in op.subscriptions:
                pipe.get(self._ksub(t, d))
        got = iter(self._call(pipe.execute) if len(pipe) else [])  # type: ignore[arg-type]
        out: list[tuple[str | None, ProvisionRule | None]] = []
        for op, f in zip(ops, found, strict=True):
            if f is not None:
                out.append(f)
                continue
            by_session = next(got)
            by_subs = [next(got) for _ in op.subscriptions]
            out.append(self._pick_account(op, by_session, by_subs))
        return out

    def _pick_account(
        self, op: CCOp, by_session: bytes | None, by_subs: list[bytes | None]
    ) -> tuple[str | None, ProvisionRule | None]:
        if by_session is not None:
            return by_session.decode(), None
        if op.req_type in (core.UPDATE, core.TERMINATION):
            return None, None
        for raw in by_subs:
            if raw is not None:
                return raw.decode(), None
        hit = match_rule(self._current_rules(), op.subscriptions)
        if hit is None:
            return None, None
        return hit[1], hit[0]

    def _cc(self, op: CCOp, a: str, rule: ProvisionRule | None) -> Outcome:
        raws = self.r.mget(self._cc_keys(op, a))
        outcome, commit = self._plan(op, a, rule, *raws)
        if commit is not None:
            self._commit(*commit)
            self._remember(op.session_id, a)
        return outcome

    def _plan(
        self,
        op: CCOp,
        a: str,
        rule: ProvisionRule | None,
        raw_a: bytes | None,
        raw_s: bytes | None,
        raw_ref: bytes | None = None,
    ) -> tuple[Outcome, tuple | None]:
        """Apply `op` to the state read: the outcome, and the `_queue_commit` arguments (None:
        nothing to write). `raw_ref` is a refund's debit event record, as read."""
        session = _sess_dec.decode(raw_s) if raw_s else None
        early = core.precheck(op, session)
        if early is not None:
            return early, None
        ledger: list[LedgerEntry] = []
        account = _acct_dec.decode(raw_a) if raw_a else None
        if account is None and rule is not None and session is None:
            account = Account(a, rule.balance, 0, rule.credit_limit)
            ledger.append(
                LedgerEntry(op.now, a, "credit", "", 0, "provision", 0, 0, 1, rule.balance)
            )
        ref_session = _sess_dec.decode(raw_ref) if raw_ref else None
        applied = core.apply_cc(op, account, session, ref_session)
        s = applied.session
        if applied.account is None or s is None:
            return applied.outcome, None
        ledger.extend(applied.ledger)
        p = self.p
        sid = op.session_id

        open_ = s.state == core.OPEN
        ttl_ms = 0 if open_ else max(1, int((s.expires - op.now) * 1000))

        def extra(pipe: object) -> None:
            # The sweep index holds open sessions only; finished ones expire with their TTL.
            if open_:
                pipe.zadd(f"{p}:sweep", {f"{a}\n{sid}": s.expires})  # type: ignore[attr-defined]
            else:
                pipe.zrem(f"{p}:sweep", f"{a}\n{sid}")  # type: ignore[attr-defined]
            if applied.new_session or not open_:
                pipe.set(self._ksidx(sid), a, px=ttl_ms or None)  # type: ignore[attr-defined]
            if rule is not None and raw_a is None:
                pipe.sadd(f"{p}:accounts", a)  # type: ignore[attr-defined]
                for t, d in op.subscriptions:
                    if t == rule.sub_type and d == a:
                        pipe.set(self._ksub(t, d), a, nx=True)  # type: ignore[attr-defined]
                        pipe.sadd(f"{p}:{{{a}}}:subs", f"{t}:{d}")  # type: ignore[attr-defined]

        flag = "1" if open_ else "0"
        ref = None
        r = applied.ref_session
        if r is not None:  # keep the debit record's own expiry
            ref = (r.id, raw_ref, r, max(1, int((r.expires - op.now) * 1000)))
        return applied.outcome, (
            a,
            sid,
            raw_a,
            applied.account,
            raw_s,
            s,
            ledger,
            flag,
            extra,
            ttl_ms,
            ref,
        )

    def resolve(self, subscriptions: list[tuple[int, str]]) -> Account | None:
        for t, d in subscriptions:
            raw = self._call(lambda t=t, d=d: self.r.get(self._ksub(t, d)))
            if raw is not None:
                acct = self._get_account(raw.decode())
                if acct is not None:
                    return acct
        hit = match_rule(self._current_rules(), subscriptions)
        if hit is None:
            return None
        rule, data = hit
        return self._get_account(data) or Account(data, rule.balance, 0, rule.credit_limit)

    def provision(self, subscriptions: list[tuple[int, str]], now: float) -> Account | None:
        """Resolve, creating the account from a provisioning rule when one matches."""
        acct = self.resolve(subscriptions)
        if acct is None:
            return None
        hit = match_rule(self._current_rules(), subscriptions)
        if hit is not None and hit[1] == acct.id:
            rule, data = hit

            def fn(cur: Account | None) -> tuple[Account, list[LedgerEntry]]:
                if cur is not None:
                    return cur, []
                new = Account(data, rule.balance, 0, rule.credit_limit)
                return new, [
                    LedgerEntry(now, data, "credit", "", 0, "provision", 0, 0, 1, rule.balance)
                ]

            acct = self._update_account(data, fn)
            pipe = self.r.pipeline(transaction=False)
            pipe.set(self._ksub(rule.sub_type, data), data, nx=True)
            pipe.sadd(f"{self.p}:{{{data}}}:subs", f"{rule.sub_type}:{data}")
            self._call(pipe.execute)
        return acct

    def _get_account(self, a: str) -> Account | None:
        raw = self._call(lambda: self.r.get(self._ka(a)))
        return _acct_dec.decode(raw) if raw else None

    def sweep(self, now: float, closed_ttl: float, limit: int = 500) -> int:
        """Release silent sessions, one compare-and-set each, for at most SWEEP_BUDGET
        seconds (it runs on the worker's loop); the rest waits for the next tick."""
        members = self._call(
            lambda: self.r.zrangebyscore(f"{self.p}:sweep", "-inf", now, start=0, num=limit)
        )
        deadline = time.monotonic() + SWEEP_BUDGET
        released = 0
        for m in members:  # type: ignore[union-attr]
            if time.monotonic() >= deadline:
                break
            a, _, sid = m.decode().partition("\n")
            res = self._retry(lambda a=a, sid=sid: self._sweep_one(a, sid, now, closed_ttl))
            released += res == "released"
        return released

    def _sweep_one(self, a: str, sid: str, now: float, closed_ttl: float) -> str:
        raw_a, raw_s = self.r.mget([self._ka(a), self._ks(a, sid)])
        member = f"{a}\n{sid}"
        if raw_s is None:
            self.r.zrem(f"{self.p}:sweep", member)
            return "gone"
        s = _sess_dec.decode(raw_s)
        if s.expires >= now:  # refreshed since it was indexed
            self.r.zadd(f"{self.p}:sweep", {member: s.expires})
            return "kept"
        if s.state != core.OPEN:  # finished: it expires by its TTL; just drop it from the index
            self.r.zrem(f"{self.p}:sweep", member)
            return "finished"
        acct = _acct_dec.decode(raw_a) if raw_a else None
        core.release_session(acct, s, now, closed_ttl)
        ttl_ms = max(1, int(closed_ttl * 1000))

        def unindex(pipe: object) -> None:
            pipe.zrem(f"{self.p}:sweep", member)  # type: ignore[attr-defined]
            pipe.set(self._ksidx(sid), a, px=ttl_ms)  # type: ignore[attr-defined]

        self._commit(a, sid, raw_a, acct, raw_s, s, (), "0", unindex, ttl_ms)
        return "released"

    def take_notices(self, limit: int = 100) -> list[Notice]:
        raw = self._call(lambda: self.r.lpop(f"{self.p}:notices", limit))
        return [msgspec.msgpack.decode(x, type=Notice) for x in raw or []]  # type: ignore[union-attr]

    # -- accounts -------------------------------------------------------------------------

    def _update_account(
        self, a: str, fn: Callable[[Account | None], tuple[Account, list[LedgerEntry]]]
    ) -> Account:
        def step() -> Account:
            raw = self.r.get(self._ka(a))
            acct, ledger = fn(_acct_dec.decode(raw) if raw else None)
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
            )  # type: ignore[attr-defined]
            return acct

        out = self._retry(step)
        assert isinstance(out, Account)
        return out

    def import_accounts(self, rows: Iterable[AccountRow], now: float) -> int:
        n = 0
        for r in rows:

            def fn(acct: Account | None, r: AccountRow = r) -> tuple[Account, list[LedgerEntry]]:
                acct = acct or Account(r.id)
                delta = r.balance - acct.balance
                if acct.reserved and r.balance - acct.reserved < r.credit_limit:
                    raise StoreError(f"account {r.id}: balance below limit plus reservations")
                acct.balance, acct.credit_limit, acct.blocked = r.balance, r.credit_limit, r.blocked
                ledger = (
                    [LedgerEntry(now, r.id, "credit", "", 0, "import", 0, 0, 1, delta)]
                    if delta
                    else []
                )
                return acct, ledger

            self._update_account(r.id, fn)
            if r.subscriptions:
                pipe = self.r.pipeline(transaction=False)
                for t, d in r.subscriptions:
                    pipe.set(self._ksub(t, d), r.id)
                    pipe.sadd(f"{self.p}:{{{r.id}}}:subs", f"{t}:{d}")
                self._call(pipe.execute)
            n += 1
        return n

    def get_account(self, account_id: str) -> AccountInfo | None:
        acct = self._get_account(account_id)
        if acct is None:
            for t in range(5):
                raw = self._call(lambda t=t: self.r.get(self._ksub(t, account_id)))
                if raw is not None:
                    acct = self._get_account(raw.decode())
                    break
        if acct is None:
            return None
        subs_raw = self._call(lambda: self.r.smembers(f"{self.p}:{{{acct.id}}}:subs"))
        subs = []
        for x in sorted(subs_raw):  # type: ignore[union-attr]
            t, _, d = x.decode().partition(":")
            subs.append((int(t), d))
        n = self._call(lambda: self.r.scard(self._kss(acct.id)))
        return AccountInfo(acct, subs, int(n))  # type: ignore[arg-type]

    def _notify(self, kind: str, a: str, fui_only: bool) -> None:
        sids = self._call(lambda: self.r.smembers(self._kss(a)))
        pipe = self.r.pipeline(transaction=False)
        for sid in sids:  # type: ignore[union-attr]
            raw = self._call(lambda sid=sid: self.r.get(self._ks(a, sid.decode())))
            if raw is None:
                continue
            s = _sess_dec.decode(raw)
            if s.state == core.OPEN and (s.fui or not fui_only):
                pipe.rpush(
                    f"{self.p}:notices",
                    _enc.encode(Notice(kind, s.id, a, s.client_host, s.client_realm)),
                )
        self._call(pipe.execute)

    def topup(self, account_id: str, amount: int, now: float) -> Account:
        if amount <= 0:
            raise StoreError("a top-up amount must be positive")

        def fn(acct: Account | None) -> tuple[Account, list[LedgerEntry]]:
            if acct is None:
                raise StoreError(f"no account {account_id!r}")
            acct.balance += amount
            return acct, [LedgerEntry(now, account_id, "credit", "", 0, "topup", 0, 0, 1, amount)]

        acct = self._update_account(account_id, fn)
        self._notify("rar", account_id, fui_only=True)
        return acct

    def set_blocked(self, account_id: str, blocked: bool) -> Account:
        changed = []

        def fn(acct: Account | None) -> tuple[Account, list[LedgerEntry]]:
            if acct is None:
                raise StoreError(f"no account {account_id!r}")
            changed[:] = [acct.blocked != blocked]
            acct.blocked = blocked
            return acct, []

        acct = self._update_account(account_id, fn)
        if blocked and changed[0]:
            self._notify("asr", account_id, fui_only=False)
        return acct

    def set_rules(self, rules: list[ProvisionRule]) -> None:
        self._call(lambda: self.r.set(f"{self.p}:rules", _enc.encode(rules)))
        self._rules_at = 0.0

    def rules(self) -> list[ProvisionRule]:
        raw = self._call(lambda: self.r.get(f"{self.p}:rules"))
        return _rules_dec.decode(raw) if raw else []

    def seed_demo(self, rows: list[AccountRow], rules: list[ProvisionRule], now: float) -> bool:
        """Seed once per store. The flag is set last, so a crash half-way is redone by the
        next worker; importing is idempotent (it sets balances, the ledger gets the difference)."""
        if self._call(lambda: self.r.exists(f"{self.p}:seeded")):
            return False
        self.import_accounts(rows, now)
        self.set_rules(rules)
        return bool(self._call(lambda: self.r.set(f"{self.p}:seeded", str(now), nx=True)))

    # -- Sy -------------------------------------------------------------------------------

    def _sy_count(self, a: str, delta: int) -> None:
        def fn(acct: Account | None) -> tuple[Account, list[LedgerEntry]]:
            if acct is None:
                raise StoreError(f"no account {a!r}")
            acct.sy = max(0, acct.sy + delta)
            return acct, []

        self._update_account(a, fn)

    def sy_put(self, sub: SySubscription) -> None:
        old = self.sy_get(sub.session_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.set(f"{self.p}:sy:{sub.session_id}", _enc.encode(sub))
        pipe.sadd(f"{self.p}:{{{sub.account}}}:sy", sub.session_id)
        self._call(pipe.execute)
        if old is None or old.account != sub.account:
            if old is not None:
                self._call(lambda: self.r.srem(f"{self.p}:{{{old.account}}}:sy", sub.session_id))
                self._sy_count(old.account, -1)
            self._sy_count(sub.account, +1)

    def sy_get(self, session_id: str) -> SySubscription | None:
        raw = self._call(lambda: self.r.get(f"{self.p}:sy:{session_id}"))
        return _sy_dec.decode(raw) if raw else None

    def sy_delete(self, session_id: str) -> SySubscription | None:
        raw = self._call(lambda: self.r.getdel(f"{self.p}:sy:{session_id}"))
        if not raw:
            return None
        sub = _sy_dec.decode(raw)
        self._call(lambda: self.r.srem(f"{self.p}:{{{sub.account}}}:sy", session_id))
        self._sy_count(sub.account, -1)
        return sub

    def sy_for_account(self, account_id: str) -> list[SySubscription]:
        sids = self._call(lambda: self.r.smembers(f"{self.p}:{{{account_id}}}:sy"))
        out = []
        for sid in sids:  # type: ignore[union-attr]
            sub = self.sy_get(sid.decode())
            if sub is not None:
                out.append(sub)
        return out

    # -- iteration for checks and CLIs -----------------------------------------------------

    def _account_ids(self) -> list[str]:
        ids = self._call(lambda: self.r.smembers(f"{self.p}:accounts"))
        return sorted(x.decode() for x in ids)  # type: ignore[union-attr]

    def iter_accounts(self) -> Iterator[Account]:
        for a in self._account_ids():
            acct = self._get_account(a)
            if acct is not None:
                yield acct

    def iter_open_sessions(self) -> Iterator[Session]:
        for a in self._account_ids():
            for sid in self._call(lambda a=a: self.r.smembers(self._kss(a))):  # type: ignore[union-attr]
                raw = self._call(lambda a=a, sid=sid: self.r.get(self._ks(a, sid.decode())))
                if raw:
                    s = _sess_dec.decode(raw)
                    if s.state == core.OPEN:
                        yield s

    def iter_ledger(self) -> Iterator[LedgerEntry]:
        for a in self._account_ids():
            for raw in self._call(lambda a=a: self.r.lrange(self._kl(a), 0, -1)):  # type: ignore[union-attr]
                yield _ledger_dec.decode(raw)

    def close(self) -> None:
        self.r.close()


class RedisCdrStore:
    """Rf records on their own Redis connection (`cdr_url`, default the store's `url`), one
    hash per session (`cg:cdr:{SID}`, field `number:sub`), written with HSETNX so each key is
    stored once. A batch is acknowledged only once it is in the fsynced append-only file:
    WAITAOF 1 0 on Redis 7.2+, else the server must run appendfsync always (checked at open,
    or at the first write when the server was not up yet). With `retention` each session's
    hash expires that long after its last record."""

    def __init__(
        self, url: str, *, prefix: str = "cg", timeout: float = 0.5, retention: float = 0.0
    ) -> None:
        self.r = _client(url, timeout)
        import redis

        self._errors: tuple[type[BaseException], ...] = (
            redis.ConnectionError,
            redis.TimeoutError,
            redis.exceptions.BusyLoadingError,
            OSError,
        )
        self._response_error = redis.ResponseError
        self.url = url
        self.p = prefix
        self.timeout = timeout
        self.retention = int(retention)
        self._mode = ""  # "waitaof" or "always" once checked
        try:
            self._check()
        except StoreUnavailable:
            pass  # not up yet: checked before the first write

    def _call(self, fn: Callable[[], object]) -> object:
        if turn_spent():
            raise StoreUnavailable(f"redis {self.url}: unavailable in this loop turn")
        try:
            return fn()
        except self._errors as exc:
            spend_turn()
            raise StoreUnavailable(f"redis {self.url}: {exc}") from exc

    def _check(self) -> None:
        """How a commit is made durable on this server, or NotDurable."""
        if self._mode:
            return
        r = self.r
        info = self._call(lambda: r.info("server"))  # type: ignore[attr-defined]
        version = tuple(int(x) for x in str(info["redis_version"]).split(".")[:2])  # type: ignore[index]
        try:
            conf = self._call(lambda: r.config_get("append*"))  # type: ignore[attr-defined]
        except self._response_error as exc:
            raise NotDurable(
                f"redis {self.url}: cannot read the append-only settings ({exc}); the CDR store"
                " needs appendonly yes (and appendfsync always before Redis 7.2)"
            ) from exc
        if conf.get("appendonly") != "yes":  # type: ignore[union-attr]
            raise NotDurable(
                f"redis {self.url}: appendonly is off, so an acknowledged CDR would not survive"
                " a restart or power cut; run the CDR Redis with appendonly yes"
            )
        if version >= (7, 2):
            self._mode = "waitaof"
        elif conf.get("appendfsync") == "always":  # type: ignore[union-attr]
            self._mode = "always"
        else:
            raise NotDurable(
                f"redis {self.url}: Redis {'.'.join(map(str, version))} has no WAITAOF and"
                f" appendfsync is {conf.get('appendfsync')!r}; set appendfsync always"  # type: ignore[union-attr]
            )

    def _key(self, session_id: str) -> str:
        return f"{self.p}:cdr:{{{session_id}}}"

    @contextlib.contextmanager
    def nowait(self) -> Iterator[None]:
        """Redis has no lock to wait for: calls fail (StoreUnavailable) or succeed."""
        yield

    def put_cdrs(self, cdrs: list[Cdr]) -> list[bool]:
        try:
            self._check()
        except NotDurable as exc:  # found at the first write: refuse the records (3004)
            raise StoreUnavailable(str(exc)) from exc
        pipe = self.r.pipeline(transaction=False)  # type: ignore[attr-defined]
        step = 2 if self.retention else 1
        for c in cdrs:
            key = self._key(c.session_id)
            pipe.hsetnx(key, f"{c.record_number}:{c.sub_session}", msgspec.json.encode(c))
            if self.retention:
                pipe.expire(key, self.retention)
        if self._mode == "waitaof":
            pipe.execute_command("WAITAOF", 1, 0, max(1, int(self.timeout * 800)))
        res = self._call(pipe.execute)
        if self._mode == "waitaof" and int(res[-1][0]) < 1:  # type: ignore[index]
            raise StoreUnavailable(f"redis {self.url}: the append-only file was not fsynced")
        return [bool(res[i * step]) for i in range(len(cdrs))]  # type: ignore[index]

    def put_cdr(self, cdr: Cdr) -> bool:
        return self.put_cdrs([cdr])[0]

    def iter_cdrs(self, since: float | None = None) -> Iterator[Cdr]:
        r = self.r
        out: list[Cdr] = []
        keys = self._call(lambda: list(r.scan_iter(match=f"{self.p}:cdr:*", count=1000)))  # type: ignore[attr-defined]
        for key in keys:  # type: ignore[union-attr]
            for raw in self._call(lambda key=key: r.hvals(key)):  # type: ignore[attr-defined]
                cdr = _cdr_dec.decode(raw)
                if since is None or cdr.received >= since:
                    out.append(cdr)
        out.sort(key=lambda c: c.received)
        yield from out

    def purge(self, before: float, budget: float = SWEEP_BUDGET) -> int:
        """Nothing to do: Redis expires each session's records by itself (`retention`)."""
        return 0

    def close(self) -> None:
        self.r.close()  # type: ignore[attr-defined]
