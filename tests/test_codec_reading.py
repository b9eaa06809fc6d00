"""Reading never judges: any octets a peer sends in an AVP's data read as a faithful value.

python-diameter reads a DiameterIdentity with a space or non-ASCII octets and a UTF8String
with a NUL; chargegw reads those and more (invalid UTF-8 too, kept octet for octet as lone
surrogates, see `text_octets`). Validation is where a fault is reported: 5004 (or 5014 for
a length its type does not allow) with the AVP as Failed-AVP, in the codec's `find_errors`
and `avp_errors`, and on the worker's judge path (the compiled reader declines, the codec's
validation decides). The one value that cannot be read is a fixed-size number whose data has
the wrong length: that raises the codec's typed AvpError (5014), never anything else.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargegw.codec import (
    Avp,
    AvpError,
    CodecError,
    Message,
    OtherAddress,
    avp_errors,
    commands,
    error_answer,
    get_dictionary,
    text_octets,
)
from chargegw.codec.dictionary import AvpDef, Dictionary
from chargegw.codec.types import TYPES
from chargegw.workers.api import Incoming, RequestContext
from chargegw.workers.charging import ccr
from chargegw.workers.charging.gy import CreditControlApp
from chargegw.workers.charging.testing import FakeWorkerContext

D = get_dictionary()
SCALARS = sorted(t for t in TYPES if t != "Grouped")


def _def(type_: str) -> AvpDef:
    d = Dictionary()
    return d.add_avp(AvpDef(f"Test-{type_}", 70000, 0, type_, True, "test", None))  # type: ignore[return-value]


def wire(d: AvpDef, data: bytes) -> bytes:
    """One whole AVP of d's code carrying `data` (padded), with d's flags."""
    hdr = 12 if d.vendor else 8
    head = struct.pack(">II", d.code, (d.flags << 24) | (hdr + len(data)))
    if d.vendor:
        head += struct.pack(">I", d.vendor)
    return head + data + b"\x00" * (-len(data) % 4)


def read_or_length_fault(d: AvpDef, a: Avp) -> object:
    """a.value; only a fixed-size type of the wrong length may raise, and only AvpError 5014."""
    try:
        return a.value
    except AvpError as exc:
        assert d.codec.fixed and len(a.data) != d.codec.size, exc
        assert exc.result_code == 5014 and exc.failed_avp is a
        return None


# -- the property: every type, every octet string ------------------------------------------


@settings(max_examples=600, deadline=None)
@given(type_=st.sampled_from(SCALARS), data=st.binary(max_size=40))
def test_any_octets_of_any_type_read_without_raising(type_: str, data: bytes) -> None:
    d = _def(type_)
    a = Avp.decode(wire(d, data), d.owner)
    v = read_or_length_fault(d, a)
    if isinstance(v, str):
        assert text_octets(v) == data  # faithful: the octets come back
    elif isinstance(v, bytes):
        assert v == data
    elif isinstance(v, OtherAddress):
        assert struct.pack(">H", v.family) + v.data == data
    errs = avp_errors(a)  # validation never raises; it reports
    assert all(isinstance(e, AvpError) for e in errs)
    assert (v is None) <= bool(errs)  # an unreadable value is always a reported fault
    assert a.encode() == wire(d, data)  # the octets go out unchanged


ALL_DEFS = sorted(D.avps.values(), key=lambda x: (x.vendor, x.code))


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(d=st.sampled_from(ALL_DEFS), data=st.binary(max_size=48))
def test_any_octets_in_any_dictionary_avp_read_through_every_path(d: AvpDef, data: bytes) -> None:
    """Each built-in AVP, any data: the Avp path, the index path (attribute read) and
    validation raise nothing but the codec's typed errors (AvpError for framing)."""
    raw = wire(d, data)
    a = Avp.decode(raw, D)
    if d.type == "Grouped":
        try:
            a.value.to_list()  # members are framing: a bad one is the codec's AvpError
        except AvpError:
            pass
    else:
        read_or_length_fault(d, a)
    msg = commands.DeviceWatchdogRequest(origin_host="a.example", origin_realm="example")
    body = msg.encode() + raw
    body = body[:1] + len(body).to_bytes(3, "big") + body[4:]
    m = Message.decode(body)
    try:
        m.get_all(d)
    except AvpError:
        assert d.codec.fixed or d.type == "Grouped"
    errs = m.find_errors()
    assert all(isinstance(e, CodecError) for e in errs)


# -- each type, by hand ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "data", "value", "code"),
    [
        ("UTF8String", b"nul\x00inside", "nul\x00inside", 5004),
        ("UTF8String", b"\xff\xfe", "\udcff\udcfe", 5004),
        ("UTF8String", b"caf\xe9", "caf\udce9", 5004),  # Latin-1, not UTF-8
        ("UTF8String", b"\xed\xa0\x80", "\udced\udca0\udc80", 5004),  # an encoded surrogate
        ("DiameterIdentity", b"two words.example", "two words.example", 5004),
        ("DiameterIdentity", "hôte.example".encode(), "hôte.example", 5004),
        ("DiameterIdentity", b"h\xf4te.example", "h\udcf4te.example", 5004),
        ("DiameterIdentity", b"", "", 5004),
        ("DiameterIdentity", b"x" * 256, "x" * 256, 5004),
        ("DiameterURI", b"aaa://host .example", "aaa://host .example", 5004),
        ("DiameterURI", b"aaa://h\x00", "aaa://h\x00", 5004),
        ("DiameterURI", b"aaa://\xff", "aaa://\udcff", 5004),
        ("IPFilterRule", b"permit in ip from any", "permit in ip from any", 5004),
        ("IPFilterRule", b"permit\xa0in", "permit\udca0in", 5004),
        ("Address", b"\x00", b"\x00", 5014),
        ("Address", b"\x00\x01\x0a\x00\x00", OtherAddress(1, b"\x0a\x00\x00"), 5014),
        ("Address", b"\x00\x02" + b"\x00" * 15, OtherAddress(2, b"\x00" * 15), 5014),
    ],
)
def test_odd_octets_read_faithfully_and_validation_reports_them(
    type_: str, data: bytes, value: object, code: int
) -> None:
    d = _def(type_)
    a = Avp.decode(wire(d, data), d.owner)
    assert a.value == value
    errs = avp_errors(a)
    assert [e.result_code for e in errs] == [code] and errs[0].failed_avp is a


@pytest.mark.parametrize("type_", ["Integer32", "Unsigned64", "Float32", "Time", "Enumerated"])
def test_a_fixed_size_value_of_the_wrong_length_is_a_typed_length_fault(type_: str) -> None:
    d = _def(type_)
    a = Avp.decode(wire(d, b"\x01\x02\x03"), d.owner)
    with pytest.raises(AvpError) as ei:
        a.value  # noqa: B018
    assert ei.value.result_code == 5014 and ei.value.failed_avp is a
    assert [e.result_code for e in avp_errors(a)] == [5014]


# -- whole messages: reading, answering, validating -------------------------------------------


def _ccr(**odd: bytes) -> bytes:
    """A valid CCR except for the AVPs given as raw data octets (unchecked)."""
    kw: dict[str, object] = dict(
        session_id="gw;1", origin_host="client.example", origin_realm="example",
        destination_realm="ocs.example", auth_application_id=4,
        service_context_id="32251@3gpp.org", cc_request_type=1, cc_request_number=0,
        subscription_id=[{"subscription_id_type": 0, "subscription_id_data": "4670000000001"}],
    )  # fmt: skip
    kw.update(odd)
    return commands.CreditControlRequest(**kw).encode()


@pytest.mark.parametrize(
    ("field", "data", "value"),
    [
        ("user_name", b"alice\x00", "alice\x00"),
        ("user_name", b"\xc3(", "\udcc3("),
        ("origin_host", b"client host", "client host"),
        ("origin_host", "clïent.example".encode(), "clïent.example"),
        ("session_id", b"gw;\xff;1", "gw;\udcff;1"),
    ],
)
def test_a_message_with_odd_octets_reads_answers_and_is_judged_5004(
    tmp_path_factory: pytest.TempPathFactory, field: str, data: bytes, value: str
) -> None:
    raw = _ccr(**{field: data})
    m = Message.decode(raw)
    assert getattr(m, field) == value  # the index path
    assert [a.value for a in m.avps if a.name == m.find(field).name] == [value]  # Avp path
    errs = Message.decode(raw).find_errors()
    assert [e.result_code for e in errs] == [5004]
    assert errs[0].failed_avp.data == data
    # the answer path copies the octets, it does not re-check them
    ans = Message.decode(Message.decode(raw).answer(2001).encode())
    if field == "session_id":
        assert ans.raw_value("Session-Id") == data
    err = Message.decode(error_answer(raw, errs[0], "ocs.example", "example"))
    assert err.result_code == 5004 and err.failed_avp[0].avps[0].data == data
    if field == "user_name":
        return  # the OCS does not read User-Name: its reader takes no view of it (by design)
    # the worker: the compiled reader declines, the codec's validation decides
    with pytest.raises(ccr.Unreadable):
        ccr.read(raw)
    app = CreditControlApp()
    app.setup(FakeWorkerContext(str(tmp_path_factory.mktemp("gy")), {}))
    out = app.handle_batch([Incoming(raw, RequestContext(peer="", deadline=0.0))])[0]
    assert type(out) is bytes
    cca = Message.decode(out)
    assert cca.result_code == 5004 and cca.failed_avp[0].avps[0].data == data
    assert cca.raw_value("Session-Id") == Message.decode(raw).raw_value("Session-Id")


def test_an_odd_subscription_id_data_is_judged_5004_inside_its_group(
    tmp_path: pytest.TempPathFactory,
) -> None:
    sub = [{"subscription_id_type": 0, "subscription_id_data": b"467\x00\xff"}]
    raw = _ccr(subscription_id=sub)  # type: ignore[arg-type]
    assert Message.decode(raw).subscription_id[0].subscription_id_data == "467\x00\udcff"
    with pytest.raises(ccr.Unreadable):
        ccr.read(raw)
    app = CreditControlApp()
    app.setup(FakeWorkerContext(str(tmp_path), {}))
    out = app.handle_batch([Incoming(raw, RequestContext(peer="", deadline=0.0))])[0]
    cca = Message.decode(out)  # type: ignore[arg-type]
    assert cca.result_code == 5004
    outer = cca.failed_avp[0].avps[0]  # the fault comes wrapped in its group (RFC 6733 7.5)
    assert outer.name == "Subscription-Id" and outer.value.avps[0].data == b"467\x00\xff"


@pytest.mark.parametrize("cut", [0, 1, 2, 3])
def test_a_group_length_that_leaves_out_its_last_members_padding_reads_as_the_codec_does(
    tmp_path_factory: pytest.TempPathFactory, cut: int
) -> None:
    """Subscription-Id's length may stop short of its last member's padding (the live fuzz
    found such frames). The codec's scan accepts that and its validation finds no fault, so
    the compiled reader must read it too: declining sent the request to the judge path,
    where validation passed it and the worker answered 5012."""
    raw = bytearray(_ccr())
    data = b"4670000000001"  # 13 octets: its AVP carries 3 octets of padding
    group = raw.index(struct.pack(">I", D.find_avp("Subscription-Id").code))
    (fl,) = struct.unpack_from(">I", raw, group + 4)
    assert fl & 0xFFFFFF == 44
    struct.pack_into(">I", raw, group + 4, fl - cut)
    m = Message.decode(bytes(raw))
    assert m.find_errors() == []
    assert m.subscription_id[0].subscription_id_data == data.decode()
    v = ccr.read(bytes(raw))
    subs = [(s.subscription_id_type, s.subscription_id_data) for s in v.subscription_id]
    assert subs == [(0, data.decode())]
    app = CreditControlApp()
    app.setup(FakeWorkerContext(str(tmp_path_factory.mktemp("gy")), {}))
    out = app.handle_batch([Incoming(bytes(raw), RequestContext(peer="", deadline=0.0))])[0]
    assert type(out) is bytes and Message.decode(out).result_code != 5012


def test_what_the_reader_declines_the_codec_judges_over_mutated_ccrs() -> None:
    """The reader and the codec agree (fixed seed, the live fuzz's own mutations): every
    CCR the compiled reader declines is one the codec's validation (or decoding) faults,
    so no well-formed request reaches the worker's 5012."""
    import random

    from chargegw.loadtest.reliability_fuzz import classify, mutate, seeds

    rng = random.Random(14)
    declined = disagree = 0
    for i in range(4000):
        frame = seeds(rng, i, "fuzz.example")
        for _ in range(rng.choice((1, 1, 2, 3))):
            frame = mutate(rng, frame)[1]
        if classify(frame) != "request":
            continue
        try:
            ccr.read(frame)
            continue
        except ccr.Unreadable:
            declined += 1
        try:
            m = Message.decode(frame)
        except CodecError:
            continue
        if m.code == 272 and m.app_id == 4 and m.is_request and not m.find_errors(limit=1):
            disagree += 1
    assert declined > 100  # the mutations do reach the reader's refusals
    assert disagree == 0
