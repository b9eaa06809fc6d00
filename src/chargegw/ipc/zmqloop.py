"""A ZeroMQ socket driven by an asyncio loop without per-message futures.

zmq.asyncio wraps every recv in a Future; at tens of thousands of messages a second that
is most of the cost. Here the socket's notification fd is watched with `add_reader` and
the socket is drained with NOBLOCK until empty, handing the frames over as one batch.

The zmq fd is edge-like: it signals that the socket's event state *may* have changed, and
a send can consume that signal. So after sending, `kick()` checks ZMQ_EVENTS and schedules
a drain when input is waiting, and the owner calls `kick()` from a periodic timer too. A
drain looks again itself after handing over each batch (the owner answers inside
`on_batch`), and drains on in the same loop turn: one wake-up for a batch, its answers and
whatever arrived meanwhile.

With `copy=False` the batch holds zmq.Frame objects instead of bytes, for owners that need
a frame's metadata (the CURVE key a worker connected with).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import zmq

# Frames handled per drain before yielding to the loop (TCP peers must get their turn).
DRAIN_LIMIT = 512
# Plain ints: pyzmq's constants are enum members, and `int & PollEvent` builds a new
# PollEvent through enum machinery on every check (py-spy: about 10 us of a null worker's
# ~90 us of Python per batch went to EnumType.__call__ and Flag.__and__).
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_RCVMORE = int(zmq.RCVMORE)
_NOBLOCK = int(zmq.NOBLOCK)


class LoopSocket:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: zmq.Socket,
        on_batch: Callable[[list[list[bytes]]], None] | Callable[[list[list[zmq.Frame]]], None],
        *,
        limit: int = DRAIN_LIMIT,
        copy: bool = True,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.on_batch = on_batch
        self.limit = limit
        self.copy = copy
        self._fd = sock.fileno()  # ZMQ_FD, typed as int
        self._scheduled = False
        self._closed = False
        loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        if self._closed:
            return
        # While draining, `kick()` from `on_batch` (the owner sending its answers) is a
        # no-op: the check at the top of the next round below stands for it, so a batch's
        # answers and the next drain share one loop turn and one ZMQ_EVENTS read.
        self._scheduled = True
        more = False
        sock = self.sock
        recv = sock.recv
        get = sock.get
        copy = self.copy
        budget = self.limit
        try:
            while True:
                batch: list[list[bytes] | list[zmq.Frame]] = []  # frames when copy=False
                # Ask ZMQ_EVENTS before each read instead of reading until zmq.Again:
                # raising and catching that exception costs more than the read itself.
                # ZMQ_EVENTS is an int option; pyzmq types get() as int | bytes.
                while get(_EVENTS) & _POLLIN:  # type: ignore[operator]  # an int option
                    # recv_multipart's work without its frame and enum conversions
                    try:
                        parts: list[Any] = [recv(_NOBLOCK, copy=copy)]  # bytes or frames
                        while get(_RCVMORE):
                            parts.append(recv(_NOBLOCK, copy=copy))
                    except zmq.Again:  # what was read before still goes to the owner
                        break
                    batch.append(parts)
                    budget -= 1
                    if not budget:
                        break
                if not batch:
                    return
                self.on_batch(batch)  # type: ignore[arg-type]  # bytes or frames, as `copy` says
                if self._closed:
                    return
                if not budget:  # yield to the loop (TCP peers must get their turn)
                    more = True
                    return
        except zmq.ZMQError:
            if self._closed:
                return
            raise
        finally:
            self._scheduled = more
            if more:
                self.loop.call_soon(self._readable)

    def _schedule(self) -> None:
        if not self._scheduled and not self._closed:
            self._scheduled = True
            self.loop.call_soon(self._readable)

    def kick(self) -> None:
        """Drain soon if input is waiting (call after sending on the socket). A no-op
        while a drain is running or scheduled: that drain looks again after its batch."""
        if self._closed or self._scheduled:
            return
        try:
            if self.sock.get(_EVENTS) & _POLLIN:  # type: ignore[operator]  # an int option
                self._schedule()
        except zmq.ZMQError:
            pass

    def close(self, linger: int = 0) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.loop.remove_reader(self._fd)
        except (ValueError, OSError, RuntimeError):
            pass
        self.sock.close(linger=linger)
