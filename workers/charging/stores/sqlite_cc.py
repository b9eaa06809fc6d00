"""SQLite credit control: the money path. Each request (or chunk of 64, group commit) is one
BEGIN IMMEDIATE ... COMMIT that loads the account and session, applies `core` and writes the
result; rows are served from the connection's cache while no other connection has committed
(see `SqliteTables`).

The writes every request makes (its account's new state, its open session's new `data`)
are collected per chunk and written by one executemany each before the chunk's COMMIT
(one statement instead of one per request, ~1.2 us less CPU per row). A row written so
is read back from what is pending, never from SQLite, until it is written; any other
write of a session drops what is pending for it (that write carries the newer `data`)."""

from __future__ import annotations

from functools import partial
from typing import Any

from chargegw.sharding import NotOwner, ShardMoved

from .. import core
from ..core import Account, CCOp, LedgerEntry, Outcome, Session
from ..store import StoreUnavailable, match_rule
from .common import credit, provisioned
from .sqlite_db import (
    ACCT_COLS,
    SqliteTables,
    _Busy,
    account_of,
    account_values,
    sess_dec,
    sess_enc,
)

CHUNK = 64  # requests per transaction in a batch
_SAVE_ACCOUNT = (
    "UPDATE accounts SET balance=?, reserved=?, credit_limit=?, blocked=?, spent=?, period=?,"
    " sy=? WHERE id=?"
)
_SAVE_SESSION = "UPDATE sessions SET data=? WHERE id=?"
_CACHE_MAX = 65536  # entries per cache dict; the oldest goes first


def _bucket(expires: float, tcc: float) -> float:
    """Expiry rounded up to a tenth of Tcc (at most 10 s): the sweep index then changes
    rarely while a session is busy, and a session is swept at most Tcc/10 late."""
    step = min(10.0, tcc / 10) or 0.001
    return -(-expires // step) * step


def _account_put(put: tuple[Any, ...]) -> Account:
    """The Account a pending `_SAVE_ACCOUNT` row writes."""
    return Account(put[7], put[0], put[1], put[2], bool(put[3]), put[4], put[5], put[6])


class SqliteCreditControl(SqliteTables):
    # the running chunk's pending writes: account id -> _SAVE_ACCOUNT's parameters, and
    # session id -> _SAVE_SESSION's (its new `data`, its id); see the module's docstring
    _put_accounts: dict[str, tuple[Any, ...]] = {}  # noqa: RUF012  (each chunk sets its own)
    _put_sessions: dict[str, tuple[bytes, str]] = {}  # noqa: RUF012

    def credit_control(self, op: CCOp) -> Outcome:
        out = self._txn(lambda: self._chunk([op])[0], keep_cache=True)
        if isinstance(out, Exception):  # ShardMoved / NotOwner: nothing was applied
            raise out
        return out

    def _chunk(self, ops: list[CCOp]) -> list[Outcome | Exception]:
        """The requests of one transaction; their ledger entries are written together. A
        request whose shard is not served here gets its ShardMoved (or NotOwner), raised by
        `_cc` before it wrote anything; the others go on."""
        ledger: list[LedgerEntry] = []
        out: list[Outcome | Exception] = []
        accounts: dict[str, tuple[Any, ...]] = {}
        sessions: dict[str, tuple[bytes, str]] = {}
        self._put_accounts, self._put_sessions = accounts, sessions
        try:
            for op in ops:
                try:
                    out.append(self._cc(op, ledger))
                except ShardMoved as exc:
                    out.append(exc)
            db = self.db
            if accounts:
                db.executemany(_SAVE_ACCOUNT, accounts.values())
            if sessions:
                db.executemany(_SAVE_SESSION, sessions.values())
        finally:  # written, or rolled back with the transaction
            self._put_accounts, self._put_sessions = {}, {}
        if ledger:
            self._ledger(ledger)
        return out

    def credit_control_many(
        self, ops: list[CCOp], wait: bool = True
    ) -> list[Outcome | Exception] | None:
        """Several requests in chunks of 64, each chunk one transaction (group commit): one
        write-lock round and one WAL commit per chunk. Should a chunk fail, each of its
        requests is redone in its own transaction.

        The list has one element per request, in order: its outcome, or the exception that
        request met. Each request is answered by its own fate: once a chunk has committed, its
        outcomes stand whatever happens to later chunks; when the store becomes unavailable,
        that request and every one after it (none of them applied) get the StoreUnavailable.

        With wait=False it returns None, having done nothing, when another process holds the
        write lock: the caller can then gather more requests and try again, instead of
        sleeping with its event loop blocked."""
        out: list[Outcome | Exception] = []
        for i in range(0, len(ops), CHUNK):
            chunk = ops[i : i + CHUNK]

            try:
                out.extend(self._txn(partial(self._chunk, chunk), wait or i > 0, keep_cache=True))
            except _Busy:
                if i == 0:
                    return None
                out.extend(
                    [StoreUnavailable(f"sqlite {self.path}: write lock busy")] * (len(ops) - i)
                )
                return out
            except StoreUnavailable as exc:
                out.extend([exc] * (len(ops) - i))
                return out
            except Exception:
                for k, op in enumerate(chunk):
                    try:
                        out.append(self.credit_control(op))
                    except StoreUnavailable as exc:
                        out.extend([exc] * (len(ops) - i - k))
                        return out
                    except Exception as exc:
                        out.append(exc)
        return out

    def _cache_account(self, a: Account) -> Account:
        """The cached object for this account (the one all writes must go through)."""
        accounts = self._accounts
        cached = accounts.get(a.id)
        if cached is not None:
            return cached
        if len(accounts) >= _CACHE_MAX:
            del accounts[next(iter(accounts))]
        accounts[a.id] = a
        return a

    def _cached_account(self, account_id: str) -> Account | None:
        a = self._accounts.get(account_id)
        if a is None:
            put = self._put_accounts.get(account_id)
            a = self._load_account(account_id) if put is None else _account_put(put)
            if a is not None:
                self._cache_account(a)
        return a

    def _cc(self, op: CCOp, ledger: list[LedgerEntry]) -> Outcome:
        """One request inside the caller's transaction. Rows come from the cache when it has
        them (see `SqliteTables`); every change is written to SQLite in the transaction: a
        new or changed session row here, the account and a session's new `data` by the
        chunk (`_put_accounts`, `_put_sessions`), its ledger entries added to `ledger`: all
        before the chunk commits."""
        db = self.db
        account: Account | None
        session: Session | None
        if self._fence and op.shard >= 0 and not self._owns(op.shard):
            raise NotOwner(op.shard)
        hit = self._sessions.get(op.session_id)
        if hit is not None:
            session, bucket = hit
            account = self._accounts.get(session.account)
            if account is None:
                account = self._cached_account(session.account)
        else:
            row = db.execute(
                "SELECT s.data, s.expires, a.id, a.balance, a.reserved, a.credit_limit, a.blocked, a.spent, a.period, a.sy"
                " FROM sessions s LEFT JOIN accounts a ON a.id = s.account WHERE s.id=?",
                (op.session_id,),
            ).fetchone()
            if row is not None:
                put_s = self._put_sessions.get(op.session_id)
                session = sess_dec.decode(row[0] if put_s is None else put_s[0])
                bucket = row[1]
                put = self._put_accounts.get(row[2])
                if row[2] is None:
                    account = None
                else:
                    got = account_of(row[2:]) if put is None else _account_put(put)
                    account = self._cache_account(got)
            else:
                session, bucket, account = None, 0.0, None
        if session is not None:
            if self._fence:
                self._here(session.account, op.shard)
        elif self._locator is not None and op.req_type in (core.UPDATE, core.TERMINATION):
            # routed by a Session-Id the gateway forgot: the session may live in another shard
            self._elsewhere(self._locator.session_shard(op.session_id))
        # the indexed and queried columns as stored: unchanged, only `data` is written
        stored = (session.state, session.fui) if session is not None else None
        early = core.precheck(op, session)
        if early is not None:
            return early
        ref = self._ref_session(op) if op.req_type == core.EVENT else None
        if session is not None:
            applied, inserted = core.apply_cc(op, account, session, ref), False
        else:
            applied, inserted = self._cc_new(op, ledger, ref)
        a = applied.account
        if a is not None:
            if not inserted:
                self._put_accounts[a.id] = (
                    a.balance, a.reserved, a.credit_limit, int(a.blocked), a.spent, a.period,
                    a.sy, a.id,
                )  # fmt: skip
        elif account is not None:  # apply_cc may have touched it without a write: forget it
            self._accounts.pop(account.id, None)
        if applied.ledger:
            ledger += applied.ledger
        r = applied.ref_session
        puts = self._put_sessions
        if r is not None:  # a refunded debit event: what is left to refund
            puts[r.id] = (sess_enc.encode(r), r.id)
        s = applied.session
        if s is not None:
            new_bucket = _bucket(s.expires, op.tcc)
            if applied.new_session:
                db.execute(
                    "INSERT INTO sessions (id, account, state, expires, fui, data, shard)"
                    " VALUES (?,?,?,?,?,?,?)",
                    (s.id, s.account, s.state, new_bucket, int(s.fui), sess_enc.encode(s),
                     self._shard(s.account)),
                )  # fmt: skip
            elif s is session and new_bucket == bucket and stored == (s.state, s.fui):
                # the usual update, pending till the chunk's end: only `data` is written, so
                # SQLite leaves the sweep index (state, expires) alone
                puts[s.id] = (sess_enc.encode(s), s.id)
            else:
                if puts:  # this write carries the newer `data`
                    puts.pop(s.id, None)
                if new_bucket != bucket:
                    db.execute(
                        "UPDATE sessions SET state=?, expires=?, fui=?, data=? WHERE id=?",
                        (s.state, new_bucket, int(s.fui), sess_enc.encode(s), s.id),
                    )
                else:  # leave the expiry index alone when the bucket did not move
                    db.execute(
                        "UPDATE sessions SET state=?, fui=?, data=? WHERE id=?",
                        (s.state, int(s.fui), sess_enc.encode(s), s.id),
                    )
            if s.state == core.OPEN:
                sessions = self._sessions
                if s.id not in sessions and len(sessions) >= _CACHE_MAX:
                    del sessions[next(iter(sessions))]
                sessions[s.id] = (s, new_bucket)
            else:  # finished: only a retransmission may still ask, and SQLite has it
                self._sessions.pop(s.id, None)
        elif session is not None:
            self._sessions.pop(session.id, None)
        return applied.outcome

    def _ref_session(self, op: CCOp) -> Session | None:
        """For a refund, the record of the debit event it names (read inside the caller's
        transaction, so that two refunds of one debit see each other)."""
        if op.req_type != core.EVENT or op.action != core.REFUND_ACCOUNT or not op.ref:
            return None
        row = self.db.execute("SELECT data FROM sessions WHERE id=?", (op.ref,)).fetchone()
        if row is None:
            return None
        put = self._put_sessions.get(op.ref)
        return sess_dec.decode(row[0] if put is None else put[0])

    def _cc_new(
        self, op: CCOp, ledger: list[LedgerEntry], ref: Session | None = None
    ) -> tuple[core.Applied, bool]:
        """CCR-I or event of an unknown session: find (or provision) the account and apply;
        also says whether the account row was just inserted with its final state.

        A provisioned account is inserted with its final state by one INSERT ... ON CONFLICT
        DO NOTHING, without reading first; should the id exist after all (an imported account
        named like the identity but not linked to it), the request is applied to that one."""
        subs_cache = self._subs
        for sub_type, sub_data in op.subscriptions:
            key = (sub_type, sub_data)
            acct_id = subs_cache.get(key)
            if acct_id is None:
                row = self.db.execute(
                    "SELECT account FROM subscriptions WHERE sub_type=? AND sub_data=?", key
                ).fetchone()
                if row is None:
                    if self._locator is not None:  # an alias, or an account of another shard
                        self._elsewhere(self._locator.subscription_shard(sub_type, sub_data))
                    continue
                acct_id = row[0]
                if len(subs_cache) >= _CACHE_MAX:
                    del subs_cache[next(iter(subs_cache))]
                subs_cache[key] = acct_id
            self._here(acct_id, op.shard)
            return core.apply_cc(op, self._cached_account(acct_id), None, ref), False
        hit = match_rule(self._current_rules(), op.subscriptions)
        if hit is None:
            return core.apply_cc(op, None, None, ref), False
        rule, data = hit
        self._here(data, op.shard)  # a provisioned account lives in its identity's shard
        cached = self._accounts.get(data)
        account = cached if cached is not None else provisioned(rule, data)
        applied = core.apply_cc(op, account, None, ref)
        inserted = False
        if cached is None:
            a = applied.account or account
            cur = self.db.execute(
                f"INSERT INTO accounts ({ACCT_COLS}, shard) VALUES (?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (id) DO NOTHING",
                (*account_values(a), self._shard(a.id)),
            )
            if cur.rowcount == 1:
                inserted = True
                self._cache_account(a)
                ledger.append(credit(op.now, data, "provision", rule.balance))
            else:
                # the first try may have changed `ref` in place: read it again
                applied = core.apply_cc(op, self._cached_account(data), None, self._ref_session(op))
        self._link(rule.sub_type, data, data)
        self._subs[(rule.sub_type, data)] = data
        return applied, inserted
