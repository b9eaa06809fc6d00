"""RFC 3539 watchdog: OKAY, SUSPECT, DOWN, REOPEN with fake time and no jitter."""

from __future__ import annotations

import random

from chargegw.peer.watchdog import MIN_TW, Watchdog, WdAction, WdState


def no_jitter(lo: float, hi: float) -> float:
    return 0.0


def wd(tw: float = 30.0) -> Watchdog:
    return Watchdog(tw, rand=no_jitter)


def test_tw_never_below_six_seconds_even_with_jitter() -> None:
    w = Watchdog(1.0, rand=random.Random(7).uniform)
    assert w.tw == MIN_TW
    assert min(w.interval() for _ in range(1000)) >= MIN_TW
    w30 = Watchdog(30.0, rand=random.Random(7).uniform)
    samples = [w30.interval() for _ in range(2000)]
    assert 28.0 <= min(samples) < 28.5 and 31.5 < max(samples) <= 32.0


def test_silent_peer_dwr_then_failover_then_close() -> None:
    w = wd()
    assert w.connection_up(0.0) == []
    assert w.state is WdState.OKAY and w.usable
    assert w.timer(29.9) == []
    assert w.timer(30.0) == [WdAction.SEND_DWR]
    assert w.pending and w.deadline == 60.0
    assert w.timer(60.0) == [WdAction.FAILOVER]
    assert w.state is WdState.SUSPECT and not w.usable
    assert w.timer(90.0) == [WdAction.CLOSE]
    assert w.state is WdState.DOWN


def test_traffic_rearms_lazily_so_no_dwr_while_busy() -> None:
    w = wd()
    w.connection_up(0.0)
    w.last_rx = 25.0  # what the Node does per received chunk
    assert w.timer(30.0) == []
    assert w.deadline == 55.0
    assert w.timer(55.0) == [WdAction.SEND_DWR]


def test_dwa_clears_pending() -> None:
    w = wd()
    w.connection_up(0.0)
    assert w.timer(30.0) == [WdAction.SEND_DWR]
    assert w.dwa_received(30.1) == []
    assert not w.pending
    assert w.timer(60.1) == [WdAction.SEND_DWR]  # a new DWR, not failover


def test_suspect_fails_back_on_any_message() -> None:
    w = wd()
    w.connection_up(0.0)
    w.timer(30.0)
    w.timer(60.0)
    assert w.state is WdState.SUSPECT
    assert w.message_received(61.0) == [WdAction.FAILBACK]
    assert w.state is WdState.OKAY and w.usable


def test_reopen_needs_three_dwas() -> None:
    w = wd()
    w.connection_up(0.0)
    assert w.connection_down(5.0) == [WdAction.FAILOVER]
    assert w.state is WdState.DOWN
    assert w.connection_up(10.0) == [WdAction.SEND_DWR]
    assert w.state is WdState.REOPEN and not w.usable and w.discards_traffic
    assert w.dwa_received(10.1) == []  # 1
    assert w.timer(40.0) == [WdAction.SEND_DWR]
    assert w.dwa_received(40.1) == []  # 2
    assert w.timer(70.0) == [WdAction.SEND_DWR]
    assert w.state is WdState.REOPEN
    assert w.dwa_received(70.1) == [WdAction.FAILBACK]  # 3rd good DWA
    assert w.state is WdState.OKAY and w.usable


def test_reopen_missing_dwa_twice_closes() -> None:
    w = wd()
    w.connection_up(0.0)
    w.connection_down(1.0)
    w.connection_up(2.0)  # DWR outstanding
    assert w.timer(32.0) == []  # outstanding, NumDWA 0 -> -1
    assert w.num_dwa == -1
    assert w.timer(62.0) == [WdAction.CLOSE]
    assert w.state is WdState.DOWN


def test_reset_after_orderly_close_is_not_reopen() -> None:
    w = wd()
    w.connection_up(0.0)
    w.reset()
    assert w.connection_up(1.0) == []
    assert w.state is WdState.OKAY


def test_down_from_suspect_does_not_fail_over_twice() -> None:
    w = wd()
    w.connection_up(0.0)
    w.timer(30.0)
    assert w.timer(60.0) == [WdAction.FAILOVER]
    assert w.connection_down(61.0) == []
