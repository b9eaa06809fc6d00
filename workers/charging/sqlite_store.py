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

This module opens the files and assembles the classes; each concern is a module of
`stores/` (see its docstring for the map).
"""

from __future__ import annotations

import os
import sqlite3

from chargegw.sharding import DEFAULT_SHARDS

from .stores.common import SWEEP_BUDGET
from .stores.sqlite_accounts import SqliteAccounts
from .stores.sqlite_cc import SqliteCreditControl
from .stores.sqlite_cdr import CDR_SCHEMA, SqliteCdr, adopt_legacy
from .stores.sqlite_db import SCHEMA, SWEEP_CHUNK, WAL_AUTOCHECKPOINT, connect
from .stores.sqlite_sweep import RELEASE_CHUNK, SqliteSweeps
from .stores.sqlite_sy import SqliteSy

__all__ = [
    "CDR_SCHEMA",
    "RELEASE_CHUNK",
    "SCHEMA",
    "SWEEP_BUDGET",
    "SWEEP_CHUNK",
    "WAL_AUTOCHECKPOINT",
    "SqliteCdrStore",
    "SqliteStore",
]


class SqliteStore(SqliteCreditControl, SqliteSweeps, SqliteAccounts, SqliteSy):
    """See the module docstring. One instance per process; not thread-safe."""

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
