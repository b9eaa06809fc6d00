"""The one store interface the charging applications use, and the backend factory.

Backends: `SqliteStore` (embedded default, one file under the data directory, safe with many
worker processes) and `RedisStore` (scale-out across hosts). Both pass tests/test_store_contract.py.
Every method that changes money does it in one atomic step; a backend that cannot reach its
storage raises `StoreUnavailable` quickly instead of hanging.

CDRs live in a store of their own (`open_cdr_store`): a separate SQLite file committed with
synchronous=FULL, or a Redis connection that waits for the append-only file, so an ACA never
leaves before its record would survive a power cut, and Rf never queues behind Gy's write lock.

Store waits never stall a worker's event loop: `without_blocking` runs a store call that must
not wait and, when the store is busy, retries it from a coroutine within a time budget; any
blocking wait made on a running loop is capped by `LOOP_WAIT` per loop turn (`turn_deadline`).

Each application depends only on the protocol of what it calls: `GyStore`, `SyStore`,
`CdrStore` (Rf) and `AdminStore` (the CLIs); `Store` is what a charging-store backend
implements, all of them at once. The backends are assembled from per-concern modules in
`stores/` (connection, credit control, sweeps, accounts, Sy, CDRs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

import msgspec

from chargegw.sharding import DEFAULT_SHARDS, MAX_SHARDS

from ..api import SetupUnavailable
from .core import CREDIT_KINDS, Account, CCOp, LedgerEntry, Outcome, Session
from .money import price_of

T = TypeVar("T")


class StoreError(Exception):
    """A request the store refuses (unknown account, bad amount)."""


class StoreUnavailable(SetupUnavailable):
    """Storage is unreachable or locked past the deadline; the request should get 3004."""


class StoreBusy(StoreUnavailable):
    """Another process holds the write lock and the caller asked not to wait; nothing was done."""


class ShardLayoutError(ValueError):
    """The configured shard count (`store.shards`) is not the one the store was made with."""


class NotDurable(StoreError):
    """The CDR store cannot promise that a committed record survives a power cut."""


class AccountRow(msgspec.Struct):
    """An account as imported: the full desired state."""

    id: str
    balance: int = 0
    credit_limit: int = 0
    blocked: bool = False
    subscriptions: list[tuple[int, str]] = msgspec.field(default_factory=list)


class ProvisionRule(msgspec.Struct, array_like=True):
    """Unknown subscribers whose Subscription-Id starts with `prefix` get an account on first use."""

    sub_type: int
    prefix: str
    balance: int
    credit_limit: int = 0


class AccountInfo(msgspec.Struct):
    account: Account
    subscriptions: list[tuple[int, str]]
    open_sessions: int


class Notice(msgspec.Struct, array_like=True):
    """Server-initiated work queued by an admin action: "rar" (top-up) or "asr" (blocked)."""

    kind: str
    session: str
    account: str
    client_host: str
    client_realm: str


class Cdr(msgspec.Struct):
    """One received ACR, as persisted before its ACA is sent."""

    session_id: str
    record_number: int
    record_type: int
    received: float
    origin_host: str
    origin_realm: str
    sub_session: int = 0
    event_timestamp: float | None = None
    user_name: str | None = None
    service_context_id: str | None = None
    subscriptions: list[tuple[int, str]] = msgspec.field(default_factory=list)
    interim_interval: int | None = None
    retransmit: bool = False
    end_to_end: int = 0
    avps: dict[str, Any] = msgspec.field(default_factory=dict)


class SyCounter(msgspec.Struct, array_like=True):
    """A subscribed policy counter: thresholds (micro-units, ascending) and their statuses."""

    id: str
    base_status: str
    thresholds: list[tuple[int, str]]

    def status(self, spent: int) -> str:
        current = self.base_status
        for at, status in self.thresholds:
            if spent >= at:
                current = status
        return current


class SySubscription(msgspec.Struct):
    session_id: str
    account: str
    pcrf_host: str
    pcrf_realm: str
    counters: list[SyCounter]


class LedgerReport(msgspec.Struct):
    """The reconciliation figures `chargegw ledger check` prints."""

    accounts: int = 0
    entries: int = 0
    open_sessions: int = 0
    debits: int = 0  # micro-units actually taken
    shortfall: int = 0  # usage beyond what the credit limit allowed (rated, not collectable)
    rated: int = 0  # sum over debits of used units times tariff
    refunds: int = 0
    credits: int = 0
    balances: int = 0
    reserved: int = 0
    reservations: int = 0
    off_tariff: int = 0
    problems: list[str] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class GyStore(Protocol):
    """What Gy calls: credit control, its periodic sweep and notices, the demo seed, and
    (through `sy.notify`, which Gy hands its store) the Sy subscriptions of an account."""

    def credit_control(self, op: CCOp) -> Outcome: ...
    def credit_control_many(
        self, ops: list[CCOp], wait: bool = True
    ) -> list[Outcome | Exception] | None: ...
    def resolve(self, subscriptions: list[tuple[int, str]]) -> Account | None: ...
    def sweep(self, now: float, closed_ttl: float, limit: int = 500) -> int: ...
    def take_notices(self, limit: int = 100) -> list[Notice]: ...
    def seed_demo(self, rows: list[AccountRow], rules: list[ProvisionRule], now: float) -> bool: ...
    def sy_for_account(self, account_id: str) -> list[SySubscription]: ...
    def nowait(self) -> contextlib.AbstractContextManager[None]: ...
    def close(self) -> None: ...


class SyStore(Protocol):
    """What Sy calls: its subscriptions, and the account (found or provisioned) they watch."""

    def sy_put(self, sub: SySubscription) -> None: ...
    def sy_get(self, session_id: str) -> SySubscription | None: ...
    def sy_delete(self, session_id: str) -> SySubscription | None: ...
    def sy_for_account(self, account_id: str) -> list[SySubscription]: ...
    def get_account(self, account_id: str) -> AccountInfo | None: ...
    def provision(self, subscriptions: list[tuple[int, str]], now: float) -> Account | None: ...
    def nowait(self) -> contextlib.AbstractContextManager[None]: ...
    def close(self) -> None: ...


class LedgerSource(Protocol):
    """What `ledger_check` reads."""

    def iter_accounts(self) -> Iterator[Account]: ...
    def iter_open_sessions(self) -> Iterator[Session]: ...
    def iter_ledger(self) -> Iterator[LedgerEntry]: ...


class AdminStore(LedgerSource, Protocol):
    """What the operator's CLIs call (`chargegw accounts`, `chargegw ledger check`)."""

    def import_accounts(self, rows: Iterable[AccountRow], now: float) -> int: ...
    def get_account(self, account_id: str) -> AccountInfo | None: ...
    def topup(self, account_id: str, amount: int, now: float) -> Account: ...
    def set_blocked(self, account_id: str, blocked: bool) -> Account: ...
    def set_rules(self, rules: list[ProvisionRule]) -> None: ...
    def rules(self) -> list[ProvisionRule]: ...
    def seed_demo(self, rows: list[AccountRow], rules: list[ProvisionRule], now: float) -> bool: ...
    def close(self) -> None: ...


class Store(GyStore, SyStore, AdminStore, Protocol):
    """A charging-store backend: everything Gy, Sy and the CLIs need (one object per process
    serves them all, `open_store`)."""


class CdrStore(Protocol):
    """Where Rf keeps its records: durable before the ACA, each key stored once."""

    def put_cdrs(self, cdrs: list[Cdr]) -> list[bool]: ...
    def put_cdr(self, cdr: Cdr) -> bool: ...
    def iter_cdrs(self, since: float | None = None) -> Iterator[Cdr]: ...
    def purge(self, before: float, budget: float = 0.02) -> int: ...
    def nowait(self) -> contextlib.AbstractContextManager[None]: ...
    def close(self) -> None: ...


def match_rule(
    rules: list[ProvisionRule], subscriptions: list[tuple[int, str]]
) -> tuple[ProvisionRule, str] | None:
    """The first rule matching one of the request's identities, with that identity's data."""
    for sub_type, data in subscriptions:
        for rule in rules:
            if rule.sub_type == sub_type and data.startswith(rule.prefix) and data.isdigit():
                return rule, data
    return None


def ledger_check(
    store: LedgerSource, tariff_of: Callable[[str], tuple[int, int] | None] | None = None
) -> LedgerReport:
    """Verify the invariants on a store and return the figures.

    Money may enter an account only as a typed credit (provisioning, import, top-up) or as a
    refund of a debit it had paid; so the check fails when
    - an entry has an unknown kind, or a credit an unknown type;
    - a refund names no debit, a debit of another account or service, or gives back more
      than that debit took (all refunds of it together), or more than its units are rated;
    - a balance differs from its credits plus refunds minus debits in the ledger;
    - an account's reserved amount differs from the reservations of its open sessions;
    - a balance minus reservations is below the credit limit;
    - a debit's amount plus shortfall differs from its used units times its tariff (so the sum
      of debits equals the sum of used units times tariff, less recorded shortfall), or a
      debit, refund or shortfall is negative;
    - a (session, request number, service) was debited or refunded twice.
    With `tariff_of`, it also counts debits priced at other than the configured tariff.
    """
    rep = LedgerReport()
    money: dict[str, int] = {}
    seen: set[tuple[str, int, str, str]] = set()
    debited: dict[tuple[str, str], tuple[str, int]] = {}  # (session, key) -> (account, amount)
    refunds: list[LedgerEntry] = []
    for e in store.iter_ledger():
        rep.entries += 1
        if e.kind == "credit":
            if e.key not in CREDIT_KINDS:
                rep.problems.append(f"credit to {e.account} of unknown type {e.key!r}")
            rep.credits += e.amount
            money[e.account] = money.get(e.account, 0) + e.amount
            continue
        if e.kind not in ("debit", "refund"):
            rep.problems.append(f"entry of unknown kind {e.kind!r} on {e.account}")
            continue
        rated = price_of(e.units, e.price, e.unit)
        key = (e.session, e.number, e.key, e.kind)
        if key in seen:
            rep.problems.append(
                f"{e.kind} twice for session {e.session} number {e.number} service {e.key}"
            )
        seen.add(key)
        if e.kind == "refund":
            rep.refunds += e.amount
            money[e.account] = money.get(e.account, 0) + e.amount
            if e.amount < 0 or e.amount > rated:
                rep.problems.append(f"refund {e.session}/{e.number} {e.amount} > rated {rated}")
            refunds.append(e)
            continue
        rep.debits += e.amount
        rep.shortfall += e.shortfall
        rep.rated += rated
        money[e.account] = money.get(e.account, 0) - e.amount
        prev = debited.get((e.session, e.key), (e.account, 0))
        debited[(e.session, e.key)] = (e.account, prev[1] + e.amount)
        if e.amount + e.shortfall != rated or e.amount < 0 or e.shortfall < 0:
            rep.problems.append(
                f"debit {e.session}/{e.number}/{e.key}: {e.amount}+{e.shortfall} != {e.units} units rated {rated}"
            )
        if tariff_of is not None and tariff_of(e.key) != (e.price, e.unit):
            rep.off_tariff += 1
    given: dict[tuple[str, str], int] = {}
    for e in refunds:
        d = debited.get((e.ref, e.key)) if e.ref else None
        if d is None or d[0] != e.account:
            rep.problems.append(
                f"refund {e.session}/{e.number}/{e.key} of {e.amount} to {e.account}"
                f" names no debit of that account (ref {e.ref!r})"
            )
            continue
        total = given.get((e.ref, e.key), 0) + e.amount
        given[(e.ref, e.key)] = total
        if total > d[1]:
            rep.problems.append(
                f"refunds of debit {e.ref}/{e.key} give back {total}, more than its {d[1]}"
            )
    held: dict[str, int] = {}
    for s in store.iter_open_sessions():
        rep.open_sessions += 1
        for r in s.resv.values():
            rep.reservations += 1
            held[s.account] = held.get(s.account, 0) + r.amount
            if r.amount != price_of(r.units, r.price, r.unit):
                rep.problems.append(f"reservation of {s.id} holds {r.amount} for {r.units} units")
    known: set[str] = set()
    for a in store.iter_accounts():
        known.add(a.id)
        rep.accounts += 1
        rep.balances += a.balance
        rep.reserved += a.reserved
        if money.get(a.id, 0) != a.balance:
            rep.problems.append(
                f"account {a.id}: balance {a.balance} != ledger {money.get(a.id, 0)}"
            )
        if held.get(a.id, 0) != a.reserved:
            rep.problems.append(
                f"account {a.id}: reserved {a.reserved} != reservations {held.get(a.id, 0)}"
            )
        if a.balance - a.reserved < a.credit_limit:
            rep.problems.append(
                f"account {a.id}: balance {a.balance} - reserved {a.reserved} below limit {a.credit_limit}"
            )
    for acct_id, amount in money.items():
        if acct_id not in known and amount:
            rep.problems.append(f"ledger moves {amount} for {acct_id}, which is no account")
    if rep.debits + rep.shortfall != rep.rated:
        rep.problems.append(f"debits {rep.debits} + shortfall {rep.shortfall} != rated {rep.rated}")
    return rep


class ShardedApp:
    """What the worker runtime calls on a charging application whose store is sharded (Gy
    and Sy share one store object per process, so assigning the same set twice is harmless)."""

    store: Any

    @property
    def shards(self) -> int:
        """The store's shard count (0: this store is not sharded)."""
        return int(getattr(self.store, "shard_count", 0) or 0)

    def assign_shards(self, shards: frozenset[int]) -> None:
        """Own exactly `shards` from now on (the runtime's Assign)."""
        assign = getattr(self.store, "assign_shards", None)
        if assign is not None:
            assign(frozenset(shards))


class StoreConfig(msgspec.Struct, forbid_unknown_fields=True):
    """`store` table of an application's config."""

    backend: str = "sqlite"  # "sqlite" or "redis"
    path: str = ""  # sqlite file; default <data_dir>/charging.db
    url: str = "redis://127.0.0.1:6379/0"  # redis
    prefix: str = "cg"  # redis key prefix
    timeout: float = 0.5  # seconds before an unreachable or locked store gives StoreUnavailable
    cdr_path: str = ""  # sqlite file of the Rf records; default <data_dir>/cdr.db
    cdr_url: str = ""  # redis of the Rf records (own connection); default `url`
    start_timeout: float = 30.0  # seconds a worker retries a store not yet available at start
    # SQLite: fsync every commit (synchronous=FULL) so no answer leaves before its effect
    # survives a power cut. false = synchronous=NORMAL: survives process crashes only.
    durable: bool = True
    # Charging state is split into this many shards (issue 10; sqlite: persisted in the
    # shard map, a store made with another count refuses to open).
    shards: int = DEFAULT_SHARDS
    # Redis with replicas (`redis+sentinel://HOST:PORT/MASTER`, or `redis+cluster://HOST:PORT`:
    # WAIT on each primary written): a batch is answered only once this many replicas hold
    # it (WAIT), so a failover loses no answered change; fewer in `replica_wait` s gives 3004.
    replicas: int = 0
    replica_wait: float = 0.1

    def __post_init__(self) -> None:
        if not 1 <= self.shards <= MAX_SHARDS:
            raise ValueError(f"shards must be 1..{MAX_SHARDS}")
        if not 0 <= self.replicas <= 16:
            raise ValueError("replicas must be 0..16")
        if not 0 < self.replica_wait <= 10:
            raise ValueError("replica_wait must be > 0 and <= 10 seconds")
        if self.replicas and self.replica_wait >= self.timeout:
            raise ValueError(
                "replica_wait must be shorter than timeout (the WAIT must end before the"
                " connection's own timeout gives up on it)"
            )
        if self.backend == "sqlite" and self.replicas:
            raise ValueError("replicas applies to the redis backend only")
        for url in (self.url, self.cdr_url):
            if url.startswith("redis+sentinel://"):
                from .stores.redis_db import parse_sentinel_url

                parse_sentinel_url(url)  # ValueError names what is wrong
            elif url.startswith("redis+cluster://"):
                from .stores.redis_db import parse_cluster_url

                parse_cluster_url(url)
        if self.backend not in ("sqlite", "redis"):
            raise ValueError(f"backend must be 'sqlite' or 'redis', not {self.backend!r}")
        if self.timeout <= 0:
            raise ValueError("timeout must be > 0")
        if self.start_timeout < 0:
            raise ValueError("start_timeout must be >= 0")


LOOP_WAIT = 0.05  # seconds a store may block a running event loop in one turn, all calls together
_turn: list[Any] = [None, 0.0]  # [loop of the current turn, its deadline]


def _end_turn() -> None:
    _turn[0] = None


def turn_deadline(wait: float) -> float:
    """When a blocking store wait that may last `wait` must give up.

    Off an event loop (CLIs, set-up) that is just `wait` from now. On a running loop every
    blocking wait of the turn shares one budget of LOOP_WAIT, so a batch of requests that each
    wait for a lock stalls the loop for LOOP_WAIT at most, not `wait` per request; the rest of
    the turn's requests then fail fast (StoreUnavailable, answered 3004)."""
    now = time.monotonic()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return now + wait
    if _turn[0] is not loop:
        _turn[0], _turn[1] = loop, now + min(wait, LOOP_WAIT)
        loop.call_soon(_end_turn)  # runs on the next turn
    return float(_turn[1])


def turn_spent() -> bool:
    """Whether this loop turn's store budget is used up (never true off a running loop)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return False
    return _turn[0] is loop and time.monotonic() >= _turn[1]


def spend_turn() -> None:
    """Use up this loop turn's store budget: after a store call timed out, the turn's other
    requests fail fast instead of each waiting out its own timeout."""
    turn_deadline(0.0)
    _turn[1] = 0.0


def without_blocking(store: Any, fn: Callable[[], T], budget: float) -> T | Awaitable[T]:
    """`fn()` (store calls that are safe to redo when they did nothing), never blocking a
    running event loop: it is tried at once in the store's no-wait mode and, while the store
    is busy, retried from a coroutine until `budget` seconds have passed; then it raises
    StoreUnavailable (the caller answers 3004). With no running loop it simply runs `fn()`
    with the store's own bounded wait."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    start = time.monotonic()
    try:
        with store.nowait():
            return fn()
    except StoreBusy:
        pass
    return _retry_later(store, fn, start + budget, budget)


async def _retry_later(store: Any, fn: Callable[[], T], deadline: float, budget: float) -> T:
    delay = 0.0005
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise StoreUnavailable(f"store busy for {budget}s")
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, 0.02)
        try:
            with store.nowait():
                return fn()
        except StoreBusy:
            continue


_open: dict[tuple[int, str, str], Any] = {}


def _retry_start(cfg: StoreConfig, make: Callable[[], T]) -> T:
    """A store that is not available yet at start (Redis still starting, a locked file) is
    retried with backoff for `start_timeout`: a reason to wait, not a configuration error."""
    deadline = time.monotonic() + cfg.start_timeout
    delay = 0.05
    while True:
        try:
            return make()
        except StoreUnavailable:
            if time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _sqlite_path(cfg: StoreConfig, data_dir: str) -> str:
    return cfg.path or os.path.join(data_dir, "charging.db")


def _process_wide(cfg: StoreConfig, kind: str, target: str, make: Callable[[], T]) -> T:
    """The one store of this process for `kind` and `target`, made (and retried while it is
    not available yet, `_retry_start`) on first use."""
    key = (os.getpid(), kind, target + "|" + cfg.prefix)
    store: T | None = _open.get(key)
    if store is None:
        store = _open[key] = _retry_start(cfg, make)
    return store


def open_store(cfg: StoreConfig, data_dir: str, owner: str = "") -> Store:
    """The process-wide store for this config (the Gy and Sy apps of one worker share it).

    SQLite is sharded (`stores.sqlite_sharded`): `owner` (the worker id) names the file this
    process writes once the runtime assigns it shards; until then it serves every shard from
    the home file (`path`)."""
    if cfg.backend == "redis":
        url = cfg.url

        def redis() -> Store:
            from .redis_store import RedisStore

            return RedisStore(
                url,
                prefix=cfg.prefix,
                timeout=cfg.timeout,
                shards=cfg.shards,
                replicas=cfg.replicas,
                replica_wait=cfg.replica_wait,
            )

        return _process_wide(cfg, cfg.backend, url, redis)
    path = _sqlite_path(cfg, data_dir)

    def sqlite() -> Store:
        from .sqlite_store import open_sharded

        return open_sharded(
            path,
            owner=owner or f"{os.uname().nodename}-{os.getpid()}",
            shards=cfg.shards,
            timeout=cfg.timeout,
            setup_timeout=cfg.start_timeout,
            durable=cfg.durable,
        )

    return _process_wide(cfg, cfg.backend, path, sqlite)


def open_cdr_store(cfg: StoreConfig, data_dir: str, retention: float = 0.0) -> CdrStore:
    """The process-wide CDR store for this config: its own SQLite file or Redis connection.

    `retention` (seconds, 0 = forever) is how long a record is kept; Redis applies it itself
    (per session key), SQLite by `purge`."""
    if cfg.backend == "redis":
        url = cfg.cdr_url or cfg.url

        def redis() -> CdrStore:
            from .redis_store import RedisCdrStore

            return RedisCdrStore(
                url,
                prefix=cfg.prefix,
                timeout=cfg.timeout,
                retention=retention,
                replicas=cfg.replicas,
                replica_wait=cfg.replica_wait,
            )

        return _process_wide(cfg, "cdr-" + cfg.backend, url, redis)
    path = cfg.cdr_path or os.path.join(data_dir, "cdr.db")
    legacy = _sqlite_path(cfg, data_dir)

    def sqlite() -> CdrStore:
        from .sqlite_store import SqliteCdrStore

        return SqliteCdrStore(
            path, timeout=cfg.timeout, setup_timeout=cfg.start_timeout, legacy=legacy
        )

    return _process_wide(cfg, "cdr-" + cfg.backend, path, sqlite)
