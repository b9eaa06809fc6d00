"""Message-level faults: each Result-Code RFC 6733 asks for, with the right Failed-AVP."""

from __future__ import annotations

import struct

import pytest

from chargegw.codec import Avp, AvpError, Message, get_dictionary
from chargegw.codec import commands as cmds
from chargegw.codec.dictionary import Dictionary, load_builtin
from chargegw.codec.validate import ANSWER_MESSAGE


def ccr(**extra: object) -> bytes:
    kw: dict[str, object] = {
        "session_id": "gw.example.net;1;2",
        "origin_host": "gw.example.net",
        "origin_realm": "example.net",
        "destination_realm": "example.org",
        "auth_application_id": 4,
        "service_context_id": "32251@3gpp.org",
        "cc_request_type": 1,
        "cc_request_number": 0,
    }
    kw.update(extra)
    return cmds.CreditControlRequest(hop_by_hop=7, end_to_end=8, **kw).encode()


def first(raw: bytes) -> AvpError:
    m = Message.decode(raw)
    with pytest.raises(AvpError) as ei:
        m.validate()
    assert m.find_errors()[0].result_code == ei.value.result_code
    return ei.value


def patch_avp(
    raw: bytes, code: int, *, flags: int | None = None, data: bytes | None = None
) -> bytes:
    """The message with one top-level AVP's flags or data replaced (lengths fixed)."""
    m = Message.decode(raw)
    b = bytearray(raw)
    a = next(x for x in m.avps if x.code == code)
    if flags is not None:
        b[a._off + 4] = flags
        return bytes(b)
    assert data is not None
    hdr = a._hdr
    old_span = (a._len + 3) & ~3
    new = bytes(b[a._off : a._off + hdr]) + data + b"\x00" * (-len(data) % 4)
    struct.pack_into(">I", bytearray(new), 4, 0)
    new_b = bytearray(new)
    fl = struct.unpack_from(">I", new_b, 4)[0]
    struct.pack_into(">I", new_b, 4, (fl & 0xFF000000) | (hdr + len(data)))
    b[a._off : a._off + old_span] = new_b
    struct.pack_into(">I", b, 0, (1 << 24) | len(b))
    return bytes(b)


def test_a_good_message_has_no_faults() -> None:
    m = Message.decode(ccr())
    m.validate()
    assert m.find_errors() == []


def test_3008_header_bits() -> None:
    raw = bytearray(ccr())
    raw[4] |= 0x01  # a reserved bit
    e = first(bytes(raw))
    assert e.result_code == 3008 and e.failed_avp is None
    raw = bytearray(ccr())
    raw[4] |= 0x20  # E bit on a request
    assert first(bytes(raw)).result_code == 3008


def test_3009_avp_bits() -> None:
    raw = patch_avp(ccr(), 264, flags=0x40 | 0x08)  # a reserved AVP flag bit on Origin-Host
    e = first(raw)
    assert e.result_code == 3009 and e.failed_avp.code == 264
    assert e.failed_avp.encode() == Message.decode(raw).find("Origin-Host").encode()
    # V set but Vendor-Id 0
    v0 = struct.pack(">III", 415, (0xC0 << 24) | 16, 0) + b"\x00\x00\x00\x00"
    m = Message.decode(ccr())
    m.add(Avp.decode(v0))
    e = first(m.encode())
    assert e.result_code == 3009 and e.failed_avp.vendor == 0 and e.failed_avp.flags & 0x80


def test_5001_unknown_avp_with_m_bit() -> None:
    unknown = Avp(60001, b"\x01\x02", vendor=999999, flags=0xC0)
    optional = Avp(60002, b"\x01", flags=0x00)  # no M bit: ignored
    m = Message.decode(ccr())
    m.add(optional)
    m.add(unknown)
    errs = Message.decode(m.encode()).find_errors()
    assert [e.result_code for e in errs] == [5001]
    assert errs[0].failed_avp.encode() == unknown.encode()


def test_5004_invalid_value() -> None:
    e = first(patch_avp(ccr(), 264, data=b"bad host"))  # DiameterIdentity with a space
    assert e.result_code == 5004 and e.failed_avp.code == 264 and e.failed_avp.data == b"bad host"
    e = first(patch_avp(ccr(), 416, data=b"\x00\x00\x00\x09"))  # CC-Request-Type 9: undefined
    assert e.result_code == 5004 and e.failed_avp.code == 416
    e = first(patch_avp(ccr(), 263, data=b"\xff\xfe"))  # Session-Id not UTF-8
    assert e.result_code == 5004 and e.failed_avp.code == 263


def test_5005_missing_avp_with_a_zero_filled_example() -> None:
    m = Message.decode(ccr())
    m.remove("CC-Request-Number")
    e = first(m.encode())
    assert e.result_code == 5005
    assert e.failed_avp.encode() == struct.pack(">II", 415, (0x40 << 24) | 12) + b"\x00" * 4
    # a vendor-specific missing AVP: the example carries its Vendor-Id
    d = get_dictionary()
    example = (
        Avp.example("Spending-Limit-Request-Type")
        if "SL-Request-Type" not in d.by_name
        else Avp.example("SL-Request-Type")
    )
    assert example.vendor == 10415 and example.flags & 0x80
    assert example.encode()[8:12] == struct.pack(">I", 10415)
    slr = cmds.SpendingLimitRequest(
        session_id="gw;1;1", auth_application_id=16777302, origin_host="gw.example.net",
        origin_realm="example.net", destination_realm="example.org",
    )  # fmt: skip
    e = first(slr.encode())
    assert e.result_code == 5005 and e.failed_avp.encode() == example.encode()
    assert (
        e.failed_avp.encode()[8:12] == struct.pack(">I", 10415) and e.failed_avp.data == b"\x00" * 4
    )


def test_5005_inside_a_group_names_the_group() -> None:
    raw = ccr(subscription_id=[{"subscription_id_type": 0}])  # Subscription-Id-Data missing
    e = first(raw)
    assert e.result_code == 5005
    outer = e.failed_avp
    assert outer.code == 443  # wrapped in its Subscription-Id (RFC 6733 7.5)
    (inner,) = outer.value.avps
    assert inner.code == 444 and inner.data == b""


def test_5008_avp_not_allowed() -> None:
    m = Message.decode(ccr())
    m.add(Avp.new("Product-Name", "x"))  # a CER AVP: CCR allows * [ AVP ], so it is fine
    assert Message.decode(m.encode()).find_errors() == []
    # Subscription-Id's grammar has no * [ AVP ]: a mandatory stranger is not allowed
    raw = ccr(
        subscription_id=[
            [
                Avp.new("Subscription-Id-Type", 0),
                Avp.new("Subscription-Id-Data", "1"),
                Avp.new("Rating-Group", 5),
            ]
        ]
    )
    e = first(raw)
    assert e.result_code == 5008
    assert e.failed_avp.code == 443 and e.failed_avp.value.avps[0].code == 432
    rg = Avp(432, 5, flags=0x00, definition=get_dictionary().avp("Rating-Group"))  # no M bit
    ok = ccr(
        subscription_id=[
            [Avp.new("Subscription-Id-Type", 0), Avp.new("Subscription-Id-Data", "1"), rg]
        ]
    )
    assert Message.decode(ok).find_errors() == []  # not mandatory: ignored


def test_5008_fixed_position_and_zero_max() -> None:
    m = Message.decode(ccr())
    sid = m.find("Session-Id")
    m.remove("Session-Id")
    m._items().append(sid.copy())  # Session-Id last instead of first
    e = first(m.encode())
    assert e.result_code == 5008 and e.failed_avp.code == 263
    d = Dictionary()
    d.load_json(
        "t.json",
        b'{"name": "t", "avps": [{"name": "A", "code": 1, "type": "Unsigned32"}, {"name": "B", "code": 2, "type": "Unsigned32"}], "commands": [{"name": "T", "code": 9000, "application": 99, "request": ["[ A ]", "0*0 [ B ]"], "answer": ["[ A ]"]}]}',
    )
    from chargegw.codec.message import class_for

    k = class_for(d, 99, 9000, True)
    raw = k(dictionary=d, a=1, b=2).encode()
    e2 = Message.decode(raw, dictionary=d).find_errors()
    assert [x.result_code for x in e2] == [5008] and e2[0].failed_avp.code == 2


def test_5009_too_many_reports_the_first_excess() -> None:
    m = Message.decode(ccr())
    m.add(Avp.new("CC-Request-Number", 1))
    m.add(Avp.new("CC-Request-Number", 2))
    e = first(m.encode())
    assert e.result_code == 5009
    assert e.failed_avp.value == 1  # the second occurrence: the first past the maximum of 1


def test_5014_invalid_avp_length() -> None:
    raw = bytearray(ccr())
    m = Message.decode(bytes(raw))
    a = m.find("CC-Request-Number")
    struct.pack_into(">I", raw, a._off + 4, (0x40 << 24) | 11)  # Unsigned32 in 3 octets
    e = first(bytes(raw))
    assert e.result_code == 5014 and e.failed_avp.code == 415
    # a length that runs past the message: found at decode, header padded, data zero-filled
    raw2 = bytearray(ccr())
    struct.pack_into(">I", raw2, a._off + 4, (0x40 << 24) | 5000)
    with pytest.raises(AvpError) as ei:
        Message.decode(bytes(raw2))
    fa = ei.value.failed_avp
    assert ei.value.result_code == 5014
    assert fa.code == 415 and fa.data == b"\x00" * 4  # Unsigned32's minimum length, zeros
    # a length under the header size
    raw3 = bytearray(ccr())
    struct.pack_into(">I", raw3, a._off + 4, (0x40 << 24) | 4)
    with pytest.raises(AvpError) as ei:
        Message.decode(bytes(raw3))
    assert ei.value.result_code == 5014 and ei.value.failed_avp.code == 415


def test_5014_inside_a_group_is_found_by_validate() -> None:
    raw = bytearray(ccr(multiple_services_credit_control=[{"rating_group": 1}]))
    m = Message.decode(bytes(raw))
    mscc = m.find("Multiple-Services-Credit-Control")
    inner_off = mscc._off + 8
    struct.pack_into(">I", raw, inner_off + 4, (0x40 << 24) | 200)  # Rating-Group runs past
    m2 = Message.decode(bytes(raw))  # the top level is sound: decode is lazy below it
    e = first(bytes(raw))
    assert e.result_code == 5014
    assert e.failed_avp.code == 456  # wrapped in the MSCC it was found in
    assert e.failed_avp.value.avps[0].code == 432
    with pytest.raises(AvpError):
        m2.multiple_services_credit_control[0].rating_group  # noqa: B018


def test_answer_message_grammar_for_e_bit_answers() -> None:
    req = Message.decode(ccr())
    ans = req.answer(3002, origin_host="agent.example.net", origin_realm="example.net")
    m = Message.decode(ans.encode())
    assert m.is_error and m.find_errors() == []
    ans.remove("Result-Code")
    e = first(ans.encode())
    assert e.result_code == 5005 and e.failed_avp.code == 268
    assert len(ANSWER_MESSAGE) == 11


def test_every_fault_of_a_message_is_listed() -> None:
    m = Message.decode(ccr())
    m.remove("CC-Request-Number")
    m.remove("Service-Context-Id")
    m.add(Avp(60001, b"", flags=0x40))
    codes = sorted(e.result_code for e in Message.decode(m.encode()).find_errors())
    assert codes == [5001, 5005, 5005]
    assert len(Message.decode(m.encode()).find_errors(limit=1)) == 1


def test_mini_dictionary_messages_validate_too() -> None:
    """A dictionary without the answer-message AVPs still validates an E-bit answer."""
    d = Dictionary()
    d.load_json(
        "m.json",
        b'{"name": "m", "avps": [{"name": "Result-Code", "code": 268, "type": "Unsigned32"}]}',
    )
    raw = Message(code=1, app_id=0, flags=0x20, dictionary=d, result_code=3001).encode()
    errs = Message.decode(raw, dictionary=d).find_errors()
    assert errs == []
    assert load_builtin() is not get_dictionary()
