"""Every RFC 6733 data type: valid values round-trip, invalid ones are refused.

Refused when building (EncodeError, a ValueError, at assignment) and reported by validation
(AvpError with 5004 for a bad value or 5014 for a bad length, and the AVP as Failed-AVP).
Reading from the wire does not judge: it returns a faithful value, except for a fixed-size
type whose data has the wrong length (no number to return: AvpError 5014).
"""

from __future__ import annotations

import ipaddress
import math
import struct
from datetime import UTC, datetime, timedelta, timezone

import pytest

from chargegw.codec import (
    Avp,
    AvpError,
    EncodeError,
    Group,
    Message,
    OtherAddress,
    avp_errors,
    get_dictionary,
    text_octets,
)
from chargegw.codec.dictionary import AvpDef, Dictionary
from chargegw.codec.types import TIME_MAX, TIME_MIN, TYPES, parse_ipfilter


def _def(
    type_: str, code: int = 70000, vendor: int = 0, enum: dict[str, int] | None = None
) -> AvpDef:
    d = Dictionary()
    return d.add_avp(AvpDef(f"Test-{type_}", code, vendor, type_, True, "test", enum))  # type: ignore[return-value]


def roundtrip(d: AvpDef, value: object) -> tuple[object, bytes]:
    a = Avp(d.code, value, vendor=d.vendor, definition=d)
    raw = a.encode()
    assert len(raw) % 4 == 0
    back = Avp.decode(raw, d.owner)
    assert back.encode() == raw
    return back.value, raw


def wire(d: AvpDef, data: bytes) -> Avp:
    """An AVP of d's code carrying these data octets, decoded from the wire."""
    flags = 0xC0 if d.vendor else 0x40
    hdr = struct.pack(">II", d.code, (flags << 24) | ((12 if d.vendor else 8) + len(data)))
    if d.vendor:
        hdr += struct.pack(">I", d.vendor)
    raw = hdr + data + b"\x00" * (-len(data) % 4)
    return Avp.decode(raw, d.owner)


def bad_value(d: AvpDef, data: bytes, code: int) -> object:
    """Validation reports `code` with the AVP as Failed-AVP; reading returns a faithful value
    (returned), or for a fixed-size type of the wrong length raises the same fault."""
    a = wire(d, data)
    errs = avp_errors(a)
    assert [e.result_code for e in errs] == [code]
    assert errs[0].failed_avp is a
    if TYPES[d.type].fixed:
        with pytest.raises(AvpError) as ei:
            a.value  # noqa: B018
        assert ei.value.result_code == code and ei.value.failed_avp is a
        return None
    v = a.value
    if isinstance(v, str):
        assert text_octets(v) == data  # no octet lost or changed
    assert a.data == data and a.encode() == wire(d, data).encode()
    return v


INTS = [
    ("Integer32", [-(2**31), -1, 0, 1, 2**31 - 1], [2**31, -(2**31) - 1]),
    ("Integer64", [-(2**63), 0, 2**63 - 1], [2**63, -(2**63) - 1]),
    ("Unsigned32", [0, 1, 2**32 - 1], [-1, 2**32]),
    ("Unsigned64", [0, 2**64 - 1], [-1, 2**64]),
]


@pytest.mark.parametrize(("type_", "good", "bad"), INTS)
def test_integers_roundtrip_and_range(type_: str, good: list[int], bad: list[int]) -> None:
    d = _def(type_)
    size = TYPES[type_].size
    for v in good:
        got, raw = roundtrip(d, v)
        assert got == v and type(got) is int
        assert len(raw) == 8 + size
    for v in [*bad, True, 1.5, "1", None]:
        with pytest.raises(EncodeError):
            Avp(d.code, v, definition=d)
    bad_value(d, b"\x00" * (size + 1), 5014)
    bad_value(d, b"\x00" * (size - 1), 5014)


def test_integer_wire_format_is_big_endian() -> None:
    _, raw = roundtrip(_def("Unsigned32"), 0x01020304)
    assert raw[8:] == b"\x01\x02\x03\x04"
    _, raw = roundtrip(_def("Integer64"), -2)
    assert raw[8:] == b"\xff" * 7 + b"\xfe"


@pytest.mark.parametrize("type_", ["Float32", "Float64"])
def test_floats(type_: str) -> None:
    d = _def(type_)
    for v in (0.0, -1.5, 3.25, 2.0**100, float("inf"), -float("inf")):
        got, _ = roundtrip(d, v)
        assert got == v
    got, _ = roundtrip(d, float("nan"))
    assert math.isnan(got)  # type: ignore[arg-type]
    got, _ = roundtrip(d, 2)  # an int is taken as a number
    assert got == 2.0
    for v in ("1.0", None, [1.0]):
        with pytest.raises(EncodeError):
            Avp(d.code, v, definition=d)
    bad_value(d, b"\x00" * 3, 5014)
    # bytes are the raw data octets (how a relay rebuilds an AVP): decoding then tells
    assert (
        Avp(d.code, struct.pack(">f" if type_ == "Float32" else ">d", 0.5), definition=d).value
        == 0.5
    )


def test_float32_overflow_is_refused_when_set() -> None:
    d = _def("Float32")
    with pytest.raises(EncodeError):
        Avp(d.code, 1e300, definition=d)
    got, _ = roundtrip(_def("Float64"), 1e300)
    assert got == 1e300


def test_octetstring() -> None:
    d = _def("OctetString")
    for v, want in (
        (b"", b""),
        (b"\x00\xff", b"\x00\xff"),
        (bytearray(b"ab"), b"ab"),
        ("é", "é".encode()),
    ):
        got, raw = roundtrip(d, v)
        assert got == want
        assert len(raw) == 8 + len(want) + (-len(want) % 4)  # padded
    with pytest.raises(EncodeError):
        Avp(d.code, 5, definition=d)


def test_padding_is_zero_and_not_counted_in_length() -> None:
    d = _def("OctetString")
    for n in range(0, 9):
        raw = Avp(d.code, b"\xaa" * n, definition=d).encode()
        assert struct.unpack(">I", raw[4:8])[0] & 0xFFFFFF == 8 + n
        assert raw[8 + n :] == b"\x00" * (-n % 4)


def test_utf8string() -> None:
    d = _def("UTF8String")
    for v in ("", "plain", "Grüße, 世界", "emoji \U0001f600"):
        got, raw = roundtrip(d, v)
        assert got == v
        assert raw[8 : 8 + len(v.encode())] == v.encode()
    for v in ("nul\x00inside", "lone \ud800 surrogate", 5, None):
        with pytest.raises(EncodeError):
            Avp(d.code, v, definition=d)
    assert bad_value(d, b"\xff\xfe", 5004) == "\udcff\udcfe"  # not UTF-8: kept as surrogates
    assert bad_value(d, b"\xc0\xaf", 5004) == "\udcc0\udcaf"  # overlong
    assert bad_value(d, b"\xed\xa0\x80", 5004) == "\udced\udca0\udc80"  # encoded surrogate
    assert bad_value(d, b"a\x00b", 5004) == "a\x00b"  # NUL: outside 1..0x7fffffff (RFC 6733)
    assert bad_value(d, "ok \xfc".encode() + b"\xfc", 5004) == "ok \xfc\udcfc"  # text kept
    # a value read that its type does not allow cannot be assigned again (the builder checks)
    with pytest.raises(EncodeError):
        Avp(d.code, wire(d, b"\xff").value, definition=d)


def test_utf8string_given_bytes_are_its_raw_octets() -> None:
    d = _def("UTF8String")
    a = Avp(d.code, "ü".encode(), definition=d)
    assert a.value == "ü"
    b = Avp(d.code, b"\xff", definition=d)  # unchecked raw data: validation tells
    assert b.value == "\udcff" and b.encode()[8:9] == b"\xff"
    assert [e.result_code for e in avp_errors(b)] == [5004]


def test_diameter_identity() -> None:
    d = _def("DiameterIdentity")
    for v in ("gw.example.net", "EXAMPLE.COM", "a", "host_1.realm"):
        assert roundtrip(d, v)[0] == v
    for v in ("two words", "tab\there", "ünïcode.example", "x" * 256):
        with pytest.raises(EncodeError):
            Avp(d.code, v, definition=d)
    assert bad_value(d, b"", 5004) == ""
    assert bad_value(d, b"bad host", 5004) == "bad host"
    assert bad_value(d, "dömain".encode(), 5004) == "dömain"  # UTF-8 reads as its text
    assert bad_value(d, b"d\xf6main", 5004) == "d\udcf6main"  # Latin-1: the octet kept
    assert bad_value(d, b"nul\x00.example", 5004) == "nul\x00.example"


@pytest.mark.parametrize(
    "uri",
    [
        "aaa://host.example.com",
        "aaas://host.example.com:5868",
        "aaa://host.example.com:3868;transport=tcp",
        "aaa://host.example.com;transport=sctp;protocol=diameter",
        "aaa://host.example.com:1813;transport=udp;protocol=radius",
        "aaa://host.example.com;protocol=tacacs+",
        "aaa://host.example.com;protocol=diameter;transport=tcp",
        "AAA://Host.Example.Com:3868",
        "aaa://[2001:db8::1]:3868;transport=tcp",
        "aaa://192.0.2.1",
    ],
)
def test_diameter_uri_valid(uri: str) -> None:
    d = _def("DiameterURI")
    assert roundtrip(d, uri)[0] == uri


@pytest.mark.parametrize(
    "uri",
    [
        "http://host.example.com",
        "aaa://",
        "aaa://host.example.com:70000",
        "aaa://host.example.com:port",
        "aaa://host.example.com;transport=quic",
        "aaa://host.example.com;protocol=http",
        "aaa://host.example.com/path",
        "aaa://host .example.com",
        "host.example.com",
    ],
)
def test_diameter_uri_invalid(uri: str) -> None:
    d = _def("DiameterURI")
    with pytest.raises(EncodeError):
        Avp(d.code, uri, definition=d)
    assert bad_value(d, uri.encode(), 5004) == uri


@pytest.mark.parametrize(
    "rule",
    [
        "permit in ip from 192.168.0.0/24 10,11,12,20-30 to 192.168.1.1 99 frag established",
        "deny out 17 from any to assigned",
        "permit out ip from !10.0.0.1 to any",
        "permit in 6 from 2001:db8::/32 to any 3868 setup",
        "deny in ip from any to any ipoptions ssrr tcpflags syn,!ack icmptypes 0,8",
    ],
)
def test_ipfilterrule_valid(rule: str) -> None:
    d = _def("IPFilterRule")
    assert roundtrip(d, rule)[0] == rule
    parse_ipfilter(rule)


@pytest.mark.parametrize(
    "rule",
    [
        "allow in ip from any to any",
        "permit sideways ip from any to any",
        "permit in ip from any any",
        "permit in tcpish from any to any",
        "permit in ip from 300.1.1.1 to any",
        "permit in ip from any 99999 to any",
        "permit in ip from any to any bogus-option",
        "permit in ip from any to any ipoptions",
        "permit in 256 from any to any",
    ],
)
def test_ipfilterrule_invalid(rule: str) -> None:
    d = _def("IPFilterRule")
    with pytest.raises(EncodeError):
        Avp(d.code, rule, definition=d)
    assert bad_value(d, rule.encode(), 5004) == rule


def test_address_families() -> None:
    d = _def("Address")
    v4 = ipaddress.IPv4Address("192.0.2.7")
    v6 = ipaddress.IPv6Address("2001:db8::7")
    got, raw = roundtrip(d, v4)
    assert got == v4 and raw[8:14] == b"\x00\x01\xc0\x00\x02\x07"
    got, raw = roundtrip(d, v6)
    assert got == v6 and raw[8:10] == b"\x00\x02" and raw[10:26] == v6.packed
    assert roundtrip(d, "10.1.2.3")[0] == ipaddress.IPv4Address("10.1.2.3")
    assert roundtrip(d, "::1")[0] == ipaddress.IPv6Address("::1")
    e164 = OtherAddress(8, b"491701234567")
    got, raw = roundtrip(d, e164)
    assert got == e164 and raw[8:10] == b"\x00\x08"
    assert roundtrip(d, (8, b"123"))[0] == OtherAddress(8, b"123")
    assert roundtrip(d, OtherAddress(1, b"\x0a\x00\x00\x01"))[0] == ipaddress.IPv4Address(
        "10.0.0.1"
    )
    for v in (
        "not an address",
        5,
        OtherAddress(70000, b""),
        OtherAddress(1, b"\x00" * 5),
        (2, "x"),
    ):
        with pytest.raises(EncodeError):
            Avp(d.code, v, definition=d)
    assert bad_value(d, b"\x00", 5014) == b"\x00"  # shorter than the family: its octets
    assert bad_value(d, b"", 5014) == b""
    v4_3 = bad_value(d, b"\x00\x01\x0a\x00\x00", 5014)  # IPv4 with 3 octets
    assert v4_3 == OtherAddress(1, b"\x0a\x00\x00")
    assert bad_value(d, b"\x00\x02" + b"\x00" * 4, 5014) == OtherAddress(2, b"\x00" * 4)
    assert wire(d, b"\x00\x08").value == OtherAddress(8, b"")


NTP_1900 = datetime(1900, 1, 1, tzinfo=UTC)


def ntp_of(raw: bytes) -> int:
    return struct.unpack(">I", raw[8:12])[0]


def test_time_encodes_ntp_seconds() -> None:
    d = _def("Time")
    t = datetime(2000, 1, 1, tzinfo=UTC)
    got, raw = roundtrip(d, t)
    assert got == t and got.tzinfo is not None and got.utcoffset() == timedelta(0)
    assert ntp_of(raw) == 3155673600  # RFC 5905's 2000-01-01 in NTP seconds
    assert ntp_of(roundtrip(d, 0)[1]) == 2208988800  # the Unix epoch


def test_time_past_2036_uses_the_next_era() -> None:
    d = _def("Time")
    wrap = datetime(2036, 2, 7, 6, 28, 16, tzinfo=UTC)
    got, raw = roundtrip(d, wrap)
    assert ntp_of(raw) == 0 and got == wrap
    got, raw = roundtrip(d, wrap - timedelta(seconds=1))
    assert ntp_of(raw) == 0xFFFFFFFF and got == wrap - timedelta(seconds=1)
    later = datetime(2100, 6, 1, 12, tzinfo=UTC)
    got, raw = roundtrip(d, later)
    assert got == later and ntp_of(raw) < 0x80000000
    # decoding: top bit clear means 2036 and later (RFC 2030 3)
    assert wire(d, b"\x00\x00\x00\x00").value == wrap
    assert wire(d, b"\x7f\xff\xff\xff").value == TIME_MAX
    assert wire(d, b"\x80\x00\x00\x00").value == TIME_MIN
    assert TIME_MIN == datetime(1968, 1, 20, 3, 14, 8, tzinfo=UTC)
    assert TIME_MAX == datetime(2104, 2, 26, 9, 42, 23, tzinfo=UTC)


def test_time_limits_and_zones() -> None:
    d = _def("Time")
    for v in (TIME_MIN, TIME_MAX):
        assert roundtrip(d, v)[0] == v
    for v in (
        TIME_MIN - timedelta(seconds=1),
        TIME_MAX + timedelta(seconds=1),
        datetime(1900, 1, 1),
        "2020-01-01",
        None,
        float("nan"),
    ):
        with pytest.raises(EncodeError):
            Avp(d.code, v, definition=d)
    naive = datetime(2030, 5, 5, 5, 5, 5)
    assert roundtrip(d, naive)[0] == naive.replace(tzinfo=UTC)  # naive means UTC
    cet = datetime(2030, 5, 5, 7, 5, 5, tzinfo=timezone(timedelta(hours=2)))
    assert roundtrip(d, cet)[0] == datetime(2030, 5, 5, 5, 5, 5, tzinfo=UTC)
    frac = datetime(2030, 5, 5, 5, 5, 5, 999999, tzinfo=UTC)
    assert roundtrip(d, frac)[0] == frac.replace(microsecond=0)  # whole seconds on the wire
    assert roundtrip(d, 1_900_000_000.7)[0] == datetime.fromtimestamp(1_900_000_000, UTC)
    bad_value(d, b"\x00" * 8, 5014)


def test_enumerated() -> None:
    d = _def("Enumerated", enum={"ZERO": 0, "ONE": 1, "Minus One": -1})
    got, raw = roundtrip(d, "ONE")
    assert got == 1 and got.name == "ONE"  # type: ignore[attr-defined]
    assert raw[8:] == b"\x00\x00\x00\x01"
    assert roundtrip(d, 0)[0].name == "ZERO"  # type: ignore[attr-defined]
    assert roundtrip(d, "minus one")[0] == -1  # a dictionary label, any spelling
    unknown, _ = roundtrip(d, 7)  # not in the dictionary: kept as a plain int
    assert unknown == 7 and type(unknown) is int
    for v in ("TWO", 2**31, 1.0, None):
        with pytest.raises(EncodeError):
            Avp(d.code, v, definition=d)
    bad_value(d, b"\x00\x00\x01", 5014)


def test_assigning_an_enum_by_value_gives_the_member() -> None:
    d = get_dictionary()
    from chargegw.codec.commands import CreditControlRequest

    ccr = CreditControlRequest(cc_request_type=2, session_id="s;1;2")
    assert ccr.cc_request_type.name == "UPDATE_REQUEST"
    ans = ccr.answer(2001, cc_request_type=ccr.cc_request_type, cc_request_number=1)
    assert "CC-Request-Type (416, M): UPDATE_REQUEST (2)" in ans.dump()
    ans.cc_request_type = 3
    assert ans.cc_request_type is d.avp("CC-Request-Type").enum_cls.TERMINATION_REQUEST  # type: ignore[union-attr]
    assert Message.decode(ans.encode()).cc_request_type.name == "TERMINATION_REQUEST"


def test_values_are_checked_when_assigned() -> None:
    from chargegw.codec.commands import CreditControlRequest

    ccr = CreditControlRequest()
    with pytest.raises(EncodeError):
        ccr.cc_request_number = -1
    with pytest.raises(EncodeError):
        ccr.origin_host = "has space"
    with pytest.raises(EncodeError):
        ccr.cc_request_type = "NOT_A_TYPE"
    with pytest.raises(EncodeError):
        ccr.multiple_services_credit_control = [{"rating_group": "x"}]
    assert isinstance(EncodeError("x"), ValueError)
    assert ccr.cc_request_number is None  # nothing was set by the failed assignments


def test_grouped_values() -> None:
    d = get_dictionary()
    sub = d.avp("Subscription-Id")
    got, raw = roundtrip(
        sub, {"subscription_id_type": "END_USER_IMSI", "subscription_id_data": "001011234567890"}
    )
    assert isinstance(got, Group)
    assert got.subscription_id_type.name == "END_USER_IMSI"
    assert got.subscription_id_data == "001011234567890"
    got2, raw2 = roundtrip(sub, Group(sub, subscription_id_data="1", subscription_id_type=0))
    assert [a.name for a in got2.avps] == [
        "Subscription-Id-Type",
        "Subscription-Id-Data",
    ]  # grammar order
    with pytest.raises(EncodeError):
        Avp(sub.code, 5, definition=sub)
    bad = wire(sub, struct.pack(">II", 450, (0x40 << 24) | 200))  # inner AVP runs past its group
    with pytest.raises(AvpError) as ei:
        bad.value.avps  # noqa: B018
    assert ei.value.result_code == 5014
