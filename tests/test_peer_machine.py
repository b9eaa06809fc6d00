"""The sans-IO peer machine, two of them wired in memory (`PeerPair`), time passed in.

No socket, no loop, no clock: CER/CEA, election, DWR/DWA and the watchdog (SUSPECT after
Tw, DOWN after 2Tw), DPR/DPA, failover of pending requests with the T flag, duplicates,
and the admission rules (3010, source binding, SAN, pre-CER caps) are all driven by hand.
"""

from __future__ import annotations

from typing import Any

from chargegw.codec import Message
from chargegw.codec.constants import CMD_CCR, DisconnectCause, ResultCode
from chargegw.peer.config import NodeConfig, PeerConfig
from chargegw.peer.errors import RequestError
from chargegw.peer.fsm import State
from chargegw.peer.link import Link, PeerDown, PeerUp, RequestReceived
from chargegw.peer.testing import MemoryNode, PeerPair, make_ccr, make_cer, result_code
from chargegw.peer.watchdog import WdState

REALM = "test.example"
SERVER = "server.test.example"
CLIENT = "client.test.example"
TW = 6.0  # the RFC 3539 minimum; the test nodes' watchdog has no jitter


def server_cfg(name: str = SERVER, **kw: Any) -> NodeConfig:
    kw.setdefault("auth_apps", [4])
    kw.setdefault("tw", TW)
    return NodeConfig(origin_host=name, origin_realm=REALM, **kw)


def client_cfg(*servers: str, name: str = CLIENT, **kw: Any) -> NodeConfig:
    kw.setdefault("auth_apps", [4])
    kw.setdefault("tw", TW)
    peers = [PeerConfig(s, port=3868, realm=REALM) for s in servers]
    return NodeConfig(origin_host=name, origin_realm=REALM, peers=peers, **kw)


def answer_ok(req: Message, peer: Any, host: str = SERVER) -> Message:
    return req.answer(
        2001,
        origin_host=host,
        origin_realm=REALM,
        auth_application_id=4,
        cc_request_type=req.cc_request_type,
        cc_request_number=req.cc_request_number,
    )


def server(name: str = SERVER, **kw: Any) -> MemoryNode:
    node = MemoryNode(server_cfg(name, **kw), address=("127.0.0.9", 3868))
    node.add_handler(4, lambda r, p: answer_ok(r, p, name), CMD_CCR)
    return node


def opened(**kw: Any) -> PeerPair:
    pair = PeerPair(MemoryNode(client_cfg(SERVER)), server(), **kw).connect()
    assert pair.a_peer.state is State.I_OPEN and pair.b_peer.state is State.R_OPEN
    return pair


def ccr(**kw: Any) -> Message:
    return make_ccr(CLIENT, REALM, REALM, end_to_end=0, **kw)


def events_of(node: MemoryNode, kind: type) -> list[Any]:
    return [ev for _, ev in node.events if isinstance(ev, kind)]


# -- capabilities exchange -----------------------------------------------------------------


def test_cer_cea_opens_both_sides_and_learns_capabilities() -> None:
    pair = opened()
    a, b = pair.a_peer, pair.b_peer
    assert a.usable and b.usable and a.watchdog.state is WdState.OKAY
    assert a.apps == frozenset({4}) and b.apps == frozenset({4})
    assert a.caps.origin_host == SERVER and b.caps.origin_host == CLIENT
    assert len(events_of(pair.a, PeerUp)) == 1 and len(events_of(pair.b, PeerUp)) == 1
    assert not pair.b.admission.inbound  # the link left the pre-CER set


def test_request_and_answer_cross_in_memory() -> None:
    pair = opened()
    req = ccr(number=3)
    w = pair.a.request(req, pair.now)
    pair.pump()
    ans = pair.a.answers[w]
    assert result_code(ans) == 2001 and ans.cc_request_number == 3
    assert ans.hop_by_hop == req.hop_by_hop and pair.a_peer.outstanding == 0


def test_cea_with_failure_closes_the_initiator() -> None:
    pair = PeerPair(MemoryNode(client_cfg(SERVER)), server(auth_apps=[16777238]), now=1.0).connect()
    assert pair.a_peer.state is State.CLOSED  # 5010 No-Common-Application
    assert pair.b_peer is None or pair.b_peer.state is State.CLOSED


def test_election_the_higher_origin_host_keeps_its_responder_side() -> None:
    # Both connect at once: "z" > "a", so z keeps the link a initiated, and a keeps it too.
    lo, hi = "a.test.example", "z.test.example"
    n_lo = MemoryNode(client_cfg(hi, name=lo), address=("127.0.0.1", 3868))
    n_hi = MemoryNode(client_cfg(lo, name=hi), address=("127.0.0.2", 3868))
    for n in (n_lo, n_hi):
        n.add_handler(4, lambda r, p: None, CMD_CCR)
    p1 = PeerPair(n_lo, n_hi, source=("127.0.0.1", 40001))  # lo -> hi
    p2 = PeerPair(n_hi, n_lo, source=("127.0.0.2", 40002))  # hi -> lo
    m_lo, m_hi = n_lo.peer(hi), n_hi.peer(lo)
    n_lo.handle(m_lo, m_lo.start(0.0), 0.0)
    n_hi.handle(m_hi, m_hi.start(0.0), 0.0)
    p1.connect(start=False)
    p2.connect(start=False)
    for _ in range(5):
        p1.pump()
        p2.pump()
    assert m_lo.state is State.I_OPEN and m_hi.state is State.R_OPEN
    assert m_hi.link is p1.lb and m_lo.link is p1.la  # the link lo initiated survived
    assert p2.la.closing or p2.la.closed  # hi's own initiator link was dropped


# -- watchdog ------------------------------------------------------------------------------


def test_dwr_dwa_keep_the_peer_okay() -> None:
    pair = opened()
    for _ in range(5):
        pair.advance(TW)
    assert pair.a_peer.watchdog.state is WdState.OKAY and pair.a_peer.usable
    assert pair.b_peer.stats["dwr_in"] >= 2


def test_silent_peer_suspect_after_tw_down_after_2tw() -> None:
    pair = opened()
    a = pair.a_peer
    pair.partition = True  # the server hears nothing and says nothing
    pair.advance(TW)  # first Tw: a DWR goes out
    assert a.watchdog.state is WdState.OKAY and a.watchdog.pending
    pair.advance(TW)  # second Tw without an answer: SUSPECT, no longer routable
    assert a.watchdog.state is WdState.SUSPECT and not a.usable
    pair.advance(TW)  # and one more: DOWN, the connection is closed
    assert a.watchdog.state is WdState.DOWN and a.state is State.CLOSED
    assert pair.la.close_mode == "abort"
    assert events_of(pair.a, PeerDown)[-1].orderly is False


# -- DPR / DPA -----------------------------------------------------------------------------


def test_dpr_dpa_closes_both_sides_orderly() -> None:
    pair = opened()
    a = pair.a_peer
    pair.a.handle(a, a.close(pair.now, DisconnectCause.BUSY), pair.now)
    assert a.state is State.CLOSING and not a.usable
    pair.pump()
    assert a.state is State.CLOSED and pair.b_peer.state is State.CLOSED
    assert a.orderly and pair.b_peer.orderly
    assert pair.b_peer.disc_cause_rcvd == DisconnectCause.BUSY
    assert a.watchdog.state is WdState.INITIAL  # not a REOPEN next time


# -- failover ------------------------------------------------------------------------------


def test_pending_request_fails_over_with_the_t_flag() -> None:
    s1, s2 = "s1.test.example", "s2.test.example"
    client = MemoryNode(client_cfg(s1, s2, default_route=[s1, s2]))
    seen: list[Message] = []
    n1 = MemoryNode(server_cfg(s1), address=("127.0.0.9", 3868))
    n1.add_handler(4, lambda r, p: seen.append(r), CMD_CCR)  # never answers
    n2 = MemoryNode(server_cfg(s2), address=("127.0.0.8", 3868))
    n2.add_handler(4, lambda r, p: seen.append(r) or answer_ok(r, p, s2), CMD_CCR)
    p1 = PeerPair(client, n1).connect()
    p2 = PeerPair(client, n2).connect()
    req = make_ccr(CLIENT, REALM, REALM, end_to_end=0)
    w = client.request(req, 0.0, peer=None)
    first = client.peers[s1] if client.peers[s1].outstanding else client.peers[s2]
    if first.key == s2:  # make s1 the one holding it: fail s2's instead
        p1, p2 = p2, p1
    p1.pump()
    assert w not in client.answers and len(seen) == 1 and not seen[0].flags & 0x10
    p1.lose()  # the transport to the holder dies: the request moves, T flag set
    p2.pump()
    ans = client.answers[w]
    assert isinstance(ans, Message) and result_code(ans) == 2001
    assert len(seen) == 2 and seen[1].flags & 0x10 and seen[1].end_to_end == req.end_to_end


def test_pinned_request_is_not_failed_over() -> None:
    pair = opened()
    pair.b.ctx.handlers[(4, CMD_CCR)] = lambda r, p: None  # never answers
    w = pair.a.request(ccr(), pair.now, peer=SERVER)
    pair.pump()
    pair.lose()
    err = pair.a.answers[w]
    assert (
        isinstance(err, RequestError) and err.result_code == ResultCode.DIAMETER_UNABLE_TO_DELIVER
    )


# -- duplicates ----------------------------------------------------------------------------


def test_retransmission_gets_the_cached_answer_and_is_handled_once() -> None:
    pair = opened()
    calls: list[int] = []
    pair.b.ctx.handlers[(4, CMD_CCR)] = lambda r, p: calls.append(1) or answer_ok(r, p)
    req = ccr(number=7)
    w1 = pair.a.request(req, pair.now, peer=SERVER)
    pair.pump()
    raw = bytearray(req.encode())
    raw[4] |= 0x10  # the same request again (same End-to-End), T flag
    w2 = pair.a.request(Message.decode(bytes(raw)), pair.now, peer=SERVER)
    pair.pump()
    assert len(calls) == 1 and pair.b.ctx.stats["duplicates"] == 1
    a1, a2 = pair.a.answers[w1], pair.a.answers[w2]
    assert a1.end_to_end == a2.end_to_end and a1.hop_by_hop != a2.hop_by_hop
    assert result_code(a2) == 2001


def test_a_raised_error_is_not_cached() -> None:
    from chargegw.peer.errors import ProtocolError

    pair = opened()
    calls: list[int] = []

    def flaky(r: Message, p: Any) -> Message:
        calls.append(1)
        if len(calls) == 1:
            raise ProtocolError(ResultCode.DIAMETER_TOO_BUSY, "busy")
        return answer_ok(r, p)

    pair.b.ctx.handlers[(4, CMD_CCR)] = flaky
    req = ccr()
    w1 = pair.a.request(req, pair.now, peer=SERVER)
    pair.pump()
    w2 = pair.a.request(Message.decode(req.encode()), pair.now, peer=SERVER)
    pair.pump()
    assert result_code(pair.a.answers[w1]) == 3004 and result_code(pair.a.answers[w2]) == 2001
    assert len(calls) == 2


def test_a_request_for_an_unknown_application_gets_3007_without_the_handler() -> None:
    pair = opened()
    pair.b.ctx.handlers.clear()
    pair.b.ctx.handler_apps.clear()
    w = pair.a.request(ccr(), pair.now, peer=SERVER)
    pair.pump()
    assert result_code(pair.a.answers[w]) == ResultCode.DIAMETER_APPLICATION_UNSUPPORTED
    assert not events_of(pair.b, RequestReceived)


# -- admission (issue 8's rules, without a socket) -----------------------------------------


def test_unknown_peer_is_refused_with_3010() -> None:
    b = server(allow=[])  # an empty allowlist: only configured peers
    b.config.allow_loopback = False
    pair = PeerPair(MemoryNode(client_cfg(SERVER)), b).connect()
    assert pair.a_peer.state is State.CLOSED
    assert b.ctx.stats["rejected_cer"] == 1 and CLIENT.lower() not in b.peers


def test_source_binding_refuses_a_cer_from_elsewhere() -> None:
    cfg = server_cfg(peers=[PeerConfig(CLIENT, connect=False, source=["10.1.2.3"])])
    b = MemoryNode(cfg, address=("127.0.0.9", 3868))
    pair = PeerPair(MemoryNode(client_cfg(SERVER)), b, source=("127.0.0.5", 40000)).connect()
    assert pair.a_peer.state is State.CLOSED and b.ctx.stats["rejected_cer"] == 1
    assert b.admission.want_resolve  # the adapter is asked to look the names up again
    ok = PeerPair(MemoryNode(client_cfg(SERVER)), b, source=("10.1.2.3", 40000)).connect()
    assert ok.a_peer.state is State.I_OPEN


def test_tls_certificate_must_name_the_origin_host() -> None:
    b = server()
    bad = PeerPair(MemoryNode(client_cfg(SERVER)), b, kind="tls", cert_names=["other.example"])
    bad.connect()
    assert bad.a_peer.state is State.CLOSED and b.ctx.stats["rejected_cer"] == 1
    good = PeerPair(MemoryNode(client_cfg(SERVER)), b, kind="tls", cert_names=["*.test.example"])
    assert good.connect().a_peer.state is State.I_OPEN


def test_pre_cer_caps_and_the_cer_timer() -> None:
    b = server(max_pre_cer=2, max_pre_cer_per_source=1, cer_timeout=3.0)
    adm = b.admission
    l1 = Link(initiator=False, remote=("127.0.0.5", 1))
    l2 = Link(initiator=False, remote=("127.0.0.5", 2))  # same source: over its cap
    l3 = Link(initiator=False, remote=("127.0.0.6", 3))
    l4 = Link(initiator=False, remote=("127.0.0.7", 4))  # over the total cap
    assert adm.accepted(l1, 0.0) and adm.made(l1, 0.0)
    assert adm.accepted(l2, 0.0) and not adm.made(l2, 0.0) and l2.close_mode == "abort"
    assert adm.accepted(l3, 0.0) and adm.made(l3, 0.0)
    assert not adm.accepted(l4, 0.0)
    assert b.ctx.stats["refused_at_accept"] == 1
    adm.expire(2.9)
    assert l1 in adm.inbound
    adm.expire(3.0)  # no CER in time
    assert not adm.inbound and l1.close_mode == "abort" and not adm.by_src


def test_message_before_cer_closes_without_an_answer() -> None:
    b = server()
    link = Link(initiator=False, remote=("127.0.0.5", 1))
    assert b.admission.accepted(link, 0.0) and b.admission.made(link, 0.0)
    assert b.admission.receive(link, ccr().encode()) is None
    assert link.closing and not link.data_to_send()


def test_oversized_length_is_a_framing_error_answered_and_closed() -> None:
    b = server()
    link = Link(initiator=False, remote=("127.0.0.5", 1), max_length=65536)
    b.admission.accepted(link, 0.0)
    b.admission.made(link, 0.0)
    cer = bytearray(make_cer(CLIENT, REALM).encode())
    cer[1:4] = (70000).to_bytes(3, "big")  # over the 64 KiB cap
    assert b.admission.receive(link, bytes(cer)) is None
    assert link.closing and b.ctx.stats["framing_errors"] == 1
