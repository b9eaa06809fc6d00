"""SQLite plumbing shared by the charging store and the CDR store: opening a file (WAL, under
a set-up flock), write transactions that wait for the lock within the loop turn's budget, and
the charging store's schema and row helpers.

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
from functools import partial
from typing import Any, Protocol, TypeVar

import msgspec
from msgspec.structs import astuple

from chargegw.sharding import DEFAULT_SHARDS, NotOwner, ShardMoved, shard_of

from ..core import Account, LedgerEntry, Session
from ..store import (
    ProvisionRule,
    ShardLayoutError,
    StoreBusy,
    StoreUnavailable,
    SySubscription,
    turn_deadline,
)
from .common import CachedRules, Nowait

T = TypeVar("T")


class _Busy(StoreBusy):
    """The write lock is held by another process (only raised when not waiting)."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY, balance INTEGER NOT NULL, reserved INTEGER NOT NULL DEFAULT 0,
    credit_limit INTEGER NOT NULL DEFAULT 0, blocked INTEGER NOT NULL DEFAULT 0,
    spent INTEGER NOT NULL DEFAULT 0, period TEXT NOT NULL DEFAULT '', sy INTEGER NOT NULL DEFAULT 0,
    shard INTEGER NOT NULL DEFAULT -1,
    CHECK (balance - reserved >= credit_limit OR reserved = 0)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriptions (
    sub_type INTEGER, sub_data TEXT, account TEXT NOT NULL, shard INTEGER NOT NULL DEFAULT -1,
    PRIMARY KEY (sub_type, sub_data)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS subscriptions_account ON subscriptions(account);
CREATE TABLE IF NOT EXISTS rules (
    sub_type INTEGER, prefix TEXT, balance INTEGER, credit_limit INTEGER, PRIMARY KEY (sub_type, prefix)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, account TEXT NOT NULL, state INTEGER NOT NULL, expires REAL NOT NULL,
    fui INTEGER NOT NULL DEFAULT 0, data BLOB NOT NULL, shard INTEGER NOT NULL DEFAULT -1
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
    seq INTEGER PRIMARY KEY, kind TEXT, session TEXT, account TEXT, client_host TEXT, client_realm TEXT,
    shard INTEGER NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS sy (
    session TEXT PRIMARY KEY, account TEXT, data BLOB, shard INTEGER NOT NULL DEFAULT -1
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sy_account ON sy(account);
-- a shard's subscriptions, sessions and Sy rows are found through its accounts (SHARD_INDEXED)
DROP INDEX IF EXISTS subscriptions_shard;
DROP INDEX IF EXISTS sessions_shard;
DROP INDEX IF EXISTS sy_shard;
-- issue 10: which shards this file holds live, at which fencing generation (sqlite_shards)
CREATE TABLE IF NOT EXISTS shards (
    shard INTEGER PRIMARY KEY, gen INTEGER NOT NULL, state TEXT NOT NULL
) WITHOUT ROWID;
"""

ACCT_COLS = "id, balance, reserved, credit_limit, blocked, spent, period, sy"
# The tables whose rows belong to a shard (issue 10), each with the column naming the account
# whose shard that is: a shard's rows move together. The ledger is history and never moves.
SHARDED_TABLES = {
    "accounts": "id",
    "subscriptions": "account",
    "sessions": "account",
    "sy": "account",
    "notices": "account",
}
# The tables a moving shard's rows are found in by an index on their own `shard` column; the
# others, by their account's index, through the shard's accounts (`shard_rows`). An index on
# `shard` is written on every insert, at one of 64 places: for a batch of CCR-I of new
# subscribers those of subscriptions and sessions were 38% of the pages a commit wrote to the
# WAL. Every such row names an account of its own file (accounts are never deleted, and a
# shard's rows move together). Notices have no account index, and are rare.
SHARD_INDEXED = ("accounts", "notices")
PAGE_SIZE = 4096  # bytes, for a new file (an existing one keeps the size it was made with)
WAL_CHECKPOINT_BYTES = 8 << 20  # the WAL is checkpointed once it holds about this much
WAL_AUTOCHECKPOINT = WAL_CHECKPOINT_BYTES // PAGE_SIZE  # pages, for a file with PAGE_SIZE
SWEEP_CHUNK = 256  # finished sessions (or CDRs) deleted per transaction
sess_enc = msgspec.msgpack.Encoder()
sess_dec = msgspec.msgpack.Decoder(Session)
sy_dec = msgspec.msgpack.Decoder(SySubscription)

# columns in LedgerEntry's field order (rows are msgspec's astuple of an entry)
_LEDGER_SQL = (
    "INSERT INTO ledger (ts, account, kind, session, number, key, units, price, unit, amount, shortfall, ref)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)


def account_of(row: tuple[Any, ...]) -> Account:
    """An Account from a row (or row slice) in ACCT_COLS order."""
    return Account(row[0], row[1], row[2], row[3], bool(row[4]), row[5], row[6], row[7])


def account_values(a: Account) -> tuple[Any, ...]:
    """An account's values in ACCT_COLS order, for an INSERT."""
    return (a.id, a.balance, a.reserved, a.credit_limit, int(a.blocked), a.spent, a.period, a.sy)


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


def connect(
    path: str,
    timeout: float,
    synchronous: str,
    schema: str,
    init: Callable[[sqlite3.Connection], None] | None = None,
) -> sqlite3.Connection:
    """A set-up connection: WAL, 4 KiB pages, the schema, then `init(db)`. Done under the
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
                # 4 KiB pages: a commit writes each page it touched to the WAL, two write
                # calls a page. The requests of a group commit share pages (neighbouring
                # sessions and accounts, the ledger's tail), so bigger pages mean fewer of
                # them: with 1 KiB pages a 25-request commit wrote ~47 pages; with 4 KiB
                # pages the worker spends ~5 us less CPU per CCR, and no more with one
                # request per commit (measured; see workers/charging/README.md).
                db.execute(f"PRAGMA page_size={PAGE_SIZE}")
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(f"PRAGMA synchronous={synchronous}")
                # Checkpoint every 8 MiB of WAL (whatever the file's page size) rather than
                # SQLite's 1,000 pages: a hot page (ledger tail, session and account pages)
                # is then copied back once for many commits. A bigger WAL measured slower.
                page = db.execute("PRAGMA page_size").fetchone()[0]
                db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_BYTES // page}")
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


def shard_rows(table: str) -> str:
    """The SQL condition (one parameter: the shard) that picks a shard's rows of `table`."""
    if table in SHARD_INDEXED:
        return "shard=?"
    return f"{SHARDED_TABLES[table]} IN (SELECT id FROM accounts WHERE shard=?)"


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


class SqliteDb(Nowait):
    """One connection to one SQLite file; one instance per process, not thread-safe."""

    path: str
    timeout: float
    db: sqlite3.Connection

    def _txn(self, fn: Callable[[], T], wait: bool = True, keep_cache: bool = False) -> T:
        """Run `fn` in one write transaction, waiting for the write lock at most `timeout`
        (on a running event loop: the turn's budget, `store.turn_deadline`), or, with
        wait=False or inside `nowait()`, raising _Busy at once when another process holds it.
        `keep_cache` is for a subclass that keeps rows in memory (see `SqliteTables._begun`)."""
        db = self.db
        _begin(db, self.path, wait and not self._nowait, self.timeout)
        try:
            self._begun(keep_cache)
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

    def _chunked(
        self,
        run: Callable[[int], int],
        chunk: int,
        deadline: float,
        limit: int | None = None,
        keep_cache: bool = False,
    ) -> tuple[int, bool]:
        """Housekeeping beside request traffic (sweeps, purges): `run(done)` in transactions
        that never wait for the lock, each doing up to `chunk` rows, until one does fewer,
        `limit` rows are done or `deadline` (monotonic) passes. Returns the rows done and
        whether another process held the lock (the rest is left for the next tick)."""
        done = 0
        try:
            while (limit is None or done < limit) and time.monotonic() < deadline:
                n = self._txn(partial(run, done), wait=False, keep_cache=keep_cache)
                done += n
                if n < chunk:
                    break
        except _Busy:
            return done, True
        return done, False

    def _begun(self, keep_cache: bool) -> None:
        """Called right after BEGIN IMMEDIATE, with the write lock held."""

    def _drop_cache(self) -> None:
        """Called when a transaction fails (its writes are rolled back)."""

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    def close(self) -> None:
        self.db.close()


class Locator(Protocol):
    """Where rows that are not in this file live (the sharded store's map and its other
    files): cold-path look-ups, each giving the shard of what it found, else None."""

    def session_shard(self, session_id: str) -> int | None: ...
    def sy_shard(self, session_id: str) -> int | None: ...
    def subscription_shard(self, sub_type: int, data: str) -> int | None: ...


class SqliteTables(CachedRules, SqliteDb):
    """The charging store's tables: row helpers every concern uses, and the row cache.

    The cache (credit control, `sqlite_cc`) holds session id -> (session, stored expiry
    bucket), account id -> account, (sub_type, data) -> account id: exactly what this
    connection last wrote or read inside a write transaction. It is trusted only while no
    other connection has committed: right after BEGIN IMMEDIATE (we hold the write lock, so
    nobody can commit until we finish) a changed `PRAGMA data_version` drops it. It is also
    dropped on any failure (rolled-back writes may already be in it) and before any
    transaction that is not credit control (keep_cache=False), since those write accounts
    and sessions behind the cache's back."""

    _sessions: dict[str, tuple[Session, float]]
    _accounts: dict[str, Account]
    _subs: dict[tuple[int, str], str]
    _data_version: int
    nshards: int = DEFAULT_SHARDS  # the layout's shard count (`store.shards`)
    # Ownership (issue 10, see `sqlite_shards`). `_owned` is None while unsharded: every
    # shard is served except those this file's `shards` table marks as moved away (`_gone`).
    # Sharded, it maps each claimed shard to the generation it was claimed at; a shard whose
    # row no longer says (that gen, live) was fenced off by a newer owner and is dropped.
    _owned: dict[int, int] | None = None
    _gone: frozenset[int] = frozenset()
    _fence = False  # whether any request may be refused (sharded, or shards gone)
    _locator: Locator | None = None

    def _owns(self, shard: int) -> bool:
        owned = self._owned
        return shard not in self._gone if owned is None else shard in owned

    def _here(self, account_id: str, routed: int = -1) -> None:
        """Raise, before anything is written, unless the account's shard is served here:
        NotOwner for the shard the request was routed by, else ShardMoved."""
        if self._fence:
            s = shard_of(account_id, self.nshards)
            if not self._owns(s):
                raise NotOwner(s) if s == routed else ShardMoved(s)

    def _elsewhere(self, shard: int | None) -> None:
        """Raise ShardMoved when a look-up in the other files found it in a shard not served
        here (found in a shard we serve, it is a stale copy: ignored)."""
        if shard is not None and not self._owns(shard):
            raise ShardMoved(shard)

    def _shard_filter(self) -> str:
        """An SQL condition (leading AND) that keeps rows of served shards only."""
        if self._owned is not None:
            return f" AND shard IN ({','.join(map(str, sorted(self._owned))) or '-2'})"
        if self._gone:
            return f" AND shard NOT IN ({','.join(map(str, sorted(self._gone)))})"
        return ""

    def _refence(self) -> None:
        """Re-read this file's `shards` rows (another connection committed to the file)."""
        rows = {
            int(s): (int(g), str(st))
            for s, g, st in self.db.execute("SELECT shard, gen, state FROM shards")
        }
        owned = self._owned
        if owned is None:
            self._gone = frozenset(s for s, (_g, st) in rows.items() if st != "live")
        else:
            for s, g in list(owned.items()):
                if rows.get(s) != (g, "live"):
                    del owned[s]
        self._fence = owned is not None or bool(self._gone)

    def _shard(self, account_id: str) -> int:
        """The shard of an account's rows."""
        return shard_of(account_id, self.nshards)

    def _migrate_shards(self) -> None:
        """Give a file made before issue 10 its `shard` columns, filled from each row's
        account, and record the shard count it was filled with. A file made with another
        count is a configuration error (its rows would sit in the wrong shards). Run under
        the set-up flock, in one write transaction."""
        db, n = self.db, self.nshards
        row = db.execute("SELECT v FROM meta WHERE k='shards'").fetchone()
        if row is not None:
            if int(row[0]) != n:
                raise ShardLayoutError(
                    f"store.shards = {n}, but {self.path} was made with {int(row[0])} shards"
                )
            return
        db.create_function("cg_shard", 1, lambda k: shard_of(str(k), n), deterministic=True)
        db.execute("BEGIN IMMEDIATE")
        try:
            for table, col in SHARDED_TABLES.items():
                cols = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
                if "shard" not in cols:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN shard INTEGER NOT NULL DEFAULT -1")
                db.execute(f"UPDATE {table} SET shard = cg_shard({col}) WHERE shard < 0")
                if table in SHARD_INDEXED:
                    db.execute(f"CREATE INDEX IF NOT EXISTS {table}_shard ON {table}(shard)")
            db.execute("INSERT INTO meta VALUES ('shards', ?)", (str(n),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _begun(self, keep_cache: bool) -> None:
        version = self.db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:  # fencing: someone else wrote to this file
            self._refence()
        if version != self._data_version or not keep_cache:
            self._drop_cache()
            self._data_version = version

    def _drop_cache(self) -> None:
        self._sessions.clear()
        self._accounts.clear()
        self._subs.clear()

    def _load_account(self, account_id: str) -> Account | None:
        row = self.db.execute(
            f"SELECT {ACCT_COLS} FROM accounts WHERE id=?", (account_id,)
        ).fetchone()
        return account_of(row) if row else None

    def _save_account(self, a: Account) -> None:
        self.db.execute(
            "UPDATE accounts SET balance=?, reserved=?, credit_limit=?, blocked=?, spent=?, period=?, sy=? WHERE id=?",
            (a.balance, a.reserved, a.credit_limit, int(a.blocked), a.spent, a.period, a.sy, a.id),
        )

    def _insert_account(self, a: Account) -> None:
        self.db.execute(
            f"INSERT INTO accounts ({ACCT_COLS}, shard) VALUES (?,?,?,?,?,?,?,?,?)",
            (*account_values(a), self._shard(a.id)),
        )

    def _link(self, sub_type: int, data: str, account: str, replace: bool = False) -> None:
        """Name `account` as the owner of a subscription (kept if one exists, unless `replace`)."""
        self.db.execute(
            f"INSERT OR {'REPLACE' if replace else 'IGNORE'} INTO subscriptions"
            " (sub_type, sub_data, account, shard) VALUES (?,?,?,?)",
            (sub_type, data, account, self._shard(account)),
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
        """Append ledger entries: one statement for all of them (a credit-control chunk
        gathers its entries and writes them together before it commits)."""
        self.db.executemany(_LEDGER_SQL, map(astuple, entries))

    def rules(self) -> list[ProvisionRule]:
        return [
            ProvisionRule(*r)
            for r in self._read("SELECT sub_type, prefix, balance, credit_limit FROM rules")
        ]
