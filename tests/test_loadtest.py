"""The load generator against a recording fake OCS built from the codec alone."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest

from chargegw.codec import FrameReader, Message
from chargegw.loadtest.generator import LoadConfig, run_load


class FakeOcs(asyncio.Protocol):
    def __init__(self, seen: list[Message], refuse_msisdn: str | None) -> None:
        self.reader = FrameReader()
        self.seen = seen
        self.refuse = refuse_msisdn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t = transport

    def data_received(self, data: bytes) -> None:
        for frame in self.reader.feed(data):
            m = Message.decode(frame)
            m.validate()  # every request the generator sends must satisfy its grammar
            kw = {"origin_host": "ocs.localdomain", "origin_realm": "localdomain"}
            if m.code == 272:
                self.seen.append(m)
                msisdn = m.subscription_id[0].subscription_id_data
                rc = 4012 if msisdn == self.refuse else 2001
                ans = m.answer(
                    rc,
                    auth_application_id=4,
                    cc_request_type=m.cc_request_type,
                    cc_request_number=m.cc_request_number,
                    **kw,
                )
            elif m.code == 257:
                ans = m.answer(
                    2001, host_ip_address=["127.0.0.1"], vendor_id=0, product_name="fake", **kw
                )
            else:
                ans = m.answer(2001, **kw)
            self.t.write(ans.encode())  # type: ignore[attr-defined]


async def _run(cfg: LoadConfig, refuse: str | None = None) -> tuple[dict, list[Message]]:
    seen: list[Message] = []
    server = await asyncio.get_running_loop().create_server(
        lambda: FakeOcs(seen, refuse), "127.0.0.1", 0
    )
    cfg.port = server.sockets[0].getsockname()[1]
    try:
        summary = await run_load(cfg)
    finally:
        server.close()
        await server.wait_closed()
    return summary, seen


def test_sessions_follow_rfc_sequencing() -> None:
    cfg = LoadConfig(sessions=40, updates=2, concurrency=7, subscribers=5, progress=0)
    summary, seen = asyncio.run(_run(cfg))
    assert summary["sent"] == 40 * 4 == summary["answered"] == summary["ok_2001"]
    assert summary["sessions_completed"] == 40
    by_session: dict[str, list[tuple[int, int]]] = defaultdict(list)
    msisdns = set()
    for m in seen:
        by_session[m.session_id].append((int(m.cc_request_number), int(m.cc_request_type)))
        msisdns.add(m.subscription_id[0].subscription_id_data)
    assert len(by_session) == 40
    for reqs in by_session.values():
        assert reqs == [(0, 1), (1, 2), (2, 2), (3, 3)]
    assert msisdns == {str(4670000000000 + i) for i in range(5)}
    hbh = [m.hop_by_hop for m in seen]
    assert len(set(hbh)) == len(hbh)


def test_refused_session_stops_after_initial() -> None:
    cfg = LoadConfig(sessions=10, updates=1, concurrency=3, subscribers=2, progress=0)
    summary, seen = asyncio.run(_run(cfg, refuse="4670000000001"))
    # sessions 1,3,5,7,9 are refused at CCR-I and send nothing more
    assert summary["result_codes"] == {"2001": 15, "4012": 5}
    assert summary["sessions_completed"] == 5
    refused = [m for m in seen if m.subscription_id[0].subscription_id_data == "4670000000001"]
    assert all(int(m.cc_request_type) == 1 for m in refused)


def test_refused_connection_is_reported() -> None:
    async def go() -> None:
        with pytest.raises(OSError):
            await run_load(LoadConfig(port=1, progress=0, timeout=1))

    asyncio.run(go())
