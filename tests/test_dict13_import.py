"""`chargegw dict import` of Wireshark's own files under the default policy (issue 13): the
whole set and a vendor file with internal duplicates load, with a report of what was merged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chargegw.codec.dictionary import DictionaryError, load_builtin
from chargegw.codec.wireshark import WS_NAMES

WS_DIR = Path("/usr/share/wireshark/diameter")
TOOLS = Path(__file__).resolve().parent.parent / "tools"
needs_wireshark = pytest.mark.skipif(
    not (WS_DIR / "dictionary.xml").is_file(), reason="Wireshark's dictionary is not installed"
)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chargegw.cli", *args], capture_output=True, text=True, timeout=300
    )


@needs_wireshark
@pytest.mark.parametrize("name", ["dictionary.xml", "Starent.xml"])
def test_wiresharks_files_import_by_default(name: str) -> None:
    r = cli("dict", "import", str(WS_DIR / name))
    assert r.returncode == 0, r.stderr
    assert "merge report:" in r.stdout and "conflicts (error)" not in r.stdout
    if name == "Starent.xml":  # codes 8, 20 and 151 are defined twice in the file
        assert "3 duplicate" in r.stdout and "kept SN-IP-Pool-Name" in r.stdout
    else:
        assert (
            "merged: Framed-AppleTalk-Link (code 37 vendor 0) is Framed-Appletalk-Link" in r.stdout
        )
        assert "kept built-in: AVP code 14 vendor 0: Login-IP-Host (Address" in r.stdout


def test_a_duplicate_inside_one_file_keeps_the_first(tmp_path: Path) -> None:
    f = tmp_path / "Vend.xml"
    f.write_text(
        '<vendor vendor-id="Vend" code="64999" name="Vend">'
        '<avp name="Vend-A" code="1" vendor-id="Vend"><type type-name="UTF8String"/></avp>'
        '<avp name="Vend-B" code="1" vendor-id="Vend"><type type-name="Unsigned32"/></avp>'
        "</vendor>"
    )
    d = load_builtin()
    assert d.import_wireshark(f) == 1
    assert d.avp(1, 64999).name == "Vend-A" and "Vend-B" not in d.by_name
    assert d.conflicts == [c for c in d.conflicts if c.startswith("duplicate: AVP code 1 ")]


def test_an_unknown_name_on_a_builtin_code_is_still_a_conflict(tmp_path: Path) -> None:
    f = tmp_path / "Other.xml"
    f.write_text('<application id="1" name="x"><avp name="Not-Session-Id" code="263">'
                 '<type type-name="UTF8String"/></avp></application>')  # fmt: skip
    with pytest.raises(DictionaryError, match="conflicts with Session-Id"):
        load_builtin().import_wireshark(f)


def test_known_wireshark_names_follow_the_generators_renames() -> None:
    sys.path.insert(0, str(TOOLS))
    try:
        import gen_dictionaries
    finally:
        sys.path.remove(str(TOOLS))
    renamed = {k for k, v in gen_dictionaries.RENAMES.items()}
    case_only = {k for k in renamed if k not in WS_NAMES}
    d = load_builtin()
    for key in case_only:  # the rest differ from Wireshark only by case / punctuation
        a = d.avps[key]
        assert a.name.lower().replace("-", "") in {
            "framedappletalklink", "framedappletalknetwork", "framedappletalkzone",
            "usersessionid", "trunkgroupid", "incomingtrunkgroupid", "outgoingtrunkgroupid",
        }, a.name  # fmt: skip
    assert set(WS_NAMES) <= renamed
