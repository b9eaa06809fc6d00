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
    for d, members in avp_defs:
        wanted = d.name
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
