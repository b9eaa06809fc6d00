"""Capabilities exchange (RFC 6733 5.3): building CER/CEA, reading them, deciding admission.

Pure apart from the codec: the Node calls `check_cer` on an inbound CER and `check_cea` on the
CEA to its own CER, and gets back either the peer's capabilities or the Result-Code to refuse
with (3010 unknown peer, 5010 no common application, 5017 no common security, 5005/5009 for a
malformed Vendor-Specific-Application-Id).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from chargegw.codec import Avp, CodecError, Message, class_for, get_dictionary
from chargegw.codec.constants import CMD_CER, CMD_DPR, CMD_DWR, ResultCode
from chargegw.codec.errors import DiameterError
from chargegw.peer.config import RELAY_APP_ID, AllowRule, NodeConfig, VendorApp


@dataclass(slots=True)
class PeerCapabilities:
    """What a peer told us in its CER or CEA."""

    origin_host: str
    origin_realm: str
    host_ip_addresses: list[Any] = field(default_factory=list)
    vendor_id: int = 0
    product_name: str = ""
    firmware_revision: int | None = None
    origin_state_id: int | None = None
    supported_vendors: set[int] = field(default_factory=set)
    auth_apps: set[int] = field(default_factory=set)
    acct_apps: set[int] = field(default_factory=set)
    vendor_apps: list[VendorApp] = field(default_factory=list)
    inband_security: set[int] = field(default_factory=set)
    result_code: int | None = None  # CEA only

    def app_ids(self) -> set[int]:
        """Every id advertised; the Vendor-Id of a VSAI is ignored, as the RFC says."""
        ids = self.auth_apps | self.acct_apps
        ids.update(v.app_id for v in self.vendor_apps)
        return ids

    @property
    def relay(self) -> bool:
        return RELAY_APP_ID in self.auth_apps or RELAY_APP_ID in self.acct_apps


class CapabilitiesError(DiameterError):
    """Refuse the CER (or the CEA): answer/close with result_code."""

    def __init__(
        self,
        result_code: int,
        message: str,
        failed_avp: Avp | list[Avp] | None = None,
        caps: PeerCapabilities | None = None,
    ) -> None:
        failed = [failed_avp] if isinstance(failed_avp, Avp) else failed_avp
        super().__init__(result_code, message, failed)
        self.caps = caps


# -- reading -----------------------------------------------------------------------------------


def _str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def parse_capabilities(msg: Message) -> PeerCapabilities:
    """CER or CEA -> PeerCapabilities; raises CapabilitiesError for 5004/5005/5009 faults.
    Reading a value never raises (an odd octet reads as a surrogate), so the values are
    judged first: a DiameterIdentity with a space, bad UTF-8, an address of the wrong
    length get 5004 with Failed-AVP, not a peer named by garbage."""
    try:
        msg.check_values()
        host = msg.get("Origin-Host")
        realm = msg.get("Origin-Realm")
        if not host or not realm:
            missing = "Origin-Host" if not host else "Origin-Realm"
            raise CapabilitiesError(
                ResultCode.DIAMETER_MISSING_AVP, f"{missing} missing", Avp.new(missing, "")
            )
        caps = PeerCapabilities(origin_host=_str(host), origin_realm=_str(realm))
        caps.host_ip_addresses = list(msg.get_all("Host-IP-Address"))
        caps.vendor_id = int(msg.get("Vendor-Id") or 0)
        caps.product_name = _str(msg.get("Product-Name"))
        fw = msg.get("Firmware-Revision")
        caps.firmware_revision = None if fw is None else int(fw)
        osi = msg.get("Origin-State-Id")
        caps.origin_state_id = None if osi is None else int(osi)
        caps.supported_vendors = {int(v) for v in msg.get_all("Supported-Vendor-Id")}
        caps.auth_apps = {int(v) for v in msg.get_all("Auth-Application-Id")}
        caps.acct_apps = {int(v) for v in msg.get_all("Acct-Application-Id")}
        caps.inband_security = {int(v) for v in msg.get_all("Inband-Security-Id")}
        for avp in msg.find_code(260):
            group = avp.value
            vendors = group.get_all("Vendor-Id")
            auth = group.get_all("Auth-Application-Id")
            acct = group.get_all("Acct-Application-Id")
            if not auth and not acct:
                raise CapabilitiesError(
                    ResultCode.DIAMETER_MISSING_AVP,
                    "Vendor-Specific-Application-Id without Auth- or Acct-Application-Id",
                    [Avp.new("Auth-Application-Id", 0), Avp.new("Acct-Application-Id", 0)],
                )
            if len(auth) + len(acct) > 1:
                raise CapabilitiesError(
                    ResultCode.DIAMETER_AVP_OCCURS_TOO_MANY_TIMES,
                    "Vendor-Specific-Application-Id with more than one application id",
                    avp.copy(),
                )
            vendor = int(vendors[0]) if vendors else 0
            if auth:
                caps.vendor_apps.append(VendorApp(vendor, int(auth[0])))
            else:
                caps.vendor_apps.append(VendorApp(vendor, int(acct[0]), acct=True))
        rc = msg.get("Result-Code")
        caps.result_code = None if rc is None else int(rc)
        return caps
    except CodecError as exc:
        raise CapabilitiesError(
            exc.result_code, f"undecodable capabilities: {exc}", exc.failed_avps
        ) from None


# -- deciding ----------------------------------------------------------------------------------


def is_allowed(
    host: str,
    realm: str,
    rules: Iterable[AllowRule] | None,
    configured: Iterable[str] = (),
    *,
    loopback_ok: bool = False,
) -> bool:
    """Configured peers always; otherwise the allowlist (None admits anyone), or any peer on a
    loopback connection when `loopback_ok`. Case-insensitive."""
    h = host.lower()
    if any(h == name.lower() for name in configured):
        return True
    if rules is None or loopback_ok:
        return True
    r = realm.lower()
    return any(
        fnmatchcase(h, rule.host.lower()) and fnmatchcase(r, rule.realm.lower()) for rule in rules
    )


def common_applications(ours: set[int], we_relay: bool, caps: PeerCapabilities) -> frozenset[int]:
    """The applications both sides can use; RELAY_APP_ID inside means "all" (a relay is involved).

    Empty means 5010 DIAMETER_NO_COMMON_APPLICATION.
    """
    theirs = caps.app_ids()
    if not theirs:
        return frozenset()
    if caps.relay or we_relay:
        return frozenset((ours | theirs) | {RELAY_APP_ID})
    return frozenset(ours & theirs)


def common_security(ours: Iterable[int], caps: PeerCapabilities) -> bool:
    theirs = caps.inband_security or {0}
    return bool(set(ours or [0]) & theirs)


def check_cer(
    msg: Message, config: NodeConfig, configured: Iterable[str] = (), *, from_loopback: bool = False
) -> tuple[PeerCapabilities, frozenset[int]]:
    """Admit or refuse an inbound CER (`from_loopback`: it came over a loopback address)."""
    caps = parse_capabilities(msg)
    loopback_ok = from_loopback and config.allow_loopback
    if not is_allowed(
        caps.origin_host, caps.origin_realm, config.allow, configured, loopback_ok=loopback_ok
    ):
        raise CapabilitiesError(
            ResultCode.DIAMETER_UNKNOWN_PEER, f"peer {caps.origin_host!r} is not allowed", caps=caps
        )
    if caps.origin_host.lower() == config.origin_host.lower():
        raise CapabilitiesError(
            ResultCode.DIAMETER_UNABLE_TO_COMPLY, "CER carries our own Origin-Host", caps=caps
        )
    return caps, _apps_and_security(caps, config)


def check_cea(
    msg: Message, config: NodeConfig, expected_host: str
) -> tuple[PeerCapabilities, frozenset[int]]:
    """Accept or refuse the CEA to our CER (the initiator applies the same intersection)."""
    caps = parse_capabilities(msg)
    rc = caps.result_code
    if rc is None or not 2000 <= rc < 3000:
        raise CapabilitiesError(
            rc or ResultCode.DIAMETER_UNABLE_TO_COMPLY, f"CEA Result-Code {rc}", caps=caps
        )
    if caps.origin_host.lower() != expected_host.lower():
        raise CapabilitiesError(
            ResultCode.DIAMETER_UNKNOWN_PEER,
            f"CEA Origin-Host {caps.origin_host!r} is not the configured {expected_host!r}",
            caps=caps,
        )
    return caps, _apps_and_security(caps, config)


def _apps_and_security(caps: PeerCapabilities, config: NodeConfig) -> frozenset[int]:
    ours = config.advertised_app_ids() - {RELAY_APP_ID}
    common = common_applications(ours, config.relay, caps)
    if not common:
        raise CapabilitiesError(
            ResultCode.DIAMETER_NO_COMMON_APPLICATION, "no common application", caps=caps
        )
    if not common_security(config.inband_security, caps):
        raise CapabilitiesError(
            ResultCode.DIAMETER_NO_COMMON_SECURITY, "no common Inband-Security-Id", caps=caps
        )
    return common


# -- building ----------------------------------------------------------------------------------


def _ip(addr: str) -> Any:
    return ipaddress.ip_address(addr)


def _capability_avps(config: NodeConfig, host_ips: Iterable[str] | None) -> dict[str, Any]:
    ips = list(host_ips) if host_ips else list(config.host_ip_addresses) or ["127.0.0.1"]
    auth = list(dict.fromkeys(config.auth_apps))
    if config.relay and RELAY_APP_ID not in auth:
        auth.append(RELAY_APP_ID)
    avps: dict[str, Any] = {
        "Origin-Host": config.origin_host,
        "Origin-Realm": config.origin_realm,
        "Host-IP-Address": [_ip(a) for a in ips],
        "Vendor-Id": config.vendor_id,
        "Product-Name": config.product_name,
        "Origin-State-Id": config.origin_state_id,
    }
    if config.supported_vendors:
        avps["Supported-Vendor-Id"] = list(dict.fromkeys(config.supported_vendors))
    if auth:
        avps["Auth-Application-Id"] = auth
    if config.acct_apps:
        avps["Acct-Application-Id"] = list(dict.fromkeys(config.acct_apps))
    vsai = []
    for v in config.vendor_apps():
        key = "acct_application_id" if v.acct else "auth_application_id"
        vsai.append({"vendor_id": v.vendor_id, key: v.app_id})
    if vsai:
        avps["Vendor-Specific-Application-Id"] = vsai
    if config.inband_security:
        avps["Inband-Security-Id"] = list(config.inband_security)
    if config.firmware_revision is not None:
        avps["Firmware-Revision"] = config.firmware_revision
    return avps


def build_cer(config: NodeConfig, host_ips: Iterable[str] | None = None) -> Message:
    d = get_dictionary()
    return class_for(d, 0, CMD_CER, True)(**_capability_avps(config, host_ips))


def build_cea(
    config: NodeConfig,
    cer: Message | None,
    result_code: int = ResultCode.DIAMETER_SUCCESS,
    *,
    host_ips: Iterable[str] | None = None,
    error_message: str | None = None,
    failed_avp: Avp | list[Avp] | None = None,
    hop_by_hop: int = 0,
    end_to_end: int = 0,
) -> Message:
    """CEA listing all our applications (RFC: a hint, not only the common ones)."""
    d = get_dictionary()
    avps = _capability_avps(config, host_ips)
    klass = class_for(d, 0, CMD_CER, False)
    flags = 0x20 if 3000 <= result_code < 4000 else 0
    rc: dict[str, Any] = {"Result-Code": int(result_code)}
    cea = klass(
        flags=flags,
        hop_by_hop=cer.hop_by_hop if cer is not None else hop_by_hop,
        end_to_end=cer.end_to_end if cer is not None else end_to_end,
        **rc,
        **avps,
    )
    if error_message:
        cea.set("Error-Message", error_message)
    if failed_avp is not None:
        inner = failed_avp if isinstance(failed_avp, list) else [failed_avp]
        cea.set("Failed-AVP", [a.copy() for a in inner])
    return cea


def build_dwr(config: NodeConfig) -> Message:
    return class_for(get_dictionary(), 0, CMD_DWR, True)(
        origin_host=config.origin_host,
        origin_realm=config.origin_realm,
        origin_state_id=config.origin_state_id,
    )


def build_dwa(config: NodeConfig, dwr: Message) -> Message:
    return class_for(get_dictionary(), 0, CMD_DWR, False)(
        hop_by_hop=dwr.hop_by_hop,
        end_to_end=dwr.end_to_end,
        result_code=ResultCode.DIAMETER_SUCCESS,
        origin_host=config.origin_host,
        origin_realm=config.origin_realm,
        origin_state_id=config.origin_state_id,
    )


def build_dpr(config: NodeConfig, cause: int) -> Message:
    return class_for(get_dictionary(), 0, CMD_DPR, True)(
        origin_host=config.origin_host,
        origin_realm=config.origin_realm,
        disconnect_cause=int(cause),
    )


def build_dpa(config: NodeConfig, dpr: Message) -> Message:
    return class_for(get_dictionary(), 0, CMD_DPR, False)(
        hop_by_hop=dpr.hop_by_hop,
        end_to_end=dpr.end_to_end,
        result_code=ResultCode.DIAMETER_SUCCESS,
        origin_host=config.origin_host,
        origin_realm=config.origin_realm,
    )
