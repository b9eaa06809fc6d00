"""AVPs and commands python-diameter 0.9.0 knows that Wireshark 4.0's dictionary lacks: the
ProSe interfaces (TS 29.343 PC2 3600-3612, TS 29.345 PC6/PC7 3801-3868), the newer S6a/S6d
AVPs (TS 29.272 Rel-15+: 1719-1730), the T6a/S6t Rel-16 additions (TS 29.128/29.336:
3185-3187), TS 29.061 30-33, Rx 549/565 and TS 32.299 VoLTE-Information, RFC 4004
MIP-MN-to-FA-SPI; and the RFC 4740 Diameter SIP application's commands (283-288, app 6).

Imported by tools/gen_dictionaries.py, which checks and writes them into the JSON files.
Facts only (name, code, vendor, type, M bit), as python-diameter's dictionary and the specs
give them; the table format is ours. Types are python-diameter's where no spec text was at
hand (an Integer32 there may be an Enumerated in the spec: the octets are the same). Three
names are prefixed because another AVP holds the plain one (names must be unique and map to
distinct Python attributes): 3805 Filter-Id (RADIUS Filter-Id, 11), 3806 MAC-Address
(RFC 5777, 524) and 3815 Application-Specific-Data (TS 32.299, 3458) become ProSe-Filter-Id,
ProSe-MAC-Address and ProSe-Application-Specific-Data.

Not taken: python-diameter's vendor-0 1008 S-CSCF-Name-Originating, 1009
S-CSCF-Name-Terminating and 1012 SIP-Server-Name, which no IETF registry assigns (codes
1008-1012 of vendor 0 are not allocated to them); tests/test_dict13_coverage.py lists them.
"""

from __future__ import annotations

TGPP = 10415
SIP_APP = 6


def _a(name: str, code: int, vendor: int, type_: str, m: bool) -> dict:
    d: dict = {"name": name, "code": code, "type": type_, "m": m}
    if vendor:
        d["vendor"] = vendor
    return d


# fmt: off
EXTRA_AVPS: list[dict] = [
    _a('3GPP-User-Location-Info-Time', 30, TGPP, 'OctetString', True),
    _a('3GPP-Secondary-RAT-Usage', 31, TGPP, 'OctetString', True),
    _a('3GPP-UE-Local-IP-Address', 32, TGPP, 'OctetString', True),
    _a('3GPP-UE-Source-Port', 33, TGPP, 'OctetString', True),
    {**_a('MIP-MN-to-FA-SPI', 324, 0, 'Unsigned32', True), "source": "mobileipv4.xml"},
    _a('Media-Component-Status', 549, TGPP, 'Unsigned32', True),
    _a('Callee-Information', 565, TGPP, 'Grouped', False),
    _a('VoLTE-Information', 1323, TGPP, 'Grouped', False),
    _a('Third-Context-Identifier', 1719, TGPP, 'Integer32', True),
    _a('MDT-Configuration-NR', 1720, TGPP, 'Grouped', True),
    _a('Event-Threshold-SINR', 1721, TGPP, 'Integer32', True),
    _a('Collection-Period-RRM-NR', 1722, TGPP, 'Integer32', True),
    _a('Collection-Period-M6-NR', 1723, TGPP, 'Integer32', True),
    _a('Collection-Period-M7-NR', 1724, TGPP, 'Integer32', True),
    _a('Sensor-Measurement', 1725, TGPP, 'Integer32', True),
    _a('NR-Cell-Global-Identity', 1726, TGPP, 'OctetString', True),
    _a('Trace-Reporting-Consumer-Uri', 1727, TGPP, 'OctetString', True),
    _a('PLMN-RAT-Usage-Control', 1728, TGPP, 'Integer32', True),
    _a('SF-ULR-Timestamp', 1729, TGPP, 'Time', True),
    _a('SF-Provisional-Indication', 1730, TGPP, 'Integer32', True),
    _a('Battery-Indicator', 3185, TGPP, 'Unsigned32', True),
    _a('SCEF-Reference-ID-Ext', 3186, TGPP, 'Unsigned64', True),
    _a('SCEF-Reference-ID-for-Deletion-Ext', 3187, TGPP, 'Unsigned64', True),
    _a('Origin-App-Layer-User-Id', 3600, TGPP, 'UTF8String', True),
    _a('Target-App-Layer-User-Id', 3601, TGPP, 'UTF8String', True),
    _a('ProSe-Function-ID', 3602, TGPP, 'OctetString', True),
    _a('ProSe-Request-Type', 3603, TGPP, 'Unsigned32', True),
    _a('PDUID', 3604, TGPP, 'OctetString', False),
    _a('Application-Data', 3605, TGPP, 'UTF8String', False),
    _a('Allowed-Suffixes-Number', 3606, TGPP, 'Unsigned32', False),
    _a('Monitor-Target', 3607, TGPP, 'Grouped', False),
    _a('ProSe-Code-Suffix-Mask', 3608, TGPP, 'Grouped', False),
    _a('Suffix-Code', 3609, TGPP, 'OctetString', False),
    _a('Suffix-Mask', 3610, TGPP, 'OctetString', False),
    _a('Banned-User-Target', 3611, TGPP, 'Grouped', False),
    _a('Metadata-Indicator', 3612, TGPP, 'Unsigned32', False),
    _a('App-Layer-User-Id', 3801, TGPP, 'UTF8String', True),
    _a('Assistance-info', 3802, TGPP, 'Grouped', True),
    _a('Assistance-Info-Validity-Timer', 3803, TGPP, 'Unsigned32', True),
    _a('Discovery-Type', 3804, TGPP, 'Unsigned32', True),
    _a('ProSe-Filter-Id', 3805, TGPP, 'OctetString', True),
    _a('ProSe-MAC-Address', 3806, TGPP, 'UTF8String', True),
    _a('Match-Report', 3807, TGPP, 'Grouped', True),
    _a('Operating-Channel', 3808, TGPP, 'Unsigned32', True),
    _a('P2P-Features', 3809, TGPP, 'Unsigned32', True),
    _a('ProSe-App-Code', 3810, TGPP, 'OctetString', True),
    _a('ProSe-App-Id', 3811, TGPP, 'UTF8String', True),
    _a('ProSe-App-Mask', 3812, TGPP, 'OctetString', True),
    _a('ProSe-Discovery-Filter', 3813, TGPP, 'Grouped', True),
    _a('PRR-Flags', 3814, TGPP, 'Unsigned32', True),
    _a('ProSe-Application-Specific-Data', 3815, TGPP, 'Unsigned32', True),
    _a('Requesting-EPUID', 3816, TGPP, 'UTF8String', True),
    _a('Targeted-EPUID', 3817, TGPP, 'UTF8String', True),
    _a('Time-Window', 3818, TGPP, 'Unsigned32', True),
    _a('WiFi-P2P-Assistance-Info', 3819, TGPP, 'Grouped', True),
    _a('WLAN-Assistance-Info', 3820, TGPP, 'Grouped', True),
    _a('WLAN-Link-Layer-Id', 3821, TGPP, 'OctetString', True),
    _a('WLAN-Link-Layer-Id-List', 3822, TGPP, 'Grouped', True),
    _a('Location-Update-Trigger', 3823, TGPP, 'Grouped', True),
    _a('Location-Update-Event-Type', 3824, TGPP, 'Unsigned32', True),
    _a('Change-Of-Area-Type', 3825, TGPP, 'Grouped', True),
    _a('Location-Update-Event-Trigger', 3826, TGPP, 'Unsigned32', True),
    _a('Report-Cardinality', 3827, TGPP, 'Integer32', True),
    _a('Minimum-Interval-Time', 3828, TGPP, 'Unsigned32', True),
    _a('Periodic-Location-Type', 3829, TGPP, 'Grouped', True),
    _a('Location-Report-Interval-Time', 3830, TGPP, 'Unsigned32', True),
    _a('Total-Number-Of-Reports', 3831, TGPP, 'Unsigned32', True),
    _a('Validity-Time-Announce', 3832, TGPP, 'Unsigned32', True),
    _a('Validity-Time-Monitor', 3833, TGPP, 'Unsigned32', True),
    _a('Validity-Time-Communication', 3834, TGPP, 'Unsigned32', True),
    _a('ProSe-App-Code-Info', 3835, TGPP, 'Grouped', True),
    _a('MIC', 3836, TGPP, 'OctetString', True),
    _a('UTC-based-Counter', 3837, TGPP, 'Unsigned32', True),
    _a('ProSe-Match-Refresh-Timer', 3838, TGPP, 'Unsigned32', True),
    _a('ProSe-Metadata-Index-Mask', 3839, TGPP, 'OctetString', True),
    _a('App-Identifier', 3840, TGPP, 'Grouped', True),
    _a('OS-ID', 3841, TGPP, 'OctetString', True),
    _a('OS-App-ID', 3842, TGPP, 'UTF8String', True),
    _a('Requesting-RPAUID', 3843, TGPP, 'UTF8String', True),
    _a('Target-RPAUID', 3844, TGPP, 'UTF8String', True),
    _a('Target-PDUID', 3845, TGPP, 'OctetString', True),
    _a('ProSe-Restricted-Code', 3846, TGPP, 'OctetString', True),
    _a('ProSe-Restricted-Code-SuffixRange', 3847, TGPP, 'OctetString', True),
    _a('Beginning-Suffix', 3848, TGPP, 'OctetString', True),
    _a('Ending-Suffix', 3849, TGPP, 'OctetString', True),
    _a('Discovery-Entry-ID', 3850, TGPP, 'Unsigned32', True),
    _a('Match-Timestamp', 3851, TGPP, 'Time', True),
    _a('PMR-Flags', 3852, TGPP, 'Unsigned32', True),
    _a('ProSe-Application-Metadata', 3853, TGPP, 'UTF8String', True),
    _a('Discovery-Auth-Request', 3854, TGPP, 'Grouped', True),
    _a('Discovery-Auth-Response', 3855, TGPP, 'Grouped', True),
    _a('Match-Request', 3856, TGPP, 'Grouped', True),
    _a('Match-Report-Info', 3857, TGPP, 'Grouped', True),
    _a('Banned-RPAUID', 3858, TGPP, 'UTF8String', True),
    _a('Banned-PDUID', 3859, TGPP, 'OctetString', True),
    _a('Code-Receiving-SecurityMaterial', 3860, TGPP, 'Grouped', True),
    _a('DUSK', 3862, TGPP, 'OctetString', True),
    _a('DUIK', 3863, TGPP, 'OctetString', True),
    _a('DUCK', 3864, TGPP, 'OctetString', True),
    _a('MIC-Check-indicator', 3865, TGPP, 'Unsigned32', True),
    _a('Encrypted-Bitmask', 3866, TGPP, 'OctetString', True),
    _a('ProSe-App-Code-Suffix-Range', 3867, TGPP, 'OctetString', True),
    _a('PC5-tech', 3868, TGPP, 'OctetString', True),
]
# fmt: on

# Grammars of the new Grouped AVPs where the member list is known: TS 29.272 7.3.232
# (MDT-Configuration-NR, as python-diameter's container lists it) and TS 29.345 6.3.20
# (its ProSe-Validity-Timer is in neither dictionary yet: it reads through * [ AVP ]).
# The others have "* [ AVP ]" only until their spec tables are transcribed (any member reads).
GROUPED: dict[str, str] = {
    "MDT-Configuration-NR": """
        { Job-Type } [ Area-Scope ] [ List-Of-Measurements ] [ Reporting-Trigger ]
        [ Report-Interval ] [ Report-Amount ] [ Event-Threshold-RSRP ]
        [ Event-Threshold-RSRQ ] [ Event-Threshold-SINR ] [ Collection-Period-RRM-NR ]
        [ Collection-Period-M6-NR ] [ Collection-Period-M7-NR ] [ Positioning-Method ]
        * [ Sensor-Measurement ] * [ MDT-Allowed-PLMN-Id ] * [ AVP ]""",
    "ProSe-Discovery-Filter": """
        { ProSe-Filter-Id } { ProSe-App-Id } { ProSe-App-Code }
        * [ ProSe-App-Mask ] * [ AVP ]""",
    # RFC 4740 9.x: the SIP groups, with their required members
    "RFC4740-SIP-Auth-Data-Item": """
        { RFC4740-SIP-Authentication-Scheme } [ RFC4740-SIP-Item-Number ]
        [ RFC4740-SIP-Authenticate ] [ RFC4740-SIP-Authorization ]
        [ SIP-Authentication-Info ] * [ AVP ]""",
    "RFC4740-SIP-Authenticate": """
        { Digest-Realm } { Digest-Nonce } [ Digest-Domain ] [ Digest-Opaque ] [ Digest-Stale ]
        [ Digest-Algorithm ] [ Digest-Qop ] [ Digest-HA1 ] * [ Digest-Auth-Param ] * [ AVP ]""",
    "RFC4740-SIP-Authorization": """
        { Digest-Username } { Digest-Realm } { Digest-Nonce } { Digest-URI } { Digest-Response }
        [ Digest-Algorithm ] [ Digest-CNonce ] [ Digest-Opaque ] [ Digest-Qop ]
        [ Digest-Nonce-Count ] [ Digest-Method ] [ Digest-Entity-Body-Hash ]
        * [ Digest-Auth-Param ] * [ AVP ]""",
    "SIP-Authentication-Info": """
        [ Digest-Nextnonce ] [ Digest-Qop ] [ Digest-Response-Auth ] [ Digest-CNonce ]
        [ Digest-Nonce-Count ] * [ AVP ]""",
    "SIP-Deregistration-Reason": "{ SIP-Reason-Code } [ SIP-Reason-Info ] * [ AVP ]",
    "SIP-User-Data": "{ SIP-User-Data-Type } { SIP-User-Data-Contents } * [ AVP ]",
}

# RFC 4740 9 (AVP flag rules): every SIP application AVP has the M bit set (Wireshark's
# sip.xml leaves it out); python-diameter agrees.
M_TRUE_IETF = frozenset(range(368, 394))

_TAIL = "* [ Proxy-Info ] * [ Route-Record ] * [ AVP ]"
_HEAD_REQ = (
    "< Session-Id > { Auth-Application-Id } { Auth-Session-State } { Origin-Host } { Origin-Realm }"
)
_HEAD_ANS = (
    "< Session-Id > { Auth-Application-Id } { Result-Code } { Auth-Session-State } "
    "{ Origin-Host } { Origin-Realm }"
)
_AUTH = "[ Authorization-Lifetime ] [ Auth-Grace-Period ]"
_REDIRECT = "* [ Redirect-Host ] [ Redirect-Host-Usage ] [ Redirect-Max-Cache-Time ]"


def _sip(name: str, code: int, request: str, answer: str) -> dict:
    return {
        "name": name, "code": code, "application": SIP_APP, "proxiable": True,
        # TS 29.229 Cx holds the plain class names (UserAuthorizationRequest, ...)
        "class_name": "Sip" + name.replace("-", ""),
        "request": f"{_HEAD_REQ} {request} {_TAIL}",
        "answer": f"{_HEAD_ANS} {answer} {_TAIL}",
    }  # fmt: skip


# RFC 4740 8.1-8.12. The Redirect-Host of an answer is written "* [ Redirect-Host ]", as
# RFC 6733 6.13 allows several (RFC 4740 lists it once; a peer may send more).
# fmt: off
COMMANDS: list[dict] = [
    _sip("User-Authorization", 283,
         "{ Destination-Realm } { SIP-AOR } [ Destination-Host ] [ User-Name ] "
         "[ SIP-Visited-Network-Id ] [ SIP-User-Authorization-Type ]",
         f"[ SIP-Server-URI ] [ SIP-Server-Capabilities ] {_AUTH} {_REDIRECT}"),
    _sip("Server-Assignment", 284,
         "{ Destination-Realm } { SIP-Server-Assignment-Type } "
         "{ SIP-User-Data-Already-Available } [ Destination-Host ] [ User-Name ] "
         "[ SIP-Server-URI ] * [ SIP-Supported-User-Data-Type ] * [ SIP-AOR ]",
         f"* [ SIP-User-Data ] [ SIP-Accounting-Information ] * [ SIP-AOR ] "
         f"[ SIP-Server-URI ] {_AUTH} {_REDIRECT}"),
    _sip("Location-Info", 285,
         "{ Destination-Realm } { SIP-AOR } [ Destination-Host ]",
         f"[ SIP-Server-URI ] [ SIP-Server-Capabilities ] {_AUTH} {_REDIRECT}"),
    _sip("Multimedia-Auth", 286,
         "{ Destination-Realm } { SIP-AOR } { RFC4740-SIP-Method } [ Destination-Host ] "
         "[ User-Name ] [ SIP-Server-URI ] [ RFC4740-SIP-Number-Auth-Items ] "
         "[ RFC4740-SIP-Auth-Data-Item ]",
         f"[ User-Name ] [ SIP-AOR ] [ RFC4740-SIP-Number-Auth-Items ] "
         f"* [ RFC4740-SIP-Auth-Data-Item ] {_AUTH} {_REDIRECT}"),
    _sip("Registration-Termination", 287,
         "{ Destination-Host } { SIP-Deregistration-Reason } [ Destination-Realm ] "
         "[ User-Name ] * [ SIP-AOR ]",
         f"{_AUTH} {_REDIRECT}"),
    _sip("Push-Profile", 288,
         "{ Destination-Realm } { User-Name } * [ SIP-User-Data ] "
         f"[ SIP-Accounting-Information ] [ Destination-Host ] {_AUTH}",
         _REDIRECT),
]
# fmt: on
