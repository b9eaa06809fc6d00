"""AVP types checked against their specifications (issue 13): each one decodes from the octets
the spec's type gives, and encodes back to them."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

import pytest

from chargegw.codec import Avp, get_dictionary

# (name, vendor, code, spec type, spec)
SPEC_TYPES = [
    ("Framed-IPX-Network", 0, 23, "Unsigned32", "RFC 7155 4.4.10.5.6, RFC 2865 5.23"),
    ("3GPP-Charging-Id", 10415, 2, "Unsigned32", "TS 29.061 16.4.7"),
    ("Login-IP-Host", 0, 14, "Address", "RFC 7155 4.4.11.1"),
    ("EAP-Key-Name", 0, 102, "OctetString", "RFC 4072 4.1.4"),
    ("3GPP-NSAPI", 10415, 10, "OctetString", "TS 29.061 16.4.7"),
    ("ISUP-Cause-Location", 10415, 3423, "Unsigned32", "TS 32.299 7.2.80C"),
]


@pytest.mark.parametrize(("name", "vendor", "code", "type_", "spec"), SPEC_TYPES)
def test_type_follows_the_spec(name: str, vendor: int, code: int, type_: str, spec: str) -> None:
    d = get_dictionary().avp(code, vendor)
    assert (d.name, d.type) == (name, type_), spec


def _avp_bytes(code: int, vendor: int, data: bytes) -> bytes:
    flags = get_dictionary().avp(code, vendor).flags  # V and M as the dictionary says
    hdr = 12 if vendor else 8
    head = struct.pack(">IB", code, flags) + (hdr + len(data)).to_bytes(3, "big")
    if vendor:
        head += struct.pack(">I", vendor)
    return head + data + b"\0" * (-len(data) % 4)


@pytest.mark.parametrize(
    ("code", "vendor", "data", "value"),
    [
        (23, 0, b"\xff\xff\xff\xfe", 0xFFFFFFFE),  # "NAS selects", RFC 2865
        (2, 10415, b"\x0a\x0b\x0c\x0d", 0x0A0B0C0D),
        (14, 0, b"\x00\x01\xc0\x00\x02\x01", IPv4Address("192.0.2.1")),  # family 1, IPv4
        (102, 0, b"\x00\xfe\x80", b"\x00\xfe\x80"),  # binary: not UTF-8, reads as it is
        (10, 10415, b"5", b"5"),
        (3423, 10415, b"\x00\x00\x00\x02", 2),  # public network serving the local user
    ],
)
def test_values_read_and_write_by_the_spec_type(
    code: int, vendor: int, data: bytes, value: object
) -> None:
    raw = _avp_bytes(code, vendor, data)
    avp = Avp.decode(raw)
    assert avp.value == value
    d = get_dictionary().avp(code, vendor)
    assert Avp.new(d.name, value).encode() == raw
