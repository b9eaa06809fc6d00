"""Redis accounts and administration (Sy's provisioning, the operator's CLIs, the demo seed,
`ledger check`). Each account change is a compare-and-set on the account key with its ledger
entries (`RedisTables._update_account`); identity keys and notices are written after it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial

from .. import core
from ..core import Account, LedgerEntry, Session
from ..store import AccountInfo, AccountRow, Notice, ProvisionRule, match_rule
from .common import (
    blocked_now,
    check_topup,
    credit,
    existing,
    import_row,
    provisioned,
    topped_up,
)
from .redis_db import RedisTables, enc, ledger_dec, sess_dec

_SUB_TYPES = range(5)  # Subscription-Id-Type values `get_account` tries for a bare identity


class RedisAccounts(RedisTables):
    def resolve(self, subscriptions: list[tuple[int, str]]) -> Account | None:
        for t, d in subscriptions:
            raw = self._call(partial(self.r.get, self._ksub(t, d)))
            if raw is not None:
                acct = self._get_account(raw.decode())
                if acct is not None:
                    return acct
        hit = match_rule(self._current_rules(), subscriptions)
        if hit is None:
            return None
        rule, data = hit
        return self._get_account(data) or provisioned(rule, data)

    def provision(self, subscriptions: list[tuple[int, str]], now: float) -> Account | None:
        """Resolve, creating the account from a provisioning rule when one matches."""
        acct = self.resolve(subscriptions)
        if acct is None:
            return None
        hit = match_rule(self._current_rules(), subscriptions)
        if hit is not None and hit[1] == acct.id:
            rule, data = hit

            def fn(cur: Account | None) -> tuple[Account, list[LedgerEntry]]:
                if cur is not None:
                    return cur, []
                return provisioned(rule, data), [credit(now, data, "provision", rule.balance)]

            acct = self._update_account(data, fn)
            pipe = self.r.pipeline(transaction=False)
            pipe.set(self._ksub(rule.sub_type, data), data, nx=True)
            pipe.sadd(self._ksubs(data), f"{rule.sub_type}:{data}")
            self._call(pipe.execute)
        return acct

    def import_accounts(self, rows: Iterable[AccountRow], now: float) -> int:
        n = 0
        for r in rows:

            def fn(acct: Account | None, r: AccountRow = r) -> tuple[Account, list[LedgerEntry]]:
                acct = acct or Account(r.id)
                return acct, import_row(acct, r, now)

            self._update_account(r.id, fn)
            if r.subscriptions:
                pipe = self.r.pipeline(transaction=False)
                for t, d in r.subscriptions:
                    pipe.set(self._ksub(t, d), r.id)
                    pipe.sadd(self._ksubs(r.id), f"{t}:{d}")
                self._call(pipe.execute)
            n += 1
        return n

    def get_account(self, account_id: str) -> AccountInfo | None:
        acct = self._get_account(account_id)
        if acct is None:
            for t in _SUB_TYPES:
                raw = self._call(partial(self.r.get, self._ksub(t, account_id)))
                if raw is not None:
                    acct = self._get_account(raw.decode())
                    break
        if acct is None:
            return None
        subs_raw = self._call(partial(self.r.smembers, self._ksubs(acct.id)))
        subs = []
        for x in sorted(subs_raw):
            t, _, d = x.decode().partition(":")
            subs.append((int(t), d))
        n = self._call(partial(self.r.scard, self._kss(acct.id)))
        return AccountInfo(acct, subs, int(n))

    def _notify(self, kind: str, a: str, fui_only: bool) -> None:
        """Queue a notice for each open session of the account (only those under
        Final-Unit-Indication with `fui_only`); the sweep module's `take_notices` hands them
        to Gy."""
        sids = self._call(lambda: self.r.smembers(self._kss(a)))
        pipe = self.r.pipeline(transaction=False)
        for sid in sids:
            raw = self._call(partial(self.r.get, self._ks(a, sid.decode())))
            if raw is None:
                continue
            s = sess_dec.decode(raw)
            if s.state == core.OPEN and (s.fui or not fui_only):
                pipe.rpush(
                    f"{self.p}:notices",
                    enc.encode(Notice(kind, s.id, a, s.client_host, s.client_realm)),
                )
        self._call(pipe.execute)

    def topup(self, account_id: str, amount: int, now: float) -> Account:
        check_topup(amount)

        def fn(acct: Account | None) -> tuple[Account, list[LedgerEntry]]:
            acct = existing(acct, account_id)
            return acct, topped_up(acct, amount, now)

        acct = self._update_account(account_id, fn)
        self._notify("rar", account_id, fui_only=True)
        return acct

    def set_blocked(self, account_id: str, blocked: bool) -> Account:
        asr = [False]

        def fn(acct: Account | None) -> tuple[Account, list[LedgerEntry]]:
            acct = existing(acct, account_id)
            asr[0] = blocked_now(acct, blocked)
            return acct, []

        acct = self._update_account(account_id, fn)
        if asr[0]:
            self._notify("asr", account_id, fui_only=False)
        return acct

    def set_rules(self, rules: list[ProvisionRule]) -> None:
        self._call(lambda: self.r.set(f"{self.p}:rules", enc.encode(rules)))
        self._rules_at = 0.0

    def seed_demo(self, rows: list[AccountRow], rules: list[ProvisionRule], now: float) -> bool:
        """Seed once per store. The flag is set last, so a crash half-way is redone by the
        next worker; importing is idempotent (it sets balances, the ledger gets the difference)."""
        if self._call(lambda: self.r.exists(f"{self.p}:seeded")):
            return False
        self.import_accounts(rows, now)
        self.set_rules(rules)
        return bool(self._call(lambda: self.r.set(f"{self.p}:seeded", str(now), nx=True)))

    # -- iteration for checks and CLIs -----------------------------------------------------

    def _account_ids(self) -> list[str]:
        ids = self._call(lambda: self.r.smembers(f"{self.p}:accounts"))
        return sorted(x.decode() for x in ids)

    def iter_accounts(self) -> Iterator[Account]:
        for a in self._account_ids():
            acct = self._get_account(a)
            if acct is not None:
                yield acct

    def iter_open_sessions(self) -> Iterator[Session]:
        for a in self._account_ids():
            for sid in self._call(partial(self.r.smembers, self._kss(a))):
                raw = self._call(partial(self.r.get, self._ks(a, sid.decode())))
                if raw:
                    s = sess_dec.decode(raw)
                    if s.state == core.OPEN:
                        yield s

    def iter_ledger(self) -> Iterator[LedgerEntry]:
        for a in self._account_ids():
            for raw in self._call(partial(self.r.lrange, self._kl(a), 0, -1)):
                yield ledger_dec.decode(raw)
