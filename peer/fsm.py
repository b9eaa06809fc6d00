"""The RFC 6733 section 5.6 peer state machine, as a table.

Pure: it consumes events and returns actions for the driver (the Node) to perform; the time
is passed in and it does no I/O. One machine exists per peer identity; it may briefly own two
transport connections, the one we initiated ("I") and the one the peer initiated ("R"), and
the election decides which survives.

The RFC's own state, event and action names are used, so the table below can be read against
the RFC line by line. Two refinements are made explicit as events rather than hidden in
actions: a CEA whose Result-Code is not success (`I_RCV_BAD_CEA`), and the outcome of the
election (`WIN_ELECTION`, raised internally by the `ELECT` action when we win).

Additions to the RFC table, each marked "ext" below: `Stop` in the waiting states cleans up
(the RFC leaves it undefined), and Closing keeps processing messages so that answers to
requests still in flight are delivered while we drain.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    CLOSED = "Closed"
    WAIT_CONN_ACK = "Wait-Conn-Ack"
    WAIT_I_CEA = "Wait-I-CEA"
    WAIT_CONN_ACK_ELECT = "Wait-Conn-Ack/Elect"
    WAIT_RETURNS = "Wait-Returns"
    R_OPEN = "R-Open"
    I_OPEN = "I-Open"
    CLOSING = "Closing"


class Event(StrEnum):
    START = "Start"
    STOP = "Stop"
    TIMEOUT = "Timeout"
    R_CONN_CER = "R-Conn-CER"
    I_RCV_CONN_ACK = "I-Rcv-Conn-Ack"
    I_RCV_CONN_NACK = "I-Rcv-Conn-Nack"
    I_RCV_CEA = "I-Rcv-CEA"
    I_RCV_BAD_CEA = "I-Rcv-Bad-CEA"  # CEA with a non-2xxx Result-Code
    I_RCV_NON_CEA = "I-Rcv-Non-CEA"
    I_PEER_DISC = "I-Peer-Disc"
    R_PEER_DISC = "R-Peer-Disc"
    WIN_ELECTION = "Win-Election"
    SEND_MESSAGE = "Send-Message"
    I_RCV_MESSAGE = "I-Rcv-Message"
    R_RCV_MESSAGE = "R-Rcv-Message"
    I_RCV_DWR = "I-Rcv-DWR"
    R_RCV_DWR = "R-Rcv-DWR"
    I_RCV_DWA = "I-Rcv-DWA"
    R_RCV_DWA = "R-Rcv-DWA"
    I_RCV_DPR = "I-Rcv-DPR"
    R_RCV_DPR = "R-Rcv-DPR"
    I_RCV_DPA = "I-Rcv-DPA"
    R_RCV_DPA = "R-Rcv-DPA"


class Action(StrEnum):
    I_SND_CONN_REQ = "I-Snd-Conn-Req"  # start connecting
    R_ACCEPT = "R-Accept"  # adopt the inbound connection that delivered R-Conn-CER
    PROCESS_CER = "Process-CER"  # remember the peer's capabilities from the CER
    R_SND_CEA = "R-Snd-CEA"  # send the (successful) CEA on R
    I_SND_CER = "I-Snd-CER"
    PROCESS_CEA = "Process-CEA"
    CLEANUP = "Cleanup"  # forget the failed connection attempt
    ERROR = "Error"  # close every transport connection of this peer
    ELECT = "Elect"  # internal: compares Origin-Hosts, may raise Win-Election
    I_DISC = "I-Disc"  # close the I connection
    R_DISC = "R-Disc"  # close the R connection
    R_REJECT = "R-Reject"  # refuse the *new* inbound connection that delivered R-Conn-CER
    SND_MESSAGE = "Snd-Message"
    PROCESS = "Process"
    PROCESS_DWR = "Process-DWR"
    SND_DWA = "Snd-DWA"
    PROCESS_DWA = "Process-DWA"
    SND_DPR = "Snd-DPR"
    SND_DPA = "Snd-DPA"
    DISC = "Disc"  # close whichever connection is open (after DPR/DPA)


S, E, A = State, Event, Action

# (state, event) -> (actions, next state). Anything missing is ignored (no action, same
# state), which is what the RFC implies for events that cannot happen in a state.
TABLE: dict[tuple[State, Event], tuple[tuple[Action, ...], State]] = {
    (S.CLOSED, E.START): ((A.I_SND_CONN_REQ,), S.WAIT_CONN_ACK),
    (S.CLOSED, E.R_CONN_CER): ((A.R_ACCEPT, A.PROCESS_CER, A.R_SND_CEA), S.R_OPEN),
    (S.WAIT_CONN_ACK, E.I_RCV_CONN_ACK): ((A.I_SND_CER,), S.WAIT_I_CEA),
    (S.WAIT_CONN_ACK, E.I_RCV_CONN_NACK): ((A.CLEANUP,), S.CLOSED),
    (S.WAIT_CONN_ACK, E.R_CONN_CER): ((A.R_ACCEPT, A.PROCESS_CER), S.WAIT_CONN_ACK_ELECT),
    (S.WAIT_CONN_ACK, E.TIMEOUT): ((A.ERROR,), S.CLOSED),
    (S.WAIT_CONN_ACK, E.STOP): ((A.CLEANUP,), S.CLOSED),  # ext
    (S.WAIT_I_CEA, E.I_RCV_CEA): ((A.PROCESS_CEA,), S.I_OPEN),
    (S.WAIT_I_CEA, E.I_RCV_BAD_CEA): ((A.ERROR,), S.CLOSED),
    (S.WAIT_I_CEA, E.R_CONN_CER): ((A.R_ACCEPT, A.PROCESS_CER, A.ELECT), S.WAIT_RETURNS),
    (S.WAIT_I_CEA, E.I_PEER_DISC): ((A.I_DISC,), S.CLOSED),
    (S.WAIT_I_CEA, E.I_RCV_NON_CEA): ((A.ERROR,), S.CLOSED),
    (S.WAIT_I_CEA, E.TIMEOUT): ((A.ERROR,), S.CLOSED),
    (S.WAIT_I_CEA, E.STOP): ((A.ERROR,), S.CLOSED),  # ext
    (S.WAIT_CONN_ACK_ELECT, E.I_RCV_CONN_ACK): ((A.I_SND_CER, A.ELECT), S.WAIT_RETURNS),
    (S.WAIT_CONN_ACK_ELECT, E.I_RCV_CONN_NACK): ((A.R_SND_CEA,), S.R_OPEN),
    (S.WAIT_CONN_ACK_ELECT, E.R_PEER_DISC): ((A.R_DISC,), S.WAIT_CONN_ACK),
    (S.WAIT_CONN_ACK_ELECT, E.R_CONN_CER): ((A.R_REJECT,), S.WAIT_CONN_ACK_ELECT),
    (S.WAIT_CONN_ACK_ELECT, E.TIMEOUT): ((A.ERROR,), S.CLOSED),
    (S.WAIT_CONN_ACK_ELECT, E.STOP): ((A.ERROR,), S.CLOSED),  # ext
    (S.WAIT_RETURNS, E.WIN_ELECTION): ((A.I_DISC, A.R_SND_CEA), S.R_OPEN),
    (S.WAIT_RETURNS, E.I_PEER_DISC): ((A.I_DISC, A.R_SND_CEA), S.R_OPEN),
    (S.WAIT_RETURNS, E.I_RCV_CEA): ((A.R_DISC,), S.I_OPEN),
    (S.WAIT_RETURNS, E.I_RCV_BAD_CEA): ((A.I_DISC, A.R_SND_CEA), S.R_OPEN),  # ext: as I-Disc
    (S.WAIT_RETURNS, E.R_PEER_DISC): ((A.R_DISC,), S.WAIT_I_CEA),
    (S.WAIT_RETURNS, E.R_CONN_CER): ((A.R_REJECT,), S.WAIT_RETURNS),
    (S.WAIT_RETURNS, E.TIMEOUT): ((A.ERROR,), S.CLOSED),
    (S.WAIT_RETURNS, E.STOP): ((A.ERROR,), S.CLOSED),  # ext
    (S.R_OPEN, E.SEND_MESSAGE): ((A.SND_MESSAGE,), S.R_OPEN),
    (S.R_OPEN, E.R_RCV_MESSAGE): ((A.PROCESS,), S.R_OPEN),
    (S.R_OPEN, E.R_RCV_DWR): ((A.PROCESS_DWR, A.SND_DWA), S.R_OPEN),
    (S.R_OPEN, E.R_RCV_DWA): ((A.PROCESS_DWA,), S.R_OPEN),
    (S.R_OPEN, E.R_CONN_CER): ((A.R_REJECT,), S.R_OPEN),
    (S.R_OPEN, E.STOP): ((A.SND_DPR,), S.CLOSING),
    (S.R_OPEN, E.R_RCV_DPR): ((A.SND_DPA,), S.CLOSING),
    (S.R_OPEN, E.R_PEER_DISC): ((A.R_DISC,), S.CLOSED),
    (S.I_OPEN, E.SEND_MESSAGE): ((A.SND_MESSAGE,), S.I_OPEN),
    (S.I_OPEN, E.I_RCV_MESSAGE): ((A.PROCESS,), S.I_OPEN),
    (S.I_OPEN, E.I_RCV_DWR): ((A.PROCESS_DWR, A.SND_DWA), S.I_OPEN),
    (S.I_OPEN, E.I_RCV_DWA): ((A.PROCESS_DWA,), S.I_OPEN),
    (S.I_OPEN, E.R_CONN_CER): ((A.R_REJECT,), S.I_OPEN),
    (S.I_OPEN, E.STOP): ((A.SND_DPR,), S.CLOSING),
    (S.I_OPEN, E.I_RCV_DPR): ((A.SND_DPA,), S.CLOSING),
    (S.I_OPEN, E.I_PEER_DISC): ((A.I_DISC,), S.CLOSED),
    (S.CLOSING, E.I_RCV_DPA): ((A.I_DISC,), S.CLOSED),
    (S.CLOSING, E.R_RCV_DPA): ((A.R_DISC,), S.CLOSED),
    (S.CLOSING, E.TIMEOUT): ((A.ERROR,), S.CLOSED),
    (S.CLOSING, E.I_PEER_DISC): ((A.I_DISC,), S.CLOSED),
    (S.CLOSING, E.R_PEER_DISC): ((A.R_DISC,), S.CLOSED),
    (S.CLOSING, E.R_CONN_CER): ((A.R_REJECT,), S.CLOSING),
    (S.CLOSING, E.I_RCV_MESSAGE): ((A.PROCESS,), S.CLOSING),  # ext: drain
    (S.CLOSING, E.R_RCV_MESSAGE): ((A.PROCESS,), S.CLOSING),  # ext: drain
    (S.CLOSING, E.I_RCV_DWR): ((A.PROCESS_DWR, A.SND_DWA), S.CLOSING),  # ext
    (S.CLOSING, E.R_RCV_DWR): ((A.PROCESS_DWR, A.SND_DWA), S.CLOSING),  # ext
}

# States in which a timer runs, and the config attribute naming its length.
TIMED_STATES = {
    S.WAIT_CONN_ACK: "cea_timeout",
    S.WAIT_I_CEA: "cea_timeout",
    S.WAIT_CONN_ACK_ELECT: "cea_timeout",
    S.WAIT_RETURNS: "cea_timeout",
    S.CLOSING: "dpa_timeout",
}

OPEN_STATES = frozenset({S.I_OPEN, S.R_OPEN})


def wins_election(own_host: str, peer_host: str) -> bool:
    """RFC 6733 5.6.4: the higher Origin-Host (octets, case-folded ASCII) keeps its R side."""
    return own_host.lower().encode() > peer_host.lower().encode()


class PeerStateMachine:
    """One peer's state. `handle` returns the actions to perform, in order."""

    __slots__ = ("own_host", "peer_host", "state", "deadline", "timeouts", "history")

    def __init__(
        self,
        own_host: str,
        peer_host: str | None = None,
        *,
        cea_timeout: float = 10.0,
        dpa_timeout: float = 5.0,
        keep_history: int = 0,
    ) -> None:
        self.own_host = own_host
        self.peer_host = peer_host
        self.state = State.CLOSED
        self.deadline: float | None = None
        self.timeouts = {"cea_timeout": cea_timeout, "dpa_timeout": dpa_timeout}
        # (state, event, actions, next) tuples, newest last; for debugging and tests.
        self.history: list[tuple[State, Event, tuple[Action, ...], State]] | None = (
            [] if keep_history else None
        )

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def handle(self, event: Event, now: float, *, peer_host: str | None = None) -> list[Action]:
        """Apply one event. `peer_host` comes with R-Conn-CER (the CER's Origin-Host)."""
        if peer_host is not None and event is Event.R_CONN_CER and self.peer_host is None:
            self.peer_host = peer_host
        out: list[Action] = []
        self._apply(event, now, out, peer_host)
        return out

    def _apply(self, event: Event, now: float, out: list[Action], peer_host: str | None) -> None:
        entry = TABLE.get((self.state, event))
        if entry is None:
            return
        actions, nxt = entry
        prev = self.state
        self.state = nxt
        if nxt is not prev:
            attr = TIMED_STATES.get(nxt)
            self.deadline = now + self.timeouts[attr] if attr else None
        if self.history is not None:
            self.history.append((prev, event, actions, nxt))
        for action in actions:
            if action is Action.ELECT:
                out.append(action)
                other = peer_host or self.peer_host
                if other is not None and wins_election(self.own_host, other):
                    self._apply(Event.WIN_ELECTION, now, out, peer_host)
            else:
                out.append(action)

    def tick(self, now: float) -> list[Action]:
        """Raise Timeout when the state's timer has run out."""
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            return self.handle(Event.TIMEOUT, now)
        return []
