"""Definitions: what the dictionary holds (AVPs, grammar rules, grammars, commands).

The data classes and the rule parser, without the loading (dictionary.py) so that the
loaders (JSON in dictionary.py, Wireshark XML in wireshark.py) both build on them and
neither imports the other's user.
"""

from __future__ import annotations

import builtins
import keyword
import re
from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from struct import Struct
from typing import Any

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
    def enum_cls(self) -> builtins.type[IntEnum] | None:
        ec: builtins.type[IntEnum] | None = self._ec
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


ON_CONFLICT = ("error", "skip", "rename")


def _check_policy(on_conflict: str) -> None:
    if on_conflict not in ON_CONFLICT:
        raise ValueError(
            f"on_conflict must be one of {', '.join(ON_CONFLICT)}, not {on_conflict!r}"
        )
