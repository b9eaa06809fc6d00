#!/usr/bin/env python3
"""Generate chargegw's built-in Diameter dictionaries (codec/dictionaries/*.json).

Usage::

    python tools/gen_dictionaries.py                 # regenerate all files, then self-check
    python tools/gen_dictionaries.py --check         # only verify the committed files are current
    python tools/gen_dictionaries.py --wireshark-dir /path/to/wireshark/diameter

Where the data comes from
-------------------------
* The mechanical part (AVP names, codes, vendors, types, M flags, enumerated values and the
  member lists of most Grouped AVPs) is read from Wireshark's Diameter XML dictionaries
  (``/usr/share/wireshark/diameter`` by default). Only the facts are taken from there; every
  file is parsed on its own (``dictionary.xml`` pulls the others in through external entities,
  which ElementTree cannot resolve, so the DOCTYPE and the entity references are stripped).
* Everything that Wireshark lacks or gets wrong relative to the specifications is corrected
  by the tables in this script: ``RENAMES``, ``OVERRIDES``, ``M_FALSE``/``M_TRUE``,
  ``EXTRA_AVPS`` and the hand-written CCF grammars in ``GROUPED`` and ``COMMANDS``.
* Facts Wireshark lacks (3GPP M-bit columns, TS 32.299 AVPs added after Wireshark's snapshot,
  TS 32.299 grouped member lists) were taken from the 3GPP/IETF specifications and
  cross-checked against freeDiameter's spec-derived ``dict_dcca_3gpp.csv`` and the TS 32.299
  dictionary of travelping's ergw_aaa; no code from either is used.
* The result is checked (unique names and (code, vendor) keys, every grammar reference
  resolves, valid types and enum names, ...) and the script exits non-zero on any failure.

Which AVPs land in which file
-----------------------------
* vendor 10415 (3GPP), 13019 (ETSI) and the one 3GPP2 AVP that TS 32.299 references
  (3GPP2-BSID) -> ``tgpp.json``; Sy and Cx/Dx files carry only their commands.
* vendor 0: Wireshark's chargecontrol.xml plus RFC 8506 codes 653-669 -> ``credit_control``;
  eap.xml plus EAP-Message/EAP-Key-Name -> ``eap``; mobileipv4.xml/mobileipv6.xml plus the
  RFC 5447 MIP6 attributes -> ``mip4``; all other RADIUS-range codes (1-255) except the
  handful RFC 6733 defines -> ``nasreq``; everything else (RFC 6733 base and accounting, and
  the generic IETF extensions RFC 5777/5624 classifiers, RFC 7075, RFC 7683, RFC 7944,
  RFC 8583) -> ``base``.

Differences found between the specs / the spec digest (../shared/docs) and Wireshark
--------------------------------------------------------------------------------------
(The spec wins in every case; each one is implemented in the tables below.)

Names
  * 50 Accounting-Multi-Session-Id  -> Acct-Multi-Session-Id (RFC 6733, digest).
  * 68 Tunnel-Connection-ID         -> Acct-Tunnel-Connection (RFC 7155 / RFC 2867).
  * 37-39 Framed-AppleTalk-*        -> Framed-Appletalk-* (RFC 7155 spelling).
  * 10415/824 3GPP-SIP-Method       -> SIP-Method; 10415/872 3GPP-Reporting-Reason ->
    Reporting-Reason; 10415/830 User-Session-ID -> User-Session-Id (TS 32.299, digest).
    (Wireshark prefixes these to avoid clashes with RFC 4740 (sip.xml), which we do not load.)
  * 10415/606-613 Cx-User-Data, 3GPP-SIP-Number-Auth-Items, 3GPP-SIP-Authentication-Scheme,
    3GPP-SIP-Authenticate, 3GPP-SIP-Authorization, 3GPP-SIP-Auth-Data-Item,
    3GPP-SIP-Item-Number -> the TS 29.229 names without prefix (User-Data, SIP-...).
    The Sh User-Data (702) keeps Wireshark's "Sh-User-Data" so names stay unique.
  * 10415/634 Wildcarded-PSI -> Wildcarded-Public-Identity (TS 29.229 since Rel-8).
  * 10415/851-853 Trunk-Group-ID, Incoming-/Outgoing-Trunk-Group-ID -> ...-Id (TS 32.299).
  * 10415/3416 ISUP-Release-Cause -> ISUP-Cause (TS 32.299).
  * 10415/2603-2605 ...-Indicator -> IP-Realm-Default-Indication, Local-GW-Inserted-Indication,
    Transcoder-Inserted-Indication (TS 32.299).
  * 10415/3508 Radio-Frequency (TS 29.468, MB2-C) -> MB2-Radio-Frequency: TS 32.299 uses the
    same name for 3462 (ProSe), and names must be unique.
  * 13019/315 QoS-Profile-ID -> ETSI-QoS-Profile-ID: it differs from RFC 5777's QoS-Profile-Id
    (573) only by case, which would collide once names are turned into Python identifiers.
Types
  * 268 Result-Code and 298 Experimental-Result-Code: Enumerated -> Unsigned32 (RFC 6733).
  * 270 Session-Binding, 299 Inband-Security-Id: Enumerated -> Unsigned32 (RFC 6733).
  * 337 MIP-Feature-Vector: Enumerated -> Unsigned32 (RFC 4004, a bit mask).
  * 10415/2 3GPP-Charging-Id: OctetStringOrUTF8 -> Unsigned32 (TS 29.061, digest).
  * 10415/10 3GPP-NSAPI: UTF8String -> OctetString (TS 29.061 16.4.7).
  * 10415/3423 ISUP-Cause-Location: OctetString -> Unsigned32 (TS 32.299 7.2.80C).
  * 23 Framed-IPX-Network: UTF8String -> Unsigned32 (RFC 7155, RFC 2865 5.23).
  * 102 EAP-Key-Name: UTF8String -> OctetString (RFC 4072 4.1.4).
  * Wireshark's "IPAddress" accepts both raw addresses and the Diameter Address format, so it
    maps to Address, except for the RADIUS-derived AVPs whose spec type is a raw OctetString:
    8 Framed-IP-Address, 9 Framed-IP-Netmask (RFC 7155; 14 Login-IP-Host stays Address) and 10415/4, 6, 7
    3GPP-CG-Address, 3GPP-SGSN-Address, 3GPP-GGSN-Address (TS 29.061).
M bit
  * Wireshark omits the "mandatory" attribute on ~400 3GPP AVPs (and a few IETF ones); the
    DTD default would be "may". TS 32.299 and most older 3GPP tables set M, so a missing
    attribute is read as M set, except for the 3GPP ranges whose spec tables say "M must not"
    (see MISSING_M_FALSE_RANGES).
  * 3GPP AVPs Wireshark marks "must" although the spec tables (TS 29.212, 29.214, 29.229,
    29.272, 29.329, 29.128, 29.173; cross-checked with freeDiameter's spec-derived CSV) say
    M must not / may: see M_FALSE (e.g. Supported-Features, Feature-List(-ID),
    Allocation-Retention-Priority, APN-Aggregate-Max-Bitrate-*, Sponsor-Identity).
  * LCS-Client-ID, LCS-Client-Name, LCS-Format-Indicator, LCS-Requestor-ID, LCS-Client-Type,
    Location-Estimate-Type, Location-Type: Wireshark "may", TS 32.299 "M" -> M set.
  * 301 DRMP: no attribute in Wireshark; RFC 7944 says the M bit must not be set.
  * PDP-Address (1227) is sometimes listed without M; TS 32.299 and the digest give V,M, so it
    is emitted with M set.
Enumerations
  * 268 Result-Code: 4241 and 5241 removed (Ericsson SCAP values, not IETF; digest section 8).
  * 298 Experimental-Result-Code: 4241 is DIAMETER_ERROR_NO_AVAILABLE_POLICY_COUNTERS (TS 29.219),
    5043 is DIAMETER_ERROR_NO_ACCESS_INDEPENDENT_SUBSCRIPTION (TS 29.234).
  * 563-565 Day-Of-Week-Mask, Day-Of-Month-Mask, Month-Of-Year-Mask: Unsigned32 bit masks
    (RFC 5777), not Enumerated; Wireshark's values are wrong, so no enum is emitted.
  * 10415/829 Role-Of-Node: 0 ORIGINATING_ROLE, 1 TERMINATING_ROLE, 2 FORWARDING_ROLE
    (TS 32.299, digest; Wireshark has the Rel-6 PROXY_ROLE/B2BUA_ROLE).
  * 10415/870 Trigger-Type 50 is CHANGE_IN_PARTICIPANTS_NMB (TS 32.299).
  * 295 Termination-Cause: value 31 is PORT_REINITIALIZED (Wireshark repeats 30's name).
  * 480 Accounting-Record-Type and 261 Redirect-Host-Usage: RFC 6733 value names.
  * 10415/872 Reporting-Reason: + 9 UNUSED_QUOTA_TIMER; 10415/2047 Serving-Node-Type: + 6 TWAN;
    10415/3 3GPP-PDP-Type: + 4 NON_IP; 10415/870 Trigger-Type: + 76; 10415/862
    Node-Functionality: + 18..21 (digest, TS 32.299).
  * Wireshark placeholder entries "Undefined"/"Unassigned"/"Reserved" are dropped.
Missing in Wireshark (added in EXTRA_AVPS)
  * RFC 8506: 659-669 (Subscription-Id-Extension family, Redirect-Server-Extension family,
    QoS-Final-Unit-Indication).
  * TS 29.219: 2907 SN-Request-Type (Unsigned32, V only).
  * TS 32.299: 1300 PC5-Radio-Technology, 2322 IMS-Emergency-Indicator, 2323
    MBMS-Charged-Party, 2701 Transit-IOI-List, 2702 Status-AS-Code, 3441-3468 (ProSe charging
    AVPs incl. ProSe-Information), 3926 Related-Trigger, 3927 CPDT-Information, 3928
    NIDD-Submission, 3929 Serving-Node-Identity.
Grouped member lists Wireshark gets wrong (fixed by hand-written grammars)
  * PS-Information lists "PDN-Connection-ID" (1065, Gx) instead of PDN-Connection-Charging-ID.
  * MMTel-Information lists Supplementary-Service's members instead of *[Supplementary-Service];
    Supplementary-Service lists 3GPP-Service-Type (TS 29.272) instead of MMTel-Service-Type.
  * Event-Type lists Content-Type/-Length/-Disposition (they belong to Message-Body).
  * Service-Information lacks *[Subscription-Id], SMS-, VCS-, MMTel-, ProSe-, CPDT-Information ...
  * 3GPP-SIP-Auth-Data-Item points at RFC 4740's SIP-Item-Number (code 378, vendor 0).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen_dictionaries_apps import APPLICATIONS as APP_IDS  # noqa: E402
from gen_dictionaries_apps import COMMANDS as APP_COMMANDS  # noqa: E402
from gen_dictionaries_more import COMMANDS as MORE_COMMANDS  # noqa: E402
from gen_dictionaries_more import EXTRA_AVPS as MORE_AVPS  # noqa: E402
from gen_dictionaries_more import GROUPED as MORE_GROUPED  # noqa: E402
from gen_dictionaries_more import M_TRUE_IETF  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "codec" / "dictionaries"
DEFAULT_WIRESHARK_DIR = Path("/usr/share/wireshark/diameter")

TGPP = 10415
ETSI = 13019
TGPP2 = 5535

VENDOR_NAMES = {TGPP: "3GPP", ETSI: "ETSI", TGPP2: "3GPP2"}

VALID_TYPES = frozenset(
    {
        "OctetString",
        "UTF8String",
        "DiameterIdentity",
        "DiameterURI",
        "Integer32",
        "Integer64",
        "Unsigned32",
        "Unsigned64",
        "Float32",
        "Float64",
        "Grouped",
        "Address",
        "Time",
        "Enumerated",
        "IPFilterRule",
    }
)
INTEGER_TYPES = frozenset({"Integer32", "Integer64", "Unsigned32", "Unsigned64", "Enumerated"})

# Wireshark's derived types -> our base set. Anything not listed and not valid -> OctetString.
WS_TYPE_MAP = {
    "IPAddress": "Address",
    "AppId": "Unsigned32",
    "VendorId": "Unsigned32",
    "QoSFilterRule": "OctetString",
    "MIPRegistrationRequest": "OctetString",
    "OctetStringOrUTF8": "OctetString",
}

MIN_TOTAL_AVPS = 1500

# --------------------------------------------------------------------------------------
# Output files
# --------------------------------------------------------------------------------------

FILES = {
    "base": {
        "title": "Diameter Base Protocol, Base Accounting and common IETF extensions",
        "source": (
            "RFC 6733; RFC 7683 (overload control), RFC 7944 (DRMP), RFC 8583 (Load), "
            "RFC 7075 (Redirect-Realm), RFC 5777 / RFC 5624 (classifier and QoS AVPs), "
            "RFC 4740 (SIP application AVPs)"
        ),
        "applications": [
            {"id": 0, "name": "Diameter Common Messages", "kind": "auth"},
            {"id": 3, "name": "Diameter Base Accounting", "kind": "acct"},
            {"id": 6, "name": "Diameter Session Initiation Protocol (SIP)", "kind": "auth"},
        ],
    },
    "nasreq": {
        "title": "Diameter Network Access Server Application and RADIUS-compatible attributes",
        "source": "RFC 7155 (obsoletes RFC 4005); RADIUS attribute codes 1-255 (IANA registry)",
        "applications": [{"id": 1, "name": "Diameter Network Access Server", "kind": "auth"}],
    },
    "mip4": {
        "title": "Diameter Mobile IPv4 Application (and Mobile IPv6 bootstrapping AVPs)",
        "source": "RFC 4004; RFC 5447, RFC 5778, RFC 5779 (MIP6 AVPs referenced by 3GPP)",
        "applications": [{"id": 2, "name": "Diameter Mobile IPv4", "kind": "auth"}],
    },
    "eap": {
        "title": "Diameter Extensible Authentication Protocol (EAP) Application",
        "source": "RFC 4072",
        "applications": [{"id": 5, "name": "Diameter EAP", "kind": "auth"}],
    },
    "credit_control": {
        "title": "Diameter Credit-Control Application",
        "source": "RFC 8506 (obsoletes RFC 4006); 3GPP TS 32.299 (Gy/Ro profile)",
        "applications": [{"id": 4, "name": "Diameter Credit-Control", "kind": "auth"}],
    },
    "tgpp": {
        "title": "3GPP (and ETSI) vendor-specific AVPs",
        "source": (
            "3GPP TS 32.299, TS 29.061, TS 29.229, TS 29.219, TS 29.212, TS 29.214, TS 29.230, "
            "TS 29.272, TS 29.329 and the other 3GPP Diameter specs; ETSI ES 283 034/035"
        ),
        "applications": APP_IDS,
    },
    "sy": {
        "title": "3GPP Sy (spending limit reporting)",
        "source": "3GPP TS 29.219",
        "applications": [{"id": 16777302, "name": "3GPP Sy", "kind": "auth"}],
    },
    "cxdx": {
        "title": "3GPP Cx/Dx (IMS registration and authentication)",
        "source": "3GPP TS 29.229",
        "applications": [{"id": 16777216, "name": "3GPP Cx/Dx", "kind": "auth"}],
    },
}

# vendor-0 files of Wireshark's set that describe the protocols we ship.
IETF_WS_FILES = (
    "dictionary.xml",
    "chargecontrol.xml",
    "nasreq.xml",
    "eap.xml",
    "mobileipv4.xml",
    "mobileipv6.xml",
    "sip.xml",
)
# Files scanned for vendor 10415/13019 AVPs (and the few allow-listed others).
VENDOR_WS_FILES = ("dictionary.xml", "TGPP.xml", "etsie2e4.xml", "TGPP2.xml")
# On a duplicate, the AVP from the earlier file wins (specific files before dictionary.xml).
SOURCE_PRIORITY = (
    "chargecontrol.xml",
    "nasreq.xml",
    "eap.xml",
    "mobileipv4.xml",
    "mobileipv6.xml",
    "sip.xml",
    "TGPP.xml",
    "etsie2e4.xml",
    "TGPP2.xml",
    "dictionary.xml",
)
# (vendor, code) of AVPs of other vendors that our grammars reference.
OTHER_VENDOR_ALLOW = {(TGPP2, 9010)}  # 3GPP2-BSID, referenced by TS 32.299 PS-Information

# RADIUS-range codes that RFC 6733 itself defines (they go to base.json, not nasreq.json).
BASE_RADIUS_CODES = frozenset({1, 25, 27, 33, 44, 50, 55, 85})
EAP_RADIUS_CODES = frozenset({79, 102})  # EAP-Message, EAP-Key-Name (RFC 4072 uses the latter)
MIP_RADIUS_CODES = frozenset({124, 125})  # MIP6-Feature-Vector, MIP6-Home-Link-Prefix (RFC 5447)

PLACEHOLDER_NAME = re.compile(r"^(Reserved|Experimental-Use|Implementation-Specific)-\d+$")
PLACEHOLDER_ENUM = re.compile(r"^(undefined|unassigned|reserved)$", re.IGNORECASE)

# --------------------------------------------------------------------------------------
# Corrections to Wireshark's data
# --------------------------------------------------------------------------------------

# (code, vendor) -> spec name
RENAMES = {
    (50, 0): "Acct-Multi-Session-Id",
    (68, 0): "Acct-Tunnel-Connection",
    (37, 0): "Framed-Appletalk-Link",
    (38, 0): "Framed-Appletalk-Network",
    (39, 0): "Framed-Appletalk-Zone",
    (606, TGPP): "User-Data",
    (607, TGPP): "SIP-Number-Auth-Items",
    (608, TGPP): "SIP-Authentication-Scheme",
    (609, TGPP): "SIP-Authenticate",
    (610, TGPP): "SIP-Authorization",
    (612, TGPP): "SIP-Auth-Data-Item",
    (613, TGPP): "SIP-Item-Number",
    (634, TGPP): "Wildcarded-Public-Identity",
    (824, TGPP): "SIP-Method",
    (830, TGPP): "User-Session-Id",
    (851, TGPP): "Trunk-Group-Id",
    (852, TGPP): "Incoming-Trunk-Group-Id",
    (853, TGPP): "Outgoing-Trunk-Group-Id",
    (872, TGPP): "Reporting-Reason",
    (2603, TGPP): "IP-Realm-Default-Indication",
    (2604, TGPP): "Local-GW-Inserted-Indication",
    (2605, TGPP): "Transcoder-Inserted-Indication",
    (3416, TGPP): "ISUP-Cause",
    (3508, TGPP): "MB2-Radio-Frequency",
    (315, ETSI): "ETSI-QoS-Profile-ID",
    # RFC 4740 (Diameter SIP application) names that TS 29.229 reuses for its own 3GPP
    # AVPs (606-613, 824 above, which keep the plain names the Cx/SWx grammars use).
    (376, 0): "RFC4740-SIP-Auth-Data-Item",
    (377, 0): "RFC4740-SIP-Authentication-Scheme",
    (378, 0): "RFC4740-SIP-Item-Number",
    (379, 0): "RFC4740-SIP-Authenticate",
    (380, 0): "RFC4740-SIP-Authorization",
    (382, 0): "RFC4740-SIP-Number-Auth-Items",
    (393, 0): "RFC4740-SIP-Method",
}

# (code, vendor) -> field overrides. "enum" replaces the whole enumeration; "enum_add" adds or
# renames values ({name: value}); "enum_drop" removes values.
OVERRIDES: dict[tuple[int, int], dict] = {
    # RFC 7155 / TS 29.061: RADIUS-derived addresses are raw 4/16-octet OctetStrings, not
    # the Diameter Address type (no 2-octet address family in front).
    (8, 0): {"type": "OctetString"},
    (9, 0): {"type": "OctetString"},
    # RFC 7155 4.4.11.1: Login-IP-Host is of type Address (unlike Framed-IP-Address).
    (14, 0): {"type": "Address"},
    # RFC 7155 4.4.10.5.6 / RFC 2865 5.23: a four-octet IPX network number (Wireshark and
    # RFC 4005 said UTF8String).
    (23, 0): {"type": "Unsigned32"},
    # RFC 4072 4.1.4: EAP-Key-Name is an OctetString (the EAP method's key name is binary).
    (102, 0): {"type": "OctetString"},
    (4, TGPP): {"type": "OctetString"},
    (6, TGPP): {"type": "OctetString"},
    (7, TGPP): {"type": "OctetString"},
    (261, 0): {
        "enum": {
            "DONT_CACHE": 0,
            "ALL_SESSION": 1,
            "ALL_REALM": 2,
            "REALM_AND_APPLICATION": 3,
            "ALL_APPLICATION": 4,
            "ALL_HOST": 5,
            "ALL_USER": 6,
        }
    },
    (268, 0): {"type": "Unsigned32", "enum_drop": [4241, 5241]},
    (270, 0): {"type": "Unsigned32"},
    (295, 0): {"enum_add": {"PORT_REINITIALIZED": 31}},
    (298, 0): {
        "type": "Unsigned32",
        "enum_add": {
            "DIAMETER_ERROR_NO_AVAILABLE_POLICY_COUNTERS": 4241,
            "DIAMETER_ERROR_NO_ACCESS_INDEPENDENT_SUBSCRIPTION": 5043,
        },
    },
    (299, 0): {"type": "Unsigned32"},
    (301, 0): {"m": False},
    (337, 0): {"type": "Unsigned32"},
    # RFC 5777: bit masks of type Unsigned32 (Wireshark: Enumerated with bogus values)
    (563, 0): {"type": "Unsigned32", "enum": {}},
    (564, 0): {"type": "Unsigned32", "enum": {}},
    (565, 0): {"type": "Unsigned32", "enum": {}},
    (480, 0): {
        "enum": {"EVENT_RECORD": 1, "START_RECORD": 2, "INTERIM_RECORD": 3, "STOP_RECORD": 4}
    },
    # TS 29.061 16.4.7 (table of 3GPP Diameter AVPs): 3GPP-Charging-Id is Unsigned32 (the
    # GTP Charging ID), 3GPP-NSAPI an OctetString; TS 32.299 7.2.80C: ISUP-Cause-Location
    # is Unsigned32 (the Q.850 location field), not an OctetString.
    (2, TGPP): {"type": "Unsigned32"},
    (10, TGPP): {"type": "OctetString"},
    (3423, TGPP): {"type": "Unsigned32"},
    (3, TGPP): {"enum_add": {"NON_IP": 4}},
    (829, TGPP): {"enum": {"ORIGINATING_ROLE": 0, "TERMINATING_ROLE": 1, "FORWARDING_ROLE": 2}},
    (862, TGPP): {"enum_add": {"TDF": 18, "TWAG": 19, "SCEF": 20, "IWK_SCEF": 21}},
    (870, TGPP): {"enum_add": {"CHANGE_IN_PARTICIPANTS_NMB": 50, "CHANGE_IN_3GPP_PS_DATA_OFF": 76}},
    (872, TGPP): {"enum_add": {"UNUSED_QUOTA_TIMER": 9}},
    (2047, TGPP): {"enum_add": {"TWAN": 6}},
}


def _codes(*parts: int | tuple[int, int]) -> frozenset[int]:
    out: set[int] = set()
    for p in parts:
        if isinstance(p, tuple):
            out.update(range(p[0], p[1] + 1))
        else:
            out.add(p)
    return frozenset(out)


# 3GPP AVPs whose spec tables say the M bit must not (or need not) be set, although Wireshark
# marks them "must" or leaves the attribute out.
M_FALSE = {
    TGPP: _codes(
        # TS 29.128
        (4321, 4324),
        # TS 29.173
        (2408, 2411),
        # TS 29.212
        (1032, 1041),
        (1046, 1050),
        (1056, 1063),
        (1065, 1081),
        (1085, 1099),
        2801,
        2802,
        (2804, 2806),
        2809,
        2810,
        # TS 29.214
        (528, 564),
        # TS 29.229
        (628, 632),
        (634, 658),
        # TS 29.272
        1444,
        (1491, 1499),
        (1600, 1638),
        1642,
        1643,
        1645,
        (1648, 1650),
        (1654, 1706),
        # TS 29.329
        636,
        (708, 710),
        (712, 716),
        719,
        # TS 32.299 (Rel-15 additions are V only)
        (1300, 1304),
    )
}
# AVPs Wireshark marks "may" although the spec table says M,V (TS 32.299 LCS AVPs).
M_TRUE = {TGPP: _codes(1232, 1235, 1237, 1239, 1241, 1243, 1244), 0: M_TRUE_IETF}
# A missing "mandatory" attribute means M set, except in these 3GPP ranges (spec: V only).
MISSING_M_FALSE_RANGES = {TGPP: _codes((654, 658), (1642, 1706), (2408, 2411), (2800, 2899))}

# AVPs Wireshark does not define. Fields as in the output schema ("m" defaults to True).
EXTRA_AVPS: list[dict] = [
    # RFC 8506 (Wireshark stops at 658)
    {"name": "Subscription-Id-Extension", "code": 659, "type": "Grouped", "m": False},
    {"name": "Subscription-Id-E164", "code": 660, "type": "UTF8String", "m": False},
    {"name": "Subscription-Id-IMSI", "code": 661, "type": "UTF8String", "m": False},
    {"name": "Subscription-Id-SIP-URI", "code": 662, "type": "UTF8String", "m": False},
    {"name": "Subscription-Id-NAI", "code": 663, "type": "UTF8String", "m": False},
    {"name": "Subscription-Id-Private", "code": 664, "type": "UTF8String", "m": False},
    {"name": "Redirect-Server-Extension", "code": 665, "type": "Grouped", "m": False},
    {"name": "Redirect-Address-IPAddress", "code": 666, "type": "Address", "m": False},
    {"name": "Redirect-Address-URL", "code": 667, "type": "UTF8String", "m": False},
    {"name": "Redirect-Address-SIP-URI", "code": 668, "type": "UTF8String", "m": False},
    {"name": "QoS-Final-Unit-Indication", "code": 669, "type": "Grouped", "m": False},
    # TS 29.219
    {"name": "SN-Request-Type", "code": 2907, "vendor": TGPP, "type": "Unsigned32", "m": False},
    # TS 32.299
    {
        "name": "PC5-Radio-Technology",
        "code": 1300,
        "vendor": TGPP,
        "type": "Enumerated",
        "m": False,
        "enum": {"EUTRA": 0, "WLAN": 1, "BOTH_EUTRA_AND_WLAN": 2},
    },
    {
        "name": "IMS-Emergency-Indicator",
        "code": 2322,
        "vendor": TGPP,
        "type": "Enumerated",
        "enum": {"NON_EMERGENCY": 0, "EMERGENCY": 1},
    },
    {
        "name": "MBMS-Charged-Party",
        "code": 2323,
        "vendor": TGPP,
        "type": "Enumerated",
        "enum": {"CONTENT_PROVIDER": 0, "SUBSCRIBER": 1},
    },
    {"name": "Transit-IOI-List", "code": 2701, "vendor": TGPP, "type": "UTF8String"},
    {
        "name": "Status-AS-Code",
        "code": 2702,
        "vendor": TGPP,
        "type": "Enumerated",
        "enum": {"V_4XX": 0, "V_5XX": 1, "TIMEOUT": 2},
    },
    {
        "name": "ProSe-Direct-Communication-Transmission-Data-Container",
        "code": 3441,
        "vendor": TGPP,
        "type": "Grouped",
    },
    {
        "name": "ProSe-Direct-Discovery-Model",
        "code": 3442,
        "vendor": TGPP,
        "type": "Enumerated",
        "enum": {"MODEL_A": 0, "MODEL_B": 1},
    },
    {
        "name": "ProSe-Event-Type",
        "code": 3443,
        "vendor": TGPP,
        "type": "Enumerated",
        "enum": {"ANNOUNCING": 0, "MONITORING": 1, "MATCH_REPORT": 2},
    },
    {"name": "ProSe-Function-IP-Address", "code": 3444, "vendor": TGPP, "type": "Address"},
    {
        "name": "ProSe-Functionality",
        "code": 3445,
        "vendor": TGPP,
        "type": "Enumerated",
        "enum": {"DIRECT_DISCOVERY": 0, "EPC_LEVEL_DISCOVERY": 1, "DIRECT_COMMUNICATION": 2},
    },
    {"name": "ProSe-Group-IP-Multicast-Address", "code": 3446, "vendor": TGPP, "type": "Address"},
    {"name": "ProSe-Information", "code": 3447, "vendor": TGPP, "type": "Grouped"},
    {
        "name": "ProSe-Range-Class",
        "code": 3448,
        "vendor": TGPP,
        "type": "Enumerated",
        "enum": {"RESERVED": 0, "V_50M": 1, "V_100M": 2, "V_200M": 3, "V_500M": 4, "V_1000M": 5},
    },
    {
        "name": "ProSe-Reason-For-Cancellation",
        "code": 3449,
        "vendor": TGPP,
        "type": "Enumerated",
        "enum": {
            "PROXIMITY_ALERT_SENT": 0,
            "TIME_EXPIRED_WITH_NO_RENEWAL": 1,
            "REQUESTOR_CANCELLATION": 2,
        },
    },
    {"name": "ProSe-Request-Timestamp", "code": 3450, "vendor": TGPP, "type": "Time"},
    {
        "name": "ProSe-Role-Of-UE",
        "code": 3451,
        "vendor": TGPP,
        "type": "Enumerated",
        "enum": {"ANNOUNCING_UE": 0, "MONITORING_UE": 1, "REQUESTOR_UE": 2, "REQUESTED_UE": 3},
    },
    {"name": "ProSe-Source-IP-Address", "code": 3452, "vendor": TGPP, "type": "Address"},
    {"name": "ProSe-UE-ID", "code": 3453, "vendor": TGPP, "type": "OctetString"},
    {
        "name": "Proximity-Alert-Indication",
        "code": 3454,
        "vendor": TGPP,
        "type": "Enumerated",
        "enum": {"ALERT": 0, "NO_ALERT": 1},
    },
    {"name": "Proximity-Alert-Timestamp", "code": 3455, "vendor": TGPP, "type": "Time"},
    {"name": "Proximity-Cancellation-Timestamp", "code": 3456, "vendor": TGPP, "type": "Time"},
    {"name": "ProSe-Function-PLMN-Identifier", "code": 3457, "vendor": TGPP, "type": "UTF8String"},
    {"name": "Application-Specific-Data", "code": 3458, "vendor": TGPP, "type": "OctetString"},
    {"name": "Coverage-Info", "code": 3459, "vendor": TGPP, "type": "Grouped"},
    {"name": "Location-Info", "code": 3460, "vendor": TGPP, "type": "Grouped"},
    {
        "name": "ProSe-Direct-Communication-Reception-Data-Container",
        "code": 3461,
        "vendor": TGPP,
        "type": "Grouped",
    },
    {"name": "Radio-Frequency", "code": 3462, "vendor": TGPP, "type": "OctetString"},
    {"name": "Radio-Parameter-Set-Info", "code": 3463, "vendor": TGPP, "type": "Grouped"},
    {"name": "Radio-Parameter-Set-Values", "code": 3464, "vendor": TGPP, "type": "OctetString"},
    {"name": "Radio-Resources-Indicator", "code": 3465, "vendor": TGPP, "type": "Integer32"},
    {"name": "Time-First-Reception", "code": 3466, "vendor": TGPP, "type": "Time"},
    {"name": "Time-First-Transmission", "code": 3467, "vendor": TGPP, "type": "Time"},
    {"name": "Transmitter-Info", "code": 3468, "vendor": TGPP, "type": "Grouped"},
    {"name": "Related-Trigger", "code": 3926, "vendor": TGPP, "type": "Grouped"},
    {"name": "CPDT-Information", "code": 3927, "vendor": TGPP, "type": "Grouped"},
    {"name": "NIDD-Submission", "code": 3928, "vendor": TGPP, "type": "Grouped"},
    {"name": "Serving-Node-Identity", "code": 3929, "vendor": TGPP, "type": "DiameterIdentity"},
    # RFC 5777 5.1 (S6b AAR/DER carry it); TS 29.212 5.3.129 (Gx CCR, Rx RAR/STA)
    {"name": "QoS-Capability", "code": 578, "type": "Grouped"},
    {"name": "TCP-Source-Port", "code": 2843, "vendor": TGPP, "type": "Unsigned32", "m": False},
    # TS 29.329 6.3.25-27 (Sh UDR, Rel-12; V only like the other Rel-12 Sh AVPs)
    {"name": "Call-Reference-Info", "code": 720, "vendor": TGPP, "type": "Grouped", "m": False},
    {
        "name": "Call-Reference-Number",
        "code": 721,
        "vendor": TGPP,
        "type": "OctetString",
        "m": False,
    },
    {"name": "AS-Number", "code": 722, "vendor": TGPP, "type": "OctetString", "m": False},
]

# --------------------------------------------------------------------------------------
# Hand-written grouped AVP grammars (RFC 6733 CCF, one item per line or space separated).
# Names are the final (spec) names. These replace Wireshark's member lists.
# --------------------------------------------------------------------------------------

GROUPED: dict[str, str] = {
    # ---- TS 29.272 7.3 (S6a/S6d): the groups whose shape users read ----
    "Subscription-Data": """
        [ Subscriber-Status ] [ MSISDN ] [ A-MSISDN ] [ STN-SR ] [ ICS-Indicator ]
        [ Network-Access-Mode ] [ Operator-Determined-Barring ] [ HPLMN-ODB ]
        *10 [ Regional-Subscription-Zone-Code ] [ Access-Restriction-Data ]
        [ APN-OI-Replacement ] [ LCS-Info ] [ Teleservice-List ]
        [ 3GPP-Charging-Characteristics ] [ AMBR ] [ APN-Configuration-Profile ]
        [ RAT-Frequency-Selection-Priority-ID ] [ Trace-Data ] [ GPRS-Subscription-Data ]
        * [ CSG-Subscription-Data ] [ Roaming-Restricted-Due-To-Unsupported-Feature ]
        [ Subscribed-Periodic-RAU-TAU-Timer ] [ MPS-Priority ] [ VPLMN-LIPA-Allowed ]
        [ Relay-Node-Indicator ] [ MDT-User-Consent ] [ Subscribed-VSRVCC ]
        [ ProSe-Subscription-Data ] [ Subscription-Data-Flags ]
        * [ Adjacent-Access-Restriction-Data ] [ DL-Buffering-Suggested-Packet-Count ]
        * [ IMSI-Group-Id ] [ UE-Usage-Type ] * [ AESE-Communication-Pattern ]
        * [ Monitoring-Event-Configuration ] [ Emergency-Info ] [ V2X-Subscription-Data ]
        * [ eDRX-Cycle-Length ] [ External-Identifier ] [ Active-Time ] * [ AVP ]""",
    "APN-Configuration-Profile": """
        { Context-Identifier } [ Additional-Context-Identifier ]
        { All-APN-Configurations-Included-Indicator } 1* { APN-Configuration } * [ AVP ]""",
    "APN-Configuration": """
        { Context-Identifier } *2 [ Served-Party-IP-Address ] { PDN-Type }
        { Service-Selection } [ EPS-Subscribed-QoS-Profile ] [ VPLMN-Dynamic-Address-Allowed ]
        [ MIP6-Agent-Info ] [ Visited-Network-Identifier ] [ PDN-GW-Allocation-Type ]
        [ 3GPP-Charging-Characteristics ] [ AMBR ] * [ Specific-APN-Info ]
        [ APN-OI-Replacement ] [ SIPTO-Permission ] [ LIPA-Permission ] [ Restoration-Priority ]
        [ SIPTO-Local-Network-Permission ] [ WLAN-offloadability ]
        [ Non-IP-PDN-Type-Indicator ] [ Non-IP-Data-Delivery-Mechanism ] [ SCEF-ID ]
        [ SCEF-Realm ] [ Preferred-Data-Mode ] [ PDN-Connection-Continuity ] * [ AVP ]""",
    "AMBR": """
        { Max-Requested-Bandwidth-UL } { Max-Requested-Bandwidth-DL }
        [ Extended-Max-Requested-BW-UL ] [ Extended-Max-Requested-BW-DL ] * [ AVP ]""",
    "EPS-Subscribed-QoS-Profile": """
        { QoS-Class-Identifier } { Allocation-Retention-Priority } * [ AVP ]""",
    "Authentication-Info": """
        * [ E-UTRAN-Vector ] * [ UTRAN-Vector ] * [ GERAN-Vector ] * [ AVP ]""",
    "E-UTRAN-Vector": "[ Item-Number ] { RAND } { XRES } { AUTN } { KASME } * [ AVP ]",
    "Requested-EUTRAN-Authentication-Info": """
        [ Number-Of-Requested-Vectors ] [ Immediate-Response-Preferred ]
        [ Re-Synchronization-Info ] * [ AVP ]""",
    "Terminal-Information": "[ IMEI ] [ 3GPP2-MEID ] [ Software-Version ] * [ AVP ]",
    # ---- TS 29.212 5.3 (Gx): PCC rules ----
    "Charging-Rule-Install": """
        * [ Charging-Rule-Definition ] * [ Charging-Rule-Name ] * [ Charging-Rule-Base-Name ]
        [ Bearer-Identifier ] [ Monitoring-Flags ] [ Rule-Activation-Time ]
        [ Rule-Deactivation-Time ] [ Resource-Allocation-Notification ]
        [ Charging-Correlation-Indicator ] [ IP-CAN-Type ] * [ AVP ]""",
    "Charging-Rule-Remove": """
        * [ Charging-Rule-Name ] * [ Charging-Rule-Base-Name ] * [ Required-Access-Info ]
        [ Resource-Release-Notification ] * [ AVP ]""",
    "Charging-Rule-Definition": """
        { Charging-Rule-Name } [ Service-Identifier ] [ Rating-Group ]
        * [ Flow-Information ] [ Default-Bearer-Indication ] [ TDF-Application-Identifier ]
        [ Flow-Status ] [ QoS-Information ] [ PS-to-CS-Session-Continuity ]
        [ Reporting-Level ] [ Online ] [ Offline ] [ Max-PLR-DL ] [ Max-PLR-UL ]
        [ Metering-Method ] [ Precedence ] [ AF-Charging-Identifier ] * [ Flows ]
        [ Monitoring-Key ] [ Redirect-Information ] [ Mute-Notification ]
        [ AF-Signalling-Protocol ] [ Sponsor-Identity ]
        [ Application-Service-Provider-Identity ] * [ Required-Access-Info ]
        [ Sharing-Key-DL ] [ Sharing-Key-UL ] [ Content-Version ] * [ AVP ]""",
    "Charging-Rule-Report": """
        * [ Charging-Rule-Name ] * [ Charging-Rule-Base-Name ] [ Bearer-Identifier ]
        [ PCC-Rule-Status ] [ Rule-Failure-Code ] [ Final-Unit-Indication ]
        * [ RAN-NAS-Release-Cause ] * [ Content-Version ] * [ AVP ]""",
    "Default-EPS-Bearer-QoS": """
        [ QoS-Class-Identifier ] [ Allocation-Retention-Priority ] * [ AVP ]""",
    "Usage-Monitoring-Information": """
        [ Monitoring-Key ] 0*2 [ Granted-Service-Unit ] 0*2 [ Used-Service-Unit ]
        [ Quota-Consumption-Time ] [ Usage-Monitoring-Level ] [ Usage-Monitoring-Report ]
        [ Usage-Monitoring-Support ] * [ AVP ]""",
    "Flow-Information": """
        [ Flow-Description ] [ Packet-Filter-Identifier ] [ Packet-Filter-Usage ]
        [ ToS-Traffic-Class ] [ Security-Parameter-Index ] [ Flow-Label ] [ Flow-Direction ]
        [ Routing-Rule-Identifier ] * [ AVP ]""",
    # ---- TS 29.214 5.3 (Rx) ----
    "Media-Component-Description": """
        { Media-Component-Number } * [ Media-Sub-Component ] [ AF-Application-Identifier ]
        [ Media-Type ] [ Max-Requested-Bandwidth-UL ] [ Max-Requested-Bandwidth-DL ]
        [ Max-Supported-Bandwidth-UL ] [ Max-Supported-Bandwidth-DL ]
        [ Min-Desired-Bandwidth-UL ] [ Min-Desired-Bandwidth-DL ]
        [ Min-Requested-Bandwidth-UL ] [ Min-Requested-Bandwidth-DL ]
        [ Extended-Max-Requested-BW-UL ] [ Extended-Max-Requested-BW-DL ] [ Flow-Status ]
        [ Priority-Sharing-Indicator ] [ Pre-emption-Capability ]
        [ Pre-emption-Vulnerability ] [ Reservation-Priority ] [ RS-Bandwidth ]
        [ RR-Bandwidth ] 0*2 [ Codec-Data ] [ Sharing-Key-DL ] [ Sharing-Key-UL ]
        [ Content-Version ] [ Max-PLR-DL ] [ Max-PLR-UL ] * [ AVP ]""",
    "Media-Sub-Component": """
        { Flow-Number } 0*2 [ Flow-Description ] [ Flow-Status ] [ Flow-Usage ]
        [ Max-Requested-Bandwidth-UL ] [ Max-Requested-Bandwidth-DL ]
        [ AF-Signalling-Protocol ] [ ToS-Traffic-Class ] * [ AVP ]""",
    # ---- RFC 5777 5.1 ----
    "QoS-Capability": "1* { QoS-Profile-Template } * [ AVP ]",
    "Call-Reference-Info": "{ Call-Reference-Number } { AS-Number } * [ AVP ]",
    # ---- RFC 6733 ----
    "Vendor-Specific-Application-Id": """
        { Vendor-Id } [ Auth-Application-Id ] [ Acct-Application-Id ]""",
    "Failed-AVP": "1* { AVP }",
    "Proxy-Info": "{ Proxy-Host } { Proxy-State } * [ AVP ]",
    "Experimental-Result": "{ Vendor-Id } { Experimental-Result-Code }",
    "E2E-Sequence": "2* { AVP }",
    # ---- RFC 7683 / RFC 8583 ----
    "OC-Supported-Features": "[ OC-Feature-Vector ] * [ AVP ]",
    "OC-OLR": """
        < OC-Sequence-Number > < OC-Report-Type > [ OC-Reduction-Percentage ]
        [ OC-Validity-Duration ] [ SourceID ] * [ AVP ]""",
    "Load": "[ Load-Type ] [ Load-Value ] [ SourceID ] * [ AVP ]",
    # ---- RFC 7155 ----
    "Tunneling": """
        { Tunnel-Type } { Tunnel-Medium-Type } { Tunnel-Client-Endpoint }
        { Tunnel-Server-Endpoint } [ Tunnel-Preference ] [ Tunnel-Client-Auth-Id ]
        [ Tunnel-Server-Auth-Id ] [ Tunnel-Assignment-Id ] [ Tunnel-Password ]
        [ Tunnel-Private-Group-Id ]""",
    "CHAP-Auth": "{ CHAP-Algorithm } [ CHAP-Ident ] [ CHAP-Response ] * [ AVP ]",
    # ---- RFC 4004 ----
    "MIP-MN-AAA-Auth": """
        { MIP-MN-AAA-SPI } { MIP-Auth-Input-Data-Length } { MIP-Authenticator-Length }
        { MIP-Authenticator-Offset } * [ AVP ]""",
    "MIP-Originating-Foreign-AAA": "{ Origin-Realm } { Origin-Host } * [ AVP ]",
    "MIP-Home-Agent-Host": "{ Destination-Realm } { Destination-Host } * [ AVP ]",
    # ---- RFC 8506 / RFC 4006 ----
    "Subscription-Id": "{ Subscription-Id-Type } { Subscription-Id-Data }",
    "Subscription-Id-Extension": """
        [ Subscription-Id-E164 ] [ Subscription-Id-IMSI ] [ Subscription-Id-SIP-URI ]
        [ Subscription-Id-NAI ] [ Subscription-Id-Private ] * [ AVP ]""",
    "User-Equipment-Info": "{ User-Equipment-Info-Type } { User-Equipment-Info-Value }",
    "User-Equipment-Info-Extension": """
        [ User-Equipment-Info-IMEISV ] [ User-Equipment-Info-MAC ]
        [ User-Equipment-Info-EUI64 ] [ User-Equipment-Info-ModifiedEUI64 ]
        [ User-Equipment-Info-IMEI ] * [ AVP ]""",
    "Service-Parameter-Info": "{ Service-Parameter-Type } { Service-Parameter-Value }",
    "CC-Money": "{ Unit-Value } [ Currency-Code ]",
    "Unit-Value": "{ Value-Digits } [ Exponent ]",
    "Cost-Information": "{ Unit-Value } { Currency-Code } [ Cost-Unit ]",
    "G-S-U-Pool-Reference": "{ G-S-U-Pool-Identifier } { CC-Unit-Type } { Unit-Value }",
    "Redirect-Server": "{ Redirect-Address-Type } { Redirect-Server-Address }",
    "Redirect-Server-Extension": """
        [ Redirect-Address-IPAddress ] [ Redirect-Address-URL ] [ Redirect-Address-SIP-URI ]
        * [ AVP ]""",
    "Final-Unit-Indication": """
        { Final-Unit-Action } * [ Restriction-Filter-Rule ] * [ Filter-Id ]
        [ Redirect-Server ]""",
    "QoS-Final-Unit-Indication": """
        { Final-Unit-Action } * [ Filter-Rule ] * [ Filter-Id ] [ Redirect-Server-Extension ]
        * [ AVP ]""",
    "Requested-Service-Unit": """
        [ CC-Time ] [ CC-Money ] [ CC-Total-Octets ] [ CC-Input-Octets ] [ CC-Output-Octets ]
        [ CC-Service-Specific-Units ] * [ AVP ]""",
    "Granted-Service-Unit": """
        [ Tariff-Time-Change ] [ CC-Time ] [ CC-Money ] [ CC-Total-Octets ]
        [ CC-Input-Octets ] [ CC-Output-Octets ] [ CC-Service-Specific-Units ] * [ AVP ]""",
    # RFC 8506 + TS 32.299 (Reporting-Reason, Event-Charging-TimeStamp)
    "Used-Service-Unit": """
        [ Tariff-Change-Usage ] [ CC-Time ] [ CC-Money ] [ CC-Total-Octets ]
        [ CC-Input-Octets ] [ CC-Output-Octets ] [ CC-Service-Specific-Units ]
        [ Reporting-Reason ] * [ Event-Charging-TimeStamp ] * [ AVP ]""",
    # RFC 8506 members first, then the TS 32.299 additions
    "Multiple-Services-Credit-Control": """
        [ Granted-Service-Unit ]
        [ Requested-Service-Unit ]
        * [ Used-Service-Unit ]
        [ Tariff-Change-Usage ]
        * [ Service-Identifier ]
        [ Rating-Group ]
        * [ G-S-U-Pool-Reference ]
        [ Validity-Time ]
        [ Result-Code ]
        [ Final-Unit-Indication ]
        [ QoS-Final-Unit-Indication ]
        [ Time-Quota-Threshold ]
        [ Volume-Quota-Threshold ]
        [ Unit-Quota-Threshold ]
        [ Quota-Holding-Time ]
        [ Quota-Consumption-Time ]
        * [ Reporting-Reason ]
        [ Trigger ]
        [ PS-Furnish-Charging-Information ]
        [ Refund-Information ]
        * [ AF-Correlation-Information ]
        * [ Envelope ]
        [ Envelope-Reporting ]
        [ Time-Quota-Mechanism ]
        * [ Service-Specific-Info ]
        [ QoS-Information ]
        * [ Announcement-Information ]
        [ 3GPP-RAT-Type ]
        [ Related-Trigger ]
        * [ AVP ]""",
    # ---- TS 32.299 ----
    "Service-Information": """
        * [ Subscription-Id ]
        [ AoC-Information ]
        [ PS-Information ]
        [ WLAN-Information ]
        [ IMS-Information ]
        [ MMS-Information ]
        [ LCS-Information ]
        [ PoC-Information ]
        [ MBMS-Information ]
        [ SMS-Information ]
        [ VCS-Information ]
        [ MMTel-Information ]
        [ ProSe-Information ]
        [ Service-Generic-Information ]
        [ IM-Information ]
        [ DCD-Information ]
        [ CPDT-Information ]
        * [ AVP ]""",
    "PS-Information": """
        [ 3GPP-Charging-Id ]
        [ PDN-Connection-Charging-ID ]
        [ Node-Id ]
        [ 3GPP-PDP-Type ]
        * [ PDP-Address ]
        [ PDP-Address-Prefix-Length ]
        [ Dynamic-Address-Flag ]
        [ Dynamic-Address-Flag-Extension ]
        [ QoS-Information ]
        * [ SGSN-Address ]
        * [ GGSN-Address ]
        * [ TDF-IP-Address ]
        * [ SGW-Address ]
        * [ ePDG-Address ]
        * [ TWAG-Address ]
        [ CG-Address ]
        [ Serving-Node-Type ]
        [ SGW-Change ]
        [ 3GPP-IMSI-MCC-MNC ]
        [ IMSI-Unauthenticated-Flag ]
        [ 3GPP-GGSN-MCC-MNC ]
        [ 3GPP-NSAPI ]
        [ Called-Station-Id ]
        [ 3GPP-Session-Stop-Indicator ]
        [ 3GPP-Selection-Mode ]
        [ 3GPP-Charging-Characteristics ]
        [ Charging-Characteristics-Selection-Mode ]
        [ 3GPP-SGSN-MCC-MNC ]
        [ 3GPP-MS-TimeZone ]
        [ Charging-Rule-Base-Name ]
        [ ADC-Rule-Base-Name ]
        [ 3GPP-User-Location-Info ]
        [ User-Location-Info-Time ]
        [ User-CSG-Information ]
        * [ Presence-Reporting-Area-Information ]
        [ 3GPP2-BSID ]
        [ TWAN-User-Location-Info ]
        [ UWAN-User-Location-Info ]
        [ 3GPP-RAT-Type ]
        [ PS-Furnish-Charging-Information ]
        [ PDP-Context-Type ]
        [ Offline-Charging ]
        * [ Traffic-Data-Volumes ]
        * [ Service-Data-Container ]
        [ User-Equipment-Info ]
        [ Terminal-Information ]
        [ Start-Time ]
        [ Stop-Time ]
        [ Change-Condition ]
        [ Diagnostics ]
        [ Low-Priority-Indicator ]
        [ NBIFOM-Mode ]
        [ NBIFOM-Support ]
        [ MME-Number-for-MT-SMS ]
        [ MME-Name ]
        [ MME-Realm ]
        [ Logical-Access-ID ]
        [ Physical-Access-ID ]
        [ Fixed-User-Location-Info ]
        [ CN-Operator-Selection-Entity ]
        [ Enhanced-Diagnostics ]
        [ SGi-PtP-Tunnelling-Method ]
        [ CP-CIoT-EPS-Optimisation-Indicator ]
        [ UNI-PDU-CP-Only-Flag ]
        [ Serving-PLMN-Rate-Control ]
        [ APN-Rate-Control ]
        [ Charging-Per-IP-CAN-Session-Indicator ]
        [ RRC-Cause-Counter ]
        [ 3GPP-PS-Data-Off-Status ]
        [ SCS-AS-Address ]
        [ Unused-Quota-Timer ]
        * [ RAN-Secondary-RAT-Usage-Report ]
        * [ AVP ]""",
    "IMS-Information": """
        [ Event-Type ]
        [ Role-Of-Node ]
        { Node-Functionality }
        [ User-Session-Id ]
        [ Outgoing-Session-Id ]
        [ Session-Priority ]
        * [ Calling-Party-Address ]
        [ Called-Party-Address ]
        * [ Called-Asserted-Identity ]
        [ Called-Identity-Change ]
        [ Number-Portability-Routing-Information ]
        [ Carrier-Select-Routing-Information ]
        [ Alternate-Charged-Party-Address ]
        * [ Requested-Party-Address ]
        * [ Associated-URI ]
        [ Time-Stamps ]
        * [ Application-Server-Information ]
        * [ Inter-Operator-Identifier ]
        * [ Transit-IOI-List ]
        [ IMS-Charging-Identifier ]
        * [ SDP-Session-Description ]
        * [ SDP-Media-Component ]
        [ Served-Party-IP-Address ]
        [ Server-Capabilities ]
        [ Trunk-Group-Id ]
        [ Bearer-Service ]
        [ Service-Id ]
        * [ Service-Specific-Info ]
        * [ Message-Body ]
        [ Cause-Code ]
        * [ Reason-Header ]
        * [ Access-Network-Information ]
        [ Cellular-Network-Information ]
        * [ Early-Media-Description ]
        [ IMS-Communication-Service-Identifier ]
        [ IMS-Application-Reference-Identifier ]
        [ Online-Charging-Flag ]
        [ Real-Time-Tariff-Information ]
        [ Account-Expiration ]
        [ Initial-IMS-Charging-Identifier ]
        * [ NNI-Information ]
        [ From-Address ]
        [ IMS-Emergency-Indicator ]
        [ IMS-Visited-Network-Identifier ]
        * [ Access-Network-Info-Change ]
        * [ Access-Transfer-Information ]
        [ Related-IMS-Charging-Identifier ]
        [ Related-IMS-Charging-Identifier-Node ]
        [ Route-Header-Received ]
        [ Route-Header-Transmitted ]
        [ Instance-Id ]
        [ TAD-Identifier ]
        [ FE-Identifier-List ]
        * [ AVP ]""",
    "SMS-Information": """
        [ SMS-Node ]
        [ Client-Address ]
        [ Originator-SCCP-Address ]
        [ SMSC-Address ]
        [ Data-Coding-Scheme ]
        [ SM-Discharge-Time ]
        [ SM-Message-Type ]
        [ Originator-Interface ]
        [ SM-Protocol-ID ]
        [ Reply-Path-Requested ]
        [ SM-Status ]
        [ SM-User-Data-Header ]
        [ Number-of-Messages-Sent ]
        [ SM-Sequence-Number ]
        * [ Recipient-Info ]
        [ Originator-Received-Address ]
        [ SM-Service-Type ]
        [ SMS-Result ]
        [ SM-Device-Trigger-Indicator ]
        [ SM-Device-Trigger-Information ]
        [ MTC-IWF-Address ]
        [ Application-Port-Identifier ]
        [ External-Identifier ]
        * [ AVP ]""",
    "MBMS-Information": """
        [ TMGI ] [ MBMS-Service-Type ] [ MBMS-User-Service-Type ] [ File-Repair-Supported ]
        [ Required-MBMS-Bearer-Capabilities ] [ MBMS-2G-3G-Indicator ] [ RAI ]
        * [ MBMS-Service-Area ] [ MBMS-Session-Identity ] [ CN-IP-Multicast-Distribution ]
        [ MBMS-GW-Address ] [ MBMS-Charged-Party ] * [ MSISDN ] * [ AVP ]""",
    "MMTel-Information": "* [ Supplementary-Service ] * [ AVP ]",
    "Supplementary-Service": """
        [ MMTel-Service-Type ] [ Service-Mode ] [ Number-Of-Diversions ]
        [ Associated-Party-Address ] [ Service-Id ] [ Change-Time ] [ Number-Of-Participants ]
        [ Participant-Action-Type ] [ CUG-Information ] [ AoC-Information ] * [ AVP ]""",
    "ProSe-Information": """
        [ Announcing-UE-HPLMN-Identifier ]
        [ Announcing-UE-VPLMN-Identifier ]
        [ Monitoring-UE-HPLMN-Identifier ]
        [ Monitoring-UE-VPLMN-Identifier ]
        [ Monitored-PLMN-Identifier ]
        [ Role-Of-ProSe-Function ]
        [ ProSe-3rd-Party-Application-ID ]
        [ Application-Specific-Data ]
        [ ProSe-Event-Type ]
        [ ProSe-Direct-Discovery-Model ]
        [ ProSe-Function-IP-Address ]
        [ ProSe-Role-Of-UE ]
        [ ProSe-Request-Timestamp ]
        [ PC3-Control-Protocol-Cause ]
        [ Monitoring-UE-Identifier ]
        [ ProSe-Function-PLMN-Identifier ]
        [ Requestor-PLMN-Identifier ]
        [ Requested-PLMN-Identifier ]
        [ ProSe-Range-Class ]
        [ Proximity-Alert-Indication ]
        [ Proximity-Alert-Timestamp ]
        [ Proximity-Cancellation-Timestamp ]
        [ ProSe-Reason-For-Cancellation ]
        [ PC3-EPC-Control-Protocol-Cause ]
        [ ProSe-UE-ID ]
        [ ProSe-Source-IP-Address ]
        [ Layer-2-Group-ID ]
        [ ProSe-Group-IP-Multicast-Address ]
        * [ Coverage-Info ]
        * [ Radio-Parameter-Set-Info ]
        * [ Transmitter-Info ]
        [ Time-First-Transmission ]
        [ Time-First-Reception ]
        * [ ProSe-Direct-Communication-Transmission-Data-Container ]
        * [ ProSe-Direct-Communication-Reception-Data-Container ]
        [ Announcing-PLMN-ID ]
        [ ProSe-Target-Layer-2-ID ]
        [ Relay-IP-address ]
        [ ProSe-UE-to-Network-Relay-UE-ID ]
        [ Target-IP-Address ]
        [ PC5-Radio-Technology ]
        * [ AVP ]""",
    "ProSe-Direct-Communication-Transmission-Data-Container": """
        [ Local-Sequence-Number ] [ Coverage-Status ] [ 3GPP-User-Location-Info ]
        [ Accounting-Output-Octets ] [ Change-Time ] [ Change-Condition ] [ Visited-PLMN-Id ]
        [ Usage-Information-Report-Sequence-Number ] [ Radio-Resources-Indicator ]
        [ Radio-Frequency ] * [ AVP ]""",
    "ProSe-Direct-Communication-Reception-Data-Container": """
        [ Local-Sequence-Number ] [ Coverage-Status ] [ 3GPP-User-Location-Info ]
        [ Accounting-Input-Octets ] [ Change-Time ] [ Change-Condition ] [ Visited-PLMN-Id ]
        [ Usage-Information-Report-Sequence-Number ] [ Radio-Resources-Indicator ]
        [ Radio-Frequency ] * [ AVP ]""",
    "Coverage-Info": "[ Coverage-Status ] [ Change-Time ] * [ Location-Info ] * [ AVP ]",
    "Location-Info": "[ 3GPP-User-Location-Info ] [ Change-Time ] * [ AVP ]",
    "Radio-Parameter-Set-Info": "[ Radio-Parameter-Set-Values ] [ Change-Time ] * [ AVP ]",
    "Transmitter-Info": "[ ProSe-Source-IP-Address ] [ ProSe-UE-ID ] * [ AVP ]",
    "CPDT-Information": """
        [ External-Identifier ] [ SCEF-ID ] [ Serving-Node-Identity ] [ SGW-Change ]
        [ NIDD-Submission ] * [ AVP ]""",
    "NIDD-Submission": """
        [ Submission-Time ] [ Event-Timestamp ] [ Accounting-Input-Octets ]
        [ Accounting-Output-Octets ] [ Change-Condition ] * [ AVP ]""",
    "Trigger": "* [ Trigger-Type ] * [ AVP ]",
    "Related-Trigger": "* [ Trigger-Type ] * [ AVP ]",
    "Envelope": """
        { Envelope-Start-Time } [ Envelope-End-Time ] [ CC-Total-Octets ] [ CC-Input-Octets ]
        [ CC-Output-Octets ] [ CC-Service-Specific-Units ] * [ AVP ]""",
    "Offline-Charging": """
        [ Quota-Consumption-Time ] [ Time-Quota-Mechanism ] [ Envelope-Reporting ]
        * [ Multiple-Services-Credit-Control ] * [ AVP ]""",
    "Time-Quota-Mechanism": "{ Time-Quota-Type } { Base-Time-Interval }",
    "Remaining-Balance": "{ Unit-Value } { Currency-Code }",
    "Service-Specific-Info": "[ Service-Specific-Data ] [ Service-Specific-Type ]",
    "PS-Furnish-Charging-Information": """
        { 3GPP-Charging-Id } { PS-Free-Format-Data } [ PS-Append-Free-Format-Data ]""",
    "Event-Type": "[ SIP-Method ] [ Event ] [ Expires ]",
    "Time-Stamps": """
        [ SIP-Request-Timestamp ] [ SIP-Response-Timestamp ]
        [ SIP-Request-Timestamp-Fraction ] [ SIP-Response-Timestamp-Fraction ]""",
    "Inter-Operator-Identifier": "[ Originating-IOI ] [ Terminating-IOI ]",
    "Application-Server-Information": """
        [ Application-Server ] * [ Application-Provided-Called-Party-Address ]
        [ Status-AS-Code ]""",
    "Trunk-Group-Id": "[ Incoming-Trunk-Group-Id ] [ Outgoing-Trunk-Group-Id ]",
    "SDP-Media-Component": """
        [ SDP-Media-Name ] * [ SDP-Media-Description ] [ Local-GW-Inserted-Indication ]
        [ IP-Realm-Default-Indication ] [ Transcoder-Inserted-Indication ]
        [ Media-Initiator-Flag ] [ Media-Initiator-Party ] [ 3GPP-Charging-Id ]
        [ Access-Network-Charging-Identifier-Value ] [ SDP-Type ]""",
    "User-CSG-Information": "{ CSG-Id } { CSG-Access-Mode } [ CSG-Membership-Indication ]",
    "AoC-Information": """
        [ AoC-Cost-Information ] [ Tariff-Information ] [ AoC-Subscription-Information ]""",
    "Rate-Element": """
        { CC-Unit-Type } [ Charge-Reason-Code ] [ Unit-Value ] [ Unit-Cost ]
        [ Unit-Quota-Threshold ]""",
    "VCS-Information": """
        [ Bearer-Capability ] [ Network-Call-Reference-Number ] [ MSC-Address ]
        [ Basic-Service-Code ] [ ISUP-Location-Number ] [ VLR-Number ] [ Forwarding-Pending ]
        [ ISUP-Cause ] [ Start-Time ] [ Start-of-Charging ] [ Stop-Time ]
        [ PS-Free-Format-Data ] * [ AVP ]""",
    # ---- TS 29.212 ----
    "QoS-Information": """
        [ QoS-Class-Identifier ]
        [ Max-Requested-Bandwidth-UL ]
        [ Max-Requested-Bandwidth-DL ]
        [ Extended-Max-Requested-BW-UL ]
        [ Extended-Max-Requested-BW-DL ]
        [ Guaranteed-Bitrate-UL ]
        [ Guaranteed-Bitrate-DL ]
        [ Extended-GBR-UL ]
        [ Extended-GBR-DL ]
        [ Bearer-Identifier ]
        [ Allocation-Retention-Priority ]
        [ APN-Aggregate-Max-Bitrate-UL ]
        [ APN-Aggregate-Max-Bitrate-DL ]
        [ Extended-APN-AMBR-UL ]
        [ Extended-APN-AMBR-DL ]
        * [ Conditional-APN-Aggregate-Max-Bitrate ]
        * [ AVP ]""",
    # ---- TS 29.219 (Sy) ----
    "Policy-Counter-Status-Report": """
        { Policy-Counter-Identifier } { Policy-Counter-Status }
        * [ Pending-Policy-Counter-Information ] * [ AVP ]""",
    "Pending-Policy-Counter-Information": """
        { Policy-Counter-Status } { Pending-Policy-Counter-Change-Time } * [ AVP ]""",
    # ---- TS 29.229 (Cx/Dx) ----
    "Supported-Features": "{ Vendor-Id } { Feature-List-ID } { Feature-List } * [ AVP ]",
    "Server-Capabilities": """
        * [ Mandatory-Capability ] * [ Optional-Capability ] * [ Server-Name ] * [ AVP ]""",
    "Deregistration-Reason": "{ Reason-Code } [ Reason-Info ] * [ AVP ]",
    "SIP-Auth-Data-Item": """
        [ SIP-Item-Number ]
        [ SIP-Authentication-Scheme ]
        [ SIP-Authenticate ]
        [ SIP-Authorization ]
        [ SIP-Authentication-Context ]
        [ Confidentiality-Key ]
        [ Integrity-Key ]
        [ SIP-Digest-Authenticate ]
        [ Framed-IP-Address ]
        [ Framed-IPv6-Prefix ]
        [ Framed-Interface-Id ]
        * [ Line-Identifier ]
        * [ AVP ]""",
    "SIP-Digest-Authenticate": """
        { Digest-Realm } [ Digest-Algorithm ] { Digest-Qop } { Digest-HA1 } * [ AVP ]""",
    "Charging-Information": """
        [ Primary-Event-Charging-Function-Name ] [ Secondary-Event-Charging-Function-Name ]
        [ Primary-Charging-Collection-Function-Name ]
        [ Secondary-Charging-Collection-Function-Name ] * [ AVP ]""",
    "Associated-Identities": "* [ User-Name ] * [ AVP ]",
    "Associated-Registered-Identities": "* [ User-Name ] * [ AVP ]",
    "Supported-Applications": """
        * [ Auth-Application-Id ] * [ Acct-Application-Id ]
        * [ Vendor-Specific-Application-Id ] * [ AVP ]""",
    "SCSCF-Restoration-Info": """
        { User-Name } 1* { Restoration-Info } [ SIP-Authentication-Scheme ] * [ AVP ]""",
    "Restoration-Info": """
        { Path } { Contact } [ Initial-CSeq-Sequence-Number ] [ Call-ID-SIP-Header ]
        [ Subscription-Info ] * [ AVP ]""",
    "Subscription-Info": """
        { Call-ID-SIP-Header } { From-SIP-Header } { To-SIP-Header } { Record-Route }
        { Contact } * [ AVP ]""",
    "Identity-with-Emergency-Registration": "{ User-Name } { Public-Identity } * [ AVP ]",
    "Allowed-WAF-WWSF-Identities": """
        * [ WebRTC-Authentication-Function-Name ] * [ WebRTC-Web-Server-Function-Name ]
        * [ AVP ]""",
}

# --------------------------------------------------------------------------------------
# Command grammars (CCF). "application": None = usable under any application.
# --------------------------------------------------------------------------------------

# Shared tails
_ANSWER_REDIRECT = "* [ Redirect-Host ] [ Redirect-Host-Usage ] [ Redirect-Max-Cache-Time ]"

COMMANDS: dict[str, list[dict]] = {
    "base": [
        {
            "name": "Capabilities-Exchange",
            "code": 257,
            "application": 0,
            "proxiable": False,
            "request": """
                { Origin-Host } { Origin-Realm } 1* { Host-IP-Address } { Vendor-Id }
                { Product-Name } [ Origin-State-Id ] * [ Supported-Vendor-Id ]
                * [ Auth-Application-Id ] * [ Inband-Security-Id ] * [ Acct-Application-Id ]
                * [ Vendor-Specific-Application-Id ] [ Firmware-Revision ] * [ AVP ]""",
            "answer": """
                { Result-Code } { Origin-Host } { Origin-Realm } 1* { Host-IP-Address }
                { Vendor-Id } { Product-Name } [ Origin-State-Id ] [ Error-Message ]
                [ Failed-AVP ] * [ Supported-Vendor-Id ] * [ Auth-Application-Id ]
                * [ Inband-Security-Id ] * [ Acct-Application-Id ]
                * [ Vendor-Specific-Application-Id ] [ Firmware-Revision ] * [ AVP ]""",
        },
        {
            "name": "Re-Auth",
            "code": 258,
            "application": None,
            "proxiable": True,
            # RFC 6733 8.3.1, plus the optional RFC 8506 5.5 scoping AVPs so that one
            # definition serves the credit-control application too.
            "request": """
                < Session-Id > [ DRMP ] { Origin-Host } { Origin-Realm } { Destination-Realm }
                { Destination-Host } { Auth-Application-Id } { Re-Auth-Request-Type }
                [ User-Name ] [ Origin-State-Id ] * [ Proxy-Info ] * [ Route-Record ]
                [ CC-Sub-Session-Id ] [ G-S-U-Pool-Identifier ] [ Service-Identifier ]
                [ Rating-Group ] * [ AVP ]""",
            "answer": f"""
                < Session-Id > [ DRMP ] {{ Result-Code }} {{ Origin-Host }} {{ Origin-Realm }}
                [ User-Name ] [ Origin-State-Id ] [ Error-Message ] [ Error-Reporting-Host ]
                [ Failed-AVP ] {_ANSWER_REDIRECT} * [ Proxy-Info ] * [ AVP ]""",
        },
        {
            "name": "Accounting",
            "code": 271,
            "application": 3,
            "proxiable": True,
            # RFC 6733 9.7.1/9.7.2 merged with the TS 32.299 Rf profile (6.2.2/6.2.3)
            "request": """
                < Session-Id > [ DRMP ] { Origin-Host } { Origin-Realm } { Destination-Realm }
                { Accounting-Record-Type } { Accounting-Record-Number } [ Acct-Application-Id ]
                [ Vendor-Specific-Application-Id ] [ User-Name ] [ Destination-Host ]
                [ Accounting-Sub-Session-Id ] [ Acct-Session-Id ] [ Acct-Multi-Session-Id ]
                [ Acct-Interim-Interval ] [ Accounting-Realtime-Required ] [ Origin-State-Id ]
                [ Event-Timestamp ] [ OC-Supported-Features ] * [ Proxy-Info ]
                * [ Route-Record ] [ Service-Context-Id ] [ Service-Information ] * [ AVP ]""",
            "answer": """
                < Session-Id > [ DRMP ] { Result-Code } [ Experimental-Result ] { Origin-Host }
                { Origin-Realm } { Accounting-Record-Type } { Accounting-Record-Number }
                [ Acct-Application-Id ] [ Vendor-Specific-Application-Id ] [ User-Name ]
                [ Accounting-Sub-Session-Id ] [ Acct-Session-Id ] [ Acct-Multi-Session-Id ]
                [ Error-Message ] [ Error-Reporting-Host ] [ Failed-AVP ]
                [ Acct-Interim-Interval ] [ Accounting-Realtime-Required ] [ Origin-State-Id ]
                [ Event-Timestamp ] [ OC-Supported-Features ] [ OC-OLR ] * [ Proxy-Info ]
                * [ AVP ]""",
        },
        {
            "name": "Abort-Session",
            "code": 274,
            "application": None,
            "proxiable": True,
            "request": """
                < Session-Id > [ DRMP ] { Origin-Host } { Origin-Realm } { Destination-Realm }
                { Destination-Host } { Auth-Application-Id } [ User-Name ] [ Origin-State-Id ]
                * [ Proxy-Info ] * [ Route-Record ] * [ AVP ]""",
            "answer": f"""
                < Session-Id > [ DRMP ] {{ Result-Code }} {{ Origin-Host }} {{ Origin-Realm }}
                [ User-Name ] [ Origin-State-Id ] [ Error-Message ] [ Error-Reporting-Host ]
                [ Failed-AVP ] {_ANSWER_REDIRECT} * [ Proxy-Info ] * [ AVP ]""",
        },
        {
            "name": "Session-Termination",
            "code": 275,
            "application": None,
            "proxiable": True,
            "request": """
                < Session-Id > [ DRMP ] { Origin-Host } { Origin-Realm } { Destination-Realm }
                { Auth-Application-Id } { Termination-Cause } [ User-Name ]
                [ Destination-Host ] * [ Class ] [ Origin-State-Id ] * [ Proxy-Info ]
                * [ Route-Record ] * [ AVP ]""",
            "answer": f"""
                < Session-Id > [ DRMP ] {{ Result-Code }} {{ Origin-Host }} {{ Origin-Realm }}
                [ User-Name ] * [ Class ] [ Error-Message ] [ Error-Reporting-Host ]
                [ Failed-AVP ] [ Origin-State-Id ] {_ANSWER_REDIRECT} * [ Proxy-Info ]
                * [ AVP ]""",
        },
        {
            "name": "Device-Watchdog",
            "code": 280,
            "application": 0,
            "proxiable": False,
            "request": "{ Origin-Host } { Origin-Realm } [ Origin-State-Id ] * [ AVP ]",
            "answer": """
                { Result-Code } { Origin-Host } { Origin-Realm } [ Error-Message ]
                [ Failed-AVP ] [ Origin-State-Id ] * [ AVP ]""",
        },
        {
            "name": "Disconnect-Peer",
            "code": 282,
            "application": 0,
            "proxiable": False,
            "request": "{ Origin-Host } { Origin-Realm } { Disconnect-Cause } * [ AVP ]",
            "answer": """
                { Result-Code } { Origin-Host } { Origin-Realm } [ Error-Message ]
                [ Failed-AVP ] * [ AVP ]""",
        },
    ],
    "nasreq": [
        {
            "name": "AA",
            "code": 265,
            "application": 1,
            "proxiable": True,
            "request": """
                < Session-Id > { Auth-Application-Id } { Origin-Host } { Origin-Realm }
                { Destination-Realm } { Auth-Request-Type } [ Destination-Host ]
                [ NAS-Identifier ] [ NAS-IP-Address ] [ NAS-IPv6-Address ] [ NAS-Port ]
                [ NAS-Port-Id ] [ NAS-Port-Type ] [ Origin-AAA-Protocol ] [ Origin-State-Id ]
                [ Port-Limit ] [ User-Name ] [ User-Password ] [ Service-Type ] [ State ]
                [ Authorization-Lifetime ] [ Auth-Grace-Period ] [ Auth-Session-State ]
                [ Callback-Number ] [ Called-Station-Id ] [ Calling-Station-Id ]
                [ Originating-Line-Info ] [ Connect-Info ] [ CHAP-Auth ] [ CHAP-Challenge ]
                * [ Framed-Compression ] [ Framed-Interface-Id ] [ Framed-IP-Address ]
                * [ Framed-IPv6-Prefix ] [ Framed-IP-Netmask ] [ Framed-MTU ]
                [ Framed-Protocol ] [ ARAP-Password ] [ ARAP-Security ]
                * [ ARAP-Security-Data ] * [ Login-IP-Host ] * [ Login-IPv6-Host ]
                [ Login-LAT-Group ] [ Login-LAT-Node ] [ Login-LAT-Port ] [ Login-LAT-Service ]
                * [ Tunneling ] * [ Proxy-Info ] * [ Route-Record ] * [ AVP ]""",
            "answer": f"""
                < Session-Id > {{ Auth-Application-Id }} {{ Auth-Request-Type }} {{ Result-Code }}
                {{ Origin-Host }} {{ Origin-Realm }} [ User-Name ] [ Service-Type ] * [ Class ]
                * [ Configuration-Token ] [ Acct-Interim-Interval ] [ Error-Message ]
                [ Error-Reporting-Host ] * [ Failed-AVP ] [ Idle-Timeout ]
                [ Authorization-Lifetime ] [ Auth-Grace-Period ] [ Auth-Session-State ]
                [ Re-Auth-Request-Type ] [ Multi-Round-Time-Out ] [ Session-Timeout ] [ State ]
                * [ Reply-Message ] [ Origin-AAA-Protocol ] [ Origin-State-Id ] * [ Filter-Id ]
                [ Password-Retry ] [ Port-Limit ] [ Prompt ] [ ARAP-Challenge-Response ]
                [ ARAP-Features ] [ ARAP-Security ] * [ ARAP-Security-Data ]
                [ ARAP-Zone-Access ] [ Callback-Id ] [ Callback-Number ]
                [ Framed-Appletalk-Link ] * [ Framed-Appletalk-Network ]
                [ Framed-Appletalk-Zone ] * [ Framed-Compression ] [ Framed-Interface-Id ]
                [ Framed-IP-Address ] * [ Framed-IPv6-Prefix ] [ Framed-IPv6-Pool ]
                * [ Framed-IPv6-Route ] [ Framed-IP-Netmask ] * [ Framed-Route ] [ Framed-Pool ]
                [ Framed-IPX-Network ] [ Framed-MTU ] [ Framed-Protocol ] [ Framed-Routing ]
                * [ Login-IP-Host ] * [ Login-IPv6-Host ] [ Login-LAT-Group ] [ Login-LAT-Node ]
                [ Login-LAT-Port ] [ Login-LAT-Service ] [ Login-Service ] [ Login-TCP-Port ]
                * [ NAS-Filter-Rule ] * [ QoS-Filter-Rule ] * [ Tunneling ] {_ANSWER_REDIRECT}
                * [ Proxy-Info ] * [ AVP ]""",
        },
        {
            "name": "Re-Auth",
            "code": 258,
            "application": 1,
            "proxiable": True,
            "class_name": "NasreqReAuth",
            "request": """
                < Session-Id > { Origin-Host } { Origin-Realm } { Destination-Realm }
                { Destination-Host } { Auth-Application-Id } { Re-Auth-Request-Type }
                [ User-Name ] [ Origin-AAA-Protocol ] [ Origin-State-Id ] [ NAS-Identifier ]
                [ NAS-IP-Address ] [ NAS-IPv6-Address ] [ NAS-Port ] [ NAS-Port-Id ]
                [ NAS-Port-Type ] [ Service-Type ] [ Framed-IP-Address ]
                [ Framed-IPv6-Prefix ] [ Framed-Interface-Id ] [ Called-Station-Id ]
                [ Calling-Station-Id ] [ Originating-Line-Info ] [ Acct-Session-Id ]
                [ Acct-Multi-Session-Id ] [ State ] * [ Class ] [ Reply-Message ]
                * [ Proxy-Info ] * [ Route-Record ] * [ AVP ]""",
            "answer": f"""
                < Session-Id > {{ Result-Code }} {{ Origin-Host }} {{ Origin-Realm }} [ User-Name ]
                [ Origin-AAA-Protocol ] [ Origin-State-Id ] [ Error-Message ]
                [ Error-Reporting-Host ] * [ Failed-AVP ] {_ANSWER_REDIRECT} [ Service-Type ]
                * [ Configuration-Token ] [ Idle-Timeout ] [ Authorization-Lifetime ]
                [ Auth-Grace-Period ] [ Re-Auth-Request-Type ] [ State ] * [ Class ]
                * [ Reply-Message ] [ Prompt ] * [ Proxy-Info ] * [ AVP ]""",
        },
        {
            "name": "Accounting",
            "code": 271,
            "application": 1,
            "proxiable": True,
            "class_name": "NasreqAccounting",
            "request": """
                < Session-Id > { Origin-Host } { Origin-Realm } { Destination-Realm }
                { Accounting-Record-Type } { Accounting-Record-Number } [ Acct-Application-Id ]
                [ Vendor-Specific-Application-Id ] [ User-Name ] [ Accounting-Sub-Session-Id ]
                [ Acct-Session-Id ] [ Acct-Multi-Session-Id ] [ Origin-AAA-Protocol ]
                [ Origin-State-Id ] [ Destination-Host ] [ Event-Timestamp ]
                [ Acct-Delay-Time ] [ NAS-Identifier ] [ NAS-IP-Address ] [ NAS-IPv6-Address ]
                [ NAS-Port ] [ NAS-Port-Id ] [ NAS-Port-Type ] * [ Class ] [ Service-Type ]
                [ Termination-Cause ] [ Accounting-Input-Octets ] [ Accounting-Input-Packets ]
                [ Accounting-Output-Octets ] [ Accounting-Output-Packets ] [ Acct-Authentic ]
                [ Accounting-Auth-Method ] [ Acct-Link-Count ] [ Acct-Session-Time ]
                [ Acct-Tunnel-Connection ] [ Acct-Tunnel-Packets-Lost ] [ Callback-Id ]
                [ Callback-Number ] [ Called-Station-Id ] [ Calling-Station-Id ]
                * [ Connect-Info ] [ Originating-Line-Info ] [ Authorization-Lifetime ]
                [ Session-Timeout ] [ Idle-Timeout ] [ Port-Limit ]
                [ Accounting-Realtime-Required ] [ Acct-Interim-Interval ] * [ Filter-Id ]
                * [ NAS-Filter-Rule ] * [ QoS-Filter-Rule ] [ Framed-Appletalk-Link ]
                [ Framed-Appletalk-Network ] [ Framed-Appletalk-Zone ] [ Framed-Compression ]
                [ Framed-Interface-Id ] [ Framed-IP-Address ] [ Framed-IP-Netmask ]
                * [ Framed-IPv6-Prefix ] [ Framed-IPv6-Pool ] * [ Framed-IPv6-Route ]
                [ Framed-IPX-Network ] [ Framed-MTU ] [ Framed-Pool ] [ Framed-Protocol ]
                * [ Framed-Route ] [ Framed-Routing ] * [ Login-IP-Host ] * [ Login-IPv6-Host ]
                [ Login-LAT-Group ] [ Login-LAT-Node ] [ Login-LAT-Port ] [ Login-LAT-Service ]
                [ Login-Service ] [ Login-TCP-Port ] * [ Tunneling ] * [ Proxy-Info ]
                * [ Route-Record ] * [ AVP ]""",
            "answer": """
                < Session-Id > { Result-Code } { Origin-Host } { Origin-Realm }
                { Accounting-Record-Type } { Accounting-Record-Number } [ Acct-Application-Id ]
                [ Vendor-Specific-Application-Id ] [ User-Name ] [ Accounting-Sub-Session-Id ]
                [ Acct-Session-Id ] [ Acct-Multi-Session-Id ] [ Event-Timestamp ]
                [ Error-Message ] [ Error-Reporting-Host ] * [ Failed-AVP ]
                [ Origin-AAA-Protocol ] [ Origin-State-Id ] [ NAS-Identifier ]
                [ NAS-IP-Address ] [ NAS-IPv6-Address ] [ NAS-Port ] [ NAS-Port-Id ]
                [ NAS-Port-Type ] [ Service-Type ] [ Termination-Cause ]
                [ Accounting-Realtime-Required ] [ Acct-Interim-Interval ] * [ Class ]
                * [ Proxy-Info ] * [ AVP ]""",
        },
        {
            "name": "Abort-Session",
            "code": 274,
            "application": 1,
            "proxiable": True,
            "class_name": "NasreqAbortSession",
            "request": """
                < Session-Id > { Origin-Host } { Origin-Realm } { Destination-Realm }
                { Destination-Host } { Auth-Application-Id } [ User-Name ]
                [ Origin-AAA-Protocol ] [ Origin-State-Id ] [ NAS-Identifier ]
                [ NAS-IP-Address ] [ NAS-IPv6-Address ] [ NAS-Port ] [ NAS-Port-Id ]
                [ NAS-Port-Type ] [ Service-Type ] [ Framed-IP-Address ]
                [ Framed-IPv6-Prefix ] [ Framed-Interface-Id ] [ Called-Station-Id ]
                [ Calling-Station-Id ] [ Originating-Line-Info ] [ Acct-Session-Id ]
                [ Acct-Multi-Session-Id ] [ State ] * [ Class ] * [ Reply-Message ]
                * [ Proxy-Info ] * [ Route-Record ] * [ AVP ]""",
            "answer": f"""
                < Session-Id > {{ Result-Code }} {{ Origin-Host }} {{ Origin-Realm }} [ User-Name ]
                [ Origin-AAA-Protocol ] [ Origin-State-Id ] [ State ] [ Error-Message ]
                [ Error-Reporting-Host ] * [ Failed-AVP ] {_ANSWER_REDIRECT} * [ Proxy-Info ]
                * [ AVP ]""",
        },
        {
            "name": "Session-Termination",
            "code": 275,
            "application": 1,
            "proxiable": True,
            "class_name": "NasreqSessionTermination",
            "request": """
                < Session-Id > { Origin-Host } { Origin-Realm } { Destination-Realm }
                { Auth-Application-Id } { Termination-Cause } [ User-Name ]
                [ Destination-Host ] * [ Class ] [ Origin-AAA-Protocol ] [ Origin-State-Id ]
                * [ Proxy-Info ] * [ Route-Record ] * [ AVP ]""",
            "answer": f"""
                < Session-Id > {{ Result-Code }} {{ Origin-Host }} {{ Origin-Realm }} [ User-Name ]
                * [ Class ] [ Error-Message ] [ Error-Reporting-Host ] * [ Failed-AVP ]
                [ Origin-AAA-Protocol ] [ Origin-State-Id ] {_ANSWER_REDIRECT} * [ Proxy-Info ]
                * [ AVP ]""",
        },
    ],
    "mip4": [
        {
            "name": "AA-Mobile-Node",
            "code": 260,
            "application": 2,
            "proxiable": True,
            "request": """
                < Session-Id > { Auth-Application-Id } { User-Name } { Destination-Realm }
                { Origin-Host } { Origin-Realm } { MIP-Reg-Request } { MIP-MN-AAA-Auth }
                [ Acct-Multi-Session-Id ] [ Destination-Host ] [ Origin-State-Id ]
                [ MIP-Mobile-Node-Address ] [ MIP-Home-Agent-Address ] [ MIP-Feature-Vector ]
                [ MIP-Originating-Foreign-AAA ] [ Authorization-Lifetime ]
                [ Auth-Session-State ] [ MIP-FA-Challenge ] [ MIP-Candidate-Home-Agent-Host ]
                [ MIP-Home-Agent-Host ] [ MIP-HA-to-FA-SPI ] * [ Proxy-Info ]
                * [ Route-Record ] * [ AVP ]""",
            "answer": """
                < Session-Id > { Auth-Application-Id } { Result-Code } { Origin-Host }
                { Origin-Realm } [ Acct-Multi-Session-Id ] [ User-Name ]
                [ Authorization-Lifetime ] [ Auth-Session-State ] [ Error-Message ]
                [ Error-Reporting-Host ] [ Re-Auth-Request-Type ] [ MIP-Feature-Vector ]
                [ MIP-Reg-Reply ] [ MIP-MN-to-FA-MSA ] [ MIP-MN-to-HA-MSA ]
                [ MIP-FA-to-MN-MSA ] [ MIP-FA-to-HA-MSA ] [ MIP-HA-to-MN-MSA ]
                [ MIP-MSA-Lifetime ] [ MIP-Home-Agent-Address ] [ MIP-Mobile-Node-Address ]
                * [ MIP-Filter-Rule ] [ Origin-State-Id ] * [ Proxy-Info ] * [ AVP ]""",
        },
        {
            "name": "Home-Agent-MIP",
            "code": 262,
            "application": 2,
            "proxiable": True,
            "request": """
                < Session-Id > { Auth-Application-Id } { Authorization-Lifetime }
                { Auth-Session-State } { MIP-Reg-Request } { Origin-Host } { Origin-Realm }
                { User-Name } { Destination-Realm } { MIP-Feature-Vector } [ Destination-Host ]
                [ MIP-MN-to-HA-MSA ] [ MIP-MN-to-FA-MSA ] [ MIP-HA-to-MN-MSA ]
                [ MIP-HA-to-FA-MSA ] [ MIP-MSA-Lifetime ] [ MIP-Originating-Foreign-AAA ]
                [ MIP-Mobile-Node-Address ] [ MIP-Home-Agent-Address ] * [ MIP-Filter-Rule ]
                [ Origin-State-Id ] * [ Proxy-Info ] * [ Route-Record ] * [ AVP ]""",
            "answer": """
                < Session-Id > { Auth-Application-Id } { Result-Code } { Origin-Host }
                { Origin-Realm } [ Acct-Multi-Session-Id ] [ User-Name ]
                [ Error-Reporting-Host ] [ Error-Message ] [ MIP-Reg-Reply ]
                [ MIP-Home-Agent-Address ] [ MIP-Mobile-Node-Address ] [ MIP-FA-to-HA-SPI ]
                [ MIP-FA-to-MN-SPI ] [ Origin-State-Id ] * [ Proxy-Info ] * [ AVP ]""",
        },
    ],
    "eap": [
        {
            "name": "Diameter-EAP",
            "code": 268,
            "application": 5,
            "proxiable": True,
            "request": """
                < Session-Id > { Auth-Application-Id } { Origin-Host } { Origin-Realm }
                { Destination-Realm } { Auth-Request-Type } [ Destination-Host ]
                [ NAS-Identifier ] [ NAS-IP-Address ] [ NAS-IPv6-Address ] [ NAS-Port ]
                [ NAS-Port-Id ] [ NAS-Port-Type ] [ Origin-State-Id ] [ Port-Limit ]
                [ User-Name ] { EAP-Payload } [ EAP-Key-Name ] [ Service-Type ] [ State ]
                [ Authorization-Lifetime ] [ Auth-Grace-Period ] [ Auth-Session-State ]
                [ Callback-Number ] [ Called-Station-Id ] [ Calling-Station-Id ]
                [ Originating-Line-Info ] [ Connect-Info ] * [ Framed-Compression ]
                [ Framed-Interface-Id ] [ Framed-IP-Address ] * [ Framed-IPv6-Prefix ]
                [ Framed-IP-Netmask ] [ Framed-MTU ] [ Framed-Protocol ] * [ Tunneling ]
                * [ Proxy-Info ] * [ Route-Record ] * [ AVP ]""",
            "answer": f"""
                < Session-Id > {{ Auth-Application-Id }} {{ Auth-Request-Type }} {{ Result-Code }}
                {{ Origin-Host }} {{ Origin-Realm }} [ User-Name ] [ EAP-Payload ]
                [ EAP-Reissued-Payload ] [ EAP-Master-Session-Key ] [ EAP-Key-Name ]
                [ Multi-Round-Time-Out ] [ Accounting-EAP-Auth-Method ] [ Service-Type ]
                * [ Class ] * [ Configuration-Token ] [ Acct-Interim-Interval ]
                [ Error-Message ] [ Error-Reporting-Host ] * [ Failed-AVP ] [ Idle-Timeout ]
                [ Authorization-Lifetime ] [ Auth-Grace-Period ] [ Auth-Session-State ]
                [ Re-Auth-Request-Type ] [ Session-Timeout ] [ State ] * [ Reply-Message ]
                [ Origin-State-Id ] * [ Filter-Id ] [ Port-Limit ] [ Callback-Id ]
                [ Callback-Number ] [ Framed-Appletalk-Link ] * [ Framed-Appletalk-Network ]
                [ Framed-Appletalk-Zone ] * [ Framed-Compression ] [ Framed-Interface-Id ]
                [ Framed-IP-Address ] * [ Framed-IPv6-Prefix ] [ Framed-IPv6-Pool ]
                * [ Framed-IPv6-Route ] [ Framed-IP-Netmask ] * [ Framed-Route ] [ Framed-Pool ]
                [ Framed-IPX-Network ] [ Framed-MTU ] [ Framed-Protocol ] [ Framed-Routing ]
                * [ NAS-Filter-Rule ] * [ QoS-Filter-Rule ] * [ Tunneling ] {_ANSWER_REDIRECT}
                * [ Proxy-Info ] * [ AVP ]""",
        },
    ],
    "credit_control": [
        {
            "name": "Credit-Control",
            "code": 272,
            "application": 4,
            "proxiable": True,
            # RFC 8506 3.1 merged with TS 32.299 6.4.2 (Ro/Gy CCR)
            "request": """
                < Session-Id >
                [ DRMP ]
                { Origin-Host }
                { Origin-Realm }
                { Destination-Realm }
                { Auth-Application-Id }
                { Service-Context-Id }
                { CC-Request-Type }
                { CC-Request-Number }
                [ Destination-Host ]
                [ User-Name ]
                [ CC-Sub-Session-Id ]
                [ Acct-Multi-Session-Id ]
                [ Origin-State-Id ]
                [ Event-Timestamp ]
                * [ Subscription-Id ]
                * [ Subscription-Id-Extension ]
                [ Service-Identifier ]
                [ Termination-Cause ]
                [ Requested-Service-Unit ]
                [ Requested-Action ]
                [ AoC-Request-Type ]
                * [ Used-Service-Unit ]
                [ Multiple-Services-Indicator ]
                * [ Multiple-Services-Credit-Control ]
                * [ Service-Parameter-Info ]
                [ CC-Correlation-Id ]
                [ User-Equipment-Info ]
                [ User-Equipment-Info-Extension ]
                [ OC-Supported-Features ]
                * [ Proxy-Info ]
                * [ Route-Record ]
                [ Service-Information ]
                * [ AVP ]""",
            # RFC 8506 3.2 merged with TS 32.299 6.4.3 (Ro/Gy CCA)
            "answer": """
                < Session-Id >
                [ DRMP ]
                { Result-Code }
                { Origin-Host }
                { Origin-Realm }
                { Auth-Application-Id }
                { CC-Request-Type }
                { CC-Request-Number }
                [ Experimental-Result ]
                [ User-Name ]
                [ CC-Session-Failover ]
                [ CC-Sub-Session-Id ]
                [ Acct-Multi-Session-Id ]
                [ Origin-State-Id ]
                [ Event-Timestamp ]
                [ Granted-Service-Unit ]
                * [ Multiple-Services-Credit-Control ]
                [ Cost-Information ]
                [ Final-Unit-Indication ]
                [ QoS-Final-Unit-Indication ]
                [ Check-Balance-Result ]
                [ Low-Balance-Indication ]
                [ Remaining-Balance ]
                [ Credit-Control-Failure-Handling ]
                [ Direct-Debiting-Failure-Handling ]
                [ Validity-Time ]
                [ OC-Supported-Features ]
                [ OC-OLR ]
                * [ Redirect-Host ]
                [ Redirect-Host-Usage ]
                [ Redirect-Max-Cache-Time ]
                * [ Proxy-Info ]
                * [ Route-Record ]
                * [ Failed-AVP ]
                [ Service-Information ]
                * [ AVP ]""",
        },
    ],
    "sy": [
        {
            "name": "Spending-Limit",
            "code": 8388635,
            "application": 16777302,
            "proxiable": True,
            "request": """
                < Session-Id > [ DRMP ] { Auth-Application-Id } { Origin-Host } { Origin-Realm }
                { Destination-Realm } [ Destination-Host ] [ Origin-State-Id ]
                [ OC-Supported-Features ] * [ Supported-Features ] { SL-Request-Type }
                * [ Subscription-Id ] * [ Policy-Counter-Identifier ] [ Logical-Access-ID ]
                [ Physical-Access-ID ] * [ Proxy-Info ] * [ Route-Record ] * [ AVP ]""",
            "answer": f"""
                < Session-Id > [ DRMP ] {{ Auth-Application-Id }} {{ Origin-Host }}
                {{ Origin-Realm }} [ Result-Code ] [ Experimental-Result ]
                [ OC-Supported-Features ] [ OC-OLR ] * [ Supported-Features ]
                * [ Policy-Counter-Status-Report ] [ Error-Message ] [ Error-Reporting-Host ]
                [ Failed-AVP ] [ Origin-State-Id ] {_ANSWER_REDIRECT} * [ Proxy-Info ]
                * [ Load ] * [ AVP ]""",
        },
        {
            "name": "Spending-Status-Notification",
            "code": 8388636,
            "application": 16777302,
            "proxiable": True,
            "request": """
                < Session-Id > [ DRMP ] { Origin-Host } { Origin-Realm } { Destination-Realm }
                { Destination-Host } { Auth-Application-Id } [ Origin-State-Id ]
                [ OC-Supported-Features ] * [ Policy-Counter-Status-Report ]
                [ SN-Request-Type ] * [ Proxy-Info ] * [ Route-Record ] * [ AVP ]""",
            "answer": f"""
                < Session-Id > [ DRMP ] {{ Origin-Host }} {{ Origin-Realm }} [ Result-Code ]
                [ Experimental-Result ] [ Origin-State-Id ] [ OC-Supported-Features ]
                [ OC-OLR ] [ Error-Message ] [ Error-Reporting-Host ] {_ANSWER_REDIRECT}
                [ Failed-AVP ] * [ Proxy-Info ] * [ AVP ]""",
        },
        {
            "name": "Session-Termination",
            "code": 275,
            "application": 16777302,
            "proxiable": True,
            "class_name": "SySessionTermination",
            "request": """
                < Session-Id > [ DRMP ] { Origin-Host } { Origin-Realm } { Destination-Realm }
                { Auth-Application-Id } { Termination-Cause } [ Destination-Host ]
                [ OC-Supported-Features ] * [ Class ] [ Origin-State-Id ] * [ Proxy-Info ]
                * [ Route-Record ] * [ AVP ]""",
            "answer": f"""
                < Session-Id > [ DRMP ] {{ Result-Code }} {{ Origin-Host }} {{ Origin-Realm }}
                [ Error-Message ] [ Error-Reporting-Host ] [ OC-Supported-Features ]
                [ OC-OLR ] [ Failed-AVP ] [ Origin-State-Id ] * [ Class ] {_ANSWER_REDIRECT}
                * [ Proxy-Info ] * [ AVP ]""",
        },
    ],
    "cxdx": [
        {
            "name": "User-Authorization",
            "code": 300,
            "application": 16777216,
            "proxiable": True,
            "request": """
                < Session-Id > [ DRMP ] { Vendor-Specific-Application-Id }
                { Auth-Session-State } { Origin-Host } { Origin-Realm } [ Destination-Host ]
                { Destination-Realm } { User-Name } [ OC-Supported-Features ]
                * [ Supported-Features ] { Public-Identity } { Visited-Network-Identifier }
                [ User-Authorization-Type ] [ UAR-Flags ] * [ Proxy-Info ] * [ Route-Record ]
                * [ AVP ]""",
            "answer": """
                < Session-Id > [ DRMP ] { Vendor-Specific-Application-Id } [ Result-Code ]
                [ Experimental-Result ] { Auth-Session-State } { Origin-Host }
                { Origin-Realm } [ OC-Supported-Features ] [ OC-OLR ] * [ Load ]
                * [ Supported-Features ] [ Server-Name ] [ Server-Capabilities ]
                [ Failed-AVP ] * [ Proxy-Info ] * [ Route-Record ] * [ AVP ]""",
        },
        {
            "name": "Server-Assignment",
            "code": 301,
            "application": 16777216,
            "proxiable": True,
            "request": """
                < Session-Id > [ DRMP ] { Vendor-Specific-Application-Id }
                { Auth-Session-State } { Origin-Host } { Origin-Realm } [ Destination-Host ]
                { Destination-Realm } [ User-Name ] [ OC-Supported-Features ]
                * [ Supported-Features ] * [ Public-Identity ] [ Wildcarded-Public-Identity ]
                { Server-Name } { Server-Assignment-Type } { User-Data-Already-Available }
                [ SCSCF-Restoration-Info ] [ Multiple-Registration-Indication ]
                [ Session-Priority ] [ SAR-Flags ] * [ Proxy-Info ] * [ Route-Record ]
                * [ AVP ]""",
            "answer": """
                < Session-Id > [ DRMP ] { Vendor-Specific-Application-Id } [ Result-Code ]
                [ Experimental-Result ] { Auth-Session-State } { Origin-Host }
                { Origin-Realm } [ User-Name ] [ OC-Supported-Features ] [ OC-OLR ] * [ Load ]
                * [ Supported-Features ] [ User-Data ] [ Charging-Information ]
                [ Associated-Identities ] [ Loose-Route-Indication ]
                * [ SCSCF-Restoration-Info ] [ Associated-Registered-Identities ]
                [ Server-Name ] [ Wildcarded-Public-Identity ]
                [ Priviledged-Sender-Indication ] [ Allowed-WAF-WWSF-Identities ]
                [ Failed-AVP ] * [ Proxy-Info ] * [ Route-Record ] * [ AVP ]""",
        },
        {
            "name": "Location-Info",
            "code": 302,
            "application": 16777216,
            "proxiable": True,
            "request": """
                < Session-Id > [ DRMP ] { Vendor-Specific-Application-Id }
                { Auth-Session-State } { Origin-Host } { Origin-Realm } [ Destination-Host ]
                { Destination-Realm } [ Originating-Request ] [ OC-Supported-Features ]
                * [ Supported-Features ] { Public-Identity } [ User-Authorization-Type ]
                [ Session-Priority ] * [ Proxy-Info ] * [ Route-Record ] * [ AVP ]""",
            "answer": """
                < Session-Id > [ DRMP ] { Vendor-Specific-Application-Id } [ Result-Code ]
                [ Experimental-Result ] { Auth-Session-State } { Origin-Host }
                { Origin-Realm } [ OC-Supported-Features ] [ OC-OLR ] * [ Load ]
                * [ Supported-Features ] [ Server-Name ] [ Server-Capabilities ]
                [ Wildcarded-Public-Identity ] [ LIA-Flags ] [ Failed-AVP ] * [ Proxy-Info ]
                * [ Route-Record ] * [ AVP ]""",
        },
        {
            "name": "Multimedia-Auth",
            "code": 303,
            "application": 16777216,
            "proxiable": True,
            "request": """
                < Session-Id > [ DRMP ] { Vendor-Specific-Application-Id }
                { Auth-Session-State } { Origin-Host } { Origin-Realm } { Destination-Realm }
                [ Destination-Host ] { User-Name } [ OC-Supported-Features ]
                * [ Supported-Features ] { Public-Identity } { SIP-Auth-Data-Item }
                { SIP-Number-Auth-Items } { Server-Name } * [ Proxy-Info ] * [ Route-Record ]
                * [ AVP ]""",
            "answer": """
                < Session-Id > [ DRMP ] { Vendor-Specific-Application-Id } [ Result-Code ]
                [ Experimental-Result ] { Auth-Session-State } { Origin-Host }
                { Origin-Realm } [ User-Name ] [ OC-Supported-Features ] [ OC-OLR ] * [ Load ]
                * [ Supported-Features ] [ Public-Identity ] [ SIP-Number-Auth-Items ]
                * [ SIP-Auth-Data-Item ] [ Failed-AVP ] * [ Proxy-Info ] * [ Route-Record ]
                * [ AVP ]""",
        },
        {
            "name": "Registration-Termination",
            "code": 304,
            "application": 16777216,
            "proxiable": True,
            "request": """
                < Session-Id > [ DRMP ] { Vendor-Specific-Application-Id }
                { Auth-Session-State } { Origin-Host } { Origin-Realm } { Destination-Host }
                { Destination-Realm } { User-Name } [ Associated-Identities ]
                * [ Supported-Features ] * [ Public-Identity ] { Deregistration-Reason }
                * [ Proxy-Info ] * [ Route-Record ] * [ AVP ]""",
            "answer": """
                < Session-Id > [ DRMP ] { Vendor-Specific-Application-Id } [ Result-Code ]
                [ Experimental-Result ] { Auth-Session-State } { Origin-Host }
                { Origin-Realm } [ Associated-Identities ] * [ Supported-Features ]
                [ Identity-with-Emergency-Registration ] [ Failed-AVP ] * [ Proxy-Info ]
                * [ Route-Record ] * [ AVP ]""",
        },
        {
            "name": "Push-Profile",
            "code": 305,
            "application": 16777216,
            "proxiable": True,
            "request": """
                < Session-Id > [ DRMP ] { Vendor-Specific-Application-Id }
                { Auth-Session-State } { Origin-Host } { Origin-Realm } { Destination-Host }
                { Destination-Realm } { User-Name } * [ Supported-Features ] [ User-Data ]
                [ Charging-Information ] [ SIP-Auth-Data-Item ]
                [ Allowed-WAF-WWSF-Identities ] * [ Proxy-Info ] * [ Route-Record ]
                * [ AVP ]""",
            "answer": """
                < Session-Id > [ DRMP ] { Vendor-Specific-Application-Id } [ Result-Code ]
                [ Experimental-Result ] { Auth-Session-State } { Origin-Host }
                { Origin-Realm } * [ Supported-Features ] [ Failed-AVP ] * [ Proxy-Info ]
                * [ Route-Record ] * [ AVP ]""",
        },
    ],
    "tgpp": APP_COMMANDS,
}

# --------------------------------------------------------------------------------------
# CCF parsing
# --------------------------------------------------------------------------------------

_CCF_ITEM = re.compile(
    r"(?P<q>\d*\*\d*)?\s*(?P<open>[<{\[])\s*(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)\s*(?P<close>[>}\]])"
)
_CLOSE_FOR = {"<": ">", "{": "}", "[": "]"}
CANONICAL_ITEM = re.compile(
    r"^(?:(?:\d+\*\d*|\*\d*) )?(?:< [A-Za-z0-9][\w-]* >|\{ [A-Za-z0-9][\w-]* \}"
    r"|\[ [A-Za-z0-9][\w-]* \])$"
)


def parse_ccf(text: str, where: str) -> list[str]:
    """Parse RFC 6733 CCF items ("* [ Name ]", "{ Name }", "< Name >" ...) into canonical
    strings. "* [ AVP ]" is moved to the end (its position carries no meaning)."""
    items: list[str] = []
    pos = 0
    for m in _CCF_ITEM.finditer(text):
        gap = text[pos : m.start()]
        if gap.strip():
            raise ValueError(f"{where}: unparsable CCF text {gap.strip()!r}")
        pos = m.end()
        if _CLOSE_FOR[m["open"]] != m["close"]:
            raise ValueError(f"{where}: mismatched brackets in {m.group(0)!r}")
        q = m["q"] or ""
        items.append(f"{q + ' ' if q else ''}{m['open']} {m['name']} {m['close']}")
    if text[pos:].strip():
        raise ValueError(f"{where}: unparsable CCF text {text[pos:].strip()!r}")
    tail = [i for i in items if ccf_name(i) == "AVP" and i.endswith("]")]
    return [i for i in items if i not in tail] + tail


def ccf_name(item: str) -> str:
    return item.split()[-2]


# --------------------------------------------------------------------------------------
# Wireshark XML reading
# --------------------------------------------------------------------------------------


@dataclass
class RawAvp:
    name: str
    code: int
    vendor: int
    ws_type: str
    mandatory: str | None
    enum: list[tuple[str, int]]
    members: list[str] | None
    source: str


def load_ws_xml(path: Path) -> ET.Element:
    """Parse one Wireshark dictionary file on its own: drop the XML declaration, processing
    instructions, the DOCTYPE (with its entity declarations) and entity references, then
    wrap whatever top-level elements remain in a synthetic root."""
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"<\?.*?\?>", "", text, flags=re.S)
    text = re.sub(r"<!DOCTYPE[^\[>]*(\[.*?\])?\s*>", "", text, flags=re.S)
    text = re.sub(r"&[A-Za-z_][\w.-]*;", "", text)
    return ET.fromstring(f"<wsroot>{text}</wsroot>")


def _int(text: str) -> int:
    """Decimal, or 0x-prefixed hex as Wireshark occasionally writes."""
    text = text.strip()
    return int(text, 16) if text.lower().startswith("0x") else int(text)


def read_wireshark(ws_dir: Path, log: list[str]) -> tuple[dict[str, int], list[RawAvp]]:
    files = sorted(set(IETF_WS_FILES) | set(VENDOR_WS_FILES))
    roots = {}
    for fn in files:
        path = ws_dir / fn
        if not path.is_file():
            raise SystemExit(f"error: Wireshark dictionary file not found: {path}")
        roots[fn] = load_ws_xml(path)

    vendor_ids: dict[str, int] = {"None": 0}
    for root in roots.values():
        for v in root.iter("vendor"):
            vendor_ids[v.get("vendor-id", "")] = int(v.get("code", "0"))

    raws: list[RawAvp] = []
    for fn, root in roots.items():
        for section in root.iter():
            if section.tag not in ("base", "application", "vendor"):
                continue
            for a in section.findall("avp"):
                vname = a.get("vendor-id", "None")
                if vname not in vendor_ids:
                    log.append(f"skipped {a.get('name')!r} ({fn}): unknown vendor {vname!r}")
                    continue
                t = a.find("type")
                g = a.find("grouped")
                enum = [(e.get("name", ""), _int(e.get("code", "0"))) for e in a.findall("enum")]
                raws.append(
                    RawAvp(
                        name=a.get("name", "").strip(),
                        code=_int(a.get("code", "0")),
                        vendor=vendor_ids[vname],
                        ws_type=t.get("type-name", "") if t is not None else "Grouped",
                        mandatory=a.get("mandatory"),
                        enum=enum,
                        members=[x.get("name", "").strip() for x in g.findall("gavp")]
                        if g is not None
                        else None,
                        source=fn,
                    )
                )
    return vendor_ids, raws


def wanted(raw: RawAvp) -> bool:
    if raw.vendor == 0:
        return raw.source in IETF_WS_FILES and not PLACEHOLDER_NAME.match(raw.name)
    if raw.vendor in (TGPP, ETSI):
        return raw.source in VENDOR_WS_FILES and not PLACEHOLDER_NAME.match(raw.name)
    if raw.vendor == TGPP2:  # 3GPP2 X.S0013 (Ty/Tx, the cdma2000 PCC interfaces)
        return raw.source == "TGPP2.xml" and not PLACEHOLDER_NAME.match(raw.name)
    return (raw.vendor, raw.code) in OTHER_VENDOR_ALLOW


# --------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------


@dataclass
class Avp:
    name: str
    code: int
    vendor: int
    type: str
    m: bool
    enum: dict[str, int] = field(default_factory=dict)
    grammar: list[str] | None = None
    members: list[str] | None = None  # Wireshark member list, used when no GROUPED entry
    source: str = ""
    file: str = ""

    @property
    def key(self) -> tuple[int, int]:
        return (self.code, self.vendor)


def enum_identifier(label: str) -> str:
    """Turn a Wireshark enum label into an UPPER_CASE Python identifier."""
    s = label.replace("*", "ANY").replace("'", "").upper()
    s = re.sub(r"[^A-Z0-9]+", "_", s).strip("_")
    if s and s[0].isdigit():
        s = "V_" + s
    return s


def build_enum(pairs: list[tuple[str, int]], where: str, log: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for label, value in sorted(pairs, key=lambda p: p[1]):
        if PLACEHOLDER_ENUM.match(label.strip()):
            continue
        name = enum_identifier(label) or f"V_{value}"
        if name in out:
            if out[name] == value:
                continue
            new = f"{name}_{value}"
            log.append(f"enum {where}: duplicate label {name} for {value}, renamed {new}")
            name = new
        out[name] = value
    return out


def mapped_type(raw: RawAvp) -> str:
    if raw.ws_type in VALID_TYPES:
        return raw.ws_type
    return WS_TYPE_MAP.get(raw.ws_type, "OctetString")


def m_flag(raw: RawAvp) -> bool:
    if raw.mandatory is None:
        return raw.code not in MISSING_M_FALSE_RANGES.get(raw.vendor, ())
    return raw.mandatory == "must"


def convert(raw: RawAvp, log: list[str]) -> Avp:
    where = f"{raw.name} ({raw.code}/{raw.vendor})"
    return Avp(
        name=RENAMES.get((raw.code, raw.vendor), raw.name),
        code=raw.code,
        vendor=raw.vendor,
        type=mapped_type(raw),
        m=m_flag(raw),
        enum=build_enum(raw.enum, where, log),
        members=raw.members,
        source=raw.source,
    )


def apply_overrides(avp: Avp) -> None:
    if avp.code in M_FALSE.get(avp.vendor, ()):
        avp.m = False
    if avp.code in M_TRUE.get(avp.vendor, ()):
        avp.m = True
    ov = OVERRIDES.get(avp.key)
    if not ov:
        return
    if "type" in ov:
        avp.type = ov["type"]
    if "m" in ov:
        avp.m = ov["m"]
    if "enum" in ov:
        avp.enum = dict(ov["enum"])
    for value in ov.get("enum_drop", ()):
        avp.enum = {k: v for k, v in avp.enum.items() if v != value}
    for name, value in ov.get("enum_add", {}).items():
        avp.enum = {k: v for k, v in avp.enum.items() if v != value}
        avp.enum[name] = value
    avp.enum = dict(sorted(avp.enum.items(), key=lambda kv: (kv[1], kv[0])))


def file_for(avp: Avp) -> str:
    if avp.vendor != 0:
        return "tgpp"
    src, code = avp.source, avp.code
    if src == "chargecontrol.xml" or 653 <= code <= 669:
        return "credit_control"
    if src == "eap.xml" or code in EAP_RADIUS_CODES:
        return "eap"
    if src in ("mobileipv4.xml", "mobileipv6.xml") or code in MIP_RADIUS_CODES:
        return "mip4"
    if src == "nasreq.xml" or (code <= 255 and code not in BASE_RADIUS_CODES):
        return "nasreq"
    return "base"


def collect_avps(ws_dir: Path, log: list[str]) -> dict[str, Avp]:
    """Return the final AVP set keyed by name."""
    _vendor_ids, raws = read_wireshark(ws_dir, log)
    by_name: dict[str, Avp] = {}
    by_key: dict[tuple[int, int], Avp] = {}

    def admit(avp: Avp) -> None:
        old = by_key.get(avp.key) or by_name.get(avp.name)
        if old is not None:
            log.append(
                f"conflict: {avp.name} {avp.key} from {avp.source} clashes with "
                f"{old.name} {old.key} from {old.source}; kept the latter"
            )
            return
        by_key[avp.key] = avp
        by_name[avp.name] = avp

    # Hand additions first: they exist precisely because Wireshark lacks them.
    for spec in EXTRA_AVPS + MORE_AVPS:
        admit(
            Avp(
                name=spec["name"],
                code=spec["code"],
                vendor=spec.get("vendor", 0),
                type=spec["type"],
                m=spec.get("m", True),
                enum=dict(spec.get("enum", {})),
                source=spec.get("source", "gen_dictionaries.py"),
            )
        )
    # Application-specific Wireshark files before the big generic one (stable sort).
    skipped = 0
    renamed: dict[str, str] = {}
    for raw in sorted(raws, key=lambda r: SOURCE_PRIORITY.index(r.source)):
        if not wanted(raw):
            skipped += 1
            continue
        avp = convert(raw, log)
        if avp.name != raw.name:
            renamed[raw.name] = avp.name
            log.append(f"renamed {raw.name} -> {avp.name} ({avp.code}/{avp.vendor})")
        admit(avp)
    log.append(f"ignored {skipped} Wireshark AVPs of other vendors / placeholder entries")

    for avp in by_name.values():
        apply_overrides(avp)
        avp.file = file_for(avp)
    build_grammars(by_name, renamed, log)
    return by_name


def build_grammars(avps: dict[str, Avp], renamed: dict[str, str], log: list[str]) -> None:
    """Attach a grammar to every Grouped AVP: the hand-written one from GROUPED, else each
    Wireshark member as "* [ Name ]" (Wireshark gives no qualifiers) plus "* [ AVP ]"."""
    for name, text in {**GROUPED, **MORE_GROUPED}.items():
        if name not in avps:
            raise SystemExit(f"error: GROUPED grammar for unknown AVP {name}")
        avps[name].grammar = parse_ccf(text, f"grouped {name}")
    for avp in avps.values():
        if avp.type != "Grouped":
            if avp.grammar is not None:
                raise SystemExit(f"error: grammar given for non-Grouped AVP {avp.name}")
            continue
        if avp.grammar is not None:
            continue
        items: list[str] = []
        for member in avp.members or []:
            member = renamed.get(member, member)
            if member not in avps:
                log.append(f"grammar {avp.name}: dropped unknown member {member!r}")
                continue
            item = f"* [ {member} ]"
            if item not in items:
                items.append(item)
        avp.grammar = items + ["* [ AVP ]"]


def build_commands() -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for fname, cmds in {**COMMANDS, "base": COMMANDS["base"] + MORE_COMMANDS}.items():
        built = []
        for c in cmds:
            where = f"command {c['name']} ({c['code']}, app {c['application']})"
            entry = {
                "name": c["name"],
                "code": c["code"],
                "application": c["application"],
                "proxiable": c["proxiable"],
            }
            if "class_name" in c:
                entry["class_name"] = c["class_name"]
            entry["request"] = parse_ccf(c["request"], where + " request")
            entry["answer"] = parse_ccf(c["answer"], where + " answer")
            built.append(entry)
        built.sort(key=lambda e: (e["code"], -1 if e["application"] is None else e["application"]))
        out[fname] = built
    return out


# --------------------------------------------------------------------------------------
# Output documents
# --------------------------------------------------------------------------------------


def avp_json(avp: Avp) -> dict:
    d: dict = {"name": avp.name, "code": avp.code}
    if avp.vendor:
        d["vendor"] = avp.vendor
    d["type"] = avp.type
    if not avp.m:
        d["m"] = False
    if avp.enum:
        d["enum"] = avp.enum
    if avp.grammar is not None:
        d["grammar"] = avp.grammar
    return d


def build_documents(avps: dict[str, Avp], commands: dict[str, list[dict]]) -> dict[str, dict]:
    docs = {}
    for fname, meta in FILES.items():
        members = sorted((a for a in avps.values() if a.file == fname), key=lambda a: a.key[::-1])
        vendors = {a.vendor for a in members if a.vendor}
        if fname in ("sy", "cxdx"):
            vendors.add(TGPP)
        docs[fname] = {
            "name": fname,
            "title": meta["title"],
            "source": meta["source"],
            "vendors": [{"id": v, "name": VENDOR_NAMES[v]} for v in sorted(vendors)],
            "applications": meta["applications"],
            "avps": [avp_json(a) for a in members],
            "commands": commands.get(fname, []),
        }
    return docs


def _dump(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


def render(doc: dict) -> str:
    """Compact, diff-friendly JSON: one AVP per line, one CCF item per line in commands."""
    lines = ["{"]
    for key in ("name", "title", "source"):
        lines.append(f"  {_dump(key)}: {_dump(doc[key])},")
    for key in ("vendors", "applications"):
        items = doc[key]
        if not items:
            lines.append(f"  {_dump(key)}: [],")
            continue
        lines.append(f"  {_dump(key)}: [")
        lines += [f"    {_dump(x)}{',' if i < len(items) - 1 else ''}" for i, x in enumerate(items)]
        lines.append("  ],")
    avps = doc["avps"]
    if avps:
        lines.append('  "avps": [')
        lines += [f"    {_dump(a)}{',' if i < len(avps) - 1 else ''}" for i, a in enumerate(avps)]
        lines.append("  ],")
    else:
        lines.append('  "avps": [],')
    cmds = doc["commands"]
    if not cmds:
        lines.append('  "commands": []')
    else:
        lines.append('  "commands": [')
        for ci, c in enumerate(cmds):
            lines.append("    {")
            scalar = [k for k in c if k not in ("request", "answer")]
            lines.append("      " + ", ".join(f"{_dump(k)}: {_dump(c[k])}" for k in scalar) + ",")
            for part in ("request", "answer"):
                lines.append(f"      {_dump(part)}: [")
                items = c[part]
                lines += [
                    f"        {_dump(x)}{',' if i < len(items) - 1 else ''}"
                    for i, x in enumerate(items)
                ]
                lines.append("      ]," if part == "request" else "      ]")
            lines.append("    }" + ("," if ci < len(cmds) - 1 else ""))
        lines.append("  ]")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# Self-check (runs on the rendered JSON, i.e. on exactly what the loader will see)
# --------------------------------------------------------------------------------------

_ENUM_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_AVP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_DOC_KEYS = ["name", "title", "source", "vendors", "applications", "avps", "commands"]
_AVP_KEYS = {"name", "code", "vendor", "type", "m", "enum", "grammar"}
_CMD_KEYS = {"name", "code", "application", "proxiable", "class_name", "request", "answer"}


def _identifier_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def self_check(texts: dict[str, str]) -> list[str]:
    errors: list[str] = []
    err = errors.append
    docs = {}
    for fname, text in texts.items():
        try:
            docs[fname] = json.loads(text)
        except json.JSONDecodeError as exc:
            err(f"{fname}.json: invalid JSON: {exc}")
    if errors:
        return errors

    names: dict[str, str] = {}
    ident: dict[str, str] = {}
    keys: dict[tuple[int, int], str] = {}
    grammars: list[tuple[str, list[str]]] = []
    app_ids: dict[int, str] = {}
    cmd_keys: dict[tuple[int, int | None], str] = {}
    class_names: dict[str, str] = {}
    total = 0

    for fname, doc in docs.items():
        if list(doc) != _DOC_KEYS:
            err(f"{fname}.json: top-level keys {list(doc)} != {_DOC_KEYS}")
        if doc.get("name") != fname:
            err(f"{fname}.json: name field {doc.get('name')!r}")
        vendor_ids = {v["id"] for v in doc["vendors"]}
        for app in doc["applications"]:
            if app.get("kind") not in ("auth", "acct"):
                err(f"{fname}.json: application {app} has bad kind")
            if app["id"] in app_ids:
                err(f"application {app['id']} defined in {app_ids[app['id']]} and {fname}")
            app_ids[app["id"]] = fname
        for a in doc["avps"]:
            total += 1
            where = f"{fname}.json AVP {a.get('name')}"
            if set(a) - _AVP_KEYS:
                err(f"{where}: unknown keys {set(a) - _AVP_KEYS}")
            name, code, vendor = a["name"], a["code"], a.get("vendor", 0)
            if not _AVP_NAME.match(name):
                err(f"{where}: bad name")
            if name in names:
                err(f"{where}: name also defined in {names[name]}")
            names[name] = fname
            ik = _identifier_key(name)
            if ik in ident and ident[ik] != name:
                err(f"{where}: collides with {ident[ik]} once turned into an identifier")
            ident[ik] = name
            if (code, vendor) in keys:
                err(f"{where}: (code {code}, vendor {vendor}) also used by {keys[(code, vendor)]}")
            keys[(code, vendor)] = name
            if not (isinstance(code, int) and 0 < code < 2**32):
                err(f"{where}: bad code {code!r}")
            if vendor and vendor not in vendor_ids:
                err(f"{where}: vendor {vendor} missing from the file's vendors list")
            if "vendor" in a and not vendor:
                err(f"{where}: explicit vendor 0 (omit it)")
            if a["type"] not in VALID_TYPES:
                err(f"{where}: invalid type {a['type']!r}")
            if "m" in a and a["m"] is not False:
                err(f"{where}: 'm' must be omitted or false")
            if "enum" in a:
                if a["type"] not in INTEGER_TYPES:
                    err(f"{where}: enum on type {a['type']}")
                if not a["enum"]:
                    err(f"{where}: empty enum")
                for en, ev in a["enum"].items():
                    if not _ENUM_NAME.match(en):
                        err(f"{where}: bad enum name {en!r}")
                    if not isinstance(ev, int) or isinstance(ev, bool):
                        err(f"{where}: enum {en} value {ev!r} is not an int")
            if a["type"] == "Grouped":
                if not a.get("grammar"):
                    err(f"{where}: Grouped without grammar")
                else:
                    grammars.append((where, a["grammar"]))
            elif "grammar" in a:
                err(f"{where}: grammar on non-Grouped AVP")
        for c in doc["commands"]:
            where = f"{fname}.json command {c.get('name')} ({c.get('code')})"
            if set(c) - _CMD_KEYS:
                err(f"{where}: unknown keys {set(c) - _CMD_KEYS}")
            ck = (c["code"], c["application"])
            if ck in cmd_keys:
                err(f"{where}: (code, application) also defined in {cmd_keys[ck]}")
            cmd_keys[ck] = fname
            cls = c.get("class_name") or c["name"].replace("-", "")
            if not cls.isidentifier():
                err(f"{where}: class name {cls!r} is not an identifier")
            if cls in class_names:
                err(f"{where}: class name {cls} also used in {class_names[cls]}")
            class_names[cls] = fname
            if not isinstance(c["proxiable"], bool):
                err(f"{where}: proxiable must be a bool")
            for part in ("request", "answer"):
                grammars.append((f"{where} {part}", c[part]))
                if c[part][-1:] != ["* [ AVP ]"]:
                    err(f"{where} {part}: does not end with '* [ AVP ]'")

    for cmd_code, app in cmd_keys:
        if app is not None and app not in app_ids:
            err(f"command {cmd_code}: application {app} not declared in any file")
    for fname, doc in docs.items():
        for c in doc["commands"]:
            if c["application"] is not None and c["application"] not in app_ids:
                continue
            if c["application"] is not None and c["application"] != 0 and c["code"] < 300:
                # app-specific redefinitions of a base command must carry a class_name
                if (c["code"], None) in cmd_keys and "class_name" not in c:
                    err(f"{fname}.json command {c['name']}: redefinition needs class_name")

    for where, items in grammars:
        seen = set()
        fixed_done = False
        for item in items:
            if not CANONICAL_ITEM.match(item):
                err(f"{where}: malformed CCF item {item!r}")
                continue
            name = ccf_name(item)
            if name != "AVP" and name not in names:
                err(f"{where}: unknown AVP {name!r}")
            if name in seen:
                err(f"{where}: {name} listed twice")
            seen.add(name)
            is_fixed = item.startswith("<") or " < " in f" {item}"
            if is_fixed and fixed_done:
                err(f"{where}: fixed item {item!r} after non-fixed ones")
            if not is_fixed:
                fixed_done = True

    if total < MIN_TOTAL_AVPS:
        err(f"only {total} AVPs in total (need >= {MIN_TOTAL_AVPS})")
    return errors


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wireshark-dir", type=Path, default=DEFAULT_WIRESHARK_DIR)
    ap.add_argument("--out-dir", type=Path, default=OUT_DIR)
    ap.add_argument(
        "--check", action="store_true", help="do not write; fail if the files are out of date"
    )
    ap.add_argument("-q", "--quiet", action="store_true", help="do not list resolutions")
    args = ap.parse_args(argv)

    log: list[str] = []
    avps = collect_avps(args.wireshark_dir, log)
    commands = build_commands()
    docs = build_documents(avps, commands)
    texts = {fname: render(doc) for fname, doc in docs.items()}

    if not args.quiet:
        print("Resolutions and notes:")
        for line in log:
            print(f"  - {line}")

    errors = self_check(texts)
    if errors:
        print(f"\nSELF-CHECK FAILED ({len(errors)} problems):", file=sys.stderr)
        for e in errors:
            print(f"  * {e}", file=sys.stderr)
        return 1

    stale = []
    if not args.check:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    for fname, text in texts.items():
        path = args.out_dir / f"{fname}.json"
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        stale.append(path.name)
        if not args.check:
            path.write_text(text, encoding="utf-8")

    print("\nSummary:")
    total_avps = total_cmds = 0
    for fname, doc in docs.items():
        n_avp, n_cmd = len(doc["avps"]), len(doc["commands"])
        total_avps += n_avp
        total_cmds += n_cmd
        print(f"  {fname + '.json':22} {n_avp:5d} AVPs {n_cmd:3d} commands")
    print(f"  {'total':22} {total_avps:5d} AVPs {total_cmds:3d} commands")
    print("Self-check passed.")
    if args.check and stale:
        print(f"Out of date: {', '.join(stale)} (run tools/gen_dictionaries.py)", file=sys.stderr)
        return 1
    if stale and not args.check:
        print(f"Wrote: {', '.join(stale)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
