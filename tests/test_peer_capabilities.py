"""CER/CEA contents, the application intersection, the allowlist, and error answers."""

from __future__ import annotations

import ipaddress

import pytest

from chargegw.codec import Avp, Message
from chargegw.peer import AllowRule, NodeConfig, VendorApp
from chargegw.peer import capabilities as caps
from chargegw.peer.errors import ProtocolError, error_answer, error_answer_bytes
from chargegw.peer.testing import make_ccr, make_cer


def cfg(**kw: object) -> NodeConfig:
    base: dict[str, object] = {"origin_host": "gw.localdomain", "origin_realm": "localdomain"}
    base.update(kw)
    return NodeConfig(**base)  # type: ignore[arg-type]


def roundtrip(msg: Message) -> Message:
    return Message.decode(msg.encode())


def test_cer_carries_the_required_avps() -> None:
    c = cfg(
        auth_apps=[4],
        acct_apps=[3],
        vendor_specific_apps=[VendorApp(10415, 16777302), (999999, 16777215)],
        supported_vendors=[10415],
        host_ip_addresses=["127.0.0.1", "::1"],
        vendor_id=12345,
        product_name="chargegw-test",
        firmware_revision=7,
        origin_state_id=99,
    )
    cer = roundtrip(caps.build_cer(c))
    assert cer.code == 257 and cer.app_id == 0 and cer.is_request and not cer.is_proxiable
    assert cer.origin_host == "gw.localdomain" and cer.origin_realm == "localdomain"
    assert cer.get_all("Host-IP-Address") == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert cer.vendor_id == 12345 and cer.product_name == "chargegw-test"
    assert cer.get("Firmware-Revision") == 7 and cer.origin_state_id == 99
    assert cer.get_all("Auth-Application-Id") == [4] and cer.get_all("Acct-Application-Id") == [3]
    assert cer.get_all("Supported-Vendor-Id") == [10415]
    assert cer.get_all("Inband-Security-Id") == [0]
    # M bit must not be set on Product-Name and Firmware-Revision (RFC 6733 5.3.3/5.3.4).
    assert not cer.find("Product-Name").is_mandatory  # type: ignore[union-attr]
    assert not cer.find("Firmware-Revision").is_mandatory  # type: ignore[union-attr]
    parsed = caps.parse_capabilities(cer)
    assert parsed.vendor_apps == [VendorApp(10415, 16777302), VendorApp(999999, 16777215)]
    assert parsed.app_ids() == {3, 4, 16777302, 16777215}


def test_relay_is_advertised_as_auth_app_ffffffff() -> None:
    cer = roundtrip(caps.build_cer(cfg(relay=True)))
    assert cer.get_all("Auth-Application-Id") == [0xFFFFFFFF]
    assert caps.parse_capabilities(cer).relay


def test_intersection_ignores_vsai_vendor_and_honours_relay() -> None:
    server = cfg(auth_apps=[4])
    # A VSAI with any Vendor-Id still names application 4.
    cer = roundtrip(make_cer("a.example", "example", auth_apps=[], vendor_apps=[(10415, 4)]))
    _, common = caps.check_cer(cer, server)
    assert common == frozenset({4})
    # No common application: 5010.
    cer = roundtrip(make_cer("a.example", "example", auth_apps=[16777238]))
    with pytest.raises(caps.CapabilitiesError) as err:
        caps.check_cer(cer, server)
    assert err.value.result_code == 5010
    # The peer relays: everything is common.
    cer = roundtrip(make_cer("a.example", "example", auth_apps=[16777238], relay=True))
    _, common = caps.check_cer(cer, server)
    assert 0xFFFFFFFF in common and 4 in common
    # We relay: everything is common too.
    cer = roundtrip(make_cer("a.example", "example", auth_apps=[16777238]))
    _, common = caps.check_cer(cer, cfg(auth_apps=[4], relay=True))
    assert 0xFFFFFFFF in common


def test_allowlist_patterns_and_configured_peers() -> None:
    rules = [AllowRule(host="*.ocs.example", realm="ocs.example"), AllowRule(host="pgw-?.example")]
    assert caps.is_allowed("a.OCS.example", "ocs.example", rules)
    assert not caps.is_allowed("a.ocs.example", "other.example", rules)
    assert caps.is_allowed("pgw-1.example", "anything", rules)
    assert not caps.is_allowed("pgw-10.example", "anything", rules)
    assert caps.is_allowed("stranger.example", "x", rules, configured=["Stranger.example"])
    assert caps.is_allowed("anyone", "x", None)
    cer = roundtrip(make_cer("stranger.example", "x"))
    with pytest.raises(caps.CapabilitiesError) as err:
        caps.check_cer(cer, cfg(auth_apps=[4], allow=rules))
    assert err.value.result_code == 3010


def test_vsai_faults() -> None:
    neither = make_cer("a.example", "example", auth_apps=[])
    neither.add("Vendor-Specific-Application-Id", {"vendor_id": 10415})
    with pytest.raises(caps.CapabilitiesError) as err:
        caps.parse_capabilities(roundtrip(neither))
    assert err.value.result_code == 5005
    both = make_cer("a.example", "example", auth_apps=[])
    both.add(
        "Vendor-Specific-Application-Id",
        {"vendor_id": 10415, "auth_application_id": 4, "acct_application_id": 3},
    )
    with pytest.raises(caps.CapabilitiesError) as err2:
        caps.parse_capabilities(roundtrip(both))
    assert err2.value.result_code == 5009


def test_inband_security_mismatch_is_5017() -> None:
    cer = roundtrip(make_cer("a.example", "example", inband_security=[1]))
    with pytest.raises(caps.CapabilitiesError) as err:
        caps.check_cer(cer, cfg(auth_apps=[4]))
    assert err.value.result_code == 5017
    _, common = caps.check_cer(cer, cfg(auth_apps=[4], inband_security=[0, 1]))
    assert common == frozenset({4})


def test_cea_checks_result_and_identity() -> None:
    c = cfg(auth_apps=[4])
    cer = roundtrip(make_cer("srv.example", "example"))
    server_cfg = cfg(origin_host="srv.example", origin_realm="example", auth_apps=[4])
    cea = roundtrip(caps.build_cea(server_cfg, cer))
    assert cea.hop_by_hop == cer.hop_by_hop and cea.end_to_end == cer.end_to_end
    parsed, common = caps.check_cea(cea, c, "SRV.example")
    assert parsed.result_code == 2001 and common == frozenset({4})
    with pytest.raises(caps.CapabilitiesError):
        caps.check_cea(cea, c, "other.example")
    refused = roundtrip(caps.build_cea(server_cfg, cer, 3010, error_message="go away"))
    assert refused.is_error and refused.error_message == "go away"
    with pytest.raises(caps.CapabilitiesError) as err:
        caps.check_cea(refused, c, "srv.example")
    assert err.value.result_code == 3010


def test_own_identity_in_cer_is_refused() -> None:
    cer = roundtrip(make_cer("GW.localdomain", "localdomain"))
    with pytest.raises(caps.CapabilitiesError):
        caps.check_cer(cer, cfg(auth_apps=[4]))


def test_watchdog_and_disconnect_messages() -> None:
    c = cfg()
    dwr = roundtrip(caps.build_dwr(c))
    assert dwr.code == 280 and dwr.is_request and dwr.origin_state_id == c.origin_state_id
    dwa = roundtrip(caps.build_dwa(c, dwr))
    assert not dwa.is_request and dwa.result_code == 2001
    dpr = roundtrip(caps.build_dpr(c, 2))
    assert dpr.code == 282 and int(dpr.disconnect_cause) == 2
    dpa = roundtrip(caps.build_dpa(c, dpr))
    assert dpa.result_code == 2001 and dpa.hop_by_hop == dpr.hop_by_hop


# -- error answers -------------------------------------------------------------------------------


def test_protocol_error_uses_generic_grammar_with_e_bit() -> None:
    req = make_ccr("c.example", "example", "example", hop_by_hop=5, end_to_end=6, session_id="c;1")
    req.add("Proxy-Info", {"proxy_host": "p.example", "proxy_state": b"st"})
    ans = roundtrip(
        error_answer(req, 3002, origin_host="gw", origin_realm="r", error_message="no route")
    )
    assert ans.is_error and not ans.is_request and ans.is_proxiable
    assert (ans.code, ans.app_id, ans.hop_by_hop, ans.end_to_end) == (272, 4, 5, 6)
    names = [a.name for a in ans.avps]
    assert names[0] == "Session-Id"
    assert names[1:4] == ["Origin-Host", "Origin-Realm", "Result-Code"]
    assert "Proxy-Info" in names and "Auth-Application-Id" not in names
    assert "Destination-Realm" not in names


def test_application_error_keeps_the_command_grammar() -> None:
    req = make_ccr("c.example", "example", "example", request_type=2, number=3)
    bad = Avp.new("Subscription-Id-Data", "x")
    ans = roundtrip(error_answer(req, 5004, origin_host="gw", origin_realm="r", failed_avp=bad))
    assert not ans.is_error
    assert ans.result_code == 5004
    assert ans.auth_application_id == 4 and ans.cc_request_type == 2 and ans.cc_request_number == 3
    failed = ans.get("Failed-AVP")
    assert failed is not None and [a.code for a in failed.avps] == [bad.code]
    assert ans.get("Destination-Realm") is None


def test_error_answer_from_undecodable_bytes() -> None:
    good = make_ccr("c.example", "example", "example", hop_by_hop=9, session_id="c;42").encode()
    broken = bytearray(good)
    # Break an AVP after Session-Id so decoding fails but the header and Session-Id are fine.
    sid_len = int.from_bytes(broken[25:28], "big")
    nxt = 20 + ((sid_len + 3) & ~3)
    broken[nxt + 5 : nxt + 8] = (0xFFFFF).to_bytes(3, "big")
    data = error_answer_bytes(bytes(broken), 5014, origin_host="gw", origin_realm="r")
    assert data is not None
    ans = Message.decode(data)
    assert ans.hop_by_hop == 9 and ans.result_code == 5014 and ans.session_id == "c;42"
    # Header only.
    data = error_answer_bytes(good[:20], 5011, origin_host="gw", origin_realm="r")
    assert data is not None and Message.decode(data).result_code == 5011


def test_agent_generated_error_carries_error_reporting_host() -> None:
    req = make_ccr("c.example", "example", "example")
    ans = roundtrip(
        error_answer(
            req, 3002, origin_host="ocs", origin_realm="r", error_reporting_host="gw.example"
        )
    )
    assert ans.get("Error-Reporting-Host") == "gw.example" and ans.is_error
    ans5 = roundtrip(
        error_answer(
            req, 5012, origin_host="ocs", origin_realm="r", error_reporting_host="gw.example"
        )
    )
    assert ans5.get("Error-Reporting-Host") == "gw.example" and not ans5.is_error


def test_protocol_error_exception_carries_its_code() -> None:
    exc = ProtocolError(5030, "unknown user")
    assert exc.result_code == 5030 and exc.error_message == "unknown user"


def _failed_codes(answer: Message) -> list[int]:
    """The codes of the AVPs inside an answer's one Failed-AVP."""
    failed = answer.find("Failed-AVP")
    assert failed is not None
    return [a.code for a in failed.value]


def test_protocol_error_with_several_failed_avps_keeps_them_all() -> None:
    """A handler's ProtocolError naming two AVPs holds them as two `failed_avps` entries, and
    both reach Failed-AVP on the worker path (the codec's builder reads `failed_avps`) as on
    the Node's (`error_answer_bytes`). The old constructor re-set `failed_avp` to the list, so
    `failed_avps` was `[[a, b]]` and `failed_avp` a list: the answers came out right only
    because `list.copy()` and the encoder happen to accept the nested list."""
    from chargegw.codec import error_answer as codec_error_answer

    pair = [Avp.new("Auth-Application-Id", 0), Avp.new("Acct-Application-Id", 0)]
    exc = ProtocolError(5005, "one of these is missing", pair)
    assert [a.code for a in exc.failed_avps] == [258, 259]
    assert exc.failed_avp is not None and exc.failed_avp.code == 258
    req = make_ccr("a.example", "example", "localdomain").encode()
    worker = Message.decode(codec_error_answer(req, exc, "gw.localdomain", "localdomain"))
    assert worker.result_code == 5005 and _failed_codes(worker) == [258, 259]
    raw = error_answer_bytes(
        req, exc.result_code, origin_host="gw.localdomain", origin_realm="localdomain",
        failed_avp=exc.failed_avps,
    )  # fmt: skip
    assert raw is not None and _failed_codes(Message.decode(raw)) == [258, 259]


def test_vsai_without_an_application_names_both_in_the_cea() -> None:
    """5005 for a Vendor-Specific-Application-Id with neither application id: the error holds
    both candidates as two Failed-AVP entries (not a list inside the list), and the CEA built
    from it, as admission builds it, carries both."""
    neither = make_cer("a.example", "example", auth_apps=[])
    neither.add("Vendor-Specific-Application-Id", {"vendor_id": 10415})
    with pytest.raises(caps.CapabilitiesError) as err:
        caps.parse_capabilities(roundtrip(neither))
    assert [a.code for a in err.value.failed_avps] == [258, 259]
    cea = roundtrip(
        caps.build_cea(
            cfg(auth_apps=[4]), neither, err.value.result_code,
            failed_avp=err.value.failed_avps or None,
        )
    )  # fmt: skip
    assert cea.result_code == 5005 and _failed_codes(cea) == [258, 259]


def test_cer_with_an_odd_origin_host_is_refused_5004_with_failed_avp() -> None:
    """Reading no longer raises on odd octets: the capabilities check must judge them."""
    from chargegw.codec import Avp, Message, commands
    from chargegw.peer.capabilities import CapabilitiesError, parse_capabilities

    cer = commands.CapabilitiesExchangeRequest(
        origin_host="peer.example", origin_realm="example", host_ip_address=["127.0.0.1"],
        vendor_id=0, product_name="t", auth_application_id=[4],
    )  # fmt: skip
    raw = bytearray(cer.encode())
    i = raw.index(b"peer.example")
    raw[i + 4] = 0xFF  # not UTF-8 (nor a DiameterIdentity)
    msg = Message.decode(bytes(raw))
    try:
        parse_capabilities(msg)
    except CapabilitiesError as exc:
        assert exc.result_code == 5004
        assert [a.code for a in exc.failed_avps] == [Avp.new("Origin-Host", "x").code]
    else:
        raise AssertionError("a CER with a non-UTF-8 Origin-Host was admitted")
