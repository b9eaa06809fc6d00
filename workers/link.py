"""One worker <-> gateway link: its DEALER socket, credit counts and outbox.

Answers and control messages for a gateway are queued in the link's outbox and leave as
one frame per batch (split to stay under the gateway's inbound limit). Nothing that
carries a slot back is ever dropped: when the socket says zmq.Again the outbox is kept,
in order, and the runtime's tick sends it again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import zmq

from chargegw.codec import Message
from chargegw.ipc import protocol as pp
from chargegw.ipc.zmqloop import LoopSocket

log = logging.getLogger("chargegw.worker")
_NOBLOCK = int(zmq.NOBLOCK)  # a plain int: no enum conversion per send


@dataclass(slots=True)
class Link:
    endpoint: str
    sock: zmq.Socket
    ls: LoopSocket | None = None
    gen: int = 0
    acked: bool = False  # the gateway has answered our current Ready
    last_heard: float = 0.0
    last_ready: float = 0.0
    busy: int = 0  # requests from this link being handled (all gens)
    drain_acked: bool = False  # stopping: the gateway has seen our draining Goodbye
    unacked_since: float = 0.0  # when the current registration attempt began
    outbox: list[pp.PoolMessage] = field(default_factory=list)
    out_pending: dict[int, tuple[asyncio.Future[Message], asyncio.TimerHandle | None]] = field(
        default_factory=dict
    )
    requests: int = 0
    # This registration's slot count, reported in heartbeats: granted (Ready.credit plus
    # Credits since), received and done (answered or Expired) requests.
    ready_gen: int = -1  # the gen `ready_credit` was computed for
    ready_credit: int = 0
    granted: int = 0
    received: int = 0
    done: int = 0
    offset: float = 0.0  # gateway clock minus ours, from its heartbeats
    stuck: bool = False  # the socket said zmq.Again: the outbox waits for the next tick
    stale: int = 0  # requests of a previous registration dropped unapplied
    expired: int = 0  # requests dropped unapplied because their deadline passed
    shards: frozenset[int] = frozenset()  # the shards this link's gateway assigned to us

    @property
    def free(self) -> int:
        """Slots the gateway may still use, as this side counts them."""
        return self.granted - (self.received - self.done)

    def send(self, max_frame: int) -> None:
        """Send the outbox now (frames of at most `max_frame` bytes)."""
        msgs, self.outbox = self.outbox, []
        if not msgs:
            self.stuck = False
            return
        sent = 0
        try:
            for frame, n in frames(msgs, max_frame):
                self.sock.send(frame, _NOBLOCK)
                sent += n
            self.stuck = False
        except zmq.Again:
            # The pipe is full: keep what is left, in order, and try again on the next
            # tick. Answers and Credits carry slots; dropping them would shrink the window.
            self.outbox[:0] = msgs[sent:]
            if not self.stuck:
                log.warning("gateway %s not reading: holding %d messages", self.endpoint,
                            len(msgs) - sent)  # fmt: skip
            self.stuck = True
        except zmq.ZMQError as exc:
            log.warning("send to %s failed: %s", self.endpoint, exc)
        if self.ls is not None:
            self.ls.kick()


def frames(msgs: list[pp.PoolMessage], limit: int) -> tuple[tuple[bytes, int], ...]:
    """`msgs` as frames of at most `limit` bytes (the gateway's inbound limit), each with
    how many messages it holds. Every message fits alone (answers are capped)."""
    frame = pp.encode(msgs)
    n = len(msgs)
    if len(frame) <= limit or n == 1:
        return ((frame, n),)
    half = n // 2
    return frames(msgs[:half], limit) + frames(msgs[half:], limit)
