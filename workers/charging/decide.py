"""The Gy decision, pure: (CCR view, requesting peer) -> the store operation it needs, or its
answer already; (store outcome) -> the answer (render.py). No store, no loop, no clock of its
own: `now` is passed in. The money rules the store applies in between are core.py's.

A CCR view is what ccr.read returns (or any object with the same attributes).
"""

from __future__ import annotations

from typing import Any

from chargegw.codec import ResultCode

from . import core
from .config import GyConfig, Tariff, peer_index
from .core import CCOp
from .money import EXPONENT, price_of
from .rating import BadRequest, Rated, Rater, rate
from .render import Answer

STORE_DOWN = "charging store unavailable"


class Pending:
    """A CCR that needs the store: the operation, and what rendering its outcome needs."""

    __slots__ = ("rtype", "op", "services")

    def __init__(self, rtype: int, op: CCOp, services: list[Rated]) -> None:
        self.rtype = rtype
        self.op = op
        self.services = services


class Enquiry:
    """CHECK_BALANCE: answered from the account's balance (`balance_answer`), nothing stored."""

    __slots__ = ("subscriptions", "cost")

    def __init__(self, subscriptions: list[tuple[int, str]], cost: int) -> None:
        self.subscriptions = subscriptions
        self.cost = cost


class Policy:
    """What deciding needs from the configuration, prepared once at set-up."""

    def __init__(self, cfg: GyConfig) -> None:
        self.cfg = cfg
        self.rater = Rater(cfg.tariffs, cfg.quota)
        self.peers = peer_index(cfg.peer_groups)  # Origin-Host -> who may act for it
        self.refunders = frozenset(h.strip().lower() for h in cfg.refunds.peers)
        self.rated: dict[tuple[int | None, int | None], tuple[Tariff | None, str, int]] = {}
        self.contexts = tuple(cfg.service_contexts)  # str.endswith takes them all at once
        self.tcc = cfg.tcc_seconds  # a property: computed once here, not per request


def check(v: Any, contexts: tuple[str, ...] | list[str]) -> tuple[int, int, int]:
    """(request type, number, action): the values the grammar alone cannot judge (5004/5005).
    The grammar's own rules (required AVPs, occurrences, unknown M-bit AVPs) were the
    reader's and the codec's validation's."""
    rtype = v.cc_request_type
    if not 1 <= rtype <= 4:
        raise BadRequest(ResultCode.DIAMETER_INVALID_AVP_VALUE, "CC-Request-Type", rtype)
    action = -1
    if rtype == core.EVENT:
        if v.requested_action is None:
            raise BadRequest(ResultCode.DIAMETER_MISSING_AVP, "Requested-Action", 0)
        action = v.requested_action
        if not 0 <= action <= 3:
            raise BadRequest(ResultCode.DIAMETER_INVALID_AVP_VALUE, "Requested-Action", action)
    if contexts and not v.service_context_id.endswith(tuple(contexts)):
        raise BadRequest(
            ResultCode.DIAMETER_INVALID_AVP_VALUE, "Service-Context-Id", v.service_context_id
        )
    return rtype, v.cc_request_number, action


def subscriptions(v: Any) -> list[tuple[int, str]]:
    return [(s.subscription_id_type, s.subscription_id_data) for s in v.subscription_id]


def prepare(v: Any, peer: str, policy: Policy, now: float) -> Answer | Pending | Enquiry:
    """Check and rate a CCR: its answer already, or the store operation it needs.

    `peer` is the Origin-Host of the connection the request came in on ("" without a
    runtime: then the Origin-Host AVP): sessions belong to it and its group, and refunds are
    allowed per peer."""
    cfg = policy.cfg
    peer = (peer or v.origin_host).lower()
    ref = v.cc_correlation_id
    ref_s = bytes(ref).decode(errors="replace") if ref is not None else ""
    try:
        rtype, number, action = check(v, policy.contexts)
        if action == core.REFUND_ACCOUNT:
            if not cfg.refunds.enabled or peer not in policy.refunders:
                return Answer(
                    ResultCode.DIAMETER_AUTHORIZATION_REJECTED,
                    error_message="refunds are not accepted from this peer",
                )
            if not ref_s:
                raise BadRequest(ResultCode.DIAMETER_MISSING_AVP, core.REF_AVP, b"")
        services = rate(v, rtype, policy.rater, cfg.quota.honour_requested, policy.rated)
    except BadRequest as exc:
        return Answer(exc.result_code, failed=exc.failed_avps)
    rated = [s.req for s in services if s.req is not None]
    if services and not rated:
        rg = services[0].rating_group
        failed = BadRequest(core.RATING_FAILED, *(
            ("Rating-Group", rg) if rg is not None else ("Service-Context-Id", v.service_context_id)
        ))  # fmt: skip
        return Answer(core.RATING_FAILED, failed=failed.failed_avps)
    if rtype == core.EVENT and action in (core.CHECK_BALANCE, core.PRICE_ENQUIRY):
        cost = sum(price_of(r.requested, r.price, r.unit) for r in rated)
        if action == core.PRICE_ENQUIRY:
            info = {"unit_value": {"value_digits": cost, "exponent": EXPONENT},
                    "currency_code": cfg.currency}  # fmt: skip
            return Answer(ResultCode.DIAMETER_SUCCESS, {"cost_information": info})
        return Enquiry(subscriptions(v), cost)
    op = CCOp(
        v.session_id, number, rtype, rated, subscriptions(v), action,
        v.origin_host, v.origin_realm, now, policy.tcc, cfg.closed_ttl,
        policy.peers.get(peer) or (peer,), cfg.event_ttl, ref_s,
    )  # fmt: skip
    return Pending(rtype, op, services)


def balance_answer(account: Any, cost: int) -> Answer:
    """CHECK_BALANCE: enough or not, from the account `resolve` found (None: unknown)."""
    if account is None:
        return Answer(core.USER_UNKNOWN)
    enough = not account.blocked and account.available >= cost
    return Answer(ResultCode.DIAMETER_SUCCESS, {"check_balance_result": 0 if enough else 1})


def store_down() -> Answer:
    return Answer(ResultCode.DIAMETER_TOO_BUSY, error_message=STORE_DOWN)
