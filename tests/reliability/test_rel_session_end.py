"""`chargegw run` forgets a session's shard route once its CCR-T is answered; a client that
resends that CCR-T afterwards (no Subscription-Id, as CCR-U/T usually are, and a Session-Id
whose own shard is not the account's) still gets the original answer from the session's
shard, and the ledger holds one debit per CC-Request-Number."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from chargegw.codec.commands import CreditControlRequest
from chargegw.loadtest import reliability as rel
from chargegw.loadtest.soak import gateway_tables
from chargegw.sharding import DEFAULT_SHARDS, shard_of

pytestmark = pytest.mark.timeout(120)

MSISDN = "4670000000077"


def ccr(
    sid: str, rtype: int, number: int, *, sub: bool, used: int = 0, requested: int = 0
) -> bytes:
    """A Gy CCR; the Subscription-Id only when `sub` (a CCR-I carries it, CCR-U/T need not)."""
    mscc: dict[str, Any] = {"rating_group": 100}
    if requested:
        mscc["requested_service_unit"] = {"cc_total_octets": requested}
    if used:
        mscc["used_service_unit"] = [{"cc_total_octets": used}]
    extra: dict[str, Any] = {}
    if sub:
        extra["subscription_id"] = [{"subscription_id_type": 0, "subscription_id_data": MSISDN}]
    req = CreditControlRequest(
        session_id=sid, origin_host="rel.localdomain", origin_realm="localdomain",
        destination_realm="localdomain", auth_application_id=rel.GY,
        service_context_id="32251@3gpp.org", cc_request_type=rtype, cc_request_number=number,
        multiple_services_credit_control=[mscc], **extra,
    )  # fmt: skip
    req.hop_by_hop = req.end_to_end = 1
    return req.encode()


def session_id() -> str:
    """One whose own shard is not the account's: a resend routed by it lands elsewhere."""
    base = f"rel.localdomain;{int(time.time())};end"
    i = 0
    while shard_of(f"{base}{i}", DEFAULT_SHARDS) == shard_of(MSISDN, DEFAULT_SHARDS):
        i += 1
    return f"{base}{i}"


async def _session(gw: rel.Gateway, sid: str, out: dict[str, Any]) -> None:
    status = f"ipc://{gw.data_dir}/status.ipc"
    c = await rel.Client.connect(gw.port)
    try:
        steps = [
            (1, 0, True, 0, 1_000_000),
            (2, 1, False, 1_000_000, 1_000_000),
            (3, 2, False, 1_000_000, 0),
        ]
        for rtype, number, sub, used, requested in steps:
            frame = ccr(sid, rtype, number, sub=sub, used=used, requested=requested)
            out[rtype] = await c.request(rel.with_ids(frame, c.next_hbh(), 0x7000_0000 + number))
            out[f"routes_after_{rtype}"] = gateway_tables(status).get("session_routes")
        last = ccr(sid, 3, 2, sub=False, used=1_000_000)
        out["resent"] = await c.request(rel.with_ids(last, c.next_hbh(), 0x7100_0002))
        out["routes_after_resend"] = gateway_tables(status).get("session_routes")
    finally:
        c.close()


def test_resent_ccr_t_after_the_route_was_forgotten_gets_the_original_answer(
    tmp_path: Path,
) -> None:
    sid = session_id()
    out: dict[str, Any] = {}
    with rel.Gateway(tmp_path, workers=2) as gw:
        asyncio.run(_session(gw, sid, out))
        debits = sorted(n for s, n, _k, _a in gw.debits() if s == sid)
        ledger = gw.ledger()
        double = gw.double_charges()
    for rtype in (1, 2, 3):
        assert rel.result_code(out[rtype]) == 2001, (rtype, rel.answer_essence(out[rtype]))
    assert out["routes_after_1"] == out["routes_after_2"] == 1  # remembered for the session
    assert out["routes_after_3"] == 0  # forgotten with the CCR-T's answer
    assert rel.answer_essence(out["resent"])[1:] == rel.answer_essence(out[3])[1:]
    assert out["routes_after_resend"] == 0  # the resend's route is forgotten with it too
    assert debits == [1, 2] and not double
    assert ledger.get("ok"), ledger.get("problems")
