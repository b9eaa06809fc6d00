"""The dictionary: built-in files, loading more (JSON and Wireshark XML), conflicts, the CLI."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from chargegw.codec import Avp, Message
from chargegw.codec.dictionary import (
    _NO_ENUM,
    BUILTIN_FILES,
    Dictionary,
    DictionaryError,
    get_dictionary,
    load_builtin,
    load_extra,
    parse_rule,
    snake_name,
)
from chargegw.codec.wireshark import import_wireshark

WS = Path("/usr/share/wireshark/diameter/dictionary.xml")
needs_wireshark = pytest.mark.skipif(
    not WS.is_file(), reason="Wireshark's dictionary.xml is not installed"
)


def test_builtin_dictionary() -> None:
    d = get_dictionary()
    assert len(d.avps) >= 1500
    assert {s.split(" ")[0] for s in d.sources} == set(BUILTIN_FILES)
    for c in d.commands.values():
        assert c.request is not None and c.answer is not None
    for a in d.avps.values():
        assert (a.grammar is not None) == (a.type == "Grouped")
    assert (
        d.avp("cc_total_octets")
        is d.avp("CC-Total-Octets")
        is d.avp(421)
        is d.avp("cc-total-octets")
    )
    assert d.avp(872, 10415).name == "Reporting-Reason"
    with pytest.raises(KeyError):
        d.avp("No-Such-AVP")


def test_enum_classes_are_made_on_first_use() -> None:
    d = load_builtin()
    enums = [a for a in d.avps.values() if a.enum]
    assert len(enums) > 300
    assert all(a._ec is _NO_ENUM for a in enums)  # none made while loading
    cls = d.avp("CC-Request-Type").enum_cls
    assert cls is not None and cls.UPDATE_REQUEST == 2 and cls.__name__ == "CCRequestType"
    assert d.avp("CC-Request-Type").enum_cls is cls
    assert sum(a._ec is not _NO_ENUM for a in enums) == 1


def test_snake_names() -> None:
    assert snake_name("CC-Request-Type") == "cc_request_type"
    assert snake_name("3GPP-IMSI") == "tgpp_imsi"
    assert snake_name("Class") == "class_"
    assert snake_name("3") == "avp_3"


def test_grammar_parsing() -> None:
    for text, (kind, lo, hi) in {
        "< Session-Id >": ("fixed", 1, 1),
        "{ Origin-Host }": ("required", 1, 1),
        "[ Destination-Host ]": ("optional", 0, 1),
        "* [ Proxy-Info ]": ("optional", 0, None),
        "1* { AVP }": ("required", 1, None),
        "*2 [ X ]": ("optional", 0, 2),
        "2*3 { Y }": ("required", 2, 3),
        "* { Z }": ("required", 1, None),
        "0*0 [ W ]": ("optional", 0, 0),
    }.items():
        r = parse_rule(text)
        assert (r.kind, r.min, r.max) == (kind, lo, hi), text
        assert parse_rule(r.text()) == r
    for bad in ("[ X }", "X", "3*2 [ X ]", "{ }"):
        with pytest.raises(DictionaryError):
            parse_rule(bad)


def _doc(avps: list[dict], name: str = "extra", commands: list[dict] | None = None) -> bytes:
    return orjson.dumps({"name": name, "avps": avps, "commands": commands or []})


def test_json_conflicts_name_both_sources_and_change_nothing(tmp_path: Path) -> None:
    d = load_builtin()
    before = (len(d.avps), len(d.by_name), dict(d.avp("CC-Request-Type").enum))
    clash = tmp_path / "clash.json"
    clash.write_bytes(_doc([{"name": "New-AVP", "code": 70001, "type": "Unsigned32"},
                            {"name": "Not-CC-Request-Type", "code": 416, "type": "Enumerated"}]))  # fmt: skip
    with pytest.raises(DictionaryError) as ei:
        d.load_json(clash)
    msg = str(ei.value)
    assert "Not-CC-Request-Type" in msg and str(clash) in msg
    assert "CC-Request-Type" in msg and "credit_control (builtin:credit_control.json)" in msg
    assert (
        len(d.avps),
        len(d.by_name),
        dict(d.avp("CC-Request-Type").enum),
    ) == before  # all or nothing
    assert "New-AVP" not in d.by_name
    name_clash = tmp_path / "name.json"
    name_clash.write_bytes(_doc([{"name": "Session-Id", "code": 70002, "type": "UTF8String"}]))
    with pytest.raises(DictionaryError, match="AVP name Session-Id: code 70002"):
        d.load_json(name_clash)


def test_conflict_policies(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_bytes(_doc([
        {"name": "Other-Name-For-416", "code": 416, "type": "Enumerated"},
        {"name": "Session-Id", "code": 70003, "type": "UTF8String"},
        {"name": "Holder", "code": 70004, "type": "Grouped", "grammar": ["[ Session-Id ]"]},
    ]))  # fmt: skip
    skip = load_builtin()
    skip.load_json(f, on_conflict="skip")
    assert len(skip.conflicts) == 2 and "Holder" in skip.by_name
    assert skip.avp(416).name == "CC-Request-Type" and (70003, 0) not in skip.avps
    ren = load_builtin()
    ren.load_json(f, on_conflict="rename")
    assert ren.avp(70003).name == "Session-Id.70003" and ren.avp(70003).attr == "session_id_70003"
    # the file's grammar meant its own Session-Id: it follows the rename
    assert ren.avp("Holder").grammar.rules[0].avp is ren.avp(70003)
    with pytest.raises(ValueError):
        ren.load_json(f, on_conflict="maybe")


def test_identical_redefinition_merges_enum_values(tmp_path: Path) -> None:
    d = load_builtin()
    f = tmp_path / "same.json"
    f.write_bytes(_doc([{"name": "CC-Request-Type", "code": 416, "type": "Enumerated",
                         "enum": {"INITIAL_REQUEST": 1, "FUTURE_REQUEST": 9}}]))  # fmt: skip
    d.load_json(f)
    assert d.avp(416).enum["FUTURE_REQUEST"] == 9 and d.avp(416).enum["UPDATE_REQUEST"] == 2
    assert d.avp(416).enum_cls.FUTURE_REQUEST == 9  # type: ignore[union-attr]
    assert d.conflicts == []


def test_bad_files(tmp_path: Path) -> None:
    d = Dictionary()
    for content, words in (
        (b"{not json", "not valid JSON"),
        (b'{"name": "x", "avps": [{"name": "A", "code": 1, "type": "Strange"}]}', "unknown type"),
        (
            b'{"name": "x", "avps": [{"name": "G", "code": 1, "type": "Grouped", "grammar": ["[ Nope ]"]}]}',
            "unknown AVP 'Nope'",
        ),
        (b'{"name": "x", "bogus": 1}', "bogus"),
    ):
        f = tmp_path / "bad.json"
        f.write_bytes(content)
        with pytest.raises(DictionaryError, match=words):
            d.load_json(f)
    with pytest.raises(DictionaryError):
        d.load_json(tmp_path / "missing.json")
    assert len(d.avps) == 0


MAIN_XML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE dictionary SYSTEM "dictionary.dtd" [
\t<!ENTITY acme SYSTEM "Acme.xml">
]>
<dictionary>
\t<base uri="x">
\t\t<command name="Acme-Ping" code="9100" vendor-id="None"/>
\t\t<typedefn type-name="OctetString"/>
\t\t<typedefn type-name="IPAddress" type-parent="OctetString"/>
\t\t<typedefn type-name="AcmeString" type-parent="UTF8String"/>
\t\t<avp name="Session-Id" code="263" mandatory="must"><type type-name="UTF8String"/></avp>
\t\t<avp name="Radius-Style-Address" code="200" mandatory="must"><type type-name="IPAddress"/></avp>
\t</base>
\t<vendor vendor-id="Acme" code="99999" name="Acme &amp; Co"/>
\t&acme;
</dictionary>
"""

ACME_XML = """<?xml version="1.0" encoding="UTF-8"?>
<application id="4242" name="Acme App" uri="none">
\t<command name="Acme-Report" code="9101" vendor-id="Acme"/>
\t<avp name="Acme-Address" code="300" vendor-id="Acme" mandatory="must" vendor-bit="must"><type type-name="IPAddress"/></avp>
\t<avp name="Acme-Label" code="301" vendor-id="Acme" mandatory="mustnot" vendor-bit="must"><type type-name="AcmeString"/></avp>
\t<avp name="Acme-Mode" code="302" vendor-id="Acme" vendor-bit="must">
\t\t<type type-name="Enumerated"/>
\t\t<enum name="Off" code="0"/><enum name="On" code="1"/><enum name="On" code="2"/>
\t</avp>
\t<avp name="Acme-Group" code="303" vendor-id="Acme" mandatory="must" vendor-bit="must">
\t\t<grouped><gavp name="Acme-Label"/><gavp name="Acme-Mode"/><gavp name="Defined-Nowhere"/></grouped>
\t</avp>
</application>
"""


def write_ws(tmp_path: Path) -> Path:
    (tmp_path / "Acme.xml").write_text(ACME_XML)
    main = tmp_path / "dictionary.xml"
    main.write_text(MAIN_XML)
    return main


def test_wireshark_import_follows_entity_includes(tmp_path: Path) -> None:
    main = write_ws(tmp_path)
    d = Dictionary()
    assert import_wireshark(d, main) == 6
    assert d.vendors[99999] == "Acme & Co"
    assert d.avp(200).type == "OctetString"  # RADIUS-range IPAddress: raw octets
    addr = d.avp(300, 99999)
    assert addr.type == "Address" and addr.mandatory and addr.vendor == 99999
    assert d.avp("Acme-Label").type == "UTF8String" and not d.avp("Acme-Label").mandatory
    assert "Acme.xml" in d.avp("Acme-Label").source
    mode = d.avp("Acme-Mode")
    assert mode.enum == {"Off": 0, "On": 1, "On (2)": 2}
    g = d.avp("Acme-Group").grammar
    assert [r.name for r in g.rules] == ["Acme-Label", "Acme-Mode", "AVP"]  # unknown member dropped
    assert g.any_allowed and all(r.max is None for r in g.rules)
    assert (
        d.command(9101, 4242).class_name == "AcmeReport" and d.applications[4242][0] == "Acme App"
    )
    # a message with the imported AVPs decodes to values
    raw = Message(
        code=9101, app_id=4242, dictionary=d, acme_group={"acme_label": "x", "acme_mode": 1}
    ).encode()
    m = Message.decode(raw, dictionary=d)
    assert m.acme_group.acme_label == ["x"] and m.acme_group.acme_mode[0].name == "ON"
    assert m.find_errors() == []


def test_wireshark_fragment_alone_and_conflict(tmp_path: Path) -> None:
    write_ws(tmp_path)
    d = Dictionary()
    with pytest.raises(DictionaryError, match="unknown vendor-id 'Acme'"):
        d.import_wireshark(tmp_path / "Acme.xml")  # Acme is declared in dictionary.xml only
    assert len(d.avps) == 0
    other = tmp_path / "Other.xml"
    other.write_text('<vendor vendor-id="TGPP" code="10415" name="3GPP">'
                     '<avp name="Not-Reporting-Reason" code="872" vendor-id="TGPP"><type type-name="Unsigned32"/></avp>'
                     "</vendor>")  # fmt: skip
    b = load_builtin()
    with pytest.raises(DictionaryError) as ei:
        b.import_wireshark(other)
    assert "Not-Reporting-Reason" in str(ei.value) and "Other.xml" in str(ei.value)
    assert "Reporting-Reason (Enumerated) from tgpp (builtin:tgpp.json)" in str(ei.value)
    assert b.import_wireshark(other, on_conflict="skip") == 0 and len(b.conflicts) == 1
    bad = tmp_path / "bad.xml"
    bad.write_text("<html><body/></html>")
    with pytest.raises(DictionaryError, match="not a Wireshark dictionary"):
        Dictionary().import_wireshark(bad)


@needs_wireshark
def test_full_wireshark_dictionary_on_top_of_the_builtin() -> None:
    """Wireshark's whole set imports under the default policy (issue 13): where it differs from
    the built-in (spec-corrected) dictionary the built-in definition stays, and each such
    resolution is reported."""
    d = load_builtin()
    n0 = len(d.avps)
    added = d.import_wireshark(WS)  # on_conflict="error", the default
    assert added > 800 and len(d.avps) == n0 + added
    kinds = {c.split(":", 1)[0] for c in d.conflicts}
    assert kinds == {"merged", "kept built-in", "duplicate"}, kinds
    assert d.avp(131072, 5771).name == "Cisco-Charging-Rule-Definition"
    assert d.avp(14).type == "Address"  # the built-in (RFC 7155) type, not Wireshark's
    assert d.avp(37).name == "Framed-Appletalk-Link"  # Wireshark's spelling merged into it
    assert d.by_attr["pdp_context_type"].vendor == 10415  # the built-in keeps its attribute
    assert any(attr == "pdp_context_type" for attr, _, _ in d.attr_collisions)
    skipped = load_builtin()
    assert skipped.import_wireshark(WS, on_conflict="skip") == added


def test_load_extra(tmp_path: Path) -> None:
    main = write_ws(tmp_path)
    j = tmp_path / "x.json"
    j.write_bytes(_doc([{"name": "Extra-Thing", "code": 70010, "type": "Unsigned32"}]))
    d = load_builtin()
    counts = load_extra([j, main], dictionary=d, on_conflict="skip")
    assert counts == {str(j): 1, str(main): 5}  # Session-Id from the XML merged: identical
    assert d.avp("Extra-Thing").code == 70010
    with pytest.raises(DictionaryError):
        load_extra([tmp_path / "none.xml"], dictionary=d)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chargegw.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_dict_show_and_list() -> None:
    out = run_cli("dict", "show", "CC-Request-Type")
    assert (
        out.returncode == 0 and "code        416" in out.stdout and "UPDATE_REQUEST" in out.stdout
    )
    out = run_cli("dict", "show", "872", "--vendor", "10415")
    assert "AVP Reporting-Reason" in out.stdout and "vendor      10415 (3GPP)" in out.stdout
    out = run_cli("dict", "show", "Credit-Control")
    assert "<Credit-Control-Request> ::= < Diameter Header: 272, REQ, PXY >" in out.stdout
    assert "{ CC-Request-Type }" in out.stdout
    out = run_cli("dict", "show", "CreditControlAnswer", "--json")
    doc = orjson.loads(out.stdout)
    assert doc["commands"][0]["code"] == 272 and "{ Result-Code }" in doc["commands"][0]["answer"]
    assert run_cli("dict", "show", "No-Such-Thing").returncode == 1
    out = run_cli("dict", "list", "--json")
    s = orjson.loads(out.stdout)
    assert s["avps"] >= 1500 and s["commands"] >= 25
    out = run_cli("dict", "list", "--commands")
    assert "CreditControl" in out.stdout


def test_cli_dict_import_writes_a_loadable_json(tmp_path: Path) -> None:
    main = write_ws(tmp_path)
    out_json = tmp_path / "acme.json"
    r = run_cli("dict", "import", str(main), "--out", str(out_json))
    assert r.returncode == 0, r.stderr
    assert "5 AVPs and 2 commands added" in r.stdout
    d = load_builtin()
    d.load_json(out_json)  # on top of the built-in, conflict-free
    assert d.avp(300, 99999).type == "Address" and d.command(9101, 4242) is not None
    bad = tmp_path / "clash.xml"
    bad.write_text(
        '<application id="1" name="x"><avp name="Not-Session-Id" code="263"><type type-name="UTF8String"/></avp></application>'
    )
    r = run_cli("dict", "import", str(bad))
    assert r.returncode == 1 and "conflicts with Session-Id" in r.stderr
    r = run_cli("dict", "--on-conflict", "skip", "import", str(bad))
    assert r.returncode == 0 and "1 conflicts (skip)" in r.stdout


def test_avp_decoded_with_an_imported_definition(tmp_path: Path) -> None:
    main = write_ws(tmp_path)
    d = load_builtin()
    d.import_wireshark(main)
    raw = struct.pack(">III", 300, (0xC0 << 24) | 18, 99999) + b"\x00\x01\xc0\x00\x02\x01\x00\x00"
    a = Avp.decode(raw, d)
    assert str(a.value) == "192.0.2.1" and a.name == "Acme-Address"
