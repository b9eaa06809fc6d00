"""The sharded SQLite store (issue 10): one file per owner, the map, and the operator's view
across files. The per-file work is the plain single-file store (`SqliteFile`); this module
only decides WHICH file, and moves shards (`sqlite_shards`).

A worker's store starts UNSHARDED, serving every shard from the home file (the single-file
store of before: tests and one-process tools use it so) until the runtime's first
`assign_shards`; from then on it is the owner of exactly the shards it claimed, in its own
file `owner-<worker id>.db`: one transaction per drained batch over all of them (group
commit kept, synchronous=FULL by default: no answer before its commit). A request of a shard
it does not own, or whose account, alias or session lives in another shard, gets ShardMoved
or NotOwner in its slot, unapplied.

Admin writes (import, top-up, block, seeding) take the map's lock (which freezes moves) and
write into the map's file of the account's shard. Ledger checks read accounts and open
sessions of each shard from the map's file only, and ledger entries from every file (the
ledger is history: entries stay where they were written).

The interface a backend's sharded store offers (the Redis one plugs in the same way):
`shard_count` (int), `assign_shards(frozenset[int])` (claim the new ones, fencing off any
previous owner; release the others; idempotent), `owned_shards()`; and writes of a shard
not owned (or fenced off) give NotOwner, applying nothing.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator

from chargegw.sharding import shard_of

from ..core import Account, CCOp, LedgerEntry, Outcome, Session
from ..store import (
    AccountInfo,
    AccountRow,
    Notice,
    ProvisionRule,
    StoreUnavailable,
    SySubscription,
)
from .sqlite_accounts import SqliteAccounts
from .sqlite_cc import SqliteCreditControl
from .sqlite_db import ACCT_COLS, account_of, sess_dec
from .sqlite_shards import ShardMap, claim
from .sqlite_sweep import SqliteSweeps
from .sqlite_sy import SqliteSy

log = logging.getLogger("chargegw.store")
LOST_GRACE = 0.5  # seconds an assigned shard stays fenced off before it is claimed back
RECLAIM_EVERY = 1.0  # seconds between retries of shards assigned but not yet claimed


class SqliteFile(SqliteCreditControl, SqliteSweeps, SqliteAccounts, SqliteSy):
    """One charging file (the facade `sqlite_store.SqliteStore` opens it)."""


def owner_file_name(owner: str) -> str:
    """The owner file of a worker id (any character outside [A-Za-z0-9._-] becomes _)."""
    return "owner-" + (re.sub(r"[^A-Za-z0-9._-]", "_", owner) or f"pid{os.getpid()}") + ".db"


class ShardedSqliteStore:
    """See the module docstring. One per process (Gy and Sy share it); not thread-safe."""

    def __init__(
        self, home: str, *, owner: str, shards: int, open_file: Callable[[str], SqliteFile]
    ) -> None:
        self.shard_count = shards
        folder = os.path.join(os.path.dirname(os.path.abspath(home)), "charging")
        self.map = ShardMap(os.path.join(folder, "shards.db"), home, shards)
        self._open = open_file
        self._files: dict[str, SqliteFile] = {}
        self.home = self._file(home)
        self.active: SqliteFile = self.home
        self.own_path = os.path.join(folder, owner_file_name(owner))
        self._assigned: frozenset[int] = frozenset()
        self._pending: set[int] = set()  # assigned, claim failed: retried
        self._retry_at = 0.0
        self._lost_since: dict[int, float] = {}  # assigned shards fenced off, since when

    # -- files and ownership ---------------------------------------------------------------

    def _file(self, path: str) -> SqliteFile:
        path = os.path.abspath(path)
        f = self._files.get(path)
        if f is None:
            f = self._files[path] = self._open(path)
        return f

    @property
    def db(self):  # type: ignore[no-untyped-def]  # the active file's connection (tests)
        return self.active.db

    @property
    def path(self) -> str:
        return self.active.path

    def _all_files(self) -> list[str]:
        """Every charging file of this layout: the map's, the home file and owner files."""
        found = set(self.map.files().values()) | {os.path.abspath(self.home.path)}
        found |= {os.path.abspath(p) for p in glob.glob(os.path.join(self.map.dir, "owner-*.db"))}
        return sorted(found)

    def owns(self, shard: int) -> bool:
        """Whether this process serves `shard` now (writes are fenced in the store too)."""
        return self.active._owns(shard)

    def owned_shards(self) -> frozenset[int]:
        owned = self.active._owned
        return frozenset(range(self.shard_count)) if owned is None else frozenset(owned)

    def assign_shards(self, shards: Iterable[int]) -> None:
        """Own exactly `shards` from now on: claim the new ones (fencing any previous owner
        off), release the others. The first call turns the store from unsharded into this
        worker's owner file. A claim that finds a lock busy is retried later, and until then
        that shard's requests get NotOwner."""
        want = frozenset(int(s) for s in shards if 0 <= int(s) < self.shard_count)
        if self.active is self.home:
            own = self._file(self.own_path)
            own._owned, own._fence, own._locator = {}, True, self
            own._rules_from = self.home.rules
            self.active = own
        owned = self.active._owned
        assert owned is not None
        for s in set(owned) - want:
            del owned[s]
        self._assigned = want
        self._pending = set(want - set(owned))
        self._claim_pending()

    def _claim_pending(self) -> None:
        if not self._pending:
            return
        self._retry_at = time.monotonic() + RECLAIM_EVERY
        try:
            gens = claim(self.map, self.active, self._pending, self._file)
        except StoreUnavailable as exc:
            log.warning("claiming shards %s failed (retried): %s", sorted(self._pending), exc)
            return
        owned = self.active._owned
        assert owned is not None
        owned.update(gens)
        self._pending.clear()

    def _before(self) -> None:
        """Before each request or batch: take back assigned shards fenced off for longer
        than LOST_GRACE, and retry pending claims when due."""
        owned = self.active._owned
        if owned is not None and not self._pending and owned.keys() == self._assigned:
            # the usual case, every assigned shard owned: nothing is lost, and the set
            # arithmetic below (~5 us a batch with 64 shards) is skipped
            self._lost_since.clear()
            return
        if owned is not None and self._assigned:
            lost = self._assigned - owned.keys() - self._pending
            now = time.monotonic()
            since = self._lost_since
            for s in list(since):
                if s not in lost:
                    del since[s]
            for s in lost:
                # Fenced off while still assigned here. Either our Assign is the stale one
                # (the newer one, taking s away, is on its way: leave s alone), or another
                # worker claimed s on an older Assign (two crossing at start-up): then the
                # gateway gives s to us, and we take it back once it has stayed lost for
                # LOST_GRACE (longer than an Assign takes to arrive).
                first = since.setdefault(s, now)
                if now - first >= LOST_GRACE:
                    del since[s]
                    self._pending.add(s)
                    self._retry_at = 0.0
        if self._pending and time.monotonic() >= self._retry_at:
            self._claim_pending()

    # -- Locator: cold-path look-ups in the other files ------------------------------------

    def _find(self, sql: str, args: tuple[object, ...]) -> int | None:
        """The shard of the first row `sql` (selecting an account) finds in another file
        that the map names for that account's shard."""
        files = self.map.files()
        mine = os.path.abspath(self.active.path)
        for path in sorted(set(files.values()) - {mine}):
            for (account,) in self._file(path)._read(sql, args):
                s = shard_of(str(account), self.shard_count)
                if files[s] == path:
                    return s
        return None

    def session_shard(self, session_id: str) -> int | None:
        return self._find("SELECT account FROM sessions WHERE id=?", (session_id,))

    def sy_shard(self, session_id: str) -> int | None:
        return self._find("SELECT account FROM sy WHERE session=?", (session_id,))

    def subscription_shard(self, sub_type: int, data: str) -> int | None:
        s = shard_of(data, self.shard_count)
        alias, path = self.map.locate(sub_type, data, s)  # no SQL but a version check
        if alias is not None:
            return alias
        if path == self.active.path:  # opened by `_file`: absolute
            return None
        row = self._file(path)._read(
            "SELECT account FROM subscriptions WHERE sub_type=? AND sub_data=?", (sub_type, data)
        )
        return shard_of(str(row[0][0]), self.shard_count) if row else None

    # -- what Gy and Sy call: the active file ----------------------------------------------

    def credit_control(self, op: CCOp) -> Outcome:
        self._before()
        return self.active.credit_control(op)

    def credit_control_many(
        self, ops: list[CCOp], wait: bool = True
    ) -> list[Outcome | Exception] | None:
        self._before()
        return self.active.credit_control_many(ops, wait)

    def resolve(self, subscriptions: list[tuple[int, str]]) -> Account | None:
        return self.active.resolve(subscriptions)

    def sweep(self, now: float, closed_ttl: float, limit: int = 500) -> int:
        return self.active.sweep(now, closed_ttl, limit)

    def take_notices(self, limit: int = 100) -> list[Notice]:
        return self.active.take_notices(limit)

    def sy_put(self, sub: SySubscription) -> None:
        self.active.sy_put(sub)

    def sy_get(self, session_id: str) -> SySubscription | None:
        return self.active.sy_get(session_id)

    def sy_delete(self, session_id: str) -> SySubscription | None:
        return self.active.sy_delete(session_id)

    def sy_for_account(self, account_id: str) -> list[SySubscription]:
        return self.active.sy_for_account(account_id)

    def provision(self, subscriptions: list[tuple[int, str]], now: float) -> Account | None:
        return self.active.provision(subscriptions, now)

    def nowait(self) -> contextlib.AbstractContextManager[None]:
        return self.active.nowait()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        self.map.close()

    # -- admin: the map's file of each account's shard -------------------------------------

    def _shard(self, account_id: str) -> int:
        return shard_of(account_id, self.shard_count)

    def _import_locked(self, rows: list[AccountRow], now: float) -> int:
        """Inside the map's lock: each row into the file of its account's shard, aliases
        for subscriptions whose data hashes elsewhere, and a subscription that changed
        account (shard) removed from the file of its old one."""
        files = self.map.files()
        groups: dict[str, list[AccountRow]] = {}
        for r in rows:
            groups.setdefault(files[self._shard(r.id)], []).append(r)
        for path, group in groups.items():
            self._file(path).import_accounts(group, now)
        links, primary, moved = [], [], []
        for r in rows:
            s = self._shard(r.id)
            for t, d in r.subscriptions:
                moved.append((t, d, r.id))
                if shard_of(d, self.shard_count) == s:
                    primary.append((t, d))
                else:
                    links.append((t, d, s))
        self.map.set_aliases(links, primary)
        for path in set(files.values()):
            f = self._file(path)
            f._txn(
                lambda f=f: f.db.executemany(  # type: ignore[misc]
                    "DELETE FROM subscriptions WHERE sub_type=? AND sub_data=? AND account<>?",
                    moved,
                )
            )
        return len(rows)

    def import_accounts(self, rows: Iterable[AccountRow], now: float) -> int:
        rows = list(rows)
        with self.map.locked():
            return self._import_locked(rows, now)

    def _authoritative(self, path: str, account: Account) -> bool:
        return self.map.files()[self._shard(account.id)] == os.path.abspath(path)

    def get_account(self, account_id: str) -> AccountInfo | None:
        """By account id (its shard's file), else by a subscription's data (an alias names
        the shard; else any file)."""
        files = self.map.files()
        tries = [files[self._shard(account_id)]]
        alias = self.map.alias_by_data(account_id)
        if alias is not None:
            tries.append(files[alias])
        tries += sorted(set(files.values()) - set(tries))
        for path in tries:
            info = self._file(path).get_account(account_id)
            if info is not None and self._authoritative(path, info.account):
                return info
        return None

    def _admin(self, account_id: str) -> SqliteFile:
        """Inside the map's lock: the file holding the account's shard."""
        return self._file(self.map.files()[self._shard(account_id)])

    def topup(self, account_id: str, amount: int, now: float) -> Account:
        with self.map.locked():
            return self._admin(account_id).topup(account_id, amount, now)

    def set_blocked(self, account_id: str, blocked: bool) -> Account:
        with self.map.locked():
            return self._admin(account_id).set_blocked(account_id, blocked)

    def set_rules(self, rules: list[ProvisionRule]) -> None:
        self.home.set_rules(rules)
        self.active._rules_at = 0.0

    def rules(self) -> list[ProvisionRule]:
        return self.home.rules()

    def seed_demo(self, rows: list[AccountRow], rules: list[ProvisionRule], now: float) -> bool:
        """Once per data directory. While every row's shard is in the home file (a fresh
        deployment), one home transaction does it all, as before."""
        with self.map.locked():
            files = self.map.files()
            home = os.path.abspath(self.home.path)
            if all(files[self._shard(r.id)] == home for r in rows):
                done = self.home.seed_demo(rows, rules, now)
            elif self.home._read("SELECT 1 FROM meta WHERE k='seeded'"):
                done = False
            else:
                self._import_locked(rows, now)
                done = self.home.seed_demo([], rules, now)
            if done:
                self._import_aliases(rows)
            return done

    def _import_aliases(self, rows: list[AccountRow]) -> None:
        links = [
            (t, d, self._shard(r.id))
            for r in rows
            for t, d in r.subscriptions
            if shard_of(d, self.shard_count) != self._shard(r.id)
        ]
        self.map.set_aliases(links, [])

    # -- iteration for checks and CLIs: live rows from the map's file, ledger from all -------

    def _by_file(self) -> dict[str, str]:
        """file -> SQL list of the shards the map gives it."""
        out: dict[str, list[int]] = {}
        for s, path in self.map.files().items():
            out.setdefault(path, []).append(s)
        return {p: ",".join(map(str, sorted(ss))) for p, ss in sorted(out.items())}

    def iter_accounts(self) -> Iterator[Account]:
        rows: list[Account] = []
        for path, shards in self._by_file().items():
            q = f"SELECT {ACCT_COLS} FROM accounts WHERE shard IN ({shards})"
            rows += [account_of(r) for r in self._file(path)._read(q)]
        yield from sorted(rows, key=lambda a: a.id)

    def iter_open_sessions(self) -> Iterator[Session]:
        for path, shards in self._by_file().items():
            q = f"SELECT data FROM sessions WHERE state=1 AND shard IN ({shards})"
            for (data,) in self._file(path)._read(q):
                yield sess_dec.decode(data)

    def iter_ledger(self) -> Iterator[LedgerEntry]:
        for path in self._all_files():
            yield from self._file(path).iter_ledger()
