"""The worker's one request path, from a drained batch to the answers queued for the
gateway (a part of WorkerRuntime, kept apart by concern).

`_dispatch` hands the requests of one batch for one application to its `handle_batch`
once; each entry of the result becomes an Answer (the fast way: bytes that fit), an
`Expired` (None, or a deadline passed before dispatch), a `Moved` (a ShardMoved instance:
not applied here), a task (an awaitable), or an error answer (an exception: a DiameterError's own Result-Code, the codec's included, else 5012).
Answers of a registration that has meanwhile ended become Credit.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from time import perf_counter
from typing import TYPE_CHECKING, Any

from chargegw.codec import CodecError, DiameterError, Message, ResultCode
from chargegw.ipc import protocol as pp
from chargegw.sharding import ShardMoved
from chargegw.workers.answers import answer_error, session_id
from chargegw.workers.api import Incoming, RequestContext
from chargegw.workers.stats import WorkerStats

if TYPE_CHECKING:
    from chargegw.workers.apps import LoadedApp
    from chargegw.workers.link import Link

log = logging.getLogger("chargegw.worker")


class RequestPath:
    """Request dispatch and answers; WorkerRuntime provides the state declared here."""

    links: list[Link]
    apps: dict[int, LoadedApp]
    _peer_link: dict[str, Link]
    _tasks: set[asyncio.Future[Any]]
    _expired_logged: float
    origin_host: str
    origin_realm: str
    max_answer: int
    handled: int
    errors: int
    figures: WorkerStats

    def _queue(self, i: int, m: pp.PoolMessage) -> None:
        raise NotImplementedError

    def _queue_many(self, i: int, ms: list[pp.PoolMessage]) -> None:
        raise NotImplementedError

    def _schedule_flush(self) -> None:
        raise NotImplementedError

    def _task_done(self, fut: asyncio.Future[Any]) -> None:
        raise NotImplementedError

    def _expired(self, link: Link, req: pp.Request) -> bool:
        return req.deadline - link.offset <= time.time()

    def _drop_expired(self, i: int, req: pp.Request) -> None:
        """Not applied: the gateway has answered (or is answering) it 3002 itself, and the
        client never saw a grant. The slot goes back."""
        link = self.links[i]
        link.expired += 1
        link.done += 1
        # One warning per second at most: a stalled worker may find thousands at once.
        now = time.monotonic()
        level = logging.WARNING if now - self._expired_logged >= 1.0 else logging.DEBUG
        if level == logging.WARNING:
            self._expired_logged = now
        log.log(
            level,
            "request for Session-Id %s is past its deadline: dropped unapplied (%d so far)",
            session_id(req.raw),
            link.expired,
        )
        self._queue(i, pp.Expired(req.id))

    def _dispatch(self, i: int, app_id: int, reqs: list[pp.Request]) -> None:
        """All requests of one drained batch for one application: one `handle_batch` call."""
        link = self.links[i]
        now = time.time() + link.offset
        if any(r.deadline <= now for r in reqs):  # again just before dispatch
            for r in reqs:
                if r.deadline <= now:
                    self._drop_expired(i, r)
            reqs = [r for r in reqs if r.deadline > now]
            if not reqs:
                return
        t0 = perf_counter()  # time in the worker starts here (one clock read per batch)
        n = len(reqs)
        link.busy += n
        link.requests += n
        gen = link.gen
        peer_link = self._peer_link
        offset = link.offset
        incoming: list[Incoming] = []
        add = incoming.append
        for r in reqs:  # one loop, no comprehension frames: this is paid per batch
            peer = r.peer
            add(Incoming(r.raw, RequestContext(peer, r.deadline - offset, r.retransmit, r.shard)))
            peer_link[peer] = link
        entry = self.apps.get(app_id)
        if entry is None:
            results: Any = [
                DiameterError(
                    ResultCode.DIAMETER_APPLICATION_UNSUPPORTED,
                    f"application {app_id} is not served by this worker",
                )
            ] * n
        else:
            try:
                results = entry.handle_batch(incoming)
                if type(results) is not list and inspect.isawaitable(results):
                    fut = asyncio.ensure_future(results)
                    self._tasks.add(fut)
                    fut.add_done_callback(
                        lambda f: self._batch_done(i, gen, reqs, incoming, f, t0)
                    )
                    return
            except Exception as exc:
                results = [exc] * n
        self._finish_batch(i, gen, reqs, incoming, results, t0)

    def _batch_done(
        self,
        i: int,
        gen: int,
        reqs: list[pp.Request],
        incoming: list[Incoming],
        fut: asyncio.Future[Any],
        t0: float,
    ) -> None:
        self._tasks.discard(fut)
        if fut.cancelled():
            results: Any = [RuntimeError("handler cancelled")] * len(reqs)
        elif (exc := fut.exception()) is not None:
            results = [exc] * len(reqs)
        else:
            results = fut.result()
        self._finish_batch(i, gen, reqs, incoming, results, t0)
        self._schedule_flush()

    def _finish_batch(
        self,
        i: int,
        gen: int,
        reqs: list[pp.Request],
        incoming: list[Incoming],
        results: Any,
        t0: float,
    ) -> None:
        n = len(reqs)
        if type(results) is not list or len(results) != n:
            bad = RuntimeError(f"handle_batch returned {type(results).__name__}, not a list "
                               f"of {n} answers")  # fmt: skip
            results = [bad] * n
        link = self.links[i]
        if gen != link.gen:
            # The gateway has resent or answered these: their slots come back as Credit.
            for r in results:
                if r is not None and type(r) is not bytes and inspect.isawaitable(r):
                    self._track(asyncio.ensure_future(r))  # let it finish; nobody waits
            link.busy -= n
            self.handled += n
            link.granted += n
            self._queue(i, pp.Credit(n))
            return
        fast: list[pp.PoolMessage] = []
        moved = 0  # Moved messages among `fast` (not answers)
        answer = pp.Answer
        limit = self.max_answer
        for req, inc, result in zip(reqs, incoming, results, strict=True):
            if type(result) is bytes and len(result) <= limit:
                fast.append(answer(req.id, result))  # counted below, once for the batch
                continue
            if type(result) is not bytes and isinstance(result, Message):
                try:  # encoded here, so that it leaves with the batch's other answers
                    result = result.encode()
                except Exception as exc:
                    result = exc
            if type(result) is bytes and len(result) <= limit:
                fast.append(answer(req.id, result))
            elif isinstance(result, ShardMoved):  # not applied here: its owner applies it
                fast.append(pp.Moved(req.id, result.shard, str(result)))
                moved += 1
            elif result is None:  # the application found it expired: dropped unapplied
                link.busy -= 1
                self.handled += 1
                self._drop_expired(i, req)
            elif not isinstance(result, (bytes, Message, BaseException)) and inspect.isawaitable(
                result
            ):
                fut = asyncio.ensure_future(result)
                self._tasks.add(fut)
                fut.add_done_callback(lambda f, r=req, m=inc: self._done(i, gen, r, m, f, t0))  # type: ignore[misc]  # lambda defaults
            else:
                self._finish(i, gen, req, inc, result, t0)
        if fast:
            k = len(fast)
            link.busy -= k
            link.done += k
            self.handled += k
            if k > moved:  # the answers of the batch left together: one observation
                self.figures.timer(reqs[0].app).since(t0, k - moved)
            self._queue_many(i, fast)

    def _track(self, fut: asyncio.Future[Any]) -> None:
        self._tasks.add(fut)
        fut.add_done_callback(self._task_done)

    def _done(
        self,
        i: int,
        gen: int,
        req: pp.Request,
        inc: Incoming,
        fut: asyncio.Future[Any],
        t0: float,
    ) -> None:
        self._tasks.discard(fut)
        if fut.cancelled():
            result: Any = RuntimeError("handler cancelled")
        elif (exc := fut.exception()) is not None:
            result = exc
        else:
            result = fut.result()
        link = self.links[i]
        if result is None and gen == link.gen:
            link.busy -= 1
            self.handled += 1
            self._drop_expired(i, req)
        else:
            self._finish(i, gen, req, inc, result, t0)
        self._schedule_flush()

    def _finish(
        self, i: int, gen: int, req: pp.Request, inc: Incoming, result: Any, t0: float
    ) -> None:
        """One answer that did not take the fast way: encode it, or answer the error."""
        link = self.links[i]
        link.busy -= 1
        self.handled += 1
        if isinstance(result, ShardMoved):
            if gen == link.gen:
                link.done += 1
                self._queue(i, pp.Moved(req.id, result.shard, str(result)))
            else:
                link.granted += 1
                self._queue(i, pp.Credit(1))
            return
        try:
            if isinstance(result, BaseException):
                raw = self._failed(req, inc, result)
            elif type(result) is bytes:
                raw = result
            elif isinstance(result, Message):
                raw = result.encode()
            elif result is None:
                raise RuntimeError("the handler returned no answer")
            else:
                raw = bytes(result)
        except Exception as exc:
            raw = self._failed(req, inc, exc)
        if len(raw) > self.max_answer:
            raw = self._failed(req, inc, ValueError(f"answer of {len(raw)} bytes is too large"))
        if gen == link.gen:
            link.done += 1
            self.figures.timer(req.app).since(t0)
            self._queue(i, pp.Answer(req.id, raw))
        else:
            link.granted += 1
            self._queue(i, pp.Credit(1))

    def _failed(self, req: pp.Request, inc: Incoming, exc: BaseException) -> bytes:
        """The error answer for `exc`: a DiameterError's (the codec's errors included) own
        Result-Code, otherwise 5012 logged with the Session-Id; the worker lives on."""
        self.errors += 1
        if isinstance(exc, DiameterError):
            # A request the gateway let through (it checks top-level structure only) but
            # that decodes badly deeper down (the codec's error, answered from the raw
            # bytes), or an application's protocol answer.
            error = exc
            request = None if isinstance(exc, CodecError) else inc._message
        else:
            log.error(
                "application %d failed on Session-Id %s: %s: %s (answering 5012)",
                req.app,
                session_id(req.raw),
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
            error = DiameterError(ResultCode.DIAMETER_UNABLE_TO_COMPLY, "the application failed")
            request = inc._message
        self.figures.failed(error.result_code)
        return answer_error(req, error, self.origin_host, self.origin_realm, request)
