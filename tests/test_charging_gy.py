"""Gy/Ro: the Credit-Control application with a real SQLite store and a fake worker context."""

from __future__ import annotations

import time

import pytest

from chargegw.codec import Message, commands
from chargegw.workers.charging import config as cfgmod
from chargegw.workers.charging.gy import CreditControlApp
from chargegw.workers.charging.store import ledger_check
from chargegw.workers.charging.testing import FakeWorkerContext, answer, free_port

MSISDN = "4670000000123"


def make_app(tmp_path, config=None):
    ctx = FakeWorkerContext(str(tmp_path), config or {})
    app = CreditControlApp()
    app.setup(ctx)
    return app, ctx


def ccr(rtype, number, sid="client;1;1", msisdn=MSISDN, hbh=7, **avps):
    base = dict(
        session_id=sid,
        origin_host="client.test",
        origin_realm="test",
        destination_realm="ocs",
        auth_application_id=4,
        service_context_id="32251@3gpp.org",
        cc_request_type=rtype,
        cc_request_number=number,
        subscription_id=[{"subscription_id_type": 0, "subscription_id_data": msisdn}],
    )
    base.update(avps)
    for k in [k for k, v in base.items() if v is None]:
        del base[k]
    req = commands.CreditControlRequest(**base)
    req.hop_by_hop = req.end_to_end = hbh
    return Message.decode(req.encode())


def rt(app, req):
    """Handle and round-trip the answer through the wire format, as the runtime would."""
    return Message.decode(answer(app, req, None).encode())


def balance(app, acct):
    return app.store.get_account(acct).account


def test_erl_client_style_session_succeeds_with_the_demo_set(tmp_path):
    app, _ = make_app(tmp_path)
    a = rt(app, ccr(1, 0, requested_service_unit={"cc_time": 600}))
    assert a.result_code == 2001 and a.session_id == "client;1;1"
    assert a.origin_host == "ocs.test" and a.origin_realm == "test" and a.auth_application_id == 4
    assert int(a.cc_request_type) == 1 and a.cc_request_number == 0
    assert a.granted_service_unit.cc_time == 600 and a.validity_time == 3600
    a = rt(
        app, ccr(2, 1, requested_service_unit={"cc_time": 600}, used_service_unit=[{"cc_time": 60}])
    )
    assert a.result_code == 2001 and a.cc_request_number == 1
    a = rt(app, ccr(3, 2, used_service_unit=[{"cc_time": 60}], termination_cause=1))
    assert a.result_code == 2001 and int(a.cc_request_type) == 3 and a.granted_service_unit is None
    acct = balance(app, MSISDN)
    # demo: 100.00 on first use; default single-service tariff 0.01 per started minute
    assert acct.balance == 100_000_000 - 2 * 10_000 and acct.reserved == 0
    rep = ledger_check(app.store, app.rater.tariff_by_key)
    assert rep.ok and rep.off_tariff == 0 and rep.debits == 20_000


def test_mscc_results_per_rating_group(tmp_path):
    app, _ = make_app(tmp_path)
    msccs = [
        {"rating_group": 1, "requested_service_unit": {}},
        {"rating_group": 2, "requested_service_unit": {"cc_time": 120}},
        {"rating_group": 999, "requested_service_unit": {}},
    ]
    a = rt(app, ccr(1, 0, multiple_services_credit_control=msccs))
    assert a.result_code == 2001
    by_rg = {m.rating_group: m for m in a.multiple_services_credit_control}
    assert (
        by_rg[1].result_code == 2001 and by_rg[1].granted_service_unit.cc_total_octets == 10_485_760
    )
    assert by_rg[2].result_code == 2001 and by_rg[2].granted_service_unit.cc_time == 120
    assert by_rg[999].result_code == 5031 and by_rg[999].granted_service_unit is None
    usage = [
        {
            "rating_group": 1,
            "used_service_unit": [{"cc_input_octets": 1_000_000, "cc_output_octets": 1_100_000}],
        },
        {"rating_group": 2, "used_service_unit": [{"cc_time": 61}]},
    ]
    a = rt(app, ccr(3, 1, multiple_services_credit_control=usage))
    assert a.result_code == 2001
    # RG1: 2.1 MB -> 3 started MiB x 0.01; RG2: 61 s -> 2 started minutes x 0.01
    assert balance(app, MSISDN).balance == 100_000_000 - 30_000 - 20_000
    assert ledger_check(app.store).ok


def test_unrated_service_gets_5031_with_failed_avp(tmp_path):
    app, _ = make_app(tmp_path)
    a = rt(
        app,
        ccr(
            1,
            0,
            multiple_services_credit_control=[{"rating_group": 77, "requested_service_unit": {}}],
        ),
    )
    assert a.result_code == 5031
    assert a.failed_avp[0].rating_group == 77


def test_unknown_blocked_and_empty_accounts(tmp_path):
    app, _ = make_app(tmp_path)
    rsu = {"requested_service_unit": {"cc_time": 60}}
    assert rt(app, ccr(1, 0, sid="u", msisdn="4999000000000", **rsu)).result_code == 5030
    assert rt(app, ccr(1, 0, sid="b", msisdn="4680000000004", **rsu)).result_code == 4010
    a = rt(app, ccr(1, 0, sid="e", msisdn="4680000000003", **rsu))
    assert a.result_code == 4012 and a.granted_service_unit is None
    a = rt(
        app,
        ccr(
            1,
            0,
            sid="m",
            msisdn="4680000000003",
            multiple_services_credit_control=[{"rating_group": 2, "requested_service_unit": {}}],
        ),
    )
    assert a.result_code == 4012 and a.multiple_services_credit_control[0].result_code == 4012


def test_last_grant_carries_final_unit_indication(tmp_path):
    app, _ = make_app(tmp_path)
    # demo-low has 0.05: five minutes at 0.01 per minute
    a = rt(app, ccr(1, 0, msisdn="4680000000002", requested_service_unit={"cc_time": 600}))
    assert a.result_code == 2001 and a.granted_service_unit.cc_time == 300
    assert int(a.final_unit_indication.final_unit_action) == 0
    app2, _ = make_app(
        tmp_path / "r",
        {"final_unit": {"action": "redirect", "redirect_address": "http://topup.example/"}},
    )
    a = rt(
        app2,
        ccr(
            1,
            0,
            msisdn="4680000000002",
            multiple_services_credit_control=[{"rating_group": 2, "requested_service_unit": {}}],
        ),
    )
    fui = a.multiple_services_credit_control[0].final_unit_indication
    assert int(fui.final_unit_action) == 1
    assert fui.redirect_server.redirect_server_address == "http://topup.example/"
    assert int(fui.redirect_server.redirect_address_type) == 2


def test_quota_management_avps_from_config(tmp_path):
    conf = {
        "quota": {
            "validity_time": 900,
            "time_quota_threshold": 30,
            "volume_quota_threshold": 1000,
            "quota_holding_time": 120,
        }
    }
    app, _ = make_app(tmp_path, conf)
    msccs = [
        {"rating_group": 1, "requested_service_unit": {}},
        {"rating_group": 2, "requested_service_unit": {}},
    ]
    a = rt(app, ccr(1, 0, multiple_services_credit_control=msccs))
    by_rg = {m.rating_group: m for m in a.multiple_services_credit_control}
    assert by_rg[1].validity_time == 900 and by_rg[1].volume_quota_threshold == 1000
    assert by_rg[1].time_quota_threshold is None
    assert by_rg[2].time_quota_threshold == 30 and by_rg[2].quota_holding_time == 120


def test_retransmission_gets_the_same_answer_and_is_charged_once(tmp_path):
    app, _ = make_app(tmp_path)
    rt(app, ccr(1, 0, requested_service_unit={"cc_time": 600}))
    upd = ccr(2, 1, requested_service_unit={"cc_time": 600}, used_service_unit=[{"cc_time": 600}])
    first = answer(app, upd, None).encode()
    before = balance(app, MSISDN).balance
    again = ccr(2, 1, requested_service_unit={"cc_time": 600}, used_service_unit=[{"cc_time": 600}])
    again.is_retransmit = True
    assert answer(app, again, None).encode() == first
    assert balance(app, MSISDN).balance == before == 100_000_000 - 100_000
    late = rt(app, ccr(2, 0, requested_service_unit={"cc_time": 600}))
    assert late.result_code == 5004 and late.failed_avp[0].cc_request_number == 0
    assert (
        rt(app, ccr(2, 5, sid="never-opened", used_service_unit=[{"cc_time": 1}])).result_code
        == 5002
    )


def test_bad_input_gets_5005_and_5004(tmp_path):
    app, _ = make_app(tmp_path)
    a = rt(app, ccr(1, 0, service_context_id=None))
    assert a.result_code == 5005 and a.failed_avp[0].service_context_id is not None
    a = rt(app, ccr(9, 0))
    assert a.result_code == 5004 and a.failed_avp[0].cc_request_type == 9
    a = rt(app, ccr(4, 0))
    assert a.result_code == 5005 and a.failed_avp[0].requested_action is not None
    a = rt(app, ccr(4, 0, requested_action=9))
    assert a.result_code == 5004
    money = {"cc_money": {"unit_value": {"value_digits": -5}}}
    a = rt(app, ccr(1, 0, requested_service_unit=money))
    assert a.result_code == 5004 and a.failed_avp[0].requested_service_unit is not None
    assert balance(app, "demo-1").reserved == 0


def test_events(tmp_path):
    app, _ = make_app(tmp_path, {"refunds": {"enabled": True, "peers": ["client.test"]}})
    sms = {
        "multiple_services_credit_control": [
            {"rating_group": 3, "requested_service_unit": {"cc_service_specific_units": 2}}
        ]
    }
    a = rt(app, ccr(4, 0, sid="ev1", requested_action=0, **sms))
    assert a.result_code == 2001
    assert a.multiple_services_credit_control[0].granted_service_unit.cc_service_specific_units == 2
    assert balance(app, MSISDN).balance == 100_000_000 - 100_000
    a2 = answer(app, ccr(4, 0, sid="ev1", requested_action=0, **sms), None)
    assert a2.result_code == 2001 and balance(app, MSISDN).balance == 100_000_000 - 100_000
    a = rt(app, ccr(4, 0, sid="ev2", requested_action=1, cc_correlation_id=b"ev1", **sms))
    assert a.result_code == 2001 and balance(app, MSISDN).balance == 100_000_000
    # all of ev1 is refunded: a second refund of it gives nothing back
    a = rt(app, ccr(4, 0, sid="ev2b", requested_action=1, cc_correlation_id=b"ev1", **sms))
    assert a.result_code == 5004 and a.failed_avp[0].cc_correlation_id == b"ev1"
    assert balance(app, MSISDN).balance == 100_000_000
    a = rt(app, ccr(4, 0, sid="ev3", requested_action=3, **sms))
    assert a.cost_information.unit_value.value_digits == 100_000
    assert a.cost_information.unit_value.exponent == -6 and a.cost_information.currency_code == 978
    a = rt(app, ccr(4, 0, sid="ev4", requested_action=2, msisdn="4680000000002", **sms))
    assert int(a.check_balance_result) == 1  # 0.05 left, 0.10 asked
    a = rt(app, ccr(4, 0, sid="ev5", requested_action=2, **sms))
    assert int(a.check_balance_result) == 0
    rep = ledger_check(app.store)
    assert rep.ok and rep.refunds == 100_000


def test_store_unavailable_answers_3004_quickly(tmp_path):
    pytest.importorskip("redis")
    conf = {
        "store": {"backend": "redis", "url": f"redis://127.0.0.1:{free_port()}/0", "timeout": 0.2},
        "demo": {"enabled": False},
    }
    app, ctx = make_app(tmp_path, conf)
    t0 = time.monotonic()
    a = answer(app, ccr(1, 0, requested_service_unit={}), None)
    assert a.result_code == 3004 and a.is_error
    assert time.monotonic() - t0 < 2.0


def test_sweep_releases_silent_sessions(tmp_path):
    app, ctx = make_app(tmp_path, {"tcc": 0.05, "sweep_interval": 0.01})
    rt(app, ccr(1, 0, requested_service_unit={"cc_time": 600}))
    assert balance(app, MSISDN).reserved == 100_000
    time.sleep(0.2)
    ctx.run_timers()
    assert balance(app, MSISDN).reserved == 0
    assert rt(app, ccr(2, 1, used_service_unit=[{"cc_time": 1}])).result_code == 5002
    assert any(cb.__name__ == "_sweep_tick" for _, cb in ctx.timers)  # it re-arms itself


def test_topup_sends_rar_and_blocking_sends_asr(tmp_path):
    app, ctx = make_app(tmp_path)
    rt(app, ccr(1, 0, sid="low", msisdn="4680000000002", requested_service_unit={"cc_time": 600}))
    rt(app, ccr(1, 0, sid="rich", msisdn="4680000000001", requested_service_unit={"cc_time": 600}))
    app.store.topup("demo-low", 1_000_000, time.time())
    ctx.run_timers()
    rars = [r for r, _ in ctx.sent if r.code == 258]
    assert len(rars) == 1 and rars[0].session_id == "low" and rars[0].app_id == 4
    assert rars[0].destination_host == "client.test" and rars[0].auth_application_id == 4
    assert [peer for r, peer in ctx.sent] == ["client.test"]
    app.store.set_blocked("demo-1", True)
    ctx.run_timers()
    asrs = [r for r, _ in ctx.sent if r.code == 274]
    assert [r.session_id for r in asrs] == ["rich"] and asrs[0].app_id == 4


def test_an_undelivered_rar_is_tried_again_until_an_answer_settles_it(tmp_path):
    from chargegw.workers.api import SendError
    from chargegw.workers.charging.gy import NOTICE_RETRY_S

    script = ["lost", 3004, 2001]  # no route, then the peer is busy, then delivered

    def respond(req):
        what = script.pop(0) if script else 2001
        if what == "lost":
            raise SendError("no connection to client.test")
        return req.answer(what)

    app, ctx = make_app(tmp_path)
    ctx.responder = respond
    rt(app, ccr(1, 0, sid="low", msisdn="4680000000002", requested_service_unit={"cc_time": 600}))
    app.store.topup("demo-low", 1_000_000, time.time())
    delays = []
    for _ in range(6):
        delays += [d for d, cb in ctx.timers if cb.__name__ == "<lambda>"]
        ctx.run_timers()
    rars = [r for r, _ in ctx.sent if r.code == 258]
    assert [r.session_id for r in rars] == ["low"] * 3  # the third try was answered 2001
    assert delays == list(NOTICE_RETRY_S[:2])  # one retry each after the loss and the 3004


def test_a_rar_answered_5002_or_never_is_not_tried_forever(tmp_path):
    from chargegw.workers.api import SendError
    from chargegw.workers.charging.gy import NOTICE_RETRY_S

    def gone(req):
        raise SendError("no connection to client.test")

    for responder, tries in ((lambda req: req.answer(5002), 1), (gone, 1 + len(NOTICE_RETRY_S))):
        app, ctx = make_app(tmp_path / str(tries))
        ctx.responder = responder
        rt(app, ccr(1, 0, sid="low", msisdn="4680000000002",
                    requested_service_unit={"cc_time": 600}))  # fmt: skip
        app.store.topup("demo-low", 1_000_000, time.time())
        for _ in range(3 * len(NOTICE_RETRY_S)):
            ctx.run_timers()
        assert len([r for r, _ in ctx.sent if r.code == 258]) == tries


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(cfgmod.ConfigError, match=r"\$\.quota\.validity_time"):
        make_app(tmp_path, {"quota": {"validity_time": "soon"}})
    with pytest.raises(cfgmod.ConfigError, match=r"\$\.tariffs\[0\]"):
        make_app(tmp_path, {"tariffs": [{"rating_group": 1, "price": "-1"}]})
    with pytest.raises(cfgmod.ConfigError, match="unknown field"):
        make_app(tmp_path, {"quotas": {}})


def test_demo_set_can_be_switched_off(tmp_path):
    app, _ = make_app(tmp_path, {"demo": {"enabled": False}})
    assert rt(app, ccr(1, 0, requested_service_unit={})).result_code == 5030
    assert app.store.get_account("demo-1") is None


def test_the_decision_is_pure_no_store_no_loop():
    """(CCR view, peer, now) -> store operation; money rules on plain state; outcome -> CCA."""
    from chargegw.workers.charging import ccr as reader
    from chargegw.workers.charging import core, decide
    from chargegw.workers.charging.config import GyConfig
    from chargegw.workers.charging.render import Renderer

    cfg = GyConfig()
    policy = decide.Policy(cfg)
    v = reader.read(ccr_raw := ccr(1, 0, requested_service_unit={"cc_time": 600}).encode())
    pending = decide.prepare(v, "client.test", policy, now=1000.0)
    assert isinstance(pending, decide.Pending) and pending.op.peers == ("client.test",)
    assert [s.requested for s in pending.op.services] == [600]
    account = core.Account("acct", balance=1_000_000)
    assert core.precheck(pending.op, None) is None
    applied = core.apply_cc(pending.op, account, None)
    assert account.reserved == 100_000 and applied.session.resv  # 10 minutes at 0.01
    render = Renderer(cfg, "ocs.test", "test")
    ans = Message.decode(render.cca(v, render.outcome(v, pending.rtype, applied.outcome,
                                                     pending.services)))  # fmt: skip
    assert ans.result_code == 2001 and ans.granted_service_unit.cc_time == 600
    assert ans.session_id == Message.decode(ccr_raw).session_id
