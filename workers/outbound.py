"""Worker-initiated requests (RAR, ASR, SNR): sent through a gateway, answered back.

A request goes to the gateway that last brought a request from the target peer, else
round-robin over live links; a gateway that cannot deliver it (3002) passes it to the
next. Every request has a timer, and a link that registers again fails what it held.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from chargegw.codec import CodecError, Message, ResultCode
from chargegw.ipc import protocol as pp
from chargegw.workers.api import SendError
from chargegw.workers.link import Link

if TYPE_CHECKING:
    from chargegw.workers.runtime import WorkerRuntime


class Outbound:
    """The runtime's worker-initiated requests, per link."""

    def __init__(self, rt: WorkerRuntime) -> None:
        self.rt = rt
        self._next = 1
        self._rr = 0

    def send_request(
        self, request: Message, *, peer: str | None = None, timeout: float = 5.0
    ) -> Awaitable[Message]:
        loop = self.rt._loop
        assert loop is not None, "send_request needs the worker loop running"
        fut: asyncio.Future[Message] = loop.create_future()
        try:
            raw = request.encode()
        except Exception as exc:
            fut.set_exception(
                SendError(ResultCode.DIAMETER_UNABLE_TO_COMPLY, f"cannot encode the request: {exc}")
            )
            return fut
        if len(raw) > self.rt.max_answer:
            fut.set_exception(
                SendError(
                    ResultCode.DIAMETER_UNABLE_TO_COMPLY,
                    f"request of {len(raw)} bytes is too large",
                )
            )
            return fut
        order = self._link_order(peer)
        if not order:
            fut.set_exception(
                SendError(ResultCode.DIAMETER_UNABLE_TO_DELIVER, "no gateway connected")
            )
            return fut
        self._send(fut, raw, peer or "", timeout, order)
        return fut

    def _link_order(self, peer: str | None) -> list[int]:
        links = self.rt.links
        live = [i for i, link in enumerate(links) if link.acked]
        if not live:
            return []
        preferred = self.rt._peer_link.get(peer) if peer else None
        if preferred is not None and preferred.acked:
            first = links.index(preferred)
        else:
            self._rr = (self._rr + 1) % len(live)
            first = live[self._rr]
        return [first] + [i for i in live if i != first]

    def _send(
        self, fut: asyncio.Future[Message], raw: bytes, peer: str, timeout: float, order: list[int]
    ) -> None:
        rt = self.rt
        loop = rt._loop
        assert loop is not None
        i, rest = order[0], order[1:]
        link = rt.links[i]
        oid = self._next
        self._next += 1
        inner: asyncio.Future[Message] = loop.create_future()
        timer = loop.call_later(timeout + 1.0, self._timeout, link, oid)
        link.out_pending[oid] = (inner, timer)
        rt._queue(i, pp.OutRequest(oid, raw, peer, timeout))
        rt._schedule_flush()

        def relay(f: asyncio.Future[Message]) -> None:
            if fut.done():
                return
            exc = (
                f.exception()
                if not f.cancelled()
                else SendError(ResultCode.DIAMETER_UNABLE_TO_DELIVER, "cancelled")
            )
            if exc is None:
                fut.set_result(f.result())
            elif (
                isinstance(exc, SendError)
                and exc.result_code == ResultCode.DIAMETER_UNABLE_TO_DELIVER
                and rest
            ):
                # That gateway cannot reach the peer (or went away): try the next one.
                live = [j for j in rest if rt.links[j].acked]
                if live:
                    self._send(fut, raw, peer, timeout, live)
                    return
                fut.set_exception(exc)
            else:
                fut.set_exception(exc)

        inner.add_done_callback(relay)

    def answer(self, link: Link, m: pp.OutAnswer) -> None:
        """The gateway's OutAnswer: the peer's answer, or why there is none."""
        entry = link.out_pending.pop(m.id, None)
        if entry is None:
            return
        fut, timer = entry
        if timer is not None:
            timer.cancel()
        if fut.done():
            return
        if m.error:
            fut.set_exception(SendError(m.error, m.reason or "error"))
            return
        try:
            fut.set_result(Message.decode(m.raw))
        except CodecError as exc:
            fut.set_exception(
                SendError(ResultCode.DIAMETER_UNABLE_TO_COMPLY, f"undecodable answer: {exc}")
            )

    def _timeout(self, link: Link, oid: int) -> None:
        entry = link.out_pending.pop(oid, None)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(
                SendError(
                    ResultCode.DIAMETER_UNABLE_TO_DELIVER, "no answer from the gateway in time"
                )
            )

    @staticmethod
    def fail(link: Link, why: str) -> None:
        """Everything `link` holds fails with 3002 (it registers again, or we stop)."""
        pending, link.out_pending = link.out_pending, {}
        for fut, timer in pending.values():
            if timer is not None:
                timer.cancel()
            if not fut.done():
                fut.set_exception(SendError(ResultCode.DIAMETER_UNABLE_TO_DELIVER, why))
