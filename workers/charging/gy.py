"""Gy/Ro online charging: the Credit-Control application (RFC 8506, TS 32.299), app id 4.

One entry point, `handle_batch`, for the CCRs of one batch the runtime drained: each is read
by the one compiled reader (ccr.py), decided (decide.py: checks and rating), and the ones
that need the store are applied together in one store step (group commit); each answer is
rendered (render.py) from its own outcome by the one CCA writer. A retransmitted CCR gets its
outcome back from the store and so the same answer, charged once. What the reader does not
take as clean is judged by the codec's validation (`_judge`), the one place for 5001, 5005,
5009, bad lengths and the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Coroutine
from typing import Any

from chargegw.codec import CodecError, DiameterError, Message, ResultCode, commands, error_answer
from chargegw.sharding import ShardMoved, owner_name

from ..api import Incoming
from ..stats import STATS
from . import ccr, decide
from .config import GyConfig, load
from .core import Outcome
from .decide import Enquiry, Pending, Policy
from .render import Answer, Renderer
from .store import (
    AccountRow,
    ProvisionRule,
    ShardedApp,
    Store,
    StoreBusy,
    StoreUnavailable,
    open_store,
    without_blocking,
)

APP_ID = 4
DEMO_ACCOUNTS = [
    AccountRow("demo-1", 100_000_000, 0, False, [(0, "4680000000001"), (1, "240800000000001")]),
    AccountRow("demo-low", 50_000, 0, False, [(0, "4680000000002")]),
    AccountRow("demo-empty", 0, 0, False, [(0, "4680000000003")]),
    AccountRow("demo-blocked", 100_000_000, 0, True, [(0, "4680000000004")]),
    AccountRow("demo-postpaid", 0, -50_000_000, False, [(0, "4680000000005")]),
]


WINDOW_MAX = 64  # CCRs of one commit group (the store's chunk): a full group commits at once

_TASKS: set[asyncio.Task[Any]] = set()  # the loop keeps only weak references to tasks


# Delays before each new try of a RAR/ASR that was not delivered (about 30 s in all).
NOTICE_RETRY_S = (1.0, 2.0, 4.0, 8.0, 16.0)


def _spawn(coro: Coroutine[Any, Any, Any]) -> None:
    """Run server-initiated work beside request handling, on the worker's loop."""
    try:
        task = asyncio.get_running_loop().create_task(coro)
    except RuntimeError:
        asyncio.run(coro)
        return
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)




class _Group:
    """The CCRs of several drained batches gathered for one store step (commit window):
    each batch's pending requests and its answer list, filled in by `_flush`."""

    __slots__ = ("items", "count", "done", "timer")

    def __init__(self, done: asyncio.Future[None]) -> None:
        self.items: list[tuple[list[tuple[int, Any, Pending, float]], list[Any]]] = []
        self.count = 0
        self.done = done
        self.timer: asyncio.TimerHandle | None = None


class _Header:
    """What rendering needs of a request the compiled reader did not read (the codec did)."""

    def __init__(self, msg: Message) -> None:
        self.flags, self.hop_by_hop, self.end_to_end = msg.flags, msg.hop_by_hop, msg.end_to_end
        avps = msg.avps
        sid = [a.encode() for a in avps if a.name == "Session-Id"]
        self.session_id_avp = sid[0] if sid else None
        self.proxy_info_avp = [a.encode() for a in avps if a.name == "Proxy-Info"]
        self.cc_request_type = self.cc_request_number = None
        for name in ("cc_request_type", "cc_request_number"):
            try:
                value = getattr(msg, name)
            except (CodecError, ValueError):
                continue
            if isinstance(value, int):
                setattr(self, name, int(value))


class CreditControlApp(ShardedApp):
    """Gy/Ro OCS. Register as `chargegw.workers.charging.gy:CreditControlApp` for app 4."""

    app_id = APP_ID

    def __init__(self) -> None:
        self.cfg = GyConfig()
        self.policy = Policy(self.cfg)
        self.render: Renderer | None = None
        self.store: Store | None = None
        self.ctx: Any = None
        self._seeded = False
        self._last_error = 0.0
        self._group: _Group | None = None

    @property
    def rater(self) -> Any:
        """The tariffs in force (ledger checks price stored reservations with them)."""
        return self.policy.rater

    # -- lifecycle ------------------------------------------------------------------------

    def setup(self, ctx: Any) -> None:
        self.ctx = ctx
        self.cfg = load(GyConfig, "Gy", ctx.config)
        self.policy = Policy(self.cfg)
        self.render = Renderer(self.cfg, ctx.origin_host, ctx.origin_realm)
        ccr.reader()  # compiled now, against the dictionary the worker loaded
        self.store = open_store(
            self.cfg.store, ctx.data_dir, owner_name(getattr(ctx, "worker_id", "") or "")
        )
        STATS.store_answered(True)  # it opened: readiness counts this worker's store
        self._seed()
        ctx.call_later(self.cfg.sweep_interval, self._sweep_tick)
        ctx.call_later(self.cfg.notice_interval, self._notice_tick)

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
            STATS.store_answered(True)  # once a notice interval: the idle store's probe
            for n in notices:
                _spawn(self._send_notice(n.kind, n.session, n.client_host, n.client_realm))
        except StoreUnavailable as exc:
            self._store_down(exc)
        except Exception:
            self.ctx.log.exception("notice pick-up failed")
        finally:
            self.ctx.call_later(self.cfg.notice_interval, self._notice_tick)

    async def _send_notice(
        self, kind: str, session_id: str, host: str, realm: str, attempt: int = 0
    ) -> None:
        """RAR after a top-up of a session under Final-Unit-Indication; ASR for a blocked
        account. The store hands a notice out once, so a failed delivery (no route, the
        peer gone or busy: an exception or a 3xxx answer) is tried again after each of
        NOTICE_RETRY_S; an answer other than 3xxx (2001, or 5002 for a session the client
        has already ended) settles it. Retries live in this process only: a worker that
        dies meanwhile loses them, and the session is then swept by Tcc."""
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
            rc = ans.get("Result-Code")
            why = f"answered {rc}"
        except Exception as exc:  # SendError or a dead peer
            rc, why = None, f"not delivered: {exc}"
        if rc is not None and not 3000 <= int(rc) < 4000:
            self.ctx.log.info("%s for %s %s", kind.upper(), session_id, why)
            return
        if attempt >= len(NOTICE_RETRY_S):
            self.ctx.log.warning(
                "%s for %s %s; given up after %d tries", kind.upper(), session_id, why, attempt + 1
            )
            return
        delay = NOTICE_RETRY_S[attempt]
        self.ctx.log.warning(
            "%s for %s %s; trying again in %.0f s", kind.upper(), session_id, why, delay
        )
        self.ctx.call_later(
            delay, lambda: _spawn(self._send_notice(kind, session_id, host, realm, attempt + 1))
        )

    def _store_down(self, exc: Exception) -> None:
        STATS.store_answered(False)
        now = time.monotonic()
        if now - self._last_error > 5.0:  # log the cause, not one line per request
            self._last_error = now
            self.ctx.log.error("charging store unavailable: %s", exc)

    # -- requests -------------------------------------------------------------------------

    def handle_batch(
        self, requests: list[Incoming]
    ) -> list[bytes | Awaitable[bytes] | None] | Awaitable[list[Any]]:
        """Answer the CCRs of one batch: bytes, or an awaitable of them while another process
        holds the store's write lock, or None for a request past its deadline (the gateway
        answered it 3002 itself; it is dropped unapplied). On a running loop with a commit
        window, the whole list is an awaitable, done once the group's commit is."""
        out: list[Any] = [None] * len(requests)
        pending: list[tuple[int, Any, Pending, float]] = []
        now = time.time()
        render = self.render
        assert render is not None
        read = ccr.reader().read
        for k, inc in enumerate(requests):
            rctx = inc.ctx
            shard = getattr(rctx, "shard", -1)
            deadline = float(getattr(rctx, "deadline", 0.0) or 0.0)
            if deadline and deadline <= now:
                continue
            try:
                v = read(inc.raw)
            except ccr.Unreadable:
                out[k] = self._judge(inc.raw)
                continue
            try:
                d = decide.prepare(v, getattr(rctx, "peer", "") or "", self.policy, now)
                if type(d) is Pending:
                    d.op.shard = shard
                    pending.append((k, v, d, deadline))
                    continue
                if type(d) is Enquiry:
                    d = self._enquiry(d)
                out[k] = render.cca(v, d)  # type: ignore[arg-type]
            except ShardMoved as exc:  # an enquiry for an account of another shard
                out[k] = exc
            except Exception as exc:  # a bug answers this request 5012, not the batch
                out[k] = self._failed(inc.raw, v, exc)
        if pending:
            if self.cfg.group_commit and self.cfg.commit_window_ms > 0:
                group = self._gather(pending, out)
                if group is not None:
                    return self._after(group, out)
            self._commit(pending, out)
        return out

    # -- the commit window ----------------------------------------------------------------
    # A drained batch is as big as what arrived since the last one: with the load spread
    # over several workers, each gets a fraction, and each fsynced commit would carry that
    # fraction. So the first batch of a group waits up to `commit_window_ms` (or until 64
    # CCRs are in) for later ones, and they all go in one store step. Nothing is answered
    # before that step's commit: the batch's answers are an awaitable until `_flush`.

    def _gather(
        self, pending: list[tuple[int, Any, Pending, float]], out: list[Any]
    ) -> _Group | None:
        """Add a batch to the open group (opening one, with its timer); None with no
        running loop (the caller commits at once)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        group = self._group
        if group is None:
            group = self._group = _Group(loop.create_future())
            group.timer = loop.call_later(self.cfg.commit_window_ms / 1000, self._flush, group)
        group.items.append((pending, out))
        group.count += len(pending)
        if group.count >= WINDOW_MAX:
            self._flush(group)
        return group

    def _flush(self, group: _Group) -> None:
        """One store step for every CCR of the group, then its batches' answers are set."""
        if self._group is group:
            self._group = None
        if group.timer is not None:
            group.timer.cancel()
        if group.done.done():
            return
        merged: list[tuple[int, Any, Pending, float]] = []
        where: list[tuple[list[Any], int]] = []
        for pending, out in group.items:
            for k, v, p, deadline in pending:
                where.append((out, k))
                merged.append((len(merged), v, p, deadline))
        answers: list[Any] = [None] * len(merged)
        try:
            self._commit(merged, answers)
        except BaseException as exc:  # _commit answers store failures itself: a bug
            group.done.set_exception(exc)
            raise
        for (out, k), answer in zip(where, answers, strict=True):
            out[k] = answer
        group.done.set_result(None)

    @staticmethod
    async def _after(group: _Group, out: list[Any]) -> list[Any]:
        await asyncio.shield(group.done)
        return out

    def _judge(self, raw: bytes) -> bytes | None:
        """The answer for a request the compiled reader would not read: the codec's
        validation decides (the one place), or its decoding's own error."""
        render = self.render
        assert render is not None
        host, realm = render.origin_host, render.origin_realm
        try:
            msg = Message.decode(raw)
        except CodecError as exc:
            err = DiameterError(exc.result_code, exc.error_message,
                                [exc.failed_avp] if getattr(exc, "failed_avp", None) else None)  # type: ignore[list-item]  # fmt: skip
            try:
                return error_answer(raw, err, host, realm)
            except CodecError:
                return None  # not even a header to answer: nothing can be sent back
        cmd = ccr.reader().dictionary.find_commands(ccr.COMMAND)[0]
        if msg.code != cmd.code or msg.app_id != cmd.app_id or not msg.is_request:
            bad = DiameterError(ResultCode.DIAMETER_COMMAND_UNSUPPORTED, "not a CCR")
            return error_answer(msg, bad, host, realm)
        errs = msg.find_errors(limit=1)
        if not errs:
            self.ctx.log.warning("a CCR the reader refused passed validation: answering 5012")
            ans = Answer(ResultCode.DIAMETER_UNABLE_TO_COMPLY, error_message="unreadable request")
        else:
            e = errs[0]
            if 3000 <= e.result_code < 4000:
                err = DiameterError(e.result_code, e.error_message,
                                    [e.failed_avp] if e.failed_avp else None)  # fmt: skip
                return error_answer(msg, err, host, realm)
            ans = Answer(e.result_code, failed=[e.failed_avp] if e.failed_avp else None,
                         error_message=e.error_message or None)  # fmt: skip
        return render.cca(_Header(msg), ans)

    def _failed(self, raw: bytes, v: Any, exc: BaseException) -> bytes:
        self.ctx.log.error("CCR failed (answering 5012): %s: %s", type(exc).__name__, exc,
                           exc_info=exc)  # fmt: skip
        assert self.render is not None
        STATS.failed(ResultCode.DIAMETER_UNABLE_TO_COMPLY)
        ans = Answer(ResultCode.DIAMETER_UNABLE_TO_COMPLY, error_message="the application failed")
        return self.render.cca(v, ans)

    def _enquiry(self, e: Enquiry) -> Answer:
        assert self.store is not None
        try:
            return decide.balance_answer(self.store.resolve(e.subscriptions), e.cost)
        except StoreUnavailable as exc:
            self._store_down(exc)
            STATS.failed(ResultCode.DIAMETER_TOO_BUSY)
            return decide.store_down()

    def _commit(self, pending: list[tuple[int, Any, Pending, float]], out: list[Any]) -> None:
        """One store step for the batch's operations (one transaction per 64 with
        group_commit), never blocking a running loop: while another process holds the write
        lock, the step is retried from a coroutine (store.without_blocking) within the store
        timeout, and those requests' answers are awaitables. Deadlines are checked again
        right before each try: a request that waited past its own is dropped unapplied."""
        store = self.store
        assert store is not None

        def step() -> tuple[list[Any], list[Any]]:
            now = time.time()
            live = [p for p in pending if not p[3] or p[3] > now]
            ops = [p[2].op for p in live]
            if not ops:
                return live, []
            if self.cfg.group_commit:
                t = time.perf_counter()
                try:
                    outcomes = store.credit_control_many(ops)
                except StoreUnavailable:
                    STATS.store_failed()
                    raise
                if outcomes is None:
                    raise StoreBusy("write lock held")
                STATS.committed(time.perf_counter() - t, outcomes)
                return live, outcomes
            res: list[Any] = []
            down = False
            t = time.perf_counter()
            for op in ops:
                try:
                    res.append(store.credit_control(op))
                except StoreBusy:
                    if not res:
                        raise
                    res.append(StoreUnavailable("write lock held"))
                except StoreUnavailable as exc:
                    STATS.store_failed()
                    down = True
                    res.append(exc)
                except Exception as exc:
                    res.append(exc)
            STATS.committed(time.perf_counter() - t, res, ok=not down)
            return live, res

        try:
            done = without_blocking(store, step, self.cfg.store.timeout)
        except Exception as exc:  # StoreUnavailable: 3004; a bug: 5012, the worker lives on
            done = (pending, [exc] * len(pending))
        if type(done) is tuple:
            for (k, v, p, _), o in zip(*done, strict=True):
                out[k] = self._settle(v, p, o)
            return
        later = asyncio.ensure_future(self._later(pending, done))  # type: ignore[arg-type]
        for j, (k, *_rest) in enumerate(pending):
            out[k] = _nth(later, j)

    async def _later(
        self, pending: list[tuple[int, Any, Pending, float]], done: Awaitable[Any]
    ) -> list[bytes | ShardMoved | None]:
        try:
            live, outcomes = await done
        except Exception as exc:
            live, outcomes = pending, [exc] * len(pending)
        answers: dict[int, bytes | ShardMoved] = {
            k: self._settle(v, p, o) for (k, v, p, _), o in zip(live, outcomes, strict=True)
        }
        return [answers.get(k) for k, *_rest in pending]

    def _settle(self, v: Any, p: Pending, out: Any) -> bytes | ShardMoved:
        """The answer bytes for a store outcome (or the exception the store met); a request
        not applied because its shard is not served here keeps its ShardMoved / NotOwner,
        which the runtime turns into a Moved message."""
        render = self.render
        assert render is not None
        if isinstance(out, ShardMoved):
            return out
        if isinstance(out, StoreUnavailable):
            self._store_down(out)  # logged at most once every 5 s
            STATS.failed(ResultCode.DIAMETER_TOO_BUSY)
            return render.cca(v, decide.store_down())
        if isinstance(out, BaseException):
            return self._failed(b"", v, out)
        try:
            if out.sy and out.spent_after != out.spent_before and not out.replay:
                _spawn(self._spending_changed(out))
            return render.cca(v, render.outcome(v, p.rtype, out, p.services))
        except Exception as exc:
            return self._failed(b"", v, exc)

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


async def _nth(
    batch: asyncio.Future[list[bytes | ShardMoved | None]], j: int
) -> bytes | ShardMoved | None:
    return (await asyncio.shield(batch))[j]
