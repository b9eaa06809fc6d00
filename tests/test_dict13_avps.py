"""AVPs added to the built-in dictionary for issue 13: RFC 4740 (Diameter SIP application),
3GPP2 (X.S0013 Ty/Tx), the Sh Call-Reference-Info family and the Gx/Rx/S6b additions."""

from __future__ import annotations

from chargegw.codec import Avp, get_dictionary


def test_rfc4740_sip_avps_are_built_in_beside_the_3gpp_ones() -> None:
    d = get_dictionary()
    assert d.avp(369).name == "SIP-Accounting-Server-URI" and d.avp(369).type == "DiameterURI"
    assert d.avp(375).name == "SIP-Server-Assignment-Type" and d.avp(375).enum
    # RFC 4740 and TS 29.229 share names; the 3GPP AVP keeps the plain one (Cx/SWx use it)
    assert d.avp("SIP-Number-Auth-Items").key == (607, 10415)
    assert d.avp("RFC4740-SIP-Number-Auth-Items").key == (382, 0)
    assert 6 in d.applications


def test_3gpp2_avps_are_built_in() -> None:
    d = get_dictionary()
    tgpp2 = [a for a in d.avps.values() if a.vendor == 5535]
    assert len(tgpp2) >= 19
    assert d.avp(801, 5535).name == "3GPP2-Charging-Rule-Install"
    assert d.avp(801, 5535).type == "Grouped"


def test_sh_call_reference_info_round_trip() -> None:
    a = Avp.new("Call-Reference-Info", {"call_reference_number": b"\x01\x02", "as_number": b"\x99"})
    back = Avp.decode(a.encode())
    assert back.value.call_reference_number == b"\x01\x02" and back.value.as_number == b"\x99"
    assert not back.is_mandatory and back.definition.vendor == 10415


def test_new_avps_carry_spec_types() -> None:
    d = get_dictionary()
    assert d.avp("TCP-Source-Port").key == (2843, 10415) and d.avp(2843, 10415).type == "Unsigned32"
    assert d.avp("QoS-Capability").key == (578, 0) and d.avp(578).type == "Grouped"
