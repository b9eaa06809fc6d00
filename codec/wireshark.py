"""Import of Wireshark's Diameter dictionary XML (its `diameter/dictionary.xml` and includes).

Wireshark's `dictionary.xml` pulls its vendor files in through external entities
(`<!ENTITY TGPP SYSTEM "TGPP.xml">` ... `&TGPP;`), which ElementTree does not resolve; they are
spliced in here as text, from the including file's folder. A fragment file such as TGPP.xml
can also be imported on its own (it is wrapped in a root element).

What the XML gives, and how it is read:
* AVP name, code, vendor, type (Wireshark's extra types mapped to RFC 6733 ones, see
  `WS_TYPES`), M flag ("must" means set), enumerated values, and the member names of Grouped
  AVPs. Wireshark has no cardinalities, so an imported group's grammar is `* [ Member ]` for
  each member plus `* [ AVP ]`: members read as lists, and nothing is flagged 5008/5009.
* Commands (name, code, application) with no grammar: `* [ AVP ]` both ways.
* Definitions already loaded win. An identical one merges silently; a clash follows the
  `on_conflict` policy of Dictionary (error, skip or rename). A command that the dictionary
  already has under the same name (with a real grammar) is left alone.
* Except against the built-in dictionary, which was generated from these very files and
  corrected to the specs: there Wireshark's known differences are expected, so they never fail
  an import. A Wireshark AVP whose code the built-in dictionary has is the same AVP when its
  name is the built-in one up to case and punctuation, or the Wireshark name the built-in
  corrected (`WS_NAMES`): it merges (enum values, members), and where Wireshark's type differs
  the built-in (spec) type is kept. Any other name on a built-in code is a conflict (the
  `on_conflict` policy). A Wireshark AVP whose name a built-in
  one holds under another code is loaded as "Name.vendor.code". A code defined twice inside
  the imported files (Starent.xml has some) keeps its first definition. A command whose
  (application, code) the built-in dictionary has keeps the built-in grammar. Each of these
  is reported in `Dictionary.conflicts`, one line each, prefixed by what was done ("merged",
  "kept built-in", "renamed", "duplicate"), so an import tells what it merged.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from .definitions import AvpDef, CommandDef, DictionaryError, _check_policy
from .types import TYPES

if TYPE_CHECKING:
    from .dictionary import Dictionary

# Wireshark type names that RFC 6733 does not have, by what they are on the wire.
WS_TYPES = {
    "IPAddress": "Address",  # but codes under 256 are raw RADIUS-style addresses: see _ws_type
    "OctetStringOrUTF8": "OctetString",
    "VendorId": "Unsigned32",
    "AppId": "Unsigned32",
    "QoSFilterRule": "OctetString",  # RFC 3588 4.3; not in RFC 6733
    "MIPRegistrationRequest": "OctetString",
}

# Wireshark's names for AVPs the built-in dictionary renamed to their spec names
# (tools/gen_dictionaries.py RENAMES; a test keeps the two in step): (code, vendor) -> name.
WS_NAMES: dict[tuple[int, int], str] = {
    (50, 0): "Accounting-Multi-Session-Id",
    (68, 0): "Tunnel-Connection-ID",
    (376, 0): "SIP-Auth-Data-Item",
    (377, 0): "SIP-Authentication-Scheme",
    (378, 0): "SIP-Item-Number",
    (379, 0): "SIP-Authenticate",
    (380, 0): "SIP-Authorization",
    (382, 0): "SIP-Number-Auth-Items",
    (393, 0): "SIP-Method",
    (606, 10415): "Cx-User-Data",
    (607, 10415): "3GPP-SIP-Number-Auth-Items",
    (608, 10415): "3GPP-SIP-Authentication-Scheme",
    (609, 10415): "3GPP-SIP-Authenticate",
    (610, 10415): "3GPP-SIP-Authorization",
    (612, 10415): "3GPP-SIP-Auth-Data-Item",
    (613, 10415): "3GPP-SIP-Item-Number",
    (634, 10415): "Wildcarded-PSI",
    (824, 10415): "3GPP-SIP-Method",
    (872, 10415): "3GPP-Reporting-Reason",
    (2603, 10415): "IP-Realm-Default-Indicator",
    (2604, 10415): "Local-GW-Inserted-Indicator",
    (2605, 10415): "Transcoder-Inserted-Indicator",
    (3416, 10415): "ISUP-Release-Cause",
    (3508, 10415): "Radio-Frequency",
    (315, 13019): "QoS-Profile-ID",
}

# Wireshark's vendor symbols, for a fragment file imported without dictionary.xml
WS_VENDORS = {"None": 0, "TGPP": 10415, "TGPP2": 5535, "ETSI": 13019, "TGPPCX": 16777216}

_ENTITY_DECL = re.compile(r"<!ENTITY\s+(\w[\w.\-]*)\s+SYSTEM\s+\"([^\"]+)\"\s*>")
_DOCTYPE = re.compile(r"<!DOCTYPE\s[^\[>]*(\[.*?\])?\s*>", re.DOTALL)
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_ENTITY_REF = re.compile(r"&(\w[\w.\-]*);")


def read_xml(path: Path, _depth: int = 0) -> str:
    """The file's text with its DOCTYPE's SYSTEM entities replaced by the files they name."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DictionaryError(f"{path}: {exc.strerror or exc}") from None
    if _depth > 8:
        raise DictionaryError(f"{path}: entity includes nested too deep")
    entities: dict[str, Path] = {}
    m = _DOCTYPE.search(text)
    if m is not None:
        for name, ref in _ENTITY_DECL.findall(m.group(0)):
            entities[name] = (path.parent / ref).resolve()
        text = text[: m.start()] + text[m.end() :]
    text = _XML_DECL.sub("", text, count=1)

    def splice(mm: re.Match[str]) -> str:
        target = entities.get(mm.group(1))
        if target is None:
            return mm.group(0)  # &amp; and friends
        # an element of our own marks where the included file's definitions came from
        attr = str(target).replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
        return f'<ws-include file="{attr}">{read_xml(target, _depth + 1)}</ws-include>'

    return _ENTITY_REF.sub(splice, text) if entities else text


def parse_xml(path: Path) -> ET.Element:
    text = read_xml(path)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        if "junk after document element" not in str(exc):
            raise DictionaryError(f"{path}: not a Wireshark dictionary: {exc}") from None
        try:  # a fragment (TGPP.xml ...): several top-level elements
            root = ET.fromstring(f"<dictionary>{text}</dictionary>")
        except ET.ParseError as exc2:
            raise DictionaryError(f"{path}: not a Wireshark dictionary: {exc2}") from None
    if root.tag not in ("dictionary", "application", "vendor", "base"):
        raise DictionaryError(f"{path}: root element <{root.tag}> is not a Wireshark dictionary")
    if root.tag != "dictionary":
        wrapper = ET.Element("dictionary")
        wrapper.append(root)
        root = wrapper
    return root


def _int(text: str | None, where: str) -> int:
    try:
        return int(str(text).strip(), 0)
    except ValueError:
        raise DictionaryError(f"{where}: {text!r} is not a number") from None


def _ws_type(type_name: str, parents: dict[str, str], code: int) -> str:
    seen = set()
    t = type_name
    while t not in TYPES and t not in WS_TYPES and t in parents and t not in seen:
        seen.add(t)
        t = parents[t]
    if t == "IPAddress" and code < 256:
        return "OctetString"  # a raw RADIUS-style address: Wireshark dissects codes < 256 so
    return WS_TYPES.get(t, t) if t not in TYPES else t


def _class_name(name: str) -> str:
    s = re.sub(r"[^0-9A-Za-z]", "", name.replace("3GPP2", "Tgpp2").replace("3GPP", "Tgpp"))
    return s if s and not s[0].isdigit() else "Cmd" + s


def import_wireshark(
    dictionary: Dictionary, path: Path | str, *, on_conflict: str = "error"
) -> int:
    """Load a Wireshark dictionary XML file into `dictionary`; returns how many AVPs were added."""
    _check_policy(on_conflict)
    path = Path(path)
    root = parse_xml(path)
    origin = f"wireshark ({path})"

    vendors = dict(WS_VENDORS)
    for v in root.iter("vendor"):
        sym = v.get("vendor-id")
        code = v.get("code")
        if sym and code is not None:
            vendors[sym] = _int(code, f"{origin}: vendor {sym}")
            if v.get("name"):
                dictionary.vendors.setdefault(vendors[sym], v.get("name", sym))
    parents = {
        t.get("type-name", ""): t.get("type-parent", "")
        for t in root.iter("typedefn")
        if t.get("type-parent")
    }

    avp_defs: list[tuple[AvpDef, list[str]]] = []
    commands: list[CommandDef] = []
    for section, file in _sections(root, path):
        tag = section.tag
        origin = f"wireshark {file.name} ({file})"
        app_id = None
        if tag == "application":
            app_id = _int(section.get("id"), f"{origin}: application {section.get('name')}")
            dictionary.applications.setdefault(
                app_id, (section.get("name") or f"application {app_id}", "auth")
            )
        section_vendor = section.get("vendor-id") if tag == "vendor" else None
        for el in section:
            if el.tag == "command":
                name = el.get("name") or ""
                where = f"{origin}: command {name}"
                commands.append(
                    CommandDef(
                        name,
                        _int(el.get("code"), where),
                        app_id,
                        True,
                        ["* [ AVP ]"],
                        ["* [ AVP ]"],
                        origin,
                        _class_name(name),
                    )
                )
            elif el.tag == "avp":
                avp_defs.append(_avp(el, section_vendor, vendors, parents, origin))
    origin = f"wireshark {path.name} ({path})"

    before = len(dictionary.avps)
    renamed: dict[str, str] = {}
    added: list[tuple[AvpDef, list[str]]] = []
    first: dict[tuple[int, int], AvpDef] = {}  # this import's definitions, by code
    report = dictionary.conflicts.append
    for d, members in avp_defs:
        wanted = d.name
        held = first.get(d.key)
        if held is not None:  # the imported files define this code twice
            if (held.name, held.type) != (d.name, d.type):
                report(
                    f"duplicate: AVP code {d.code} vendor {d.vendor}: {d.name} ({d.type}) "
                    f"from {d.source} is defined again; kept {held.name} ({held.type})"
                )
                renamed.setdefault(d.name, dictionary.avps[d.key].name)
            continue
        first[d.key] = d
        old = dictionary.avps.get(d.key)
        same = old is not None and (
            _norm(old.name) == _norm(d.name) or WS_NAMES.get(d.key) == d.name
        )
        if same and old is not None and _builtin(old) and (old.name, old.type) != (d.name, d.type):
            renamed[wanted] = old.name  # members that name it mean the built-in one
            if old.type == d.type:
                report(f"merged: {d.name} (code {d.code} vendor {d.vendor}) is {old.name}")
                d.name = old.name
                d.__post_init__()
            else:
                report(
                    f"kept built-in: AVP code {d.code} vendor {d.vendor}: {old.name} "
                    f"({old.type}, {old.source}), not Wireshark's {d.name} ({d.type})"
                )
                if old.type == "Grouped" and old.grammar_src is None and members:
                    added.append((old, members))
                continue
        elif old is None:
            other = dictionary.by_name.get(d.name)
            if other is not None and _builtin(other):
                got = dictionary.add_avp(d, on_conflict="rename")
                if got is not None:
                    added.append((got, members))
                    renamed[wanted] = got.name
                    dictionary.conflicts[-1] = "renamed: " + dictionary.conflicts[-1]
                continue
        got = dictionary.add_avp(d, on_conflict=on_conflict)
        if got is d:
            added.append((d, members))
            if d.name != wanted:
                renamed[wanted] = d.name
        elif got is not None and got.type == "Grouped" and got.grammar_src is None and members:
            added.append((got, members))  # an identical definition that lacked its members
    for d, members in added:
        names = []
        for m in members:
            m = renamed.get(m, m)
            if m in dictionary.by_name and m not in names:
                names.append(m)
        d.grammar_src = [f"* [ {m} ]" for m in names] + ["* [ AVP ]"]
        if d not in dictionary._unresolved:
            dictionary._unresolved.append(d)
    for c in commands:
        if _known_command(dictionary, c):
            continue
        old_cmd = dictionary.commands.get((c.app_id, c.code))
        if old_cmd is not None and _builtin(old_cmd):
            report(
                f"kept built-in: command {c.code} (application {c.app_id}): {old_cmd.name} "
                f"with its grammar, not Wireshark's {c.name}"
            )
            continue
        dictionary.add_command(c, on_conflict=on_conflict)
    dictionary.sources.append(origin)
    dictionary.resolve()
    return len(dictionary.avps) - before


def _sections(root: ET.Element, file: Path) -> list[tuple[ET.Element, Path]]:
    """The <base>, <application> and <vendor> elements, with the file each came from."""
    out = []
    for el in root:
        if el.tag == "ws-include":
            out += _sections(el, Path(el.get("file", str(file))))
        elif el.tag in ("base", "application", "vendor"):
            out.append((el, file))
    return out


def _avp(
    el: ET.Element,
    section_vendor: str | None,
    vendors: dict[str, int],
    parents: dict[str, str],
    origin: str,
) -> tuple[AvpDef, list[str]]:
    name = (el.get("name") or "").strip()
    where = f"{origin}: AVP {name}"
    if not name:
        raise DictionaryError(f"{origin}: an <avp> without a name")
    code = _int(el.get("code"), where)
    sym = el.get("vendor-id") or section_vendor or "None"
    if sym not in vendors:
        raise DictionaryError(f"{where}: unknown vendor-id {sym!r}")
    vendor = vendors[sym]
    members: list[str] = []
    t = el.find("type")
    if el.find("grouped") is not None:
        type_name = "Grouped"
        members = [g.get("name", "") for g in el.iter("gavp") if g.get("name")]
    elif t is not None:
        type_name = _ws_type(t.get("type-name", ""), parents, code)
    else:
        raise DictionaryError(f"{where}: neither <type> nor <grouped>")
    if type_name not in TYPES:
        type_name = "OctetString"  # an unknown Wireshark type: keep the octets
    enum: dict[str, int] = {}
    for e in el.iter("enum"):
        label = (e.get("name") or "").strip()
        value = _int(e.get("code"), f"{where}: enum {label}")
        if not label:
            continue
        if label in enum and enum[label] != value:
            label = f"{label} ({value})"
        enum.setdefault(label, value)
    if type_name not in ("Enumerated", "Integer32", "Unsigned32", "Integer64", "Unsigned64"):
        enum = {}
    d = AvpDef(
        name,
        code,
        vendor,
        type_name,
        el.get("mandatory") == "must",
        origin,
        enum or None,
        None,
    )
    return d, members


def _builtin(d: AvpDef | CommandDef) -> bool:
    """Whether a definition comes from chargegw's own (spec-corrected) dictionary files."""
    return "(builtin:" in d.source


def _norm(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _known_command(dictionary: Dictionary, c: CommandDef) -> bool:
    """Wireshark's grammar-less command is redundant where one of that name and code exists."""
    name = _norm(c.name)
    for (app, code), old in dictionary.commands.items():
        if (
            code == c.code
            and _norm(old.name) == name
            and (c.app_id is None or app in (c.app_id, None))
        ):
            return True
    return False
