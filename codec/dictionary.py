"""The dictionary: one source of truth for AVPs, enums, grammars and commands.

Encode, decode, validation and the generated command classes all read from here. Definitions
come from the JSON files in `dictionaries/` (built in), from more JSON files, or from
Wireshark's dictionary XML (see `wireshark.py`). Two sources that disagree about a code or a
name are an error that names both.
"""

from __future__ import annotations

import copy
import keyword
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    """'CC-Request-Type' -> 'cc_request_type'; '3GPP-IMSI' -> 'tgpp_imsi'; 'Class' -> 'class_'."""
    s = re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_").lower()
    if s.startswith("3gpp"):
        s = "tgpp" + s[4:]
    if s[:1].isdigit():
        s = "avp_" + s
    if keyword.iskeyword(s):
        s += "_"  # PEP 8: msg.class_, not the syntax error msg.class
    return s


def enum_member_name(name: str) -> str:
    s = re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_").upper()
    return ("V_" + s) if (not s or s[0].isdigit()) else s


def make_enum(avp_name: str, values: dict[str, int]) -> type[IntEnum]:
    """The IntEnum of an Enumerated AVP; member names made unique, values may alias."""
    members: dict[str, int] = {}
    for label, value in values.items():
        key = enum_member_name(label)
        if key in members and members[key] != value:
            key = f"{key}_{value}".replace("-", "M")
        members.setdefault(key, value)
    cls_name = re.sub(r"[^0-9A-Za-z]", "", avp_name) or "Enum"
    if cls_name[0].isdigit():
        cls_name = "E" + cls_name
    return IntEnum(cls_name, members)  # type: ignore[return-value]


_STRUCTS: dict[str, Struct] = {}
_NO_ENUM: Any = object()


def _struct(fmt: str) -> Struct:
    s = _STRUCTS.get(fmt)
    if s is None:
        s = _STRUCTS[fmt] = Struct(fmt)
    return s


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
    fixed_struct: Struct | None = None  # whole AVP (header and value) in one pack, fixed types
    fixed_len: int = 0  # AVP Length of a fixed type (header included, no padding)
    ikey: int = 0  # code | vendor << 32, the key of a container's index
    kind: int = 0  # how a value is checked: 0 by its type, 1 enumerated, 2 grouped
    lo: int | None = None  # an integer type's range (building checks ints against it inline)
    hi: int | None = None
    plain: bool = False  # UTF8String: any str of ASCII without NUL is valid as it is
    ident: bool = False  # DiameterIdentity: printable ASCII without spaces, 255 at most
    converts: bool = False  # codec.converts: the stored value is not what the struct packs
    owner: Any = None  # the Dictionary it belongs to (nested groups decode with it)
    _ec: Any = _NO_ENUM  # the IntEnum class, made on first use (thousands would slow loading)
    _em: Any = None  # its value -> member map
    # What validating a value from the wire takes: 0 nothing once the length is right (fixed
    # sizes, OctetString), 1 an Enumerated with values (defined?), 2 a group, 3 decoding.
    vcheck: int = 0

    def __post_init__(self) -> None:
        self.attr = snake_name(self.name)
        self.ikey = self.code | self.vendor << 32
        self.codec = TYPES[self.type]
        self.kind = 2 if self.type == "Grouped" else 1 if self.enum else 0
        codec = self.codec
        if codec.fixed and not codec.is_float and not codec.converts:
            self.lo, self.hi = codec.lo, codec.hi
        self.plain = self.type == "UTF8String"
        self.ident = self.type == "DiameterIdentity"
        self.converts = codec.converts
        self.flags = (AVP_VENDOR if self.vendor else 0) | (AVP_MANDATORY if self.mandatory else 0)
        self._ec = _NO_ENUM if self.enum else None
        self._em = None
        if self.kind == 2:
            self.vcheck = 2
        elif codec.fixed:
            self.vcheck = 1 if self.enum and self.type == "Enumerated" else 0
        else:
            self.vcheck = 0 if self.type == "OctetString" else 3
        if self.codec.fixed:
            fmt = self.codec.struct.format.lstrip(">")
            self.fixed_struct = _struct(">III" + fmt if self.vendor else ">II" + fmt)
            self.fixed_len = (12 if self.vendor else 8) + self.codec.size

    @property
    def enum_cls(self) -> type[IntEnum] | None:
        ec = self._ec
        if ec is _NO_ENUM:
            ec = self._ec = make_enum(self.name, self.enum or {})
            self._em = ec._value2member_map_
        return ec

    def member(self, value: int) -> Any:
        """The enum member for an int, or the int itself when the dictionary lacks it."""
        em = self._em
        if em is None:
            if not self.enum:
                return value
            self.enum_cls  # noqa: B018 - builds the class and its map
            em = self._em
        m = em.get(value)
        return value if m is None else m

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
        plain = (0 if self.kind == "optional" else 1, 1)
        if (self.min, self.max) == plain:
            q = ""
        else:
            lo = "" if self.min == (1 if self.kind == "required" else 0) else str(self.min)
            hi = "" if self.max is None else str(self.max)
            q = f"{lo}*{hi} "
        b = {"fixed": "<>", "required": "{}", "optional": "[]"}[self.kind]
        return f"{q}{b[0]} {self.name} {b[1]}"


_CCF = re.compile(
    r"^\s*(?:(\d*)\s*\*\s*(\d*))?\s*([<{\[])\s*([A-Za-z0-9][A-Za-z0-9_.\-]*)\s*([>}\]])\s*$"
)
_KIND = {"<": "fixed", "{": "required", "[": "optional"}
_CLOSE = {"<": ">", "{": "}", "[": "]"}


@cache
def _rule_parts(text: str) -> tuple[str, str, int, int | None]:
    m = _CCF.match(text)
    if not m or _CLOSE[m.group(3)] != m.group(5):
        raise DictionaryError(f"cannot parse grammar element {text!r}")
    kind = _KIND[m.group(3)]
    lo_s, hi_s = m.group(1), m.group(2)
    if lo_s is not None:  # a '*' was given; the default minimum is 1 only for {required}
        lo = int(lo_s) if lo_s else (1 if kind == "required" else 0)
        hi = int(hi_s) if hi_s else None
    else:  # no qualifier: exactly one for <fixed> and {required}, at most one for [optional]
        lo, hi = (0 if kind == "optional" else 1), 1
    if hi is not None and hi < lo:
        raise DictionaryError(f"grammar element {text!r}: maximum under minimum")
    return m.group(4), kind, lo, hi


def parse_rule(text: str) -> Rule:
    """One CCF element (RFC 6733 3.2): `[min]*[max] <{[ Name ]}>`, or without the star."""
    return Rule(*_rule_parts(text))


class Grammar:
    """A parsed CCF body: which AVPs may appear, how often, and in what order to place them."""

    __slots__ = ("rules", "by_key", "rank", "any_allowed", "fixed", "many", "checks", "required")

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self.by_key: dict[tuple[int, int], Rule] = {}
        self.rank: dict[int, int] = {}  # index key -> position: where building places an AVP
        self.any_allowed = False
        self.fixed: list[Rule] = []  # the leading <fixed> rules, in their positions
        many: set[int] = set()
        for i, r in enumerate(rules):
            if r.avp is None:
                self.any_allowed = True
                continue
            key = r.avp.key
            self.by_key.setdefault(key, r)
            self.rank.setdefault(r.avp.ikey, i)
            if r.kind == "fixed" and len(self.fixed) == i:
                self.fixed.append(r)
            if r.max is None or r.max > 1:
                many.add(r.avp.ikey)
        self.many = frozenset(many)  # index keys (code | vendor << 32) read as a list
        # For validation, by index key: (rule, max occurrences (None: any), position a
        # <fixed> rule demands (-1: none)); and the rules with a minimum, to count against.
        self.checks: dict[int, tuple[Rule, int | None, int]] = {}
        for r in self.by_key.values():
            at = next((j for j, f in enumerate(self.fixed) if f is r), -1)
            self.checks[r.avp.ikey] = (r, r.max, at)  # type: ignore[union-attr]
        self.required = [(r.avp.ikey, r) for r in rules if r.avp is not None and r.min > 0]

    def multiple(self, key: tuple[int, int]) -> bool:
        return (key[0] | key[1] << 32) in self.many

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


ON_CONFLICT = ("error", "skip", "rename")


def _check_policy(on_conflict: str) -> None:
    if on_conflict not in ON_CONFLICT:
        raise ValueError(
            f"on_conflict must be one of {', '.join(ON_CONFLICT)}, not {on_conflict!r}"
        )


def _rename_rules(texts: list[str], renamed: dict[str, str]) -> list[str]:
    out = []
    for t in texts:
        name, kind, lo, hi = _rule_parts(t)
        out.append(Rule(renamed[name], kind, lo, hi).text() if name in renamed else t)
    return out


class Dictionary:
    """Every loaded definition, indexed for the codec's lookups.

    Loading more definitions on top follows one rule: a definition identical to a loaded one
    (same code, vendor, name and type) merges silently (new enum values and a missing grammar
    are taken over); anything else that clashes is a conflict. `on_conflict` says what a
    conflict does: "error" (the default) raises DictionaryError naming both sources; "skip"
    keeps the loaded definition, drops the newcomer and records the conflict in
    `self.conflicts`; "rename" does the same for a clash on the code, but loads a newcomer whose
    code is new and only its name is taken under "Name.code" ("Name.vendor.code").
    """

    def __init__(self) -> None:
        self.avps: dict[tuple[int, int], AvpDef] = {}
        self.by_name: dict[str, AvpDef] = {}
        self.by_attr: dict[str, AvpDef] = {}
        self.by_lower: dict[str, AvpDef] = {}
        self.commands: dict[tuple[int | None, int], CommandDef] = {}
        self.vendors: dict[int, str] = {0: "IETF"}
        self.applications: dict[int, tuple[str, str]] = {}
        self.sources: list[str] = []
        self.conflicts: list[str] = []  # what "skip"/"rename" left out or renamed, in order
        # snake_case names two AVPs share: (attribute, the AVP it reads, the one it does not).
        # The first loaded keeps the attribute (built-in files load in a fixed order); the
        # other stays reachable by its dictionary name: msg.get("Name").
        self.attr_collisions: list[tuple[str, AvpDef, AvpDef]] = []
        self._unresolved: list[Any] = []
        self._undo: list[tuple[AvpDef, Any, Any, Any, Any]] | None = None
        self.classes: dict[Any, type] = {}  # filled by message.py, per dictionary

    _STATE = (
        "avps", "by_name", "by_attr", "by_lower", "commands", "vendors", "applications",
        "sources", "conflicts", "attr_collisions", "_unresolved",
    )  # fmt: skip

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Load all or nothing: a file that fails half-way leaves the dictionary as it was."""
        if self._undo is not None:  # nested: the outer one restores
            yield
            return
        saved = {k: copy.copy(getattr(self, k)) for k in self._STATE}
        self._undo = []
        try:
            yield
        except BaseException:
            for d, enum, grammar_src, grammar, ec in reversed(self._undo):
                d.enum, d.grammar_src, d.grammar, d._ec = enum, grammar_src, grammar, ec
                d._em = None
                d.kind = 2 if d.type == "Grouped" else 1 if d.enum else 0
            for k, v in saved.items():
                setattr(self, k, v)
            raise
        finally:
            self._undo = None

    # -- loading -----------------------------------------------------------------------

    def load_json(
        self,
        path: str | Path,
        data: bytes | None = None,
        *,
        resolve: bool = True,
        on_conflict: str = "error",
    ) -> Dictionary:
        """Load a chargegw JSON dictionary file (the format of codec/dictionaries/*.json)."""
        if resolve:
            with self.atomic():
                return self.load_json(
                    path, data, resolve=False, on_conflict=on_conflict
                )._resolved()
        try:
            raw = Path(path).read_bytes() if data is None else data
        except OSError as exc:
            raise DictionaryError(f"{path}: {exc.strerror or exc}") from None
        try:
            spec = msgspec.json.decode(raw, type=_FileSpec)
        except msgspec.ValidationError as exc:
            raise DictionaryError(f"{path}: {exc}") from None
        except msgspec.DecodeError as exc:
            raise DictionaryError(f"{path}: not valid JSON: {exc}") from None
        self.add_spec(spec, str(path), on_conflict=on_conflict)
        if resolve:
            self.resolve()
        return self

    def add_spec(self, spec: _FileSpec, origin: str, *, on_conflict: str = "error") -> None:
        _check_policy(on_conflict)
        source = f"{spec.name} ({origin})"
        self.sources.append(source)
        for v in spec.vendors:
            self.vendors.setdefault(v.id, v.name)
        for a in spec.applications:
            self.applications.setdefault(a.id, (a.name, a.kind))
        renamed: dict[str, str] = {}
        added: list[AvpDef] = []
        for a in spec.avps:
            if a.type not in TYPES:
                raise DictionaryError(f"{source}: AVP {a.name}: unknown type {a.type!r}")
            d = self.add_avp(
                AvpDef(a.name, a.code, a.vendor, a.type, a.m, source, a.enum, a.grammar),
                on_conflict=on_conflict,
            )
            if d is not None:
                added.append(d)
                if d.name != a.name:
                    renamed[a.name] = d.name
        cmds = []
        for c in spec.commands:
            cd = self.add_command(
                CommandDef(
                    c.name,
                    c.code,
                    c.application,
                    c.proxiable,
                    c.request,
                    c.answer,
                    source,
                    c.class_name or "",
                ),
                on_conflict=on_conflict,
            )
            if cd is not None and cd.source == source:
                cmds.append(cd)
        if renamed:  # this file's grammars mean its own AVPs, under their new names
            for d in added:
                if d.grammar_src and d.source == source:
                    d.grammar_src = _rename_rules(d.grammar_src, renamed)
            for cd in cmds:
                cd.request_src = _rename_rules(cd.request_src, renamed)
                cd.answer_src = _rename_rules(cd.answer_src, renamed)

    def _conflict(self, message: str, on_conflict: str) -> None:
        if on_conflict == "error":
            raise DictionaryError(message)
        self.conflicts.append(message)

    def add_avp(self, d: AvpDef, *, on_conflict: str = "error") -> AvpDef | None:
        """Add one definition; returns the one in force (None when a conflict skipped it)."""
        old = self.avps.get(d.key)
        if old is not None:
            if old.name == d.name and old.type == d.type:
                self._merge(old, d)
                return old
            self._conflict(
                f"AVP code {d.code} vendor {d.vendor}: {d.name} ({d.type}) from {d.source} "
                f"conflicts with {old.name} ({old.type}) from {old.source}",
                on_conflict,
            )
            return None
        other = self.by_name.get(d.name)
        if other is not None:
            message = (
                f"AVP name {d.name}: code {d.code}/vendor {d.vendor} from {d.source} conflicts "
                f"with code {other.code}/vendor {other.vendor} from {other.source}"
            )
            new_name = f"{d.name}.{d.vendor}.{d.code}" if d.vendor else f"{d.name}.{d.code}"
            if on_conflict != "rename" or new_name in self.by_name:
                self._conflict(message, on_conflict)
                return None
            self.conflicts.append(f"{message}; loaded as {new_name}")
            d.name = new_name
            d.__post_init__()
        d.owner = self
        self.avps[d.key] = d
        self.by_name[d.name] = d
        self.by_lower.setdefault(d.name.lower(), d)
        held = self.by_attr.setdefault(d.attr, d)
        if held is not d:
            self.attr_collisions.append((d.attr, held, d))
        if d.grammar_src is not None:
            self._unresolved.append(d)
        return d

    def _merge(self, old: AvpDef, new: AvpDef) -> None:
        """An identical re-definition: take over enum values and a grammar the old one lacks."""
        if self._undo is not None:
            self._undo.append((old, old.enum, old.grammar_src, old.grammar, old._ec))
        if new.enum and old.enum != new.enum:
            merged = dict(old.enum or {})
            values = set(merged.values())
            for label, value in new.enum.items():
                if value not in values and label not in merged:
                    merged[label] = value
                    values.add(value)
            if merged != old.enum:
                old.enum = merged
                old._ec = _NO_ENUM
                old._em = None
                old.kind = 2 if old.type == "Grouped" else 1
        if new.grammar_src and not old.grammar_src:
            old.grammar_src = new.grammar_src
            self._unresolved.append(old)

    def add_command(self, c: CommandDef, *, on_conflict: str = "error") -> CommandDef | None:
        key = (c.app_id, c.code)
        old = self.commands.get(key)
        if old is not None:
            if (old.name, old.request_src, old.answer_src) == (c.name, c.request_src, c.answer_src):
                return old
            self._conflict(
                f"command {c.code} (application {c.app_id}): {c.name} from {c.source} "
                f"conflicts with {old.name} from {old.source}",
                on_conflict,
            )
            return None
        self.commands[key] = c
        self._unresolved.append(c)
        return c

    def _grammar(self, texts: list[str], where: str) -> Grammar:
        rules = []
        get = self.by_name.get
        for t in texts:
            name, kind, lo, hi = _rule_parts(t)
            avp = None
            if name != _WILDCARD:
                avp = get(name)
                if avp is None:
                    raise DictionaryError(f"{where}: grammar names unknown AVP {name!r}")
            rules.append(Rule(name, kind, lo, hi, avp))
        return Grammar(rules)

    def _resolved(self) -> Dictionary:
        self.resolve()
        return self

    def resolve(self) -> None:
        """Bind grammar names to definitions once every file of a batch is in."""
        pending, self._unresolved = self._unresolved, []
        try:
            for item in pending:
                if isinstance(item, AvpDef):
                    item.grammar = self._grammar(
                        item.grammar_src or [], f"{item.name} ({item.source})"
                    )
                else:
                    item.request = self._grammar(
                        item.request_src, f"{item.name} request ({item.source})"
                    )
                    item.answer = self._grammar(
                        item.answer_src, f"{item.name} answer ({item.source})"
                    )
        except DictionaryError:
            self._unresolved = pending
            raise
        from .avp import install_attributes

        install_attributes(self.by_attr)
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
        return (
            self.commands.get((app_id, code))
            or self.commands.get((None, code))
            or (self.commands.get((0, code)) if app_id is not None else None)
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

    def import_wireshark(self, path: str | Path, *, on_conflict: str = "error") -> int:
        """Load a Wireshark dictionary XML file (and what it includes); returns AVPs added."""
        from .wireshark import import_wireshark

        with self.atomic():
            return import_wireshark(self, Path(path), on_conflict=on_conflict)

    def load_file(self, path: str | Path, *, on_conflict: str = "error") -> int:
        """A chargegw JSON file or a Wireshark XML file, told apart by content; AVPs added."""
        p = Path(path)
        try:
            head = p.read_bytes()[:512].lstrip()
        except OSError as exc:
            raise DictionaryError(f"{p}: {exc.strerror or exc}") from None
        before = len(self.avps)
        if head.startswith(b"<"):
            self.import_wireshark(p, on_conflict=on_conflict)
        else:
            self.load_json(p, on_conflict=on_conflict)
        return len(self.avps) - before


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


def load_extra(
    paths: Iterable[str | Path],
    *,
    on_conflict: str = "error",
    dictionary: Dictionary | None = None,
) -> dict[str, int]:
    """Load the dictionary files a configuration lists, at startup, into the process dictionary.

    Each path is a chargegw JSON dictionary or a Wireshark dictionary XML file (its entity
    includes are followed). Returns {path: AVPs added}. Raises DictionaryError on a bad file
    or, with on_conflict="error", on a definition that clashes with a loaded one. Call it
    before messages are built or decoded: classes and attributes then see every definition.
    """
    _check_policy(on_conflict)
    d = dictionary if dictionary is not None else get_dictionary()
    return {str(p): d.load_file(p, on_conflict=on_conflict) for p in paths}
