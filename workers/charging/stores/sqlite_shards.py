"""SQLite shards (issue 10): the shard map, and moving a shard's live rows to its new owner.

Files, under `<data>/charging/`:
- `shards.db`, the MAP: `map(shard, file, gen)` says which file holds each shard's live rows
  (the authority: any other copy is unused), `aliases(sub_type, sub_data, shard)` names the
  account shard of a subscription whose data hashes elsewhere, and `meta` the shard count.
  A new map sends every shard to the HOME file (the single-file store of before, adopted
  as it is: `SqliteTables._migrate_shards` gives it its shard columns).
- `owner-<worker id>.db`, one per owner: the charging schema, with each row's shard and a
  `shards(shard, gen, state)` table, `live` for the shards it holds.

A claim moves shards into the claimer's file F under one lock order, map -> old files ->
F, never the reverse, so two claims (or a claim and an admin write, which takes the map
first too) cannot deadlock, and the old owner's own transactions (its file only) wait at
most one claim:
  BEGIN IMMEDIATE map; per shard s: (F_old, g) from the map, g' = max(g, F_old's gen) + 1;
  BEGIN IMMEDIATE each F_old: mark (s, g', gone), read s's rows; BEGIN IMMEDIATE F: drop
  stale rows of s, insert the copies, (s, g', live); COMMIT F; COMMIT each F_old; map :=
  (F, g'); COMMIT map.
Ownership is taken in memory only after the map's commit. The moved rows are then deleted
from F_old, best effort (only while F_old still says (s, g', gone)). At every crash point
the map's file holds the live rows: a half-done claim leaves copies nobody reads, which the
next claim into that file replaces.

Fencing: the old owner, still alive, next begins a transaction on its file, sees `PRAGMA
data_version` changed (the claim committed to its file), re-reads its `shards` rows and
drops s (`SqliteTables._refence`): its requests of s get NotOwner, unapplied.

Each process keeps the map's rows in memory (`ShardMap._fresh`), the aliases too while there
are at most ALIAS_CACHE_MAX of them: a new subscriber's CCR-I then reads no map row. Every
look-up first asks the map file's `PRAGMA data_version`, which changes when another
connection commits, and re-reads the rows if it did; this connection's own writes (all under
`locked()`) drop them. So a look-up sees the map as fresh as an SQL read would (the map is
read without its lock either way: what keeps a request off a shard it does not own is the
fencing of its own file, above, never the map).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..store import ShardLayoutError, StoreUnavailable
from .sqlite_db import SHARDED_TABLES, SqliteTables, connect, shard_rows

MAP_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS map (
    shard INTEGER PRIMARY KEY, file TEXT NOT NULL, gen INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aliases (
    sub_type INTEGER, sub_data TEXT, shard INTEGER NOT NULL, PRIMARY KEY (sub_type, sub_data)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS aliases_data ON aliases(sub_data);
"""
CLAIM_TIMEOUT = 10.0  # seconds a claim or an admin write waits for a lock
# Aliases held in memory when there are at most this many (about 100 bytes each); a map
# with more is asked per look-up, as before.
ALIAS_CACHE_MAX = 32768


def begin_wait(db: sqlite3.Connection, path: str, timeout: float) -> None:
    """BEGIN IMMEDIATE, waiting up to `timeout` (not the loop turn's budget: claims and
    admin writes are rare and must not fail because a batch held the lock for a while)."""
    deadline = time.monotonic() + timeout
    delay = 0.0002
    while True:
        try:
            db.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise StoreUnavailable(f"sqlite {path}: {exc}") from exc
            if time.monotonic() >= deadline:
                raise StoreUnavailable(f"sqlite {path}: write lock not free in {timeout}s") from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.01)


def rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        db.execute("ROLLBACK")


class ShardMap:
    """The map file (see the module docstring). One connection; file names are stored
    relative to the map's folder, so that a data directory can be moved whole."""

    def __init__(self, path: str, home: str, shards: int, timeout: float = CLAIM_TIMEOUT) -> None:
        self.path = path
        self.dir = os.path.dirname(os.path.abspath(path))
        self.shards = shards
        self.timeout = timeout
        home_rel = self.rel(home)

        def init(db: sqlite3.Connection) -> None:  # under the set-up flock
            row = db.execute("SELECT v FROM meta WHERE k='shards'").fetchone()
            if row is not None:
                if int(row[0]) != shards:
                    raise ShardLayoutError(
                        f"store.shards = {shards}, but the shard map {path} was made with"
                        f" {int(row[0])} shards"
                    )
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute("INSERT INTO meta VALUES ('shards', ?)", (str(shards),))
                db.executemany(
                    "INSERT OR IGNORE INTO map VALUES (?,?,0)",
                    [(s, home_rel) for s in range(shards)],
                )
                db.execute("COMMIT")
            except BaseException:
                rollback(db)
                raise

        self.db = connect(path, timeout, "FULL", MAP_SCHEMA, init)
        self._version = -1  # `PRAGMA data_version` the rows below were read at; -1: none
        self._entries: dict[int, tuple[str, int]] = {}
        self._aliases: dict[tuple[int, str], int] | None = None  # None: too many, ask SQL

    def _fresh(self) -> None:
        """Re-read the map's rows when another connection committed to the map since they
        were read (or this one wrote: see `_forget`): the version and the rows in one read
        transaction, so that they agree. Under `locked()` they are read anew each time and
        not kept (this connection's own writes there do not move the version)."""
        db = self.db
        own = not db.in_transaction
        if own and self._read("PRAGMA data_version")[0][0] == self._version:
            return
        try:
            if own:
                db.execute("BEGIN")
            version = db.execute("PRAGMA data_version").fetchone()[0]
            entries = {
                int(s): (self.abs(f), int(g))
                for s, f, g in db.execute("SELECT shard, file, gen FROM map")
            }
            n = db.execute("SELECT count(*) FROM aliases").fetchone()[0]
            aliases = None
            if n <= ALIAS_CACHE_MAX:
                rows = db.execute("SELECT sub_type, sub_data, shard FROM aliases")
                aliases = {(int(t), str(d)): int(s) for t, d, s in rows}
            if own:
                db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if own:
                rollback(db)
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc
        self._entries, self._aliases = entries, aliases
        self._version = version if own else -1

    def _forget(self) -> None:
        """Drop the rows in memory: this connection wrote the map (which does not change
        its own `data_version`), or a write of it was rolled back."""
        self._version = -1

    def rel(self, path: str) -> str:
        return os.path.relpath(os.path.abspath(path), self.dir)

    def abs(self, file: str) -> str:
        return os.path.normpath(os.path.join(self.dir, file))

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    def files(self) -> dict[int, str]:
        """shard -> absolute path of the file holding its live rows."""
        self._fresh()
        return {s: f for s, (f, _g) in self._entries.items()}

    def file_of(self, shard: int) -> str:
        self._fresh()
        return self._entries[shard][0]

    def entries(self) -> dict[int, tuple[str, int]]:
        """shard -> (absolute path of its file, generation)."""
        self._fresh()
        return dict(self._entries)

    def _alias(self, sub_type: int, data: str) -> int | None:
        """`alias`, the map's rows already fresh."""
        aliases = self._aliases
        if aliases is not None:
            return aliases.get((sub_type, data))
        row = self._read(
            "SELECT shard FROM aliases WHERE sub_type=? AND sub_data=?", (sub_type, data)
        )
        return int(row[0][0]) if row else None

    def alias(self, sub_type: int, data: str) -> int | None:
        """The account shard a subscription is aliased to, if any."""
        self._fresh()
        return self._alias(sub_type, data)

    def locate(self, sub_type: int, data: str, shard: int) -> tuple[int | None, str]:
        """`alias(sub_type, data)` and `file_of(shard)` (the data's own shard), from one
        look at the map's version."""
        self._fresh()
        return self._alias(sub_type, data), self._entries[shard][0]

    def alias_by_data(self, data: str) -> int | None:
        row = self._read("SELECT shard FROM aliases WHERE sub_data=? LIMIT 1", (data,))
        return int(row[0][0]) if row else None

    def set_aliases(
        self, links: list[tuple[int, str, int]], primary: list[tuple[int, str]]
    ) -> None:
        """Inside `locked()`: record aliases (sub_type, data, account shard) and forget
        those of subscriptions that are now primary (their data hashes to their account's)."""
        self._forget()
        self.db.executemany("INSERT OR REPLACE INTO aliases VALUES (?,?,?)", links)
        self.db.executemany("DELETE FROM aliases WHERE sub_type=? AND sub_data=?", primary)

    @contextlib.contextmanager
    def locked(self) -> Iterator[sqlite3.Connection]:
        """The map's write lock for a claim or an admin write (it freezes moves). The rows
        in memory are dropped at the end: this connection may have written the map."""
        begin_wait(self.db, self.path, self.timeout)
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            rollback(self.db)
            raise
        finally:
            self._forget()

    def close(self) -> None:
        self.db.close()


def _file_gen(db: sqlite3.Connection, shard: int) -> int:
    row = db.execute("SELECT gen FROM shards WHERE shard=?", (shard,)).fetchone()
    return int(row[0]) if row else 0


def _mark(db: sqlite3.Connection, shard: int, gen: int, state: str) -> None:
    db.execute("INSERT OR REPLACE INTO shards VALUES (?,?,?)", (shard, gen, state))


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]


Rows = dict[str, tuple[list[str], list[tuple[Any, ...]]]]


def _read_rows(db: sqlite3.Connection, shard: int) -> Rows:
    """Every row of `shard` by table, with its column names (by name: an adopted file has
    its shard column last, a new one in the middle). `notices` leave their sequence behind."""
    out: Rows = {}
    for table in SHARDED_TABLES:
        cols = [c for c in _columns(db, table) if not (table == "notices" and c == "seq")]
        rows = db.execute(
            f"SELECT {', '.join(cols)} FROM {table} WHERE {shard_rows(table)}", (shard,)
        )
        out[table] = (cols, rows.fetchall())
    return out


def _drop_rows(db: sqlite3.Connection, shard: int) -> None:
    # the accounts last: the other tables' rows are found through them
    for table in reversed(SHARDED_TABLES):
        db.execute(f"DELETE FROM {table} WHERE {shard_rows(table)}", (shard,))


def _write_rows(db: sqlite3.Connection, shard: int, rows: Rows) -> None:
    _drop_rows(db, shard)
    for table, (cols, values) in rows.items():
        if values:
            marks = ",".join("?" * len(cols))
            db.executemany(
                f"INSERT OR REPLACE INTO {table} ({', '.join(cols)}) VALUES ({marks})", values
            )


def claim(
    smap: ShardMap, own: SqliteTables, shards: set[int], opened: Callable[[str], SqliteTables]
) -> dict[int, int]:
    """Move `shards` into `own`'s file (see the module docstring); returns shard -> the
    generation it was claimed at. `opened(path)` gives the connection to a file the map
    names, opening it on first use: the map is read under its lock here, and may name a
    file another worker made since the caller last looked.
    Raises StoreUnavailable (nothing claimed) when a lock stays busy."""
    me = os.path.abspath(own.path)
    gens: dict[int, int] = {}
    cleanup: dict[str, list[tuple[int, int]]] = {}
    with smap.locked() as mdb:
        entries = smap.entries()
        by_old: dict[str, list[int]] = {}
        for s in sorted(shards):
            f, _g = entries[s]
            by_old.setdefault(f, []).append(s)
        olds = sorted(f for f in by_old if f != me)
        begun: list[sqlite3.Connection] = []
        try:
            copies: dict[int, Rows] = {}
            for f in olds:
                db = opened(f).db
                begin_wait(db, f, smap.timeout)
                begun.append(db)
                for s in by_old[f]:
                    g = max(entries[s][1], _file_gen(db, s)) + 1
                    _mark(db, s, g, "gone")
                    copies[s], gens[s] = _read_rows(db, s), g
                    cleanup.setdefault(f, []).append((s, g))
            odb = own.db
            begin_wait(odb, me, smap.timeout)
            begun.append(odb)
            own._begun(keep_cache=False)  # our rows change under the row cache
            for s in by_old.get(me, []):
                gens[s] = max(entries[s][1], _file_gen(odb, s)) + 1
                _mark(odb, s, gens[s], "live")
            for s, rows in copies.items():
                _write_rows(odb, s, rows)
                _mark(odb, s, gens[s], "live")
            odb.execute("COMMIT")
            for db in begun[:-1]:
                db.execute("COMMIT")
        except BaseException:
            for db in begun:
                rollback(db)
            own._drop_cache()
            raise
        rel = smap.rel(me)
        mdb.executemany(
            "UPDATE map SET file=?, gen=? WHERE shard=?", [(rel, g, s) for s, g in gens.items()]
        )
    for f, moved in cleanup.items():  # best effort: a leftover copy is never read
        db = opened(f).db
        try:
            begin_wait(db, f, 0.5)
            for s, g in moved:
                if db.execute("SELECT gen, state FROM shards WHERE shard=?", (s,)).fetchone() == (
                    g,
                    "gone",
                ):
                    _drop_rows(db, s)
            db.execute("COMMIT")
        except (sqlite3.Error, StoreUnavailable):
            rollback(db)
    return gens
