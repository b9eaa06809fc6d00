"""Relay and proxy agents (peer/relay.py), sans-IO: nodes wired in memory, time passed in.

client -> relay -> server (and client -> relay -> relay -> server): forwarding by realm,
application and Destination-Host; Route-Record appended, loops refused (3005) and avoided;
hop-by-hop ids mapped and answers taken only from the peer forwarded to; failover with the
T flag; 3002/3003/3004 when the request cannot go on; Relay / proxied applications in
CER/CEA. No socket, no loop, no clock.
"""

from __future__ import annotations

from typing import Any

import pytest

from chargegw.codec import Message, avp_key, peek
from chargegw.codec.constants import (
    APP_CREDIT_CONTROL as CC,
)
from chargegw.codec.constants import (
    APP_CXDX,
    APP_RELAY,
    APP_SY,
    CMD_CCR,
    FLAG_ERROR,
    FLAG_RETRANSMIT,
    ResultCode,
)
from chargegw.peer.config import NodeConfig, PeerConfig, RouteConfig
from chargegw.peer.connection import plan_failover
from chargegw.peer.errors import RequestError
from chargegw.peer.fsm import State
from chargegw.peer.link import AnswerReceived, Failover
from chargegw.peer.relay import AgentConfig, Forwarded, RelayAgent, append_avp, redirect_hosts
from chargegw.peer.testing import MemoryNode, PeerPair, make_ccr, result_code

TW = 6.0
CLIENT, C_REALM = "client.c.example", "c.example"
RELAY, R_REALM = "relay.r.example", "r.example"
RELAY2 = "relay2.r.example"
SERVER, SERVER2, S_REALM = "server.s.example", "server2.s.example", "s.example"
RC = ResultCode
RR_KEY = avp_key("Route-Record")


class AgentNode(MemoryNode):
    """A MemoryNode whose waiters may be a relay's `Forwarded` (resolved as the Node does)."""

    def __init__(self, config: NodeConfig, agent: AgentConfig | None = None, **kw: Any) -> None:
        super().__init__(config, **kw)
        self.agent: RelayAgent | None = None
        if agent is not None:
            self.agent = RelayAgent(agent, self._select, self._servers)
            self.ctx.agent = self.agent

    def _servers(self, app: int, host: Any, realm: Any) -> list[str]:
        return redirect_hosts(self.routing, self.peers, self.config.peers, app, host, realm)

    def _select(self, app: int, host: Any, realm: Any, exclude: Any) -> Any:
        return self.routing.select(self.peers, app, host, realm, exclude)

    def handle(self, peer: Any, events: list[Any], now: float) -> None:
        rest = []
        for ev in events:
            if isinstance(ev, AnswerReceived) and isinstance(ev.waiter, Forwarded):
                self.events.append((peer.name, ev))
                if ev.error is None:
                    ev.waiter.set_result(ev.message)
                else:
                    ev.waiter.set_exception(ev.error)
            elif isinstance(ev, Failover):
                self.events.append((peer.name, ev))
                for e, alt, how in plan_failover(peer.key, ev.entries, self._select_tried):
                    if alt is not None:
                        alt.resend(e, how, now)
                    elif isinstance(e.waiter, Forwarded):
                        e.waiter.set_exception(RequestError(3002, str(how)))
                    else:
                        self.answers[e.waiter] = RequestError(3002, str(how))
            else:
                rest.append(ev)
        if rest:
            super().handle(peer, rest, now)

    def _select_tried(self, app: int, host: Any, realm: Any, tried: tuple[str, ...]) -> Any:
        return self.routing.select(self.peers, app, host, realm, tried)


def cfg(name: str, realm: str, *peers: tuple[str, str], **kw: Any) -> NodeConfig:
    kw.setdefault("tw", TW)
    pcs = [PeerConfig(n, port=3868, realm=r) for n, r in peers]
    return NodeConfig(origin_host=name, origin_realm=realm, peers=pcs, **kw)


def answer_ok(host: str, realm: str) -> Any:
    def handler(req: Message, peer: Any) -> Message:
        return req.answer(
            2001,
            origin_host=host,
            origin_realm=realm,
            auth_application_id=req.auth_application_id,
            cc_request_type=req.cc_request_type,
            cc_request_number=req.cc_request_number,
        )

    return handler


class Net:
    """Several PeerPairs sharing nodes: pump them all until nothing moves."""

    def __init__(self, *pairs: PeerPair) -> None:
        self.pairs = list(pairs)
        self.now = 0.0

    def connect(self) -> Net:
        for pair in self.pairs:
            pair.now = self.now
            pair.connect()
        return self.pump()

    def pump(self) -> Net:
        for _ in range(50):
            moved = False
            for pair in self.pairs:
                for link in (pair.la, pair.lb):
                    if link is not None and link.out:
                        moved = True
                pair.pump()
            if not moved:
                break
        return self

    def advance(self, dt: float) -> Net:
        self.now += dt
        nodes: list[MemoryNode] = []
        for pair in self.pairs:
            pair.now = self.now
            for n in (pair.a, pair.b):
                if n not in nodes:
                    nodes.append(n)
        for n in nodes:
            n.timer(self.now)
        return self.pump()


class Server(AgentNode):
    """A server that keeps every request it is handed (to look at what the relay sent)."""

    def __init__(self, name: str, realm: str = S_REALM, **kw: Any) -> None:
        super().__init__(cfg(name, realm, auth_apps=[CC]), address=("127.0.0.9", 3868))
        self.seen: list[Message] = []
        self.hold = False  # True: do not answer (answers come from the test)
        ok = answer_ok(name, realm)

        def handler(req: Message, peer: Any) -> Message | None:
            self.seen.append(req)
            return None if self.hold else ok(req, peer)

        self.add_handler(CC, handler, CMD_CCR)


def relay_node(
    name: str = RELAY,
    upstream: tuple[str, ...] = (SERVER,),
    agent: AgentConfig | None = None,
    routes: list[RouteConfig] | None = None,
    **kw: Any,
) -> AgentNode:
    peers = [(u, S_REALM if u.startswith("server") else R_REALM) for u in upstream]
    agent = agent or AgentConfig("relay")
    relay = agent.mode != "proxy"
    apps = [] if relay else sorted(agent.apps)
    if routes is None:
        routes = [RouteConfig(S_REALM, list(upstream))]
    config = cfg(name, R_REALM, *peers, relay=relay, auth_apps=apps, routes=routes, **kw)
    return AgentNode(config, agent, address=("127.0.0.5", 3868))


def client_node() -> AgentNode:
    config = cfg(
        CLIENT, C_REALM, (RELAY, R_REALM), auth_apps=[CC], routes=[RouteConfig(S_REALM, [RELAY])]
    )
    return AgentNode(config)


def chain(
    n_servers: int = 1, agent: AgentConfig | None = None, **kw: Any
) -> tuple[AgentNode, AgentNode, list[Server], Net]:
    client = client_node()
    names = (SERVER, SERVER2)[:n_servers]
    relay = relay_node(upstream=names, agent=agent, **kw)
    servers = [Server(n) for n in names]
    pairs = [PeerPair(client, relay)] + [PeerPair(relay, s) for s in servers]
    net = Net(*pairs).connect()
    assert relay.peer(CLIENT).state is State.R_OPEN
    for s in names:
        assert relay.peer(s).state is State.I_OPEN
    return client, relay, servers, net


def ccr(**kw: Any) -> Message:
    kw.setdefault("end_to_end", 0)
    return make_ccr(CLIENT, C_REALM, S_REALM, **kw)


def inject(node: AgentNode, from_peer: str, data: bytes, now: float = 0.0) -> list[Message]:
    """Hand `data` to `node` as if `from_peer` sent it; what `node` writes back on that link."""
    m = node.peer(from_peer)
    link = m.link
    link.data_to_send()
    node.handle(m, m.receive_data(link, data, now), now)
    return [Message.decode(b) for b in link.data_to_send()]


def send(client: AgentNode, net: Net, msg: Message) -> Any:
    waiter = client.request(msg, net.now)
    net.pump()
    return waiter


# -- capabilities ------------------------------------------------------------------------


def test_relay_advertises_the_relay_application_and_learns_any_application() -> None:
    client, relay, _, _ = chain()
    seen_by_client = client.peer(RELAY)
    assert seen_by_client.remote_relay and APP_RELAY in seen_by_client.remote_apps
    assert seen_by_client.supports(123456)  # a relay takes every application
    assert APP_RELAY in relay.peer(CLIENT).apps


def test_proxy_advertises_the_applications_it_proxies_and_not_relay() -> None:
    agent = AgentConfig("proxy", frozenset({CC}))
    client, _, _, _ = chain(agent=agent)
    seen_by_client = client.peer(RELAY)
    assert not seen_by_client.remote_relay
    assert seen_by_client.remote_apps == frozenset({CC})


# -- forwarding --------------------------------------------------------------------------


def test_request_is_forwarded_with_a_route_record_and_a_new_hop_by_hop() -> None:
    client, relay, (server,), net = chain()
    server.hold = True
    msg = ccr()
    waiter = send(client, net, msg)
    assert len(server.seen) == 1
    got = server.seen[0]
    assert got.end_to_end == msg.end_to_end  # end-to-end untouched
    # The hop-by-hop id upstream is the relay's own, on the upstream link's pending table,
    # and the entry remembers the downstream one.
    (entry,) = list(relay.peer(SERVER).link.pending)
    assert entry.hbh == got.hop_by_hop
    assert isinstance(entry.waiter, Forwarded)
    assert int.from_bytes(entry.waiter.request[12:16], "big") == msg.hop_by_hop
    # The Route-Record names the peer the request came from (RFC 6733 6.1.8), appended.
    assert [r.lower() for r in got.get_all("Route-Record")] == [CLIENT]
    assert got.get("Origin-Host") == CLIENT and got.get("Session-Id") == msg.get("Session-Id")
    server.peer(RELAY).link.send(answer_ok(SERVER, S_REALM)(got, None).encode())
    net.pump()
    ans = client.answers[waiter]  # matched by the client's own hop-by-hop id
    assert isinstance(ans, Message) and result_code(ans) == 2001
    assert ans.hop_by_hop == msg.hop_by_hop
    assert ans.get("Origin-Host") == SERVER  # the upstream's answer, not the relay's
    assert relay.agent is not None and relay.agent.stats["forwarded"] == 1


def test_hop_by_hop_is_mapped_both_ways() -> None:
    client, relay, (server,), net = chain()
    server.hold = True
    msgs = [ccr() for _ in range(3)]
    waiters = [send(client, net, m) for m in msgs]
    assert len({s.hop_by_hop for s in server.seen}) == 3
    # The answers go back in reverse order; each gets its own downstream hop-by-hop id.
    link = server.peer(RELAY).link
    for req in reversed(server.seen):
        link.send(answer_ok(SERVER, S_REALM)(req, None).encode())
    net.pump()
    for m, w in zip(msgs, waiters, strict=True):
        ans = client.answers[w]
        assert isinstance(ans, Message) and result_code(ans) == 2001
        assert (ans.hop_by_hop, ans.end_to_end) == (m.hop_by_hop, m.end_to_end)
        assert ans.get("CC-Request-Number") == m.get("CC-Request-Number")
        assert ans.get("Session-Id") == m.get("Session-Id")
    assert relay.peer(SERVER).outstanding == 0


def test_answer_from_another_peer_with_the_same_hop_by_hop_is_dropped() -> None:
    client, relay, (s1, s2), net = chain(2)
    s1.hold = s2.hold = True
    waiter = send(client, net, ccr())
    (req,) = s1.seen + s2.seen
    forged_by = s2 if s1.seen else s1
    honest = s1 if s1.seen else s2
    # The other server answers with the very hop-by-hop id the relay used upstream.
    forged = answer_ok(forged_by.config.origin_host, S_REALM)(req, None)
    forged_by.peer(RELAY).link.send(forged.encode())
    net.pump()
    assert waiter not in client.answers
    honest.peer(RELAY).link.send(answer_ok(honest.config.origin_host, S_REALM)(req, None).encode())
    net.pump()
    ans = client.answers[waiter]
    assert ans.get("Origin-Host") == honest.config.origin_host


def test_destination_host_naming_a_connected_peer_goes_to_it() -> None:
    client, _, (s1, s2), net = chain(2)
    for _ in range(4):
        send(client, net, ccr(dest_host=SERVER2))
    assert len(s2.seen) == 4 and not s1.seen


def test_routing_by_application_picks_the_application_route() -> None:
    other = APP_SY  # a second application with its own route
    routes = [RouteConfig(S_REALM, [SERVER], app_id=CC), RouteConfig(S_REALM, [SERVER2], other)]
    client, _, (s1, s2), net = chain(2, routes=routes)
    for _ in range(3):
        send(client, net, ccr())
    assert len(s1.seen) == 3 and not s2.seen


def test_answers_keep_the_upstream_result_code() -> None:
    client, _, (server,), net = chain()
    server.hold = True
    waiter = send(client, net, ccr())
    (req,) = server.seen
    busy = req.answer(4012, origin_host=SERVER, origin_realm=S_REALM)
    server.peer(RELAY).link.send(busy.encode())
    net.pump()
    assert result_code(client.answers[waiter]) == 4012


# -- loops and refusals ------------------------------------------------------------------


def test_own_identity_in_route_record_is_a_loop() -> None:
    client, relay, (server,), net = chain()
    msg = ccr()
    msg.set("Route-Record", [SERVER, RELAY.upper()])
    waiter = send(client, net, msg)
    ans = client.answers[waiter]
    assert result_code(ans) == RC.DIAMETER_LOOP_DETECTED and ans.flags & FLAG_ERROR
    assert not server.seen
    assert relay.agent is not None and relay.agent.stats["loops"] == 1


def test_no_forwarding_back_to_the_peer_it_came_from() -> None:
    # The only route for the realm is the client itself: 3002, never back.
    client = client_node()
    relay = relay_node(upstream=(), routes=[RouteConfig(S_REALM, [CLIENT])])
    net = Net(PeerPair(client, relay)).connect()
    waiter = send(client, net, ccr())
    assert result_code(client.answers[waiter]) == RC.DIAMETER_UNABLE_TO_DELIVER


def test_no_forwarding_to_a_node_already_in_the_route_record() -> None:
    client, _, (s1, s2), net = chain(2)
    for _ in range(4):
        msg = ccr()
        msg.set("Route-Record", [SERVER.upper()])  # it passed through server 1 already
        assert result_code(client.answers[send(client, net, msg)]) == 2001
    assert len(s2.seen) == 4 and not s1.seen
    msg = ccr(dest_host=SERVER)  # not even when named as Destination-Host: server 2 by
    msg.set("Route-Record", [SERVER])  # the realm, and server 2 refuses another's request
    ans = client.answers[send(client, net, msg)]
    assert result_code(ans) == RC.DIAMETER_UNABLE_TO_DELIVER
    assert ans.get("Origin-Host") == SERVER2 and not s1.seen


def test_two_relays_chain_and_avoid_a_loop_between_them() -> None:
    # client -> R1 -> R2 -> server; and R2's route for another realm points back at R1.
    client = client_node()
    r1 = relay_node(
        RELAY,
        upstream=(RELAY2,),
        routes=[RouteConfig(S_REALM, [RELAY2]), RouteConfig("x.example", [RELAY2])],
    )
    r2 = relay_node(
        RELAY2,
        upstream=(SERVER, RELAY),
        routes=[RouteConfig(S_REALM, [SERVER]), RouteConfig("x.example", [RELAY])],
    )
    server = Server(SERVER)
    net = Net(PeerPair(client, r1), PeerPair(r1, r2), PeerPair(r2, server)).connect()
    w = send(client, net, ccr())
    assert result_code(client.answers[w]) == 2001
    (got,) = server.seen
    assert [r.lower() for r in got.get_all("Route-Record")] == [CLIENT, RELAY]
    # R2 would send x.example back to R1: R1 is in the Route-Record, so R2 answers 3002
    # and R1 passes that answer on unchanged (the Origin-Host is R2's).
    msg = make_ccr(CLIENT, C_REALM, "x.example", end_to_end=0)
    client.routing = type(client.routing)([RouteConfig("x.example", [RELAY])])
    w = send(client, net, msg)
    ans = client.answers[w]
    assert result_code(ans) == RC.DIAMETER_UNABLE_TO_DELIVER
    assert ans.get("Origin-Host") == RELAY2
    assert not r1.agent.stats["loops"] and r2.agent.stats["no_route"] == 1  # type: ignore[union-attr]


def test_relay_sees_its_identity_recorded_by_the_next_agent() -> None:
    # What a careless next hop would send back: the relay's own name in a Route-Record.
    client, relay, (server,), net = chain()
    server.hold = True
    send(client, net, ccr())
    (req,) = server.seen
    looped = append_avp(req.encode(), relay.agent.route_record(RELAY))  # type: ignore[union-attr]
    looped = looped[:12] + (0x7777).to_bytes(4, "big") + looped[16:]
    (ans,) = inject(relay, SERVER, looped)
    assert result_code(ans) == RC.DIAMETER_LOOP_DETECTED and ans.flags & FLAG_ERROR
    assert ans.hop_by_hop == 0x7777 and ans.get("Origin-Host") == RELAY
    assert relay.agent.stats["loops"] == 1  # type: ignore[union-attr]
    assert len(server.seen) == 1


def test_unknown_realm_is_3003_and_a_down_upstream_is_3002() -> None:
    client, relay, (server,), net = chain()
    msg = make_ccr(CLIENT, C_REALM, "nowhere.example", end_to_end=0)
    client.routing = type(client.routing)(
        [RouteConfig("nowhere.example", [RELAY]), RouteConfig(S_REALM, [RELAY])]
    )
    w = send(client, net, msg)
    assert result_code(client.answers[w]) == RC.DIAMETER_REALM_NOT_SERVED
    net.pairs[1].lose()
    net.pump()
    w = send(client, net, ccr())
    assert result_code(client.answers[w]) == RC.DIAMETER_UNABLE_TO_DELIVER


def test_too_many_pending_upstream_is_3004() -> None:
    client, relay, (server,), net = chain(agent=AgentConfig("relay", max_pending=2))
    server.hold = True
    waiters = [send(client, net, ccr()) for _ in range(3)]
    assert len(server.seen) == 2
    assert result_code(client.answers[waiters[2]]) == RC.DIAMETER_TOO_BUSY


def test_e_bit_on_a_request_is_3008() -> None:
    client, _, (server,), net = chain()
    msg = ccr()
    msg.flags |= FLAG_ERROR
    w = send(client, net, msg)
    assert result_code(client.answers[w]) == RC.DIAMETER_INVALID_HDR_BITS and not server.seen


def test_request_for_the_relay_itself_is_handled_locally() -> None:
    client, relay, (server,), net = chain()
    w = send(client, net, ccr(dest_host=RELAY))
    # No local handler for the application: the node answers as any node would.
    assert result_code(client.answers[w]) == RC.DIAMETER_APPLICATION_UNSUPPORTED
    assert not server.seen
    relay.add_handler(CC, answer_ok(RELAY, R_REALM), CMD_CCR)
    w = send(client, net, ccr(dest_host=RELAY))
    assert client.answers[w].get("Origin-Host") == RELAY and not server.seen


def test_proxy_forwards_only_its_applications() -> None:
    agent = AgentConfig("proxy", frozenset({CC}))
    client, relay, (server,), net = chain(agent=agent)
    w = send(client, net, ccr())
    assert result_code(client.answers[w]) == 2001 and len(server.seen) == 1
    # Another application through the same proxy: not forwarded (3007 from the proxy).
    other = ccr()
    other.app_id = APP_CXDX
    other.hop_by_hop = 0x4242
    (ans,) = inject(relay, CLIENT, other.encode())
    assert result_code(ans) == RC.DIAMETER_APPLICATION_UNSUPPORTED and ans.hop_by_hop == 0x4242
    assert len(server.seen) == 1
    assert relay.agent.stats["forwarded"] == 1  # type: ignore[union-attr]


# -- failover, timeouts, lost downstream -------------------------------------------------


def test_failover_resends_to_the_alternate_with_the_t_flag() -> None:
    client, relay, (s1, s2), net = chain(2)
    s1.hold = s2.hold = True
    msg = ccr()
    w = send(client, net, msg)
    first = s1 if s1.seen else s2
    second = s2 if first is s1 else s1
    assert not first.seen[0].flags & FLAG_RETRANSMIT
    pair = next(p for p in net.pairs if p.b is first)
    pair.lose()  # the upstream link breaks with the request pending
    net.pump()
    (again,) = second.seen
    assert again.flags & FLAG_RETRANSMIT and again.end_to_end == msg.end_to_end
    assert [r.lower() for r in again.get_all("Route-Record")] == [CLIENT]  # not appended twice
    second.peer(RELAY).link.send(
        answer_ok(second.config.origin_host, S_REALM)(again, None).encode()
    )
    net.pump()
    ans = client.answers[w]
    assert result_code(ans) == 2001 and ans.hop_by_hop == msg.hop_by_hop


def test_failover_with_no_alternate_answers_3002() -> None:
    client, relay, (server,), net = chain()
    server.hold = True
    w = send(client, net, ccr())
    net.pairs[1].lose()
    net.pump()
    ans = client.answers[w]
    assert result_code(ans) == RC.DIAMETER_UNABLE_TO_DELIVER and ans.get("Origin-Host") == RELAY


def test_upstream_timeout_answers_3002() -> None:
    client, relay, (server,), net = chain(agent=AgentConfig("relay", request_timeout=1.0))
    server.hold = True
    w = send(client, net, ccr())
    net.advance(1.5)
    assert result_code(client.answers[w]) == RC.DIAMETER_UNABLE_TO_DELIVER


def test_answer_for_a_lost_downstream_is_dropped() -> None:
    client, relay, (server,), net = chain()
    server.hold = True
    send(client, net, ccr())
    (req,) = server.seen
    net.pairs[0].lose()
    server.peer(RELAY).link.send(answer_ok(SERVER, S_REALM)(req, None).encode())
    net.pump()
    assert relay.agent.stats["answers_dropped"] == 1  # type: ignore[union-attr]


# -- the pure parts ----------------------------------------------------------------------


def test_append_avp_fixes_the_length_and_keeps_the_order() -> None:
    data = ccr().encode()
    rr = RelayAgent(AgentConfig()).route_record("a.example")
    out = append_avp(data, rr)
    assert int.from_bytes(out[1:4], "big") == len(out) == len(data) + len(rr)
    assert out.startswith(data[:1]) and out[4 : len(data)] == data[4:]
    p = peek(out)
    assert p.all(RR_KEY) == [b"a.example"]


# -- redirects (RFC 6733 6.1.7) -------------------------------------------------------------

REDIR = "redirect.s.example"


def redirect_chain(agent: AgentConfig) -> tuple[AgentNode, AgentNode, Net]:
    """client -> a redirect agent that knows two servers by configuration and is connected
    to neither (a redirect agent never forwards)."""
    client = client_node()
    pcs = [PeerConfig(SERVER, port=3868, realm=S_REALM),
           PeerConfig(SERVER2, port=5658, transport="tls", realm=S_REALM)]  # fmt: skip
    config = NodeConfig(
        origin_host=RELAY, origin_realm=R_REALM, peers=pcs, tw=TW, relay=True,
        routes=[RouteConfig(S_REALM, [SERVER, SERVER2])],
    )  # fmt: skip
    redirector = AgentNode(config, agent, address=("127.0.0.5", 3868))
    net = Net(PeerPair(client, redirector)).connect()
    return client, redirector, net


def test_redirect_agent_answers_3006_naming_the_servers_of_the_route() -> None:
    client, redirector, net = redirect_chain(AgentConfig("redirect"))
    assert client.peer(RELAY).remote_relay  # a redirect agent advertises Relay
    msg = ccr()
    ans = client.answers[send(client, net, msg)]
    assert isinstance(ans, Message) and result_code(ans) == 3006 and ans.is_error
    assert ans.hop_by_hop == msg.hop_by_hop and ans.get("Session-Id") == msg.get("Session-Id")
    assert ans.get_all("Redirect-Host") == [
        "aaa://server.s.example:3868;transport=tcp",
        "aaas://server2.s.example:5658;transport=tcp",
    ]
    assert ans.get("Redirect-Host-Usage") == 0 and ans.get("Redirect-Max-Cache-Time") is None
    Message.decode(ans.encode()).validate()  # the codec's grammar for the answer holds
    # Destination-Host naming one of them puts it first.
    pinned = ccr()
    pinned.set("Destination-Host", SERVER2)
    ans = client.answers[send(client, net, pinned)]
    assert isinstance(ans, Message)
    assert ans.get_all("Redirect-Host")[0].startswith("aaas://server2.s.example")
    assert redirector.agent is not None and redirector.agent.stats["redirected"] == 2
    assert redirector.agent.stats["forwarded"] == 0


def test_redirect_agent_says_how_long_to_cache_and_refuses_unknown_realms() -> None:
    agent = AgentConfig("redirect", redirect_usage=2, redirect_cache_time=600)  # ALL_REALM
    client, redirector, net = redirect_chain(agent)
    ans = client.answers[send(client, net, ccr())]
    assert isinstance(ans, Message)
    assert (ans.get("Redirect-Host-Usage"), ans.get("Redirect-Max-Cache-Time")) == (2, 600)
    lost = make_ccr(CLIENT, C_REALM, "nowhere.example", end_to_end=0)
    waiter = client.request(lost, net.now, peer=RELAY)
    net.pump()
    ans = client.answers[waiter]
    assert isinstance(ans, Message) and result_code(ans) == 3003
    assert ans.get("Redirect-Host") is None


@pytest.mark.interop
def test_the_redirect_answer_passes_wiresharks_dissector(tmp_path: Any) -> None:
    import shutil
    import subprocess
    from pathlib import Path

    check = Path(__file__).resolve().parent.parent.parent / "shared" / "peers" / "tshark-check.sh"
    if not check.is_file():
        pytest.skip(f"{check} is not here")
    if not (shutil.which("tshark") and shutil.which("text2pcap")):
        pytest.skip("tshark/text2pcap are not installed (../shared/peers/setup.sh tshark)")
    agent = AgentConfig("redirect", redirect_usage=3, redirect_cache_time=60)
    client, redirector, net = redirect_chain(agent)
    ans = client.answers[send(client, net, ccr())]
    assert isinstance(ans, Message) and result_code(ans) == 3006
    hexfile = tmp_path / "redirect.hex"
    hexfile.write_text(f"# 3006\n{ans.encode().hex()}\n")
    r = subprocess.run(["bash", str(check), "--port", "3868", "--hex", str(hexfile)],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    line = r.stdout.strip().splitlines()[-1]
    assert "tshark-check: OK" in line and "diameter_msgs=1 " in line, line
    assert "malformed=0 expert_errors=0 expert_warnings=0" in line, line


class Redirector(Server):
    """A server that answers every request 3006, naming `to`."""

    def __init__(self, name: str, to: list[str]) -> None:
        super().__init__(name)

        def handler(req: Message, peer: Any) -> Message:
            self.seen.append(req)
            ans = req.answer(3006, origin_host=name, origin_realm=S_REALM)
            ans.is_error = True
            for uri in to:
                ans.add("Redirect-Host", uri)
            return ans

        self.add_handler(CC, handler, CMD_CCR)


def follow_chain(
    to: list[str], server2: Server | None = None
) -> tuple[AgentNode, AgentNode, Redirector, Server, Net]:
    """client -> relay -> redirector (the route for S_REALM), with the relay also connected
    to SERVER2, which no route names (its realm, for the relay, is another one)."""
    client = client_node()
    config = cfg(
        RELAY, R_REALM, (REDIR, S_REALM), (SERVER2, "t.example"), relay=True,
        routes=[RouteConfig(S_REALM, [REDIR])],
    )  # fmt: skip
    relay = AgentNode(config, AgentConfig("relay"), address=("127.0.0.5", 3868))
    redirector, server2 = Redirector(REDIR, to), server2 or Server(SERVER2)
    net = Net(PeerPair(client, relay), PeerPair(relay, redirector), PeerPair(relay, server2))
    net.connect()
    return client, relay, redirector, server2, net


def test_relay_follows_a_3006_to_a_live_redirect_host_once() -> None:
    client, relay, redirector, server2, net = follow_chain(
        ["aaa://unknown.s.example", f"aaa://{SERVER2}:3868;transport=tcp"]
    )
    msg = ccr()
    ans = client.answers[send(client, net, msg)]
    assert isinstance(ans, Message) and result_code(ans) == 2001
    assert ans.get("Origin-Host") == SERVER2 and ans.hop_by_hop == msg.hop_by_hop
    (first,), (second,) = redirector.seen, server2.seen
    assert second.end_to_end == first.end_to_end == msg.end_to_end
    assert [r.lower() for r in second.get_all("Route-Record")] == [CLIENT]  # not twice
    assert relay.agent is not None and relay.agent.stats["redirects_followed"] == 1
    assert relay.peer(SERVER2).outstanding == 0 and relay.peer(REDIR).outstanding == 0


def test_a_3006_naming_no_live_peer_goes_downstream_unchanged() -> None:
    client, relay, redirector, server2, net = follow_chain(["aaa://unknown.s.example"])
    ans = client.answers[send(client, net, ccr())]
    assert isinstance(ans, Message) and result_code(ans) == 3006
    assert ans.get_all("Redirect-Host") == ["aaa://unknown.s.example"]  # for the client
    assert ans.get("Origin-Host") == REDIR and server2.seen == []
    assert relay.agent is not None and relay.agent.stats["redirects_followed"] == 0


def test_a_redirect_is_followed_once_and_not_back_to_the_redirector() -> None:
    # The redirector names itself: not followed (it answered already), so the client gets
    # the 3006; and a chain of redirects stops after REDIRECTS hops.
    client, relay, redirector, server2, net = follow_chain([f"aaa://{REDIR}"])
    ans = client.answers[send(client, net, ccr())]
    assert isinstance(ans, Message) and result_code(ans) == 3006
    assert len(redirector.seen) == 1
    bouncing = Redirector(SERVER2, [f"aaa://{REDIR}"])  # SERVER2 sends it back again
    client, relay, redirector, _, net = follow_chain([f"aaa://{SERVER2}"], bouncing)
    ans = client.answers[send(client, net, ccr())]
    assert isinstance(ans, Message) and result_code(ans) == 3006
    assert ans.get("Origin-Host") == SERVER2  # the second 3006, passed on
    assert len(redirector.seen) == 1 and len(bouncing.seen) == 1


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"mode": "forward"}, "mode"),
        ({"mode": "proxy"}, "apps"),
        ({"mode": "redirect", "apps": frozenset({4})}, "apps"),
        ({"mode": "redirect", "redirect_usage": 7}, "redirect_usage"),
        ({"mode": "redirect", "redirect_usage": 2}, "redirect_cache_time"),
        ({"mode": "relay", "apps": frozenset({4})}, "apps"),
        ({"mode": "proxy", "apps": frozenset({APP_RELAY})}, "apps"),
        ({"max_pending": 0}, "max_pending"),
    ],
)
def test_agent_config_is_checked(kw: dict[str, Any], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        AgentConfig(**kw)


def test_the_relay_core_is_sans_io() -> None:
    """peer/relay.py imports no asyncio, socket or ssl, and loads none when imported."""
    import subprocess
    import sys
    from pathlib import Path

    from test_codec_purity import FORBIDDEN, FORBIDDEN_LOADED, imported_modules

    src = Path(__file__).resolve().parent.parent / "peer" / "relay.py"
    assert not {m for m in imported_modules(src) if m.split(".")[0] in FORBIDDEN}
    code = (
        "import sys, chargegw.peer.relay\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN_LOADED!r})\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", out.stdout
