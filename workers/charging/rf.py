"""Rf offline accounting (TS 32.299 over RFC 6733 accounting), app id 3: ACR -> CDR -> ACA.

A record is committed to the store before 2001 is returned. The key (Session-Id,
Accounting-Record-Number, Accounting-Sub-Session-Id) is stored once; a duplicate (a
T-flagged retransmission or a replay from the client's storage) is answered 2001 again.
"""

from __future__ import annotations

import time
from typing import Any

from chargegw.codec import Avp, Message

from .config import RfConfig, load
from .store import Cdr, Store, StoreUnavailable, open_store

APP_ID = 3
CMD_ACR = 271
REQUIRED = (
    "Session-Id",
    "Origin-Host",
    "Origin-Realm",
    "Destination-Realm",
    "Accounting-Record-Type",
    "Accounting-Record-Number",
)


def _epoch(value: Any) -> float | None:
    return value.timestamp() if hasattr(value, "timestamp") else None


class AccountingApp:
    """Rf CDF. Register as `chargegw.workers.charging.rf:AccountingApp` for app 3."""

    app_id = APP_ID

    def __init__(self) -> None:
        self.cfg = RfConfig()
        self.store: Store | None = None
        self.ctx: Any = None
        self.duplicates = 0

    def setup(self, ctx: Any) -> None:
        self.ctx = ctx
        self.cfg = load(RfConfig, "Rf", ctx.config)
        self.store = open_store(self.cfg.store, ctx.data_dir)

    def _answer(self, req: Message, result: int, **avps: Any) -> Message:
        for name in ("accounting_record_type", "accounting_record_number", "acct_application_id"):
            value = req.get(name)
            if value is not None and not isinstance(value, list):
                avps.setdefault(name, value)
        return req.answer(
            result, origin_host=self.ctx.origin_host, origin_realm=self.ctx.origin_realm, **avps
        )

    def handle(self, request: Message, rctx: Any = None) -> Message:
        if request.code != CMD_ACR:
            return self._answer(request, 3001)
        for name in REQUIRED:
            if request.get(name) is None:
                return self._answer(
                    request,
                    5005,
                    failed_avp=Avp.new(
                        name, "" if "-Host" in name or "-Id" in name or "Realm" in name else 0
                    ),
                )
        rtype = int(request.accounting_record_type)
        if not 1 <= rtype <= 4:
            return self._answer(request, 5004, failed_avp=Avp.new("Accounting-Record-Type", rtype))
        subs = [
            (int(x.subscription_id_type), str(x.subscription_id_data))
            for x in request.get_all("Subscription-Id")
            if x.subscription_id_type is not None and x.subscription_id_data is not None
        ]
        user = request.get("User-Name")
        ctx_id = request.get("Service-Context-Id")
        cdr = Cdr(
            session_id=str(request.session_id),
            record_number=int(request.accounting_record_number),
            record_type=rtype,
            received=time.time(),
            origin_host=str(request.origin_host),
            origin_realm=str(request.origin_realm),
            sub_session=int(request.get("Accounting-Sub-Session-Id") or 0),
            event_timestamp=_epoch(request.get("Event-Timestamp")),
            user_name=str(user) if user is not None else None,
            service_context_id=str(ctx_id) if ctx_id is not None else None,
            subscriptions=subs,
            interim_interval=request.get("Acct-Interim-Interval"),
            retransmit=request.is_retransmit,
            end_to_end=request.end_to_end,
            avps=request.to_dict(),
        )
        try:
            assert self.store is not None
            if not self.store.put_cdr(cdr):
                self.duplicates += 1
        except StoreUnavailable as exc:
            self.ctx.log.error("CDR store unavailable: %s", exc)
            return self._answer(request, 3004, error_message="CDR store unavailable")
        extra = (
            {"acct_interim_interval": self.cfg.interim_interval}
            if self.cfg.interim_interval
            else {}
        )
        return self._answer(request, 2001, **extra)
