"""SQLite accounts and administration (Sy's provisioning, the operator's CLIs, the demo seed,
`ledger check`). Each write is one transaction that also drops the credit-control row cache;
a top-up or a block queues its notices (RAR/ASR) in the same transaction."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator

from ..core import Account, LedgerEntry, Session
from ..store import AccountInfo, AccountRow, ProvisionRule, StoreUnavailable, match_rule
from .common import (
    blocked_now,
    check_topup,
    credit,
    existing,
    import_row,
    provisioned,
    topped_up,
)
from .sqlite_db import ACCT_COLS, SqliteTables, account_of, sess_dec


class SqliteAccounts(SqliteTables):
    def _resolve(self, subs: list[tuple[int, str]], now: float, create: bool) -> Account | None:
        """The account of the first known identity, else one a provisioning rule makes (and,
        with `create`, inserts with its "provision" credit)."""
        db = self.db
        for sub_type, data in subs:
            row = db.execute(
                "SELECT account FROM subscriptions WHERE sub_type=? AND sub_data=?",
                (sub_type, data),
            ).fetchone()
            if row:
                self._here(row[0])
                return self._load_account(row[0])
            if self._locator is not None:  # an alias, or an account of another shard
                self._elsewhere(self._locator.subscription_shard(sub_type, data))
        hit = match_rule(self._current_rules(), subs)
        if hit is None:
            return None
        rule, data = hit
        self._here(data)
        acct = self._load_account(data)
        if acct is None:
            acct = provisioned(rule, data)
            if create:
                self._insert_account(acct)
                self._ledger([credit(now, data, "provision", rule.balance)])
        if create:
            self._link(rule.sub_type, data, acct.id)
        return acct

    def resolve(self, subscriptions: list[tuple[int, str]]) -> Account | None:
        try:
            return self._resolve(subscriptions, time.time(), create=False)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"sqlite {self.path}: {exc}") from exc

    def provision(self, subscriptions: list[tuple[int, str]], now: float) -> Account | None:
        """Resolve, creating the account from a provisioning rule when one matches."""
        return self._txn(lambda: self._resolve(subscriptions, now, create=True))

    def import_accounts(self, rows: Iterable[AccountRow], now: float) -> int:
        rows = list(rows)
        return self._txn(lambda: self._import(rows, now))

    def _import(self, rows: list[AccountRow], now: float) -> int:
        for r in rows:
            acct = self._load_account(r.id)
            new = acct is None
            acct = acct or Account(r.id)
            self._ledger(import_row(acct, r, now))
            if new:
                self._insert_account(acct)
            else:
                self._save_account(acct)
            for sub_type, data in r.subscriptions:
                self._link(sub_type, data, r.id, replace=True)
        return len(rows)

    def get_account(self, account_id: str) -> AccountInfo | None:
        acct = self._load_account(account_id)
        if acct is None:
            row = self._read("SELECT account FROM subscriptions WHERE sub_data=?", (account_id,))
            acct = self._load_account(row[0][0]) if row else None
        if acct is None:
            return None
        subs = [
            (int(t), str(d))
            for t, d in self._read(
                "SELECT sub_type, sub_data FROM subscriptions WHERE account=?", (acct.id,)
            )
        ]
        n = self._read("SELECT count(*) FROM sessions WHERE account=? AND state=1", (acct.id,))
        return AccountInfo(acct, subs, n[0][0])

    def _notify(self, kind: str, account_id: str, fui_only: bool) -> None:
        """Queue a notice for each open session of the account (only those under
        Final-Unit-Indication with `fui_only`), inside the caller's transaction; the sweep
        module's `take_notices` hands them to Gy."""
        sql = "SELECT id, data FROM sessions WHERE account=? AND state=1" + (
            " AND fui=1" if fui_only else ""
        )
        for sid, data in self.db.execute(sql, (account_id,)).fetchall():
            s = sess_dec.decode(data)
            self.db.execute(
                "INSERT INTO notices (kind, session, account, client_host, client_realm, shard)"
                " VALUES (?,?,?,?,?,?)",
                (kind, sid, account_id, s.client_host, s.client_realm, self._shard(account_id)),
            )

    def topup(self, account_id: str, amount: int, now: float) -> Account:
        check_topup(amount)

        def run() -> Account:
            acct = existing(self._load_account(account_id), account_id)
            ledger = topped_up(acct, amount, now)
            self._save_account(acct)
            self._ledger(ledger)
            self._notify("rar", account_id, fui_only=True)
            return acct

        return self._txn(run)

    def set_blocked(self, account_id: str, blocked: bool) -> Account:
        def run() -> Account:
            acct = existing(self._load_account(account_id), account_id)
            asr = blocked_now(acct, blocked)
            self._save_account(acct)
            if asr:
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

    # -- iteration for checks and CLIs -----------------------------------------------------

    def iter_accounts(self) -> Iterator[Account]:
        for row in self._read(f"SELECT {ACCT_COLS} FROM accounts ORDER BY id"):
            yield account_of(row)

    def iter_open_sessions(self) -> Iterator[Session]:
        for (data,) in self._read("SELECT data FROM sessions WHERE state=1"):
            yield sess_dec.decode(data)

    def iter_ledger(self) -> Iterator[LedgerEntry]:
        cur = self.db.execute(
            "SELECT ts, account, kind, session, number, key, units, price, unit, amount, shortfall, ref"
            " FROM ledger ORDER BY seq"
        )
        for row in cur:
            yield LedgerEntry(*row)
