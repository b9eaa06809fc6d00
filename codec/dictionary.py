"""The dictionary: one source of truth for AVPs, enums, grammars and commands.

Encode, decode, validation and the generated command classes all read from here. Definitions
come from the JSON files in `dictionaries/` (built in), from more JSON files, or from
Wireshark's dictionary XML (see `wireshark.py`). Two sources that disagree about a code or a
name are an error that names both.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec

from .definitions import (
    _NO_ENUM,
    ON_CONFLICT,
    AvpDef,
    CommandDef,
    DictionaryError,
    Grammar,
    Rule,
    _check_policy,
    _rule_parts,
    enum_member_name,
    make_enum,
    parse_rule,
    snake_name,
)
from .types import TYPES
from .wireshark import import_wireshark

__all__ = [
    "ON_CONFLICT",
    "AvpDef",
    "CommandDef",
    "Dictionary",
    "DictionaryError",
    "Grammar",
    "Rule",
    "enum_member_name",
    "get_dictionary",
    "load_builtin",
    "load_extra",
    "make_enum",
    "on_resolve",
    "parse_rule",
    "snake_name",
]

# Called with each dictionary once it has resolved (the containers install their AVP
# attributes from it). Registered by the modules that need it, which chargegw.codec's
# __init__ imports before any dictionary can be resolved.
_RESOLVE_HOOKS: list[Callable[[Dictionary], None]] = []


def on_resolve(hook: Callable[[Dictionary], None]) -> None:
    """Call `hook(d)` whenever a dictionary `d` has resolved its definitions."""
    if hook not in _RESOLVE_HOOKS:
        _RESOLVE_HOOKS.append(hook)


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
        self.classes: dict[Any, Any] = {}  # filled by message.py, per dictionary

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
        for app in spec.applications:
            self.applications.setdefault(app.id, (app.name, app.kind))
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
        for hook in _RESOLVE_HOOKS:
            hook(self)
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
