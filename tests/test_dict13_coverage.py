"""How many of python-diameter's AVPs chargegw knows, and which it still lacks (issue 13).

python-diameter 0.9.0 (the bench extra, installed in CI) defines 2,824 AVPs by (code, vendor).
This counts how many of them chargegw's built-in dictionary knows, and with the optional vendor
dictionaries loaded; each count must not fall below its floor (raise the floor when the
dictionary grows), and the gap is printed (`pytest -s`) so what is missing stays visible.
"""

from __future__ import annotations

from collections import Counter

import pytest

from chargegw.codec import get_dictionary
from chargegw.codec.dictionaries import resolve, vendor_names
from chargegw.codec.dictionary import load_builtin, load_extra

pdd = pytest.importorskip("diameter.message.avp.dictionary")

BUILTIN_FLOOR = 1985  # of python-diameter's AVPs known to the built-in dictionary
WITH_VENDORS_FLOOR = 2801  # ... with every optional vendor dictionary loaded as well
# python-diameter's AVPs left out on purpose (tools/gen_dictionaries_more.py says why)
NOT_TAKEN = {(1008, 0), (1009, 0), (1012, 0)}


def python_diameter_avps() -> dict[tuple[int, int], str]:
    out = {(c, 0): i["name"] for c, i in pdd.AVP_DICTIONARY.items()}
    for vendor, table in pdd.AVP_VENDOR_DICTIONARY.items():
        for c, i in table.items():
            out[(c, vendor)] = i["name"]
    return out


def report(title: str, gap: dict[tuple[int, int], str]) -> str:
    by_vendor = Counter(v for _, v in gap)
    lines = [f"{title}: {len(gap)} python-diameter AVPs missing; by vendor: {dict(by_vendor)}"]
    lines += [f"  {code}/{vendor} {name}" for (code, vendor), name in sorted(gap.items())]
    return "\n".join(lines)


def test_builtin_dictionary_covers_python_diameters_ietf_and_3gpp_avps() -> None:
    pd = python_diameter_avps()
    ours = {a.key for a in get_dictionary().avps.values()}
    known = pd.keys() & ours
    gap = {k: n for k, n in pd.items() if k not in ours}
    print(report("built-in", gap))
    assert len(known) >= BUILTIN_FLOOR, report("built-in", gap)
    # every IETF (vendor 0) and 3GPP AVP python-diameter has, except the three not taken
    missing = {k for k in gap if k[1] in (0, 10415)} - NOT_TAKEN
    assert not missing, sorted(missing)


def test_with_vendor_dictionaries_nearly_all_python_diameter_avps_are_known() -> None:
    pd = python_diameter_avps()
    d = load_builtin()
    load_extra([resolve(f"vendor:{n}") for n in vendor_names()], dictionary=d)
    ours = {a.key for a in d.avps.values()}
    gap = {k: n for k, n in pd.items() if k not in ours}
    print(report("built-in + vendor dictionaries", gap))
    assert len(pd.keys() & ours) >= WITH_VENDORS_FLOOR, report("with vendors", gap)


def test_new_avps_carry_python_diameters_facts() -> None:
    """The AVPs added from python-diameter's facts agree with it on type class and M bit
    (renamed ones keep code and vendor; the name differs only by the ProSe- prefix)."""
    d = get_dictionary()
    pd_types = {
        "AvpUtf8String": "UTF8String", "AvpOctetString": "OctetString",
        "AvpUnsigned32": "Unsigned32", "AvpUnsigned64": "Unsigned64", "AvpInteger32": "Integer32",
        "AvpGrouped": "Grouped", "AvpTime": "Time",
    }  # fmt: skip
    table = pdd.AVP_VENDOR_DICTIONARY[10415]
    checked = 0
    for code in [*range(1719, 1731), *range(3600, 3613), *range(3801, 3869)]:
        info = table.get(code)
        if info is None:
            continue
        ours = d.avp(code, 10415)
        assert ours.type == pd_types[info["type"].__name__], ours.name
        assert ours.mandatory == bool(info.get("mandatory")), ours.name
        assert ours.name in (info["name"], "ProSe-" + info["name"])
        checked += 1
    assert checked >= 90
