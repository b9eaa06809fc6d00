"""Readers and writers compiled from the dictionary's grammars.

Erlang/OTP's diameter compiles each dictionary into a codec module; this does the same at
run time for the few commands a hot path serves. `compile_reader` turns a command's grammar,
the AVP definitions and a field spec (which AVPs the caller reads) into Python source for
ONE walk over the message, `exec`s it once and returns the function (its source is kept on
`Reader.source` for reading). `Writer` encodes content in the grammar's placement order, byte
for byte as the codec's building does. No AVP code is written in this module or its callers:
every code, flag, type and position comes from the loaded dictionary.

The reader does not judge: on anything it does not take as clean (a bad length, an AVP the
dictionary does not know with the M bit at any depth, a required AVP missing, a single AVP
twice, a value its type rejects, a member a closed grammar does not allow, nesting past
MAX_DEPTH) it raises `Unreadable`, and the caller asks the codec's validation
(`Message.decode(raw).find_errors()`), the one place that decides what to answer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from .avp import Avp
from .constants import AVP_MANDATORY, AVP_VENDOR, FLAG_REQUEST
from .definitions import CommandDef
from .dictionary import AvpDef, Dictionary, Grammar
from .types import IdentityType, UTF8StringType, _identity_ok

MAX_DEPTH = 16  # grouped AVPs nested deeper than this are left to the codec

_II = struct.Struct(">II")
_III = struct.Struct(">III")
_I = struct.Struct(">I")
_PAD = bytes(4)  # behind the message: every AVP header can be read with its next 4 bytes
# The V bit is the top bit of the word holding an AVP's flags and length, so `fl >= _V`
# tests it: a comparison, where `fl & _V` makes a new int (the walks avoid & where they can)
_V = AVP_VENDOR << 24
assert _V == 1 << 31
_HDR = struct.Struct(">IIIII")


class Unreadable(Exception):
    """The compiled reader will not read this message; the codec's validation decides."""


# A field spec maps an AVP name to what to keep of it:
#   True   its value (a list where the grammar allows several occurrences)
#   "avp"  its value, and in `<attr>_avp` the whole AVP's bytes (zero padded), for copying
#   "raw"  only the whole AVP's bytes (a list where the grammar allows several)
#   {...}  a Grouped AVP read with this nested spec (an object, or a list of them)
Spec = Mapping[str, Any]


class Reader:
    """A compiled reader: `read(raw)` returns the view object or raises Unreadable."""

    __slots__ = ("read", "source", "size", "dictionary")

    def __init__(self, read: Callable[[bytes], Any], source: str, d: Dictionary) -> None:
        self.read = read
        self.source = source
        self.dictionary = d
        self.size = len(d.avps)

    def stale(self) -> bool:
        """True once the dictionary has grown since (extra files loaded): compile again."""
        return len(self.dictionary.avps) != self.size


def _known(d: Dictionary) -> dict[int, bool]:
    """index key (code | vendor << 32) -> is it Grouped, for every AVP the dictionary knows."""
    return {a.ikey: a.kind == 2 for a in d.avps.values()}


def _make_checker(d: Dictionary) -> Callable[..., bool]:
    """`other(buf, key, fl, vs, ve, depth, allowed)`: whether an AVP the spec does not read
    must stop the reader (unknown with the M bit, not allowed by a closed grammar, or a known
    group holding such an AVP at any depth); Unreadable on a malformed member."""
    known = _known(d)
    leaves = frozenset(k for k, grouped in known.items() if not grouped)
    groups = frozenset(k for k, grouped in known.items() if grouped)
    unpack = _III.unpack_from  # the buffer has 4 bytes behind the message (see `read`)
    mandatory = AVP_MANDATORY << 24

    def inside(buf: bytes, pos: int, end: int, depth: int) -> bool:
        if depth > MAX_DEPTH:
            raise Unreadable
        while pos < end:
            # a header that crosses `end` has a length that does (see `_Gen.group`)
            code, fl, vendor = unpack(buf, pos)
            n = fl & 0xFFFFFF
            ve = pos + n
            if fl >= _V:
                if n < 12 or ve > end:
                    raise Unreadable
                code |= vendor << 32
                head = 12
            else:
                if n < 8 or ve > end:
                    raise Unreadable
                head = 8
            if code in leaves:
                pass
            elif code in groups:
                if inside(buf, pos + head, ve, depth + 1):
                    return True
            elif fl & mandatory:
                return True
            pos = (ve + 3) // 4 * 4
        # pos may pass `end` only by the last member's padding, which the group's length
        # may leave out: the codec's scan accepts that, so the reader does too
        return False

    def other(
        buf: bytes, key: int, fl: int, vs: int, ve: int, depth: int, allowed: frozenset[int] | None
    ) -> bool:
        grouped = known.get(key)
        if grouped is None:
            return bool(fl & AVP_MANDATORY << 24)
        if allowed is not None and key not in allowed:
            return True  # 5008: the codec names it
        return grouped and inside(buf, vs, ve, depth + 1)

    return other


class _Gen:
    """Emits the source of one reader: a class and a walk function per (nested) spec."""

    def __init__(self, d: Dictionary) -> None:
        self.d = d
        self.lines: list[str] = []
        self.env: dict[str, Any] = {
            "Unreadable": Unreadable,
            "_II": _II.unpack_from,
            "_III": _III.unpack_from,
            "_I": _I.unpack_from,
            "_HDR": _HDR.unpack_from,
            "_other": _make_checker(d),
            "MAX_DEPTH": MAX_DEPTH,
        }
        self.n = 0

    def emit(self, text: str) -> None:
        self.lines.append(text)

    def group(
        self,
        grammar: Grammar,
        spec: Spec,
        where: str,
        extra: tuple[str, ...] = (),
        depth: int = 0,
    ) -> int:
        """Emit class _C<i> and function _g<i>(buf, pos, end); returns i.

        The walk keeps every field in a local (a local is the cheapest thing Python reads
        and writes) and builds the view, a slotted object, once at the end; `extra` names
        slots the caller fills in (the header fields, for the command). `depth`: how deep
        the spec nests this walk (the command's own is 0), known here, so never counted
        at run time."""
        i = self.n
        self.n += 1
        fields: list[tuple[AvpDef, Any, bool]] = []
        names = dict(spec)
        for r in grammar.rules:  # what the grammar requires is always read: its absence
            if r.avp is not None and r.min > 0 and r.avp.name not in names:  # decides
                names[r.avp.name] = True
        for name, what in names.items():
            a = self.d.avp(name)
            many = a.ikey in grammar.many
            if a.ikey not in grammar.rank and not grammar.any_allowed:
                raise KeyError(f"{name} is not part of {where}'s grammar")
            fields.append((a, what, many))
        # the if-chain tests AVPs in the order messages place them: the common ones hit first
        fields.sort(key=lambda f: grammar.rank.get(f[0].ikey, _LAST))
        subs: dict[str, int] = {}
        for a, what, _ in fields:
            if isinstance(what, Mapping):
                if a.kind != 2 or a.grammar is None:
                    raise KeyError(f"{a.name} is not a Grouped AVP")
                subs[a.name] = self.group(a.grammar, what, a.name, depth=depth + 1)
        attrs: list[tuple[str, bool]] = []  # (attribute, is a list)
        for a, what, many in fields:
            if what != "raw":
                attrs.append((a.attr, many))
            if what in ("avp", "raw"):
                attrs.append((a.attr + "_avp", many))
        read = {a.ikey for a, _, _ in fields}
        # AVPs this spec does not read that need no look at all: known, not Grouped, and
        # allowed here (an unknown one, a group, or one a closed grammar forbids goes to
        # `_other`, which decides whether it stops the reader).
        known = _known(self.d)
        plain = frozenset(
            k for k, grouped in known.items()
            if not grouped and k not in read and (grammar.any_allowed or k in grammar.rank)
        )  # fmt: skip
        self.env[f"_plain{i}"] = plain
        self.env[f"_allowed{i}"] = None if grammar.any_allowed else frozenset(grammar.rank)
        e = self.emit
        slots = tuple(attr for attr, _ in attrs) + extra
        e(f"class _C{i}:")
        e(f"    # {where}")
        e(f"    __slots__ = {slots!r}")
        e(f"def _g{i}(buf, pos, end):")
        if depth > MAX_DEPTH:
            e("    raise Unreadable")
        for attr, many in attrs:
            e(f"    v_{attr} = {'[]' if many else 'None'}")
        self.lead(grammar, fields)
        e("    while pos < end:")
        # One unpack: the header and the 4 bytes behind it (the Vendor-Id, or a 32-bit
        # value). `read` put 4 bytes behind the message, so a header that starts 8 bytes or
        # more before the message's end is read whole; one that starts later fails to
        # unpack. A header that crosses a group's end has a length that does (n >= 8).
        e("        code, fl, w = _III(buf, pos)")
        e("        n = fl & 0xFFFFFF")
        e("        ve = pos + n")
        e(f"        if fl >= {_V:#x}:  # V")
        e("            if n < 12 or ve > end:")
        e("                raise Unreadable")
        e("            code |= w << 32  # the index key, as the dictionary's ikey")
        e("            vs = pos + 12")
        e("        else:")
        e("            if n < 8 or ve > end:")
        e("                raise Unreadable")
        e("            vs = pos + 8")
        kw = "if"
        for a, what, many in fields:
            e(f"        {kw} code == {a.ikey}:  # {a.name}")
            kw = "elif"
            if isinstance(what, Mapping):
                value = f"_g{subs[a.name]}(buf, vs, ve)"
            elif what == "raw":
                value = ""
            elif a.kind == 2:
                raise KeyError(f'{a.name} is Grouped: give its spec, or read it "raw"')
            else:
                value = self.value(a)
            self.store(a, what, many, value, " " * 12)
        e(f"        {kw} code in _plain{i}:")
        e("            pass")
        e(f"        elif _other(buf, code, fl, vs, ve, {depth}, _allowed{i}):")
        e("            raise Unreadable")
        # A member ends inside the group (checked above); only its padding may pass `end`
        # (a group length that leaves out its last member's padding). The codec's scan
        # accepts that, and the reader must agree with it: a request it declines is judged
        # by the codec's validation, and one that passes there would get 5012.
        # (every AVP starts on a multiple of 4 from the message's start, as `pos` does)
        e("        pos = (ve + 3) // 4 * 4")
        for r in grammar.rules:
            if r.avp is not None and r.min > 0:
                attr = r.avp.attr if spec.get(r.avp.name) != "raw" else r.avp.attr + "_avp"
                many = r.avp.ikey in grammar.many
                test = f"len(v_{attr}) < {r.min}" if many else f"v_{attr} is None"
                e(f"    if {test}:  # {r.text()}")
                e("        raise Unreadable")
        e(f"    o = _new(_C{i})")
        for attr, _ in attrs:
            e(f"    o.{attr} = v_{attr}")
        e("    return o")
        return i

    def lead(self, grammar: Grammar, fields: list[tuple[AvpDef, Any, bool]]) -> None:
        """Emit the walk's lead: the required single plain AVPs that open the grammar
        (Session-Id, Origin-Host, ... CC-Request-Number for a CCR), read in that order
        while the message follows it, each with one test instead of the if-chain's. At
        the first AVP that is not the next of them the chain takes over from there (it
        also catches a second occurrence of one of them)."""
        required = {r.avp.ikey for r in grammar.rules if r.avp is not None and r.min > 0}
        pad = "    "
        for a, what, many in fields:
            if (
                a.ikey not in required or many or a.vendor or a.kind == 2
                or isinstance(what, Mapping) or what == "raw"
            ):  # fmt: skip
                break
            e = self.emit
            e(f"{pad}if pos < end:")
            e(f"{pad}    code, fl, w = _III(buf, pos)")
            e(f"{pad}    if code == {a.ikey} and fl < {_V:#x}:  # {a.name}")
            pad += " " * 8
            e(f"{pad}n = fl & 0xFFFFFF")
            e(f"{pad}ve = pos + n")
            e(f"{pad}if n < 8 or ve > end:")
            e(f"{pad}    raise Unreadable")
            e(f"{pad}vs = pos + 8")
            self.store(a, what, many, self.value(a), pad, first=True)
            e(f"{pad}pos = (ve + 3) // 4 * 4")

    def value(self, a: AvpDef) -> str:
        """An expression for the value of AVP `a` in buf[vs:ve]."""
        codec = a.codec
        if a.type == "OctetString":
            return "buf[vs:ve]"
        if codec.fixed and not codec.converts and not codec.is_float:
            name = f"_S{a.code}_{a.vendor}"
            self.env[name] = codec.struct.unpack_from
            fmt = codec.struct.format
            if fmt in (">I", ">i") and not a.vendor:
                # the walk's `w` holds the value when the V bit is clear (else: Vendor-Id)
                # (V clear and n == 12); anything else is left to the general form
                w = "w" if fmt == ">I" else "(w if w < 0x80000000 else w - 0x100000000)"
                return (f"({w} if n == 12 and fl < {_V:#x} else"
                        f" {name}(buf, vs)[0] if ve - vs == 4 else _bad())")  # fmt: skip
            return f"({name}(buf, vs)[0] if ve - vs == {codec.size} else _bad())"
        if type(codec) is UTF8StringType:  # the type's decode, inlined (no call)
            return "(s if '\\x00' not in (s := str(buf[vs:ve], 'utf-8')) else _bad())"
        if type(codec) is IdentityType:
            # Hosts and realms repeat from one request to the next: checked once each
            self.env["_identity"] = _identity
            self.env["_identities"] = _IDENTITIES
            return "(_identities.get(s := buf[vs:ve]) or _identity(s))"
        name = f"_D{a.code}_{a.vendor}"
        self.env[name] = codec.strict  # raises TypeFault (a ValueError) on a bad value
        return f"{name}(buf, vs, ve)"

    def store(
        self, a: AvpDef, what: Any, many: bool, value: str, pad: str, first: bool = False
    ) -> None:
        """Emit, indented by `pad`, the keeping of AVP `a`; `first`: it cannot have been
        seen before (the walk's lead)."""
        e = self.emit
        raw = "(buf[pos:ve] if not n & 3 else buf[pos:ve] + bytes(-n & 3))"
        if what == "raw":
            if many:
                e(f"{pad}v_{a.attr}_avp.append({raw})")
            else:
                e(f"{pad}if v_{a.attr}_avp is not None:")
                e(f"{pad}    raise Unreadable")
                e(f"{pad}v_{a.attr}_avp = {raw}")
            return
        if many:
            e(f"{pad}v_{a.attr}.append({value})")
            if what == "avp":
                e(f"{pad}v_{a.attr}_avp.append({raw})")
            return
        if not first:
            e(f"{pad}if v_{a.attr} is not None:")
            e(f"{pad}    raise Unreadable  # 5009: the codec names the second one")
        e(f"{pad}v_{a.attr} = {value}")
        if what == "avp":
            e(f"{pad}v_{a.attr}_avp = {raw}")


_IDENTITIES: dict[Any, str] = {}  # DiameterIdentity bytes -> the checked value
_IDENTITIES_MAX = 4096  # a peer sending ever new names fills it once; then they are checked


def _identity(b: Any) -> str:
    """A DiameterIdentity value, checked as the codec's type checks it; remembered."""
    s = str(b, "ascii")
    if not _identity_ok(s):
        raise Unreadable
    if len(_IDENTITIES) < _IDENTITIES_MAX:
        _IDENTITIES[bytes(b)] = s
    return s


def _bad() -> Any:
    raise Unreadable


def _one_command(d: Dictionary, command: str, app_id: int | None) -> CommandDef:
    """The command of that name, in application `app_id` where several applications define
    one (Credit-Control is Gy's, Gx's and Sd's)."""
    cmds = [c for c in d.find_commands(command) if app_id is None or c.app_id == app_id]
    if len(cmds) != 1:
        where = "" if app_id is None else f" of application {app_id}"
        raise KeyError(f"no single command {command!r}{where} in the dictionary")
    return cmds[0]


def compile_reader(
    d: Dictionary, command: str, fields: Spec, *, request: bool = True, app_id: int | None = None
) -> Reader:
    """A reader for `command`'s request (or answer) that keeps the AVPs of `fields` (see Spec)
    and every AVP the grammar requires, checking the rest as the module docstring says."""
    cmd = _one_command(d, command, app_id)
    grammar = cmd.request if request else cmd.answer
    assert grammar is not None
    gen = _Gen(d)
    gen.env["_bad"] = _bad
    top = gen.group(grammar, fields, cmd.name, ("flags", "hop_by_hop", "end_to_end"))
    want = FLAG_REQUEST if request else 0
    e = gen.emit
    e("def read(buf):")
    e("    n = len(buf)")
    e("    if n < 20:")
    e("        raise Unreadable")
    e("    vl, fc, app, hbh, e2e = _HDR(buf, 0)")
    e(f"    if vl != {1 << 24} | n or fc & 0xFFFFFF != {cmd.code} or app != {cmd.app_id or 0}"
      f" or fc >> 24 & {FLAG_REQUEST} != {want}:")  # fmt: skip
    e("        raise Unreadable")
    e("    try:")
    e(f"        o = _g{top}(b''.join((buf, _PAD)), 20, n)")
    e("    except (ValueError, struct.error, IndexError, RecursionError):")
    e("        raise Unreadable from None")
    e("    o.flags = fc >> 24")
    e("    o.hop_by_hop = hbh")
    e("    o.end_to_end = e2e")
    e("    return o")
    source = "\n".join(gen.lines) + "\n"
    env = dict(gen.env, struct=struct, _new=object.__new__, _PAD=_PAD)
    exec(compile(source, f"<compiled reader {cmd.name}>", "exec"), env)  # noqa: S102
    return Reader(env["read"], source, d)


# -- writing ------------------------------------------------------------------------------


class Encoded(bytes):
    """A whole AVP already on the wire (a copied Session-Id or Proxy-Info): written as is."""

    __slots__ = ()


class Frozen(dict):  # type: ignore[type-arg]
    """A grouped AVP's content that is never changed after it is built (answers share cached
    blocks): the Writer encodes it once and keeps the bytes on it."""

    __slots__ = ("blob",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.blob: tuple[str, bytes] | None = None


_LAST = 1 << 30


class Writer:
    """Encodes one command's messages from {attr: value} content, in the placement order of
    the dictionary's grammars, byte for byte as the codec's keyword building encodes them.

    Leaves are `Avp.new(attr, value).encode()`, memoised (most of an answer repeats from one
    to the next); a group is its members in its grammar's order behind a header built from
    its definition; lists are occurrences where the grammar allows several; an `Avp` (a
    Failed-AVP's content) or anything unusual goes through the codec as it is."""

    def __init__(
        self, d: Dictionary, command: str, *, request: bool = False, app_id: int | None = None
    ) -> None:
        self.cmd = _one_command(d, command, app_id)
        grammar = self.cmd.request if request else self.cmd.answer
        assert grammar is not None
        self.d = d
        self.grammar = grammar
        self._leaves: dict[tuple[str, Any], bytes] = {}
        self._heads: dict[str, bytes] = {}
        self._shapes: dict[tuple[str, ...], list[str]] = {}
        self._after: dict[tuple[str, ...], bool] = {}

    def _ranks(self, parent: str) -> tuple[dict[int, int], frozenset[int]]:
        g = self.grammar if not parent else self.d.avp(parent).grammar
        return (g.rank, g.many) if g is not None else ({}, frozenset())

    def _order(self, parent: str, fields: Mapping[str, Any]) -> list[str]:
        """`fields`' keys in placement order, memoised per key sequence (stable sort)."""
        shape = (parent, *fields)
        keys = self._shapes.get(shape)
        if keys is None:
            rank = self._ranks(parent)[0]
            by_attr = self.d.by_attr

            def at(k: str) -> int:
                a = by_attr.get(k) or self.d.find_avp(k)
                return rank.get(a.ikey, _LAST) if a is not None else _LAST

            keys = sorted(fields, key=at)
            if len(self._shapes) < 4096:
                self._shapes[shape] = keys
        return keys

    def _leaf(self, key: tuple[str, Any]) -> bytes:
        b = Avp.new(*key, dictionary=self.d).encode()
        if len(self._leaves) < 20_000:
            self._leaves[key] = b
        return b

    def avp(self, attr: str, value: Any) -> bytes:
        """One AVP (or its occurrences, for a list) on the wire."""
        t = type(value)
        if t is Frozen:
            blob: tuple[str, bytes] | None = value.blob
            if blob is None or blob[0] != attr:
                blob = value.blob = (attr, self.group(attr, value))
            return blob[1]
        if t is dict:
            return self.group(attr, value)
        if t is Encoded:
            return value  # type: ignore[no-any-return]
        if t is list:
            if value and isinstance(value[0], Avp):  # a group's content as Avps
                return Avp.new(attr, value, dictionary=self.d).encode()
            return b"".join([self.avp(attr, x) for x in value])
        if t is Avp:
            return value.encode()  # type: ignore[no-any-return]
        b = self._leaves.get((attr, value))
        return b if b is not None else self._leaf((attr, value))

    def group(self, attr: str, value: Mapping[str, Any]) -> bytes:
        data = self._body(value, attr)
        head = self._heads.get(attr)
        if head is None:
            head = self._heads[attr] = Avp.new(attr, {}, dictionary=self.d).encode()
        n = len(head) + len(data)
        return head[:5] + n.to_bytes(3, "big") + head[8:] + data

    def rank(self, attr: str) -> int:
        """Where the command's grammar places AVP `attr` (large: not in the grammar)."""
        a = self.d.by_attr.get(attr) or self.d.find_avp(attr)
        return self.grammar.rank.get(a.ikey, _LAST) if a is not None else _LAST

    def after(self, attr: str, fields: Mapping[str, Any]) -> bool:
        """Whether every key of `fields` is placed after `attr` (memoised per key sequence):
        a caller may then put fields' bytes behind bytes it encoded up to `attr`."""
        shape = (attr, *fields)
        ok = self._after.get(shape)
        if ok is None:
            at = self.rank(attr)
            ok = all(self.rank(k) > at for k in fields)
            if len(self._after) < 4096:
                self._after[shape] = ok
        return ok

    def leaf(self, attr: str, value: Any) -> bytes:
        """One leaf AVP (an int or str value), memoised."""
        b = self._leaves.get((attr, value))
        return b if b is not None else self._leaf((attr, value))

    def body(self, fields: Mapping[str, Any], parent: str = "") -> bytes:
        """The AVPs of `fields` in placement order, without a message header; for a Frozen
        `fields` encoded once and kept on it."""
        if type(fields) is Frozen:
            blob = fields.blob
            tag = "/" + parent  # not an attribute name: a body, not the group's whole AVP
            if blob is None or blob[0] != tag:
                blob = fields.blob = (tag, self._body(fields, parent))
            return blob[1]
        return self._body(fields, parent)

    def _body(self, fields: Mapping[str, Any], parent: str) -> bytes:
        parts: list[bytes] = []
        add = parts.append
        leaves = self._leaves
        for k in self._order(parent, fields):
            v = fields[k]
            t = type(v)
            if t is int or t is str:  # the common leaves: one look-up
                b = leaves.get((k, v))
                add(b if b is not None else self._leaf((k, v)))
            elif t is list and v and type(v[0]) is not Avp:  # occurrences
                for x in v:
                    add(self.avp(k, x))
            else:
                add(self.avp(k, v))
        return b"".join(parts)

    def frame(self, flags: int, hop_by_hop: int, end_to_end: int, body: bytes) -> bytes:
        """The message: a header (this command, its application) in front of `body`."""
        cmd = self.cmd
        return (
            _HDR.pack((1 << 24) | (20 + len(body)), flags << 24 | cmd.code, cmd.app_id or 0,
                      hop_by_hop, end_to_end)
            + body
        )  # fmt: skip

    def message(
        self, flags: int, hop_by_hop: int, end_to_end: int, fields: Mapping[str, Any]
    ) -> bytes:
        """The whole message for `fields`."""
        return self.frame(flags, hop_by_hop, end_to_end, self.body(fields))
