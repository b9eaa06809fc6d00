"""RFC 4740 Diameter SIP application (app 6): typed commands 283-288 with the RFC's grammars,
and the AVPs added from python-diameter's facts (ProSe, the newer S6a/S6d AVPs)."""

from __future__ import annotations

import pytest

from chargegw.codec import Avp, Message, commands, get_dictionary

HEAD = dict(
    session_id="scscf.example;1", auth_application_id=6, auth_session_state=1,
    origin_host="scscf.example", origin_realm="example", destination_realm="home.example",
)  # fmt: skip


@pytest.mark.parametrize(
    ("code", "base"),
    [(283, "UserAuthorization"), (284, "ServerAssignment"), (285, "LocationInfo"),
     (286, "MultimediaAuth"), (287, "RegistrationTermination"), (288, "PushProfile")],
)  # fmt: skip
def test_each_sip_command_has_typed_classes_and_reads_as_them(code: int, base: str) -> None:
    d = get_dictionary()
    cmd = d.commands[(6, code)]
    req_cls = getattr(commands, f"Sip{base}Request")
    ans_cls = getattr(commands, f"Sip{base}Answer")
    req = req_cls(**HEAD)
    assert (req.code, req.app_id, req.is_request, req.is_proxiable) == (code, 6, True, True)
    back = Message.decode(req.encode())
    assert type(back) is req_cls
    ans = back.answer(2001, origin_host="hss.example", origin_realm="example")
    assert type(Message.decode(ans.encode())) is ans_cls
    assert cmd.request is not None and any(r.name == "Session-Id" for r in cmd.request.rules)


def test_uar_grammar_requires_sip_aor_and_cx_keeps_its_own_class() -> None:
    uar = commands.SipUserAuthorizationRequest(**HEAD)
    errs = Message.decode(uar.encode()).find_errors()
    assert [(e.result_code, e.failed_avp.name) for e in errs] == [(5005, "SIP-AOR")]
    uar.sip_aor = "sip:alice@example"
    assert not Message.decode(uar.encode()).find_errors()
    assert commands.UserAuthorizationRequest(**HEAD).code == 300  # TS 29.229 Cx, unchanged


def test_maa_auth_data_items_read_as_a_list_and_their_groups_follow_rfc_4740() -> None:
    item = {"rfc4740_sip_authentication_scheme": 0, "rfc4740_sip_item_number": 1}
    maa = commands.SipMultimediaAuthAnswer(
        **HEAD,
        result_code=2001,
        rfc4740_sip_auth_data_item=[item, {**item, "rfc4740_sip_item_number": 2}],
    )
    back = Message.decode(maa.encode())
    assert [i.rfc4740_sip_item_number for i in back.rfc4740_sip_auth_data_item] == [1, 2]
    assert not back.find_errors()
    bad = commands.SipMultimediaAuthAnswer(
        **HEAD, result_code=2001, rfc4740_sip_auth_data_item=[{"rfc4740_sip_item_number": 3}]
    )
    errs = Message.decode(bad.encode()).find_errors()
    assert [e.result_code for e in errs] == [5005]  # the scheme is { required } in the item


def test_rfc_4740_avps_carry_the_m_bit() -> None:
    d = get_dictionary()
    assert all(d.avp(c).mandatory for c in range(368, 394))


def test_prose_and_newer_s6a_avps_round_trip() -> None:
    d = get_dictionary()
    assert d.avp("ProSe-App-Id").key == (3811, 10415)
    assert d.avp("ProSe-Filter-Id").key == (3805, 10415)  # Filter-Id stays RADIUS's (11)
    assert d.avp("Filter-Id").key == (11, 0)
    f = Avp.new("ProSe-Discovery-Filter", {
        "prose_filter_id": b"\x01", "prose_app_id": "mcc.mnc.app", "prose_app_code": b"\x02",
        "prose_app_mask": [b"\xff", b"\xf0"],
    })  # fmt: skip
    back = Avp.decode(f.encode())
    assert (
        back.value.prose_app_mask == [b"\xff", b"\xf0"] and back.value.prose_app_id == "mcc.mnc.app"
    )
    mdt = Avp.new("MDT-Configuration-NR", {"job_type": 0, "sensor_measurement": [1, 2]})
    assert Avp.decode(mdt.encode()).value.sensor_measurement == [1, 2]
    assert d.avp(1729, 10415).name == "SF-ULR-Timestamp" and d.avp(1729, 10415).type == "Time"
