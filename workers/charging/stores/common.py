"""What both store backends share: the no-wait switch, the provisioning-rule cache, and the
pure account rules (import, top-up, block) that each backend then writes its own way."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from chargegw.codec import ResultCode

from .. import core
from ..core import Account, CCOp, LedgerEntry, Outcome
from ..store import AccountRow, ProvisionRule, StoreError

SWEEP_BUDGET = 0.02  # seconds one sweep or purge call may take (it runs on the worker's loop)
RULES_TTL = 5.0  # seconds a process reuses the provisioning rules it read


class Nowait:
    """The `nowait()` switch: inside it, a write that finds the store busy (SQLite: the write
    lock held; Redis: contention) raises StoreBusy at once, having done nothing."""

    _nowait = False

    @contextlib.contextmanager
    def nowait(self) -> Iterator[None]:
        before, self._nowait = self._nowait, True
        try:
            yield
        finally:
            self._nowait = before


class CachedRules:
    """Provisioning rules, re-read at most every RULES_TTL seconds (`rules()` reads them)."""

    _rules: list[ProvisionRule]
    _rules_at: float = 0.0
    # where the rules are read from when not this store's own table (a sharded store's
    # owner files read the home file's)
    _rules_from: Callable[[], list[ProvisionRule]] | None = None

    def rules(self) -> list[ProvisionRule]:
        raise NotImplementedError

    def _current_rules(self) -> list[ProvisionRule]:
        now = time.monotonic()
        if now - self._rules_at > RULES_TTL:
            self._rules = (self._rules_from or self.rules)()
            self._rules_at = now
        return self._rules


def no_account(op: CCOp) -> Outcome:
    """The answer to a request whose identities name no account and match no rule."""
    early = core.precheck(op, None)
    return early if early is not None else Outcome(int(ResultCode.DIAMETER_USER_UNKNOWN))


def credit(now: float, account: str, kind: str, amount: int) -> LedgerEntry:
    """A typed credit (`kind` one of core.CREDIT_KINDS) to the ledger."""
    return LedgerEntry(now, account, "credit", "", 0, kind, 0, 0, 1, amount)


def provisioned(rule: ProvisionRule, account: str) -> Account:
    """A new account made by a provisioning rule (its opening balance is a "provision" credit)."""
    return Account(account, rule.balance, 0, rule.credit_limit)


def import_row(acct: Account, r: AccountRow, now: float) -> list[LedgerEntry]:
    """Set `acct` (`Account(r.id)` for a new one) to the imported row's state; the ledger gets
    the difference in balance as an "import" credit."""
    if acct.reserved and r.balance - acct.reserved < r.credit_limit:
        raise StoreError(f"account {r.id}: balance below limit plus reservations")
    delta = r.balance - acct.balance
    acct.balance, acct.credit_limit, acct.blocked = r.balance, r.credit_limit, r.blocked
    return [credit(now, r.id, "import", delta)] if delta else []


def existing(acct: Account | None, account_id: str) -> Account:
    """The account an admin action names, which must exist."""
    if acct is None:
        raise StoreError(f"no account {account_id!r}")
    return acct


def check_topup(amount: int) -> None:
    if amount <= 0:
        raise StoreError("a top-up amount must be positive")


def topped_up(acct: Account, amount: int, now: float) -> list[LedgerEntry]:
    """Add a top-up to the account; its "topup" credit for the ledger."""
    acct.balance += amount
    return [credit(now, acct.id, "topup", amount)]


def blocked_now(acct: Account, blocked: bool) -> bool:
    """Set the account's blocked flag; whether an ASR is due (it has just been blocked)."""
    changed = acct.blocked != blocked
    acct.blocked = blocked
    return blocked and changed
