"""Redis accounts and administration (Sy's provisioning, the operator's CLIs, the demo seed,
`ledger check`). Each account change is a compare-and-set on the account key with its ledger
entries and identity keys (`RedisTables._update_account`), unfenced: the owner of the shard
sees it as a conflict and reads the account again. An identity whose data hashes to another
shard than its account also gets an alias key (identity -> shard) for the routing fallback.

`migrate_layout` rewrites a store of the account-tagged layout (before issue 10) into the
shard-tagged one, once, with every worker stopped."""

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
from .redis_db import (
    LAYOUT_VERSION,
    LayoutError,
    RedisTables,
    Script,
    enc,
    is_cluster,
    ledger_dec,
    sess_dec,
)

_SUB_TYPES = range(5)  # Subscription-Id-Type values `get_account` tries for a bare identity
_CHUNK = 1000  # list entries / keys read per round trip when iterating


class RedisAccounts(RedisTables):
    def _account_of(self, t: int, d: str) -> str | None:
        """The account an identity names: in the shard of its data, else via its alias."""
        n = self.shard_of_data(d)
        raw = self._call(partial(self.r.get, self._ksub(n, t, d)))
        if raw is None:
            alias = self._call(partial(self.r.get, self._kalias(t, d)))
            if alias is None or int(alias) == n:
                return None
            raw = self._call(partial(self.r.get, self._ksub(int(alias), t, d)))
        return raw.decode() if raw is not None else None

    def shard_of_data(self, d: str) -> int:
        return self._sh(d)

    def resolve(self, subscriptions: list[tuple[int, str]]) -> Account | None:
        for t, d in subscriptions:
            a = self._account_of(t, d)
            if a is not None:
                acct = self._get_account(a)
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

            def identity(sc: Script) -> None:
                sc.setnx(self._ksub(self._sh(data), rule.sub_type, data), data)
                sc.cmd("sadd", self._ksubs(data), f"{rule.sub_type}:{data}")

            acct = self._update_account(data, fn, identity)
        return acct

    def import_accounts(self, rows: Iterable[AccountRow], now: float) -> int:
        n = 0
        for r in rows:
            self._repoint(r)

            def fn(acct: Account | None, r: AccountRow = r) -> tuple[Account, list[LedgerEntry]]:
                acct = acct or Account(r.id)
                return acct, import_row(acct, r, now)

            def identities(sc: Script, r: AccountRow = r) -> None:
                m = self._sh(r.id)
                for t, d in r.subscriptions:
                    sc.cmd("set", self._ksub(m, t, d), r.id)
                    sc.cmd("sadd", self._ksubs(r.id), f"{t}:{d}")

            self._update_account(r.id, fn, identities)
            n += 1
        return n

    def _repoint(self, r: AccountRow) -> None:
        """Before an import: identities of the row that named another account stop naming
        it, and identities hashing elsewhere get their alias (written before the account's
        identity keys, so a request routed by the alias finds them once they exist)."""
        m = self._sh(r.id)
        pipe = self._pipe()
        for t, d in r.subscriptions:
            old = self._account_of(t, d)
            if old is not None and old != r.id:
                pipe.delete(self._ksub(self._sh(old), t, d))
                pipe.srem(self._ksubs(old), f"{t}:{d}")
            if self._sh(d) != m:
                pipe.set(self._kalias(t, d), str(m))
            else:
                pipe.delete(self._kalias(t, d))
        if len(pipe):
            self._call(pipe.execute)

    def get_account(self, account_id: str) -> AccountInfo | None:
        acct = self._get_account(account_id)
        if acct is None:
            for t in _SUB_TYPES:
                a = self._account_of(t, account_id)
                if a is not None:
                    acct = self._get_account(a)
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
        if len(pipe):
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
        pipe = self._pipe()
        for n in range(self.shards):
            pipe.smembers(self._kaccts(n))
        found = self._call(pipe.execute)
        return sorted(x.decode() for ids in found for x in ids)

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
        for n in range(self.shards):
            at = 0
            while True:
                chunk = self._call(partial(self.r.lrange, self._kl(n), at, at + _CHUNK - 1))
                for raw in chunk:
                    yield ledger_dec.decode(raw)
                if len(chunk) < _CHUNK:
                    break
                at += _CHUNK

    # -- the layout before issue 10 -------------------------------------------------------

    def migrate_layout(self) -> int:
        """Rewrite a store of the account-tagged layout (`cg:{ACCT}:a`, `cg:accounts`,
        `cg:sweep`, `cg:sub:T:D`) into the shard-tagged one; the number of accounts moved.

        Run once with every worker stopped (it is not atomic against live writers). Rows,
        ledger entries, identities (with aliases), open-session and Sy sets, the sweep index
        and every session with its remaining TTL are copied, then the old keys deleted and
        the layout recorded; a run that stopped half-way can be run again (copies are
        overwritten, not added twice: each account's ledger is copied with its account)."""
        r, p = self.r, self.p
        if r.get(f"{p}:layout") is not None:
            return 0
        if is_cluster(r):  # its transactions span slots; that layout never ran on a cluster
            raise LayoutError(
                f"redis {self.url}: migrate the account-tagged layout on a single server,"
                " then move the data into the cluster"
            )
        ids = sorted(x.decode() for x in r.smembers(f"{p}:accounts"))
        sweep: dict[str, list[tuple[str, float]]] = {}
        for m, score in r.zrange(f"{p}:sweep", 0, -1, withscores=True):
            a, _, sid = m.decode().partition("\n")
            sweep.setdefault(a, []).append((sid, score))
        sessions: dict[str, list[bytes]] = {}
        for key in r.scan_iter(match=f"{p}:{{*}}:s:*", count=_CHUNK):
            body = key.decode()[len(p) + 2 :]
            a, sep, _ = body.partition("}:s:")
            if sep:
                sessions.setdefault(a, []).append(key)
        for a in ids:
            old = f"{p}:{{{a}}}"
            n = self._sh(a)
            if r.get(f"{old}:a") is None:
                continue
            pipe = r.pipeline(transaction=True)
            pipe.set(self._ka(a), r.get(f"{old}:a"))
            pipe.sadd(self._kaccts(n), a)
            for x in r.smembers(f"{old}:subs"):
                t, _, d = x.decode().partition(":")
                pipe.set(self._ksub(n, int(t), d), a)
                pipe.sadd(self._ksubs(a), x)
                if self._sh(d) != n:
                    pipe.set(self._kalias(int(t), d), str(n))
                pipe.delete(f"{p}:sub:{t}:{d}")
            entries = r.lrange(f"{old}:l", 0, -1)
            if entries:
                pipe.rpush(self._kl(n), *entries)
            sets = ((f"{old}:ss", self._kss(a)), (f"{old}:sy", f"{p}:{{s{n}}}:sy:{a}"))
            for before, new in sets:
                members = r.smembers(before)
                if members:
                    pipe.sadd(new, *members)
            for sid, score in sweep.get(a, []):
                pipe.zadd(self._ksweep(n), {f"{a}\n{sid}": score})
            for key in sessions.get(a, []):
                raw, ttl = r.get(key), r.pttl(key)
                if raw is not None:
                    sid = key.decode().split("}:s:", 1)[1]
                    pipe.set(self._ksn(n, sid), raw, px=ttl if ttl > 0 else None)
                    pipe.delete(key)
            # the old account key goes last in this transaction: a rerun skips finished ones
            pipe.delete(f"{old}:l", f"{old}:ss", f"{old}:sy", f"{old}:subs", f"{old}:a")
            pipe.execute()
        r.delete(f"{p}:accounts", f"{p}:sweep")
        want = self._want_shards or self.shards
        r.set(f"{p}:layout", f"{LAYOUT_VERSION} {want}")
        self._layout_ok = False
        return len(ids)
