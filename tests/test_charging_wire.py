"""The Gy fast path (wire.py, `handle_raw`) answers byte-for-byte like the codec path."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargegw.codec import CodecError, Message, commands
from chargegw.workers.charging.gy import CreditControlApp
from chargegw.workers.charging.testing import FakeWorkerContext
from chargegw.workers.charging.wire import parse_ccr

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


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step, min_size=1, max_size=8))
def test_fast_path_equals_codec_path(tmp_path_factory, steps):
    fast, slow = CreditControlApp(), CreditControlApp()
    fast.setup(
        FakeWorkerContext(
            str(tmp_path_factory.mktemp("fast")), {"quota": {"time_quota_threshold": 10}}
        )
    )
    slow.setup(
        FakeWorkerContext(
            str(tmp_path_factory.mktemp("slow")), {"quota": {"time_quota_threshold": 10}}
        )
    )
    numbers: dict[str, int] = {}
    for s in steps:
        n = numbers.get(s["sid"], -1) + 1
        numbers[s["sid"]] = n
        raw = build(s, n)
        got = fast.handle_raw(raw)
        want = slow.handle(Message.decode(raw)).encode()
        assert got == want, (Message.decode(got).dump(), Message.decode(want).dump())
        assert fast.handle_raw(raw) == slow.handle(Message.decode(raw)).encode()  # and replays


def test_unusual_requests_take_the_codec_path(tmp_path):
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
    assert parse_ccr(with_proxy) is None
    ans = Message.decode(app.handle_raw(with_proxy))
    assert ans.result_code == 2001 and ans.proxy_info[0].proxy_host == "relay"
    money = commands.CreditControlRequest(
        **{**base, "session_id": "p;2"},
        requested_service_unit={"cc_money": {"unit_value": {"value_digits": 5}}},
    ).encode()
    assert parse_ccr(money) is None and Message.decode(app.handle_raw(money)).result_code == 2001
    missing = commands.CreditControlRequest(
        **{k: v for k, v in base.items() if k != "destination_realm"}
    ).encode()
    ans = Message.decode(app.handle_raw(missing))
    assert ans.result_code == 5005 and [a.code for a in ans.failed_avp[0].avps] == [283]
    for junk in (
        b"",
        with_proxy[:-3],
        b"\x02" + with_proxy[1:],
    ):
        assert parse_ccr(junk) is None
        with pytest.raises(CodecError):
            app.handle_raw(junk)
    other = b"\x01\x00\x00\x14\x80" + b"\x00" * 15  # a request for command 0: not a CCR
    assert parse_ccr(other) is None
    assert Message.decode(app.handle_raw(other)).result_code == 3001


def test_group_commit_answers_like_the_sync_path_and_charges_once(tmp_path):
    import asyncio

    batched, plain = CreditControlApp(), CreditControlApp()
    batched.setup(FakeWorkerContext(str(tmp_path / "b"), {}))
    plain.setup(FakeWorkerContext(str(tmp_path / "p"), {"group_commit": False}))
    s = {"msisdn": "4670000000009", "hbh": 5}
    wave1 = [
        build({**s, "rtype": 1, "sid": f"g{i}", "requested_service_unit": {}}, 0) for i in range(10)
    ]
    wave2 = [
        build(
            {
                **s,
                "rtype": 2,
                "sid": f"g{i}",
                "requested_service_unit": {},
                "used_service_unit": [{"cc_time": 61}],
            },
            1,
        )
        for i in range(10)
    ]
    wave2 += wave2[:3]  # retransmissions inside the same batch

    async def run(app, wave):
        results = [app.handle_raw(raw) for raw in wave]
        assert all(isinstance(r, asyncio.Future) for r in results) == (app is batched)
        return [await r if isinstance(r, asyncio.Future) else r for r in results]

    async def main():
        for wave in (wave1, wave2):
            assert await run(batched, wave) == await run(plain, wave)

    asyncio.run(main())
    for app in (batched, plain):
        acct = app.store.get_account("4670000000009").account
        assert acct.balance == 100_000_000 - 10 * 20_000 and acct.reserved == 10 * 100_000


def test_group_commit_waits_for_another_writer_without_blocking_then_gives_3004(tmp_path):
    import asyncio
    import sqlite3

    app = CreditControlApp()
    app.setup(FakeWorkerContext(str(tmp_path), {"store": {"timeout": 0.3}}))
    other = sqlite3.connect(str(tmp_path / "charging.db"), isolation_level=None)
    s = {"msisdn": "4670000000010", "hbh": 1, "rtype": 1, "requested_service_unit": {}}

    async def main():
        other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
        first = app.handle_raw(build({**s, "sid": "w1"}, 0))
        await asyncio.sleep(0.05)
        assert not first.done()  # waiting, while the loop still runs
        second = app.handle_raw(build({**s, "sid": "w2"}, 0))  # joins the waiting batch
        other.execute("COMMIT")
        answers = [Message.decode(await f) for f in (first, second)]
        assert [a.result_code for a in answers] == [2001, 2001]
        other.execute("BEGIN IMMEDIATE")
        t0 = asyncio.get_running_loop().time()
        late = Message.decode(await app.handle_raw(build({**s, "sid": "w3"}, 0)))
        assert late.result_code == 3004 and late.is_error
        assert 0.25 <= asyncio.get_running_loop().time() - t0 < 2.0
        other.execute("ROLLBACK")
        again = Message.decode(await app.handle_raw(build({**s, "sid": "w3"}, 0)))
        assert again.result_code == 2001

    asyncio.run(main())
    other.close()


def test_a_failing_batch_fails_its_requests_and_the_next_batch_still_runs(tmp_path):
    import asyncio

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

    async def main():
        bad = app.handle_raw(build({**s, "sid": "f1"}, 0))
        with pytest.raises(RuntimeError):
            await bad
        good = await app.handle_raw(build({**s, "sid": "f2"}, 0))
        assert Message.decode(good).result_code == 2001

    asyncio.run(main())
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
def test_corrupted_ccrs_never_crash_the_handler(tmp_path_factory, edits):
    app = _fuzz_app(tmp_path_factory)
    raw = bytearray(_VALID)
    for pos, value in edits:
        raw[pos] = value
    try:
        answer = app.handle_raw(bytes(raw))
    except CodecError:
        return  # the runtime answers the codec's protocol error
    Message.decode(answer)  # whatever we answered is a well-formed message


_APPS: dict[str, CreditControlApp] = {}


def _fuzz_app(factory):
    if "app" not in _APPS:
        app = CreditControlApp()
        app.setup(FakeWorkerContext(str(factory.mktemp("fuzz")), {"group_commit": False}))
        _APPS["app"] = app
    return _APPS["app"]


def test_batch_hook_answers_like_the_sync_path_and_charges_once(tmp_path):
    import asyncio
    import sqlite3

    batched, plain = CreditControlApp(), CreditControlApp()
    batched.setup(FakeWorkerContext(str(tmp_path / "b"), {"store": {"timeout": 2.0}}))
    plain.setup(FakeWorkerContext(str(tmp_path / "p"), {"group_commit": False}))
    s = {"msisdn": "4670000000019", "hbh": 5}
    wave1 = [
        build({**s, "rtype": 1, "sid": f"h{i}", "requested_service_unit": {}}, 0) for i in range(10)
    ]
    wave1.append(b"\x01\x00\x00\x14\x80" + b"\x00" * 15)  # not a CCR: the codec path, 3001
    usu = {"requested_service_unit": {}, "used_service_unit": [{"cc_time": 61}]}
    wave2 = [build({**s, **usu, "rtype": 2, "sid": f"h{i}"}, 1) for i in range(10)]
    wave2 += wave2[:3]  # retransmissions inside the same batch

    async def main():
        assert batched.handle_raw_batch(wave1) == [plain.handle_raw(r) for r in wave1]
        other = sqlite3.connect(str(tmp_path / "b" / "charging.db"), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another worker holds the write lock
        pending = batched.handle_raw_batch(wave2)
        assert not isinstance(pending, list)  # an awaitable: the loop keeps running
        await asyncio.sleep(0.05)
        other.execute("COMMIT")
        other.close()
        assert await pending == [plain.handle_raw(r) for r in wave2]

    asyncio.run(main())
    for app in (batched, plain):
        acct = app.store.get_account("4670000000019").account
        assert acct.balance == 100_000_000 - 10 * 20_000 and acct.reserved == 10 * 100_000


def test_batch_hook_hands_back_decode_errors_for_the_runtime(tmp_path):
    from chargegw.codec import AvpError

    app = CreditControlApp()
    app.setup(FakeWorkerContext(str(tmp_path), {}))
    good = build({"msisdn": "4670000000020", "hbh": 1, "rtype": 1, "sid": "e1"}, 0)
    junk = good[:20] + b"\x00\x00\x01\x07\x40\x00\x00\x04"  # an AVP shorter than its header
    junk = junk[:1] + len(junk).to_bytes(3, "big") + junk[4:]
    out = app.handle_raw_batch([good, junk])
    assert Message.decode(out[0]).result_code == 2001
    assert isinstance(out[1], (AvpError, CodecError))
