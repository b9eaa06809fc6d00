"""Sy spending-limit reporting (TS 29.219), app id 16777302: SLR/SLA, STR/STA, and SNR out.

A subscription (Sy session -> PCRF host, account, subscribed counters with their thresholds)
lives in the store, so the Gy worker that debits the account, whichever it is, can find it
and send the SNR through the gateway when a debit moves a counter across a threshold.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

from chargegw.codec import Avp, Message, commands
from chargegw.codec.constants import ResultCode
from chargegw.sharding import NotOwner, owner_name

from ..stats import STATS
from .config import SyConfig, load, peer_index
from .core import period_of
from .store import (
    ShardedApp,
    Store,
    StoreUnavailable,
    SyCounter,
    SySubscription,
    open_store,
    without_blocking,
)

APP_ID = 16777302
CMD_SLR = 8388635
CMD_STR = 275
VENDOR_3GPP = 10415
NO_AVAILABLE_POLICY_COUNTERS = 4241
UNKNOWN_POLICY_COUNTERS = 5570


def current_spent(account: Any, now: float | None = None) -> int:
    """Spending of the current period (a stale period counts as nothing spent yet)."""
    return account.spent if account.period == period_of(now or time.time()) else 0


def _reports(counters: list[SyCounter], spent: int) -> list[dict[str, Any]]:
    return [
        {"policy_counter_identifier": c.id, "policy_counter_status": c.status(spent)}
        for c in counters
    ]


async def send_status_notifications(
    ctx: Any, store: Store | None, account: str, before: int, after: int
) -> int:
    """SNR to every PCRF whose subscribed counters changed status between `before` and `after`."""
    if store is None:
        return 0
    sent = 0
    for sub in store.sy_for_account(account):
        changed = [c for c in sub.counters if c.status(before) != c.status(after)]
        if not changed:
            continue
        snr = commands.SpendingStatusNotificationRequest(
            session_id=sub.session_id,
            origin_host=ctx.origin_host,
            origin_realm=ctx.origin_realm,
            destination_realm=sub.pcrf_realm,
            destination_host=sub.pcrf_host,
            auth_application_id=APP_ID,
            policy_counter_status_report=_reports(changed, after),
        )
        try:
            ans = await ctx.send_request(snr, peer=sub.pcrf_host)
            ctx.log.info(
                "SNR %s to %s answered %s", sub.session_id, sub.pcrf_host, ans.get("Result-Code")
            )
            sent += 1
        except Exception as exc:
            ctx.log.warning("SNR %s to %s not delivered: %s", sub.session_id, sub.pcrf_host, exc)
    return sent


class SpendingLimitApp(ShardedApp):
    """Sy OCS side. Register as `chargegw.workers.charging.sy:SpendingLimitApp` for 16777302."""

    app_id = APP_ID

    def __init__(self) -> None:
        self.cfg = SyConfig()
        self.counters: dict[str, SyCounter] = {}
        self.store: Store | None = None
        self.ctx: Any = None
        self._peers: dict[str, tuple[str, ...]] = {}

    def setup(self, ctx: Any) -> None:
        self.ctx = ctx
        self.cfg = load(SyConfig, "Sy", ctx.config)
        self.counters = {c.id: c.compiled() for c in self.cfg.counters}
        self._peers = peer_index(self.cfg.peer_groups)
        self.store = open_store(
            self.cfg.store, ctx.data_dir, owner_name(getattr(ctx, "worker_id", "") or "")
        )
        STATS.store_answered(True)

    def _foreign(self, sub: SySubscription | None, req: Message, rctx: Any) -> bool:
        """Whether `sub` exists and belongs to another PCRF than the requesting peer (the
        Origin-Host of its connection) and that peer's configured group."""
        if sub is None:
            return False
        peer = ((rctx.peer if rctx is not None else "") or str(req.origin_host or "")).lower()
        return sub.pcrf_host.lower() not in (self._peers.get(peer) or (peer,))

    def _answer(self, req: Message, result: int | None, **avps: Any) -> Message:
        return req.answer(
            result,
            origin_host=self.ctx.origin_host,
            origin_realm=self.ctx.origin_realm,
            auth_application_id=APP_ID,
            **avps,
        )

    def handle(self, request: Message, rctx: Any = None) -> Message | Awaitable[Message]:
        """Answer an SLR or STR. Its store writes never block the worker's loop: while the
        store is locked the request is retried asynchronously, for `store.timeout` at most,
        and then answered 3004 (each write is idempotent, and a busy store did nothing)."""
        if self.store is None:
            return self._serve(request, rctx)
        t = time.perf_counter()
        try:
            res = without_blocking(
                self.store, lambda: self._serve(request, rctx), self.cfg.store.timeout
            )
        except StoreUnavailable as exc:
            return self._unavailable(request, exc)
        if isinstance(res, Message):
            STATS.committed(time.perf_counter() - t, ())  # its writes, done in this step
            return res
        return self._later(request, res)

    async def _later(self, request: Message, res: Awaitable[Message]) -> Message:
        try:
            return await res
        except StoreUnavailable as exc:
            return self._unavailable(request, exc)

    def _unavailable(self, request: Message, exc: Exception) -> Message:
        STATS.store_failed()
        STATS.failed(ResultCode.DIAMETER_TOO_BUSY)
        self.ctx.log.error("charging store unavailable: %s", exc)
        return self._answer(
            request, ResultCode.DIAMETER_TOO_BUSY, error_message="charging store unavailable"
        )

    def _serve(self, request: Message, rctx: Any = None) -> Message:
        """Raises ShardMoved / NotOwner (nothing applied) when the request's shard, or the
        account or subscription it names, is not served here: the runtime sends Moved."""
        request.check_values()  # reading does not judge: a bad value raises its AvpError here
        shard = getattr(rctx, "shard", -1)
        owns = getattr(self.store, "owns", None)
        if shard >= 0 and owns is not None and not owns(shard):
            raise NotOwner(shard)
        for name in ("Session-Id", "Origin-Host", "Origin-Realm", "Auth-Application-Id"):
            if request.get(name) is None:
                return self._answer(
                    request,
                    5005,
                    failed_avp=Avp.new(name, 0 if name.startswith("Auth") else ""),
                )
        if request.code == CMD_SLR:
            return self._slr(request, rctx)
        if request.code == CMD_STR:
            assert self.store is not None
            sid = str(request.session_id)
            if self._foreign(self.store.sy_get(sid), request, rctx):
                return self._answer(request, 5002)  # not this peer's: as if unknown
            gone = self.store.sy_delete(sid)
            return self._answer(request, 2001 if gone is not None else 5002)
        return self._answer(request, 3001)

    def _slr(self, req: Message, rctx: Any = None) -> Message:
        assert self.store is not None
        rtype = req.sl_request_type
        if rtype is None:
            return self._answer(req, 5005, failed_avp=Avp.new("SL-Request-Type", 0))
        if int(rtype) not in (0, 1):
            return self._answer(req, 5004, failed_avp=Avp.new("SL-Request-Type", int(rtype)))
        sid = str(req.session_id)
        existing = self.store.sy_get(sid)
        if (int(rtype) == 1 and existing is None) or self._foreign(existing, req, rctx):
            return self._answer(req, 5002)
        if existing is not None and not req.get_all("Subscription-Id"):
            account = existing.account
            acct_info = self.store.get_account(account)
            acct = acct_info.account if acct_info else None
        else:
            subs = [
                (int(x.subscription_id_type), str(x.subscription_id_data))
                for x in req.get_all("Subscription-Id")
                if x.subscription_id_type is not None and x.subscription_id_data is not None
            ]
            acct = self.store.provision(subs, time.time()) if subs else None
        if acct is None:
            return self._answer(req, 5030)
        wanted = [str(x) for x in req.get_all("Policy-Counter-Identifier")]
        unknown = [w for w in wanted if w not in self.counters]
        if unknown:
            return self._answer(
                req,
                None,
                experimental_result={
                    "vendor_id": VENDOR_3GPP,
                    "experimental_result_code": UNKNOWN_POLICY_COUNTERS,
                },
                failed_avp=[Avp.new("Policy-Counter-Identifier", u) for u in unknown],
            )
        counters = [self.counters[w] for w in wanted] if wanted else list(self.counters.values())
        if not counters:
            return self._answer(
                req,
                None,
                experimental_result={
                    "vendor_id": VENDOR_3GPP,
                    "experimental_result_code": NO_AVAILABLE_POLICY_COUNTERS,
                },
            )
        self.store.sy_put(
            SySubscription(sid, acct.id, str(req.origin_host), str(req.origin_realm), counters)
        )
        return self._answer(
            req, 2001, policy_counter_status_report=_reports(counters, current_spent(acct))
        )
