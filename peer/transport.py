"""The asyncio side of one transport connection (TCP, TLS, or SCTP through peer/sctp.py).

`Connection` is the asyncio Protocol: it deframes with the codec's `FrameReader` (the one
framing implementation every transport shares), hands whole frames to its owner (the Node),
batches outgoing messages into one write per loop iteration, and applies backpressure:
reading pauses while our write buffer towards this peer is over its high-water mark or while
too many of its requests are being handled, so a slow reader cannot make us buffer without
bound.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

from chargegw.codec.errors import FramingError
from chargegw.codec.header import DEFAULT_MAX_LENGTH, FrameReader
from chargegw.peer.pending import PendingTable

if TYPE_CHECKING:
    from chargegw.peer.watchdog import Watchdog

log = logging.getLogger("chargegw.peer")

PAUSE_WRITE_FULL = 1
PAUSE_INFLIGHT = 2


class ConnectionOwner(Protocol):
    """What a Connection reports to (the Node)."""

    def conn_made(self, conn: Connection) -> None: ...
    def conn_frames(self, conn: Connection, frames: list[bytes]) -> None: ...
    def conn_framing_error(self, conn: Connection, exc: FramingError) -> None: ...
    def conn_lost(self, conn: Connection, exc: Exception | None) -> None: ...


class Connection(asyncio.Protocol):
    __slots__ = (
        "owner",
        "loop",
        "reader",
        "transport",
        "initiator",
        "kind",
        "peer",
        "peer_name",
        "pending",
        "watchdog",
        "remote",
        "local",
        "closed",
        "closing",
        "inflight",
        "max_inflight",
        "high_water",
        "_out",
        "_out_bytes",
        "_flush_pending",
        "_in_receive",
        "_pause",
        "_drain_waiters",
        "cer_deadline",
        "open",
        "caps",
        "tags",
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
        self.reader = FrameReader(max_length)
        self.transport: asyncio.BaseTransport | None = None
        self.initiator = initiator
        self.kind = kind
        self.peer: Any = None  # the Node's peer entry once CER/CEA is done
        self.peer_name: str | None = None
        self.pending = PendingTable()
        self.watchdog: Watchdog | None = None
        self.remote: Any = None
        self.local: Any = None
        self.closed = False
        self.closing = False
        self.open = False  # the peer state machine says I-Open / R-Open on this connection
        self.caps: Any = None  # the peer's capabilities (from its CER or CEA)
        self.inflight = 0
        self.max_inflight = max_inflight
        self.high_water = high_water
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._flush_pending = False
        self._in_receive = False
        self._pause = 0
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.cer_deadline: float | None = None
        self.tags: dict[str, Any] = {}

    def __repr__(self) -> str:
        side = "I" if self.initiator else "R"
        return f"<Connection {side} {self.kind} {self.peer_name or '?'} {self.remote}>"

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.remote = transport.get_extra_info("peername")
        self.local = transport.get_extra_info("sockname")
        set_limits = getattr(transport, "set_write_buffer_limits", None)
        if set_limits is not None:
            set_limits(high=self.high_water, low=self.high_water // 4)
        self.owner.conn_made(self)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except FramingError as exc:  # exc.frames: the good frames before the fault
            self.owner.conn_framing_error(self, exc)
            return
        if frames:
            self._in_receive = True
            try:
                self.owner.conn_frames(self, frames)
            except Exception:  # the owner logs its own faults; never let one kill the loop
                log.exception("%r: frame handling failed", self)
            finally:
                self._in_receive = False
                if self._out:
                    self._flush()

    def eof_received(self) -> bool | None:
        try:
            self.reader.eof()
        except FramingError as exc:
            log.info("%r: %s", self, exc)
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self._out.clear()
        self._out_bytes = 0
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
        if self.closed or self.closing:
            return
        self._out.append(data)
        self._out_bytes += len(data)
        if not self._flush_pending and not self._in_receive:
            self._flush_pending = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        out = self._out
        if not out or self.transport is None or self.closed:
            return
        self._out = []
        self._out_bytes = 0
        try:
            self.transport.writelines(out)  # type: ignore[attr-defined]
        except Exception as exc:  # a dying transport; connection_lost follows
            log.debug("%r: write failed: %s", self, exc)

    @property
    def write_paused(self) -> bool:
        """Over the high-water mark: the transport said so, or this iteration queued that much."""
        return bool(self._pause & PAUSE_WRITE_FULL) or self._out_bytes >= self.high_water

    async def drain(self) -> None:
        """Wait while the transport's write buffer is over the high-water mark."""
        if self._out_bytes >= self.high_water:
            self._flush()  # hand it to the transport now: it pauses us if the peer is slow
        if not self._pause & PAUSE_WRITE_FULL or self.closed:
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
        if self.closed or self.closing:
            return
        if self._out:
            self._flush()
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now (RST): unrecoverable framing."""
        if self.closed:
            return
        self.closing = True
        self._out.clear()
        self._out_bytes = 0
        if self.transport is not None:
            self.transport.abort()  # type: ignore[attr-defined]
