"""The dictionary: one source of truth for AVPs, enums, grammars and commands.

Encode, decode, validation and the generated command classes all read from here. Definitions
come from the JSON files in `dictionaries/` (built in), from more JSON files, or from
Wireshark's dictionary XML (see `wireshark.py`). Two sources that disagree about a code or a
name are an error that names both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cache
from importlib import resources
from pathlib import Path
from struct import Struct
from typing import Any

import msgspec

from .constants import AVP_MANDATORY, AVP_VENDOR
from .types import TYPES


class DictionaryError(Exception):
    """A dictionary file is invalid or conflicts with what is already loaded."""


def snake_name(name: str) -> str:
    """'CC-Request-Type' -> 'cc_request_type'; '3GPP-IMSI' -> 'tgpp_imsi'."""
    s = re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_").lower()
    if s.startswith("3gpp"):
        s = "tgpp" + s[4:]
    if s[:1].isdigit():
        s = "avp_" + s
    return s


def enum_member_name(name: str) -> str:
    s = re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_").upper()
    return ("V_" + s) if (not s or s[0].isdigit()) else s


@dataclass(slots=True, eq=False)
class AvpDef:
    name: str
    code: int
    vendor: int
    type: str
    mandatory: bool
    source: str
    enum: dict[str, int] | None = None
    grammar_src: list[str] | None = None
    attr: str = ""
    codec: Any = None
    flags: int = 0
    grammar: Grammar | None = None
    enum_cls: type[IntEnum] | None = None
    fixed_struct: Struct | None = None  # whole AVP (header and value) in one pack, fixed types
    owner: Any = None  # the Dictionary it belongs to (nested groups decode with it)

    def __post_init__(self) -> None:
        self.attr = snake_name(self.name)
        self.codec = TYPES[self.type]
        self.flags = (AVP_VENDOR if self.vendor else 0) | (AVP_MANDATORY if self.mandatory else 0)
        if self.enum:
            members = {enum_member_name(k): v for k, v in self.enum.items()}
            self.enum_cls = IntEnum(re.sub(r"[^0-9A-Za-z]", "", self.name) or "Enum", members)  # type: ignore[misc]
        if self.codec.fixed:
            fmt = self.codec.struct.format.lstrip(">")
            self.fixed_struct = Struct(">III" + fmt if self.vendor else ">II" + fmt)

    @property
    def key(self) -> tuple[int, int]:
        return (self.code, self.vendor)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "code": self.code,
            "vendor": self.vendor,
            "type": self.type,
            "flags": ("V" if self.vendor else "") + ("M" if self.mandatory else ""),
            "attribute": self.attr,
            "source": self.source,
        }
        if self.enum:
            d["enum"] = dict(self.enum)
        if self.grammar_src:
            d["grammar"] = list(self.grammar_src)
        return d


@dataclass(slots=True)
class Rule:
    """One CCF element: `min*max <{[ Name ]}>`."""

    name: str
    kind: str  # "fixed" | "required" | "optional"
    min: int
    max: int | None  # None: unbounded
    avp: AvpDef | None = None  # None for the AVP wildcard

    def text(self) -> str:
        lo = "" if self.min == (0 if self.kind == "optional" else 1) else str(self.min)
        hi = "" if self.max == 1 else ("" if self.max is None else str(self.max))
        q = "" if (self.max == 1 and not lo) else f"{lo}*{hi} "
        b = {"fixed": "<>", "required": "{}", "optional": "[]"}[self.kind]
        return f"{q}{b[0]} {self.name} {b[1]}"


_CCF = re.compile(r"^\s*(?:(\d*)\s*\*\s*(\d*))?\s*([<{\[])\s*([A-Za-z0-9][A-Za-z0-9_.\-]*)\s*([>}\]])\s*$")
_KIND = {"<": "fixed", "{": "required", "[": "optional"}
_CLOSE = {"<": ">", "{": "}", "[": "]"}


def parse_rule(text: str) -> Rule:
    m = _CCF.match(text)
    if not m or _CLOSE[m.group(3)] != m.group(5):
        raise DictionaryError(f"cannot parse grammar element {text!r}")
    star = "*" in text.split(m.group(3))[0]
    kind = _KIND[m.group(3)]
    lo_s, hi_s = m.group(1), m.group(2)
    default_min = 0 if kind == "optional" else 1
    if star:
        lo = int(lo_s) if lo_s else default_min
        hi = int(hi_s) if hi_s else None
    else:
        lo, hi = default_min, 1
    return Rule(m.group(4), kind, lo, hi)


class Grammar:
    """A parsed CCF body: which AVPs may appear, how often, and in what order to place them."""

    __slots__ = ("rules", "by_key", "rank", "any_allowed", "fixed")

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self.by_key: dict[tuple[int, int], Rule] = {}
        self.rank: dict[tuple[int, int], int] = {}
        self.any_allowed = False
        self.fixed: list[Rule] = []
        for i, r in enumerate(rules):
            if r.avp is None:
                self.any_allowed = True
                continue
            self.by_key.setdefault(r.avp.key, r)
            self.rank.setdefault(r.avp.key, i)
            if r.kind == "fixed" and len(self.fixed) == i:
                self.fixed.append(r)

    def multiple(self, key: tuple[int, int]) -> bool:
        r = self.by_key.get(key)
        return r is not None and (r.max is None or r.max > 1)

    def texts(self) -> list[str]:
        return [r.text() for r in self.rules]


@dataclass(slots=True, eq=False)
class CommandDef:
    name: str
    code: int
    app_id: int | None
    proxiable: bool
    request_src: list[str]
    answer_src: list[str]
    source: str
    class_name: str = ""
    request: Grammar | None = None
    answer: Grammar | None = None

    def __post_init__(self) -> None:
        if not self.class_name:
            self.class_name = re.sub(r"[^0-9A-Za-z]", "", self.name)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "code": self.code,
            "application": self.app_id,
            "proxiable": self.proxiable,
            "classes": [self.class_name + "Request", self.class_name + "Answer"],
            "request": list(self.request_src),
            "answer": list(self.answer_src),
            "source": self.source,
        }


# -- the file format (codec/dictionaries/*.json) -------------------------------------------


class _AvpSpec(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    code: int
    type: str
    vendor: int = 0
    m: bool = True
    p: bool = False
    enum: dict[str, int] | None = None
    grammar: list[str] | None = None


class _CommandSpec(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    code: int
    request: list[str]
    answer: list[str]
    application: int | None = None
    proxiable: bool = True
    class_name: str | None = None


class _VendorSpec(msgspec.Struct):
    id: int
    name: str


class _AppSpec(msgspec.Struct):
    id: int
    name: str
    kind: str = "auth"


class _FileSpec(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    title: str = ""
    source: str = ""
    vendors: list[_VendorSpec] = []
    applications: list[_AppSpec] = []
    avps: list[_AvpSpec] = []
    commands: list[_CommandSpec] = []


BUILTIN_FILES = (
    "base",
    "nasreq",
    "mip4",
    "eap",
    "credit_control",
    "tgpp",
    "sy",
    "cxdx",
)

_WILDCARD = "AVP"


class Dictionary:
    """Every loaded definition, indexed for the codec's lookups."""

    def __init__(self) -> None:
        self.avps: dict[tuple[int, int], AvpDef] = {}
        self.by_name: dict[str, AvpDef] = {}
        self.by_attr: dict[str, AvpDef] = {}
        self.by_lower: dict[str, AvpDef] = {}
        self.commands: dict[tuple[int | None, int], CommandDef] = {}
        self.vendors: dict[int, str] = {0: "IETF"}
        self.applications: dict[int, tuple[str, str]] = {}
        self.sources: list[str] = []
        self._unresolved: list[Any] = []
        self.classes: dict[Any, type] = {}  # filled by message.py, per dictionary

    # -- loading -----------------------------------------------------------------------

    def load_json(
        self, path: str | Path, data: bytes | None = None, *, resolve: bool = True
    ) -> Dictionary:
        raw = Path(path).read_bytes() if data is None else data
        try:
            spec = msgspec.json.decode(raw, type=_FileSpec)
        except msgspec.ValidationError as exc:
            raise DictionaryError(f"{path}: {exc}") from None
        except msgspec.DecodeError as exc:
            raise DictionaryError(f"{path}: not valid JSON: {exc}") from None
        self.add_spec(spec, str(path))
        if resolve:
            self.resolve()
        return self

    def add_spec(self, spec: _FileSpec, origin: str) -> None:
        source = f"{spec.name} ({origin})"
        self.sources.append(source)
        for v in spec.vendors:
            self.vendors.setdefault(v.id, v.name)
        for a in spec.applications:
            self.applications.setdefault(a.id, (a.name, a.kind))
        for a in spec.avps:
            if a.type not in TYPES:
                raise DictionaryError(f"{source}: AVP {a.name}: unknown type {a.type!r}")
            self.add_avp(
                AvpDef(a.name, a.code, a.vendor, a.type, a.m, source, a.enum, a.grammar)
            )
        for c in spec.commands:
            self.add_command(
                CommandDef(
                    c.name,
                    c.code,
                    c.application,
                    c.proxiable,
                    c.request,
                    c.answer,
                    source,
                    c.class_name or "",
                )
            )

    def add_avp(self, d: AvpDef) -> AvpDef:
        old = self.avps.get(d.key)
        if old is not None:
            if (old.name, old.type) == (d.name, d.type):
                if d.enum and old.enum != d.enum:
                    merged = dict(old.enum or {})
                    merged.update(d.enum)
                    old.enum = merged
                    old.__post_init__()
                if d.grammar_src and not old.grammar_src:
                    old.grammar_src = d.grammar_src
                    self._unresolved.append(old)
                return old
            raise DictionaryError(
                f"AVP code {d.code} vendor {d.vendor}: {d.name} ({d.type}) from {d.source} "
                f"conflicts with {old.name} ({old.type}) from {old.source}"
            )
        other = self.by_name.get(d.name)
        if other is not None:
            raise DictionaryError(
                f"AVP name {d.name}: code {d.code}/vendor {d.vendor} from {d.source} conflicts "
                f"with code {other.code}/vendor {other.vendor} from {other.source}"
            )
        d.owner = self
        self.avps[d.key] = d
        self.by_name[d.name] = d
        self.by_lower[d.name.lower()] = d
        self.by_attr.setdefault(d.attr, d)
        if d.grammar_src is not None:
            self._unresolved.append(d)
        return d

    def add_command(self, c: CommandDef) -> CommandDef:
        key = (c.app_id, c.code)
        old = self.commands.get(key)
        if old is not None and (old.name, old.request_src, old.answer_src) != (
            c.name,
            c.request_src,
            c.answer_src,
        ):
            raise DictionaryError(
                f"command {c.code} (application {c.app_id}): {c.name} from {c.source} "
                f"conflicts with {old.name} from {old.source}"
            )
        if old is None:
            self.commands[key] = c
            self._unresolved.append(c)
        return self.commands[key]

    def _grammar(self, texts: list[str], where: str) -> Grammar:
        rules = []
        for t in texts:
            r = parse_rule(t)
            if r.name != _WILDCARD:
                r.avp = self.by_name.get(r.name)
                if r.avp is None:
                    raise DictionaryError(f"{where}: grammar names unknown AVP {r.name!r}")
            rules.append(r)
        return Grammar(rules)

    def resolve(self) -> None:
        """Bind grammar names to definitions once every file of a batch is in."""
        pending, self._unresolved = self._unresolved, []
        for item in pending:
            if isinstance(item, AvpDef):
                item.grammar = self._grammar(item.grammar_src or [], f"{item.name} ({item.source})")
            else:
                item.request = self._grammar(item.request_src, f"{item.name} request ({item.source})")
                item.answer = self._grammar(item.answer_src, f"{item.name} answer ({item.source})")
        # keep generated classes (callers hold them); forget only "no class" answers
        self.classes = {k: v for k, v in self.classes.items() if v._command is not None}

    # -- lookups -----------------------------------------------------------------------

    def avp(self, name_or_code: str | int, vendor: int = 0) -> AvpDef:
        """By code (with vendor), dictionary name, snake_case name or any-case name."""
        if isinstance(name_or_code, int):
            d = self.avps.get((name_or_code, vendor))
        else:
            d = (
                self.by_name.get(name_or_code)
                or self.by_attr.get(name_or_code)
                or self.by_lower.get(name_or_code.lower())
            )
            if d is None and name_or_code.isdigit():
                d = self.avps.get((int(name_or_code), vendor))
        if d is None:
            raise KeyError(f"no AVP {name_or_code!r} (vendor {vendor}) in the dictionary")
        return d

    def find_avp(self, name: str) -> AvpDef | None:
        return self.by_attr.get(name) or self.by_name.get(name) or self.by_lower.get(name.lower())

    def command(self, code: int, app_id: int | None = None) -> CommandDef | None:
        return self.commands.get((app_id, code)) or self.commands.get((None, code)) or (
            self.commands.get((0, code)) if app_id is not None else None
        )

    def find_commands(self, name_or_code: str | int) -> list[CommandDef]:
        out = []
        for c in self.commands.values():
            if isinstance(name_or_code, int) or str(name_or_code).isdigit():
                if c.code == int(name_or_code):
                    out.append(c)
            elif name_or_code.lower() in (
                c.name.lower(),
                c.class_name.lower(),
                c.class_name.lower() + "request",
                c.class_name.lower() + "answer",
            ):
                out.append(c)
        return out

    def iter_avps(self) -> Iterable[AvpDef]:
        return self.avps.values()

    def import_wireshark(self, path: str | Path) -> int:
        """Load a Wireshark dictionary XML file (and what it includes); returns AVPs added."""
        from .wireshark import import_wireshark

        return import_wireshark(self, Path(path))


def load_builtin(d: Dictionary | None = None) -> Dictionary:
    d = d or Dictionary()
    pkg = resources.files("chargegw.codec.dictionaries")
    for name in BUILTIN_FILES:
        res = pkg / f"{name}.json"
        if res.is_file():
            d.load_json(f"builtin:{name}.json", res.read_bytes(), resolve=False)
    d.resolve()
    return d


@cache
def get_dictionary() -> Dictionary:
    """The process-wide dictionary: the built-in files, plus whatever the config imports."""
    return load_builtin()
