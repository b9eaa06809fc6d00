"""Our encodings checked by an independent dissector: Wireshark's (tshark), through
../shared/peers/tshark-check.sh. A message of every command class, request and answer, with
its required AVPs; the shared vectors rebuilt through the attribute API; and a message with
values of every type. No malformed packet, no expert error or warning."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from ipaddress import IPv6Address
from pathlib import Path

import pytest

from chargegw.codec import Message, OtherAddress, get_dictionary
from chargegw.codec.bench import load_vectors, rebuild
from chargegw.codec.samples import all_samples

CHECK = Path(__file__).resolve().parent.parent.parent / "shared" / "peers" / "tshark-check.sh"

pytestmark = pytest.mark.interop


def messages() -> list[tuple[str, bytes]]:
    out = [(m.command_name + f" (app {m.app_id})", m.encode()) for m in all_samples()]
    vec = load_vectors()
    ccr_u = rebuild(vec["ccr_u"])[0]
    # the vector's empty Requested-Service-Unit is legal (RFC 4006) but Wireshark warns
    # "Data is empty" about any empty AVP (the vectors' README says so): give it a CC-Time
    ccr_u.multiple_services_credit_control[0].requested_service_unit.cc_time = 60
    out += [("rebuilt ccr_u", ccr_u.encode()), ("rebuilt cca", rebuild(vec["cca"])[0].encode())]
    from chargegw.codec.commands import CapabilitiesExchangeRequest, CreditControlRequest

    cer = CapabilitiesExchangeRequest(
        origin_host="gw.example.net", origin_realm="example.net",
        host_ip_address=[IPv6Address("2001:db8::10"), OtherAddress(8, b"491701234567")],
        vendor_id=0, product_name="chargegw", supported_vendor_id=[10415], auth_application_id=[4],
        vendor_specific_application_id=[{"vendor_id": 10415, "auth_application_id": 16777302}],
    )  # fmt: skip
    ccr = CreditControlRequest(
        session_id="gw.example.net;1;2", origin_host="gw.example.net", origin_realm="example.net",
        destination_realm="example.org", auth_application_id=4, service_context_id="32251@3gpp.org",
        cc_request_type="EVENT_REQUEST", cc_request_number=0, event_timestamp=datetime(2040, 1, 1, tzinfo=UTC),
        requested_action="DIRECT_DEBITING",
        subscription_id=[{"subscription_id_type": "END_USER_IMSI", "subscription_id_data": "001011234567890"}],
        multiple_services_credit_control=[{"rating_group": 1, "requested_service_unit": {"cc_service_specific_units": 2},
                                           "service_identifier": [7]}],
        user_equipment_info={"user_equipment_info_type": 0, "user_equipment_info_value": b"\x35\x00\x00\x00\x00\x00\x00\x10"},
    )  # fmt: skip
    out += [
        ("CER with every address family", cer.encode()),
        ("CCR-E with Time after 2036", ccr.encode()),
    ]
    for name, raw in out:
        assert Message.decode(raw).find_errors() == [], name
    return out


def test_every_command_class_passes_wiresharks_dissector(tmp_path: Path) -> None:
    if not CHECK.is_file():
        pytest.skip(f"{CHECK} is not here")
    if not (shutil.which("tshark") and shutil.which("text2pcap")):
        pytest.skip("tshark/text2pcap are not installed (../shared/peers/setup.sh tshark)")
    msgs = messages()
    hexfile = tmp_path / "all.hex"
    hexfile.write_text("".join(f"# {name}\n{raw.hex()}\n" for name, raw in msgs))
    r = subprocess.run(["bash", str(CHECK), "--port", "3868", "--hex", str(hexfile)],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    line = r.stdout.strip().splitlines()[-1]
    assert "tshark-check: OK" in line
    assert f"diameter_msgs={len(msgs)} " in line
    assert "malformed=0 expert_errors=0 expert_warnings=0" in line
    assert len(get_dictionary().commands) * 2 + 4 == len(msgs)
