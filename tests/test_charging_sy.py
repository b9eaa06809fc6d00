"""Sy: SLR/SLA, STR/STA, and the SNR a Gy debit triggers when a counter crosses a threshold."""

from __future__ import annotations

import asyncio

import pytest

from chargegw.codec import Message, commands
from chargegw.workers.charging.gy import CreditControlApp
from chargegw.workers.charging.sy import SpendingLimitApp
from chargegw.workers.charging.testing import FakeWorkerContext, answer

SY = 16777302
SY_CONF = {
    "counters": [
        {
            "id": "monthly",
            "thresholds": [
                {"at": "0.02", "status": "near-limit"},
                {"at": "0.05", "status": "limit-reached"},
            ],
        },
        {"id": "other", "base_status": "ok"},
    ]
}


def apps(tmp_path, window=0.0):
    ctx = FakeWorkerContext(str(tmp_path), {"commit_window_ms": window} if window else {})
    gy = CreditControlApp()
    gy.setup(ctx)
    sy_ctx = FakeWorkerContext(str(tmp_path), SY_CONF)
    sy = SpendingLimitApp()
    sy.setup(sy_ctx)
    return gy, sy, ctx


def slr(rtype=0, sid="pcrf;1", counters=(), msisdn="4670000000777", **kw):
    args = dict(
        session_id=sid,
        origin_host="pcrf.test",
        origin_realm="test",
        destination_realm="ocs",
        auth_application_id=SY,
        sl_request_type=rtype,
        subscription_id=[{"subscription_id_type": 0, "subscription_id_data": msisdn}],
        policy_counter_identifier=list(counters),
    )
    args.update(kw)
    return Message.decode(commands.SpendingLimitRequest(**args).encode())


def str_(sid="pcrf;1"):
    return Message.decode(
        commands.SySessionTerminationRequest(
            session_id=sid, origin_host="pcrf.test", origin_realm="test", destination_realm="ocs",
            auth_application_id=SY, termination_cause=1,
        ).encode()
    )  # fmt: skip


def ccr(rtype, number, used=0, sid="gy;1"):
    args = dict(
        session_id=sid, origin_host="pgw.test", origin_realm="test", destination_realm="ocs",
        auth_application_id=4, service_context_id="32251@3gpp.org", cc_request_type=rtype,
        cc_request_number=number,
        subscription_id=[{"subscription_id_type": 0, "subscription_id_data": "4670000000777"}],
    )  # fmt: skip
    if rtype != 3:
        args["requested_service_unit"] = {"cc_time": 60}
    if used:
        args["used_service_unit"] = [{"cc_time": used}]
    return Message.decode(commands.CreditControlRequest(**args).encode())


def reports(ans):
    return {
        r.policy_counter_identifier: r.policy_counter_status
        for r in ans.policy_counter_status_report
    }


def test_slr_reports_all_or_listed_counters(tmp_path):
    gy, sy, _ = apps(tmp_path)
    a = sy.handle(slr(), None)
    assert a.result_code == 2001 and a.auth_application_id == SY
    assert reports(a) == {"monthly": "valid", "other": "ok"}
    a = sy.handle(slr(rtype=1, counters=["monthly"]), None)
    assert reports(a) == {"monthly": "valid"}
    assert [c.id for c in sy.store.sy_get("pcrf;1").counters] == ["monthly"]
    a = sy.handle(slr(sid="pcrf;2", counters=["nope"]), None)
    assert a.result_code is None and a.experimental_result.experimental_result_code == 5570
    assert sy.handle(slr(rtype=1, sid="pcrf;9"), None).result_code == 5002
    assert sy.handle(slr(sid="pcrf;3", msisdn="1234"), None).result_code == 5030


async def charged(gy, req):
    """One CCR through Gy on the running loop, awaited when its answer waits for a commit
    (a commit window), and checked: a debit that was not made would prove nothing."""
    a = answer(gy, req, None)
    if asyncio.iscoroutine(a):
        a = await a
    assert a is not None and a.result_code == 2001, a
    return a


@pytest.mark.parametrize("window", [0.0, 2.0])
def test_gy_debit_across_a_threshold_sends_snr_to_the_pcrf(tmp_path, window):
    gy, sy, ctx = apps(tmp_path, window)
    assert sy.handle(slr(counters=["monthly"]), None).result_code == 2001

    async def run():
        await charged(gy, ccr(1, 0))
        await charged(gy, ccr(2, 1, used=60))  # spent 0.01: still valid
        await asyncio.sleep(0)
        assert ctx.sent == []
        await charged(gy, ccr(2, 2, used=60))  # 0.02: near-limit
        await asyncio.sleep(0.01)
        assert len(ctx.sent) == 1
        snr, peer = ctx.sent[0]
        assert peer == "pcrf.test" and snr.code == 8388636 and snr.app_id == SY
        assert snr.session_id == "pcrf;1" and snr.destination_host == "pcrf.test"
        assert reports(snr) == {"monthly": "near-limit"}
        await charged(gy, ccr(3, 3, used=180))  # 0.05: limit-reached
        await asyncio.sleep(0.01)
        assert reports(ctx.sent[-1][0]) == {"monthly": "limit-reached"} and len(ctx.sent) == 2

    asyncio.run(run())
    a = sy.handle(slr(rtype=1, counters=["monthly"]), None)
    assert reports(a) == {"monthly": "limit-reached"}


@pytest.mark.parametrize("window", [0.0, 2.0])
def test_str_ends_the_subscription(tmp_path, window):
    gy, sy, ctx = apps(tmp_path, window)
    sy.handle(slr(), None)
    assert sy.handle(str_(), None).result_code == 2001
    assert sy.store.sy_get("pcrf;1") is None
    assert sy.handle(str_(), None).result_code == 5002

    async def run():
        await charged(gy, ccr(1, 0))
        await charged(gy, ccr(3, 1, used=600))
        await asyncio.sleep(0.01)

    asyncio.run(run())
    assert ctx.sent == []


def test_missing_sl_request_type_is_5005(tmp_path):
    _, sy, _ = apps(tmp_path)
    req = slr()
    req.remove("SL-Request-Type")
    a = Message.decode(sy.handle(Message.decode(req.encode()), None).encode())
    assert a.result_code == 5005 and a.failed_avp.sl_request_type == 0


def test_a_charging_store_outage_is_3004_and_counted_as_the_workers_busy_answer(tmp_path):
    from chargegw.workers.charging.store import StoreUnavailable
    from chargegw.workers.stats import STATS

    _gy, sy, _ctx = apps(tmp_path)

    def down(*_a, **_k):
        raise StoreUnavailable("disk gone")

    sy.store.sy_get = down  # type: ignore[union-attr]
    sy.store.sy_put = down  # type: ignore[union-attr]
    sy.store.provision = down  # type: ignore[union-attr]
    busy, errors = STATS.busy, STATS.errors
    a = sy.handle(slr(sid="pcrf;down"), None)
    assert a.result_code == 3004
    assert (STATS.busy - busy, STATS.errors - errors) == (1, 1)
