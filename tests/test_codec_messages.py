"""The message API others build on: framing, decoding input kinds, building, answers,
attribute access, relaying unknown AVPs at any depth, dump and JSON."""

from __future__ import annotations

import struct

import orjson
import pytest

from chargegw.codec import (
    DEFAULT_MAX_LENGTH,
    Avp,
    AvpError,
    CodecError,
    FrameReader,
    FramingError,
    Group,
    Message,
    class_for,
    get_dictionary,
    parse_header,
)
from chargegw.codec import commands as cmds
from chargegw.codec.bench import load_vectors

VEC = load_vectors()
CCR = VEC["ccr_u"]
CCA = VEC["cca"]

REQUIRED_CLASSES = [
    # base
    "AbortSessionRequest", "AbortSessionAnswer", "AccountingRequest", "AccountingAnswer",
    "CapabilitiesExchangeRequest", "CapabilitiesExchangeAnswer", "DeviceWatchdogRequest",
    "DeviceWatchdogAnswer", "DisconnectPeerRequest", "DisconnectPeerAnswer", "ReAuthRequest",
    "ReAuthAnswer", "SessionTerminationRequest", "SessionTerminationAnswer",
    # NASREQ
    "AARequest", "AAAnswer", "NasreqAbortSessionRequest", "NasreqAccountingRequest",
    "NasreqReAuthRequest", "NasreqSessionTerminationRequest",
    # MIP4, EAP, credit control, Sy, Cx/Dx
    "AAMobileNodeRequest", "AAMobileNodeAnswer", "HomeAgentMIPRequest", "HomeAgentMIPAnswer",
    "DiameterEAPRequest", "DiameterEAPAnswer", "CreditControlRequest", "CreditControlAnswer",
    "SpendingLimitRequest", "SpendingLimitAnswer", "SpendingStatusNotificationRequest",
    "SpendingStatusNotificationAnswer", "UserAuthorizationRequest", "ServerAssignmentRequest",
    "LocationInfoRequest", "MultimediaAuthRequest", "RegistrationTerminationRequest",
    "PushProfileRequest", "PushProfileAnswer",
]  # fmt: skip


def ccr() -> cmds.CreditControlRequest:
    return cmds.CreditControlRequest(
        hop_by_hop=0x11, end_to_end=0x22,
        session_id="gw.example.net;1;2", origin_host="gw.example.net", origin_realm="example.net",
        destination_realm="example.org", auth_application_id=4, service_context_id="32251@3gpp.org",
        cc_request_type="INITIAL_REQUEST", cc_request_number=0,
        multiple_services_credit_control=[{"rating_group": 10, "requested_service_unit": {"cc_time": 600}}],
    )  # fmt: skip


# -- framing ---------------------------------------------------------------------------


def test_header_and_framing_faults() -> None:
    h = parse_header(CCR)
    assert (h.version, h.length, h.flags, h.code, h.app_id) == (1, 592, 0xC0, 272, 4)
    cases = [
        (b"\x02" + CCR[1:], 5011, "version"),
        (struct.pack(">I", (1 << 24) | 16) + CCR[4:], 5015, "under 20"),
        (struct.pack(">I", (1 << 24) | 593) + CCR[4:], 5015, "multiple of 4"),
        (CCR[:19], 5015, "shorter than a header"),
        (CCR[:100], 5015, "buffer holds"),
        (CCR + b"\x00\x00\x00\x00", 5015, "buffer holds"),
    ]
    for data, code, words in cases:
        with pytest.raises(FramingError) as ei:
            Message.decode(data)
        assert ei.value.result_code == code and words in str(ei.value)
    with pytest.raises(FramingError, match="exceeds the maximum 512"):
        Message.decode(CCR, max_length=512)
    assert Message.decode(CCR, max_length=592).code == 272
    assert issubclass(FramingError, CodecError)


def test_frame_reader_splits_a_stream() -> None:
    stream = CCR + CCA + CCR
    r = FrameReader()
    out = []
    for i in range(0, len(stream), 7):  # fed in small, unaligned pieces
        out += r.feed(stream[i : i + 7])
    assert out == [CCR, CCA, CCR] and r.buffered == 0
    r.eof()  # nothing left: fine
    r.feed(CCA[:30])
    assert r.buffered == 30
    with pytest.raises(FramingError, match="closed inside a frame"):
        r.eof()
    with pytest.raises(FramingError):
        FrameReader().feed(b"\x07" + CCR[1:])
    with pytest.raises(FramingError):
        FrameReader(max_length=100).feed(CCR)
    assert DEFAULT_MAX_LENGTH == 1 << 20


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_decode_accepts_any_buffer(kind: type) -> None:
    m = Message.decode(kind(CCR))
    assert m.multiple_services_credit_control[0].used_service_unit[0].cc_total_octets == 1048577
    assert m.encode() == CCR


def test_structural_fault_carries_the_header() -> None:
    bad = bytearray(CCR)
    struct.pack_into(">I", bad, 24, (0x40 << 24) | 4000)  # Session-Id length past the end
    with pytest.raises(AvpError) as ei:
        Message.decode(bytes(bad))
    e = ei.value
    assert e.result_code == 5014
    assert e.header is not None and (e.header.hop_by_hop, e.header.end_to_end) == (0x1234, 0x5678)
    assert e.failed_avp is not None and e.failed_avp.code == 263


# -- classes ---------------------------------------------------------------------------


def test_a_class_for_every_command() -> None:
    names = set(dir(cmds))
    for n in REQUIRED_CLASSES:
        assert n in names
        k = getattr(cmds, n)
        assert issubclass(k, Message)
        m = k()
        assert m.is_request == n.endswith("Request")
    assert cmds.CreditControlRequest().app_id == 4
    assert cmds.UserAuthorizationRequest().app_id == 16777216
    assert cmds.SpendingLimitRequest().code == 8388635
    with pytest.raises(AttributeError):
        cmds.NoSuchCommandRequest  # noqa: B018


def test_generic_fallback_class() -> None:
    raw = Message(code=9999, app_id=77, flags=0x80, session_id="x;1").encode()
    m = Message.decode(raw)
    assert type(m) is Message and m.command_name == "Command-9999-Request"
    assert m.session_id == "x;1" and m.encode() == raw
    assert class_for(get_dictionary(), 4, 272, True) is cmds.CreditControlRequest
    assert class_for(get_dictionary(), 12345, 258, True) is cmds.ReAuthRequest  # any application
    assert class_for(get_dictionary(), 1, 258, True) is cmds.NasreqReAuthRequest


# -- building and reading --------------------------------------------------------------


def test_build_in_grammar_order_and_read_back() -> None:
    m = ccr()
    names = [a.name for a in m.avps]
    assert names[0] == "Session-Id"
    assert (
        names.index("Origin-Host")
        < names.index("CC-Request-Type")
        < names.index("Multiple-Services-Credit-Control")
    )
    d = Message.decode(m.encode())
    assert isinstance(d, cmds.CreditControlRequest)
    assert d.multiple_services_credit_control[0].requested_service_unit.cc_time == 600
    assert d.cc_request_type.name == "INITIAL_REQUEST"
    assert d.destination_host is None and d.subscription_id == []  # absent: None, or [] for lists
    assert d == m


def test_get_set_add_remove() -> None:
    m = ccr()
    assert m.get("Origin-Host") == "gw.example.net" == m.get("origin_host")
    m.set("Origin-Host", "other.example.net")
    assert m.origin_host == "other.example.net"
    m.add("Route-Record", "relay1.example.net")
    m.add("route_record", "relay2.example.net")
    assert m.route_record == ["relay1.example.net", "relay2.example.net"]
    assert m.get_all("Route-Record") == m.route_record
    assert "Route-Record" in m and len(m.find_code(282)) == 2
    m.route_record = ["only.example.net"]
    assert m.route_record == ["only.example.net"]
    assert m.remove("Route-Record") == 1 and "Route-Record" not in m
    m.origin_host = None
    assert m.origin_host is None
    del m.origin_realm
    assert m.origin_realm is None
    with pytest.raises(KeyError):
        m.get("No-Such-AVP")
    with pytest.raises(AttributeError):
        m.no_such_avp  # noqa: B018
    cls = Message.decode(cmds.AAAnswer(class_=[b"a", b"b"]).encode())
    assert cls.class_ == [b"a", b"b"]  # 'Class' is a keyword: class_


def test_nested_change_is_encoded_and_siblings_stay_exact() -> None:
    m = Message.decode(CCR)
    usu = m.multiple_services_credit_control[0].used_service_unit[0]
    usu.cc_total_octets = 5
    assert m.raw is None
    out = m.encode()
    again = Message.decode(out)
    assert again.multiple_services_credit_control[0].used_service_unit[0].cc_total_octets == 5
    assert len(out) == len(CCR)  # same size: only those 8 octets differ
    diff = [i for i in range(len(out)) if out[i] != CCR[i]]
    assert diff and max(diff) - min(diff) < 8


def test_unknown_avps_at_any_depth_are_kept_byte_exact() -> None:
    unknown = struct.pack(
        ">IIII", 4242, (0xC0 << 24) | 16, 999999, 0xDEADBEEF
    )  # V+M, vendor 999999
    unknown2 = struct.pack(">II", 4243, (0x00 << 24) | 11) + b"abc\x00"
    m = ccr()
    mscc = m.multiple_services_credit_control[0]
    mscc.add(Avp.decode(unknown))
    mscc.requested_service_unit.add(Avp.decode(unknown2))
    raw = m.encode()
    assert unknown in raw and unknown2 in raw
    d = Message.decode(raw)
    inner = d.multiple_services_credit_control[0]
    inner.rating_group = 11  # change a sibling of the unknown AVP
    out = d.encode()
    assert unknown in out and unknown2 in out
    got = Message.decode(out).multiple_services_credit_control[0]
    unk = got.find_code(4242, 999999)[0]
    assert unk.definition is None and unk.data == b"\xde\xad\xbe\xef" and unk.flags == 0xC0
    assert got.rating_group == 11
    assert [e.result_code for e in Message.decode(out).find_errors()] == [5001]  # M bit, unknown


def test_avp_flags_change_is_encoded() -> None:
    m = Message.decode(CCR)
    oh = m.find("Origin-Host")
    assert oh is not None and oh.flags == 0x00
    oh.flags = 0x40
    out = m.encode()
    assert Message.decode(out).find("Origin-Host").flags == 0x40
    assert len(out) == len(CCR)


def test_copy_is_independent() -> None:
    m = Message.decode(CCR)
    a = m.find("Multiple-Services-Credit-Control")
    c = a.copy()
    c.value.rating_group = 1
    assert a.value.rating_group == 100 and c.value.rating_group == 1
    assert m.encode() == CCR
    s = m.find("Session-Id").copy()
    assert s.encode() == CCR[20 : 20 + 72]


# -- answers ---------------------------------------------------------------------------


def test_answer_copies_what_rfc_6733_says() -> None:
    req = ccr()
    req.add("Proxy-Info", {"proxy_host": "p1.example.net", "proxy_state": b"1"})
    req.add("Proxy-Info", {"proxy_host": "p2.example.net", "proxy_state": b"2"})
    req = Message.decode(req.encode())
    ans = req.answer(
        2001, origin_host="ocs.example.org", origin_realm="example.org",
        auth_application_id=4, cc_request_type=req.cc_request_type, cc_request_number=0,
    )  # fmt: skip
    assert isinstance(ans, cmds.CreditControlAnswer)
    assert (ans.hop_by_hop, ans.end_to_end, ans.code, ans.app_id) == (0x11, 0x22, 272, 4)
    assert not ans.is_request and ans.is_proxiable and not ans.is_error
    avps = ans.avps
    assert avps[0].name == "Session-Id" and avps[0].encode() == req.find("Session-Id").encode()
    assert [p.proxy_host for p in ans.proxy_info] == ["p1.example.net", "p2.example.net"]
    assert ans.result_code == 2001 and ans.result_code.name == "DIAMETER_SUCCESS"
    assert Message.decode(ans.encode()).find_errors() == []


def test_protocol_error_answer() -> None:
    req = Message.decode(ccr().encode())
    bad = req.find("CC-Request-Number")
    ans = req.answer(3008, origin_host="ocs.example.org", origin_realm="example.org",
                     error_message="bad bits", failed_avp=bad)  # fmt: skip
    assert ans.is_error and ans.is_proxiable
    assert ans.error_message == "bad bits"
    (fa,) = ans.failed_avp  # CCA's grammar: * [ Failed-AVP ]
    assert isinstance(fa, Group) and fa.avps[0].encode() == bad.encode()
    d = Message.decode(ans.encode())
    assert d.find_errors() == []  # the E-bit answer follows <answer-message>, not CCA's grammar


# -- presentation ----------------------------------------------------------------------


def test_dump_and_json() -> None:
    m = Message.decode(CCR)
    text = m.dump()
    assert text.startswith("Credit-Control-Request <code 272, app 4, flags 0xc0 (RP--)")
    assert "    Used-Service-Unit (446, M):" in text
    assert "      CC-Total-Octets (421, M): 1048577" in text
    assert "CC-Request-Type (416, M): UPDATE_REQUEST (2)" in text
    assert "PDP-Address (1227, vendor 10415, V): 10.45.0.17" in text
    doc = orjson.loads(orjson.dumps(m.to_dict()))
    assert doc["header"]["command"] == "Credit-Control-Request"
    mscc = next(a for a in doc["avps"] if a["name"] == "Multiple-Services-Credit-Control")
    usu = next(a for a in mscc["value"] if a["name"] == "Used-Service-Unit")
    assert {"name": "CC-Total-Octets", "code": 421, "flags": 64, "value": 1048577} in usu["value"]
    assert repr(m).startswith("<CreditControlRequest code=272")


def test_dump_shows_an_invalid_value_and_goes_on() -> None:
    raw = bytearray(CCA)
    i = raw.index(bytes.fromhex("000001a04000000c"))  # CC-Request-Type, length 12
    struct.pack_into(">I", raw, i + 4, (0x40 << 24) | 10)  # length 10: a bad Enumerated size
    m = Message.decode(bytes(raw))
    text = m.dump()
    assert "CC-Request-Type (416, M): <invalid:" in text and "CC-Request-Number" in text
    errs = m.find_errors()
    assert [e.result_code for e in errs][:1] == [5014]
    assert errs[0].failed_avp.code == 416
    json_doc = orjson.loads(orjson.dumps(m.to_dict()))
    bad = next(a for a in json_doc["avps"] if a["name"] == "CC-Request-Type")
    assert bad["result_code"] == 5014 and "error" in bad


def test_attributes_of_a_message_from_another_dictionary() -> None:
    from datetime import UTC, datetime

    from chargegw.codec.dictionary import load_builtin

    d2 = load_builtin()  # a second dictionary: attributes resolve names in the message's own
    m = Message.decode(CCR, dictionary=d2)
    assert m.multiple_services_credit_control[0]._dict is d2
    assert m.multiple_services_credit_control[0].used_service_unit[0].cc_total_octets == 1048577
    m.origin_host = "x.example.net"
    assert Message.decode(m.encode(), dictionary=d2).origin_host == "x.example.net"
    del m.origin_host
    assert m.origin_host is None
    t = datetime(2040, 2, 29, 12, 0, 1, tzinfo=UTC)  # after the 2036 NTP wrap
    e = Message.decode(ccr().encode())
    e.event_timestamp = t
    assert Message.decode(e.encode()).event_timestamp == t
