"""Rf records in their own SQLite file, WAL with synchronous=FULL: each commit is fsynced
before it returns, so a record answered 2001 survives a power cut, and Rf never waits for
Gy's write lock. One transaction per batch of ACRs (one fsync for all)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

import msgspec

from ..store import Cdr, StoreUnavailable
from .common import SWEEP_BUDGET
from .sqlite_db import SWEEP_CHUNK, SqliteDb

CDR_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cdrs (
    session TEXT, number INTEGER, sub INTEGER, received REAL, data BLOB,
    PRIMARY KEY (session, number, sub)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS cdrs_received ON cdrs(received);
"""

_cdr_dec = msgspec.json.Decoder(Cdr)


def adopt_legacy(db: sqlite3.Connection, legacy: str) -> None:
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


class SqliteCdr(SqliteDb):
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

        def run(_: int) -> int:
            return self.db.execute(
                "DELETE FROM cdrs WHERE (session, number, sub) IN (SELECT session, number, sub"
                " FROM cdrs WHERE received < ? ORDER BY received LIMIT ?)",
                (before, SWEEP_CHUNK),
            ).rowcount

        return self._chunked(run, SWEEP_CHUNK, time.monotonic() + budget)[0]
