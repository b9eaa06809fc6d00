"""The asyncio side of one transport connection (TCP, TLS, or SCTP through peer/sctp.py).

`Connection` is the asyncio Protocol, and the adapter between a socket and the sans-IO
`Link` (peer/link.py): received octets go to the owner (the Node, which hands them to the
peer machine, whose `Link` deframes them); what the machine queues on the link goes out in one
write per loop iteration; a close the machine asks for is carried out. It also applies
backpressure: reading pauses while our write buffer towards this peer is over its high-water
mark or while too many of its requests are being handled, so a slow reader cannot make us
buffer without bound.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from chargegw.codec.header import DEFAULT_MAX_LENGTH
from chargegw.peer.link import Link, source_ip
from chargegw.peer.pending import PendingTable

log = logging.getLogger("chargegw.peer")

PAUSE_WRITE_FULL = 1
PAUSE_INFLIGHT = 2
PAUSE_TURN = 4  # this connection had a big read: let the loop serve others for one turn
TURN_BYTES = 64 * 1024  # a read this big (hundreds of requests) yields the next loop turn


class ConnectionOwner(Protocol):
    """What a Connection reports to (the Node)."""

    def conn_made(self, conn: Connection) -> None: ...
    def conn_data(self, conn: Connection, data: bytes) -> None: ...
    def conn_lost(self, conn: Connection, exc: Exception | None) -> None: ...


class Connection(asyncio.Protocol):
    __slots__ = (
        "owner",
        "loop",
        "link",
        "transport",
        "inflight",
        "max_inflight",
        "high_water",
        "refuse",
        "_done_mode",
        "_flush_pending",
        "_in_receive",
        "_pause",
        "_drain_waiters",
    )

    def __init__(
        self,
        owner: ConnectionOwner,
        loop: asyncio.AbstractEventLoop,
        *,
        initiator: bool,
        kind: str = "tcp",
        max_length: int = DEFAULT_MAX_LENGTH,
        high_water: int = 4 << 20,
        max_inflight: int = 10_000,
    ) -> None:
        self.owner = owner
        self.loop = loop
        self.link = Link(initiator=initiator, kind=kind, max_length=max_length)
        self.link.wake = self._wake
        self.link.owner = self
        self.transport: asyncio.BaseTransport | None = None
        self.inflight = 0
        self.max_inflight = max_inflight
        self.high_water = high_water
        self.refuse: str | None = None  # why to close at once, decided at accept
        self._done_mode: str | None = None  # the close already carried out
        self._flush_pending = False
        self._in_receive = False
        self._pause = 0
        self._drain_waiters: list[asyncio.Future[None]] = []

    def __repr__(self) -> str:
        return f"<Connection {self.link!r}>"

    # -- what the Link knows, for users and tests ------------------------------------------------

    @property
    def initiator(self) -> bool:
        return self.link.initiator

    @property
    def kind(self) -> str:
        return self.link.kind

    @property
    def remote(self) -> Any:
        return self.link.remote

    @property
    def local(self) -> Any:
        return self.link.local

    @property
    def pending(self) -> PendingTable:
        return self.link.pending

    @property
    def closed(self) -> bool:
        return self.link.closed

    @property
    def closing(self) -> bool:
        return self.link.closing

    @property
    def open(self) -> bool:
        return self.link.open

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        link = self.link
        link.remote = transport.get_extra_info("peername")
        link.local = transport.get_extra_info("sockname")
        link.src = source_ip(link.remote)
        set_limits = getattr(transport, "set_write_buffer_limits", None)
        if set_limits is not None:
            set_limits(high=self.high_water, low=self.high_water // 4)
        self.owner.conn_made(self)
        if link.close_mode is not None and link.close_mode != self._done_mode:
            self._carry_out_close(link.close_mode)

    def data_received(self, data: bytes) -> None:
        self._in_receive = True
        try:
            self.owner.conn_data(self, data)
        except Exception:  # the owner logs its own faults; never let one kill the loop
            log.exception("%r: data handling failed", self)
        finally:
            self._in_receive = False
            if self.link.out:
                self._flush()
        if len(data) >= TURN_BYTES and not self._pause & PAUSE_TURN:
            # A peer flooding faster than we answer fills every read: skip one loop turn so
            # the other peers, the workers' answers and the timers are served between its
            # reads, instead of waiting behind its backlog (fairness under overload).
            self._set_pause(PAUSE_TURN, True)
            self.loop.call_soon(self._set_pause, PAUSE_TURN, False)

    def eof_received(self) -> bool | None:
        return None  # close the transport (a partial message at EOF is simply dropped)

    def connection_lost(self, exc: Exception | None) -> None:
        link = self.link
        if link.closed:
            return
        link.closed = True
        link.out.clear()
        link.out_bytes = 0
        self._wake_drain(ConnectionError("connection lost"))
        self.owner.conn_lost(self, exc)

    def pause_writing(self) -> None:
        self._set_pause(PAUSE_WRITE_FULL, True)

    def resume_writing(self) -> None:
        self._set_pause(PAUSE_WRITE_FULL, False)
        self._wake_drain(None)

    # -- writing -------------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue one encoded message; everything queued in a loop iteration is one write."""
        self.link.send(data)

    def _wake(self) -> None:
        """The link's doorbell: bytes queued (flush later) or a close asked for (now)."""
        mode = self.link.close_mode
        if mode is not None and mode != self._done_mode:
            self._carry_out_close(mode)
        elif not self._flush_pending and not self._in_receive:
            self._flush_pending = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        link = self.link
        if not link.out or self.transport is None or link.closed:
            return
        out = link.data_to_send()
        try:
            self.transport.writelines(out)  # type: ignore[attr-defined]
        except Exception as exc:  # a dying transport; connection_lost follows
            log.debug("%r: write failed: %s", self, exc)

    @property
    def write_paused(self) -> bool:
        """Over the high-water mark: the transport said so, or this iteration queued that much."""
        return bool(self._pause & PAUSE_WRITE_FULL) or self.link.out_bytes >= self.high_water

    async def drain(self) -> None:
        """Wait while the transport's write buffer is over the high-water mark."""
        if self.link.out_bytes >= self.high_water:
            self._flush()  # hand it to the transport now: it pauses us if the peer is slow
        if not self._pause & PAUSE_WRITE_FULL or self.link.closed:
            return
        fut: asyncio.Future[None] = self.loop.create_future()
        self._drain_waiters.append(fut)
        await fut

    def _wake_drain(self, exc: Exception | None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for fut in waiters:
            if not fut.done():
                if exc is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(exc)

    # -- reading backpressure ------------------------------------------------------------------

    def _set_pause(self, reason: int, on: bool) -> None:
        before = self._pause
        self._pause = before | reason if on else before & ~reason
        transport = self.transport
        if transport is None or self.closed:
            return
        try:
            if before and not self._pause:
                transport.resume_reading()  # type: ignore[attr-defined]
            elif not before and self._pause:
                transport.pause_reading()  # type: ignore[attr-defined]
        except (RuntimeError, AttributeError):
            pass

    @property
    def reading_paused(self) -> bool:
        return bool(self._pause)

    def handler_started(self) -> None:
        self.inflight += 1
        if self.inflight >= self.max_inflight and not self._pause & PAUSE_INFLIGHT:
            self._set_pause(PAUSE_INFLIGHT, True)

    def handler_done(self) -> None:
        self.inflight -= 1
        if self._pause & PAUSE_INFLIGHT and self.inflight <= self.max_inflight // 2:
            self._set_pause(PAUSE_INFLIGHT, False)

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        """Flush what is queued, then close (FIN)."""
        self.link.close()

    def abort(self) -> None:
        """Drop the connection now (RST): unrecoverable framing."""
        self.link.abort()

    def _carry_out_close(self, mode: str) -> None:
        transport = self.transport
        if transport is None or self.link.closed:
            return  # not connected yet (a TLS handshake): carried out at connection_made
        self._done_mode = mode
        if mode == "close":
            self._flush()
            transport.close()
        else:
            transport.abort()  # type: ignore[attr-defined]
