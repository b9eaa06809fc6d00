"""Redis Sy subscriptions: one key per Sy session, a set per account (in its shard), and each
account's count of them (its `sy` field, which credit control reads to know whether a spend
must be reported). Writes go through `_execute`, so with `replicas` an SLA or STA leaves
only once the subscription's change is held by the replicas (WAIT per primary written), as
the charging writes do: a failover must not forget whom to notify."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core import Account, LedgerEntry
from ..store import StoreError, SySubscription
from .redis_db import Batch, RedisTables, enc, sy_dec


class RedisSy(RedisTables):
    def _ksy(self, session_id: str) -> str:
        """A Sy subscription, found by its Session-Id alone (SLR/STR name no account, so no
        shard): untagged, single-key GET/SET/GETDEL only. The account's set of them is in
        the account's shard; the two are written one after the other, not atomically."""
        return f"{self.p}:sy:{session_id}"

    def _ksys(self, a: str) -> str:
        return f"{self.p}:{{s{self._sh(a)}}}:sy:{a}"

    def _sy_count(self, a: str, delta: int) -> None:
        def fn(acct: Account | None) -> tuple[Account, list[LedgerEntry]]:
            if acct is None:
                raise StoreError(f"no account {a!r}")
            acct.sy = max(0, acct.sy + delta)
            return acct, []

        self._update_account(a, fn)

    def sy_put(self, sub: SySubscription) -> None:
        old = self.sy_get(sub.session_id)
        self._write(lambda p: (p.set(self._ksy(sub.session_id), enc.encode(sub)),
                               p.cmd("SADD", self._ksys(sub.account), sub.session_id)))  # fmt: skip
        if old is None or old.account != sub.account:
            if old is not None:
                self._write(lambda p: p.cmd("SREM", self._ksys(old.account), sub.session_id))
                self._sy_count(old.account, -1)
            self._sy_count(sub.account, +1)

    def _write(self, queue: Callable[[Any], Any]) -> list[Any]:
        """One write pipeline (`queue` fills it), held by `replicas` before it returns."""

        def go() -> list[Any]:
            batch = Batch()
            queue(batch)
            return self._execute(batch)

        return self._call(go)

    def sy_get(self, session_id: str) -> SySubscription | None:
        raw = self._call(lambda: self.r.get(self._ksy(session_id)))
        return sy_dec.decode(raw) if raw else None

    def sy_delete(self, session_id: str) -> SySubscription | None:
        (raw,) = self._write(lambda p: p.cmd("GETDEL", self._ksy(session_id)))
        if not raw:
            return None
        sub = sy_dec.decode(raw)
        self._write(lambda p: p.cmd("SREM", self._ksys(sub.account), session_id))
        self._sy_count(sub.account, -1)
        return sub

    def sy_for_account(self, account_id: str) -> list[SySubscription]:
        sids = self._call(lambda: self.r.smembers(self._ksys(account_id)))
        out = []
        for sid in sids:
            sub = self.sy_get(sid.decode())
            if sub is not None:
                out.append(sub)
        return out
