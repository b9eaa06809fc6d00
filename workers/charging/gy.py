"""Gy/Ro online charging: the Credit-Control application (RFC 8506, TS 32.299), app id 4.

The handler turns a CCR into a `core.CCOp` (rating happens here, from the tariffs in memory),
lets the store apply it in one atomic step, and renders the stored outcome as the CCA. A
retransmitted CCR gets its outcome back from the store and so the same answer, charged once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

from chargegw.codec import Avp, Message, ResultCode, commands

from . import core
from .config import GyConfig, Tariff, load, peer_index, service_key
from .core import CCOp, Outcome, ServiceReq
from .money import EXPONENT, MAX_AMOUNT, MAX_UNITS, price_of
from .rating import Rater, units_of
from .store import AccountRow, ProvisionRule, Store, StoreUnavailable, open_store
from .wire import Frozen, Parsed, Svc, Units, Writer, parse_ccr

APP_ID = 4
CMD_CCR = 272
REQUIRED = (
    "Session-Id",
    "Origin-Host",
    "Origin-Realm",
    "Destination-Realm",
    "Auth-Application-Id",
    "Service-Context-Id",
    "CC-Request-Type",
    "CC-Request-Number",
)
_UNIT_AVP = {"time": "cc_time", "volume": "cc_total_octets", "units": "cc_service_specific_units"}
_PLACEHOLDER: dict[str, Any] = {
    "Session-Id": "",
    "Origin-Host": "",
    "Origin-Realm": "",
    "Destination-Realm": "",
    "Auth-Application-Id": 4,
    "Service-Context-Id": "",
    "CC-Request-Type": 1,
    "CC-Request-Number": 0,
    "Requested-Action": 0,
}

DEMO_ACCOUNTS = [
    AccountRow("demo-1", 100_000_000, 0, False, [(0, "4680000000001"), (1, "240800000000001")]),
    AccountRow("demo-low", 50_000, 0, False, [(0, "4680000000002")]),
    AccountRow("demo-empty", 0, 0, False, [(0, "4680000000003")]),
    AccountRow("demo-blocked", 100_000_000, 0, True, [(0, "4680000000004")]),
    AccountRow("demo-postpaid", 0, -50_000_000, False, [(0, "4680000000005")]),
]


class BadRequest(Exception):
    """A CCR that must be answered with a protocol error (5004/5005) naming the faulty AVP."""

    def __init__(self, result_code: int, name: str, value: Any) -> None:
        super().__init__(result_code)
        self.result_code = result_code
        self.name = name
        self.value = value


class Answer:
    """What to answer: the result, the AVPs beside it, and for errors the Failed-AVP (as
    (name, value), or the offending Avp itself)."""

    __slots__ = ("result", "extra", "failed", "error_message")

    def __init__(
        self,
        result: int,
        extra: dict[str, Any] | None = None,
        failed: tuple[str, Any] | Avp | None = None,
        error_message: str | None = None,
    ) -> None:
        self.result = result
        self.extra = extra or {}
        self.failed = failed
        self.error_message = error_message


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def from_message(req: Message) -> Parsed:
    """The codec path's view of a CCR, the same shape the wire fast path reads."""
    p = Parsed()
    p.session_id = _str(req.session_id)
    p.origin_host = _str(req.origin_host)
    p.origin_realm = _str(req.origin_realm)
    p.destination_realm = _str(req.destination_realm)
    p.auth_application_id = _int(req.auth_application_id)
    p.service_context_id = _str(req.service_context_id)
    p.cc_request_type = _int(req.cc_request_type)
    p.cc_request_number = _int(req.cc_request_number)
    p.requested_action = _int(req.requested_action)
    ref = req.cc_correlation_id
    if ref is not None:  # OctetString; only ever compared with a Session-Id (UTF-8)
        p.ref = bytes(ref).decode(errors="replace")
    p.subscriptions = [
        (int(x.subscription_id_type), str(x.subscription_id_data))
        for x in req.get_all("Subscription-Id")
        if x.subscription_id_type is not None and x.subscription_id_data is not None
    ]
    msccs = req.get_all("Multiple-Services-Credit-Control")
    if msccs:
        p.mscc = True
        p.services = [
            Svc(_int(m.rating_group), _int(_first(m.service_identifier)), Units.of(m.requested_service_unit),
                [u for u in map(Units.of, m.used_service_unit) if u is not None])
            for m in msccs
        ]  # fmt: skip
    else:
        rsu, usus = (
            Units.of(req.requested_service_unit),
            [u for u in map(Units.of, req.get_all("Used-Service-Unit")) if u],
        )
        if rsu is not None or usus:
            p.services = [Svc(None, _int(_first(req.service_identifier)), rsu, usus)]
    p.hbh, p.e2e, p.flags = req.hop_by_hop, req.end_to_end, req.flags
    return p


def _deadline(rctx: Any) -> float:
    """The request's pool deadline (time.time()), 0.0 when there is none (no runtime)."""
    return float(getattr(rctx, "deadline", 0.0) or 0.0)


_TASKS: set[asyncio.Task[Any]] = set()  # the loop keeps only weak references to tasks


def _spawn(coro: Coroutine[Any, Any, Any]) -> None:
    """Run server-initiated work beside request handling, on the worker's loop."""
    try:
        task = asyncio.get_running_loop().create_task(coro)
    except RuntimeError:
        asyncio.run(coro)
        return
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


async def _gather(results: list[Any]) -> list[Any]:
    """`results` with each future replaced by its result (or its exception)."""
    for k, r in enumerate(results):
        if isinstance(r, asyncio.Future):
            try:
                results[k] = await r
            except Exception as exc:
                results[k] = exc
    return results


class _Service:
    """A service of the request with its tariff (None: unrated) and what the store should do."""

    __slots__ = ("rating_group", "service_identifier", "tariff", "req")

    def __init__(
        self, rating_group: int | None, service_identifier: int | None, tariff: Tariff | None
    ) -> None:
        self.rating_group = rating_group
        self.service_identifier = service_identifier
        self.tariff = tariff
        self.req: ServiceReq | None = None


class CreditControlApp:
    """Gy/Ro OCS. Register as `chargegw.workers.charging.gy:CreditControlApp` for app 4."""

    app_id = APP_ID

    def __init__(self) -> None:
        self.cfg = GyConfig()
        self.rater = Rater(self.cfg.tariffs, self.cfg.quota)
        self.store: Store | None = None
        self.ctx: Any = None
        self._seeded = False
        self._last_error = 0.0
        self.writer = Writer()
        self._batch_armed = False
        self._busy_since = 0.0
        self._busy_delay = 0.00005
        self._batch: list[
            tuple[bytes, Parsed, tuple[int, CCOp, list[_Service]], asyncio.Future[bytes], float]
        ] = []  # (raw, parsed, store op, answer future, deadline)
        self._threshold: dict[str, tuple[str, int]] = {}
        self._peers: dict[str, tuple[str, ...]] = {}  # Origin-Host -> who may act for it
        self._refunders: frozenset[str] = frozenset()
        self._fui: dict[str, Any] = {}
        self._blocks: dict[tuple[Any, ...], Frozen] = {}  # `_outcome` key -> MSCC block
        # (RG, SI) -> (tariff, store key, quota): rating a service is a dict look-up
        self._rated: dict[tuple[int | None, int | None], tuple[Tariff | None, str, int]] = {}

    # -- lifecycle ------------------------------------------------------------------------

    def setup(self, ctx: Any) -> None:
        self.ctx = ctx
        self.cfg = load(GyConfig, "Gy", ctx.config)
        self.rater = Rater(self.cfg.tariffs, self.cfg.quota)
        self._rated.clear()
        q = self.cfg.quota
        self._threshold = {
            "time": ("time_quota_threshold", q.time_quota_threshold),
            "volume": ("volume_quota_threshold", q.volume_quota_threshold),
            "units": ("unit_quota_threshold", q.unit_quota_threshold),
        }
        self._fui = self._final_unit()
        self._peers = peer_index(self.cfg.peer_groups)
        self._refunders = frozenset(h.strip().lower() for h in self.cfg.refunds.peers)
        self._blocks.clear()
        self.store = open_store(self.cfg.store, ctx.data_dir)
        self._seed()
        ctx.call_later(self.cfg.sweep_interval, self._sweep_tick)
        ctx.call_later(self.cfg.notice_interval, self._notice_tick)

    def _final_unit(self) -> dict[str, Any]:
        fu = self.cfg.final_unit
        if fu.action == "redirect":
            return {
                "final_unit_action": 1,
                "redirect_server": {
                    "redirect_address_type": fu.redirect_address_type,
                    "redirect_server_address": fu.redirect_address,
                },
            }
        return {"final_unit_action": 0}

    def _seed(self) -> None:
        """Seed the demo account set into a fresh store once (see README.md)."""
        if self._seeded or not self.cfg.demo.enabled or self.store is None:
            self._seeded = True
            return
        demo = self.cfg.demo
        rules = [ProvisionRule(0, demo.prefix, demo.micro, 0)]
        if demo.imsi_prefix:
            rules.append(ProvisionRule(1, demo.imsi_prefix, demo.micro, 0))
        try:
            if self.store.seed_demo(DEMO_ACCOUNTS, rules, time.time()):
                self.ctx.log.info(
                    "seeded the demo account set (prefix %s, %d accounts)",
                    demo.prefix,
                    len(DEMO_ACCOUNTS),
                )
            self._seeded = True
        except StoreUnavailable as exc:
            self.ctx.log.warning("demo seeding postponed: %s", exc)

    def _sweep_tick(self) -> None:
        try:
            self._seed()
            n = self.store.sweep(time.time(), self.cfg.closed_ttl) if self.store else 0
            if n:
                self.ctx.log.info("released the reservations of %d silent sessions (Tcc)", n)
        except StoreUnavailable as exc:
            self._store_down(exc)
        except Exception:  # a sweep must never kill the worker
            self.ctx.log.exception("sweep failed")
        finally:
            self.ctx.call_later(self.cfg.sweep_interval, self._sweep_tick)

    def _notice_tick(self) -> None:
        try:
            notices = self.store.take_notices() if self.store else []
            for n in notices:
                _spawn(self._send_notice(n.kind, n.session, n.client_host, n.client_realm))
        except StoreUnavailable as exc:
            self._store_down(exc)
        except Exception:
            self.ctx.log.exception("notice pick-up failed")
        finally:
            self.ctx.call_later(self.cfg.notice_interval, self._notice_tick)

    async def _send_notice(self, kind: str, session_id: str, host: str, realm: str) -> None:
        """RAR after a top-up of a session under Final-Unit-Indication; ASR for a blocked account."""
        common = {
            "session_id": session_id,
            "origin_host": self.ctx.origin_host,
            "origin_realm": self.ctx.origin_realm,
            "destination_realm": realm,
            "destination_host": host,
            "auth_application_id": APP_ID,
        }
        if kind == "rar":
            req: Message = commands.ReAuthRequest(app_id=APP_ID, re_auth_request_type=0, **common)
        else:
            req = commands.AbortSessionRequest(app_id=APP_ID, **common)
        try:
            ans = await self.ctx.send_request(req, peer=host)
            self.ctx.log.info(
                "%s for %s answered %s", kind.upper(), session_id, ans.get("Result-Code")
            )
        except Exception as exc:  # SendError or a dead peer: the session is swept by Tcc anyway
            self.ctx.log.warning("%s for %s not delivered: %s", kind.upper(), session_id, exc)

    def _store_down(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_error > 5.0:  # log the cause, not one line per request
            self._last_error = now
            self.ctx.log.error("charging store unavailable: %s", exc)

    # -- requests -------------------------------------------------------------------------

    def handle_raw(self, raw: bytes, rctx: Any = None) -> bytes | asyncio.Future[bytes]:
        """The runtime's fast hook: common CCRs are read and answered without building
        codec objects (see wire.py); everything else goes through `handle`.

        On a running loop the store work of all CCRs that arrive in one loop turn is done
        in one transaction (group commit), and each answer is released after it."""
        p = parse_ccr(raw)
        if p is None:
            return self.handle(Message.decode(raw), rctx).encode()
        prep = self._prepare(p, rctx)
        if isinstance(prep, Answer):
            return self._bytes(raw, p, prep)
        deadline = _deadline(rctx)
        if self.cfg.group_commit:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                fut: asyncio.Future[bytes] = loop.create_future()
                self._batch.append((raw, p, prep, fut, deadline))
                if not self._batch_armed:
                    self._batch_armed = True
                    loop.call_soon(self._run_batch)
                return fut
        return self._bytes(raw, p, self._store_step(p, prep, deadline))

    def handle_raw_batch(self, raws: list[bytes], rctxs: Any = None) -> Any:
        """The runtime's batch hook: the CCRs of one drained batch, decided together in one
        store transaction (group commit); answers come back as one list, in order, once
        that transaction has committed. No per-request future: the list is returned at once
        unless another process holds the write lock, and then one awaitable of it is.

        An element is the answer's bytes, or the exception that request raised (the runtime
        answers it as `handle_raw` raising it would be answered). Each request is answered by
        its own outcome, also when part of the batch failed in the store."""
        n = len(raws)
        results: list[Any] = [None] * n
        pending: list[tuple[int, bytes, Parsed, tuple[int, CCOp, list[_Service]]]] = []
        deadlines: list[float] = []
        for k, raw in enumerate(raws):
            rctx = rctxs[k] if rctxs is not None else None
            try:
                p = parse_ccr(raw)
                if p is None:
                    results[k] = self.handle(Message.decode(raw), rctx).encode()
                    continue
                prep = self._prepare(p, rctx)
                if isinstance(prep, Answer):
                    results[k] = self._bytes(raw, p, prep)
                else:
                    pending.append((k, raw, p, prep))
                    deadlines.append(_deadline(rctx))
            except Exception as exc:
                results[k] = exc
        # The gateway has answered a request past its deadline (3002) already: the client never
        # sees this answer, so applying it would charge or reserve for nothing.
        now = time.time()
        if any(d and d <= now for d in deadlines):
            live = []
            for item, d in zip(pending, deadlines, strict=True):
                if d and d <= now:
                    results[item[0]] = self._expired(item[1], item[2])
                else:
                    live.append((item, d))
            pending = [x[0] for x in live]
            deadlines = [x[1] for x in live]
        if not pending:
            return results
        if not self.cfg.group_commit:
            for (k, raw, p, prep), d in zip(pending, deadlines, strict=True):
                try:
                    results[k] = self._bytes(raw, p, self._store_step(p, prep, d))
                except Exception as exc:
                    results[k] = exc
            return results
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        outcomes: list[Any] | None = None
        if not self._batch_armed:  # else earlier CCRs wait for the lock: join them
            assert self.store is not None
            try:
                outcomes = self.store.credit_control_many(
                    [x[3][1] for x in pending], wait=loop is None
                )
            except StoreUnavailable as exc:
                self._store_down(exc)
                outcomes = [exc] * len(pending)
            except Exception as exc:  # a bug fails this batch's requests, not the worker
                self.ctx.log.exception("credit-control batch failed")
                outcomes = [exc] * len(pending)
        if outcomes is not None:
            for (k, raw, p, (rtype, _, services)), out in zip(pending, outcomes, strict=True):
                results[k] = self._settle(raw, p, rtype, services, out)
            return results
        # Another worker holds the write lock: the retry machinery of `handle_raw` waits for
        # it without blocking the loop; this batch joins it and is answered as a whole.
        assert loop is not None
        for (k, raw, p, prep), d in zip(pending, deadlines, strict=True):
            fut: asyncio.Future[bytes] = loop.create_future()
            self._batch.append((raw, p, prep, fut, d))
            results[k] = fut
        if not self._batch_armed:
            self._batch_armed = True
            loop.call_soon(self._run_batch)
        return _gather(results)

    def _settle(
        self, raw: bytes, p: Parsed, rtype: int, services: list[_Service], out: Any
    ) -> bytes | BaseException:
        """The answer bytes for a store outcome (or the exception to answer for)."""
        try:
            if isinstance(out, StoreUnavailable):
                self._store_down(out)  # logged at most once every 5 s
                ans = Answer(3004, error_message="charging store unavailable")
            elif isinstance(out, BaseException):
                return out
            else:
                ans = self._complete(p, rtype, services, out)
            return self._bytes(raw, p, ans)
        except Exception as exc:
            return exc

    def _expired(self, raw: bytes, p: Parsed) -> bytes:
        """The stand-in answer for a request dropped unapplied after its deadline: the gateway
        answered it 3002 itself and discards this one, which only returns the credit."""
        return self._bytes(
            raw,
            p,
            Answer(int(ResultCode.DIAMETER_UNABLE_TO_DELIVER), error_message="deadline passed"),
        )

    def _bytes(self, raw: bytes, p: Parsed, ans: Answer) -> bytes:
        if ans.failed is not None or ans.error_message is not None:
            return self._render(Message.decode(raw), ans).encode()
        return self.writer.cca(
            p, ans.result, self.ctx.origin_host, self.ctx.origin_realm, ans.extra
        )

    def _run_batch(self) -> None:
        batch, self._batch = self._batch, []
        assert self.store is not None
        # Checked again here, right before the store: a request may have waited in the batch
        # (for the write lock) past its deadline, and the gateway has answered it 3002 since.
        now = time.time()
        if any(b[4] and b[4] <= now for b in batch):
            live = []
            for b in batch:
                if b[4] and b[4] <= now:
                    if not b[3].done():
                        b[3].set_result(self._expired(b[0], b[1]))
                else:
                    live.append(b)
            batch = live
            if not batch:
                self._busy_since, self._busy_delay, self._batch_armed = 0.0, 0.00005, False
                return
        outcomes: list[Any] | None
        try:
            outcomes = self.store.credit_control_many([b[2][1] for b in batch], wait=False)
        except StoreUnavailable as exc:
            self._store_down(exc)
            outcomes = [exc] * len(batch)
        except Exception as exc:  # a bug must not leave the batch's answers pending forever
            self.ctx.log.exception("credit-control batch failed")
            outcomes = [exc] * len(batch)
        if outcomes is None:
            # Another worker holds the write lock: keep serving the loop (more CCRs join this
            # batch) and try again shortly, within the store timeout.
            now = time.monotonic()
            if self._busy_since == 0.0:
                self._busy_since = now
            if now - self._busy_since < self.cfg.store.timeout:
                self._batch[:0] = batch
                self._busy_delay = min(self._busy_delay * 2, 0.002)
                asyncio.get_running_loop().call_later(self._busy_delay, self._run_batch)
                return
            exc = StoreUnavailable(f"store write lock not free in {self.cfg.store.timeout}s")
            self._store_down(exc)
            outcomes = [exc] * len(batch)
        self._busy_since, self._busy_delay, self._batch_armed = 0.0, 0.00005, False
        for (raw, p, (rtype, _, services), fut, _d), out in zip(batch, outcomes, strict=True):
            if fut.done():
                continue
            res = self._settle(raw, p, rtype, services, out)
            if type(res) is bytes:
                fut.set_result(res)
            else:  # the runtime answers 5012 and logs it
                fut.set_exception(res)  # type: ignore[arg-type]

    def handle(self, request: Message, rctx: Any = None) -> Message:
        if request.code != CMD_CCR:
            return self._render(request, Answer(3001))
        unsupported = self._unsupported(request)
        if unsupported is not None:
            return self._render(request, unsupported)
        return self._render(request, self._decide(from_message(request), rctx))

    @staticmethod
    def _unsupported(request: Message) -> Answer | None:
        """5001 for an AVP the dictionary does not know that has the M bit, at any depth
        (RFC 6733 4.1), before anything else reads the request. The codec's validation finds
        it and builds the Failed-AVP (wrapped in its enclosing groups)."""
        for err in request.find_errors():
            if err.result_code == ResultCode.DIAMETER_AVP_UNSUPPORTED:
                return Answer(
                    int(ResultCode.DIAMETER_AVP_UNSUPPORTED),
                    failed=err.failed_avp,
                    error_message=err.error_message or "unsupported mandatory AVP",
                )
        return None

    def _render(self, req: Message, ans: Answer) -> Message:
        extra = dict(ans.extra)
        rtype, number = req.cc_request_type, req.cc_request_number
        if isinstance(rtype, int):
            extra["cc_request_type"] = rtype
        if isinstance(number, int):
            extra["cc_request_number"] = number
        if isinstance(ans.failed, Avp):
            extra["failed_avp"] = ans.failed
        elif ans.failed is not None:
            extra["failed_avp"] = Avp.new(*ans.failed)
        if ans.error_message is not None:
            extra["error_message"] = ans.error_message
        return req.answer(
            ans.result,
            origin_host=self.ctx.origin_host,
            origin_realm=self.ctx.origin_realm,
            auth_application_id=APP_ID,
            **extra,
        )

    def _decide(self, p: Parsed, rctx: Any = None) -> Answer:
        prep = self._prepare(p, rctx)
        if isinstance(prep, Answer):
            return prep
        return self._store_step(p, prep, _deadline(rctx))

    def _store_step(
        self, p: Parsed, prep: tuple[int, CCOp, list[_Service]], deadline: float = 0.0
    ) -> Answer:
        rtype, op, services = prep
        assert self.store is not None
        if deadline and time.time() >= deadline:  # answered 3002 by the gateway already
            return Answer(
                int(ResultCode.DIAMETER_UNABLE_TO_DELIVER), error_message="deadline passed"
            )
        try:
            outcome = self.store.credit_control(op)
        except StoreUnavailable as exc:
            self._store_down(exc)
            return Answer(3004, error_message="charging store unavailable")
        return self._complete(p, rtype, services, outcome)

    def _check(self, p: Parsed) -> tuple[int, int, int]:
        """Required AVPs (5005) and values (5004) the codec's grammar alone cannot judge."""
        present = (
            p.session_id,
            p.origin_host,
            p.origin_realm,
            p.destination_realm,
            p.auth_application_id,
            p.service_context_id,
            p.cc_request_type,
            p.cc_request_number,
        )
        if None in present:
            name = REQUIRED[present.index(None)]
            raise BadRequest(5005, name, _PLACEHOLDER[name])
        rtype = p.cc_request_type
        assert rtype is not None and p.cc_request_number is not None
        if not 1 <= rtype <= 4:
            raise BadRequest(5004, "CC-Request-Type", rtype)
        action = -1
        if rtype == core.EVENT:
            if p.requested_action is None:
                raise BadRequest(5005, "Requested-Action", 0)
            action = p.requested_action
            if not 0 <= action <= 3:
                raise BadRequest(5004, "Requested-Action", action)
        contexts = self.cfg.service_contexts
        if contexts and not any(str(p.service_context_id).endswith(c) for c in contexts):
            raise BadRequest(5004, "Service-Context-Id", p.service_context_id)
        return rtype, p.cc_request_number, action

    @staticmethod
    def _units(u: Units | None, unit_type: str, name: str) -> int | None:
        if u is None:
            return None
        if u.money is not None and u.money < 0:
            raise BadRequest(5004, name, {"cc_money": {"unit_value": {"value_digits": u.money}}})
        return units_of(u, unit_type)

    @staticmethod
    def _too_big(p: Parsed, svc: Svc, used: bool, u: Units | None, unit_type: str) -> BadRequest:
        """5004 for units (or their price) past what the money arithmetic holds (MAX_UNITS,
        MAX_AMOUNT), naming the unit AVPs at fault inside their RSU/USU (and MSCC)."""
        if u is None:
            inner: dict[str, Any] = {}
        elif unit_type == "volume" and u.cc_total_octets is None:
            inner = {
                k: v
                for k in ("cc_input_octets", "cc_output_octets")
                if (v := getattr(u, k)) is not None
            }
        else:
            inner = {_UNIT_AVP[unit_type]: getattr(u, _UNIT_AVP[unit_type])}
        name = "Used-Service-Unit" if used else "Requested-Service-Unit"
        if not p.mscc:
            return BadRequest(5004, name, inner)
        block: dict[str, Any] = {
            "used_service_unit" if used else "requested_service_unit": [inner] if used else inner
        }
        if svc.rating_group is not None:
            block["rating_group"] = svc.rating_group
        if svc.service_identifier is not None:
            block["service_identifier"] = [svc.service_identifier]
        return BadRequest(5004, "Multiple-Services-Credit-Control", block)

    def _services(self, p: Parsed, rtype: int) -> list[_Service]:
        """Rate each service of the request: its MSCCs, or the top-level units."""
        out: list[_Service] = []
        rater = self.rater
        granting = rtype in (core.INITIAL, core.UPDATE, core.EVENT)
        svcs = p.services
        if not svcs and rtype == core.EVENT:
            svcs = [Svc(None, None, None, [])]
        rated = self._rated
        for svc in svcs:
            rg, sid = svc.rating_group, svc.service_identifier
            hit = rated.get((rg, sid))
            if hit is None:
                t0 = rater.tariff(rg, sid)
                hit = (t0, service_key(rg, sid), rater.quota_for(t0) if t0 is not None else 0)
                if len(rated) < 4096:
                    rated[(rg, sid)] = hit
            t, skey, quota = hit
            s = _Service(rg, sid, t)
            out.append(s)
            if t is None:
                continue
            used = 0
            for u in svc.usus:
                used += self._units(u, t.unit_type, "Used-Service-Unit") or 0
                if used > MAX_UNITS or price_of(used, t.micro, t.unit_size) > MAX_AMOUNT:
                    raise self._too_big(p, svc, True, u, t.unit_type)
            requested = 0
            rsu = svc.rsu
            if granting and (rsu is not None or rtype == core.EVENT):
                asked = self._units(rsu, t.unit_type, "Requested-Service-Unit")
                if asked is not None and asked > MAX_UNITS:
                    raise self._too_big(p, svc, False, rsu, t.unit_type)
                if rtype == core.EVENT:
                    requested = asked if asked is not None else quota
                    if price_of(requested, t.micro, t.unit_size) > MAX_AMOUNT:
                        raise self._too_big(p, svc, False, rsu, t.unit_type)
                elif asked and self.cfg.quota.honour_requested:
                    requested = min(asked, quota)
                else:
                    requested = quota
            s.req = ServiceReq(skey, t.micro, t.unit_size, used, requested)
        return out

    def _prepare(self, p: Parsed, rctx: Any = None) -> Answer | tuple[int, CCOp, list[_Service]]:
        """Check and rate a CCR: either its answer already, or the store operation it needs.

        The requesting peer is the Origin-Host of the connection the request came in on (the
        runtime's `rctx.peer`; the Origin-Host AVP only without a runtime): sessions belong
        to it and its group, and refunds are allowed per peer."""
        peer = ((rctx.peer if rctx is not None else "") or p.origin_host or "").lower()
        try:
            rtype, number, action = self._check(p)
            if action == core.REFUND_ACCOUNT:
                if not self.cfg.refunds.enabled or peer not in self._refunders:
                    return Answer(
                        int(ResultCode.DIAMETER_AUTHORIZATION_REJECTED),
                        error_message="refunds are not accepted from this peer",
                    )
                if not p.ref:
                    raise BadRequest(5005, core.REF_AVP, b"")
            services = self._services(p, rtype)
            rated = [s.req for s in services if s.req is not None]
            if services and not rated:
                rg = services[0].rating_group
                failed = (
                    ("Rating-Group", rg)
                    if rg is not None
                    else ("Service-Context-Id", p.service_context_id)
                )
                return Answer(core.RATING_FAILED, failed=failed)
            if rtype == core.EVENT and action in (core.CHECK_BALANCE, core.PRICE_ENQUIRY):
                return self._enquiry(p, action, services)
        except BadRequest as exc:
            return Answer(exc.result_code, failed=(exc.name, exc.value))
        except StoreUnavailable as exc:
            self._store_down(exc)
            return Answer(3004, error_message="charging store unavailable")
        op = CCOp(
            p.session_id or "", number, rtype, rated, p.subscriptions, action,
            p.origin_host or "", p.origin_realm or "", time.time(),
            self.cfg.tcc_seconds, self.cfg.closed_ttl,
            self._peers.get(peer) or (peer,), self.cfg.event_ttl, p.ref or "",
        )  # fmt: skip
        return rtype, op, services

    def _complete(
        self, p: Parsed, rtype: int, services: list[_Service], outcome: Outcome
    ) -> Answer:
        if outcome.sy and outcome.spent_after != outcome.spent_before and not outcome.replay:
            _spawn(self._spending_changed(outcome))
        return self._outcome(p, rtype, outcome, services)

    def _outcome(self, p: Parsed, rtype: int, out: Outcome, services: list[_Service]) -> Answer:
        if out.failed_avp:
            value: Any = {
                "CC-Request-Number": p.cc_request_number,
                core.REF_AVP: (p.ref or "").encode(),
                "Requested-Action": p.requested_action,
            }.get(out.failed_avp)
            return Answer(out.result, failed=(out.failed_avp, value))
        if out.result in (core.UNKNOWN_SESSION, core.USER_UNKNOWN) or (
            out.result == 4010 and not out.services
        ):
            return Answer(out.result)
        results = {r.key: r for r in out.services}
        blocks: list[dict[str, Any]] = []
        cache = self._blocks
        for s in services:
            r = results.get(s.req.key) if s.req is not None else None
            if s.tariff is None or r is None:
                key: tuple[Any, ...] = (s.rating_group, s.service_identifier, None)
            elif r.granted and rtype != core.TERMINATION:
                key = (s.rating_group, s.service_identifier, r.result, s.tariff.unit_type,
                       r.granted, rtype == core.EVENT, r.fui)  # fmt: skip
            else:
                key = (s.rating_group, s.service_identifier, r.result)
            block = cache.get(key)
            if block is None:
                block = self._block(key)
                if len(cache) < 4096:
                    cache[key] = block
            blocks.append(block)
        extra: dict[str, Any] = {}
        result = out.result
        if p.mscc:
            extra["multiple_services_credit_control"] = blocks
        elif blocks:
            b = blocks[0]
            for k in ("granted_service_unit", "validity_time", "final_unit_indication"):
                if k in b:
                    extra[k] = b[k]
            if result == core.SUCCESS and b["result_code"] != core.SUCCESS:
                result = b["result_code"]
        return Answer(result, extra)

    def _block(self, key: tuple[Any, ...]) -> Frozen:
        """An MSCC answer block from its `_outcome` key: shared between answers, so never
        changed after it is built (the writer keeps its encoding on it)."""
        rg, sid, result = key[0], key[1], key[2]
        block = Frozen()
        if rg is not None:
            block["rating_group"] = rg
        if sid is not None:
            block["service_identifier"] = [sid]
        if result is None:
            block["result_code"] = core.RATING_FAILED
            return block
        block["result_code"] = result
        if len(key) > 3:
            unit_type, granted, event, fui = key[3:]
            q = self.cfg.quota
            block["granted_service_unit"] = {_UNIT_AVP[unit_type]: granted}
            if not event:
                if q.validity_time:
                    block["validity_time"] = q.validity_time
                name, value = self._threshold[unit_type]
                if value:
                    block[name] = value
                if q.quota_holding_time:
                    block["quota_holding_time"] = q.quota_holding_time
                if fui:
                    block["final_unit_indication"] = self._fui
        return block

    def _enquiry(self, p: Parsed, action: int, services: list[_Service]) -> Answer:
        """CHECK_BALANCE and PRICE_ENQUIRY: answered from the tariffs (and balance), nothing stored."""
        cost = sum(price_of(s.req.requested, s.req.price, s.req.unit) for s in services if s.req)
        if action == core.PRICE_ENQUIRY:
            info = {
                "unit_value": {"value_digits": cost, "exponent": EXPONENT},
                "currency_code": self.cfg.currency,
            }
            return Answer(2001, {"cost_information": info})
        assert self.store is not None
        acct = self.store.resolve(p.subscriptions)
        if acct is None:
            return Answer(core.USER_UNKNOWN)
        enough = not acct.blocked and acct.available >= cost
        return Answer(2001, {"check_balance_result": 0 if enough else 1})

    async def _spending_changed(self, out: Outcome) -> None:
        """Send an SNR to the PCRF of each Sy session whose counters crossed a threshold."""
        from .sy import send_status_notifications

        try:
            await send_status_notifications(
                self.ctx, self.store, out.account, out.spent_before, out.spent_after
            )
        except StoreUnavailable as exc:
            self._store_down(exc)
        except Exception:
            self.ctx.log.exception("Sy notification for %s failed", out.account)
