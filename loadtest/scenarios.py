"""Scenarios: what one simulated session sends, as named presets or a TOML scenario file.

A scenario kind is a *flow*: the ordered request templates one session sends, each answered
before the next (one request outstanding per session, RFC 8506 7), with `interval` seconds
between steps. The request number of step i is i (CC-Request-Number for Gy, Accounting-Record-
Number for Rf). A `mix` picks a flow per session by weight.

Presets: gy (CCR-I, `updates` x CCR-U, CCR-T, TS 32.299 MSCC and PS-Information), gy-event
(one CCR-EVENT with Requested-Action), rf (ACR START, `updates` x INTERIM, STOP), sy (SLR then
STR), test_app (freeDiameter's Test-Request, as fd-client sends it), mix (a weighted blend of
the others).

Scenario file (TOML):

    [scenario]
    kind = "mix"                 # or any preset name
    updates = 2                  # defaults for every flow below
    interval = 0.0
    [[scenario.flows]]
    kind = "gy"
    weight = 70
    rating_groups = [1, 100]
    [[scenario.flows]]
    kind = "rf"
    weight = 30
    [subscribers]
    base = 4670000000000         # or: csv = "subs.csv" (first column; one length for all)
    count = 10000
"""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from chargegw.codec import Avp, Message
from chargegw.codec.commands import (
    AccountingRequest,
    CreditControlRequest,
    SpendingLimitRequest,
    SySessionTerminationRequest,
)

from .wire import (
    AVP_ACCOUNTING_RECORD_NUMBER,
    AVP_CC_REQUEST_NUMBER,
    SID_MARKER,
    SUB_MARK_CHAR,
    TEST_APP,
    TEST_AVP,
    TEST_CMD,
    TEST_VENDOR,
    Template,
)

PRESETS = ("gy", "gy-event", "rf", "sy", "test_app", "mix")
APP_GY, APP_RF, APP_SY = 4, 3, 16777302
VENDOR_3GPP = 10415


@dataclass
class FlowSpec:
    """One flow's parameters; every field may be set in the scenario file."""

    kind: str = "gy"
    weight: float = 1.0
    updates: int = 1
    interval: float = 0.0  # seconds between the steps of one session
    rating_groups: list[int] = field(default_factory=lambda: [100])
    service_identifier: int | None = None
    used_octets: int = 1_000_000  # Used-Service-Unit per rating group per report
    requested_octets: int = 0  # 0: an empty Requested-Service-Unit (the OCS picks the quota)
    service_context_id: str = "32251@3gpp.org"
    requested_action: int = 0  # gy-event: 0 DIRECT_DEBITING, 1 REFUND, 2 CHECK_BALANCE, 3 PRICE
    event_units: int = 1  # gy-event: CC-Service-Specific-Units requested
    policy_counters: list[str] = field(default_factory=lambda: ["monthly-spend"])
    ps_information: bool = True  # Service-Information/PS-Information (3GPP, M bit): off for
    # a plain RFC 4006 server, which answers 5001 to AVPs it does not know


@dataclass
class Scenario:
    """The flows (one unless kind is mix) and the subscriber population."""

    kind: str = "gy"
    flows: list[FlowSpec] = field(default_factory=lambda: [FlowSpec()])
    msisdn_base: int = 4670000000000
    subscribers: int = 10000
    subscriber_list: list[str] | None = None  # from a CSV; all of one length

    @property
    def sub_width(self) -> int:
        if self.subscriber_list:
            return len(self.subscriber_list[0])
        return len(str(self.msisdn_base + max(self.subscribers - 1, 0)))

    def subscriber(self, n: int) -> bytes:
        if self.subscriber_list:
            return self.subscriber_list[n % len(self.subscriber_list)].encode()
        return str(self.msisdn_base + n % max(self.subscribers, 1)).zfill(self.sub_width).encode()

    def applications(self) -> set[str]:
        return {f.kind for f in self.flows}


def preset(kind: str, **overrides: Any) -> Scenario:
    """A named preset; `mix` blends gy 60, gy-event 10, rf 20, sy 10."""
    if kind not in PRESETS:
        raise ValueError(f"unknown scenario {kind!r}; presets: {', '.join(PRESETS)}")
    known = {f.name for f in fields(FlowSpec)}
    flow_kw = {k: v for k, v in overrides.items() if k in known and v is not None}
    if kind == "mix":
        flows = [
            FlowSpec(kind=k, weight=w, **flow_kw)
            for k, w in (("gy", 60), ("gy-event", 10), ("rf", 20), ("sy", 10))
        ]
    else:
        flows = [FlowSpec(kind=kind, **flow_kw)]
    return Scenario(kind=kind, flows=flows)


def load_scenario_file(path: str | Path, **defaults: Any) -> Scenario:
    """Read a TOML scenario file; `defaults` (from flags) fill what the file leaves out."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"scenario file {p}: {exc}") from exc
    sc = doc.get("scenario", {})
    known = {f.name for f in fields(FlowSpec)}
    unknown = set(sc) - known - {"flows"}
    if unknown:
        raise ValueError(f"scenario file {p}: unknown keys {sorted(unknown)}")
    base_kw = {k: v for k, v in defaults.items() if k in known and v is not None}
    base_kw.update({k: v for k, v in sc.items() if k in known})
    kind = base_kw.get("kind", "gy")
    if "flows" in sc:
        flows = []
        for i, f in enumerate(sc["flows"]):
            bad = set(f) - known
            if bad:
                raise ValueError(f"scenario file {p}: flows[{i}] unknown keys {sorted(bad)}")
            flows.append(FlowSpec(**{**base_kw, **f}))
        kind = "mix" if len(flows) > 1 else flows[0].kind
    else:
        scn = preset(kind, **{k: v for k, v in base_kw.items() if k != "kind"})
        flows = scn.flows
    for f in flows:
        if f.kind not in PRESETS or f.kind == "mix":
            raise ValueError(f"scenario file {p}: unknown flow kind {f.kind!r}")
    out = Scenario(kind=kind, flows=flows)
    subs = doc.get("subscribers", {})
    if "csv" in subs:
        out.subscriber_list = read_subscriber_csv(p.parent / subs["csv"])
    out.msisdn_base = int(subs.get("base", out.msisdn_base))
    out.subscribers = int(subs.get("count", out.subscribers))
    return out


def read_subscriber_csv(path: str | Path) -> list[str]:
    """First column of each row ('#' comments skipped); all entries must share one length,
    because the subscriber is patched into the template as a fixed-width field."""
    with open(path, newline="") as fh:
        rows = [r[0].strip() for r in csv.reader(fh) if r and r[0].strip()]
    subs = [r for r in rows if not r.startswith("#") and r.isdigit()]
    if not subs:
        raise ValueError(f"subscriber CSV {path}: no numeric entries in the first column")
    if len({len(s) for s in subs}) != 1:
        raise ValueError(f"subscriber CSV {path}: entries must all have the same length")
    return subs


@dataclass
class Identity:
    origin_host: str = "load.localdomain"
    origin_realm: str = "localdomain"
    destination_realm: str = "localdomain"
    destination_host: str | None = None


def _sid(ident: Identity, tag: str) -> str:
    return f"{ident.origin_host};{tag};{SID_MARKER.decode()}"


def _ps_information(on: bool = True) -> dict[str, Any]:
    if not on:
        return {}
    return {
        "service_information": {
            "ps_information": {
                "3GPP-Charging-Id": 0x1234ABCD,
                "3GPP-PDP-Type": 0,
                "pdp_address": ["10.45.0.7"],
                "sgsn_address": ["192.0.2.10"],
                "3GPP-SGSN-MCC-MNC": "24001",
                "called_station_id": "internet",
                "3GPP-RAT-Type": b"\x06",
            }
        }
    }


def _gy_flow(f: FlowSpec, ident: Identity, tag: str, sub: str, w: int) -> list[Template]:
    def mscc(rsu: bool, usu: bool) -> list[dict[str, Any]]:
        out = []
        for rg in f.rating_groups:
            m: dict[str, Any] = {"rating_group": rg}
            if f.service_identifier is not None:
                m["service_identifier"] = [f.service_identifier]
            if rsu:
                m["requested_service_unit"] = (
                    {"cc_total_octets": f.requested_octets} if f.requested_octets else {}
                )
            if usu:
                m["used_service_unit"] = [{"cc_total_octets": f.used_octets}]
            out.append(m)
        return out

    def ccr(rtype: int, rsu: bool, usu: bool, **extra: Any) -> Message:
        return CreditControlRequest(
            session_id=_sid(ident, tag),
            origin_host=ident.origin_host,
            origin_realm=ident.origin_realm,
            destination_realm=ident.destination_realm,
            destination_host=ident.destination_host,
            auth_application_id=APP_GY,
            service_context_id=f.service_context_id,
            cc_request_type=rtype,
            cc_request_number=0,
            subscription_id=[{"subscription_id_type": 0, "subscription_id_data": sub}],
            **extra,
        )

    if f.kind == "gy-event":
        ev = ccr(
            4,
            False,
            False,
            requested_action=f.requested_action,
            service_identifier=f.service_identifier,
            requested_service_unit={"cc_service_specific_units": f.event_units},
            **_ps_information(f.ps_information),
        )
        return [Template("gy-event", ev, sub_width=w, num_code=AVP_CC_REQUEST_NUMBER, final=True)]
    si = _ps_information(f.ps_information)
    steps = [
        Template(
            "gy-initial",
            ccr(1, True, False, multiple_services_indicator=1,
                multiple_services_credit_control=mscc(True, False), **si),
            sub_width=w, num_code=AVP_CC_REQUEST_NUMBER,
        )
    ]
    upd = Template(
        "gy-update",
        ccr(2, True, True, multiple_services_indicator=1,
            multiple_services_credit_control=mscc(True, True), **si),
        sub_width=w, num_code=AVP_CC_REQUEST_NUMBER, usage=True,
    )
    steps += [upd] * f.updates
    steps.append(
        Template(
            "gy-terminate",
            ccr(3, False, True, multiple_services_indicator=1,
                multiple_services_credit_control=mscc(False, True), termination_cause=1, **si),
            sub_width=w, num_code=AVP_CC_REQUEST_NUMBER, final=True, usage=True,
        )
    )
    return steps


def _rf_flow(f: FlowSpec, ident: Identity, tag: str, sub: str, w: int) -> list[Template]:
    def acr(rtype: int) -> Message:
        si = _ps_information(f.ps_information) or {"service_information": {}}
        si["service_information"]["subscription_id"] = [
            {"subscription_id_type": 0, "subscription_id_data": sub}
        ]
        return AccountingRequest(
            session_id=_sid(ident, tag),
            origin_host=ident.origin_host,
            origin_realm=ident.origin_realm,
            destination_realm=ident.destination_realm,
            destination_host=ident.destination_host,
            accounting_record_type=rtype,
            accounting_record_number=0,
            acct_application_id=APP_RF,
            service_context_id=f.service_context_id,
            **si,
        )

    num = AVP_ACCOUNTING_RECORD_NUMBER
    steps = [Template("rf-start", acr(2), sub_width=w, num_code=num)]
    steps += [Template("rf-interim", acr(3), sub_width=w, num_code=num)] * f.updates
    steps.append(Template("rf-stop", acr(4), sub_width=w, num_code=num, final=True))
    return steps


def _sy_flow(f: FlowSpec, ident: Identity, tag: str, sub: str, w: int) -> list[Template]:
    common: dict[str, Any] = {
        "session_id": _sid(ident, tag),
        "origin_host": ident.origin_host,
        "origin_realm": ident.origin_realm,
        "destination_realm": ident.destination_realm,
        "destination_host": ident.destination_host,
        "auth_application_id": APP_SY,
    }
    slr = SpendingLimitRequest(
        sl_request_type=0,
        subscription_id=[{"subscription_id_type": 0, "subscription_id_data": sub}],
        policy_counter_identifier=list(f.policy_counters),
        **common,
    )
    st = SySessionTerminationRequest(termination_cause=1, **common)
    return [
        Template("sy-slr", slr, sub_width=w, num_code=None),
        Template("sy-str", st, sub_width=w, num_code=None, final=True),
    ]


def test_request(ident: Identity, tag: str) -> Message:
    """freeDiameter test_app's Test-Request (see ../shared/peers/README.md)."""
    m = Message(code=TEST_CMD, app_id=TEST_APP, flags=0xC0)
    m.set("Session-Id", _sid(ident, tag))
    m.set("Destination-Realm", ident.destination_realm)
    if ident.destination_host:
        m.set("Destination-Host", ident.destination_host)
    m.set("Origin-Host", ident.origin_host)
    m.set("Origin-Realm", ident.origin_realm)
    m.add(Avp(TEST_AVP, (0).to_bytes(4, "big"), vendor=TEST_VENDOR, flags=0x80))
    return m


@dataclass
class Flow:
    kind: str
    weight: float
    interval: float
    steps: list[Template]
    index: int = 0
    spec: FlowSpec | None = None


def build_flows(scn: Scenario, ident: Identity, tag: str) -> list[Flow]:
    """Encode every template of every flow once, through the codec."""
    w = scn.sub_width
    sub = (SUB_MARK_CHAR * w).decode()
    out = []
    for i, f in enumerate(scn.flows):
        if f.kind in ("gy", "gy-event"):
            steps = _gy_flow(f, ident, tag, sub, w)
        elif f.kind == "rf":
            steps = _rf_flow(f, ident, tag, sub, w)
        elif f.kind == "sy":
            steps = _sy_flow(f, ident, tag, sub, w)
        elif f.kind == "test_app":
            steps = [Template("test", test_request(ident, tag), sub_width=w, num_code=None,
                              echo=True, final=True)]
        else:
            raise ValueError(f"unknown flow kind {f.kind!r}")
        out.append(Flow(f.kind, f.weight, f.interval, steps, i, f))
    return out


def cer_avps(scn: Scenario) -> dict[str, Any]:
    """The applications our CER advertises: exactly those the scenario sends."""
    kinds = scn.applications()
    auth: list[int] = []
    acct: list[int] = []
    vsai: list[dict[str, int]] = []
    vendors: set[int] = set()
    if kinds & {"gy", "gy-event"}:
        auth.append(APP_GY)
    if "rf" in kinds:
        acct.append(APP_RF)
    if "sy" in kinds:
        vsai.append({"vendor_id": VENDOR_3GPP, "auth_application_id": APP_SY})
        vendors.add(VENDOR_3GPP)
    if kinds & {"gy", "gy-event", "rf"}:
        vendors.add(VENDOR_3GPP)
    if "test_app" in kinds:
        vsai.append({"vendor_id": TEST_VENDOR, "auth_application_id": TEST_APP})
        vendors.add(TEST_VENDOR)
    avps: dict[str, Any] = {"supported_vendor_id": sorted(vendors)}
    if auth:
        avps["auth_application_id"] = auth
    if acct:
        avps["acct_application_id"] = acct
    if vsai:
        avps["vendor_specific_application_id"] = vsai
    return avps


def with_overrides(scn: Scenario, **kw: Any) -> Scenario:
    """A copy whose flows take the given (non-None) FlowSpec fields."""
    known = {f.name for f in fields(FlowSpec)}
    kw = {k: v for k, v in kw.items() if k in known and v is not None}
    return replace(scn, flows=[replace(f, **kw) for f in scn.flows])
