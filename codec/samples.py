"""Realistic example messages built from the grammars: every required AVP, filled by type.

Used by the tests (each command class, checked by Wireshark's dissector), by the mutation
fuzzer and by `chargegw bench`. Values are plausible rather than random: identities look like
FQDNs, Session-Ids follow RFC 6733 8.8, Auth-Application-Id is the command's application.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

from .dictionary import AvpDef, CommandDef, Dictionary, Grammar, get_dictionary
from .message import Message, command_class

HOST = "gw01.example.net"
REALM = "example.net"
PEER_HOST = "ocs01.example.org"
PEER_REALM = "example.org"
SESSION = f"{HOST};1732617600;42;0001"

# Values for AVPs whose meaning a type alone does not give.
BY_NAME: dict[str, Any] = {
    "Session-Id": SESSION,
    "Origin-Host": HOST,
    "Origin-Realm": REALM,
    "Destination-Host": PEER_HOST,
    "Destination-Realm": PEER_REALM,
    "Result-Code": 2001,
    "Vendor-Id": 10415,
    "Supported-Vendor-Id": 10415,
    "Product-Name": "chargegw",
    "Firmware-Revision": 1,
    "Origin-State-Id": 1732617600,
    "User-Name": "alice@example.net",
    "Public-Identity": "sip:alice@example.net",
    "Visited-Network-Identifier": b"example.net",
    "Server-Name": "sip:scscf.example.net",
    "Subscription-Id-Data": "491701234567",
    "Service-Context-Id": "32251@3gpp.org",
    "Host-IP-Address": ipaddress.IPv4Address("192.0.2.10"),
    "Event-Timestamp": datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
    "Redirect-Host": "aaa://ocs02.example.org:3868;transport=tcp",
    "NAS-Filter-Rule": "permit in ip from any to assigned",
    "SIP-Number-Auth-Items": 1,
    "Accounting-Record-Number": 0,
    "CC-Request-Number": 0,
    "Termination-Cause": 1,
    "Disconnect-Cause": 0,
    "Proxy-Host": "proxy.example.net",
    "Proxy-State": b"\x00\x01",
    "EAP-Payload": b"\x02\x01\x00\x05\x01",  # EAP Response/Identity, identifier 1
    "MIP-Reg-Request": b"\x01\x00\x00\x00",
    "MIP-MN-AAA-SPI": 256,
    "MIP-Feature-Vector": 1,
    "Authorization-Lifetime": 3600,
    "SIP-Authentication-Scheme": "Digest-AKAv1-MD5",
}


# Where an application gives an AVP a stricter form: S6a/S6d (16777251) and S7a (16777308)
# carry the IMSI in User-Name (TS 29.272 7.3.1); Visited-PLMN-Id is 3 octets MCC/MNC (TBCD).
BY_APP: dict[tuple[int, str], Any] = {
    (16777251, "User-Name"): "001011234567890",
    (16777308, "User-Name"): "001011234567890",
}
BY_NAME["Visited-PLMN-Id"] = b"\x00\xf1\x10"  # MCC 001, MNC 01


def sample_value(d: AvpDef, app_id: int | None = None, depth: int = 0) -> Any:
    """A plausible value for one AVP (a dict of required members for a Grouped AVP)."""
    if (app_id or 0, d.name) in BY_APP:
        return BY_APP[(app_id or 0, d.name)]
    if d.name in BY_NAME:
        return BY_NAME[d.name]
    if d.name.endswith("Application-Id") and d.type in ("Unsigned32", "Integer32"):
        return app_id or 0
    t = d.type
    if t == "Grouped":
        g = sample_group(d.grammar, app_id, depth + 1) if d.grammar and depth < 6 else {}
        if d.name == "Vendor-Specific-Application-Id":
            g["auth_application_id"] = app_id or 0
        if not g and d.grammar is not None:  # nothing required: one member, not an empty group
            first = next(
                (r.avp for r in d.grammar.rules if r.avp and r.avp.type != "Grouped"), None
            )
            if first is not None:
                g[first.attr] = sample_value(first, app_id, depth + 1)
        return g
    if d.enum:
        return min(d.enum.values(), key=lambda v: (v < 0, v))
    if t in ("Unsigned32", "Unsigned64", "Integer32", "Integer64"):
        return 1
    if t in ("Float32", "Float64"):
        return 1.5
    if t == "Time":
        return datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    if t == "Address":
        return ipaddress.IPv4Address("192.0.2.1")
    if t == "DiameterIdentity":
        return HOST
    if t == "DiameterURI":
        return f"aaa://{HOST}:3868;transport=tcp"
    if t == "IPFilterRule":
        return "permit out ip from any to assigned"
    if t == "UTF8String":
        return f"{d.name.lower()}-1"
    return d.name.encode()  # OctetString: something printable, non-empty


def sample_group(g: Grammar | None, app_id: int | None = None, depth: int = 0) -> dict[str, Any]:
    """The required members of a grammar (fixed and {required}), at their minimum counts."""
    out: dict[str, Any] = {}
    if g is None:
        return out
    for r in g.rules:
        if r.avp is None or r.min == 0:
            continue
        v = sample_value(r.avp, app_id, depth)
        out[r.avp.attr] = [v] * r.min if r.min > 1 else v
    return out


def sample_message(
    cmd: CommandDef, request: bool = True, d: Dictionary | None = None, **extra: Any
) -> Message:
    """A message of `cmd` with every required AVP filled (and `extra` on top)."""
    d = d or get_dictionary()
    klass = command_class(d, cmd, request)
    g = cmd.request if request else cmd.answer
    kw = sample_group(g, cmd.app_id)
    if not request and g is not None and "result_code" not in kw:
        if any(r.name == "Result-Code" for r in g.rules):
            kw["result_code"] = 2001
    kw.update(extra)
    return klass(hop_by_hop=0x1234, end_to_end=0x5678, **kw)


def all_samples(d: Dictionary | None = None) -> list[Message]:
    """A request and an answer of every command the dictionary defines."""
    d = d or get_dictionary()
    out = []
    for cmd in d.commands.values():
        for request in (True, False):
            out.append(sample_message(cmd, request, d))
    return out
