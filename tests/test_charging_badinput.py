"""Corrupted Rf and Sy requests: the handlers answer (or raise the codec's error), nothing else."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargegw.codec import CodecError, Message, commands
from chargegw.workers.api import Incoming, RequestContext
from chargegw.workers.charging.rf import AccountingApp
from chargegw.workers.charging.sy import SpendingLimitApp
from chargegw.workers.charging.testing import FakeWorkerContext

ACR = commands.AccountingRequest(
    session_id="pgw;1", origin_host="pgw.test", origin_realm="test", destination_realm="cdf",
    accounting_record_type=3, accounting_record_number=4, acct_application_id=3,
    service_context_id="32251@3gpp.org",
    subscription_id=[{"subscription_id_type": 0, "subscription_id_data": "4670000000001"}],
).encode()  # fmt: skip
SLR = commands.SpendingLimitRequest(
    session_id="pcrf;1", origin_host="pcrf.test", origin_realm="test", destination_realm="ocs",
    auth_application_id=16777302, sl_request_type=0,
    subscription_id=[{"subscription_id_type": 0, "subscription_id_data": "4670000000001"}],
    policy_counter_identifier=["monthly-spend"],
).encode()  # fmt: skip

_apps: dict[str, object] = {}


def app(kind: str, factory):
    if kind not in _apps:
        a = AccountingApp() if kind == "rf" else SpendingLimitApp()
        a.setup(FakeWorkerContext(str(factory.mktemp(kind)), {}))
        _apps[kind] = a
    return _apps[kind]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["rf", "sy"]),
    edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=5),
)
def test_corrupted_requests_get_an_answer_or_a_codec_error(tmp_path_factory, kind, edits):
    raw = bytearray(ACR if kind == "rf" else SLR)
    for pos, value in edits:
        raw[pos % len(raw)] = value
    handler = app(kind, tmp_path_factory)
    if kind == "rf":  # handle_batch answers the codec's protocol errors itself
        out = handler.handle_batch([Incoming(bytes(raw), RequestContext("", 0.0))])[0]
        if out is not None:  # None: not even a header to answer
            Message.decode(out)
        return
    try:
        req = Message.decode(bytes(raw))
        Message.decode(handler.handle(req, None).encode())
    except CodecError:
        pass  # the runtime answers the codec's protocol error


def test_an_acr_whose_origin_host_is_not_utf8_and_not_mandatory_gets_5004(tmp_path) -> None:
    """Found by the fuzz above: Origin-Host with its M bit cleared and a 0x80 octet passed
    check_values, and the CDR store could not encode it; the whole batch failed."""
    raw = bytearray(ACR)
    raw[40], raw[44] = 0x01, 0x80  # Origin-Host: flags without M, first octet not UTF-8
    rf = AccountingApp()
    rf.setup(FakeWorkerContext(str(tmp_path), {}))
    good = commands.AccountingRequest.decode(ACR)
    good.session_id = "pgw;2"
    out = rf.handle_batch([Incoming(bytes(raw), RequestContext("", 0.0)),
                           Incoming(good.encode(), RequestContext("", 0.0))])  # fmt: skip
    bad, ok = Message.decode(out[0]), Message.decode(out[1])
    assert bad.result_code == 5004 and bad.failed_avp is not None, bad
    assert ok.result_code == 2001  # the other ACR of the batch is stored and answered
    assert [c.session_id for c in rf.store.iter_cdrs()] == ["pgw;2"]
