"""The embedded default store: SQLite files in WAL mode. Unsharded, one file shared by all
worker processes; sharded (issue 10, `stores.sqlite_sharded`), one file per owner, each of
them the single-file store described here.

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

This module opens the files and assembles the classes; each concern is a module of
`stores/` (see its docstring for the map).
"""

from __future__ import annotations

import os
import sqlite3

from chargegw.sharding import DEFAULT_SHARDS

from .stores.common import SWEEP_BUDGET
from .stores.sqlite_cdr import CDR_SCHEMA, SqliteCdr, adopt_legacy
from .stores.sqlite_db import SCHEMA, SWEEP_CHUNK, WAL_AUTOCHECKPOINT, connect
from .stores.sqlite_sharded import ShardedSqliteStore, SqliteFile
from .stores.sqlite_sweep import RELEASE_CHUNK

__all__ = [
    "CDR_SCHEMA",
    "RELEASE_CHUNK",
    "SCHEMA",
    "SWEEP_BUDGET",
    "SWEEP_CHUNK",
    "WAL_AUTOCHECKPOINT",
    "ShardedSqliteStore",
    "SqliteCdrStore",
    "SqliteStore",
    "open_sharded",
]


class SqliteStore(SqliteFile):
    """One charging file (see the module docstring): the whole store of an unsharded
    deployment, and each file of a sharded one (`open_sharded`). Not thread-safe."""

    def __init__(
        self,
        path: str,
        *,
        timeout: float = 2.0,
        setup_timeout: float = 10.0,
        durable: bool = True,
        shards: int = DEFAULT_SHARDS,
    ) -> None:
        self.path = path
        self.timeout = timeout
        self.nshards = shards

        def migrate(db: sqlite3.Connection) -> None:  # under the set-up flock
            self.db = db
            self._migrate_ledger()
            self._migrate_shards()

        sync = "FULL" if durable else "NORMAL"
        self.db = connect(path, max(setup_timeout, timeout), sync, SCHEMA, migrate)
        self._rules = []
        self._rules_at = 0.0
        # The row cache of credit control (see `stores.sqlite_db.SqliteTables`).
        self._sessions = {}
        self._accounts = {}
        self._subs = {}
        self._data_version = -1


def open_sharded(
    home: str,
    *,
    owner: str,
    shards: int = DEFAULT_SHARDS,
    timeout: float = 2.0,
    setup_timeout: float = 10.0,
    durable: bool = True,
) -> ShardedSqliteStore:
    """The sharded store of a data directory whose home (single) file is `home`; its files
    are opened with these settings (see `stores.sqlite_sharded`)."""

    def open_file(path: str) -> SqliteFile:
        return SqliteStore(
            path, timeout=timeout, setup_timeout=setup_timeout, durable=durable, shards=shards
        )

    return ShardedSqliteStore(home, owner=owner, shards=shards, open_file=open_file)


class SqliteCdrStore(SqliteCdr):
    """Rf records in their own SQLite file (see `stores.sqlite_cdr`). `legacy` names the
    charging store whose `cdrs` table older versions wrote; its records are copied here once."""

    def __init__(
        self, path: str, *, timeout: float = 2.0, setup_timeout: float = 10.0, legacy: str = ""
    ) -> None:
        self.path = path
        self.timeout = timeout

        def adopt(db: sqlite3.Connection) -> None:
            if legacy and os.path.exists(legacy):
                adopt_legacy(db, legacy)

        self.db = connect(path, max(setup_timeout, timeout), "FULL", CDR_SCHEMA, adopt)
