"""Gy's one CCR reader and one CCA writer (compiled from the dictionary, ccr.py) read and
write exactly what the codec's general decoding and building do; `handle_batch` answers."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargegw.codec import Avp, Message, commands
from chargegw.codec.compiled import Frozen
from chargegw.workers.api import Incoming, RequestContext
from chargegw.workers.charging import ccr
from chargegw.workers.charging.config import GyConfig
from chargegw.workers.charging.gy import CreditControlApp
from chargegw.workers.charging.render import Answer, Renderer
from chargegw.workers.charging.testing import FakeWorkerContext

NO_CTX = RequestContext(peer="", deadline=0.0)


def run(app, raws):
    """`handle_batch` as the runtime calls it."""
    return app.handle_batch([Incoming(r, NO_CTX) for r in raws])


def one(app, raw):
    out = run(app, [raw])[0]
    assert type(out) is bytes
    return out


def codec_view(container, spec):
    """What the codec's general decoding gives for the fields of `spec` (ccr.CCR_FIELDS), in
    the reader's shape: the reader must give exactly this."""
    d = container._dict if hasattr(container, "_dict") else None  # noqa: F841
    out = {}
    for name, what in spec.items():
        attr = name.lower().replace("-", "_")
        if what == "raw":
            out[attr + "_avp"] = [a.encode() for a in container.avps if a.name == name]
            continue
        value = getattr(container, attr)
        if isinstance(what, dict):
            value = (
                [codec_view(g, what) for g in value] if isinstance(value, list)
                else None if value is None else codec_view(value, what)
            )  # fmt: skip
        elif isinstance(value, list):
            value = [int(x) if isinstance(x, int) else x for x in value]
        elif isinstance(value, int):
            value = int(value)
        out[attr] = value
        if what == "avp":
            out[attr + "_avp"] = next(a.encode() for a in container.avps if a.name == name)
    return out


def reader_view(obj, spec):
    out = {}
    for name, what in spec.items():
        attr = name.lower().replace("-", "_")
        if what == "raw":
            out[attr + "_avp"] = getattr(obj, attr + "_avp")
            continue
        value = getattr(obj, attr)
        if isinstance(what, dict):
            value = (
                [reader_view(g, what) for g in value] if isinstance(value, list)
                else None if value is None else reader_view(value, what)
            )  # fmt: skip
        out[attr] = value
        if what == "avp":
            out[attr + "_avp"] = getattr(obj, attr + "_avp")
    return out


SPEC = {**ccr.CCR_FIELDS, "Origin-Host": True, "Origin-Realm": True, "Destination-Realm": True,
        "Auth-Application-Id": True, "Service-Context-Id": True, "CC-Request-Type": True,
        "CC-Request-Number": True}  # fmt: skip

units = st.fixed_dictionaries(
    {},
    optional={
        "cc_time": st.integers(0, 5000),
        "cc_total_octets": st.integers(0, 1 << 34),
        "cc_input_octets": st.integers(0, 1 << 30),
        "cc_output_octets": st.integers(0, 1 << 30),
        "cc_service_specific_units": st.integers(0, 50),
    },
)
mscc = st.fixed_dictionaries(
    {},
    optional={
        "rating_group": st.sampled_from([1, 2, 3, 99]),
        "service_identifier": st.lists(st.integers(1, 3), max_size=2),
        "requested_service_unit": units,
        "used_service_unit": st.lists(units, max_size=2),
    },
)
step = st.fixed_dictionaries(
    {
        "rtype": st.sampled_from([1, 2, 2, 3, 4, 7]),
        "msisdn": st.sampled_from(["4670000000001", "4680000000002", "4680000000004", "4999"]),
        "sid": st.sampled_from(["a", "bb;1", "ccc;22;333"]),
        "hbh": st.integers(0, 2**32 - 1),
    },
    optional={
        "requested_service_unit": units,
        "used_service_unit": st.lists(units, max_size=2),
        "multiple_services_credit_control": st.lists(mscc, max_size=3),
        "requested_action": st.integers(0, 4),
        "service_identifier": st.integers(1, 3),
        "destination_host": st.just("ocs.test"),
        "proxiable": st.booleans(),
    },
)


def build(s: dict, number: int) -> bytes:
    avps = {k: v for k, v in s.items() if k not in ("rtype", "msisdn", "sid", "hbh", "proxiable")}
    req = commands.CreditControlRequest(
        session_id=s["sid"], origin_host="client.test", origin_realm="test", destination_realm="ocs",
        auth_application_id=4, service_context_id="32251@3gpp.org", cc_request_type=s["rtype"],
        cc_request_number=number,
        subscription_id=[{"subscription_id_type": 0, "subscription_id_data": s["msisdn"]}], **avps,
    )  # fmt: skip
    req.hop_by_hop, req.end_to_end = s["hbh"], s["hbh"] ^ 0xFFFF
    if s.get("proxiable") is False:
        req.is_proxiable = False
    return req.encode()


@settings(max_examples=80, deadline=None)
@given(s=step, number=st.integers(0, 2**32 - 1), money=st.integers(-5, 5))
def test_the_compiled_reader_reads_what_the_codec_decodes(s, number, money):
    if money:
        s = {**s, "requested_service_unit": {"cc_money": {"unit_value": {"value_digits": money}}}}
    raw = build(s, number)
    got = ccr.read(raw)
    want = Message.decode(raw)
    assert reader_view(got, SPEC) == codec_view(want, SPEC)
    assert (got.flags, got.hop_by_hop, got.end_to_end) == (want.flags, want.hop_by_hop, want.end_to_end)


answers = st.fixed_dictionaries(
    {"result": st.sampled_from([2001, 3004, 4012, 5004, 5030])},
    optional={
        "granted_service_unit": units,
        "multiple_services_credit_control": st.lists(
            st.fixed_dictionaries({"result_code": st.sampled_from([2001, 4012])}, optional={
                "rating_group": st.integers(0, 9), "service_identifier": st.lists(st.integers(1, 3), max_size=2),
                "granted_service_unit": units, "validity_time": st.integers(1, 9999),
                "final_unit_indication": st.just({"final_unit_action": 0})}),
            max_size=3),
        "validity_time": st.integers(1, 9999),
        "check_balance_result": st.integers(0, 1),
        # the codec refuses NUL and lone surrogates in a UTF8String (both writers raise
        # EncodeError alike), so neither writer is ever given one
        "error_message": st.text(
            st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=5
        ),
        "failed": st.sampled_from(["CC-Request-Number", "Rating-Group", "Requested-Action"]),
        "proxy": st.booleans(),
    },
)  # fmt: skip


@settings(max_examples=80, deadline=None)
@given(s=step, a=answers, frozen=st.booleans())
def test_the_compiled_writer_writes_what_the_codec_encodes(s, a, frozen):
    if a.get("proxy"):
        s = {**s, "proxy_info": [{"proxy_host": "relay", "proxy_state": b"st"}]}
    raw = build(s, 3)
    extra = {k: v for k, v in a.items() if k not in ("result", "error_message", "failed", "proxy")}
    if frozen and "multiple_services_credit_control" in extra:
        extra["multiple_services_credit_control"] = [
            Frozen(b) for b in extra["multiple_services_credit_control"]
        ]
    failed = [Avp.new(a["failed"], 1)] if "failed" in a else None
    ans = Answer(a["result"], dict(extra), failed, a.get("error_message"))
    got = Renderer(GyConfig(), "ocs.test", "test").cca(ccr.read(raw), ans)
    req = Message.decode(raw)
    kw = dict(extra, auth_application_id=4, cc_request_type=s["rtype"], cc_request_number=3)
    want = req.answer(a["result"], origin_host="ocs.test", origin_realm="test",
                      error_message=a.get("error_message"),
                      failed_avp=failed[0] if failed else None, **kw).encode()  # fmt: skip
    assert got == want, (Message.decode(got).dump(), Message.decode(want).dump())


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step, min_size=1, max_size=8))
def test_a_batch_answers_as_one_at_a_time_does(tmp_path_factory, steps):
    batched, single = CreditControlApp(), CreditControlApp()
    conf = {"quota": {"time_quota_threshold": 10}}
    batched.setup(FakeWorkerContext(str(tmp_path_factory.mktemp("b")), conf))
    single.setup(FakeWorkerContext(str(tmp_path_factory.mktemp("s")), conf))
    numbers: dict[str, int] = {}
    raws = []
    for s in steps:
        n = numbers.get(s["sid"], -1) + 1
        numbers[s["sid"]] = n
        raws.append(build(s, n))
    want = [one(single, r) for r in raws]
    # one request per session per batch, as clients send them (one CCR outstanding)
    got: list[bytes] = []
    wave: list[bytes] = []
    seen: set[str] = set()
    for r, s in zip(raws, steps, strict=True):
        if s["sid"] in seen:
            got += run(batched, wave)
            wave, seen = [], set()
        wave.append(r)
        seen.add(s["sid"])
    got += run(batched, wave)
    assert got == want
    assert run(batched, raws[:1]) == [one(single, raws[0])]  # and replays


def test_unusual_requests_are_read_too_and_invalid_ones_judged_by_the_codec(tmp_path):
    app = CreditControlApp()
    app.setup(FakeWorkerContext(str(tmp_path), {}))
    base = dict(
        session_id="p;1", origin_host="c", origin_realm="r", destination_realm="o", auth_application_id=4,
        service_context_id="32251@3gpp.org", cc_request_type=1, cc_request_number=0,
        subscription_id=[{"subscription_id_type": 0, "subscription_id_data": "4670000000001"}],
    )  # fmt: skip
    with_proxy = commands.CreditControlRequest(
        **base, proxy_info=[{"proxy_host": "relay", "proxy_state": b"s"}]
    ).encode()
    ans = Message.decode(one(app, with_proxy))
    assert ans.result_code == 2001 and ans.proxy_info[0].proxy_host == "relay"
    money = commands.CreditControlRequest(
        **{**base, "session_id": "p;2"},
        requested_service_unit={"cc_money": {"unit_value": {"value_digits": 5}}},
    ).encode()
    assert Message.decode(one(app, money)).result_code == 2001
    missing = commands.CreditControlRequest(
        **{k: v for k, v in base.items() if k != "destination_realm"}
    ).encode()
    with pytest.raises(ccr.Unreadable):
        ccr.read(missing)
    ans = Message.decode(one(app, missing))
    assert ans.result_code == 5005 and [a.code for a in ans.failed_avp[0].avps] == [283]
    assert ans.session_id == "p;1" and ans.cc_request_number == 0
    twice = commands.CreditControlRequest(**{**base, "session_id": "p;3"}, requested_action=[0, 1])
    ans = Message.decode(one(app, twice.encode()))
    assert ans.result_code == 5009  # the codec names the second Requested-Action
    assert run(app, [b""]) == [None]  # no header: nothing can be answered
    for junk, code in ((with_proxy[:-3], (5014, 5015)), (b"\x02" + with_proxy[1:], (5011,))):
        ans = Message.decode(one(app, junk))  # the codec's verdict, from the header it has
        assert ans.result_code in code and ans.session_id == "p;1"
    other = b"\x01\x00\x00\x14\x80" + b"\x00" * 15  # a request for command 0: not a CCR
    assert Message.decode(one(app, other)).result_code == 3001


def test_group_commit_answers_like_one_transaction_per_request_and_charges_once(tmp_path):
    batched, plain = CreditControlApp(), CreditControlApp()
    batched.setup(FakeWorkerContext(str(tmp_path / "b"), {}))
    plain.setup(FakeWorkerContext(str(tmp_path / "p"), {"group_commit": False}))
    s = {"msisdn": "4670000000009", "hbh": 5}
    wave1 = [
        build({**s, "rtype": 1, "sid": f"g{i}", "requested_service_unit": {}}, 0) for i in range(10)
    ]
    usu = {"requested_service_unit": {}, "used_service_unit": [{"cc_time": 61}]}
    wave2 = [build({**s, **usu, "rtype": 2, "sid": f"g{i}"}, 1) for i in range(10)]
    wave2 += wave2[:3]  # retransmissions inside the same batch
    for wave in (wave1, wave2):
        assert run(batched, wave) == run(plain, wave)
    for app in (batched, plain):
        acct = app.store.get_account("4670000000009").account
        assert acct.balance == 100_000_000 - 10 * 20_000 and acct.reserved == 10 * 100_000


def test_a_locked_store_is_waited_for_without_blocking_then_gives_3004(tmp_path):
    import asyncio
    import sqlite3

    app = CreditControlApp()
    app.setup(FakeWorkerContext(str(tmp_path), {"store": {"timeout": 0.3}}))
    other = sqlite3.connect(str(tmp_path / "charging.db"), isolation_level=None)
    s = {"msisdn": "4670000000010", "hbh": 1, "rtype": 1, "requested_service_unit": {}}

    async def main():
        other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
        first = run(app, [build({**s, "sid": "w1"}, 0), build({**s, "sid": "w2"}, 0)])
        assert not any(isinstance(x, bytes) for x in first)  # awaitables: the loop runs on
        await asyncio.sleep(0.05)
        other.execute("COMMIT")
        answers = [Message.decode(await f) for f in first]
        assert [a.result_code for a in answers] == [2001, 2001]
        other.execute("BEGIN IMMEDIATE")
        t0 = asyncio.get_running_loop().time()
        late = Message.decode(await run(app, [build({**s, "sid": "w3"}, 0)])[0])
        assert late.result_code == 3004 and late.is_error
        assert 0.25 <= asyncio.get_running_loop().time() - t0 < 2.0
        other.execute("ROLLBACK")
        again = run(app, [build({**s, "sid": "w3"}, 0)])[0]
        assert Message.decode(again).result_code == 2001

    asyncio.run(main())
    other.close()


def test_a_failing_store_step_answers_5012_and_the_next_batch_still_runs(tmp_path):
    app = CreditControlApp()
    app.setup(FakeWorkerContext(str(tmp_path), {}))
    real = app.store.credit_control_many
    calls = []

    def broken(ops, wait=True):
        calls.append(len(ops))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(ops, wait)

    app.store.credit_control_many = broken
    s = {"msisdn": "4670000000011", "hbh": 1, "rtype": 1, "requested_service_unit": {}}
    bad = Message.decode(one(app, build({**s, "sid": "f1"}, 0)))
    assert bad.result_code == 5012
    good = Message.decode(one(app, build({**s, "sid": "f2"}, 0)))
    assert good.result_code == 2001
    assert calls == [1, 1]


_VALID = build(
    {"rtype": 2, "msisdn": "4670000000012", "sid": "fz", "hbh": 9,
     "multiple_services_credit_control": [{"rating_group": 1, "requested_service_unit": {}, "used_service_unit": [{"cc_total_octets": 5}]}]},
    1,
)  # fmt: skip


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), min_size=1, max_size=6
    )
)
def test_corrupted_ccrs_are_always_answered(tmp_path_factory, edits):
    app = _fuzz_app(tmp_path_factory)
    raw = bytearray(_VALID)
    for pos, value in edits:
        raw[pos] = value
    answer = run(app, [bytes(raw)])[0]
    assert answer is not None  # a header is always there to answer
    Message.decode(answer)  # whatever we answered is a well-formed message


_APPS: dict[str, CreditControlApp] = {}


def _fuzz_app(factory):
    if "app" not in _APPS:
        app = CreditControlApp()
        app.setup(FakeWorkerContext(str(factory.mktemp("fuzz")), {"group_commit": False}))
        _APPS["app"] = app
    return _APPS["app"]


def test_hosts_and_realms_are_checked_per_value_even_once_remembered(monkeypatch):
    """The reader remembers the DiameterIdentity values it has checked (they repeat from one
    request to the next); a value that differs in one byte is checked on its own, and once
    the memo is full, new values are still checked (and not remembered)."""
    import chargegw.codec.compiled as compiled

    base = dict(
        session_id="m;1", origin_host="client.example", origin_realm="example",
        destination_realm="ocs.example", auth_application_id=4,
        service_context_id="32251@3gpp.org", cc_request_type=1, cc_request_number=0,
    )  # fmt: skip
    good = commands.CreditControlRequest(**base).encode()
    assert ccr.read(good).origin_host == "client.example"
    assert compiled._IDENTITIES[b"client.example"] == "client.example"
    # the same length, one byte changed to a space: not a DiameterIdentity
    bad = good.replace(b"client.example", b"client example")
    with pytest.raises(ccr.Unreadable):
        ccr.read(bad)
    assert b"client example" not in compiled._IDENTITIES
    monkeypatch.setattr(compiled, "_IDENTITIES", {})
    monkeypatch.setattr(compiled, "_IDENTITIES_MAX", 0)
    ccr.reader.__globals__["_reader"].clear()  # compiled again, with the empty memo
    assert ccr.read(good).origin_realm == "example"
    assert compiled._IDENTITIES == {}
    with pytest.raises(ccr.Unreadable):
        ccr.read(bad)
    ccr.reader.__globals__["_reader"].clear()


def test_a_frozen_block_encodes_the_same_as_a_body_and_as_a_group_in_any_order():
    """The writer keeps one encoding on a Frozen: its body (top-level AVPs of an answer) or
    its whole AVP (an MSCC block). Asked for one and then the other, each is still right."""
    w = ccr.writer()
    block = Frozen({"granted_service_unit": {"cc_time": 600}, "validity_time": 60})
    plain = dict(block)
    want_body = w.body(plain)
    want_group = w.avp("multiple_services_credit_control", plain)
    for _ in range(2):
        assert w.body(block) == want_body
        assert w.avp("multiple_services_credit_control", block) == want_group
        assert w.body(block) == want_body
    body = Message.decode(w.message(0, 1, 2, {"result_code": 2001, **plain}))
    assert body.granted_service_unit.cc_time == 600 and body.validity_time == 60


def test_single_service_answers_are_the_codecs_each_time(tmp_path):
    """A single-service grant (no MSCC) is rendered from its block's cached AVPs: the same
    bytes as the codec's answer, on the first request and on every one after it."""
    app = CreditControlApp()
    app.setup(FakeWorkerContext(str(tmp_path), {}))
    for n in range(3):
        req = commands.CreditControlRequest(
            session_id="one;1", origin_host="c", origin_realm="r", destination_realm="o",
            auth_application_id=4, service_context_id="32251@3gpp.org",
            cc_request_type=1 if n == 0 else 2, cc_request_number=n,
            subscription_id=[{"subscription_id_type": 0, "subscription_id_data": "4670000000009"}],
            requested_service_unit={"cc_time": 600},
            used_service_unit=[{"cc_time": 60}] if n else [],
        )  # fmt: skip
        req.hop_by_hop, req.end_to_end = 10 + n, 20 + n
        got = one(app, req.encode())
        ans = Message.decode(got)
        assert ans.result_code == 2001 and ans.granted_service_unit.cc_time > 0
        want = req.answer(2001, origin_host="ocs.test", origin_realm="test")
        for name in ("auth_application_id", "cc_request_type", "cc_request_number"):
            setattr(want, name, getattr(ans, name))
        want.granted_service_unit = {"cc_time": ans.granted_service_unit.cc_time}
        for name in ("validity_time", "time_quota_threshold", "quota_holding_time"):
            if ans.get(name) is not None:
                setattr(want, name, ans.get(name))
        assert got == want.encode()
