"""The RFC 6733 5.6 state table, driven event by event."""

from __future__ import annotations

import pytest

from chargegw.peer.fsm import TABLE, Action, Event, PeerStateMachine, State, wins_election

A, E, S = Action, Event, State


def machine(own: str = "b.example", peer: str | None = "a.example") -> PeerStateMachine:
    return PeerStateMachine(own, peer, cea_timeout=10.0, dpa_timeout=5.0)


def test_initiator_happy_path_and_graceful_close() -> None:
    m = machine()
    assert m.handle(E.START, 0.0) == [A.I_SND_CONN_REQ]
    assert m.state is S.WAIT_CONN_ACK and m.deadline == 10.0
    assert m.handle(E.I_RCV_CONN_ACK, 1.0) == [A.I_SND_CER]
    assert m.state is S.WAIT_I_CEA and m.deadline == 11.0
    assert m.handle(E.I_RCV_CEA, 2.0) == [A.PROCESS_CEA]
    assert m.state is S.I_OPEN and m.is_open and m.deadline is None
    assert m.handle(E.I_RCV_DWR, 3.0) == [A.PROCESS_DWR, A.SND_DWA]
    assert m.handle(E.STOP, 4.0) == [A.SND_DPR]
    assert m.state is S.CLOSING and m.deadline == 9.0
    assert m.handle(E.I_RCV_DPA, 5.0) == [A.I_DISC]
    assert m.state is S.CLOSED


def test_responder_path_and_dpr_from_peer() -> None:
    m = machine()
    assert m.handle(E.R_CONN_CER, 0.0) == [A.R_ACCEPT, A.PROCESS_CER, A.R_SND_CEA]
    assert m.state is S.R_OPEN
    assert m.handle(E.R_RCV_DPR, 1.0) == [A.SND_DPA]
    assert m.state is S.CLOSING
    assert m.handle(E.R_PEER_DISC, 1.5) == [A.R_DISC]
    assert m.state is S.CLOSED


@pytest.mark.parametrize(
    "state_event",
    [(S.WAIT_CONN_ACK, None), (S.WAIT_I_CEA, E.I_RCV_CONN_ACK), (S.CLOSING, None)],
)
def test_timeouts_close(state_event: tuple[State, Event | None]) -> None:
    target, _ = state_event
    m = machine()
    m.handle(E.START, 0.0)
    if target is S.WAIT_I_CEA:
        m.handle(E.I_RCV_CONN_ACK, 0.0)
    if target is S.CLOSING:
        m.handle(E.I_RCV_CONN_ACK, 0.0)
        m.handle(E.I_RCV_CEA, 0.0)
        m.handle(E.STOP, 0.0)
    assert m.state is target
    assert m.tick(m.deadline - 0.001) == []  # type: ignore[operator]
    assert m.tick(100.0) == [A.ERROR]
    assert m.state is S.CLOSED and m.deadline is None


def test_non_cea_while_waiting_is_an_error() -> None:
    m = machine()
    m.handle(E.START, 0.0)
    m.handle(E.I_RCV_CONN_ACK, 0.0)
    assert m.handle(E.I_RCV_NON_CEA, 0.1) == [A.ERROR]
    assert m.state is S.CLOSED


def test_bad_cea_closes() -> None:
    m = machine()
    m.handle(E.START, 0.0)
    m.handle(E.I_RCV_CONN_ACK, 0.0)
    assert m.handle(E.I_RCV_BAD_CEA, 0.1) == [A.ERROR]
    assert m.state is S.CLOSED


def test_election_won_in_wait_i_cea_keeps_responder_side() -> None:
    # own "b.example" > peer "a.example": we win, drop our I connection, answer on R.
    m = machine("b.example", "a.example")
    m.handle(E.START, 0.0)
    m.handle(E.I_RCV_CONN_ACK, 0.0)
    acts = m.handle(E.R_CONN_CER, 0.5, peer_host="a.example")
    assert acts == [A.R_ACCEPT, A.PROCESS_CER, A.ELECT, A.I_DISC, A.R_SND_CEA]
    assert m.state is S.R_OPEN


def test_election_lost_waits_for_cea_on_initiator_side() -> None:
    m = machine("a.example", "b.example")
    m.handle(E.START, 0.0)
    m.handle(E.I_RCV_CONN_ACK, 0.0)
    acts = m.handle(E.R_CONN_CER, 0.5, peer_host="b.example")
    assert acts == [A.R_ACCEPT, A.PROCESS_CER, A.ELECT]
    assert m.state is S.WAIT_RETURNS
    # The winner drops its own initiated connection (our R) and answers CEA on our I.
    assert m.handle(E.R_PEER_DISC, 0.6) == [A.R_DISC]
    assert m.state is S.WAIT_I_CEA
    assert m.handle(E.I_RCV_CEA, 0.7) == [A.PROCESS_CEA]
    assert m.state is S.I_OPEN


def test_election_from_wait_conn_ack_elect() -> None:
    m = machine("z.example", "a.example")
    m.handle(E.START, 0.0)
    assert m.handle(E.R_CONN_CER, 0.1, peer_host="a.example") == [A.R_ACCEPT, A.PROCESS_CER]
    assert m.state is S.WAIT_CONN_ACK_ELECT
    assert m.handle(E.R_CONN_CER, 0.15) == [A.R_REJECT]  # a third connection
    acts = m.handle(E.I_RCV_CONN_ACK, 0.2)
    assert acts == [A.I_SND_CER, A.ELECT, A.I_DISC, A.R_SND_CEA]
    assert m.state is S.R_OPEN


def test_wait_conn_ack_elect_connect_failure_answers_on_r() -> None:
    m = machine("a.example", "z.example")
    m.handle(E.START, 0.0)
    m.handle(E.R_CONN_CER, 0.1, peer_host="z.example")
    assert m.handle(E.I_RCV_CONN_NACK, 0.2) == [A.R_SND_CEA]
    assert m.state is S.R_OPEN


def test_wait_returns_i_disconnect_and_cea() -> None:
    m = machine("a.example", "z.example")
    m.handle(E.START, 0.0)
    m.handle(E.I_RCV_CONN_ACK, 0.0)
    m.handle(E.R_CONN_CER, 0.1, peer_host="z.example")
    assert m.state is S.WAIT_RETURNS
    assert m.handle(E.I_PEER_DISC, 0.2) == [A.I_DISC, A.R_SND_CEA]
    assert m.state is S.R_OPEN


def test_open_states_reject_new_connections() -> None:
    m = machine()
    m.handle(E.R_CONN_CER, 0.0)
    assert m.handle(E.R_CONN_CER, 0.1) == [A.R_REJECT]
    assert m.state is S.R_OPEN


def test_election_compares_case_folded_octets() -> None:
    assert wins_election("B.example", "a.example")
    assert not wins_election("a.example", "B.EXAMPLE")
    assert not wins_election("same", "SAME")


def test_table_uses_only_rfc_state_names() -> None:
    names = {s.value for s in State}
    assert names == {
        "Closed",
        "Wait-Conn-Ack",
        "Wait-I-CEA",
        "Wait-Conn-Ack/Elect",
        "Wait-Returns",
        "R-Open",
        "I-Open",
        "Closing",
    }
    # Every state is reachable from Closed through the table.
    seen = {S.CLOSED}
    frontier = [S.CLOSED]
    while frontier:
        cur = frontier.pop()
        for (state, _), (_, nxt) in TABLE.items():
            if state is cur and nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(State)


def test_unknown_event_is_ignored() -> None:
    m = machine()
    assert m.handle(E.I_RCV_DPA, 0.0) == []
    assert m.state is S.CLOSED
