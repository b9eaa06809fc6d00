"""SQLite Sy subscriptions: one row per Sy session, and each account's count of them (the
`sy` column, which credit control reads to know whether a spend must be reported)."""

from __future__ import annotations

from ..store import SySubscription
from .sqlite_db import SqliteTables, sess_enc, sy_dec


class SqliteSy(SqliteTables):
    def sy_put(self, sub: SySubscription) -> None:
        def run() -> None:
            self._here(sub.account)
            old = self.db.execute(
                "SELECT account FROM sy WHERE session=?", (sub.session_id,)
            ).fetchone()
            if old is None or old[0] != sub.account:
                if old is not None:
                    self.db.execute("UPDATE accounts SET sy = max(sy - 1, 0) WHERE id=?", (old[0],))
                self.db.execute("UPDATE accounts SET sy = sy + 1 WHERE id=?", (sub.account,))
            self.db.execute(
                "INSERT OR REPLACE INTO sy (session, account, data, shard) VALUES (?,?,?,?)",
                (sub.session_id, sub.account, sess_enc.encode(sub), self._shard(sub.account)),
            )

        self._txn(run)

    def sy_get(self, session_id: str) -> SySubscription | None:
        row = self._read("SELECT data FROM sy WHERE session=?", (session_id,))
        if row:
            sub = sy_dec.decode(row[0][0])
            self._here(sub.account)
            return sub
        if self._locator is not None:  # a Session-Id the gateway routed elsewhere
            self._elsewhere(self._locator.sy_shard(session_id))
        return None

    def sy_delete(self, session_id: str) -> SySubscription | None:
        def run() -> SySubscription | None:
            row = self.db.execute(
                "DELETE FROM sy WHERE session=? RETURNING data", (session_id,)
            ).fetchone()
            if row is None:
                if self._locator is not None:  # moved away (and deleted here) meanwhile
                    self._elsewhere(self._locator.sy_shard(session_id))
                return None
            sub = sy_dec.decode(row[0])
            self._here(sub.account)  # raised: the DELETE is rolled back with the transaction
            self.db.execute("UPDATE accounts SET sy = max(sy - 1, 0) WHERE id=?", (sub.account,))
            return sub

        return self._txn(run)

    def sy_for_account(self, account_id: str) -> list[SySubscription]:
        return [
            sy_dec.decode(r[0])
            for r in self._read("SELECT data FROM sy WHERE account=?", (account_id,))
        ]
