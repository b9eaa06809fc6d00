"""The codec additions other layers build on: framing faults that keep the good frames,
raw routing reads from the index, and validation over the index matching validation over
Avp objects."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from chargegw.codec import Avp, FrameReader, FramingError, Message
from chargegw.codec import commands as cmds
from chargegw.codec.validate import _check_items, answer_message_grammar

_ROOT = Path(__file__).resolve().parents[1]
VECTOR = next(
    (
        p / "vectors" / "gy_ccr_update.hex"
        for p in (_ROOT / "shared", _ROOT.parent / "shared")
        if (p / "vectors" / "gy_ccr_update.hex").exists()
    ),
    _ROOT / "shared" / "vectors" / "gy_ccr_update.hex",
)


def ccr(**extra: object) -> cmds.CreditControlRequest:
    kw: dict[str, object] = {
        "session_id": "gw.example.net;1;2",
        "origin_host": "gw.example.net",
        "origin_realm": "example.net",
        "destination_realm": "example.org",
        "destination_host": "ocs.example.org",
        "auth_application_id": 4,
        "service_context_id": "32251@3gpp.org",
        "cc_request_type": 2,
        "cc_request_number": 1,
        "route_record": ["relay1.example.net", "relay2.example.net"],
        "multiple_services_credit_control": [
            {"rating_group": 1, "used_service_unit": {"cc_total_octets": 5}}
        ],
    }
    kw.update(extra)
    return cmds.CreditControlRequest(hop_by_hop=7, end_to_end=8, **kw)


# -- FramingError carries the frames before the fault ------------------------------------


def test_framing_error_carries_the_good_frames_before_it() -> None:
    a = ccr().encode()
    b = ccr(cc_request_number=2).encode()
    bad = b"\x02" + a[1:20]  # version 2
    r = FrameReader()
    with pytest.raises(FramingError) as ei:
        r.feed(a + b + bad)
    assert ei.value.result_code == 5011
    assert ei.value.frames == [a, b]
    assert ei.value.rest == bad
    assert r.buffered == 0


def test_framing_error_frames_include_one_completed_from_an_earlier_chunk() -> None:
    a = ccr().encode()
    r = FrameReader()
    assert r.feed(a[:30]) == []
    bad_len = struct.pack(">I", (1 << 24) | 22) + a[4:20]  # not a multiple of 4
    with pytest.raises(FramingError) as ei:
        r.feed(a[30:] + bad_len)
    assert ei.value.result_code == 5015
    assert ei.value.frames == [a]
    assert ei.value.rest == bad_len


def test_framing_error_outside_feed_has_empty_frames() -> None:
    with pytest.raises(FramingError) as ei:
        Message.decode(b"\x01\x00\x00")
    assert ei.value.frames == [] and ei.value.rest == b""


# -- raw_value / raw_values -------------------------------------------------------------


def test_raw_value_reads_data_octets_without_decoding() -> None:
    m = Message.decode(ccr().encode())
    assert m.raw_value("Session-Id") == b"gw.example.net;1;2"
    assert m.raw_value("session_id") == b"gw.example.net;1;2"
    assert m.raw_value("Destination-Host") == b"ocs.example.org"
    assert m.raw_value("CC-Request-Number") == b"\x00\x00\x00\x01"
    assert m.raw_value("User-Name") is None
    assert m.raw_values("Route-Record") == [b"relay1.example.net", b"relay2.example.net"]
    assert m.raw_values("Proxy-Info") == []
    assert m.raw == m.encode()  # reading changes nothing
    mscc = m.multiple_services_credit_control[0]
    assert mscc.raw_value("Rating-Group") == b"\x00\x00\x00\x01"


def test_raw_value_does_not_validate() -> None:
    """Octets that fail their type still read raw (routing must not die on them)."""
    m = Message.decode(ccr(session_id=b"\xff\xfe").encode())
    assert m.raw_value("Session-Id") == b"\xff\xfe"
    assert [e.result_code for e in m.find_errors()] == [5004]


def test_raw_value_on_built_and_modified_messages() -> None:
    m = ccr()
    assert m.raw_value("Origin-Host") == b"gw.example.net"
    assert m.raw_values("Route-Record") == [b"relay1.example.net", b"relay2.example.net"]
    d = Message.decode(m.encode())
    d.origin_host = "other.example.net"
    assert d.raw_value("Origin-Host") == b"other.example.net"


def test_string_reads_from_the_index_match_avp_values() -> None:
    m = Message.decode(ccr().encode())
    assert m.get("Session-Id") == "gw.example.net;1;2"
    assert m.destination_host == "ocs.example.org"
    assert [a.value for a in Message.decode(ccr().encode()).avps if a.code == 263] == [m.session_id]
    bad = Message.decode(ccr(origin_host=b"bad host").encode())
    assert bad.origin_host == "bad host"  # an invalid string reads; validation reports it
    errs = bad.find_errors()
    assert [e.result_code for e in errs] == [5004] and errs[0].failed_avp.data == b"bad host"


# -- validation over the index matches validation over Avp objects ----------------------


def _faults(m: Message) -> list[tuple[int, bytes | None]]:
    return [
        (e.result_code, e.failed_avp.encode() if e.failed_avp is not None else None)
        for e in m.find_errors()
    ]


def _faults_by_objects(raw: bytes) -> list[tuple[int, bytes | None]]:
    m = Message.decode(raw)
    out = []
    g = m._grammar
    if m.is_error and not m.is_request:
        g = answer_message_grammar(m._dict)
    _check_items(m, m._items(), g, out.append)
    return [
        (e.result_code, e.failed_avp.encode() if e.failed_avp is not None else None) for e in out
    ]


def _variants() -> list[bytes]:
    good = ccr()
    out = [good.encode()]
    m = ccr()
    m.remove("CC-Request-Number")
    m.add(Avp(60001, b"", flags=0x40))  # 5001
    m.add(Avp.new("Destination-Host", "second.example.org"))  # 5009
    m.multiple_services_credit_control[0].set("Rating-Group", None)
    m.multiple_services_credit_control[0].add(Avp(416, b"\x00\x00\x00\x09", flags=0x40))
    out.append(m.encode())
    out.append(ccr(origin_host=b"bad host", cc_request_type=b"\x00\x00\x00\x09").encode())
    out.append(ccr(cc_request_number=b"\x00\x00\x01").encode())  # 5014: a short Unsigned32
    m = ccr()
    m.add(Avp(264, b"x.example.net", flags=0x48))  # reserved bit: 3009
    out.append(m.encode())
    if VECTOR.exists():
        out.append(bytes.fromhex("".join(VECTOR.read_text().split())))
    return out


@pytest.mark.parametrize("raw", _variants())
def test_index_walk_reports_what_the_object_walk_reports(raw: bytes) -> None:
    assert _faults(Message.decode(raw)) == _faults_by_objects(raw)


def test_validation_sees_a_group_changed_through_the_index() -> None:
    m = Message.decode(ccr().encode())
    m.multiple_services_credit_control[0].used_service_unit[0].set("CC-Total-Octets", None)
    m.multiple_services_credit_control[0].add(Avp(60001, b"", flags=0x40))
    assert [e.result_code for e in m.find_errors()] == [5001]
    assert _faults(m) == _faults(Message.decode(m.encode()))


def test_copy_avps_copies_only_the_matches_and_leaves_the_message_alone() -> None:
    from chargegw.codec import Avp, Message

    m = Message(code=16777214, app_id=16777215, session_id="s;1", origin_host="a.b")
    m.add(Avp(16777215, b"\x00\x00\x00\x07", vendor=999999, flags=0x80))
    m.add(Avp(16777215, b"\x00\x00\x00\x08", vendor=999999, flags=0x80))
    raw = m.encode()
    d = Message.decode(raw)
    copies = d.copy_avps(16777215, 999999)
    assert [c.data for c in copies] == [b"\x00\x00\x00\x07", b"\x00\x00\x00\x08"]
    assert d._avps is None  # nothing else was turned into objects
    copies[0].value = b"\x00\x00\x00\x09"
    assert d.encode() == raw  # the copies are independent of the message
    assert d.copy_avps(16777215, 1) == []
