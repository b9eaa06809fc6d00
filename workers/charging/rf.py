"""Rf offline accounting (TS 32.299 over RFC 6733 accounting), app id 3: ACR -> CDR -> ACA.

A record is committed durably (fsynced: see `open_cdr_store`) to the CDR store before 2001 is
returned; the ACRs of one drained batch share one commit. The key (Session-Id,
Accounting-Record-Number, Accounting-Sub-Session-Id) is stored once; a duplicate (a
T-flagged retransmission or a replay from the client's storage) is answered 2001 again.

Waiting for the store never blocks the worker's loop: a batch that finds the CDR store locked
waits asynchronously for at most `store.timeout` and is then answered 3004 (the client keeps
the records and sends them again). Records older than `retention_days` are purged every
`purge_interval` seconds, in small chunks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any

from chargegw.codec import Avp, CodecError, DiameterError, Message, error_answer
from chargegw.codec.constants import ResultCode

from ..api import Incoming
from ..stats import STATS
from .config import RfConfig, load
from .store import Cdr, CdrStore, StoreUnavailable, open_cdr_store, without_blocking

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


def _not_text(request: Message, subs: list[tuple[int, str]], *more: Any) -> str | None:
    """The name of a text AVP the CDR would store whose octets are not UTF-8 (reading keeps
    them as surrogates, and check_values does not judge an AVP without the M bit), or None.
    ASCII, the usual case, is one check per value."""
    named = (("Session-Id", request.session_id), ("Origin-Host", request.origin_host),
             ("Origin-Realm", request.origin_realm), ("User-Name", more[0]),
             ("Service-Context-Id", more[1]))  # fmt: skip
    for name, v in named:
        if v is not None and not str(v).isascii() and not _utf8(str(v)):
            return name
    for _, data in subs:
        if not data.isascii() and not _utf8(data):
            return "Subscription-Id"
    return None


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _epoch(value: Any) -> float | None:
    return value.timestamp() if hasattr(value, "timestamp") else None


class AccountingApp:
    """Rf CDF. Register as `chargegw.workers.charging.rf:AccountingApp` for app 3."""

    app_id = APP_ID

    def __init__(self) -> None:
        self.cfg = RfConfig()
        self.store: CdrStore | None = None
        self.ctx: Any = None
        self.duplicates = 0
        self.purged = 0

    def setup(self, ctx: Any) -> None:
        self.ctx = ctx
        self.cfg = load(RfConfig, "Rf", ctx.config)
        retention = self.cfg.retention_days * 86400.0
        self.store = open_cdr_store(self.cfg.store, ctx.data_dir, retention)
        if retention:
            ctx.call_later(self.cfg.purge_interval, self._purge_tick)

    def _purge_tick(self) -> None:
        try:
            if self.store is not None:
                before = time.time() - self.cfg.retention_days * 86400.0
                self.purged += self.store.purge(before)
        except StoreUnavailable as exc:
            self.ctx.log.warning("CDR purge postponed: %s", exc)
        except Exception:  # a purge must never kill the worker
            self.ctx.log.exception("CDR purge failed")
        finally:
            self.ctx.call_later(self.cfg.purge_interval, self._purge_tick)

    def _answer(self, req: Message, result: int, **avps: Any) -> Message:
        for name in ("accounting_record_type", "accounting_record_number", "acct_application_id"):
            value = req.get(name)
            if value is not None and not isinstance(value, list):
                avps.setdefault(name, value)
        return req.answer(
            result, origin_host=self.ctx.origin_host, origin_realm=self.ctx.origin_realm, **avps
        )

    def _record(self, request: Message) -> Message | Cdr:
        """The CDR an ACR asks to store, or the answer that refuses it."""
        if request.code != CMD_ACR:
            return self._answer(request, ResultCode.DIAMETER_COMMAND_UNSUPPORTED)
        request.check_values()  # reading does not judge: a bad value raises its AvpError here
        for name in REQUIRED:
            if request.get(name) is None:
                return self._answer(
                    request,
                    ResultCode.DIAMETER_MISSING_AVP,
                    failed_avp=Avp.new(
                        name, "" if "-Host" in name or "-Id" in name or "Realm" in name else 0
                    ),
                )
        rtype = int(request.accounting_record_type)
        if not 1 <= rtype <= 4:
            return self._answer(
                request,
                ResultCode.DIAMETER_INVALID_AVP_VALUE,
                failed_avp=Avp.new("Accounting-Record-Type", rtype),
            )
        subs = [
            (int(x.subscription_id_type), str(x.subscription_id_data))
            for x in request.get_all("Subscription-Id")
            if x.subscription_id_type is not None and x.subscription_id_data is not None
        ]
        user = request.get("User-Name")
        ctx_id = request.get("Service-Context-Id")
        bad = _not_text(request, subs, user, ctx_id)
        if bad is not None:  # stored as text: octets that are not UTF-8 cannot be (5004)
            return self._answer(
                request, ResultCode.DIAMETER_INVALID_AVP_VALUE, failed_avp=request.find(bad)
            )
        return Cdr(
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

    def _stored(self, requests: list[Message], inserted: list[bool] | Exception) -> list[Message]:
        if isinstance(inserted, Exception):
            self.ctx.log.error("CDR store unavailable: %s", inserted)
            STATS.failed(ResultCode.DIAMETER_TOO_BUSY, len(requests))
            return [
                self._answer(r, ResultCode.DIAMETER_TOO_BUSY, error_message="CDR store unavailable")
                for r in requests
            ]
        self.duplicates += inserted.count(False)
        extra = (
            {"acct_interim_interval": self.cfg.interim_interval}
            if self.cfg.interim_interval
            else {}
        )
        return [self._answer(r, ResultCode.DIAMETER_SUCCESS, **extra) for r in requests]

    def _commit(
        self, requests: list[Message], cdrs: list[Cdr]
    ) -> list[Message] | Awaitable[list[Message]]:
        """Store the CDRs in one durable commit, then answer their requests; on a running
        loop, a locked store is waited for asynchronously within `store.timeout`."""
        store = self.store
        assert store is not None
        t = time.perf_counter()
        try:
            res = without_blocking(store, lambda: store.put_cdrs(cdrs), self.cfg.store.timeout)
        except StoreUnavailable as exc:
            STATS.store_failed()
            return self._stored(requests, exc)
        if isinstance(res, list):
            STATS.committed(time.perf_counter() - t, ())  # CDRs carry no units to count
            return self._stored(requests, res)
        return self._later(requests, res, t)

    async def _later(
        self, requests: list[Message], res: Awaitable[list[bool]], t: float
    ) -> list[Message]:
        try:
            inserted: list[bool] | Exception = await res
            STATS.committed(time.perf_counter() - t, ())
        except StoreUnavailable as exc:
            STATS.store_failed()
            inserted = exc
        return self._stored(requests, inserted)

    def handle_batch(self, requests: list[Incoming]) -> list[bytes | Awaitable[bytes] | None]:
        """The ACRs of one drained batch, stored in one durable commit (one fsync for all);
        the one entry point (the runtime's batching, workers/api.py)."""
        results: list[Any] = [None] * len(requests)
        idx: list[int] = []
        reqs: list[Message] = []
        cdrs: list[Cdr] = []
        for k, inc in enumerate(requests):
            try:
                req = inc.message
                rec = self._record(req)
            except CodecError as exc:  # the codec's verdict, answered as the RFC says
                results[k] = self._error(inc.raw, exc)
                continue
            except Exception as exc:  # a bug answers this request 5012, not the batch
                self.ctx.log.error("ACR failed (answering 5012): %s", exc, exc_info=exc)
                err = DiameterError(ResultCode.DIAMETER_UNABLE_TO_COMPLY, "the application failed")
                results[k] = self._error(inc.raw, err)
                continue
            if isinstance(rec, Message):
                results[k] = rec.encode()
            else:
                idx.append(k)
                reqs.append(req)
                cdrs.append(rec)
        if not cdrs:
            return results
        out = self._commit(reqs, cdrs)
        if isinstance(out, list):
            for k, ans in zip(idx, out, strict=True):
                results[k] = ans.encode()
            return results
        shared = asyncio.ensure_future(_encoded(out))
        for j, k in enumerate(idx):
            results[k] = _nth(shared, j)
        return results

    def _error(self, raw: bytes, exc: Exception) -> bytes | None:
        if not isinstance(exc, DiameterError):
            exc = DiameterError(getattr(exc, "result_code", ResultCode.DIAMETER_UNABLE_TO_COMPLY),
                                str(exc), [f] if (f := getattr(exc, "failed_avp", None)) else None)  # fmt: skip
        try:
            return error_answer(raw, exc, self.ctx.origin_host, self.ctx.origin_realm)
        except CodecError:
            return None  # not even a header to answer


async def _encoded(out: Awaitable[list[Message]]) -> list[bytes]:
    return [m.encode() for m in await out]


async def _nth(shared: asyncio.Future[list[bytes]], j: int) -> bytes:
    return (await asyncio.shield(shared))[j]
