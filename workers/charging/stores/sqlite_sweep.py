"""SQLite sweeps and notices: releasing sessions that went silent past Tcc, forgetting
finished ones, and taking the server-initiated work (RAR after a top-up, ASR after a block) that
`sqlite_accounts` queued."""

from __future__ import annotations

import time

from .. import core
from ..store import Notice
from .common import SWEEP_BUDGET
from .sqlite_db import SWEEP_CHUNK, SqliteTables, sess_dec, sess_enc

RELEASE_CHUNK = 16  # silent open sessions released per transaction
_DONE = (core.CLOSED, core.EVENT_DONE)  # finished session states


class SqliteSweeps(SqliteTables):
    def sweep(self, now: float, closed_ttl: float, limit: int = 500) -> int:
        """Release reservations of open sessions idle past Tcc (at most `limit`), and forget
        finished sessions past their TTL.

        It runs on the worker's loop beside request traffic, so it works in small
        transactions (RELEASE_CHUNK releases, SWEEP_CHUNK deletions) that hold the write lock
        for a few ms each, stops after SWEEP_BUDGET, and never waits for the lock: what is
        left is done on the next tick. Returns the number of sessions released."""
        db = self.db

        def release(released: int) -> int:
            rows = db.execute(
                f"SELECT id, data FROM sessions WHERE state = {core.OPEN} AND expires < ?"
                f"{self._shard_filter()} LIMIT ?",
                (now, min(RELEASE_CHUNK, limit - released)),
            ).fetchall()
            for sid, data in rows:
                s = sess_dec.decode(data)
                acct = self._load_account(s.account)
                core.release_session(acct, s, now, closed_ttl)
                if acct is not None:
                    self._save_account(acct)
                db.execute(
                    "UPDATE sessions SET state=?, expires=?, fui=0, data=? WHERE id=?",
                    (s.state, s.expires, sess_enc.encode(s), sid),
                )
            return len(rows)

        def forget(_: int) -> int:
            return db.execute(
                "DELETE FROM sessions WHERE id IN"
                f" (SELECT id FROM sessions WHERE state IN {_DONE} AND expires < ? LIMIT ?)",
                (now, SWEEP_CHUNK),
            ).rowcount

        deadline = time.monotonic() + SWEEP_BUDGET
        released, busy = self._chunked(release, RELEASE_CHUNK, deadline, limit)
        if not busy:  # another process has the lock: the next tick goes on
            # Only finished sessions go: the row cache holds open ones, so it stays valid.
            self._chunked(forget, SWEEP_CHUNK, deadline, keep_cache=True)
        return released

    def take_notices(self, limit: int = 100) -> list[Notice]:
        def run() -> list[Notice]:
            rows = self.db.execute(
                "DELETE FROM notices WHERE seq IN (SELECT seq FROM notices"
                f" WHERE 1{self._shard_filter()} ORDER BY seq LIMIT ?)"
                " RETURNING kind, session, account, client_host, client_realm",
                (limit,),
            ).fetchall()
            return [Notice(*r) for r in rows]

        if not self._read("SELECT 1 FROM notices LIMIT 1"):
            return []
        return self._txn(run, keep_cache=True)  # notices only
