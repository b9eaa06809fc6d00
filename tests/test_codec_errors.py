"""DiameterError, the one error base, and error_answer, the one error-answer builder."""

from __future__ import annotations

import pytest

from chargegw.codec import (
    Avp,
    AvpError,
    CodecError,
    DiameterError,
    EncodeError,
    FramingError,
    ResultCode,
)


def test_diameter_error_carries_what_the_answer_needs() -> None:
    fa = Avp.new("Origin-Host", "x")
    e = DiameterError(ResultCode.DIAMETER_MISSING_AVP, "missing", [fa])
    assert e.result_code == 5005 and e.error_message == "missing" and str(e) == "missing"
    assert e.failed_avps == [fa] and e.failed_avp is fa
    assert e.e_bit is False
    assert DiameterError(3002).e_bit is True
    assert DiameterError(3002, e_bit=False).e_bit is False
    assert DiameterError(5012, e_bit=True).e_bit is True
    assert str(DiameterError(3004)) == "Result-Code 3004"


def test_codec_errors_are_diameter_errors_with_their_old_constructors() -> None:
    assert issubclass(CodecError, DiameterError)
    assert issubclass(FramingError, DiameterError)
    assert issubclass(AvpError, DiameterError)
    assert issubclass(EncodeError, DiameterError) and issubclass(EncodeError, ValueError)
    c = CodecError("bad")
    assert c.result_code == 5012 and c.error_message == "bad" and not c.failed_avps
    f = FramingError("short")
    assert f.result_code == 5015 and f.frames == [] and f.rest == b""
    assert FramingError("v", 5011).result_code == 5011
    fa = Avp.new("Session-Id", "s")
    a = AvpError(5014, "bad length", fa)
    assert a.result_code == 5014 and a.failed_avp is fa and a.failed_avps == [fa]
    assert a.header is None and repr(a) == "AvpError(5014, 'bad length')"
    a.failed_avp = None
    assert a.failed_avps == []
    with pytest.raises(DiameterError):
        raise a


# -- error_answer ---------------------------------------------------------------------------

import struct  # noqa: E402

from chargegw.codec import FLAG_ERROR, Message, error_answer, get_dictionary, peek  # noqa: E402
from chargegw.codec.bench import load_vectors  # noqa: E402

CCR = load_vectors()["ccr_u"]
HOST, REALM = "gw.example", "example"


def _retransmitted(raw: bytes) -> bytes:
    b = bytearray(raw)
    b[4] |= 0x10  # T bit
    return bytes(b)


@pytest.mark.parametrize("as_message", [False, True])
def test_protocol_error_answer_shape(as_message: bool) -> None:
    raw = _retransmitted(CCR)
    req = Message.decode(raw) if as_message else raw
    out = error_answer(req, DiameterError(ResultCode.DIAMETER_TOO_BUSY, "busy"), HOST, REALM)
    a = Message.decode(out)
    r = peek(raw)
    assert (a.code, a.app_id, a.hop_by_hop, a.end_to_end) == (
        r.code,
        r.app_id,
        r.hop_by_hop,
        r.end_to_end,
    )
    assert a.flags == 0x40 | FLAG_ERROR  # P copied, E set, R and T clear
    names = [x.name for x in a.avps]
    # the generic answer-message grammar, in order
    assert names == ["Session-Id", "Origin-Host", "Origin-Realm", "Result-Code", "Error-Message"]
    assert a.raw_value("Session-Id") == r.session_id
    assert a.result_code == 3004 and a.error_message == "busy"
    assert a.origin_host == HOST and a.origin_realm == REALM


@pytest.mark.parametrize("as_message", [False, True])
def test_application_error_answer_keeps_the_commands_required_avps(as_message: bool) -> None:
    req = Message.decode(CCR) if as_message else CCR
    fa = Avp.new("CC-Request-Number", 99)
    out = error_answer(req, DiameterError(5004, "bad value", [fa]), HOST, REALM)
    a = Message.decode(out)
    assert not a.flags & FLAG_ERROR and not a.is_request
    assert type(a).__name__ == "CreditControlAnswer"
    assert a.result_code == 5004
    assert a.cc_request_type == 2 and a.cc_request_number == 1 and a.auth_application_id == 4
    assert a.get("Failed-AVP").cc_request_number == 99
    assert a.find_errors() == []  # a strict peer decodes it


def test_e_bit_follows_the_error_not_only_the_code() -> None:
    a = Message.decode(error_answer(CCR, DiameterError(5012, e_bit=True), HOST, REALM))
    assert a.is_error
    b = Message.decode(error_answer(CCR, DiameterError(3002, e_bit=False), HOST, REALM))
    assert not b.is_error


def _undecodable() -> bytes:
    """The CCR with a broken AVP appended after its Session-Id and the rest."""
    body = CCR[20:] + struct.pack(">II", 999, 0x40 << 24 | 0xFFFF)  # runs past the end
    return struct.pack(">I", 1 << 24 | (20 + len(body))) + CCR[4:20] + body


def test_answer_to_an_undecodable_request_from_what_could_be_peeked() -> None:
    raw = _undecodable()
    with pytest.raises(AvpError) as ei:
        Message.decode(raw)
    out = error_answer(raw, ei.value, HOST, REALM)
    a = Message.decode(out)
    assert a.result_code == 5014 and a.hop_by_hop == 0x1234 and a.end_to_end == 0x5678
    assert a.raw_value("Session-Id") == peek(CCR).session_id
    assert a.cc_request_type == 2  # copied from before the fault
    assert a.get("Failed-AVP").avps[0].code == 999


def test_answer_to_a_bad_version_from_the_header_alone() -> None:
    raw = bytearray(CCR)
    raw[0] = 7
    with pytest.raises(FramingError) as ei:
        Message.decode(bytes(raw))
    a = Message.decode(error_answer(bytes(raw), ei.value, HOST, REALM))
    assert a.result_code == 5011 and a.hop_by_hop == 0x1234


def test_proxy_info_is_copied_in_order() -> None:
    req = Message.decode(CCR)
    req.add("Proxy-Info", {"proxy_host": "p1.example.net", "proxy_state": b"1"})
    req.add("Proxy-Info", {"proxy_host": "p2.example.net", "proxy_state": b"2"})
    for code in (3002, 5012):
        a = Message.decode(error_answer(req.encode(), DiameterError(code), HOST, REALM))
        assert [p.proxy_host for p in a.proxy_info] == ["p1.example.net", "p2.example.net"]


def test_a_failed_avp_that_will_not_encode_is_dropped_not_raised() -> None:
    d = get_dictionary()
    bad = Avp(d.avp("Result-Code").code, definition=d.avp("Result-Code"))
    bad._value = "not an int"  # noqa: SLF001 - a value that cannot be packed
    a = Message.decode(error_answer(CCR, DiameterError(5004, "x", [bad]), HOST, REALM))
    assert a.result_code == 5004 and a.get("Failed-AVP") is None


def test_no_header_no_answer() -> None:
    with pytest.raises(FramingError):
        error_answer(CCR[:19], DiameterError(5015), HOST, REALM)


def test_error_message_is_bounded() -> None:
    a = Message.decode(error_answer(CCR, DiameterError(5012, "x" * 5000), HOST, REALM))
    assert len(a.error_message) == 200
