"""Golden vectors from an independent encoder (python-diameter 0.9.0), kept in the repository
(codec/bench.py) and cross-checked against ../shared/vectors/ where it exists.

The decoded values are the ones the vectors' README lists; relaying is byte-exact; building
the same content through the attribute API gives the same bytes except the M bits that
encoder leaves out (Origin-Host, Origin-Realm, PDP-Address), and nothing else.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from chargegw.codec import Message, get_dictionary
from chargegw.codec.bench import (
    GY_CCA_UPDATE_HEX,
    GY_CCR_UPDATE_HEX,
    flag_differences,
    load_vectors,
    rebuild,
)
from chargegw.codec.commands import CreditControlAnswer, CreditControlRequest

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors"
SID = "pgw01.gy.mnc001.mcc001.3gppnetwork.org;1732617600;00000001;0001"


@pytest.fixture(scope="module")
def vec() -> dict[str, bytes]:
    return load_vectors()  # the in-repo copies; the test below cross-checks ../shared


def test_embedded_copies_match_the_shared_files() -> None:
    if not SHARED.is_dir():
        pytest.skip("../shared/vectors is not here")
    assert bytes.fromhex("".join(GY_CCR_UPDATE_HEX)) == bytes.fromhex(
        (SHARED / "gy_ccr_update.hex").read_text().strip()
    )
    assert bytes.fromhex("".join(GY_CCA_UPDATE_HEX)) == bytes.fromhex(
        (SHARED / "gy_cca_update.hex").read_text().strip()
    )


def test_ccr_update_values(vec: dict[str, bytes]) -> None:
    raw = vec["ccr_u"]
    assert len(raw) == 592
    m = Message.decode(raw)
    assert isinstance(m, CreditControlRequest)
    assert (m.hop_by_hop, m.end_to_end, m.app_id, m.code) == (0x1234, 0x5678, 4, 272)
    assert m.is_request and m.is_proxiable
    assert m.session_id == SID
    assert m.origin_host == "pgw01.gy.mnc001.mcc001.3gppnetwork.org"
    assert m.origin_realm == "mnc001.mcc001.3gppnetwork.org"
    assert m.destination_realm == "ocs.mnc001.mcc001.3gppnetwork.org"
    assert m.auth_application_id == 4
    assert m.service_context_id == "32251@3gpp.org"
    assert m.cc_request_type.name == "UPDATE_REQUEST" and m.cc_request_number == 1
    (sub,) = m.subscription_id
    assert (
        sub.subscription_id_type.name == "END_USER_E164"
        and sub.subscription_id_data == "491701234567"
    )
    assert m.multiple_services_indicator == 1
    (mscc,) = m.multiple_services_credit_control
    assert mscc.requested_service_unit is not None and mscc.requested_service_unit.avps == []
    (usu,) = mscc.used_service_unit
    assert (usu.cc_total_octets, usu.cc_input_octets, usu.cc_output_octets) == (
        1048577,
        262144,
        786433,
    )
    assert usu.reporting_reason == 3 and usu.reporting_reason.name == "QUOTA_EXHAUSTED"
    assert mscc.rating_group == 100
    ps = m.service_information.ps_information
    assert ps.tgpp_charging_id == 0x0A0B0C0D
    assert ps.pdp_address == [ipaddress.IPv4Address("10.45.0.17")]
    assert ps.tgpp_imsi_mcc_mnc == "00101"
    assert ps.called_station_id == "internet"
    assert ps.tgpp_ms_timezone == b"\x40\x00"
    assert ps.tgpp_rat_type == b"\x06"
    assert ps.tgpp_user_location_info[:1] == b"\x82"  # TAI+ECGI
    assert m.find_errors() == []  # the encoder's missing M bits are accepted


def test_cca_values(vec: dict[str, bytes]) -> None:
    m = Message.decode(vec["cca"])
    assert isinstance(m, CreditControlAnswer)
    assert not m.is_request and not m.is_error
    assert (
        m.session_id == SID and m.result_code == 2001 and m.result_code.name == "DIAMETER_SUCCESS"
    )
    assert m.cc_request_type == 2 and m.cc_request_number == 1 and m.auth_application_id == 4
    (mscc,) = m.multiple_services_credit_control
    assert mscc.granted_service_unit.cc_total_octets == 10485760
    assert (mscc.rating_group, mscc.validity_time, mscc.result_code) == (100, 3600, 2001)
    assert mscc.volume_quota_threshold == 1048576 and mscc.quota_holding_time == 300
    assert m.find_errors() == []


@pytest.mark.parametrize("name", ["ccr_u", "cca"])
def test_relay_is_byte_exact(vec: dict[str, bytes], name: str) -> None:
    raw = vec[name]
    m = Message.decode(raw)
    assert m.raw is raw and m.encode() is raw
    m.multiple_services_credit_control[0].rating_group  # noqa: B018 - reading changes nothing
    assert m.encode() == raw
    for a in m.avps:  # materialised, every value read: still the same octets
        a.value  # noqa: B018
    assert m.encode() == raw
    m.hop_by_hop = 0x99  # a proxy's new hop-by-hop: only those four octets change
    out = m.encode()
    assert out[12:16] == b"\x00\x00\x00\x99" and out[:12] == raw[:12] and out[16:] == raw[16:]


@pytest.mark.parametrize(
    ("name", "quirks"),
    [
        ("ccr_u", ["Origin-Host", "Origin-Realm", "PDP-Address"]),
        ("cca", ["Origin-Host", "Origin-Realm"]),
    ],
)
def test_strict_encoder_differs_only_in_the_m_bits(
    vec: dict[str, bytes], name: str, quirks: list[str]
) -> None:
    raw = vec[name]
    built, _ = rebuild(raw)
    assert built.raw is None  # built, not decoded: every AVP is encoded from its value
    out = built.encode()
    assert flag_differences(out, raw) == quirks
    for i in (i for i in range(len(out)) if out[i] != raw[i]):
        assert out[i] == raw[i] | 0x40  # exactly the M bit added
    # putting the encoder's flags back gives the vector exactly
    fixed = bytearray(out)
    for i in (i for i in range(len(out)) if out[i] != raw[i]):
        fixed[i] &= ~0x40
    assert bytes(fixed) == raw


def test_our_encoding_reads_back_in_python_diameter(vec: dict[str, bytes]) -> None:
    pd = pytest.importorskip("diameter.message")
    built, _ = rebuild(vec["ccr_u"])
    theirs = pd.Message.from_bytes(built.encode())
    assert theirs.session_id == SID
    assert (
        theirs.multiple_services_credit_control[0].used_service_unit[0].cc_total_octets == 1048577
    )
    assert theirs.cc_request_type == 2


def test_dictionary_is_the_built_in_one() -> None:
    assert len(get_dictionary().avps) >= 1500
