"""A 3004 the gateway sheds itself (every worker full) carries the DOIC overload report
(RFC 7683: OC-Supported-Features, and OC-OLR while a reduction is in force) when the request
came from a reacting node, as a worker's answer does; it is not kept for duplicates; and the
shed path's benchmark runs and reports its figures."""

from __future__ import annotations

from typing import Any

from chargegw.codec import Message
from chargegw.gateway import shedbench
from chargegw.gateway.overload import OLR_DEFAULT_ALGO


def shed(oc: bool, *, report: bool = True) -> tuple[Message, Any, Any]:
    pair, gw = shedbench._front(oc=report)
    m = pair.lb.machine
    frame = shedbench._frame(oc)
    m_events = m.receive_data(pair.lb, frame, pair.now)
    pair.b.handle(m, m_events, pair.now)
    out = b"".join(pair.lb.data_to_send())
    return Message.decode(out), gw, pair


def test_shed_3004_to_a_reacting_node_carries_the_overload_report() -> None:
    ans, gw, _ = shed(oc=True)
    assert ans.get("Result-Code") == 3004 and ans.is_error
    assert gw.overload.reduction > 0
    feats = ans.get("OC-Supported-Features")
    assert feats is not None and feats.get("OC-Feature-Vector") == OLR_DEFAULT_ALGO
    olr = ans.get("OC-OLR")
    assert olr is not None
    assert olr.get("OC-Reduction-Percentage") == gw.overload.reduction
    assert olr.get("OC-Sequence-Number") == gw.overload.sequence
    assert ans.raw_value("Session-Id") == b"client;1;1"  # the answer is still well formed
    Message.decode(ans.encode()).validate()


def test_shed_3004_without_a_report_in_force_still_names_the_algorithm() -> None:
    ans, gw, _ = shed(oc=True, report=False)
    assert gw.overload.reduction == 0
    assert ans.get("Result-Code") == 3004
    assert ans.get("OC-Supported-Features") is not None and ans.get("OC-OLR") is None


def test_shed_3004_to_a_peer_without_doic_has_no_report() -> None:
    ans, _gw, _ = shed(oc=False)
    assert ans.get("Result-Code") == 3004
    assert ans.get("OC-Supported-Features") is None and ans.get("OC-OLR") is None


def test_shed_3004_is_not_kept_for_duplicates() -> None:
    _ans, gw, pair = shed(oc=True)
    gw.core.workers[b"w"].available = 1  # capacity came back: the resend is placed
    sent: list[Any] = []
    gw.pool._queue = lambda ident, msg: sent.append(msg)  # no event loop here
    m = pair.lb.machine
    frame = bytearray(shedbench._frame(True))
    frame[4] |= 0x10  # T: the client's retransmission, same end-to-end id
    pair.b.handle(m, m.receive_data(pair.lb, bytes(frame), pair.now), pair.now)
    assert not pair.lb.data_to_send()  # no replayed 3004: it went to the worker
    assert len(gw.core.pending) == 1 and len(sent) == 1


def test_shed_benchmark_reports_figures_beside_its_anchors() -> None:
    r = shedbench.run(50, rounds=1)
    assert r["shed_3004_result_code"] == 3004 and r["shed_3004_with_oc_olr_has_oc_olr"]
    assert not r["shed_3004_has_oc_olr"]
    for k in ("shed_3004", "shed_3004_with_oc_olr", "anchor_ready_answer", "anchor_dwr_dwa"):
        assert r[k] > 0
