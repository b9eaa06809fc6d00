"""peek: the header and routing values of a message in one pass, and its hostile inputs."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargegw.codec import (
    ROUTING,
    AvpError,
    DiameterError,
    FrameReader,
    FramingError,
    Message,
    Peek,
    avp_key,
    get_dictionary,
    parse_header,
    peek,
)
from chargegw.codec.bench import load_vectors

CCR = load_vectors()["ccr_u"]


def _ccr(**extra: object) -> bytes:
    d = get_dictionary()
    cls = Message.decode(CCR).__class__
    m = cls(hop_by_hop=7, end_to_end=9, dictionary=d)
    m.session_id = "gw;1;2"
    m.origin_host = "client.example"
    m.origin_realm = "example"
    m.destination_realm = "ocs.example"
    m.destination_host = "ocs1.ocs.example"
    m.auth_application_id = 4
    m.cc_request_type = 1
    m.cc_request_number = 0
    m.route_record = ["r1.example", "r2.example"]
    m.subscription_id = [
        {"subscription_id_type": 0, "subscription_id_data": "491701234567"},
        {"subscription_id_type": 1, "subscription_id_data": "262011234567890"},
    ]
    m.add("3GPP-RAT-Type", b"\x06")  # a vendor AVP at the top level
    for k, v in extra.items():
        setattr(m, k, v)
    return m.encode()


def test_peek_reads_header_and_routing_values_like_decode() -> None:
    raw = _ccr()
    p = peek(raw)
    m = Message.decode(raw)
    assert isinstance(p, Peek)
    assert p.header == parse_header(raw) == m.header
    assert (p.code, p.app_id, p.hop_by_hop, p.end_to_end) == (272, 4, 7, 9)
    assert p.is_request and p.is_proxiable and not p.is_error and not p.is_retransmit
    assert p.session_id == m.raw_value("Session-Id") == b"gw;1;2"
    assert p.origin_host == b"client.example" and p.origin_realm == b"example"
    assert p.destination_host == b"ocs1.ocs.example"
    assert p.destination_realm == b"ocs.example"
    assert p.route_records == [b"r1.example", b"r2.example"] == m.raw_values("Route-Record")
    assert p.subscription_ids == m.raw_values("Subscription-Id") and len(p.subscription_ids) == 2
    # not asked for: absent, not decoded
    assert p.first("CC-Request-Number") is None and p.all("CC-Request-Number") == []
    assert p.first("CC-Request-Type") == m.raw_value("CC-Request-Type")  # ends_session reads it


def test_peek_codes_by_name_or_key_and_vendor_avps() -> None:
    raw = _ccr()
    d = get_dictionary()
    want = ("CC-Request-Number", "3GPP-RAT-Type")
    rat = d.avp("3GPP-RAT-Type")
    assert rat.vendor == 10415
    p = peek(raw, want)
    m = Message.decode(raw)
    assert p.first("CC-Request-Number") == m.raw_value("CC-Request-Number")
    assert p.first(rat.ikey) == m.raw_value("3GPP-RAT-Type") is not None
    by_key = peek(raw, frozenset({avp_key("CC-Request-Number"), rat.ikey}))
    assert by_key.values == p.values
    assert set(peek(raw).values) <= {avp_key(n) for n in ROUTING}


def test_peek_takes_memoryview_and_bytearray_and_returns_bytes() -> None:
    raw = _ccr()
    for buf in (memoryview(raw), bytearray(raw)):
        p = peek(buf)
        assert p == peek(raw)
        assert all(type(v) is bytes for v in p.values.values())
        assert p.more is not None and all(type(v) is bytes for vs in p.more.values() for v in vs)


def test_peek_keeps_first_values_flat_and_repeats_in_wire_order() -> None:
    """A peek is two objects whatever it found (a batch of requests keeps no list per value
    alive); the repeats of Route-Record and Subscription-Id keep their wire order."""
    p = peek(_ccr())
    rr, sub = avp_key("Route-Record"), avp_key("Subscription-Id")
    assert p.values[rr] == b"r1.example" and type(p.values[avp_key("Session-Id")]) is bytes
    assert p.more is not None and set(p.more) == {rr, sub}
    assert p.more[rr] == [b"r2.example"] and p.all(rr) == [b"r1.example", b"r2.example"]
    single = peek(_ccr(route_record=["only.example"], subscription_id=[]))
    assert single.more is None and single.route_records == [b"only.example"]
    assert single.subscription_ids == [] and single.all("Destination-Host") == [b"ocs1.ocs.example"]


def test_peek_and_frame_reader_share_the_header_checks() -> None:
    bad = bytearray(_ccr())
    bad[0] = 2
    for f in (peek, parse_header, Message.decode, FrameReader().feed):
        with pytest.raises(FramingError) as ei:
            f(bytes(bad))
        assert ei.value.result_code == 5011


def _avp(code: int, data: bytes, length: int | None = None, flags: int = 0x40) -> bytes:
    n = 8 + len(data) if length is None else length
    return struct.pack(">II", code, flags << 24 | n) + data + b"\0" * (-len(data) % 4)


def _msg(body: bytes, length: int | None = None) -> bytes:
    n = 20 + len(body) if length is None else length
    return struct.pack(">IIIII", 1 << 24 | n, 0xC0 << 24 | 272, 4, 1, 2) + body


SID = _avp(263, b"s;1")


@pytest.mark.parametrize(
    ("buf", "exc", "code"),
    [
        (b"", FramingError, 5015),
        (b"\x01\x00\x00", FramingError, 5015),
        (_msg(b"")[:19], FramingError, 5015),
        (_msg(SID, length=20 + len(SID) + 4), FramingError, 5015),  # says more than it holds
        (_msg(SID)[:-4], FramingError, 5015),  # cut inside the last AVP
        (_msg(SID, length=21) + b"\0", FramingError, 5015),  # length not a multiple of 4
        (_msg(SID, length=0xFFFFFC), FramingError, 5015),  # over max_length
        (_msg(SID + b"\0" * 4), AvpError, 5014),  # 4 stray octets: no room for a header
        (_msg(SID + _avp(264, b"", length=0)), AvpError, 5014),  # zero length
        (_msg(SID + _avp(264, b"", length=7)), AvpError, 5014),  # under the header size
        (_msg(SID + _avp(264, b"abcd", length=0xFFFFFF)), AvpError, 5014),  # huge length
        (_msg(SID + _avp(264, b"abcd", length=13)), AvpError, 5014),  # padding runs past
        (_msg(SID + _avp(264, b"abcd", length=11, flags=0xC0)), AvpError, 5014),  # V, short
        (_msg(_avp(264, b"ab", length=16, flags=0xC0)), AvpError, 5014),  # V, past the end
    ],
)
def test_peek_hostile_inputs_raise_codec_errors(buf: bytes, exc: type, code: int) -> None:
    with pytest.raises(exc) as ei:
        peek(buf)
    assert ei.value.result_code == code
    if exc is AvpError:
        assert ei.value.failed_avp is not None  # the 5014 answer's Failed-AVP
        with pytest.raises(AvpError) as di:
            Message.decode(buf)
        assert di.value.failed_avp.encode() == ei.value.failed_avp.encode()


def test_peek_accepts_nonzero_padding_as_decode_does() -> None:
    body = SID[:-1] + b"\xff"  # Session-Id of 3 octets, its pad octet not zero
    raw = _msg(body)
    assert peek(raw).session_id == Message.decode(raw).raw_value("Session-Id") == b"s;1"


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_peek_never_raises_anything_but_codec_errors(data: st.DataObject) -> None:
    raw = bytearray(_ccr())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    buf = bytes(raw[:cut])
    try:
        p = peek(buf)
    except DiameterError as exc:
        assert isinstance(exc, (FramingError, AvpError))
        with pytest.raises(DiameterError):
            Message.decode(buf)
        return
    m = Message.decode(buf)  # what peek accepts, decode accepts, with the same values
    assert p.header == m.header
    assert p.session_id == m.raw_value("Session-Id")
    assert p.route_records == m.raw_values("Route-Record")
