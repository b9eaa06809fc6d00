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
