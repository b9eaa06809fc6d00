"""The 3GPP applications (issue 13): Gx, Rx, S6a/S6d, Sh, S13, SWx, S6b, Sd, T6a, S7a. Each
command is built through its class with sample values, encoded, decoded back to the same class,
and checked by Wireshark's dissector; repeated grouped AVPs read as lists."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from chargegw.codec import Message, commands, get_dictionary
from chargegw.codec.samples import sample_message

CHECK = Path(__file__).resolve().parent.parent.parent / "shared" / "peers" / "tshark-check.sh"

APPS = {
    "Gx": (16777238, {258, 272}),
    "Rx": (16777236, {258, 265, 274, 275}),
    "S6a/S6d": (16777251, {316, 317, 318, 319, 320, 321, 322, 323}),
    "Sh": (16777217, {306, 307, 308, 309}),
    "S13": (16777252, {324}),
    "SWx": (16777265, {301, 303, 304, 305}),
    "S6b": (16777272, {258, 265, 268, 274, 275}),
    "Sd": (16777303, {258, 272, 8388637}),
    "T6a": (16777346, {8388718, 8388719, 8388732, 8388733, 8388734}),
    "S7a": (16777308, {8388638, 8388642}),
}


def app_messages(app_id: int) -> list[Message]:
    d = get_dictionary()
    out = []
    for (app, _code), cmd in sorted(d.commands.items(), key=lambda kv: kv[0][1]):
        if app == app_id:
            out += [sample_message(cmd, True), sample_message(cmd, False)]
    return out


@pytest.mark.parametrize("app", sorted(APPS))
def test_application_commands_are_typed(app: str) -> None:
    app_id, codes = APPS[app]
    d = get_dictionary()
    assert app_id in d.applications
    assert {code for (a, code) in d.commands if a == app_id} == codes
    for m in app_messages(app_id):
        raw = m.encode()
        back = Message.decode(raw)
        assert type(back) is type(m) and back.app_id == app_id
        assert back.find_errors() == [], type(m).__name__
        assert back.encode() == raw


@pytest.mark.parametrize("app", sorted(APPS))
def test_application_passes_wiresharks_dissector(app: str, tmp_path: Path) -> None:
    if not CHECK.is_file():
        pytest.skip(f"{CHECK} is not here")
    if not (shutil.which("tshark") and shutil.which("text2pcap")):
        pytest.skip("tshark/text2pcap are not installed (../shared/peers/setup.sh tshark)")
    msgs = app_messages(APPS[app][0])
    hexfile = tmp_path / "app.hex"
    hexfile.write_text("".join(f"# {type(m).__name__}\n{m.encode().hex()}\n" for m in msgs))
    r = subprocess.run(
        ["bash", str(CHECK), "--port", "3868", "--hex", str(hexfile)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    line = r.stdout.strip().splitlines()[-1]
    assert f"diameter_msgs={len(msgs)} " in line
    assert "malformed=0 expert_errors=0 expert_warnings=0" in line


def test_gx_rar_reads_every_charging_rule_install() -> None:
    rar = commands.GxReAuthRequest(
        session_id="pgw.example.net;1;1", origin_host="pcrf.example.net",
        origin_realm="example.net", destination_realm="example.net",
        destination_host="pgw.example.net", auth_application_id=16777238,
        re_auth_request_type=0,
        charging_rule_install=[
            {"charging_rule_name": [b"rule-a"]},
            {"charging_rule_name": [b"rule-b"], "bearer_identifier": b"\x05"},
        ],
    )  # fmt: skip
    back = Message.decode(rar.encode())
    assert isinstance(back, commands.GxReAuthRequest)
    assert len(back.charging_rule_install) == 2
    assert [r.charging_rule_name for r in back.charging_rule_install] == [[b"rule-a"], [b"rule-b"]]
    # the same octets in a base-protocol RAR (application 0) keep the base grammar
    assert commands.ReAuthRequest is not commands.GxReAuthRequest


def test_s6a_ulr_subscription_data_round_trip() -> None:
    ula = commands.UpdateLocationAnswer(
        session_id="mme.example.net;1;1", origin_host="hss.example.net",
        origin_realm="example.net", auth_session_state=1, result_code=2001,
        subscription_data={"msisdn": b"\x94\x71\x02\x43\x65\xf7",
                           "apn_configuration_profile": {"context_identifier": 1,
                                                         "all_apn_configurations_included_indicator": 0,
                                                         "apn_configuration": [
                                                             {"context_identifier": 1, "service_selection": "internet",
                                                              "pdn_type": 0},
                                                             {"context_identifier": 2, "service_selection": "ims",
                                                              "pdn_type": 2}]}},
    )  # fmt: skip
    back = Message.decode(ula.encode())
    apns = back.subscription_data.apn_configuration_profile.apn_configuration
    assert [a.service_selection for a in apns] == ["internet", "ims"]


def test_every_command_python_diameter_types_is_typed_here() -> None:
    pd = pytest.importorskip("diameter.message.commands")
    from diameter.message import Message as PdMessage

    ours = {code for (_app, code) in get_dictionary().commands}
    theirs = set()
    for name in dir(pd):
        obj = getattr(pd, name)
        if isinstance(obj, type) and issubclass(obj, PdMessage) and name.endswith("Request"):
            theirs.add(obj.code)
    assert theirs and theirs <= ours, sorted(theirs - ours)
