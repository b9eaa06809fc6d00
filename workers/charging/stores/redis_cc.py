"""Redis credit control: the money path. A request reads the account and session (one MGET),
applies `core` in Python, and writes the result with one compare-and-set script (EVALSHA)
that commits only if neither key changed since the read; on a conflict it re-reads and
retries. So the money rules are the same code as SQLite's and each change is atomic."""

from __future__ import annotations

from typing import Any, cast

from .. import core
from ..core import CCOp, LedgerEntry, Outcome
from ..store import ProvisionRule, StoreUnavailable, match_rule
from .common import credit, no_account, provisioned
from .redis_db import RedisTables, acct_dec, sess_dec

Commit = tuple[Any, ...]  # the arguments of `_queue_commit`


class RedisCreditControl(RedisTables):
    def _account_for(self, op: CCOp) -> tuple[str | None, ProvisionRule | None]:
        """The account of the request's session, else of its identities, else a provisioning rule."""
        return self._accounts_for_many([op])[0]

    def credit_control(self, op: CCOp) -> Outcome:
        a, rule = self._account_for(op)
        if a is None:
            return no_account(op)
        return self._retry(lambda: self._cc(op, a, rule))

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
                out[i] = no_account(op)
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
            for i, raws in zip(wave, reads, strict=True):
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
                    if results[index]:
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
        return cast(list[Outcome | Exception], out)  # every element is set by now

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
        got = iter(self._call(pipe.execute) if len(pipe) else [])
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
    ) -> tuple[Outcome, Commit | None]:
        """Apply `op` to the state read: the outcome, and the `_queue_commit` arguments (None:
        nothing to write). `raw_ref` is a refund's debit event record, as read."""
        session = sess_dec.decode(raw_s) if raw_s else None
        early = core.precheck(op, session)
        if early is not None:
            return early, None
        ledger: list[LedgerEntry] = []
        account = acct_dec.decode(raw_a) if raw_a else None
        if account is None and rule is not None and session is None:
            account = provisioned(rule, a)
            ledger.append(credit(op.now, a, "provision", rule.balance))
        ref_session = sess_dec.decode(raw_ref) if raw_ref else None
        applied = core.apply_cc(op, account, session, ref_session)
        s = applied.session
        if applied.account is None or s is None:
            return applied.outcome, None
        ledger.extend(applied.ledger)
        p = self.p
        sid = op.session_id

        open_ = s.state == core.OPEN
        ttl_ms = 0 if open_ else max(1, int((s.expires - op.now) * 1000))

        def extra(pipe: Any) -> None:
            # The sweep index holds open sessions only; finished ones expire with their TTL.
            if open_:
                pipe.zadd(f"{p}:sweep", {f"{a}\n{sid}": s.expires})
            else:
                pipe.zrem(f"{p}:sweep", f"{a}\n{sid}")
            if applied.new_session or not open_:
                pipe.set(self._ksidx(sid), a, px=ttl_ms or None)
            if rule is not None and raw_a is None:
                pipe.sadd(f"{p}:accounts", a)
                for t, d in op.subscriptions:
                    if t == rule.sub_type and d == a:
                        pipe.set(self._ksub(t, d), a, nx=True)
                        pipe.sadd(self._ksubs(a), f"{t}:{d}")

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
