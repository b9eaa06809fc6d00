"""The worker pool's bookkeeping, without sockets or clocks (sans-IO).

`PoolCore` decides where a request goes and what happens when things go wrong: credit per
worker, session affinity on a consistent-hash ring over live workers, the in-flight map,
deadlines, heartbeat silence and failover. The ZeroMQ adapter (gateway/pool_io.py) feeds
it events with the current time and carries out what it returns; tests drive it directly.

Invariants:
- a worker never holds more requests of its current registration than it granted;
- every placed request leaves `pending` exactly once: answered by its worker, answered by
  the gateway (deadline, no worker left), or moved to another worker (same id);
- a request answered by the gateway while its worker still holds it keeps occupying that
  worker's slot (a "zombie") until the worker answers or is dropped;
- a live identity belongs to the key that registered it: another key's registration under
  it is refused, never adopted;
- the worker's reported free slots reconcile exactly with `available` plus the slots the
  latency limit withholds (see `reconcile`, `adapt`).
"""

from __future__ import annotations

import bisect
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, NotRequired, TypedDict, Unpack

from chargegw.codec.constants import ResultCode
from chargegw.codec.errors import DiameterError
from chargegw.gateway.latency import ADAPT_INTERVAL, floor_limit, next_limit
from chargegw.sharding import MAX_SHARDS, owner_name, shard_of


@dataclass(slots=True)
class Pending:
    id: int
    worker: bytes  # routing identity of the worker holding it
    peer: str
    hbh: int
    app: int
    cmd: int
    session_id: bytes  # the raw Session-Id value (affinity key; decoded only for logs)
    deadline: float  # monotonic clock
    wall_deadline: float  # time.time(), as sent to the worker
    raw: bytes
    ref: Any = None  # the adapter's handle for building an error answer (the decoded request)
    retransmit: bool = False
    placed: int = 1  # how many workers it was given to
    shard: int = -1  # the charging shard it is routed by (-1: not a sharded application)
    route: int = 0  # ROUTE_ENDS / ROUTE_FRESH: when the session's remembered route is dropped


@dataclass(slots=True)
class WorkerState:
    ident: bytes
    worker_id: str
    credit: int  # slots granted by the worker for this registration
    available: int
    apps: frozenset[int]
    last_seen: float
    gen: int = 0
    pid: int = 0
    host: str = ""
    draining: bool = False
    inflight: set[int] = field(default_factory=set)  # pending and zombie ids it holds
    # Its requests in `pending` by peer: the fair share is judged on the worker that is
    # nearly full (a peer's total over all workers would overstate what it holds there).
    by_peer: dict[str, int] = field(default_factory=dict)
    handled: int = 0
    owner: bytes = b""  # the CURVE public key it registered with (b"" on ipc)
    sent: int = 0  # requests given to it in this registration (placed or moved)
    excess: int = 0  # credit it granted beyond max_credit (not used, but in its own count)
    mismatches: int = 0  # consecutive heartbeats whose `free` did not reconcile
    shards: int = 0  # its store's shard count (0: it serves no sharded application)
    shard_apps: frozenset[int] = frozenset()
    # For `chargegw status` (none is touched per request): where its connection comes
    # from (the CURVE connection's peer address; "" on ipc), when it registered and last
    # sent a heartbeat (monotonic), requests of it this gateway answered 3002 at their
    # deadline, and requests it dropped unapplied (Expired).
    address: str = ""
    registered_at: float = 0.0
    heartbeat_at: float | None = None
    timeouts: int = 0
    expired: int = 0
    # Latency-targeted admission (gateway/latency.py): the slots it may hold now (credit when
    # off), and its answers' latency since the last adjustment (the sum of their
    # now - deadline, and their count).
    limit: int = 0
    lat_sum: float = 0.0
    lat_n: int = 0
    # The last interval's mean latency (seconds), and for how many intervals in a row the
    # limit has sat at its floor with the mean still above the target (see `out_of_reach`).
    lat_mean: float = 0.0
    floored: int = 0

    def free_here(self) -> int:
        """The free slots this side counts as the worker counts them, before what is on the
        way: `available`, what the latency limit withholds (credit - limit), and the credit
        it granted beyond max_credit (see PoolCore.reconcile)."""
        return self.available + (self.credit - self.limit) + self.excess

    def to_dict(self, now: float) -> dict[str, Any]:
        name, n = _incarnation(self.worker_id)
        hb = self.heartbeat_at
        return {
            "id": self.worker_id,
            "name": name,
            "incarnation": n,
            "gen": self.gen,
            "host": self.host,
            "pid": self.pid,
            "address": self.address,
            "apps": sorted(self.apps),
            "credit": self.credit,
            "available": self.available,
            "limit": self.limit,
            "latency_ms": round(self.lat_mean * 1000, 3),
            "target_out_of_reach": self.floored >= OUT_OF_REACH_INTERVALS,
            "inflight": len(self.inflight),
            "handled": self.handled,
            "draining": self.draining,
            "sent": self.sent,
            "shard_apps": sorted(self.shard_apps),
            "silent_s": round(max(0.0, now - self.last_seen), 3),
            "heartbeat_s": None if hb is None else round(max(0.0, now - hb), 3),
            "registered_s": round(max(0.0, now - self.registered_at), 3),
            "timeouts": self.timeouts,
            "expired": self.expired,
        }


@dataclass(slots=True)
class Counters:
    placed: int = 0
    answered: int = 0
    shed_busy: int = 0  # 3004
    shed_fair: int = 0  # 3004 to a peer that held its share of a nearly full worker
    no_worker: int = 0  # 3002 because no live worker serves the app
    expired: int = 0  # 3002 because the deadline passed
    resent: int = 0  # failed over to another worker
    failed_over_lost: int = 0  # 3002 because the worker was lost and no resend was possible
    late_answers: int = 0  # answers after the gateway had answered itself
    stray_answers: int = 0  # answers for ids this gateway does not hold
    workers_dropped: int = 0
    affinity_misses: int = 0  # placed on another worker than the session's ring owner
    identity_refused: int = 0  # registrations under a live identity from another key
    credit_checked: int = 0  # worker heartbeats whose free count reconciled
    credit_mismatch: int = 0  # worker heartbeats whose free count did not reconcile
    worker_expired: int = 0  # requests a worker dropped unapplied (deadline passed)
    shard_moves: int = 0  # placed again on another shard's owner after a worker's Moved
    shard_moves_lost: int = 0  # Moved once too often, or to a shard with no owner: answered
    shard_count_refused: int = 0  # registrations whose store has another shard count
    workers_superseded: int = 0  # dropped when a later incarnation of theirs registered

    def to_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def session_hash(session_id: bytes | str) -> int:
    """Stable across processes and hosts, so that gateways sharing workers agree."""
    return zlib.crc32(session_id.encode() if isinstance(session_id, str) else session_id)


def _point(ident: bytes, i: int) -> int:
    return zlib.crc32(ident + i.to_bytes(2, "big"))


class NoWorker(DiameterError):
    """Raised by `place`: 3004 (every worker for the app is busy) or 3002 (no live worker
    serves the app)."""

    def __init__(self, result_code: int, reason: str) -> None:
        super().__init__(result_code, reason)
        self.reason = reason


class Refused(NamedTuple):
    """Why `PoolCore.offer` placed a request nowhere: a plain value, so that the shed path
    (every request under overload) builds no exception object; `place` raises it as a
    NoWorker."""

    result_code: int
    reason: str


# The refusals whose text does not vary: made once, returned for every shed request.
SHED_BUSY = Refused(ResultCode.DIAMETER_TOO_BUSY, "no worker has a free slot")
SHED_FAIR = Refused(ResultCode.DIAMETER_TOO_BUSY, "this peer holds its share of the pool")


class IdentityInUse(Exception):
    """A registration under an identity that a live worker with another key holds."""


class ShardCountMismatch(Exception):
    """A worker whose store has another shard count than the workers registered before it:
    routing by shard would send accounts to the wrong store partition, so it is refused."""


FAIR_MIN_CREDIT = 128  # below this (tests, small pools) every slot goes to whoever asks first
# Seconds of the fairness window: a peer competes for the pool when another peer sent a
# request within the last one or two of these (see PoolCore.target and age_peers); then the
# last quarter of a worker is kept for the others, else only the last sixteenth.
FAIR_PERIOD = 5.0
# Adjustments in a row (5 s) at the latency floor, still above the target, before a worker
# counts as out of the target's reach (see PoolCore.out_of_reach)
OUT_OF_REACH_INTERVALS = round(5.0 / ADAPT_INTERVAL)
MAX_PLACED = 4  # placements of one request (failover and Moved together) before it is answered
SESSION_ROUTES = 200_000  # Session-Id -> shard entries the front end remembers (LRU)
# Seconds a remembered route may go unused before it is forgotten: the workers' default Tcc
# (charging `tcc`, 2 x validity_time = 7,200 s), after which they release an idle session
# anyway. The gateway does not read the workers' charging settings (layering), so it is a
# constant; a forgotten route only costs a request one Moved hop (the worker looks it up).
ROUTE_TTL = 7_200.0
# Pending.route flags. ROUTE_ENDS: the session's last request (Peek.ends_session): its route
# is dropped when it leaves the gateway, answered by a worker or by the gateway (a resend is
# routed by Subscription-Id / Session-Id, and a Moved brings it to the session's shard).
# ROUTE_FRESH: the route was learnt for this request (a session's first): it is dropped when
# the gateway answers it itself (shed, expired, lost), and the front end drops it on a
# worker's failure answer, since the client then ends the session without a CCR-T.
ROUTE_ENDS = 1
ROUTE_FRESH = 2


def _incarnation(worker_id: str) -> tuple[str, int]:
    """(name, n) of a worker id `<name>.<n>` (sharding.owner_name's form); n is -1 for an
    id without one. Read from a worker's Ready: any string, never an exception."""
    name = owner_name(worker_id)
    digits = worker_id[len(name) + 1 :]
    if name == worker_id or not digits.isdecimal() or len(digits) > 18:
        return worker_id, -1
    return name, int(digits)


def _hrw(worker_id: str, ident: bytes, shard: int) -> tuple[int, bytes]:
    """Rendezvous weight: the live worker with the highest owns the shard, so a worker that
    comes back under its id gets the same shards, and one that leaves moves only its own."""
    return zlib.crc32(f"{owner_name(worker_id)}/{shard}".encode()), ident


class RequestArgs(TypedDict):
    """A request to place (PoolServer.submit / offer): PoolCore.offer's arguments less the
    clocks."""

    peer: str
    hbh: int
    app: int
    cmd: int
    session_id: bytes
    raw: bytes
    ref: NotRequired[Any]
    shard: NotRequired[int]
    route: NotRequired[int]


class OfferArgs(RequestArgs):
    """`PoolCore.offer`'s arguments, for the callers that pass them on (`place`)."""

    now: float
    wall_now: float


def _count_in(held: dict[str, int], peer: str) -> None:
    """One more request of `peer` in a worker's fair-share count (WorkerState.by_peer)."""
    held[peer] = held.get(peer, 0) + 1


def _count_out(held: dict[str, int], peer: str) -> None:
    """One fewer; a peer with none is dropped, so the counts stay as small as `pending`."""
    n = held.get(peer, 0) - 1
    if n > 0:
        held[peer] = n
    else:
        held.pop(peer, None)


class PoolCore:
    def __init__(
        self,
        *,
        deadline: float,
        heartbeat_timeout: float,
        max_credit: int = 4096,
        vnodes: int = 64,
        latency_target: float = 0.0,
    ) -> None:
        self.deadline = deadline
        self.latency_target = latency_target  # seconds; 0: off (see gateway/latency.py)
        self.heartbeat_timeout = heartbeat_timeout
        self.max_credit = max_credit
        self.vnodes = vnodes
        self.workers: dict[bytes, WorkerState] = {}
        self.pending: dict[int, Pending] = {}  # insertion order == deadline order
        self.zombies: dict[int, bytes] = {}  # id -> worker still holding an expired request
        self.counters = Counters()
        self._next_id = 1
        self._ring_keys: list[int] = []
        self._ring_idents: list[bytes] = []
        self._ring_members = 0  # distinct workers on the ring
        # The applications some live, non-draining worker serves (membership changes
        # rebuild it with the ring): a refused request gets 3004 for these, else 3002.
        self._serving: frozenset[int] = frozenset()
        # Sharded routing (chargegw/sharding.py): the shard count the workers' store has,
        # which applications route by shard, each shard's owner, what each worker was last
        # told it owns, and the assignments still to be sent (the adapter takes them).
        self.shards = 0
        self.shard_apps: frozenset[int] = frozenset()
        self._owners: list[bytes | None] = []
        self.assigned: dict[bytes, frozenset[int]] = {}
        self.assign_out: dict[bytes, list[int]] = {}
        self.epoch = 0
        # Session-Id -> shard, for requests that carry no Subscription-Id (CCR-U/T, STR):
        # bounded by count (max_session_routes, oldest first: at most about 45 MB at the
        # default 200,000, keys of ~60 octets) and by time (two generations swapped every
        # route_ttl seconds: a route unused for 2 x route_ttl is gone), and a session's route
        # is dropped when its last request (CCR-T/E, ACR STOP/EVENT, STR) is answered, so
        # that under steady load the table holds about the live sessions.
        self.session_routes: OrderedDict[bytes, int] = OrderedDict()
        self.old_routes: OrderedDict[bytes, int] = OrderedDict()
        # The peers that sent a request this fairness period and the one before (age_peers),
        # and how many they are together: the last quarter of a worker is kept for the
        # others when there are others, and each holds at most its share of the limit then.
        self._peers_now: set[str] = set()
        self._peers_before: set[str] = set()
        self._peers_recent = 0  # len(_peers_now | _peers_before), kept as peers are seen
        self._peers_aged: float | None = None  # monotonic time of the last swap
        self.max_session_routes = SESSION_ROUTES
        self.route_ttl = ROUTE_TTL
        self._routes_swapped: float | None = None  # monotonic time of the last swap

    # Membership -----------------------------------------------------------------------

    def register(
        self,
        ident: bytes,
        *,
        worker_id: str,
        credit: int,
        apps: Iterable[int],
        now: float,
        gen: int = 0,
        pid: int = 0,
        host: str = "",
        owner: bytes = b"",
        shards: int = 0,
        shard_apps: Iterable[int] = (),
        address: str = "",
    ) -> tuple[list[tuple[bytes, Pending]], list[Pending]]:
        """A worker's Ready. A repeat of the current registration only refreshes it; a new
        one (`gen` differs) places again, at once, what the old one held (it will not
        answer those): on the new registration itself where routing says so.
        Raises IdentityInUse when a live worker registered `ident` with another key, and
        ShardCountMismatch when its store's shard count differs from the pool's."""
        moved: list[tuple[bytes, Pending]] = []
        failed: list[Pending] = []
        old = self.workers.get(ident)
        if old is not None and old.owner != owner:
            self.counters.identity_refused += 1
            raise IdentityInUse(f"identity {ident!r} is held by a live worker with another key")
        if old is not None and old.gen == gen:
            old.last_seen = now
            return moved, failed
        if shards < 0 or shards > MAX_SHARDS:
            shards = 0
        sharded = frozenset(shard_apps) if shards else frozenset()
        if shards and self.shards and shards != self.shards:
            self.counters.shard_count_refused += 1
            raise ShardCountMismatch(
                f"worker {worker_id} has store.shards = {shards}, the pool's workers have "
                f"{self.shards}: every worker must use the same store layout"
            )
        # Its old registration, or an earlier incarnation of it under another identity (a
        # restart), will not answer what it held: that is placed again once the new one is
        # in (below), so that it can go straight to this worker (the session's ring owner,
        # the shard's owner again) instead of a detour through another worker's Moved, a
        # 3002 when it is the only worker, or a wait for the old one's silence.
        gone = [old] if old is not None else self._earlier_incarnations(worker_id, ident, owner)
        for w in gone:
            del self.workers[w.ident]
            self.assigned.pop(w.ident, None)
            self.assign_out.pop(w.ident, None)
        self.counters.workers_superseded += len(gone) - (old is not None)
        granted = max(0, credit)
        credit = min(granted, self.max_credit)
        self.workers[ident] = WorkerState(
            ident=ident,
            worker_id=worker_id,
            credit=credit,
            available=credit,
            limit=credit,
            apps=frozenset(apps),
            last_seen=now,
            gen=gen,
            pid=pid,
            host=host,
            owner=owner,
            excess=granted - credit,
            shards=shards,
            shard_apps=sharded,
            address=address,
            registered_at=now,
        )
        if shards and not self.shards:
            self.shards = shards
            self._owners = [None] * shards
        self.shard_apps |= sharded
        self.assigned.pop(ident, None)  # a new registration is told its shards afresh
        self._rebuild_ring()
        for w in gone:
            more, lost = self._place_again(w, now)
            moved += more
            failed += lost
        return moved, failed

    def _earlier_incarnations(
        self, worker_id: str, ident: bytes, owner: bytes
    ) -> list[WorkerState]:
        """Live registrations of an earlier incarnation of `worker_id` (`<name>.<n>`, as
        `chargegw run` names a slot's successive processes: a lower n, the same name) from
        the same key: that process is gone, since its successor registers. Ids without an
        incarnation are never matched (two workers given one id are a misconfiguration that
        must not turn into each dropping the other)."""
        name, n = _incarnation(worker_id)
        if n < 0:
            return []
        return [
            w
            for w in self.workers.values()
            if w.ident != ident
            and w.owner == owner
            and -1 < (inc := _incarnation(w.worker_id))[1] < n
            and inc[0] == name
        ]

    def drop(self, ident: bytes, now: float) -> tuple[list[tuple[bytes, Pending]], list[Pending]]:
        """A worker is gone (silent, goodbye, unreachable). Its requests go to other workers
        while their deadline allows; the rest are returned for a 3002 answer."""
        w = self.workers.pop(ident, None)
        if w is None:
            return [], []
        self.counters.workers_dropped += 1
        self.assigned.pop(ident, None)
        self.assign_out.pop(ident, None)
        self._rebuild_ring()
        return self._place_again(w, now)

    def _place_again(
        self, w: WorkerState, now: float
    ) -> tuple[list[tuple[bytes, Pending]], list[Pending]]:
        """What the registration `w` (no longer in `workers`) held, placed at once on the
        workers there now while its deadline allows (the same octets, marked as a
        retransmission: the stores are idempotent per request); the rest is returned for a
        3002 answer. Zombies it held are forgotten: they were answered already."""
        ident = w.ident
        moved: list[tuple[bytes, Pending]] = []
        failed: list[Pending] = []
        for rid in sorted(w.inflight):
            if self.zombies.pop(rid, None) is not None:
                continue
            p = self.pending.get(rid)
            if p is None or p.worker != ident:
                continue
            target = self._target(p) if p.deadline > now else None
            if target is None:
                del self.pending[rid]
                self._peer_done(p.peer, w)
                self._answered_here(p)
                self.counters.failed_over_lost += 1
                failed.append(p)
                continue
            p.worker = target.ident
            p.retransmit = True
            p.placed += 1
            _count_in(target.by_peer, p.peer)
            target.available -= 1
            target.sent += 1
            target.inflight.add(rid)
            self.counters.resent += 1
            moved.append((target.ident, p))
        return moved, failed

    def set_draining(self, ident: bytes) -> None:
        """The worker is stopping: no new requests, but it answers what it holds."""
        w = self.workers.get(ident)
        if w is not None and not w.draining:
            w.draining = True
            self._rebuild_ring()

    def seen(self, ident: bytes, now: float) -> bool:
        """Any message from a worker; False when the worker is unknown (send it Reset)."""
        w = self.workers.get(ident)
        if w is None:
            return False
        w.last_seen = now
        return True

    def add_credit(self, ident: bytes, n: int) -> None:
        w = self.workers.get(ident)
        if w is not None and n > 0:
            grant = max(0, min(n, self.max_credit - w.credit))
            w.credit += grant
            w.limit += grant
            w.available += grant
            w.excess += n - grant

    def reconcile(self, ident: bytes, gen: int, free: int, received: int) -> bool | None:
        """A worker heartbeat's `free` against this side's count: everything the worker
        answered before the heartbeat has been processed here (one ordered pipe), so
        free == available + withheld + excess + (requests sent - requests it had received),
        where `withheld` is what the latency limit keeps back (credit - limit). None when
        it is not about the current registration, else whether the two agree."""
        w = self.workers.get(ident)
        if w is None or gen != w.gen or received < 0 or free < 0:
            return None
        ok = free == w.free_here() + (w.sent - received)
        if ok:
            w.mismatches = 0
            self.counters.credit_checked += 1
        else:
            w.mismatches += 1
            self.counters.credit_mismatch += 1
        return ok

    def withdraw(self, ident: bytes, rid: int) -> Pending | None:
        """A request that could not be sent to its worker after all (it never got it): its
        slot and the sent count go back, and the caller answers it. One that expired while
        held back unsent (answered 3002 already) only gives its slot back: None."""
        w = self.workers.get(ident)
        if w is not None and self.zombies.get(rid) == ident and rid in w.inflight:
            del self.zombies[rid]
            w.inflight.discard(rid)
            w.available += 1
            w.sent -= 1
            return None
        p = self.pending.get(rid)
        if w is None or p is None or p.worker != ident or rid not in w.inflight:
            return None
        del self.pending[rid]
        self._peer_done(p.peer, w)
        self._answered_here(p)
        w.inflight.discard(rid)
        w.available += 1
        w.sent -= 1
        return p

    def silent(self, now: float) -> list[bytes]:
        limit = now - self.heartbeat_timeout
        return [ident for ident, w in self.workers.items() if w.last_seen < limit]

    # Placement ------------------------------------------------------------------------

    def offer(
        self,
        *,
        peer: str,
        hbh: int,
        app: int,
        cmd: int,
        session_id: bytes,
        raw: bytes,
        now: float,
        wall_now: float,
        ref: Any = None,
        shard: int = -1,
        route: int = 0,
    ) -> Pending | Refused:
        """Give a request to a worker, or say why none takes it: a Refused value, not an
        exception (under overload this is the shed path: no object made, nothing unwound).
        The caller sends it. A request of a sharded application (`shard` >= 0, see
        `route_shard`) goes to its shard's owner only: that worker is the one writer of the
        shard's accounts. `route`: ROUTE_ENDS / ROUTE_FRESH, when the session's remembered
        route is dropped. `target` then `put`, which a caller may call apart to read its
        clocks only for a request that is placed (PoolServer.offer)."""
        w = self.target(peer, app, session_id, shard)
        if isinstance(w, Refused):
            return w
        return self.put(
            w, peer=peer, hbh=hbh, app=app, cmd=cmd, session_id=session_id, raw=raw,
            now=now, wall_now=wall_now, ref=ref, shard=shard, route=route,
        )  # fmt: skip

    def target(self, peer: str, app: int, session_id: bytes, shard: int) -> WorkerState | Refused:
        """The worker that takes the request (see `offer`), or why none does."""
        if peer not in self._peers_now:
            self._peers_now.add(peer)
            if peer not in self._peers_before:
                self._peers_recent += 1
        if shard >= 0:
            w = self._shard_owner(shard, app)
        else:
            w = self._choose(app, session_id)
        if w is not None:
            limit = w.limit
            free = w.available
            if w.credit >= FAIR_MIN_CREDIT and free <= limit >> 2:
                recent = self._peers_recent
                share = max(1, limit >> 4, min(limit // max(2, recent), free // 2))
                if (free <= limit >> 4 or recent > 1) and w.by_peer.get(peer, 0) >= share:
                    # Fair shedding: the last quarter of a worker's slots is kept for the peers
                    # that hold less than a sixteenth of the limit, or less than their share
                    # (the limit over the number of peers sending, at most half) and less than
                    # half of what is still free. So flooding peers cannot turn everyone
                    # else's requests into 3004 (they get them themselves, sooner), also in
                    # the instant between two requests of a peer that sends now and then; and
                    # a second flood that arrives while the first holds three quarters cannot
                    # take the last quarter in one burst (with half as every peer's share, two
                    # floods left nothing for a third: 41% of a prober's requests got 3004
                    # beside two generator processes). While no other peer sends, only the
                    # last sixteenth is kept (for a newcomer's first requests): a peer alone
                    # (one load client, one relay in front) is not refused with a quarter of
                    # the pool idle.
                    self.counters.shed_fair += 1
                    return SHED_FAIR
            return w
        if app in self._serving:  # someone serves it, busy: 3004 (a set, not a scan)
            self.counters.shed_busy += 1
            return SHED_BUSY
        self.counters.no_worker += 1
        return Refused(
            ResultCode.DIAMETER_UNABLE_TO_DELIVER, f"no live worker serves application {app}"
        )

    def age_peers(self, now: float) -> None:
        """Called now and then (once a second) with the monotonic clock: every FAIR_PERIOD
        seconds the peers seen sending become the previous period's, and those of the one
        before are forgotten, so a peer quiet for two periods no longer counts as another."""
        if self._peers_aged is None:
            self._peers_aged = now
        elif now - self._peers_aged >= FAIR_PERIOD:
            self._peers_aged = now
            self._peers_before, self._peers_now = self._peers_now, set()
            self._peers_recent = len(self._peers_before)

    def put(
        self,
        w: WorkerState,
        *,
        peer: str,
        hbh: int,
        app: int,
        cmd: int,
        session_id: bytes,
        raw: bytes,
        now: float,
        wall_now: float,
        ref: Any = None,
        shard: int = -1,
        route: int = 0,
    ) -> Pending:
        """Place the request on `w` (from `target`): its Pending, which the caller sends."""
        rid = self._next_id
        self._next_id = rid + 1
        p = Pending(
            id=rid,
            worker=w.ident,
            peer=peer,
            hbh=hbh,
            app=app,
            cmd=cmd,
            session_id=session_id,
            deadline=now + self.deadline,
            wall_deadline=wall_now + self.deadline,
            raw=raw,
            ref=ref,
            shard=shard,
            route=route,
        )
        self.pending[rid] = p
        _count_in(w.by_peer, peer)
        w.available -= 1
        w.sent += 1
        w.inflight.add(rid)
        self.counters.placed += 1
        return p

    def place(self, **kw: Unpack[OfferArgs]) -> Pending:
        """`offer`, raising its refusal as a NoWorker."""
        p = self.offer(**kw)
        if isinstance(p, Refused):
            raise NoWorker(p.result_code, p.reason)
        return p

    def _peer_done(self, peer: str, w: WorkerState | None) -> None:
        """A request of `peer` left `pending` (answered, failed, withdrawn or expired); `w`
        the registration that held it (None: gone)."""
        if w is not None:
            _count_out(w.by_peer, peer)

    # Shards ---------------------------------------------------------------------------

    def route_shard(
        self, app: int, session_id: bytes, subscription: bytes | None, *, remember: bool = True
    ) -> int:
        """The shard a request is routed by (-1 when `app` is not sharded): the one
        remembered for its Session-Id (the session's account lives there), else that of its
        first Subscription-Id-Data, else that of its Session-Id; remembered for the session
        unless `remember` is False (a session's first request that is also its last, such as
        an event: the route would be dropped when it is answered, or shed, anyway)."""
        n = self.shards
        if not n or app not in self.shard_apps:
            return -1
        shard = self.session_routes.get(session_id)
        if shard is not None:
            return shard
        old = self.old_routes
        if old:
            shard = old.pop(session_id, None)
            if shard is not None:  # used again: back into the current generation
                self._remember(session_id, shard)
                return shard
        shard = shard_of(subscription or session_id, n)
        if remember:
            self._remember(session_id, shard)
        return shard

    def _remember(self, session_id: bytes, shard: int) -> None:
        routes = self.session_routes
        if session_id in routes:
            routes.move_to_end(session_id)
        else:
            old = self.old_routes
            if old:
                old.pop(session_id, None)
            if len(routes) + len(old) >= self.max_session_routes:
                # The oldest goes; its session falls back to the worker's lookup (Moved).
                (old or routes).popitem(last=False)
        routes[session_id] = shard

    def _answered_here(self, p: Pending) -> None:
        """`p` leaves with an answer the gateway makes (3002/3004/5012): a session's last or
        first request takes its route along (see ROUTE_ENDS, ROUTE_FRESH)."""
        if p.route:
            self.forget_route(p.session_id)

    def forget_route(self, session_id: bytes) -> None:
        """The session ended: its route is not needed any more (a resent last request is
        routed by its Subscription-Id or Session-Id, and the worker there finds it)."""
        if self.session_routes.pop(session_id, None) is None and self.old_routes:
            self.old_routes.pop(session_id, None)

    def age_routes(self, now: float) -> None:
        """Called now and then (once a second) with the monotonic clock: every route_ttl
        seconds the current generation of routes becomes the old one and the old one is
        dropped, so a route unused for 2 x route_ttl is gone (sessions that never end)."""
        if self._routes_swapped is None:
            self._routes_swapped = now
        elif now - self._routes_swapped >= self.route_ttl:
            self._routes_swapped = now
            self.old_routes = self.session_routes
            self.session_routes = OrderedDict()

    def shard_owner(self, shard: int) -> bytes | None:
        """The identity of the worker that owns `shard` now (None: no live owner)."""
        owners = self._owners
        return owners[shard] if 0 <= shard < len(owners) else None

    def _shard_owner(self, shard: int, app: int) -> WorkerState | None:
        """The shard's owner when it can take a request of `app` now, else None. There is
        no walk to another worker: a second writer of the shard is what sharding prevents."""
        ident = self.shard_owner(shard)
        if ident is None:
            return None
        w = self.workers.get(ident)
        if w is None or w.available <= 0 or app not in w.apps:
            return None
        return w

    def _target(self, p: Pending) -> WorkerState | None:
        return (
            self._shard_owner(p.shard, p.app) if p.shard >= 0 else self._choose(p.app, p.session_id)
        )

    def moved(self, ident: bytes, rid: int, shard: int) -> tuple[bytes | None, Pending | None]:
        """A worker's Moved for `rid`: it was not applied there; it belongs to `shard`.
        Returns (worker to send it to, the request), or (None, request) when it must be
        answered here (placed too often, or no owner can take it), or (None, None) for a
        late or stray one. The slot comes back as for an answer. The request keeps its
        place in `pending` (deadline order) while it moves."""
        w = self.workers.get(ident)
        if w is not None and rid in w.inflight:
            w.inflight.discard(rid)
            w.available += 1
        p = self.pending.get(rid)
        if p is None or p.worker != ident:
            if self.zombies.get(rid) == ident:
                del self.zombies[rid]
                self.counters.late_answers += 1
            else:
                self.counters.stray_answers += 1
            return None, None
        again = shard == p.shard  # the owner says it does not own it (yet): a claim pending
        if 0 <= shard < self.shards:
            if not again:
                self._remember(p.session_id, shard)
            p.shard = shard
            target = self._shard_owner(shard, p.app) if p.placed < MAX_PLACED else None
        else:
            target = None
        if target is None:
            del self.pending[rid]
            self._peer_done(p.peer, w)
            self._answered_here(p)
            self.counters.shard_moves_lost += 1
            return None, p
        if not (again and target.ident == ident):
            # A retry on the same owner is bounded by the deadline, not by MAX_PLACED: it is
            # waiting for its own claim of the shard (the adapter resends after a pause).
            p.placed += 1
        if w is not None:
            _count_out(w.by_peer, p.peer)
        p.worker = target.ident
        _count_in(target.by_peer, p.peer)
        target.available -= 1
        target.sent += 1
        target.inflight.add(rid)
        self.counters.shard_moves += 1
        return target.ident, p

    def take_assignments(self) -> dict[bytes, list[int]]:
        """The shard sets to send (Assign), by worker; to be sent before any request that
        was placed by them."""
        out, self.assign_out = self.assign_out, {}
        return out

    def _reassign(self) -> None:
        """Give every shard to one live, non-draining worker of the sharded applications
        (rendezvous hashing on worker ids) and queue an Assign for each worker whose set
        changed (a draining worker is told it owns nothing)."""
        n = self.shards
        if not n:
            return
        live = [w for w in self.workers.values() if w.shards and not w.draining]
        sets: dict[bytes, set[int]] = {w.ident: set() for w in self.workers.values() if w.shards}
        owners: list[bytes | None] = [None] * n
        if live:
            for s in range(n):
                best = max(live, key=lambda w: _hrw(w.worker_id, w.ident, s))
                owners[s] = best.ident
                sets[best.ident].add(s)
        self._owners = owners
        changed = False
        for ident, owned in sets.items():
            frozen = frozenset(owned)
            if self.assigned.get(ident) != frozen:
                self.assigned[ident] = frozen
                self.assign_out[ident] = sorted(frozen)
                changed = True
        if changed:
            self.epoch += 1

    def owner(self, session_id: bytes | str) -> bytes | None:
        """The session's ring owner among live (non-draining) workers, credit ignored."""
        if not self._ring_keys:
            return None
        i = bisect.bisect(self._ring_keys, session_hash(session_id)) % len(self._ring_keys)
        return self._ring_idents[i]

    def _choose(self, app: int, session_id: bytes) -> WorkerState | None:
        keys = self._ring_keys
        n = len(keys)
        if not n:
            return None
        idents = self._ring_idents
        workers = self.workers
        h = zlib.crc32(session_id) if type(session_id) is bytes else session_hash(session_id)
        start = bisect.bisect(keys, h) % n  # session_hash, without its call (every request)
        w = workers[idents[start]]
        if w.available > 0 and app in w.apps:
            return w
        # Affinity is an optimisation: walk the ring to the next worker that can take it,
        # and stop once every worker on the ring was seen (draining ones are not on it): a
        # full pool sheds after one look at each worker, not after every point of the ring.
        members = self._ring_members
        if members <= 1:
            return None
        tried = {w.ident}
        for k in range(1, n):
            ident = idents[(start + k) % n]
            if ident in tried:
                continue
            tried.add(ident)
            w = workers[ident]
            if w.available > 0 and app in w.apps:
                self.counters.affinity_misses += 1
                return w
            if len(tried) >= members:
                break
        return None

    def _rebuild_ring(self) -> None:
        points = sorted(
            (_point(ident, i), ident)
            for ident, w in self.workers.items()
            if not w.draining
            for i in range(self.vnodes)
        )
        self._ring_keys = [p for p, _ in points]
        self._ring_idents = [ident for _, ident in points]
        self._ring_members = len(set(self._ring_idents))
        self._serving = frozenset(
            a for w in self.workers.values() if not w.draining for a in w.apps
        )
        self._reassign()

    # Answers and deadlines ------------------------------------------------------------

    def answer(self, ident: bytes, rid: int, now: float | None = None) -> Pending | None:
        """A worker's answer to `rid`: the Pending to deliver, or None (late or stray).
        `now` (monotonic), when given, times it for the latency limit (see `adapt`)."""
        w = self.workers.get(ident)
        if w is not None and rid in w.inflight:
            w.inflight.discard(rid)
            w.available += 1
            w.handled += 1
        p = self.pending.get(rid)
        if p is not None and p.worker == ident:
            if now is not None and w is not None:
                w.lat_sum += now - p.deadline  # + self.deadline: the time since it was sent
                w.lat_n += 1
            del self.pending[rid]
            self._peer_done(p.peer, w)
            self.counters.answered += 1
            if p.route & ROUTE_ENDS:
                self.forget_route(p.session_id)
            return p
        if self.zombies.get(rid) == ident:
            del self.zombies[rid]
            self.counters.late_answers += 1
        else:
            self.counters.stray_answers += 1
        return None

    def expire(self, now: float) -> list[Pending]:
        """Requests past their deadline: the caller answers them 3002. Their workers keep
        the slot until they answer."""
        out: list[Pending] = []
        for _rid, p in self.pending.items():
            if p.deadline > now:
                break
            out.append(p)
        workers = self.workers
        for p in out:
            del self.pending[p.id]
            w = workers.get(p.worker)
            self._peer_done(p.peer, w)
            self._answered_here(p)
            if w is not None:
                self.zombies[p.id] = p.worker
                w.timeouts += 1
        self.counters.expired += len(out)
        return out

    def set_latency_target(self, target: float) -> None:
        """A new latency objective (seconds; SIGHUP). Off (0): every worker gets its whole
        credit back at once; a new or changed target starts from the limits in force."""
        self.latency_target = max(0.0, target)
        for w in self.workers.values():
            w.lat_sum, w.lat_n = 0.0, 0
            w.floored = 0
            if not self.latency_target:
                w.available += w.credit - w.limit
                w.limit = w.credit

    def adapt(self) -> None:
        """Move each worker's latency limit towards `latency_target` from its answers since
        the last call (see gateway/latency.py); the adapter calls it every ADAPT_INTERVAL
        while a target is set. Slots the limit withholds are taken out of `available`
        (which may go below zero: nothing more is placed there until enough is answered)."""
        target = self.latency_target
        if target <= 0:
            return
        for w in self.workers.values():
            n = w.lat_n
            mean = w.lat_sum / n + self.deadline if n else 0.0
            w.lat_sum, w.lat_n = 0.0, 0
            if w.draining:
                continue
            new = next_limit(w.limit, w.credit, n, mean, bool(w.inflight), target)
            w.available += new - w.limit
            w.limit = new
            if n:
                w.lat_mean = mean
                # at its floor and still too slow: the target is beyond this worker
                w.floored = w.floored + 1 if mean > target and new <= floor_limit(w.credit) else 0

    def out_of_reach(self) -> list[tuple[str, float, int]]:
        """The workers whose limit has sat at its floor for OUT_OF_REACH_INTERVALS adjustments
        in a row while their mean latency stayed above the target: (id, last mean in
        seconds, the floor). Shrinking cannot help them, and beyond the floor everything
        gets 3004: the operator's target is below what the worker can do (a config to fix,
        said once in a while by the gateway's log and always by `chargegw status`)."""
        if self.latency_target <= 0:
            return []
        return [
            (w.worker_id, w.lat_mean, floor_limit(w.credit))
            for w in self.workers.values()
            if w.floored >= OUT_OF_REACH_INTERVALS and not w.draining
        ]

    def next_deadline(self) -> float | None:
        for p in self.pending.values():
            return p.deadline
        return None

    # Introspection --------------------------------------------------------------------

    def occupancy(self) -> float:
        """The share of live workers' usable slots (their latency limits, else their
        credit) holding a request now (0..1): how full the pool is, for the DOIC report."""
        limit = used = 0
        for w in self.workers.values():
            if not w.draining:
                limit += w.limit
                used += w.limit - w.available
        return min(1.0, used / limit) if limit else 0.0

    def free_slots(self, app: int | None = None) -> int:
        return sum(
            max(0, w.available)
            for w in self.workers.values()
            if not w.draining and (app is None or app in w.apps)
        )

    def status(
        self, now: float, report: Callable[[bytes], dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The pool for `chargegw status`; `report(ident)` adds what a worker reported."""
        return {
            "workers": [
                {
                    **w.to_dict(now),
                    "shards_owned": len(self.assigned.get(w.ident, ())),
                    **(report(w.ident) if report is not None else {}),
                }
                for w in self.workers.values()
            ],
            "pending": len(self.pending),
            "zombies": len(self.zombies),
            "shards": self.shards,
            "shard_apps": sorted(self.shard_apps),
            "assignment_epoch": self.epoch,
            "session_routes": len(self.session_routes) + len(self.old_routes),
            "counters": self.counters.to_dict(),
        }
