"""A peer that goes silent (answers CER, then nothing: no DWA, no answers) beside a good one,
on real loopback sockets, with the shortest watchdog RFC 3539 allows (Tw = 6 s, +-2 s jitter).

The client Node must send a DWR about Tw after the last thing it heard, mark the peer SUSPECT
(failing its pending requests over to the good peer, with the T flag) about Tw later, and
DOWN (closed) about Tw after that. Every request routed to the silent peer is answered by the
good one; none is lost."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from chargegw.codec import Message
from chargegw.codec.constants import CMD_CCR, CMD_CER, CMD_DWR
from chargegw.peer import ListenConfig, Node, NodeConfig, PeerConfig, RouteConfig
from chargegw.peer.testing import make_ccr, result_code
from chargegw.peer.watchdog import MIN_TW

pytestmark = pytest.mark.timeout(60)

REALM = "rel.example"
CLIENT = "client.rel.example"
GOOD = "good.rel.example"
SILENT = "silent.rel.example"
JITTER = 2.0  # the watchdog's jitter on each interval (RFC 3539 3.4.1)
SLACK = 1.0  # the client's tick and a loaded machine


class SilentServer(asyncio.Protocol):
    """Answers the CER, then records what arrives and never answers anything."""

    def __init__(self, seen: list[tuple[float, int, int]]) -> None:
        self.seen = seen
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while len(self.buf) >= 20:
            n = int.from_bytes(self.buf[1:4], "big")
            if len(self.buf) < n:
                return
            frame, self.buf = bytes(self.buf[:n]), self.buf[n:]
            code = int.from_bytes(frame[5:8], "big")
            self.seen.append((time.monotonic(), code, frame[4]))
            if code == CMD_CER:
                cer = Message.decode(frame)
                cea = cer.answer(2001, origin_host=SILENT, origin_realm=REALM,
                                 host_ip_address=["127.0.0.1"], vendor_id=0,
                                 product_name="silent", auth_application_id=[4])
                assert self.transport is not None
                self.transport.write(cea.encode())


def test_silent_peer_suspect_after_tw_down_after_2tw_and_requests_fail_over() -> None:
    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[float, int, int]] = []
        silent = await loop.create_server(lambda: SilentServer(seen), "127.0.0.1", 0)
        silent_port = silent.sockets[0].getsockname()[1]
        good_seen: list[tuple[str, bool]] = []

        def answer(req: Message, _peer: Any) -> Message:
            good_seen.append((str(req.session_id), req.is_retransmit))
            return req.answer(2001, origin_host=GOOD, origin_realm=REALM,
                              auth_application_id=4, cc_request_type=req.cc_request_type,
                              cc_request_number=req.cc_request_number)

        good = Node(NodeConfig(origin_host=GOOD, origin_realm=REALM, auth_apps=[4],
                               listen=[ListenConfig(port=0)]))
        good.add_handler(4, answer, CMD_CCR)
        await good.start()
        client = Node(NodeConfig(
            origin_host=CLIENT, origin_realm=REALM, auth_apps=[4], tw=MIN_TW,
            reconnect_min=30.0, reconnect_max=30.0,  # no reconnect inside the test
            peers=[PeerConfig(SILENT, port=silent_port, realm=REALM),
                   PeerConfig(GOOD, port=good.listen_addresses[0][2], realm=REALM)],
            routes=[RouteConfig(REALM, [SILENT, GOOD])],
        ))  # fmt: skip
        await client.start()
        try:
            await client.wait_open(SILENT, timeout=10)
            await client.wait_open(GOOD, timeout=10)
            t_open = time.monotonic()
            # requests routed by realm: the selector spreads them over both peers
            reqs = [make_ccr(CLIENT, REALM, REALM, session_id=f"{CLIENT};{i}", number=0,
                             end_to_end=0) for i in range(20)]
            futs = [asyncio.ensure_future(client.request(r, timeout=30)) for r in reqs]
            states: list[tuple[float, str]] = []
            end = t_open + 4 * (MIN_TW + JITTER) + 3 * SLACK
            while time.monotonic() < end:
                peer = client.peers.get(SILENT)
                st = "GONE" if peer is None or not peer.is_open else peer.watchdog_state
                if not states or states[-1][1] != st:
                    states.append((time.monotonic(), st))
                if st in ("DOWN", "GONE"):
                    break
                await asyncio.sleep(0.05)
            answers = await asyncio.gather(*futs, return_exceptions=True)
            return {"t_open": t_open, "seen": seen, "states": states, "answers": answers,
                    "good_seen": good_seen}
        finally:
            await client.stop(timeout=2)
            await good.stop(timeout=2)
            silent.close()

    r = asyncio.run(asyncio.wait_for(main(), 55))
    states = r["states"]
    names = [s for _, s in states]
    assert "SUSPECT" in names, states
    assert names[-1] in ("DOWN", "GONE"), states
    t_suspect = next(t for t, s in states if s == "SUSPECT")
    t_down = states[-1][0]
    dwrs = [t for t, code, _ in r["seen"] if code == CMD_DWR]
    assert dwrs, f"the silent peer never got a DWR: {r['seen']}"
    lo, hi = MIN_TW - JITTER, MIN_TW + JITTER + SLACK
    # the DWR goes out Tw after the CEA (the last thing heard), SUSPECT Tw after the DWR,
    # DOWN Tw after that
    assert lo - SLACK <= dwrs[0] - r["t_open"] <= hi, (dwrs[0] - r["t_open"], states)
    assert lo <= t_suspect - dwrs[0] <= hi, (t_suspect - dwrs[0], states)
    assert lo <= t_down - t_suspect <= hi, (t_down - t_suspect, states)
    # every request answered 2001 by the good peer; those the silent peer swallowed were
    # failed over with the T flag, none before SUSPECT
    ccrs_to_silent = [t for t, code, _ in r["seen"] if code == CMD_CCR]
    assert ccrs_to_silent, "no request was routed to the silent peer; the test proves nothing"
    bad = [a for a in r["answers"] if not isinstance(a, Message) or result_code(a) != 2001]
    assert not bad, bad
    retransmitted = [sid for sid, t in r["good_seen"] if t]
    assert len(retransmitted) == len(ccrs_to_silent), (retransmitted, ccrs_to_silent)
