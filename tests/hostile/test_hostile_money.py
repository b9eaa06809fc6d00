"""Hostile peers against the Gy/Ro money path (issue 8: Money, Identity, Protocol).

Each case drives the Credit-Control application the way the worker runtime does (its one
entry point `handle_batch`, with a RequestContext naming the connection's peer), then reconciles the store with `chargegw ledger check`. Where a
well-behaved peer shares the gateway, its traffic is checked to be untouched.
"""

from __future__ import annotations

import asyncio
import shutil
import struct
import time

import pytest

from chargegw.codec import Avp, Message, commands
from chargegw.workers import ledger_cli
from chargegw.workers.api import Incoming, RequestContext
from chargegw.workers.charging import config as cfgmod
from chargegw.workers.charging.gy import CreditControlApp
from chargegw.workers.charging.sqlite_store import SqliteStore
from chargegw.workers.charging.store import AccountRow, StoreUnavailable, ledger_check
from chargegw.workers.charging.sy import SpendingLimitApp
from chargegw.workers.charging.testing import FakeWorkerContext, RedisServer, answer

GOOD = "ctf-a.example"
EVIL = "rogue.example"
MSISDN = "4670000000555"
OTHER = "4670000000556"
U64 = 2**64 - 1
U32 = 2**32 - 1


def make_app(tmp_path, config=None):
    ctx = FakeWorkerContext(str(tmp_path), config or {})
    app = CreditControlApp()
    app.setup(ctx)
    return app, ctx


def rctx(peer, deadline=None):
    return RequestContext(peer=peer, deadline=time.time() + 5 if deadline is None else deadline)


def ccr_bytes(rtype, number, sid, msisdn=MSISDN, origin=GOOD, hbh=1, **avps) -> bytes:
    base = dict(
        session_id=sid,
        origin_host=origin,
        origin_realm="example",
        destination_realm="ocs",
        auth_application_id=4,
        service_context_id="32251@3gpp.org",
        cc_request_type=rtype,
        cc_request_number=number,
        subscription_id=[{"subscription_id_type": 0, "subscription_id_data": msisdn}],
    )
    base.update(avps)
    req = commands.CreditControlRequest(**base)
    req.hop_by_hop = req.end_to_end = hbh
    return req.encode()


def ask(app, raw, peer=GOOD, deadline=None) -> Message:
    """One request through `handle_batch`, answered as the runtime would send it."""
    out = batch(app, [raw], [rctx(peer, deadline)])[0]
    assert type(out) is bytes
    return Message.decode(out)


def batch(app, raws, ctxs):
    """`handle_batch` on raw requests, as the runtime calls it."""
    return app.handle_batch([Incoming(r, c) for r, c in zip(raws, ctxs, strict=True)])


def acct(app, ident):
    info = app.store.get_account(ident)
    return None if info is None else info.account


def ledger_ok(tmp_path) -> bool:
    """`chargegw ledger check` on the test's data directory."""
    return ledger_cli.main(["check", "--data-dir", str(tmp_path)]) == 0


def well_behaved_session(app, sid="good;1", msisdn=OTHER) -> None:
    """A normal session from the good peer: granted, debited 0.02 and closed."""
    before = acct(app, msisdn).balance if acct(app, msisdn) else 100_000_000
    a = ask(app, ccr_bytes(1, 0, sid, msisdn, requested_service_unit={"cc_time": 120}))
    assert a.result_code == 2001 and a.granted_service_unit.cc_time == 120
    a = ask(app, ccr_bytes(3, 1, sid, msisdn, used_service_unit=[{"cc_time": 120}]))
    assert a.result_code == 2001
    assert acct(app, msisdn).balance == before - 20_000 and acct(app, msisdn).reserved == 0


# -- refunds -------------------------------------------------------------------------------


def test_refund_of_max_cc_time_from_any_peer_is_refused_by_default(tmp_path, capsys):
    app, _ = make_app(tmp_path)
    refund = dict(requested_action=1, requested_service_unit={"cc_time": U32})
    for peer in (EVIL, GOOD):  # neither is allowed: refunds are off by default
        a = ask(app, ccr_bytes(4, 0, f"{peer};r", **refund), peer=peer)
        assert a.result_code == 5003 and a.granted_service_unit is None
    # the codec path refuses it too
    a = answer(app, Message.decode(ccr_bytes(4, 0, "c;r", **refund)), rctx(EVIL))
    assert a.result_code == 5003
    assert acct(app, MSISDN) is None  # no account was even provisioned
    well_behaved_session(app)
    assert ledger_ok(tmp_path)
    assert "ledger OK" in capsys.readouterr().out


def test_refund_needs_a_listed_peer_and_a_debit_and_is_capped_by_it(tmp_path):
    conf = {"refunds": {"enabled": True, "peers": ["Billing.Example"]}}
    app, _ = make_app(tmp_path, conf)
    sms = {"rating_group": 3, "requested_service_unit": {"cc_service_specific_units": 4}}
    a = ask(app, ccr_bytes(4, 0, "debit;1", requested_action=0,
                           multiple_services_credit_control=[sms]))  # fmt: skip
    assert a.result_code == 2001
    start = 100_000_000 - 4 * 50_000
    assert acct(app, MSISDN).balance == start

    def refund(sid, peer="billing.example", ref=b"debit;1", units=U32, rg=3, **kw):
        avps = dict(requested_action=1, **kw)
        if ref is not None:
            avps["cc_correlation_id"] = ref
        unit = {"cc_service_specific_units": units} if rg == 3 else {"cc_time": units}
        avps["multiple_services_credit_control"] = [
            {"rating_group": rg, "requested_service_unit": unit}
        ]
        return ask(app, ccr_bytes(4, 0, sid, origin=peer, **avps), peer=peer)

    # a peer not listed, even one claiming the listed Origin-Host in the AVP
    assert refund("r;evil", peer=EVIL).result_code == 5003
    a = answer(
        app,
        ccr_bytes(4, 0, "r;spoof", origin="billing.example", requested_action=1,
                  cc_correlation_id=b"debit;1",
                  requested_service_unit={"cc_service_specific_units": 1}),
        rctx(EVIL),
    )  # fmt: skip
    assert a.result_code == 5003
    # no reference, an unknown one, a service the debit did not take
    a = refund("r;none", ref=None)
    assert a.result_code == 5005 and a.failed_avp[0].cc_correlation_id is not None
    a = refund("r;unknown", ref=b"never-debited")
    assert a.result_code == 5004 and a.failed_avp[0].cc_correlation_id == b"never-debited"
    assert refund("r;rg2", rg=2).result_code == 5004
    assert refund("r;bin", ref=b"\xff\xfe").result_code == 5004  # not UTF-8: names nothing
    assert acct(app, MSISDN).balance == start
    # another subscriber cannot have this subscriber's debit refunded to them
    a = ask(app, ccr_bytes(4, 0, "r;other", msisdn=OTHER, origin="billing.example",
                           requested_action=1, cc_correlation_id=b"debit;1",
                           multiple_services_credit_control=[sms]), peer="billing.example")  # fmt: skip
    assert a.result_code == 5004
    # the listed peer: 2^32-1 units asked, capped at the 4 units (0.20) the debit took
    a = refund("r;1", units=U32)
    assert a.result_code == 2001
    assert a.multiple_services_credit_control[0].granted_service_unit.cc_service_specific_units == 4
    assert acct(app, MSISDN).balance == 100_000_000
    assert refund("r;1", units=U32).result_code == 2001  # a resend: same answer, paid once
    assert refund("r;2", units=1).result_code == 5004  # nothing left to refund
    assert acct(app, MSISDN).balance == 100_000_000
    rep = ledger_check(app.store)
    assert rep.ok and rep.refunds == rep.debits == 200_000
    # CC-Correlation-Id is an OctetString: any value is fine on requests that are no refund
    a = ask(app, ccr_bytes(1, 0, "s;bin", msisdn=OTHER, cc_correlation_id=b"\xff\x00",
                           requested_service_unit={"cc_time": 60}))  # fmt: skip
    assert a.result_code == 2001
    ask(app, ccr_bytes(3, 1, "s;bin", msisdn=OTHER))
    well_behaved_session(app)
    assert ledger_ok(tmp_path)


def test_ledger_check_fails_on_money_from_nothing(tmp_path, capsys):
    """The old refund bug replayed through the store: a refund entry naming no debit, and the
    balance raised to match it, balance == ledger as before; the check must still fail."""
    app, _ = make_app(tmp_path)
    well_behaved_session(app, msisdn=MSISDN)
    assert ledger_ok(tmp_path)
    db = app.store.db
    db.execute(
        "INSERT INTO ledger (ts, account, kind, session, number, key, units, price, unit, amount,"
        " shortfall) VALUES (?, ?, 'refund', 'x;1', 0, ':', 4294967295, 10000, 60, 715828000000, 0)",
        (time.time(), MSISDN),
    )
    db.execute("UPDATE accounts SET balance = balance + 715828000000 WHERE id = ?", (MSISDN,))
    rep = ledger_check(app.store)
    assert not rep.ok and any("names no debit" in p for p in rep.problems)
    capsys.readouterr()
    assert not ledger_ok(tmp_path)
    assert "ledger FAILED" in capsys.readouterr().out


@pytest.mark.parametrize("tamper", ["untyped credit", "unknown kind", "refund beyond debit"])
def test_ledger_check_fails_on_other_money_from_nothing(tmp_path, tamper):
    app, _ = make_app(tmp_path, {"refunds": {"enabled": True, "peers": [GOOD]}})
    a = ask(app, ccr_bytes(4, 0, "d;1", requested_action=0,
                           requested_service_unit={"cc_time": 60}))  # fmt: skip
    assert a.result_code == 2001
    a = ask(app, ccr_bytes(4, 0, "r;1", requested_action=1, cc_correlation_id=b"d;1",
                           requested_service_unit={"cc_time": 60}))  # fmt: skip
    assert a.result_code == 2001
    assert ledger_check(app.store).ok
    db = app.store.db
    if tamper == "refund beyond debit":  # a second, made-up refund of the same debit
        db.execute(
            "INSERT INTO ledger (ts, account, kind, session, number, key, units, price, unit,"
            " amount, shortfall, ref) SELECT ts, account, kind, 'r;2', number, key, units, price,"
            " unit, amount, shortfall, ref FROM ledger WHERE kind = 'refund'"
        )
    else:
        kind, key = ("credit", "gift") if tamper == "untyped credit" else ("bonus", "")
        db.execute(
            "INSERT INTO ledger (ts, account, kind, session, number, key, units, price, unit,"
            " amount, shortfall) VALUES (0, ?, ?, '', 0, ?, 0, 0, 1, 10000, 0)",
            (MSISDN, kind, key),
        )
    db.execute("UPDATE accounts SET balance = balance + 10000 WHERE id = ?", (MSISDN,))
    assert not ledger_check(app.store).ok
    assert not ledger_ok(tmp_path)


# -- huge values ---------------------------------------------------------------------------

HUGE = {
    # unit type -> (tariff, unit AVP, a value past what the money arithmetic holds)
    "volume": ({"rating_group": 1, "unit_type": "volume", "price": "0.01", "unit_size": 1},
               "cc_total_octets", U64),
    "units": ({"rating_group": 1, "unit_type": "units", "price": "0.01", "unit_size": 1},
              "cc_service_specific_units", U64),
    # CC-Time is 32 bits: its largest value overflows only at a high price
    "time": ({"rating_group": 1, "unit_type": "time", "price": "1000000", "unit_size": 1},
             "cc_time", U32),
}  # fmt: skip


@pytest.mark.parametrize("unit_type", sorted(HUGE))
@pytest.mark.parametrize("mscc", [True, False], ids=["mscc", "single"])
def test_huge_usage_gets_5004_and_the_session_still_debits(tmp_path, unit_type, mscc):
    tariff, attr, value = HUGE[unit_type]
    tariffs = [tariff, {**tariff, "rating_group": None}]
    app, _ = make_app(tmp_path, {"tariffs": tariffs, "demo": {"enabled": False}})
    app.store.import_accounts(
        [AccountRow("rich", 10**15, 0, False, [(0, MSISDN)])], time.time()
    )  # a large balance: 1e9 currency units

    def units(n):
        if mscc:
            return {"multiple_services_credit_control": [
                {"rating_group": 1, "requested_service_unit": {}, "used_service_unit": [{attr: n}]}
            ]}  # fmt: skip
        return {"requested_service_unit": {}, "used_service_unit": [{attr: n}]}

    a = ask(app, ccr_bytes(1, 0, "big;1", requested_service_unit={}))
    assert a.result_code == 2001
    reserved = acct(app, "rich").reserved
    for path in ("wire", "codec"):
        raw = ccr_bytes(2, 1, "big;1", **units(value))
        if path == "wire":
            a = ask(app, raw)
        else:
            a = answer(app, Message.decode(raw), rctx(GOOD))
        assert a.result_code == 5004, path
        failed = a.failed_avp[0]
        if mscc:
            assert failed.multiple_services_credit_control.rating_group == 1
        assert Avp.new(attr, value).encode() in a.encode()  # the value, in its USU
    assert acct(app, "rich").balance == 10**15 and acct(app, "rich").reserved == reserved
    # the session is intact: the real usage is debited at its end
    a = ask(app, ccr_bytes(3, 1, "big;1", **units(5)))
    assert a.result_code == 2001
    price = 1_000_000_000_000 if unit_type == "time" else 10_000
    assert acct(app, "rich").balance == 10**15 - 5 * price and acct(app, "rich").reserved == 0
    assert ledger_ok(tmp_path)


@pytest.mark.parametrize("unit_type", sorted(HUGE))
def test_huge_requested_units_get_5004_on_sessions_and_events(tmp_path, unit_type):
    tariff, attr, value = HUGE[unit_type]
    app, _ = make_app(tmp_path, {"tariffs": [tariff], "demo": {"enabled": False}})
    app.store.import_accounts([AccountRow("rich", 10**15, 0, False, [(0, MSISDN)])], time.time())
    mscc = [{"rating_group": 1, "requested_service_unit": {attr: value}}]
    a = ask(app, ccr_bytes(4, 0, "ev;1", requested_action=0, multiple_services_credit_control=mscc))
    assert a.result_code == 5004 and a.failed_avp[0].multiple_services_credit_control
    assert Avp.new(attr, value).encode() in a.encode()
    if unit_type != "time":  # past MAX_UNITS: refused on sessions too
        a = ask(app, ccr_bytes(1, 0, "s;1", multiple_services_credit_control=mscc))
        assert a.result_code == 5004
    assert acct(app, "rich").balance == 10**15 and acct(app, "rich").reserved == 0
    assert ledger_ok(tmp_path)


# -- event idempotency ---------------------------------------------------------------------


def test_event_resent_after_closed_ttl_is_not_charged_again(tmp_path):
    app, _ = make_app(tmp_path)
    sms = {"rating_group": 3, "requested_service_unit": {"cc_service_specific_units": 1}}
    raw = ccr_bytes(4, 0, "ev;1", requested_action=0, multiple_services_credit_control=[sms])
    first = batch(app, [raw], [rctx(GOOD)])[0]
    assert Message.decode(first).result_code == 2001
    assert acct(app, MSISDN).balance == 100_000_000 - 50_000
    # the sweep runs well after closed_ttl (600 s) has passed; a buffered resend then arrives
    assert app.cfg.closed_ttl == 600.0
    app.store.sweep(time.time() + 700, app.cfg.closed_ttl)
    again = batch(app, [raw[:4] + bytes([raw[4] | 0x10]) + raw[5:]], [rctx(GOOD)])[0]  # T flag
    assert again == first
    assert acct(app, MSISDN).balance == 100_000_000 - 50_000
    # the record is kept event_ttl (default 3600 s), then forgotten: bounded
    assert app.cfg.event_ttl == 3600.0
    app.store.sweep(time.time() + 3600 + 11, app.cfg.closed_ttl)  # expiry rounds up <= 10 s
    assert app.store.db.execute("SELECT count(*) FROM sessions WHERE id='ev;1'").fetchone()[0] == 0
    assert ledger_ok(tmp_path)


def test_event_ttl_is_bounded_in_config(tmp_path):
    for bad in (10, 299, 8 * 86400):
        with pytest.raises(cfgmod.ConfigError, match="event_ttl must be between"):
            make_app(tmp_path, {"event_ttl": bad})


# -- session ownership ---------------------------------------------------------------------


def test_foreign_peer_cannot_update_or_end_a_session(tmp_path):
    app, _ = make_app(tmp_path, {"peer_groups": [["ctf-a.example", "ctf-b.example"]]})
    a = ask(app, ccr_bytes(1, 0, "a;1", requested_service_unit={"cc_time": 600}))
    assert a.result_code == 2001
    held = acct(app, MSISDN)
    assert held.reserved == 100_000
    usage = {"used_service_unit": [{"cc_time": 600}]}
    # another peer, with its own Origin-Host or a copy of the owner's, on both paths
    for origin in (EVIL, GOOD):
        for rtype in (2, 3):
            raw = ccr_bytes(rtype, 1, "a;1", origin=origin, **usage)
            assert ask(app, raw, peer=EVIL).result_code == 5002
            assert answer(app, Message.decode(raw), rctx(EVIL)).result_code == 5002
            out = batch(app, [raw], [rctx(EVIL)])
            assert Message.decode(out[0]).result_code == 5002
    # nor replay its answer
    assert ask(app, ccr_bytes(1, 0, "a;1", origin=EVIL), peer=EVIL).result_code == 5002
    now = acct(app, MSISDN)
    assert (now.balance, now.reserved) == (held.balance, held.reserved)
    # the owner's group member takes over (client failover); the owner ends it
    a = ask(app, ccr_bytes(2, 1, "a;1", origin="ctf-b.example",
                           requested_service_unit={"cc_time": 60}, **usage), peer="CTF-B.example")  # fmt: skip
    assert a.result_code == 2001
    a = ask(app, ccr_bytes(3, 2, "a;1", used_service_unit=[{"cc_time": 60}]))
    assert a.result_code == 2001
    assert acct(app, MSISDN).balance == 100_000_000 - 110_000 and acct(app, MSISDN).reserved == 0
    well_behaved_session(app)
    assert ledger_ok(tmp_path)


def test_foreign_peer_cannot_replay_or_reuse_an_event(tmp_path):
    app, _ = make_app(tmp_path)
    raw = ccr_bytes(4, 0, "e;1", requested_action=0, requested_service_unit={"cc_time": 60})
    assert ask(app, raw).result_code == 2001
    assert ask(app, raw, peer=EVIL).result_code == 5002
    assert acct(app, MSISDN).balance == 100_000_000 - 10_000
    assert ledger_ok(tmp_path)


def test_foreign_peer_cannot_touch_a_sy_subscription(tmp_path):
    make_app(tmp_path)  # seeds the demo set the subscriber comes from
    ctx = FakeWorkerContext(str(tmp_path), {})
    sy = SpendingLimitApp()
    sy.setup(ctx)

    def req(cmd, origin, **kw):
        args = dict(session_id="sy;1", origin_host=origin, origin_realm="example",
                    destination_realm="ocs", auth_application_id=16777302, **kw)  # fmt: skip
        return Message.decode(cmd(**args).encode())

    slr = dict(sl_request_type=0,
               subscription_id=[{"subscription_id_type": 0, "subscription_id_data": MSISDN}])  # fmt: skip
    assert sy.handle(req(commands.SpendingLimitRequest, "pcrf.example", **slr),
                     rctx("pcrf.example")).result_code == 2001  # fmt: skip
    for origin in (EVIL, "pcrf.example"):
        a = sy.handle(req(commands.SySessionTerminationRequest, origin, termination_cause=1),
                      rctx(EVIL))  # fmt: skip
        assert a.result_code == 5002
        a = sy.handle(req(commands.SpendingLimitRequest, origin, sl_request_type=1), rctx(EVIL))
        assert a.result_code == 5002
    assert sy.store.sy_get("sy;1").pcrf_host == "pcrf.example"
    a = sy.handle(req(commands.SySessionTerminationRequest, "pcrf.example", termination_cause=1),
                  rctx("pcrf.example"))  # fmt: skip
    assert a.result_code == 2001 and sy.store.sy_get("sy;1") is None


# -- unknown mandatory AVPs ----------------------------------------------------------------


def _avp(code: int, data: bytes, vendor: int = 0, m: bool = True) -> bytes:
    flags = (0x80 if vendor else 0) | (0x40 if m else 0)
    head = 12 if vendor else 8
    n = head + len(data)
    out = struct.pack("!II", code, flags << 24 | n)
    if vendor:
        out += struct.pack("!I", vendor)
    return out + data + b"\0" * (-n & 3)


def _with(raw: bytes, extra: bytes) -> bytes:
    """`raw` with AVP bytes appended and the message length fixed."""
    out = raw + extra
    return bytes([out[0]]) + len(out).to_bytes(3, "big") + out[4:]


UNKNOWN = _avp(1234, b"boom", vendor=99999)
RG = _avp(432, struct.pack("!I", 1))
PLACES = {
    "top level": UNKNOWN,
    "in MSCC": _avp(456, RG + UNKNOWN),
    "in USU in MSCC": _avp(456, RG + _avp(446, _avp(421, struct.pack("!Q", 10)) + UNKNOWN)),
    "in RSU": _avp(437, _avp(420, struct.pack("!I", 60)) + UNKNOWN),
    "in Subscription-Id": _avp(443, _avp(450, b"\0\0\0\0") + _avp(444, b"467") + UNKNOWN),
    # Service-Information (3GPP): a group the fast path does not read
    "in Service-Information": _avp(873, _avp(874, UNKNOWN, vendor=10415), vendor=10415),
}


@pytest.mark.parametrize("where", sorted(PLACES))
def test_unknown_mandatory_avp_gets_5001_before_anything_moves(tmp_path, where):
    app, _ = make_app(tmp_path)
    rsu = {} if where == "in RSU" else {"requested_service_unit": {"cc_time": 60}}
    raw = _with(ccr_bytes(1, 0, "m;1", **rsu), PLACES[where])
    answers = [
        Message.decode(batch(app, [raw], [rctx(GOOD)])[0]),
        Message.decode(batch(app, [ccr_bytes(1, 0, "ok;1", msisdn="4670000000557"), raw], [rctx(GOOD)] * 2)[1]),
        answer(app, Message.decode(raw), rctx(GOOD)),
    ]
    for a in answers:
        assert a.result_code == 5001 and a.session_id == "m;1"
        assert a.failed_avp and UNKNOWN in a.encode()  # the AVP itself, in its groups
    assert acct(app, MSISDN) is None  # nothing reserved, no account provisioned
    # the same AVP without the M bit is ignored, as RFC 6733 allows
    plain = _with(ccr_bytes(1, 0, "m;2", requested_service_unit={"cc_time": 60}),
                  _avp(1234, b"boom", vendor=99999, m=False))  # fmt: skip
    assert ask(app, plain).result_code == 2001
    well_behaved_session(app)
    assert ledger_ok(tmp_path)


# -- batches and deadlines -----------------------------------------------------------------


def test_a_failed_chunk_fails_only_its_own_requests(tmp_path, monkeypatch):
    app, _ = make_app(tmp_path)
    raws = [
        ccr_bytes(1, 0, f"b;{i}", msisdn=f"46700001{i:05d}", hbh=i,
                  requested_service_unit={"cc_time": 60})
        for i in range(70)
    ]  # fmt: skip
    real = SqliteStore._txn
    calls = []

    def flaky(self, fn, wait=True, keep_cache=False):
        calls.append(1)
        if len(calls) == 2:  # the second chunk of 64 meets a store failure
            raise StoreUnavailable("injected")
        return real(self, fn, wait, keep_cache)

    monkeypatch.setattr(SqliteStore, "_txn", flaky)
    out = [Message.decode(x) for x in batch(app, raws, [rctx(GOOD)] * 70)]
    monkeypatch.setattr(SqliteStore, "_txn", real)
    assert [a.result_code for a in out] == [2001] * 64 + [3004] * 6
    assert all(acct(app, f"46700001{i:05d}").reserved == 10_000 for i in range(64))
    assert all(acct(app, f"46700001{i:05d}") is None for i in range(64, 70))
    # a resend of a committed one is answered from the store, charged once
    again = ask(app, raws[3])
    assert again.result_code == 2001 and acct(app, "4670000100003").reserved == 10_000
    assert ledger_ok(tmp_path)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_redis_batch_answers_each_request_by_its_own_outcome(tmp_path, monkeypatch):
    from chargegw.workers.charging.redis_store import RedisStore

    with RedisServer() as srv:
        app, _ = make_app(tmp_path, {"store": {"backend": "redis", "url": srv.url}})
        # two requests on one account, planned one after the other in one pipeline: the
        # second fails (injected), the first stands
        raws = [
            ccr_bytes(1, 0, f"r;{i}", hbh=i, requested_service_unit={"cc_time": 60})
            for i in range(2)
        ]
        real, calls = RedisStore._plan, []

        def down(self, op, target):
            calls.append(op.session_id)
            if len(calls) > 1:
                raise StoreUnavailable("injected")
            return real(self, op, target)

        monkeypatch.setattr(RedisStore, "_plan", down)
        out = [Message.decode(x) for x in batch(app, raws, [rctx(GOOD)] * 2)]
        monkeypatch.undo()
        assert [a.result_code for a in out] == [2001, 3004]
        assert acct(app, MSISDN).reserved == 10_000
        assert ledger_check(app.store).ok


def test_expired_requests_are_dropped_unapplied(tmp_path):
    import sqlite3

    app, _ = make_app(tmp_path, {"store": {"timeout": 2.0}})
    past = time.time() - 1
    fresh = ccr_bytes(1, 0, "live;1", msisdn=OTHER, requested_service_unit={"cc_time": 60})
    stale = ccr_bytes(1, 0, "late;1", requested_service_unit={"cc_time": 60})
    out = batch(app, [stale, fresh], [rctx(GOOD, past), rctx(GOOD)])
    assert out[0] is None  # dropped: the runtime returns its slot, the gateway answered 3002
    assert Message.decode(out[1]).result_code == 2001
    assert acct(app, MSISDN) is None and acct(app, OTHER).reserved == 10_000

    async def waited() -> list[int | None]:
        # another worker holds the write lock past one request's deadline: when the store is
        # free again, that request is dropped unapplied and the other one goes through
        other = sqlite3.connect(str(tmp_path / "charging.db"), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        soon = time.time() + 0.05
        outs = batch(
            app,
            [ccr_bytes(1, 0, "late;2", requested_service_unit={}),
             ccr_bytes(1, 0, "live;2", msisdn=OTHER, requested_service_unit={})],
            [rctx(GOOD, soon), rctx(GOOD)],
        )  # fmt: skip
        await asyncio.sleep(0.1)
        other.execute("COMMIT")
        other.close()
        got = [await o for o in outs]
        return [None if g is None else Message.decode(g).result_code for g in got]

    assert asyncio.run(waited()) == [None, 2001]
    assert acct(app, MSISDN) is None
    assert (
        app.store.db.execute("SELECT count(*) FROM sessions WHERE id LIKE 'late%'").fetchone()[0]
        == 0
    )
    assert ledger_ok(tmp_path)
