"""The embedded default store: one SQLite file in WAL mode, shared by all worker processes.

Each credit-control request is one BEGIN IMMEDIATE ... COMMIT. By default (`store.durable`)
the file runs WAL with synchronous=FULL: a commit is fsynced before the answer it backs leaves,
so a grant or a debit that a client saw survives a power cut. With `durable = false`
(synchronous=NORMAL) a committed transaction still survives the crash of any process (the WAL
is in the OS page cache), but a power loss or kernel crash can lose the last transactions,
whole, never half. Writers queue on SQLite's write lock; the wait is a short spin with backoff in
Python (SQLite's own busy handler sleeps in whole milliseconds), bounded by `timeout` (and, on
a running event loop, by the turn's budget: see `store.turn_deadline`), after which
StoreUnavailable is raised and the request is answered 3004.

Rf records are kept apart, in `SqliteCdrStore` (its own file, synchronous=FULL: a record
acknowledged with 2001 survives a power cut, and Rf never waits for Gy's write lock).

Opening is serialised across processes by an flock on `<file>.lock`: two workers starting on
a fresh data directory would otherwise race on `PRAGMA journal_mode=WAL`, which SQLite does
not retry (its busy handler is not called when two connections would deadlock).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import msgspec
import orjson

from . import core
from .core import Account, CCOp, LedgerEntry, Outcome, Session
from .store import (
    AccountInfo,
    AccountRow,
    Cdr,
    Notice,
    ProvisionRule,
    StoreBusy,
    StoreError,
    StoreUnavailable,
    SySubscription,
    match_rule,
    turn_deadline,
)

T = TypeVar("T")


class _Busy(StoreBusy):
    """The write lock is held by another process (only raised when not waiting)."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, balance INTEGER NOT NULL, reserved INTEGER NOT NULL DEFAULT 0,
    credit_limit INTEGER NOT NULL DEFAULT 0, blocked INTEGER NOT NULL DEFAULT 0,
    spent INTEGER NOT NULL DEFAULT 0, period TEXT NOT NULL DEFAULT '', sy INTEGER NOT NULL DEFAULT 0,
    CHECK (balance - reserved >= credit_limit OR reserved = 0)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriptions (
    sub_type INTEGER, sub_data TEXT, account TEXT NOT NULL, PRIMARY KEY (sub_type, sub_data)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS subscriptions_account ON subscriptions(account);
CREATE TABLE IF NOT EXISTS rules (
    sub_type INTEGER, prefix TEXT, balance INTEGER, credit_limit INTEGER, PRIMARY KEY (sub_type, prefix)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, account TEXT NOT NULL, state INTEGER NOT NULL, expires REAL NOT NULL,
    fui INTEGER NOT NULL DEFAULT 0, data BLOB NOT NULL
) WITHOUT ROWID;
-- the sweep looks up silent open sessions and expired finished ones by (state, expires)
CREATE INDEX IF NOT EXISTS sessions_sweep ON sessions(state, expires);
DROP INDEX IF EXISTS sessions_expires;
CREATE INDEX IF NOT EXISTS sessions_account ON sessions(account);
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY, ts REAL, account TEXT, kind TEXT, session TEXT, number INTEGER,
    key TEXT, units INTEGER, price INTEGER, unit INTEGER, amount INTEGER, shortfall INTEGER,
    ref TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS notices (
    seq INTEGER PRIMARY KEY, kind TEXT, session TEXT, account TEXT, client_host TEXT, client_realm TEXT
);
CREATE TABLE IF NOT EXISTS sy (session TEXT PRIMARY KEY, account TEXT, data BLOB) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sy_account ON sy(account);
"""

CDR_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cdrs (
    session TEXT, number INTEGER, sub INTEGER, received REAL, data BLOB,
    PRIMARY KEY (session, number, sub)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cdrs_received ON cdrs(received);
"""

_ACCT_COLS = "id, balance, reserved, credit_limit, blocked, spent, period, sy"
WAL_AUTOCHECKPOINT = 8192  # pages (1 KiB)
_CACHE_MAX = 65536  # entries per cache dict; the oldest goes first
_sess_enc = msgspec.msgpack.Encoder()
_sess_dec = msgspec.msgpack.Decoder(Session)
_sy_dec = msgspec.msgpack.Decoder(SySubscription)
_cdr_dec = msgspec.json.Decoder(Cdr)


def _bucket(expires: float, tcc: float) -> float:
    """Expiry rounded up to a tenth of Tcc (at most 10 s): the sweep index then changes
    rarely while a session is busy, and a session is swept at most Tcc/10 late."""
    step = min(10.0, tcc / 10) or 0.001
    return -(-expires // step) * step


def _account(row: tuple) -> Account:
    return Account(row[0], row[1], row[2], row[3], bool(row[4]), row[5], row[6], row[7])


SWEEP_BUDGET = 0.02  # seconds one sweep or purge call may take (it runs on the worker's loop)
SWEEP_CHUNK = 256  # finished sessions (or CDRs) deleted per transaction
RELEASE_CHUNK = 16  # silent open sessions released per transaction
_DONE = (core.CLOSED, core.EVENT_DONE)  # finished session states


@contextlib.contextmanager
def _setup_lock(path: str, timeout: float) -> Iterator[None]:
    """Hold an flock on `<path>.lock` (beside the database) while a connection is set up."""
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"sqlite {path}: set-up lock not free in {timeout}s"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _connect(
    path: str,
    timeout: float,
    synchronous: str,
    schema: str,
    init: Callable[[sqlite3.Connection], None] | None = None,
) -> sqlite3.Connection:
    """A set-up connection: WAL, 1 KiB pages, the schema, then `init(db)`. Done under the
    set-up flock, and retried until `timeout` should a running process briefly hold the
    database."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    deadline = time.monotonic() + timeout
    with _setup_lock(path, timeout):
        while True:
            db: sqlite3.Connection | None = None
            try:
                db = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
                left = max(deadline - time.monotonic(), 0.001)
                db.execute(f"PRAGMA busy_timeout={int(left * 1000)}")
                # Small pages: a commit writes every page it touched to the WAL, so 1 KiB pages
                # make a credit-control transaction (about five pages) markedly cheaper.
                db.execute("PRAGMA page_size=1024")
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(f"PRAGMA synchronous={synchronous}")
                # Checkpoint every 8 MiB of WAL rather than every 1 MiB: a hot page (ledger
                # tail, session and account pages) is then copied back once for many commits.
                db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
                db.execute("PRAGMA journal_size_limit=67108864")
                db.execute("PRAGMA mmap_size=268435456")
                db.executescript(schema)  # idempotent
                if init is not None:
                    init(db)
                db.execute("PRAGMA busy_timeout=0")
                return db
            except sqlite3.Error as exc:
                if db is not None:
                    db.close()
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(f"sqlite {path}: {exc}") from exc
                time.sleep(0.01)


def _begin(db: sqlite3.Connection, path: str, wait: bool, timeout: float) -> None:
    """BEGIN IMMEDIATE, waiting for the write lock until `turn_deadline(timeout)`; with
    wait=False raise _Busy at once when another process holds it."""
    deadline = 0.0
    delay = 0.00002
    while True:
        try:
            db.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            msg = str(exc)
            if "locked" not in msg and "busy" not in msg:
                raise StoreUnavailable(f"sqlite {path}: {exc}") from exc
            if not wait:
                raise _Busy(f"sqlite {path}: write lock busy") from exc
            if not deadline:
                deadline = turn_deadline(timeout)
            if time.monotonic() >= deadline:
                raise StoreUnavailable(f"sqlite {path}: write lock not free in time") from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.002)


class SqliteStore:
    """See the module docstring. One instance per process; not thread-safe."""

    def __init__(
        self, path: str, *, timeout: float = 2.0, setup_timeout: float = 10.0, durable: bool = True
    ) -> None:
        self.path = path
        self.timeout = timeout
        self._nowait = False

        def migrate(db: sqlite3.Connection) -> None:  # under the set-up flock
            self.db = db
            self._migrate_ledger()

        sync = "FULL" if durable else "NORMAL"
        self.db = _connect(path, max(setup_timeout, timeout), sync, SCHEMA, migrate)
        self._rules: list[ProvisionRule] = []
        self._rules_at = 0.0
        # Row cache for credit control (see `_txn`): session id -> (session, stored expiry
        # bucket), account id -> account, (sub_type, data) -> account id. Objects here are
        # exactly what this connection last wrote or read inside a write transaction.
        self._sessions: dict[str, tuple[Session, float]] = {}
        self._accounts: dict[str, Account] = {}
        self._subs: dict[tuple[int, str], str] = {}
        self._data_version = -1

    # -- plumbing -------------------------------------------------------------------------

    def _txn(self, fn: Callable[[], T], wait: bool = True, keep_cache: bool = False) -> T:
        """Run `fn` in one write transaction, waiting for the write lock at most `timeout`
        (on a running event loop: the turn's budget, `store.turn_deadline`), or, with
        wait=False or inside `nowait()`, raising _Busy at once when another process holds it.

        The row cache is trusted only while no other connection has committed: right after
        BEGIN IMMEDIATE (we hold the write lock, so nobody can commit until we finish) a
        changed `PRAGMA data_version` drops it. It is also dropped on any failure (rolled-back
        writes may already be in it) and before any transaction that is not credit control
        (keep_cache=False), since those write accounts and sessions behind the cache's back."""
        db = self.db
        _begin(db, self.path, wait and not self._nowait, self.timeout)
        try:
            version = db.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version or not keep_cache:
                self._drop_cache()
                self._data_version = version
            result = fn()
            db.execute("COMMIT")
            return result
        except BaseException as exc:
            self._drop_cache()
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc
            raise

    @contextlib.contextmanager
    def nowait(self) -> Iterator[None]:
        """Inside it, a write that finds the lock held raises StoreBusy at once (nothing done)."""
        before, self._nowait = self._nowait, True
        try:
            yield
        finally:
            self._nowait = before

    def _drop_cache(self) -> None:
        self._sessions.clear()
        self._accounts.clear()
        self._subs.clear()

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
            a = self._load_account(account_id)
            if a is not None:
                self._cache_account(a)
        return a

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    def _load_account(self, account_id: str) -> Account | None:
        row = self.db.execute(
            f"SELECT {_ACCT_COLS} FROM accounts WHERE id=?", (account_id,)
        ).fetchone()
        return _account(row) if row else None

    def _save_account(self, a: Account) -> None:
        self.db.execute(
            "UPDATE accounts SET balance=?, reserved=?, credit_limit=?, blocked=?, spent=?, period=?, sy=? WHERE id=?",
            (a.balance, a.reserved, a.credit_limit, int(a.blocked), a.spent, a.period, a.sy, a.id),
        )

    def _insert_account(self, a: Account) -> None:
        self.db.execute(
            f"INSERT INTO accounts ({_ACCT_COLS}) VALUES (?,?,?,?,?,?,?,?)",
            (a.id, a.balance, a.reserved, a.credit_limit, int(a.blocked), a.spent, a.period, a.sy),
        )

    _LEDGER_SQL = (
        "INSERT INTO ledger (ts, account, kind, session, number, key, units, price, unit, amount, shortfall, ref)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
    )

    def _migrate_ledger(self) -> None:
        """Add the `ref` column (the debit a refund names) to a ledger made before it existed.
        Done under the write lock, so that two workers opening an old file do not race."""
        cols = [r[1] for r in self.db.execute("PRAGMA table_info(ledger)")]
        if "ref" in cols:
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            cols = [r[1] for r in self.db.execute("PRAGMA table_info(ledger)")]
            if "ref" not in cols:
                self.db.execute("ALTER TABLE ledger ADD COLUMN ref TEXT NOT NULL DEFAULT ''")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def _ledger(self, entries: Iterable[LedgerEntry]) -> None:
        for e in entries:
            self.db.execute(
                self._LEDGER_SQL,
                (
                    e.ts,
                    e.account,
                    e.kind,
                    e.session,
                    e.number,
                    e.key,
                    e.units,
                    e.price,
                    e.unit,
                    e.amount,
                    e.shortfall,
                    e.ref,
                ),
            )

    def _current_rules(self) -> list[ProvisionRule]:
        now = time.monotonic()
        if now - self._rules_at > 5.0:
            self._rules = [
                ProvisionRule(*r)
                for r in self.db.execute(
                    "SELECT sub_type, prefix, balance, credit_limit FROM rules"
                )
            ]
            self._rules_at = now
        return self._rules

    def _resolve(
        self,
        subs: list[tuple[int, str]],
        now: float,
        create: bool,
        defer: list[Account] | None = None,
    ) -> Account | None:
        """The account of the first known identity, else one a provisioning rule makes.

        With `defer`, a new account is not inserted here but appended to it: the caller inserts
        it with its final state, one statement instead of an INSERT and an UPDATE."""
        db = self.db
        for sub_type, data in subs:
            row = db.execute(
                "SELECT account FROM subscriptions WHERE sub_type=? AND sub_data=?",
                (sub_type, data),
            ).fetchone()
            if row:
                return self._load_account(row[0])
        hit = match_rule(self._current_rules(), subs)
        if hit is None:
            return None
        rule, data = hit
        acct = self._load_account(data)
        if acct is None:
            acct = Account(data, rule.balance, 0, rule.credit_limit)
            if create:
                if defer is not None:
                    defer.append(acct)
                else:
                    self._insert_account(acct)
                self._ledger(
                    [LedgerEntry(now, data, "credit", "", 0, "provision", 0, 0, 1, rule.balance)]
                )
        if create:
            db.execute(
                "INSERT OR IGNORE INTO subscriptions VALUES (?,?,?)", (rule.sub_type, data, acct.id)
            )
        return acct

    # -- credit control -------------------------------------------------------------------

    def credit_control(self, op: CCOp) -> Outcome:
        return self._txn(lambda: self._cc(op), keep_cache=True)

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
        for i in range(0, len(ops), 64):
            chunk = ops[i : i + 64]
            try:
                out.extend(
                    self._txn(
                        lambda chunk=chunk: [self._cc(op) for op in chunk],
                        wait or i > 0,
                        keep_cache=True,
                    )
                )
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

    def _cc(self, op: CCOp) -> Outcome:
        """One request inside the caller's transaction. Rows come from the cache when it has
        them (see `_txn`); every change is still written to SQLite here."""
        db = self.db
        account: Account | None
        session: Session | None
        hit = self._sessions.get(op.session_id)
        if hit is not None:
            session, bucket = hit
            account = self._cached_account(session.account)
        else:
            row = db.execute(
                "SELECT s.data, s.expires, a.id, a.balance, a.reserved, a.credit_limit, a.blocked, a.spent, a.period, a.sy"
                " FROM sessions s LEFT JOIN accounts a ON a.id = s.account WHERE s.id=?",
                (op.session_id,),
            ).fetchone()
            if row is not None:
                session, bucket = _sess_dec.decode(row[0]), row[1]
                account = self._cache_account(_account(row[2:])) if row[2] is not None else None
            else:
                session, bucket, account = None, 0.0, None
        early = core.precheck(op, session)
        if early is not None:
            return early
        ref = self._ref_session(op)
        if session is not None:
            applied, inserted = core.apply_cc(op, account, session, ref), False
        else:
            applied, inserted = self._cc_new(op, ref)
        if applied.account is not None:
            if not inserted:
                self._save_account(applied.account)
        elif account is not None:  # apply_cc may have touched it without a write: forget it
            self._accounts.pop(account.id, None)
        if applied.ledger:
            self._ledger(applied.ledger)
        r = applied.ref_session
        if r is not None:  # a refunded debit event: what is left to refund
            db.execute("UPDATE sessions SET data=? WHERE id=?", (_sess_enc.encode(r), r.id))
        s = applied.session
        if s is not None:
            new_bucket = _bucket(s.expires, op.tcc)
            if applied.new_session:
                db.execute(
                    "INSERT INTO sessions (id, account, state, expires, fui, data) VALUES (?,?,?,?,?,?)",
                    (s.id, s.account, s.state, new_bucket, int(s.fui), _sess_enc.encode(s)),
                )
            elif new_bucket != bucket:
                db.execute(
                    "UPDATE sessions SET state=?, expires=?, fui=?, data=? WHERE id=?",
                    (s.state, new_bucket, int(s.fui), _sess_enc.encode(s), s.id),
                )
            else:  # leave the expiry index alone when the bucket did not move
                db.execute(
                    "UPDATE sessions SET state=?, fui=?, data=? WHERE id=?",
                    (s.state, int(s.fui), _sess_enc.encode(s), s.id),
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
        return _sess_dec.decode(row[0]) if row else None

    def _cc_new(self, op: CCOp, ref: Session | None = None) -> tuple[core.Applied, bool]:
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
                    continue
                acct_id = row[0]
                if len(subs_cache) >= _CACHE_MAX:
                    del subs_cache[next(iter(subs_cache))]
                subs_cache[key] = acct_id
            account = self._cached_account(acct_id)
            return core.apply_cc(op, account, None, ref), False
        hit = match_rule(self._current_rules(), op.subscriptions)
        if hit is None:
            return core.apply_cc(op, None, None, ref), False
        rule, data = hit
        account = self._accounts.get(data)
        fresh = account is None
        if fresh:
            account = Account(data, rule.balance, 0, rule.credit_limit)
        applied = core.apply_cc(op, account, None, ref)
        inserted = False
        if fresh:
            a = applied.account or account
            cur = self.db.execute(
                f"INSERT INTO accounts ({_ACCT_COLS}) VALUES (?,?,?,?,?,?,?,?)"
                " ON CONFLICT (id) DO NOTHING",
                (
                    a.id,
                    a.balance,
                    a.reserved,
                    a.credit_limit,
                    int(a.blocked),
                    a.spent,
                    a.period,
                    a.sy,
                ),
            )
            if cur.rowcount == 1:
                inserted = True
                self._cache_account(a)
                self._ledger(
                    [LedgerEntry(op.now, data, "credit", "", 0, "provision", 0, 0, 1, rule.balance)]
                )
            else:
                account = self._cached_account(data)
                # the first try may have changed `ref` in place: read it again
                applied = core.apply_cc(op, account, None, self._ref_session(op))
        self.db.execute(
            "INSERT OR IGNORE INTO subscriptions VALUES (?,?,?)", (rule.sub_type, data, data)
        )
        self._subs[(rule.sub_type, data)] = data
        return applied, inserted

    def resolve(self, subscriptions: list[tuple[int, str]]) -> Account | None:
        try:
            return self._resolve(subscriptions, time.time(), create=False)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    def provision(self, subscriptions: list[tuple[int, str]], now: float) -> Account | None:
        """Resolve, creating the account from a provisioning rule when one matches."""
        return self._txn(lambda: self._resolve(subscriptions, now, create=True))

    def sweep(self, now: float, closed_ttl: float, limit: int = 500) -> int:
        """Release reservations of open sessions idle past Tcc (at most `limit`), and forget
        finished sessions past their TTL.

        It runs on the worker's loop beside request traffic, so it works in small
        transactions (RELEASE_CHUNK releases, SWEEP_CHUNK deletions) that hold the write lock
        for a few ms each, stops after SWEEP_BUDGET, and never waits for the lock: what is
        left is done on the next tick. Returns the number of sessions released."""
        db = self.db

        def release() -> int:
            rows = db.execute(
                f"SELECT id, data FROM sessions WHERE state = {core.OPEN} AND expires < ? LIMIT ?",
                (now, min(RELEASE_CHUNK, limit - released)),
            ).fetchall()
            for sid, data in rows:
                s = _sess_dec.decode(data)
                acct = self._load_account(s.account)
                core.release_session(acct, s, now, closed_ttl)
                if acct is not None:
                    self._save_account(acct)
                db.execute(
                    "UPDATE sessions SET state=?, expires=?, fui=0, data=? WHERE id=?",
                    (s.state, s.expires, _sess_enc.encode(s), sid),
                )
            return len(rows)

        def forget() -> int:
            return db.execute(
                "DELETE FROM sessions WHERE id IN"
                f" (SELECT id FROM sessions WHERE state IN {_DONE} AND expires < ? LIMIT ?)",
                (now, SWEEP_CHUNK),
            ).rowcount

        deadline = time.monotonic() + SWEEP_BUDGET
        released = 0
        try:
            while released < limit and time.monotonic() < deadline:
                n = self._txn(release, wait=False)
                released += n
                if n < RELEASE_CHUNK:
                    break
            # Only finished sessions go: the row cache holds open ones, so it stays valid.
            while time.monotonic() < deadline:
                if self._txn(forget, wait=False, keep_cache=True) < SWEEP_CHUNK:
                    break
        except _Busy:
            pass  # another process has the lock: the next tick goes on
        return released

    def take_notices(self, limit: int = 100) -> list[Notice]:
        def run() -> list[Notice]:
            rows = self.db.execute(
                "DELETE FROM notices WHERE seq IN (SELECT seq FROM notices ORDER BY seq LIMIT ?)"
                " RETURNING kind, session, account, client_host, client_realm",
                (limit,),
            ).fetchall()
            return [Notice(*r) for r in rows]

        if not self._read("SELECT 1 FROM notices LIMIT 1"):
            return []
        return self._txn(run, keep_cache=True)  # notices only

    # -- accounts -------------------------------------------------------------------------

    def import_accounts(self, rows: Iterable[AccountRow], now: float) -> int:
        rows = list(rows)
        return self._txn(lambda: self._import(rows, now))

    def _import(self, rows: list[AccountRow], now: float) -> int:
        db = self.db
        for r in rows:
            acct = self._load_account(r.id)
            if acct is None:
                acct = Account(r.id, 0, 0, r.credit_limit, r.blocked)
                self._insert_account(acct)
            delta = r.balance - acct.balance
            if delta:
                self._ledger([LedgerEntry(now, r.id, "credit", "", 0, "import", 0, 0, 1, delta)])
            acct.balance = r.balance
            acct.credit_limit = r.credit_limit
            acct.blocked = r.blocked
            if acct.balance - acct.reserved < acct.credit_limit and acct.reserved:
                raise StoreError(f"account {r.id}: balance below limit plus reservations")
            self._save_account(acct)
            for sub_type, data in r.subscriptions:
                db.execute(
                    "INSERT OR REPLACE INTO subscriptions VALUES (?,?,?)",
                    (sub_type, data, r.id),
                )
        return len(rows)

    def get_account(self, account_id: str) -> AccountInfo | None:
        acct = self._load_account(account_id)
        if acct is None:
            row = self._read("SELECT account FROM subscriptions WHERE sub_data=?", (account_id,))
            acct = self._load_account(row[0][0]) if row else None
        if acct is None:
            return None
        subs = [
            tuple(r)
            for r in self._read(
                "SELECT sub_type, sub_data FROM subscriptions WHERE account=?", (acct.id,)
            )
        ]
        n = self._read("SELECT count(*) FROM sessions WHERE account=? AND state=1", (acct.id,))[0][
            0
        ]
        return AccountInfo(acct, subs, n)  # type: ignore[arg-type]

    def _notify(self, kind: str, account_id: str, fui_only: bool) -> None:
        sql = "SELECT id, data FROM sessions WHERE account=? AND state=1" + (
            " AND fui=1" if fui_only else ""
        )
        for sid, data in self.db.execute(sql, (account_id,)).fetchall():
            s = _sess_dec.decode(data)
            self.db.execute(
                "INSERT INTO notices (kind, session, account, client_host, client_realm) VALUES (?,?,?,?,?)",
                (kind, sid, account_id, s.client_host, s.client_realm),
            )

    def topup(self, account_id: str, amount: int, now: float) -> Account:
        if amount <= 0:
            raise StoreError("a top-up amount must be positive")

        def run() -> Account:
            acct = self._load_account(account_id)
            if acct is None:
                raise StoreError(f"no account {account_id!r}")
            acct.balance += amount
            self._save_account(acct)
            self._ledger([LedgerEntry(now, account_id, "credit", "", 0, "topup", 0, 0, 1, amount)])
            self._notify("rar", account_id, fui_only=True)
            return acct

        return self._txn(run)

    def set_blocked(self, account_id: str, blocked: bool) -> Account:
        def run() -> Account:
            acct = self._load_account(account_id)
            if acct is None:
                raise StoreError(f"no account {account_id!r}")
            changed = acct.blocked != blocked
            acct.blocked = blocked
            self._save_account(acct)
            if blocked and changed:
                self._notify("asr", account_id, fui_only=False)
            return acct

        return self._txn(run)

    def set_rules(self, rules: list[ProvisionRule]) -> None:
        self._txn(lambda: self._set_rules(rules))

    def _set_rules(self, rules: list[ProvisionRule]) -> None:
        self.db.execute("DELETE FROM rules")
        self.db.executemany(
            "INSERT INTO rules VALUES (?,?,?,?)",
            [(r.sub_type, r.prefix, r.balance, r.credit_limit) for r in rules],
        )
        self._rules_at = 0.0

    def rules(self) -> list[ProvisionRule]:
        return [
            ProvisionRule(*r)
            for r in self._read("SELECT sub_type, prefix, balance, credit_limit FROM rules")
        ]

    def seed_demo(self, rows: list[AccountRow], rules: list[ProvisionRule], now: float) -> bool:
        """Seed once per data directory, in one transaction: the first worker to get the
        write lock does it; a crash half-way leaves nothing behind."""

        def run() -> bool:
            if self.db.execute("SELECT 1 FROM meta WHERE k='seeded'").fetchone():
                return False
            self.db.execute("INSERT INTO meta VALUES ('seeded', ?)", (str(now),))
            self._import(rows, now)
            self._set_rules(rules)
            return True

        return self._txn(run)

    # -- Sy -------------------------------------------------------------------------------

    def sy_put(self, sub: SySubscription) -> None:
        def run() -> None:
            old = self.db.execute(
                "SELECT account FROM sy WHERE session=?", (sub.session_id,)
            ).fetchone()
            if old is None or old[0] != sub.account:
                if old is not None:
                    self.db.execute("UPDATE accounts SET sy = max(sy - 1, 0) WHERE id=?", (old[0],))
                self.db.execute("UPDATE accounts SET sy = sy + 1 WHERE id=?", (sub.account,))
            self.db.execute(
                "INSERT OR REPLACE INTO sy VALUES (?,?,?)",
                (sub.session_id, sub.account, _sess_enc.encode(sub)),
            )

        self._txn(run)

    def sy_get(self, session_id: str) -> SySubscription | None:
        row = self._read("SELECT data FROM sy WHERE session=?", (session_id,))
        return _sy_dec.decode(row[0][0]) if row else None

    def sy_delete(self, session_id: str) -> SySubscription | None:
        def run() -> SySubscription | None:
            row = self.db.execute(
                "DELETE FROM sy WHERE session=? RETURNING data", (session_id,)
            ).fetchone()
            if row is None:
                return None
            sub = _sy_dec.decode(row[0])
            self.db.execute("UPDATE accounts SET sy = max(sy - 1, 0) WHERE id=?", (sub.account,))
            return sub

        return self._txn(run)

    def sy_for_account(self, account_id: str) -> list[SySubscription]:
        return [
            _sy_dec.decode(r[0])
            for r in self._read("SELECT data FROM sy WHERE account=?", (account_id,))
        ]

    # -- iteration for checks and CLIs -----------------------------------------------------

    def iter_accounts(self) -> Iterator[Account]:
        for row in self._read(f"SELECT {_ACCT_COLS} FROM accounts ORDER BY id"):
            yield _account(row)

    def iter_open_sessions(self) -> Iterator[Session]:
        for (data,) in self._read("SELECT data FROM sessions WHERE state=1"):
            yield _sess_dec.decode(data)

    def iter_ledger(self) -> Iterator[LedgerEntry]:
        cur = self.db.execute(
            "SELECT ts, account, kind, session, number, key, units, price, unit, amount, shortfall, ref"
            " FROM ledger ORDER BY seq"
        )
        for row in cur:
            yield LedgerEntry(*row)

    def close(self) -> None:
        self.db.close()


def _adopt(db: sqlite3.Connection, legacy: str) -> None:
    """Copy, once, the records an older version kept in the charging store's `cdrs` table.
    Runs under the set-up flock; the legacy file is only read."""
    if db.execute("SELECT 1 FROM meta WHERE k='legacy'").fetchone():
        return
    db.execute("ATTACH DATABASE ? AS legacy", (legacy,))
    try:
        db.execute("BEGIN")  # deferred: only this file is written
        try:
            if db.execute(
                "SELECT 1 FROM legacy.sqlite_master WHERE type='table' AND name='cdrs'"
            ).fetchone():
                db.execute(
                    "INSERT OR IGNORE INTO main.cdrs"
                    " SELECT session, number, sub, received, data FROM legacy.cdrs"
                )
            db.execute("INSERT INTO main.meta VALUES ('legacy', ?)", (legacy,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    finally:
        db.execute("DETACH DATABASE legacy")


class SqliteCdrStore:
    """Rf records in their own SQLite file, WAL with synchronous=FULL: each commit is fsynced
    before it returns, so a record answered 2001 survives a power cut. One transaction per
    batch of ACRs (one fsync for all). `legacy` names the charging store whose `cdrs` table
    older versions wrote; its records are copied here once."""

    def __init__(
        self, path: str, *, timeout: float = 2.0, setup_timeout: float = 10.0, legacy: str = ""
    ) -> None:
        self.path = path
        self.timeout = timeout
        self._nowait = False

        def adopt(db: sqlite3.Connection) -> None:
            if legacy and os.path.exists(legacy):
                _adopt(db, legacy)

        self.db = _connect(path, max(setup_timeout, timeout), "FULL", CDR_SCHEMA, adopt)

    @contextlib.contextmanager
    def nowait(self) -> Iterator[None]:
        before, self._nowait = self._nowait, True
        try:
            yield
        finally:
            self._nowait = before

    def _txn(self, fn: Callable[[], T], wait: bool = True) -> T:
        db = self.db
        _begin(db, self.path, wait and not self._nowait, self.timeout)
        try:
            result = fn()
            db.execute("COMMIT")
            return result
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc
            raise

    def put_cdrs(self, cdrs: list[Cdr]) -> list[bool]:
        """Store the records in one durable commit; True for each one not stored before."""
        rows = [
            (c.session_id, c.record_number, c.sub_session, c.received, msgspec.json.encode(c))
            for c in cdrs
        ]

        def run() -> list[bool]:
            ins = self.db.execute
            return [
                ins("INSERT OR IGNORE INTO cdrs VALUES (?,?,?,?,?)", r).rowcount == 1 for r in rows
            ]

        return self._txn(run)

    def put_cdr(self, cdr: Cdr) -> bool:
        return self.put_cdrs([cdr])[0]

    def iter_cdrs(self, since: float | None = None) -> Iterator[Cdr]:
        try:
            cur = self.db.execute(
                "SELECT data FROM cdrs WHERE received >= ? ORDER BY received", (since or 0.0,)
            )
            for (data,) in cur:
                yield _cdr_dec.decode(data)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    def purge(self, before: float, budget: float = SWEEP_BUDGET) -> int:
        """Delete records received before `before`, in small transactions for at most
        `budget` seconds, never waiting for the lock; returns how many went."""

        def run() -> int:
            return self.db.execute(
                "DELETE FROM cdrs WHERE (session, number, sub) IN (SELECT session, number, sub"
                " FROM cdrs WHERE received < ? ORDER BY received LIMIT ?)",
                (before, SWEEP_CHUNK),
            ).rowcount

        deadline = time.monotonic() + budget
        gone = 0
        try:
            while time.monotonic() < deadline:
                n = self._txn(run, wait=False)
                gone += n
                if n < SWEEP_CHUNK:
                    break
        except _Busy:
            pass
        return gone

    def close(self) -> None:
        self.db.close()


def dumps_cdr(cdr: Cdr) -> bytes:
    return orjson.dumps(msgspec.to_builtins(cdr))
