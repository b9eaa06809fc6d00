"""RFC 3539 section 3.4 transport failure detection (DWR/DWA), as a pure unit.

The Node owns one Watchdog per peer (it outlives connections: a peer that comes back after a
failure goes through REOPEN). Time is passed in; the unit returns actions and exposes
`deadline` for the driver's single timer.

"Any message received re-arms the timer" is implemented lazily so the receive hot path only
stores a timestamp (`last_rx`): when the timer fires, a message seen since the timer was
armed counts as that re-arm, exactly as if the timer had been restarted on receipt.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from enum import StrEnum

MIN_TW = 6.0  # RFC 3539: Tw MUST NOT be set lower than 6 seconds
JITTER = 2.0  # RFC 3539: each arm is Tw +- up to 2 s


class WdState(StrEnum):
    INITIAL = "INITIAL"
    OKAY = "OKAY"
    SUSPECT = "SUSPECT"
    DOWN = "DOWN"
    REOPEN = "REOPEN"


class WdAction(StrEnum):
    SEND_DWR = "send-dwr"
    FAILOVER = "failover"  # stop routing to the peer, move its pending requests elsewhere
    FAILBACK = "failback"  # the peer may take requests again
    CLOSE = "close"  # close the transport connection


class Watchdog:
    __slots__ = (
        "tw",
        "state",
        "pending",
        "num_dwa",
        "deadline",
        "armed_at",
        "last_rx",
        "_rand",
    )

    def __init__(self, tw: float = 30.0, rand: Callable[[float, float], float] | None = None):
        self.tw = max(MIN_TW, float(tw))
        self.state = WdState.INITIAL
        self.pending = False  # a DWR is outstanding
        self.num_dwa = 0
        self.deadline: float | None = None
        self.armed_at = 0.0
        self.last_rx = float("-inf")
        self._rand = rand or random.uniform

    @property
    def usable(self) -> bool:
        """Whether requests may be routed to the peer (OKAY only: not SUSPECT, not REOPEN)."""
        return self.state is WdState.OKAY

    @property
    def discards_traffic(self) -> bool:
        """RFC 3539: in REOPEN, non-DWA messages are thrown away."""
        return self.state is WdState.REOPEN

    def interval(self) -> float:
        return max(MIN_TW, self.tw + self._rand(-JITTER, JITTER))

    def _arm(self, now: float) -> None:
        self.armed_at = now
        self.deadline = now + self.interval()

    # -- events ------------------------------------------------------------------------------

    def connection_up(self, now: float) -> list[WdAction]:
        """The peer reached I-Open/R-Open."""
        self.pending = False
        self.last_rx = now
        if self.state is WdState.DOWN:
            self.num_dwa = 0
            self.state = WdState.REOPEN
            self.pending = True
            self._arm(now)
            return [WdAction.SEND_DWR]
        self.state = WdState.OKAY
        self._arm(now)
        return []

    def connection_down(self, now: float) -> list[WdAction]:
        """The transport went away (not by a DPR/DPA exchange: see `reset`)."""
        if self.state in (WdState.INITIAL, WdState.DOWN):
            return []
        was_okay = self.state is WdState.OKAY
        self.state = WdState.DOWN
        self.pending = False
        self.deadline = None  # reconnection is the Node's business (backoff)
        return [WdAction.FAILOVER] if was_okay else []

    def reset(self) -> None:
        """Back to INITIAL: after an orderly DPR/DPA close, a new connection is not a REOPEN."""
        self.state = WdState.INITIAL
        self.pending = False
        self.num_dwa = 0
        self.deadline = None

    def message_received(self, now: float) -> list[WdAction]:
        """A non-DWA message arrived. The Node only has to call this outside OKAY."""
        self.last_rx = now
        if self.state is WdState.SUSPECT:
            self.state = WdState.OKAY
            self._arm(now)
            return [WdAction.FAILBACK]
        return []

    def dwa_received(self, now: float) -> list[WdAction]:
        self.last_rx = now
        self.pending = False
        if self.state is WdState.OKAY:
            self._arm(now)
            return []
        if self.state is WdState.SUSPECT:
            self.state = WdState.OKAY
            self._arm(now)
            return [WdAction.FAILBACK]
        if self.state is WdState.REOPEN:
            if self.num_dwa == 2:
                self.num_dwa = 3
                self.state = WdState.OKAY
                self._arm(now)
                return [WdAction.FAILBACK]
            self.num_dwa += 1
        return []

    def timer(self, now: float) -> list[WdAction]:
        """Call when now >= deadline."""
        if self.deadline is None or now < self.deadline:
            return []
        state = self.state
        if state is WdState.OKAY:
            if self.last_rx > self.armed_at:
                # Traffic since the arm: that re-armed the timer at last_rx.
                self.armed_at = self.last_rx
                self.deadline = self.last_rx + self.interval()
                if now < self.deadline:
                    return []
                self._arm(now)
            else:
                self._arm(now)
            if not self.pending:
                self.pending = True
                return [WdAction.SEND_DWR]
            self.state = WdState.SUSPECT
            return [WdAction.FAILOVER]
        if state is WdState.SUSPECT:
            self.state = WdState.DOWN
            self.deadline = None
            self.pending = False
            return [WdAction.CLOSE]
        if state is WdState.REOPEN:
            self._arm(now)
            if not self.pending:
                self.pending = True
                return [WdAction.SEND_DWR]
            if self.num_dwa < 0:
                self.state = WdState.DOWN
                self.deadline = None
                self.pending = False
                return [WdAction.CLOSE]
            self.num_dwa = -1
            return []
        self.deadline = None
        return []
