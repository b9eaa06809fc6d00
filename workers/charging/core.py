"""The money logic of credit control, as pure functions over account and session state.

Both store backends load the state, call these functions and write the result back in one
atomic step (SQLite: one BEGIN IMMEDIATE transaction; Redis: one compare-and-set script), so
the rules for reserving, debiting and releasing live in exactly one place.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from chargegw.codec import ResultCode

from .money import affordable_units, price_of

# CC-Request-Type
INITIAL, UPDATE, TERMINATION, EVENT = 1, 2, 3, 4
# Requested-Action
DIRECT_DEBITING, REFUND_ACCOUNT, CHECK_BALANCE, PRICE_ENQUIRY = 0, 1, 2, 3
# Session states
OPEN, CLOSED, EVENT_DONE = 1, 2, 3
# Result codes used here: short names for members of the one ResultCode enum
SUCCESS = ResultCode.DIAMETER_SUCCESS
UNKNOWN_SESSION = ResultCode.DIAMETER_UNKNOWN_SESSION_ID
INVALID_AVP_VALUE = ResultCode.DIAMETER_INVALID_AVP_VALUE
END_USER_SERVICE_DENIED = ResultCode.DIAMETER_END_USER_SERVICE_DENIED
CREDIT_LIMIT_REACHED = ResultCode.DIAMETER_CREDIT_LIMIT_REACHED
USER_UNKNOWN = ResultCode.DIAMETER_USER_UNKNOWN
RATING_FAILED = ResultCode.DIAMETER_RATING_FAILED
REF_AVP = "CC-Correlation-Id"  # names the debit event a refund gives money back for


class Resv(msgspec.Struct, array_like=True):
    """Money held for one service of a session, with the tariff it was priced at."""

    amount: int
    units: int
    price: int
    unit: int


class Account(msgspec.Struct, array_like=True):
    """An account's mutable state. `credit_limit` is the lowest balance allowed."""

    id: str
    balance: int = 0
    reserved: int = 0
    credit_limit: int = 0
    blocked: bool = False
    spent: int = 0  # debits minus refunds in `period`, for Sy counters
    period: str = ""
    sy: int = 0  # number of Sy subscriptions on this account

    @property
    def available(self) -> int:
        return self.balance - self.reserved - self.credit_limit


class Debit(msgspec.Struct, array_like=True):
    """What a DIRECT_DEBITING event took for one service, and how much of it was refunded
    since: a refund naming the event is capped at `amount - refunded`."""

    units: int
    price: int
    unit: int
    amount: int
    refunded: int = 0
    refunded_units: int = 0


class Session(msgspec.Struct, array_like=True):
    """A credit-control session; `outcome` is the stored answer content for replays.

    `owner` is the peer that opened it (the Origin-Host of its connection); only that peer,
    or one of its configured group, may send the session's further requests. `debits` is set
    on the record of a DIRECT_DEBITING event (service key -> what it took)."""

    id: str
    account: str
    state: int
    last_number: int
    last_type: int
    outcome: bytes
    resv: dict[str, Resv] = msgspec.field(default_factory=dict)
    client_host: str = ""
    client_realm: str = ""
    fui: bool = False
    expires: float = 0.0
    owner: str = ""
    debits: dict[str, Debit] = msgspec.field(default_factory=dict)


class ServiceReq(msgspec.Struct, array_like=True):
    """One service (MSCC or the single top-level service) as rated by the application."""

    key: str  # "rg:sid", either part may be empty
    price: int  # micro-units per started `unit` base units
    unit: int
    used: int = 0  # base units reported in USU (>= 0)
    requested: int = 0  # base units to grant (0: no grant asked)


class CCOp(msgspec.Struct):
    """A credit-control request reduced to what the store needs."""

    session_id: str
    number: int
    req_type: int
    services: list[ServiceReq]
    subscriptions: list[tuple[int, str]] = msgspec.field(default_factory=list)
    action: int = -1
    client_host: str = ""
    client_realm: str = ""
    now: float = 0.0
    tcc: float = 7200.0  # idle time after which an open session's reservations are swept
    closed_ttl: float = 600.0  # how long a closed session's last answer is kept for replays
    # The requesting peer (lower case) first, then the peers of its group: who may use an
    # existing session. Empty: no owner check (store-level callers without a peer).
    peers: tuple[str, ...] = ()
    event_ttl: float = 3600.0  # how long an event's record (and answer) is kept for replays
    ref: str = ""  # REFUND_ACCOUNT: the Session-Id of the debit event it refunds
    shard: int = -1  # the shard the gateway routed it by (-1: not routed by shard)


class ServiceResult(msgspec.Struct, array_like=True):
    key: str
    result: int
    granted: int = 0
    fui: bool = False
    charged: int = 0
    used: int = 0


class Outcome(msgspec.Struct, array_like=True):
    """What the store decided for one request; the application renders it as the answer."""

    result: int
    services: list[ServiceResult] = msgspec.field(default_factory=list)
    account: str = ""
    balance: int = 0
    available: int = 0
    spent_before: int = 0
    spent_after: int = 0
    sy: int = 0
    failed_avp: str = ""
    replay: bool = False


class LedgerEntry(msgspec.Struct, array_like=True):
    """One money movement; `amount + shortfall == price_of(units, price, unit)` for charges."""

    ts: float
    account: str
    kind: str  # "debit", "refund" or "credit" (`key` says which: import, topup, provision)
    session: str
    number: int
    key: str
    units: int
    price: int
    unit: int
    amount: int
    shortfall: int = 0
    ref: str = ""  # refunds: the Session-Id of the debit event refunded


CREDIT_KINDS = ("provision", "import", "topup")  # the `key` of a "credit" entry


class Applied(msgspec.Struct):
    """The result of `apply_cc`: what the backend must persist atomically."""

    outcome: Outcome
    account: Account | None
    session: Session | None  # state to write (None: nothing to write)
    new_session: bool = False
    ledger: list[LedgerEntry] = msgspec.field(default_factory=list)
    ref_session: Session | None = None  # a refunded debit event's record, to write back


_enc = msgspec.msgpack.Encoder()
_outcome_dec = msgspec.msgpack.Decoder(Outcome)


def encode_outcome(outcome: Outcome) -> bytes:
    return _enc.encode(outcome)


def decode_outcome(data: bytes) -> Outcome:
    out = _outcome_dec.decode(data)
    out.replay = True
    return out


_period_cache: list[Any] = [-1, ""]  # (second, period) of the last call


def period_of(now: float) -> str:
    """The spending period (UTC calendar month) `now` falls in."""
    sec = int(now)
    if sec != _period_cache[0]:
        tm = time.gmtime(sec)
        _period_cache[:] = [sec, f"{tm.tm_year:04d}-{tm.tm_mon:02d}"]
    return _period_cache[1]


def precheck(op: CCOp, session: Session | None) -> Outcome | None:
    """Sequencing: replays, unknown sessions and out-of-sequence numbers, before any money moves.

    A CCR whose number equals the last one processed for its session is a retransmission (or a
    resend after a worker died): it gets the stored outcome. A lower number cannot be answered
    identically any more (only the last answer is kept, as a client has one CCR outstanding per
    session, RFC 8506 7.1) and gets 5004 with Failed-AVP CC-Request-Number; nothing is charged.

    A session belongs to the peer that opened it (and that peer's configured group): any other
    peer is answered 5002 as if the session did not exist, replays included, so it can neither
    end someone else's session nor read its answers.
    """
    if session is None:
        if op.req_type in (UPDATE, TERMINATION):
            return Outcome(UNKNOWN_SESSION)
        return None
    if op.peers and (session.owner or session.client_host.lower()) not in op.peers:
        return Outcome(UNKNOWN_SESSION)
    if op.number == session.last_number and op.req_type == session.last_type and session.outcome:
        return decode_outcome(session.outcome)
    if op.req_type in (INITIAL, EVENT):
        return Outcome(INVALID_AVP_VALUE, failed_avp="CC-Request-Number")
    if session.state != OPEN:
        return Outcome(UNKNOWN_SESSION)
    if op.number <= session.last_number:
        return Outcome(INVALID_AVP_VALUE, failed_avp="CC-Request-Number")
    return None


def _roll_period(account: Account, now: float) -> None:
    period = period_of(now)
    if account.period != period:
        account.period = period
        account.spent = 0


def _debit(
    account: Account, session: Session, op: CCOp, svc: ServiceReq, ledger: list[LedgerEntry]
) -> ServiceResult:
    """Debit reported usage and release the service's reservation."""
    resv = session.resv.pop(svc.key, None)
    price, unit = svc.price, svc.unit
    if resv is not None:
        account.reserved -= resv.amount
        price, unit = resv.price, resv.unit  # usage is paid at the price it was granted at
    res = ServiceResult(svc.key, SUCCESS, used=svc.used)
    if svc.used > 0:
        cost = price_of(svc.used, price, unit)
        charge = min(cost, max(account.available, 0))
        account.balance -= charge
        account.spent += charge
        res.charged = charge
        ledger.append(
            LedgerEntry(
                op.now, account.id, "debit", op.session_id, op.number, svc.key,
                svc.used, price, unit, charge, cost - charge,
            )
        )  # fmt: skip
    return res


def _grant(account: Account, session: Session, svc: ServiceReq, res: ServiceResult) -> None:
    """Reserve up to `svc.requested` units, capped by what the available balance pays for."""
    want = svc.requested
    avail = account.available
    if svc.price == 0:
        grant = want
    else:
        grant = min(want, affordable_units(avail, svc.price, svc.unit))
    if grant <= 0:
        res.result = CREDIT_LIMIT_REACHED
        return
    amount = price_of(grant, svc.price, svc.unit)
    account.reserved += amount
    session.resv[svc.key] = Resv(amount, grant, svc.price, svc.unit)
    res.granted = grant
    # The last grant the balance allows: after it, not even one more block is affordable.
    res.fui = svc.price > 0 and account.available < svc.price


def apply_cc(
    op: CCOp, account: Account | None, session: Session | None, ref: Session | None = None
) -> Applied:
    """Apply a session or event CCR that passed `precheck` to the account and session state.

    `ref` is, for a refund, the stored record of the debit event named by `op.ref` (None when
    the store has no such record)."""
    if account is None:
        return Applied(Outcome(USER_UNKNOWN), None, None)
    _roll_period(account, op.now)
    spent_before = account.spent
    ledger: list[LedgerEntry] = []
    new = session is None
    ref_session: Session | None = None
    if op.req_type == EVENT:
        session = Session(op.session_id, account.id, EVENT_DONE, op.number, op.req_type, b"")
        session.client_host, session.client_realm = op.client_host, op.client_realm
        session.owner = op.peers[0] if op.peers else ""
        # Kept past any retransmission window, so that a late resend is answered, not charged.
        session.expires = op.now + op.event_ttl
        if op.action == REFUND_ACCOUNT:
            refund = _apply_refund(op, account, ref, ledger)
            if refund is None:  # no debit to refund: nothing is written, nothing moves
                return Applied(Outcome(INVALID_AVP_VALUE, failed_avp=REF_AVP), None, None)
            out, ref_session = refund, ref
        elif op.action == DIRECT_DEBITING:
            out = _apply_event(op, account, session, ledger)
        else:  # enquiries are answered by the application and never reach a store
            return Applied(Outcome(INVALID_AVP_VALUE, failed_avp="Requested-Action"), None, None)
    else:
        if new:
            if account.blocked:
                return Applied(Outcome(END_USER_SERVICE_DENIED, account=account.id), None, None)
            session = Session(op.session_id, account.id, OPEN, op.number, op.req_type, b"")
            session.client_host, session.client_realm = op.client_host, op.client_realm
            session.owner = op.peers[0] if op.peers else ""
        assert session is not None
        out = _apply_session(op, account, session, ledger)
    out.account = account.id
    out.balance = account.balance
    out.available = account.available
    out.spent_before = spent_before
    out.spent_after = account.spent
    out.sy = account.sy
    session.last_number = op.number
    session.last_type = op.req_type
    session.outcome = encode_outcome(out)
    return Applied(out, account, session, new, ledger, ref_session)


def _apply_session(
    op: CCOp, account: Account, session: Session, ledger: list[LedgerEntry]
) -> Outcome:
    results: list[ServiceResult] = []
    # Debits first, so that released reservations fund the new grants.
    for svc in op.services:
        results.append(_debit(account, session, op, svc, ledger))
    denied = account.blocked
    if op.req_type == TERMINATION or denied:
        for resv in session.resv.values():
            account.reserved -= resv.amount
        session.resv.clear()
    if op.req_type == TERMINATION:
        session.state = CLOSED
        session.expires = op.now + op.closed_ttl
        session.fui = False
        return Outcome(SUCCESS, results)
    session.expires = op.now + op.tcc
    if denied:
        for res in results:
            res.result = END_USER_SERVICE_DENIED
        return Outcome(END_USER_SERVICE_DENIED, results)
    asked = granted = 0
    fui = False
    for svc, res in zip(op.services, results, strict=True):
        if svc.requested > 0:
            asked += 1
            _grant(account, session, svc, res)
            granted += res.granted > 0
            fui = fui or res.fui
    session.fui = fui
    result = CREDIT_LIMIT_REACHED if asked and not granted else SUCCESS
    return Outcome(result, results)


def _apply_event(
    op: CCOp, account: Account, session: Session, ledger: list[LedgerEntry]
) -> Outcome:
    """DIRECT_DEBITING: debit each service's units at once (all or nothing per service), and
    note on the event's record what each took, for a later refund naming it."""
    results: list[ServiceResult] = []
    if account.blocked:
        return Outcome(END_USER_SERVICE_DENIED)
    ok = 0
    for svc in op.services:
        res = ServiceResult(svc.key, SUCCESS)
        cost = price_of(svc.requested, svc.price, svc.unit)
        if cost > account.available:
            res.result = CREDIT_LIMIT_REACHED
        else:
            account.balance -= cost
            account.spent += cost
            res.granted, res.charged, res.used = svc.requested, cost, svc.requested
            ledger.append(
                LedgerEntry(
                    op.now, account.id, "debit", op.session_id, op.number, svc.key,
                    svc.requested, svc.price, svc.unit, cost, 0,
                )
            )  # fmt: skip
            if cost > 0 and svc.key not in session.debits:
                session.debits[svc.key] = Debit(svc.requested, svc.price, svc.unit, cost)
            ok += 1
        results.append(res)
    result = SUCCESS if ok or not results else CREDIT_LIMIT_REACHED
    return Outcome(result, results)


def _apply_refund(
    op: CCOp, account: Account, ref: Session | None, ledger: list[LedgerEntry]
) -> Outcome | None:
    """REFUND_ACCOUNT: give back, per service, at most what the named debit event took for
    that service less what earlier refunds of it gave back, at the price it was debited at.
    None when there is nothing to refund: no such debit on this account, no service of the
    request that it debited, or all of it refunded already. (The application has checked
    that refunds are enabled and that this peer may send them.)"""
    if (
        ref is None
        or ref.state != EVENT_DONE
        or ref.account != account.id
        or not ref.debits
        or not op.ref
    ):
        return None
    results: list[ServiceResult] = []
    ok = 0
    for svc in op.services:
        d = ref.debits.get(svc.key)
        units = 0 if d is None else min(svc.requested, d.units - d.refunded_units)
        amount = 0 if d is None else min(price_of(units, d.price, d.unit), d.amount - d.refunded)
        if d is None or units <= 0 or amount <= 0:
            results.append(ServiceResult(svc.key, INVALID_AVP_VALUE))
            continue
        d.refunded += amount
        d.refunded_units += units
        account.balance += amount
        account.spent = max(0, account.spent - amount)
        results.append(ServiceResult(svc.key, SUCCESS, granted=units, charged=-amount))
        ledger.append(
            LedgerEntry(
                op.now, account.id, "refund", op.session_id, op.number, svc.key,
                units, d.price, d.unit, amount, 0, op.ref,
            )
        )  # fmt: skip
        ok += 1
    if not ok:
        return None
    return Outcome(SUCCESS, results)


def release_session(
    account: Account | None, session: Session, now: float, closed_ttl: float
) -> None:
    """Release every reservation of a session that went silent (Tcc expiry) and close it."""
    if account is not None:
        for resv in session.resv.values():
            account.reserved -= resv.amount
    session.resv.clear()
    session.state = CLOSED
    session.fui = False
    session.expires = now + closed_ttl
