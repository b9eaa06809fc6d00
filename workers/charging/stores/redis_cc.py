"""Redis credit control: the money path, one round trip per batch.

Each request is resolved to its shard, account and rows, `core` is applied in Python, and
the result is written by one compare-and-set script (`redis_db.CAS`) that applies only if
every row the decision was based on is unchanged, and only while this writer holds the
shard's gen. The rows come from the owner's cache (it is the single writer of its shards, so
what it last wrote is what the store holds); a request whose rows are not cached waits one
round for them, read in the same pipeline as the other requests' scripts. Requests of one
session keep their order; requests of one account in a batch are planned one after the
other on the state the earlier ones leave, so a whole batch is one pipeline. A script that
finds a row changed (an admin write, another process) returns the current values: the
request is planned again on them in the next round. Answers that write nothing (replays,
errors) are checked the same way, so no answer rests on a stale row.

Per request the result is its Outcome or an exception: `NotOwner(shard)` (shard not served
here, or fenced off: nothing applied), `ShardMoved(shard)` (its account or session lives in
another shard), StoreUnavailable."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from chargegw.sharding import NotOwner, ShardMoved, shard_of

from .. import core
from ..core import CCOp, LedgerEntry, Outcome
from ..store import ProvisionRule, StoreBusy, StoreUnavailable, match_rule, turn_deadline
from .common import credit, no_account, provisioned
from .redis_db import APPLIED, CONFLICT, Batch, RedisTables, Script, acct_dec, enc, sess_dec

_STARTS = (core.INITIAL, core.EVENT)
_NO, _HIT, _ALL = 0, 1, 2  # what of a read to keep in the owner's cache: nothing, found rows, all


class _Missing(Exception):
    """Resolution needs these keys read first (`keep`: what the cache keeps of them), and
    `also` names keys worth reading in the same round (key -> keep): what the next step
    would ask for, so that it does not cost a round of its own."""

    def __init__(self, keys: list[str], keep: int, also: dict[str, int] | None = None) -> None:
        self.keys, self.keep, self.also = keys, keep, also


class _Job:
    __slots__ = ("i", "op", "n", "moves")

    def __init__(self, i: int, op: CCOp) -> None:
        self.i, self.op, self.moves = i, op, 0
        self.n: int = getattr(op, "shard", -1)


class _Target:
    """Where a request applies and the rows its decision rests on (b"": absent): shard,
    account (None: no account), the provisioning rule that makes it, the identity key that
    named it."""

    __slots__ = ("n", "a", "rule", "sub", "sub_val", "raw_s", "raw_a", "raw_ref")

    def __init__(self, n: int, raw_s: bytes) -> None:
        self.n, self.raw_s = n, raw_s
        self.a: str | None = None
        self.rule: ProvisionRule | None = None
        self.sub: str | None = None
        self.sub_val = self.raw_a = self.raw_ref = b""


class RedisCreditControl(RedisTables):
    def credit_control(self, op: CCOp) -> Outcome:
        res = self._batch([op])[0]
        if isinstance(res, Exception):
            raise res
        return res

    def credit_control_many(
        self, ops: list[CCOp], wait: bool = True
    ) -> list[Outcome | Exception] | None:
        """One element per request: its outcome or the exception it met (NotOwner,
        ShardMoved, StoreUnavailable, StoreError). Redis has no write lock to wait for, so
        `wait` changes nothing and the list is never None. When Redis fails, the requests
        already decided keep their outcomes; the others (applied or not: a script in flight
        is unknown) get the StoreUnavailable, and a resend is answered from the store."""
        before = getattr(self, "_before_batch", None)
        if before is not None:
            before()
        return self._batch(ops)

    # -- the batch loop -------------------------------------------------------------------

    def _batch(self, ops: list[CCOp]) -> list[Outcome | Exception]:
        out: list[Outcome | Exception | None] = [None] * len(ops)

        def rest(exc: Exception) -> list[Outcome | Exception]:
            return [exc if x is None else x for x in out]

        pending = [_Job(i, op) for i, op in enumerate(ops)]
        fetched: dict[str, bytes] = {}  # this batch's reads that the cache does not keep
        deadline = 0.0
        delay = 0.0001
        conflicts = rounds = 0
        try:
            self._call(lambda: None)  # the layout check, before the first round
        except StoreUnavailable as exc:
            return rest(exc)
        while pending:
            rounds += 1
            overlay: dict[str, bytes] = {}  # rows as this round's earlier scripts leave them
            want: dict[str, int] = {}  # keys to read -> what the cache keeps of them
            later: list[_Job] = []
            held: set[str] = set()  # sessions with a request waiting: keep their order
            queued: list[tuple[_Job, Outcome, Script, int]] = []
            pipe = Batch()
            for job in pending:
                sid = job.op.session_id
                if sid in held:
                    later.append(job)
                    continue
                try:
                    t = self._resolve(job, overlay, fetched)
                    outcome, sc, hint = self._plan(job.op, t)
                except _Missing as m:
                    for k in m.keys:
                        want[k] = max(want.get(k, _NO), m.keep)
                    if m.also:
                        for k, keep in m.also.items():
                            want[k] = max(want.get(k, _NO), keep)
                    later.append(job)
                    held.add(sid)
                    continue
                except Exception as exc:  # ShardMoved, NotOwner, a refused request
                    out[job.i] = exc
                    continue
                overlay.update(sc.new)
                queued.append((job, outcome, sc, len(pipe)))
                sc.queue(pipe)
                if hint is not None:
                    hint(pipe)
            if not queued and not want:
                break
            first_read = len(pipe)
            for k in want:
                pipe.get(k)
            try:
                res: list[Any] = self._call(partial(self._execute, pipe))
            except StoreUnavailable as exc:
                return rest(exc)
            retry: list[_Job] = []
            for job, outcome, sc, at in queued:
                try:
                    code = self._settle(sc, res[at])
                except Exception as exc:  # a script error: this request only
                    out[job.i] = StoreUnavailable(f"redis {self.url}: {exc}")
                    continue
                if code == APPLIED:
                    out[job.i] = outcome
                    if outcome.account:
                        self._remember(job.op.session_id, outcome.account)
                elif code == CONFLICT:
                    retry.append(job)
                else:
                    out[job.i] = NotOwner(sc.shard, f"shard {sc.shard} fenced off")
            for (k, keep), v in zip(want.items(), res[first_read:], strict=True):
                if isinstance(v, Exception):
                    continue
                if keep == _ALL or (keep == _HIT and v):
                    self._cache_put([(k, v or b"")])
                else:
                    fetched[k] = v or b""
            pending = sorted(later + retry, key=lambda j: j.i)
            if retry:
                conflicts += 1
                if self._nowait and conflicts > 3:
                    return rest(StoreBusy(f"redis {self.url}: contention"))
                if not deadline:
                    deadline = turn_deadline(self.retries * 0.005)
                if time.monotonic() >= deadline:
                    return rest(StoreUnavailable(f"redis {self.url}: too much contention"))
                if conflicts > 1:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.005)
            if rounds >= self.retries:
                return rest(StoreUnavailable(f"redis {self.url}: too much contention"))
        return rest(StoreUnavailable(f"redis {self.url}: request not resolved"))

    # -- where a request applies ----------------------------------------------------------

    def _resolve(self, job: _Job, overlay: dict[str, bytes], fetched: dict[str, bytes]) -> _Target:
        """The request's shard, account and rows, from what this round knows; _Missing
        names the keys to read first. ShardMoved when they live in another shard (followed
        here instead while unsharded), NotOwner when the shard is not served here."""
        cache = self._cache

        def get(keys: list[str], keep: int, guess: bytes | None = None) -> list[bytes]:
            vals: list[bytes] = []
            missing: list[str] = []
            for k in keys:
                v = overlay.get(k)
                if v is None:
                    v = cache.get(k)
                    if v is None:
                        v = fetched.get(k)
                        if v is None:
                            if guess is None:
                                missing.append(k)
                            v = guess or b""
                vals.append(v)
            if missing:
                raise _Missing(missing, keep)
            return vals

        op = job.op
        sid = op.session_id
        start = op.req_type in _STARTS
        n = job.n
        if n < 0:
            if start and op.subscriptions:
                n = shard_of(op.subscriptions[0][1], self.shards)
            else:
                a = self._session_account(sid, get)
                n = self._sh(a) if a else shard_of(sid, self.shards)
            job.n = n
        if not self._serves(n):
            raise NotOwner(n)
        # A new session's row is guessed absent: the script checks the guess.
        (raw_s,) = get([self._ksn(n, sid)], _ALL, b"" if start else None)
        t = _Target(n, raw_s)
        if raw_s:
            t.a = sess_dec.decode(raw_s).account
        elif not start:
            a = self._session_account(sid, get)
            if a and self._sh(a) != n:
                return self._moved(job, self._sh(a), overlay, fetched)
            return t  # unknown session: answered as such
        elif op.subscriptions:
            subs = op.subscriptions
            keys = [self._ksub(n, st, d) for st, d in subs]
            try:
                vals = get(keys, _HIT)
            except _Missing as m:
                m.also = self._new_subscriber_keys(n, subs, overlay, fetched)
                raise
            for k, v in zip(keys, vals, strict=True):
                if v:
                    t.a, t.sub, t.sub_val = v.decode(), k, v
                    break
            else:
                for v in get([self._kalias(st, d) for st, d in subs], _NO):
                    if v and int(v) != n:
                        return self._moved(job, int(v), overlay, fetched)
                hit = match_rule(self._current_rules(), subs)
                if hit is None:
                    return t  # no account: answered as such
                t.rule, t.a = hit
                if self._sh(t.a) != n:
                    return self._moved(job, self._sh(t.a), overlay, fetched)
        else:
            return t
        assert t.a is not None
        if self._sh(t.a) != n:  # a row that names an account of another shard
            return self._moved(job, self._sh(t.a), overlay, fetched)
        keys = [self._ka(t.a)]
        refund = op.req_type == core.EVENT and op.action == core.REFUND_ACCOUNT and op.ref
        if refund:
            keys.append(self._ksn(n, op.ref))
        rows = get(keys, _ALL)
        t.raw_a = rows[0]
        if refund:
            t.raw_ref = rows[1]
        return t

    def _new_subscriber_keys(
        self, n: int, subs: Any, overlay: dict[str, bytes], fetched: dict[str, bytes]
    ) -> dict[str, int]:
        """What resolving a subscriber not cached asks for after its subscription keys, when
        it turns out to be new: its alias keys and the account a provisioning rule names for
        it (in this shard). Read in the same round, a new subscriber's CCR-I costs one read
        round instead of three; for a known subscriber the extra reads are a few GETs in a
        pipeline that is sent anyway. A speculative read is only a read: every row a
        decision rests on is still compared by its script."""
        known = self._cache
        also = {
            k: _NO
            for k in (self._kalias(st, d) for st, d in subs)
            if k not in overlay and k not in fetched and k not in known
        }
        hit = match_rule(self._current_rules(), subs)
        if hit is not None and self._sh(hit[1]) == n:
            ka = self._ka(hit[1])
            if ka not in overlay and ka not in known:
                also[ka] = _ALL
        return also

    def _session_account(self, sid: str, get: Any) -> str | None:
        """The account a Session-Id was opened on (remembered here, or the sidx index)."""
        a = self._sidx.get(sid)
        if a is None:
            (raw,) = get([self._ksidx(sid)], _NO)
            a = raw.decode() if raw else None
        return a

    def _moved(
        self, job: _Job, m: int, overlay: dict[str, bytes], fetched: dict[str, bytes]
    ) -> _Target:
        """The request belongs to shard `m`: ShardMoved, or (unsharded) resolve it there."""
        if self._sharded or job.moves >= 2:
            raise ShardMoved(m)
        job.moves += 1
        job.n = m
        return self._resolve(job, overlay, fetched)

    # -- what a request writes ------------------------------------------------------------

    def _plan(self, op: CCOp, t: _Target) -> tuple[Outcome, Script, Any]:
        """Apply `op` to the rows resolved: the outcome, the script that writes it (or only
        checks the rows, when nothing is written), and the index hint to send after it."""
        n, a, sid = t.n, t.a, op.session_id
        sc = self._script(n)
        ks = self._ksn(n, sid)
        sc.compare(ks, t.raw_s)
        if t.sub is not None:
            sc.compare(t.sub, t.sub_val)
        session = sess_dec.decode(t.raw_s) if t.raw_s else None
        early = core.precheck(op, session)
        if early is not None:
            return early, sc, None
        if a is None:
            return no_account(op), sc, None
        ka = self._ka(a)
        sc.compare(ka, t.raw_a)
        kr = self._ksn(n, op.ref) if op.ref else ""
        if t.raw_ref:
            sc.compare(kr, t.raw_ref)
        elif op.req_type == core.EVENT and op.action == core.REFUND_ACCOUNT and op.ref:
            sc.compare(kr, b"")
        ledger: list[LedgerEntry] = []
        account = acct_dec.decode(t.raw_a) if t.raw_a else None
        rule = t.rule
        if account is None and rule is not None and session is None:
            account = provisioned(rule, a)
            ledger.append(credit(op.now, a, "provision", rule.balance))
        ref_session = sess_dec.decode(t.raw_ref) if t.raw_ref else None
        applied = core.apply_cc(op, account, session, ref_session)
        s = applied.session
        if applied.account is None or s is None:
            return applied.outcome, sc, None
        ledger.extend(applied.ledger)
        open_ = s.state == core.OPEN
        ttl_ms = 0 if open_ else max(1, int((s.expires - op.now) * 1000))
        sc.set(ka, enc.encode(applied.account))
        sc.set(ks, enc.encode(s), ttl_ms)
        r = applied.ref_session
        if r is not None:  # keep the debit record's own expiry
            sc.set(kr, enc.encode(r), max(1, int((r.expires - op.now) * 1000)))
        member = f"{a}\n{sid}"
        if open_:  # the sweep index holds open sessions; finished ones expire by their TTL
            sc.cmd("sadd", self._kss(a), sid)
            sc.cmd("zadd", self._ksweep(n), repr(s.expires), member)
        else:
            sc.cmd("srem", self._kss(a), sid)
            sc.cmd("zrem", self._ksweep(n), member)
        for e in ledger:
            sc.cmd("rpush", self._kl(n), enc.encode(e))
        if rule is not None and not t.raw_a:
            sc.cmd("sadd", self._kaccts(n), a)
            for st, d in op.subscriptions:
                if st == rule.sub_type and d == a:
                    sc.setnx(self._ksub(n, st, d), a)
                    sc.cmd("sadd", self._ksubs(a), f"{st}:{d}")
        hint = None
        if applied.new_session or not open_:
            ksidx = self._ksidx(sid)

            def hint(pipe: Any) -> None:
                pipe.set(ksidx, a, px=ttl_ms or None)

        return applied.outcome, sc, hint
