"""The 3GPP applications operators run: application ids and command grammars (CCF).

Imported by tools/gen_dictionaries.py, which parses, checks and writes them into tgpp.json.
Each grammar is transcribed from the specification named beside it (the Rel-15..17 text; AVPs
a later release appends go before `* [ AVP ]`, which is where the spec puts them). Commands
that reuse a base code (CCR 272, RAR 258, AAR 265, DER 268, STR 275, ASR 274) in another
application carry a class_name: one class per (application, code), so a Gx RAR reads as a Gx
RAR (its `* [ Charging-Rule-Install ]` a list) and a base RAR keeps its own grammar.
"""

from __future__ import annotations

GX, RX, S6A, SH, S13, SWX, S6B, SD, T6A, S7A = (
    16777238, 16777236, 16777251, 16777217, 16777252, 16777265, 16777272, 16777303, 16777346,
    16777308,
)  # fmt: skip

APPLICATIONS = [
    {"id": SH, "name": "3GPP Sh", "kind": "auth"},
    {"id": RX, "name": "3GPP Rx", "kind": "auth"},
    {"id": GX, "name": "3GPP Gx", "kind": "auth"},
    {"id": S6A, "name": "3GPP S6a/S6d", "kind": "auth"},
    {"id": S13, "name": "3GPP S13/S13'", "kind": "auth"},
    {"id": SWX, "name": "3GPP SWx", "kind": "auth"},
    {"id": S6B, "name": "3GPP S6b", "kind": "auth"},
    {"id": SD, "name": "3GPP Sd", "kind": "auth"},
    {"id": S7A, "name": "3GPP S7a/S7d", "kind": "auth"},
    {"id": T6A, "name": "3GPP T6a/T6b", "kind": "auth"},
]

_TAIL = "* [ Proxy-Info ] * [ Route-Record ] * [ AVP ]"
_REDIRECT = "* [ Redirect-Host ] [ Redirect-Host-Usage ] [ Redirect-Max-Cache-Time ]"
_ERR = "[ Error-Message ] [ Error-Reporting-Host ] [ Failed-AVP ]"
_OC_ANS = "[ OC-Supported-Features ] [ OC-OLR ] * [ Load ]"
# The S6a/S6d, S7a, S13, SWx, Sh and T6a answer head (TS 29.272 7.2, TS 29.329 6.1, ...)
_VS_REQ = "< Session-Id > [ DRMP ] [ Vendor-Specific-Application-Id ] { Auth-Session-State }"
_VS_ANS = (
    "< Session-Id > [ DRMP ] [ Vendor-Specific-Application-Id ] [ Result-Code ] "
    "[ Experimental-Result ] { Auth-Session-State } { Origin-Host } { Origin-Realm }"
)
_VSM_REQ = "< Session-Id > [ DRMP ] { Vendor-Specific-Application-Id } { Auth-Session-State }"
_VSM_ANS = (
    "< Session-Id > [ DRMP ] { Vendor-Specific-Application-Id } [ Result-Code ] "
    "[ Experimental-Result ] { Auth-Session-State } { Origin-Host } { Origin-Realm }"
)
_T6_ANS = (
    "< Session-Id > [ DRMP ] [ Result-Code ] [ Experimental-Result ] { Auth-Session-State } "
    "{ Origin-Host } { Origin-Realm }"
)


def _c(name: str, code: int, app: int, request: str, answer: str, cls: str = "") -> dict:
    d = {"name": name, "code": code, "application": app, "proxiable": True}
    if cls:
        d["class_name"] = cls
    d["request"], d["answer"] = request, answer
    return d


# One command per call: name, code, application, request, answer, class name.
# fmt: off
COMMANDS: list[dict] = [
    # -- Gx, TS 29.212 5.6 --------------------------------------------------------------
    _c("Credit-Control", 272, GX, f"""
        < Session-Id > [ DRMP ] {{ Auth-Application-Id }} {{ Origin-Host }} {{ Origin-Realm }}
        {{ Destination-Realm }} {{ CC-Request-Type }} {{ CC-Request-Number }}
        [ Credit-Management-Status ] [ Destination-Host ] [ Origin-State-Id ]
        * [ Subscription-Id ] [ OC-Supported-Features ] * [ Supported-Features ]
        [ TDF-Information ] [ Network-Request-Support ] * [ Packet-Filter-Information ]
        [ Packet-Filter-Operation ] [ Bearer-Identifier ] [ Bearer-Operation ]
        [ Dynamic-Address-Flag ] [ Dynamic-Address-Flag-Extension ]
        [ PDN-Connection-Charging-ID ] [ Framed-IP-Address ] [ Framed-IPv6-Prefix ]
        [ IP-CAN-Type ] [ 3GPP-RAT-Type ] [ AN-Trusted ] [ RAT-Type ] [ Termination-Cause ]
        [ User-Equipment-Info ] [ QoS-Information ] [ QoS-Negotiation ] [ QoS-Upgrade ]
        [ Default-EPS-Bearer-QoS ] [ Default-QoS-Information ] 0*2 [ AN-GW-Address ]
        [ AN-GW-Status ] [ 3GPP-SGSN-MCC-MNC ] [ 3GPP-SGSN-Address ]
        [ 3GPP-SGSN-IPv6-Address ] [ 3GPP-GGSN-Address ] [ 3GPP-GGSN-IPv6-Address ]
        [ 3GPP-Selection-Mode ] [ RAI ] [ 3GPP-User-Location-Info ]
        [ Fixed-User-Location-Info ] [ User-Location-Info-Time ] [ User-CSG-Information ]
        [ 3GPP-TWAN-Identifier ] [ 3GPP-MS-TimeZone ] * [ RAN-NAS-Release-Cause ]
        [ 3GPP-Charging-Characteristics ] [ Called-Station-Id ] [ PDN-Connection-ID ]
        [ Bearer-Usage ] [ Online ] [ Offline ] * [ TFT-Packet-Filter-Information ]
        * [ Charging-Rule-Report ] * [ Application-Detection-Information ] * [ Event-Trigger ]
        [ Event-Report-Indication ] [ Access-Network-Charging-Address ]
        * [ Access-Network-Charging-Identifier-Gx ] * [ CoA-Information ]
        * [ Usage-Monitoring-Information ] [ NBIFOM-Support ] [ NBIFOM-Mode ]
        [ Default-Access ] [ Origination-Time-Stamp ] [ Maximum-Wait-Time ]
        [ Access-Availability-Change-Reason ] [ Routing-Rule-Install ]
        [ Routing-Rule-Remove ] [ HeNB-Local-IP-Address ] [ UE-Local-IP-Address ]
        [ UDP-Source-Port ] [ TCP-Source-Port ] * [ Presence-Reporting-Area-Information ]
        [ Logical-Access-ID ] [ Physical-Access-ID ] [ 3GPP-PS-Data-Off-Status ] {_TAIL}""",
       f"""
        < Session-Id > [ DRMP ] {{ Auth-Application-Id }} {{ Origin-Host }} {{ Origin-Realm }}
        [ Result-Code ] [ Experimental-Result ] {{ CC-Request-Type }} {{ CC-Request-Number }}
        [ OC-Supported-Features ] [ OC-OLR ] * [ Supported-Features ] [ Bearer-Control-Mode ]
        * [ Event-Trigger ] [ Event-Report-Indication ] [ Origin-State-Id ] {_REDIRECT}
        * [ Charging-Rule-Remove ] * [ Charging-Rule-Install ] [ Charging-Information ]
        [ Online ] [ Offline ] * [ QoS-Information ] [ Revalidation-Time ]
        [ Default-EPS-Bearer-QoS ] [ Default-QoS-Information ] [ Bearer-Usage ]
        * [ Usage-Monitoring-Information ] * [ CSG-Information-Reporting ]
        [ User-CSG-Information ] [ PRA-Install ] [ PRA-Remove ]
        [ Presence-Reporting-Area-Information ] [ Session-Release-Cause ] [ NBIFOM-Support ]
        [ NBIFOM-Mode ] [ Default-Access ] [ RAN-Rule-Support ] * [ Routing-Rule-Report ]
        0*4 [ Conditional-Policy-Information ] [ Removal-Of-Access ] [ IP-CAN-Type ] {_ERR}
        * [ Proxy-Info ] * [ Route-Record ] * [ Load ] * [ AVP ]""", "GxCreditControl"),
    _c("Re-Auth", 258, GX, f"""
        < Session-Id > [ DRMP ] {{ Auth-Application-Id }} {{ Origin-Host }} {{ Origin-Realm }}
        {{ Destination-Realm }} {{ Destination-Host }} {{ Re-Auth-Request-Type }}
        [ Session-Release-Cause ] [ Origin-State-Id ] [ OC-Supported-Features ]
        * [ Event-Trigger ] [ Event-Report-Indication ] * [ Charging-Rule-Remove ]
        * [ Charging-Rule-Install ] [ Default-EPS-Bearer-QoS ] * [ QoS-Information ]
        [ Default-QoS-Information ] [ Revalidation-Time ] * [ Usage-Monitoring-Information ]
        [ PCSCF-Restoration-Indication ] 0*4 [ Conditional-Policy-Information ]
        [ Removal-Of-Access ] [ IP-CAN-Type ] [ PRA-Install ] [ PRA-Remove ]
        * [ CSG-Information-Reporting ] {_TAIL}""",
       f"""
        < Session-Id > [ DRMP ] {{ Origin-Host }} {{ Origin-Realm }} [ Result-Code ]
        [ Experimental-Result ] [ Origin-State-Id ] [ OC-Supported-Features ] [ OC-OLR ]
        [ IP-CAN-Type ] [ RAT-Type ] [ AN-Trusted ] 0*2 [ AN-GW-Address ]
        [ 3GPP-SGSN-MCC-MNC ] [ 3GPP-SGSN-Address ] [ 3GPP-SGSN-IPv6-Address ] [ RAI ]
        [ 3GPP-User-Location-Info ] [ User-Location-Info-Time ] [ NetLoc-Access-Support ]
        [ User-CSG-Information ] [ 3GPP-MS-TimeZone ] [ Default-QoS-Information ]
        * [ Charging-Rule-Report ] {_ERR} * [ Proxy-Info ] * [ AVP ]""", "GxReAuth"),
    # -- Rx, TS 29.214 5.6 --------------------------------------------------------------
    _c("AA", 265, RX, f"""
        < Session-Id > [ DRMP ] {{ Auth-Application-Id }} {{ Origin-Host }} {{ Origin-Realm }}
        {{ Destination-Realm }} [ Destination-Host ] [ IP-Domain-Id ] [ Auth-Session-State ]
        [ AF-Application-Identifier ] * [ Media-Component-Description ]
        [ Service-Info-Status ] [ AF-Charging-Identifier ] [ SIP-Forking-Indication ]
        * [ Specific-Action ] * [ Subscription-Id ] [ OC-Supported-Features ]
        * [ Supported-Features ] [ Reservation-Priority ] [ Framed-IP-Address ]
        [ Framed-IPv6-Prefix ] [ Called-Station-Id ] [ Service-URN ]
        [ Sponsored-Connectivity-Data ] [ MPS-Identifier ] [ GCS-Identifier ]
        [ MCPTT-Identifier ] [ MCVideo-Identifier ] [ IMS-Content-Identifier ]
        [ IMS-Content-Type ] [ Rx-Request-Type ] * [ Required-Access-Info ]
        [ AF-Requested-Data ] [ Pre-emption-Control-Info ]
        [ Origin-State-Id ] {_TAIL}""",
       f"""
        < Session-Id > [ DRMP ] {{ Auth-Application-Id }} {{ Origin-Host }} {{ Origin-Realm }}
        [ Result-Code ] [ Experimental-Result ] [ Auth-Session-State ]
        * [ Access-Network-Charging-Identifier ] [ Access-Network-Charging-Address ]
        [ Acceptable-Service-Info ] 0*2 [ AN-GW-Address ] [ AN-Trusted ]
        [ Service-Authorization-Info ] [ IP-CAN-Type ] [ NetLoc-Access-Support ]
        [ RAT-Type ] * [ Flows ] [ OC-Supported-Features ] [ OC-OLR ]
        * [ Supported-Features ] * [ Subscription-Id ] * [ Class ] {_ERR}
        [ Retry-Interval ] [ Origin-State-Id ] {_REDIRECT} * [ Proxy-Info ] * [ Load ]
        * [ AVP ]""", "RxAA"),
    _c("Re-Auth", 258, RX, f"""
        < Session-Id > [ DRMP ] {{ Origin-Host }} {{ Origin-Realm }} {{ Destination-Realm }}
        {{ Destination-Host }} {{ Auth-Application-Id }} 1* {{ Specific-Action }}
        [ OC-Supported-Features ] * [ Access-Network-Charging-Identifier ]
        [ Access-Network-Charging-Address ] 0*2 [ AN-GW-Address ] [ AN-Trusted ]
        * [ Flows ] * [ Subscription-Id ] [ Abort-Cause ] [ IP-CAN-Type ]
        [ NetLoc-Access-Support ] [ RAT-Type ] [ Sponsored-Connectivity-Data ]
        [ 3GPP-User-Location-Info ] [ User-Location-Info-Time ] [ 3GPP-MS-TimeZone ]
        * [ RAN-NAS-Release-Cause ] [ 3GPP-SGSN-MCC-MNC ] [ 3GPP-TWAN-Identifier ]
        [ TCP-Source-Port ] [ UDP-Source-Port ] [ UE-Local-IP-Address ]
        [ Origin-State-Id ] * [ Class ] {_TAIL}""",
       f"""
        < Session-Id > [ DRMP ] {{ Origin-Host }} {{ Origin-Realm }} [ Result-Code ]
        [ Experimental-Result ] [ OC-Supported-Features ] [ OC-OLR ]
        * [ Media-Component-Description ] [ Service-URN ] [ Origin-State-Id ] * [ Class ]
        {_ERR} {_REDIRECT} * [ Proxy-Info ] * [ AVP ]""", "RxReAuth"),
    _c("Session-Termination", 275, RX, f"""
        < Session-Id > [ DRMP ] {{ Origin-Host }} {{ Origin-Realm }} {{ Destination-Realm }}
        {{ Auth-Application-Id }} {{ Termination-Cause }} [ Destination-Host ]
        [ OC-Supported-Features ] * [ Required-Access-Info ] [ Origin-State-Id ] * [ Class ]
        {_TAIL}""",
       f"""
        < Session-Id > [ DRMP ] {{ Origin-Host }} {{ Origin-Realm }} [ Result-Code ]
        {_ERR} [ OC-Supported-Features ] [ OC-OLR ] [ Sponsored-Connectivity-Data ]
        [ Origin-State-Id ] [ 3GPP-User-Location-Info ] [ User-Location-Info-Time ]
        [ 3GPP-MS-TimeZone ] * [ RAN-NAS-Release-Cause ] [ 3GPP-SGSN-MCC-MNC ]
        [ 3GPP-TWAN-Identifier ] [ TCP-Source-Port ] [ UDP-Source-Port ] [ UE-Local-IP-Address ]
        [ NetLoc-Access-Support ] * [ Class ] {_REDIRECT} * [ Proxy-Info ] * [ AVP ]""",
       "RxSessionTermination"),
    _c("Abort-Session", 274, RX, f"""
        < Session-Id > [ DRMP ] {{ Origin-Host }} {{ Origin-Realm }} {{ Destination-Realm }}
        {{ Destination-Host }} {{ Auth-Application-Id }} [ OC-Supported-Features ]
        {{ Abort-Cause }} [ Origin-State-Id ] {_TAIL}""",
       f"""
        < Session-Id > [ DRMP ] {{ Origin-Host }} {{ Origin-Realm }} [ Result-Code ]
        [ OC-Supported-Features ] [ OC-OLR ] [ Origin-State-Id ] {_ERR} {_REDIRECT}
        * [ Proxy-Info ] * [ AVP ]""", "RxAbortSession"),
    # -- S6a/S6d, TS 29.272 7.2 ---------------------------------------------------------
    _c("Update-Location", 316, S6A, f"""
        {_VS_REQ} {{ Origin-Host }} {{ Origin-Realm }} [ Destination-Host ]
        {{ Destination-Realm }} {{ User-Name }} [ OC-Supported-Features ]
        * [ Supported-Features ] [ Terminal-Information ] {{ RAT-Type }} {{ ULR-Flags }}
        [ UE-SRVCC-Capability ] {{ Visited-PLMN-Id }} [ SGSN-Number ]
        [ Homogeneous-Support-of-IMS-Voice-Over-PS-Sessions ] [ GMLC-Address ]
        * [ Active-APN ] [ Equivalent-PLMN-List ] [ MME-Number-for-MT-SMS ]
        [ SMS-Register-Request ] [ SGs-MME-Identity ] [ Coupled-Node-Diameter-ID ]
        [ Adjacent-PLMNs ] [ Supported-Services ] {_TAIL}""",
       f"""
        < Session-Id > [ DRMP ] [ Vendor-Specific-Application-Id ] [ Result-Code ]
        [ Experimental-Result ] [ Error-Diagnostic ] {{ Auth-Session-State }}
        {{ Origin-Host }} {{ Origin-Realm }} {_OC_ANS} * [ Supported-Features ] [ ULA-Flags ]
        [ Subscription-Data ] * [ Reset-ID ] * [ Failed-AVP ] {_TAIL}"""),
    _c("Cancel-Location", 317, S6A, f"""
        {_VS_REQ} {{ Origin-Host }} {{ Origin-Realm }} {{ Destination-Host }}
        {{ Destination-Realm }} {{ User-Name }} * [ Supported-Features ]
        {{ Cancellation-Type }} [ CLR-Flags ] {_TAIL}""",
       f"""{_VS_ANS} * [ Supported-Features ] * [ Failed-AVP ] {_TAIL}"""),
    _c("Authentication-Information", 318, S6A, f"""
        {_VS_REQ} {{ Origin-Host }} {{ Origin-Realm }} [ Destination-Host ]
        {{ Destination-Realm }} {{ User-Name }} [ OC-Supported-Features ]
        * [ Supported-Features ] [ Requested-EUTRAN-Authentication-Info ]
        [ Requested-UTRAN-GERAN-Authentication-Info ] {{ Visited-PLMN-Id }} [ AIR-Flags ]
        {_TAIL}""",
       f"""
        < Session-Id > [ DRMP ] [ Vendor-Specific-Application-Id ] [ Result-Code ]
        [ Experimental-Result ] [ Error-Diagnostic ] {{ Auth-Session-State }}
        {{ Origin-Host }} {{ Origin-Realm }} {_OC_ANS} * [ Supported-Features ]
        [ Authentication-Info ] [ UE-Usage-Type ] * [ Failed-AVP ] {_TAIL}"""),
    _c("Insert-Subscriber-Data", 319, S6A, f"""
        {_VS_REQ} {{ Origin-Host }} {{ Origin-Realm }} {{ Destination-Host }}
        {{ Destination-Realm }} {{ User-Name }} * [ Supported-Features ]
        {{ Subscription-Data }} [ IDR-Flags ] * [ Reset-ID ] {_TAIL}""",
       f"""{_VS_ANS} * [ Supported-Features ] [ IMS-Voice-Over-PS-Sessions-Supported ]
        [ Last-UE-Activity-Time ] [ RAT-Type ] [ IDA-Flags ] [ EPS-User-State ]
        [ EPS-Location-Information ] [ Local-Time-Zone ] [ Supported-Services ]
        * [ Monitoring-Event-Report ] * [ Monitoring-Event-Config-Status ] * [ Failed-AVP ]
        {_TAIL}"""),
    _c("Delete-Subscriber-Data", 320, S6A, f"""
        {_VS_REQ} {{ Origin-Host }} {{ Origin-Realm }} {{ Destination-Host }}
        {{ Destination-Realm }} {{ User-Name }} * [ Supported-Features ] {{ DSR-Flags }}
        [ SCEF-ID ] * [ Context-Identifier ] [ Trace-Reference ] * [ TS-Code ]
        * [ SS-Code ] {_TAIL}""",
       f"""{_VS_ANS} * [ Supported-Features ] [ DSA-Flags ] * [ Failed-AVP ] {_TAIL}"""),
    _c("Purge-UE", 321, S6A, f"""
        {_VS_REQ} {{ Origin-Host }} {{ Origin-Realm }} [ Destination-Host ]
        {{ Destination-Realm }} {{ User-Name }} [ OC-Supported-Features ] [ PUR-Flags ]
        * [ Supported-Features ] [ EPS-Location-Information ] {_TAIL}""",
       f"""{_VS_ANS} * [ Supported-Features ] {_OC_ANS} [ PUA-Flags ] * [ Failed-AVP ]
        {_TAIL}"""),
    _c("Reset", 322, S6A, f"""
        {_VS_REQ} {{ Origin-Host }} {{ Origin-Realm }} {{ Destination-Host }}
        {{ Destination-Realm }} * [ Supported-Features ] * [ User-Id ] * [ Reset-ID ]
        [ Subscription-Data ] [ Subscription-Data-Deletion ] {_TAIL}""",
       f"""{_VS_ANS} * [ Supported-Features ] * [ Failed-AVP ] {_TAIL}"""),
    _c("Notify", 323, S6A, f"""
        {_VS_REQ} {{ Origin-Host }} {{ Origin-Realm }} [ Destination-Host ]
        {{ Destination-Realm }} {{ User-Name }} [ OC-Supported-Features ]
        * [ Supported-Features ] [ Terminal-Information ] [ MIP6-Agent-Info ]
        [ Visited-Network-Identifier ] [ Context-Identifier ] [ Service-Selection ]
        [ Alert-Reason ] [ UE-SRVCC-Capability ] [ NOR-Flags ]
        [ Homogeneous-Support-of-IMS-Voice-Over-PS-Sessions ]
        [ Maximum-UE-Availability-Time ] * [ Monitoring-Event-Config-Status ]
        [ Emergency-Services ] {_TAIL}""",
       f"""{_VS_ANS} {_OC_ANS} * [ Supported-Features ] * [ Failed-AVP ] {_TAIL}"""),
    # -- S13/S13', TS 29.272 7.2.19 -----------------------------------------------------
    _c("ME-Identity-Check", 324, S13, f"""
        {_VS_REQ} {{ Origin-Host }} {{ Origin-Realm }} [ Destination-Host ]
        {{ Destination-Realm }} {{ Terminal-Information }} [ User-Name ] {_TAIL}""",
       f"""{_VS_ANS} [ Equipment-Status ] * [ Failed-AVP ] {_TAIL}"""),
    # -- S7a/S7d, TS 29.272 7.2.21-24 ---------------------------------------------------
    _c("Update-VCSG-Location", 8388638, S7A, f"""
        {_VS_REQ} {{ Origin-Host }} {{ Origin-Realm }} [ Destination-Host ]
        {{ Destination-Realm }} {{ User-Name }} [ MSISDN ] [ SGSN-Number ]
        * [ Supported-Features ] {{ UVR-Flags }} {_TAIL}""",
       f"""
        < Session-Id > [ DRMP ] [ Vendor-Specific-Application-Id ] [ Result-Code ]
        [ Experimental-Result ] [ Error-Diagnostic ] {{ Auth-Session-State }}
        {{ Origin-Host }} {{ Origin-Realm }} * [ Supported-Features ] [ UVA-Flags ]
        * [ VPLMN-CSG-Subscription-Data ] * [ Failed-AVP ] {_TAIL}"""),
    _c("Cancel-VCSG-Location", 8388642, S7A, f"""
        {_VS_REQ} {{ Origin-Host }} {{ Origin-Realm }} {{ Destination-Host }}
        {{ Destination-Realm }} {{ User-Name }} * [ Supported-Features ]
        {{ Cancellation-Type }} {_TAIL}""",
       f"""{_VS_ANS} * [ Supported-Features ] * [ Failed-AVP ] {_TAIL}"""),
    # -- Sh, TS 29.329 6.1 --------------------------------------------------------------
    _c("User-Data", 306, SH, f"""
        {_VSM_REQ} {{ Origin-Host }} {{ Origin-Realm }} [ Destination-Host ]
        {{ Destination-Realm }} * [ Supported-Features ] {{ User-Identity }}
        [ Wildcarded-Public-Identity ] [ Wildcarded-IMPU ] [ Server-Name ]
        * [ Service-Indication ] 1* {{ Data-Reference }} * [ Identity-Set ]
        [ Requested-Domain ] [ Current-Location ] * [ DSAI-Tag ] [ Session-Priority ]
        [ User-Name ] [ Requested-Nodes ] [ Serving-Node-Indication ]
        [ Pre-paging-Supported ] [ Local-Time-Zone-Indication ] [ UDR-Flags ]
        [ Call-Reference-Info ] [ OC-Supported-Features ] {_TAIL}""",
       f"""{_VSM_ANS} * [ Supported-Features ] [ Wildcarded-Public-Identity ]
        [ Wildcarded-IMPU ] [ Sh-User-Data ] {_OC_ANS} * [ Failed-AVP ] {_TAIL}"""),
    _c("Profile-Update", 307, SH, f"""
        {_VSM_REQ} {{ Origin-Host }} {{ Origin-Realm }} [ Destination-Host ]
        {{ Destination-Realm }} * [ Supported-Features ] {{ User-Identity }}
        [ Wildcarded-Public-Identity ] [ Wildcarded-IMPU ] [ User-Name ]
        {{ Data-Reference }} {{ Sh-User-Data }} [ OC-Supported-Features ] {_TAIL}""",
       f"""{_VSM_ANS} [ Wildcarded-Public-Identity ] [ Wildcarded-IMPU ]
        [ Repository-Data-ID ] [ Data-Reference ] * [ Supported-Features ] {_OC_ANS}
        * [ Failed-AVP ] {_TAIL}"""),
    _c("Subscribe-Notifications", 308, SH, f"""
        {_VSM_REQ} {{ Origin-Host }} {{ Origin-Realm }} [ Destination-Host ]
        {{ Destination-Realm }} * [ Supported-Features ] {{ User-Identity }}
        [ Wildcarded-Public-Identity ] [ Wildcarded-IMPU ] * [ Service-Indication ]
        [ Send-Data-Indication ] [ Server-Name ] {{ Subs-Req-Type }}
        1* {{ Data-Reference }} * [ Identity-Set ] [ Expiry-Time ] * [ DSAI-Tag ]
        [ One-Time-Notification ] [ User-Name ] [ OC-Supported-Features ] {_TAIL}""",
       f"""{_VSM_ANS} [ Wildcarded-Public-Identity ] [ Wildcarded-IMPU ]
        * [ Supported-Features ] [ Sh-User-Data ] [ Expiry-Time ] {_OC_ANS}
        * [ Failed-AVP ] {_TAIL}"""),
    _c("Push-Notification", 309, SH, f"""
        {_VSM_REQ} {{ Origin-Host }} {{ Origin-Realm }} {{ Destination-Host }}
        {{ Destination-Realm }} * [ Supported-Features ] {{ User-Identity }}
        [ Wildcarded-Public-Identity ] [ Wildcarded-IMPU ] [ User-Name ]
        {{ Sh-User-Data }} {_TAIL}""",
       f"""{_VSM_ANS} * [ Supported-Features ] * [ Failed-AVP ] {_TAIL}"""),
    # -- SWx, TS 29.273 8.2.2 -----------------------------------------------------------
    _c("Multimedia-Auth", 303, SWX, f"""
        {_VSM_REQ} {{ Origin-Host }} {{ Origin-Realm }} {{ Destination-Realm }}
        [ Destination-Host ] {{ User-Name }} [ OC-Supported-Features ]
        {{ SIP-Auth-Data-Item }} {{ SIP-Number-Auth-Items }} {{ RAT-Type }} [ ANID ]
        [ Visited-Network-Identifier ] [ Terminal-Information ] * [ Supported-Features ]
        {_TAIL}""",
       f"""{_VSM_ANS} [ User-Name ] [ SIP-Number-Auth-Items ] * [ SIP-Auth-Data-Item ]
        [ 3GPP-AAA-Server-Name ] {_OC_ANS} * [ Supported-Features ] * [ Failed-AVP ]
        {_TAIL}""", "SWxMultimediaAuth"),
    _c("Server-Assignment", 301, SWX, f"""
        {_VSM_REQ} {{ Origin-Host }} {{ Origin-Realm }} [ Destination-Host ]
        {{ Destination-Realm }} {{ User-Name }} [ OC-Supported-Features ]
        * [ Supported-Features ] {{ Server-Assignment-Type }} [ Service-Selection ]
        [ Context-Identifier ] [ MIP6-Agent-Info ] [ Visited-Network-Identifier ]
        [ Active-APN ] [ Terminal-Information ] [ Emergency-Services ] {_TAIL}""",
       f"""{_VSM_ANS} [ User-Name ] * [ Supported-Features ] [ Non-3GPP-User-Data ]
        [ 3GPP-AAA-Server-Name ] {_OC_ANS} * [ Failed-AVP ] {_TAIL}""",
       "SWxServerAssignment"),
    _c("Registration-Termination", 304, SWX, f"""
        {_VSM_REQ} {{ Origin-Host }} {{ Origin-Realm }} {{ Destination-Host }}
        {{ Destination-Realm }} {{ User-Name }} * [ Supported-Features ]
        {{ Deregistration-Reason }} {_TAIL}""",
       f"""{_VSM_ANS} * [ Supported-Features ] * [ Failed-AVP ] {_TAIL}""",
       "SWxRegistrationTermination"),
    _c("Push-Profile", 305, SWX, f"""
        {_VSM_REQ} {{ Origin-Host }} {{ Origin-Realm }} {{ Destination-Host }}
        {{ Destination-Realm }} {{ User-Name }} * [ Supported-Features ]
        [ Non-3GPP-User-Data ] [ PPR-Flags ] {_TAIL}""",
       f"""{_VSM_ANS} * [ Supported-Features ] [ Local-Time-Zone ] * [ Failed-AVP ]
        {_TAIL}""", "SWxPushProfile"),
    # -- S6b, TS 29.273 9.2.2 -----------------------------------------------------------
    _c("AA", 265, S6B, f"""
        < Session-Id > [ DRMP ] {{ Auth-Application-Id }} {{ Origin-Host }} {{ Origin-Realm }}
        {{ Destination-Realm }} {{ Auth-Request-Type }} [ Destination-Host ] [ User-Name ]
        [ OC-Supported-Features ] [ MIP6-Agent-Info ] [ MIP6-Feature-Vector ]
        [ Visited-Network-Identifier ] [ QoS-Capability ] [ Service-Selection ]
        [ MIP6-Home-Link-Prefix ] [ RAT-Type ] * [ Supported-Features ]
        [ UE-Local-IP-Address ] [ Origination-Time-Stamp ] [ Maximum-Wait-Time ] {_TAIL}""",
       f"""
        < Session-Id > [ DRMP ] {{ Auth-Application-Id }} {{ Auth-Request-Type }}
        [ Result-Code ] [ Experimental-Result ] {{ Origin-Host }} {{ Origin-Realm }}
        [ User-Name ] [ MIP6-Agent-Info ] [ MIP6-Feature-Vector ] [ Service-Selection ]
        [ Session-Timeout ] [ APN-Configuration ] [ QoS-Resources ] [ Trace-Info ]
        {_OC_ANS} * [ Supported-Features ] {_REDIRECT} {_ERR} * [ Proxy-Info ] * [ AVP ]""",
       "S6bAA"),
    _c("Diameter-EAP", 268, S6B, f"""
        < Session-Id > [ DRMP ] {{ Auth-Application-Id }} {{ Origin-Host }} {{ Origin-Realm }}
        {{ Destination-Realm }} {{ Auth-Request-Type }} [ Destination-Host ] [ User-Name ]
        [ Calling-Station-Id ] {{ EAP-Payload }} [ RAT-Type ] [ Service-Selection ]
        [ MIP6-Feature-Vector ] [ QoS-Capability ] [ Visited-Network-Identifier ]
        [ AAA-Failure-Indication ] * [ Supported-Features ] [ UE-Local-IP-Address ]
        [ OC-Supported-Features ] [ Terminal-Information ] [ Emergency-Services ] {_TAIL}""",
       f"""
        < Session-Id > [ DRMP ] {{ Auth-Application-Id }} {{ Auth-Request-Type }}
        [ Result-Code ] [ Experimental-Result ] {{ Origin-Host }} {{ Origin-Realm }}
        [ User-Name ] [ EAP-Payload ] [ EAP-Master-Session-Key ] [ Mobile-Node-Identifier ]
        [ MIP6-Feature-Vector ] [ Service-Selection ] [ Session-Timeout ]
        [ Authorization-Lifetime ] [ Auth-Grace-Period ] [ Re-Auth-Request-Type ]
        [ APN-Configuration ] [ Trace-Info ] {_OC_ANS} * [ Supported-Features ] {_ERR}
        * [ Proxy-Info ] * [ AVP ]""", "S6bDiameterEAP"),
    _c("Session-Termination", 275, S6B, f"""
        < Session-Id > [ DRMP ] {{ Origin-Host }} {{ Origin-Realm }} {{ Destination-Realm }}
        [ Destination-Host ] {{ Auth-Application-Id }} {{ Termination-Cause }} [ User-Name ]
        [ OC-Supported-Features ] {_TAIL}""",
       f"""
        < Session-Id > [ DRMP ] {{ Origin-Host }} {{ Origin-Realm }} {{ Result-Code }}
        {_ERR} {_OC_ANS} * [ Proxy-Info ] * [ AVP ]""", "S6bSessionTermination"),
    _c("Abort-Session", 274, S6B, f"""
        < Session-Id > [ DRMP ] {{ Origin-Host }} {{ Origin-Realm }} {{ Destination-Realm }}
        {{ Destination-Host }} {{ Auth-Application-Id }} [ User-Name ] [ Auth-Session-State ]
        {_TAIL}""",
       f"""
        < Session-Id > [ DRMP ] {{ Origin-Host }} {{ Origin-Realm }} {{ Result-Code }}
        {_ERR} * [ Proxy-Info ] * [ AVP ]""", "S6bAbortSession"),
    _c("Re-Auth", 258, S6B, f"""
        < Session-Id > [ DRMP ] {{ Origin-Host }} {{ Origin-Realm }} {{ Destination-Realm }}
        {{ Destination-Host }} {{ Auth-Application-Id }} {{ Re-Auth-Request-Type }}
        [ User-Name ] {_TAIL}""",
       f"""
        < Session-Id > [ DRMP ] {{ Origin-Host }} {{ Origin-Realm }} {{ Result-Code }}
        {_ERR} * [ Proxy-Info ] * [ AVP ]""", "S6bReAuth"),
    # -- Sd, TS 29.212 5b.6 -------------------------------------------------------------
    _c("TDF-Session", 8388637, SD, f"""
        < Session-Id > [ DRMP ] {{ Auth-Application-Id }} {{ Origin-Host }} {{ Origin-Realm }}
        {{ Destination-Realm }} {{ Destination-Host }} [ Origin-State-Id ]
        [ OC-Supported-Features ] * [ Subscription-Id ] * [ Supported-Features ]
        [ Framed-IP-Address ] [ Framed-IPv6-Prefix ] [ Called-Station-Id ] [ IP-CAN-Type ]
        [ RAT-Type ] [ AN-Trusted ] [ 3GPP-User-Location-Info ] [ User-Equipment-Info ]
        [ 3GPP-MS-TimeZone ] * [ ADC-Rule-Install ] [ Revalidation-Time ]
        * [ Usage-Monitoring-Information ] * [ CSG-Information-Reporting ]
        * [ Event-Trigger ] {_TAIL}""",
       f"""
        < Session-Id > [ DRMP ] {{ Origin-Host }} {{ Origin-Realm }} [ Result-Code ]
        [ Experimental-Result ] [ OC-Supported-Features ] [ OC-OLR ]
        * [ Supported-Features ] [ Origin-State-Id ] {_ERR} {_REDIRECT} * [ Proxy-Info ]
        * [ Load ] * [ AVP ]"""),
    _c("Credit-Control", 272, SD, f"""
        < Session-Id > [ DRMP ] {{ Auth-Application-Id }} {{ Origin-Host }} {{ Origin-Realm }}
        {{ Destination-Realm }} {{ CC-Request-Type }} {{ CC-Request-Number }}
        [ Destination-Host ] [ Origin-State-Id ] [ OC-Supported-Features ]
        * [ Supported-Features ] [ Framed-IP-Address ] [ Framed-IPv6-Prefix ]
        * [ Subscription-Id ] [ Called-Station-Id ] * [ Application-Detection-Information ]
        * [ Usage-Monitoring-Information ] * [ Event-Trigger ] * [ ADC-Rule-Report ]
        {_TAIL}""",
       f"""
        < Session-Id > [ DRMP ] {{ Auth-Application-Id }} {{ Origin-Host }} {{ Origin-Realm }}
        [ Result-Code ] [ Experimental-Result ] {{ CC-Request-Type }} {{ CC-Request-Number }}
        [ OC-Supported-Features ] [ OC-OLR ] * [ Supported-Features ]
        * [ ADC-Rule-Remove ] * [ ADC-Rule-Install ] * [ Event-Trigger ]
        * [ Usage-Monitoring-Information ] [ Revalidation-Time ] [ Origin-State-Id ]
        {_REDIRECT} {_ERR} * [ Proxy-Info ] * [ Route-Record ] * [ Load ] * [ AVP ]""",
       "SdCreditControl"),
    _c("Re-Auth", 258, SD, f"""
        < Session-Id > [ DRMP ] {{ Auth-Application-Id }} {{ Origin-Host }} {{ Origin-Realm }}
        {{ Destination-Realm }} {{ Destination-Host }} {{ Re-Auth-Request-Type }}
        [ Session-Release-Cause ] [ Origin-State-Id ] [ OC-Supported-Features ]
        * [ Event-Trigger ] * [ ADC-Rule-Remove ] * [ ADC-Rule-Install ]
        [ Revalidation-Time ] * [ Usage-Monitoring-Information ] {_TAIL}""",
       f"""
        < Session-Id > [ DRMP ] {{ Origin-Host }} {{ Origin-Realm }} [ Result-Code ]
        [ Experimental-Result ] [ OC-Supported-Features ] [ OC-OLR ] [ Origin-State-Id ]
        * [ ADC-Rule-Report ] {_ERR} {_REDIRECT} * [ Proxy-Info ] * [ AVP ]""",
       "SdReAuth"),
    # -- T6a/T6b, TS 29.128 6.2 ---------------------------------------------------------
    _c("Configuration-Information", 8388718, T6A, f"""
        < Session-Id > [ DRMP ] {{ Auth-Session-State }} {{ Origin-Host }} {{ Origin-Realm }}
        [ Destination-Host ] {{ Destination-Realm }} [ OC-Supported-Features ]
        {{ User-Identifier }} * [ Supported-Features ] * [ Monitoring-Event-Configuration ]
        [ CIR-Flags ] * [ AESE-Communication-Pattern ] [ Group-Reporting-Guard-Timer ]
        {_TAIL}""",
       f"""{_T6_ANS} {_OC_ANS} * [ Supported-Features ] * [ Monitoring-Event-Report ]
        * [ Monitoring-Event-Config-Status ] * [ AESE-Communication-Pattern-Config-Status ]
        * [ Supported-Services ] [ S6t-HSS-Cause ] * [ Failed-AVP ] {_TAIL}"""),
    _c("Reporting-Information", 8388719, T6A, f"""
        < Session-Id > [ DRMP ] {{ Auth-Session-State }} {{ Origin-Host }} {{ Origin-Realm }}
        {{ Destination-Host }} {{ Destination-Realm }} [ OC-Supported-Features ]
        * [ Supported-Features ] [ Group-Reporting-Guard-Timer ]
        * [ Monitoring-Event-Report ] {_TAIL}""",
       f"""{_T6_ANS} {_OC_ANS} * [ Supported-Features ] * [ Monitoring-Event-Report-Status ]
        * [ Failed-AVP ] {_TAIL}"""),
    _c("Connection-Management", 8388732, T6A, f"""
        < Session-Id > [ DRMP ] {{ Auth-Session-State }} {{ Origin-Host }} {{ Origin-Realm }}
        {{ Destination-Host }} {{ Destination-Realm }} {{ User-Identifier }}
        {{ Bearer-Identifier }} [ OC-Supported-Features ] * [ Supported-Features ]
        [ CMR-Flags ] [ Maximum-UE-Availability-Time ] {{ Connection-Action }}
        [ Service-Selection ] [ Serving-PLMN-Rate-Control ] [ Extended-PCO ]
        [ 3GPP-Charging-Characteristics ] [ RAT-Type ] [ Terminal-Information ]
        [ Visited-PLMN-Id ] {_TAIL}""",
       f"""{_T6_ANS} {_OC_ANS} * [ Supported-Features ] [ PDN-Connection-Charging-ID ]
        [ Extended-PCO ] * [ Failed-AVP ] {_TAIL}"""),
    _c("MO-Data", 8388733, T6A, f"""
        < Session-Id > [ DRMP ] {{ Auth-Session-State }} {{ Origin-Host }} {{ Origin-Realm }}
        [ Destination-Host ] {{ Destination-Realm }} [ OC-Supported-Features ]
        {{ User-Identifier }} {{ Bearer-Identifier }} [ Non-IP-Data ]
        * [ Supported-Features ] {_TAIL}""",
       f"""{_T6_ANS} {_OC_ANS} * [ Supported-Features ] * [ Failed-AVP ] {_TAIL}"""),
    _c("MT-Data", 8388734, T6A, f"""
        < Session-Id > [ DRMP ] {{ Auth-Session-State }} {{ Origin-Host }} {{ Origin-Realm }}
        {{ Destination-Host }} {{ Destination-Realm }} {{ User-Identifier }}
        {{ Bearer-Identifier }} [ OC-Supported-Features ] [ Non-IP-Data ]
        [ SCEF-Wait-Time ] [ Maximum-Retransmission-Time ] * [ Supported-Features ]
        {_TAIL}""",
       f"""{_T6_ANS} {_OC_ANS} [ Requested-Retransmission-Time ] * [ Supported-Features ]
        * [ Failed-AVP ] {_TAIL}"""),
]
# fmt: on
