"""AVP containers: a message body or a Grouped value, read and written by AVP name.

Decoding is lazy: a container scans its AVP headers once (code, flags, vendor and offsets
into the shared message buffer) and builds a value only when it is read (avp.py holds the
scan and one AVP's value; attributes.py the `msg.origin_host` properties). The first write
or iteration turns the index into Avp objects, which then rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .avp import (
    _BYTES,
    _HDR,
    _LAST,
    _NO_RANK,
    _U32,
    _UNSET,
    Avp,
    EncodeError,
    _coerce,
    _materialize,
    _new_avp,
    _new_group,
    bind_group,
    scan_into,
)
from .dictionary import get_dictionary
from .errors import AvpError, CodecError
from .present import _avp_dict, _show
from .types import TypeFault

if TYPE_CHECKING:
    from .definitions import AvpDef, Grammar
    from .dictionary import Dictionary


class AvpContainer:
    """What a message body and a Grouped value share: AVP lists with attribute access."""

    # From the wire a container starts as `_keys`/`_offs` (the index, built up to `_scan`: a
    # message's at decode, a group's as far as reads need) plus `_vals` (values read so far);
    # the first write or iteration turns it into `_avps` (Avp objects), which then rule.
    __slots__ = (
        "_avps",
        "_keys",
        "_offs",
        "_vals",
        "_buf",
        "_start",
        "_end",
        "_scan",
        "_dict",
        "_dirty",
    )

    _avps: list[Avp] | None
    _keys: list[int] | None
    _offs: list[int] | None
    _vals: list[Any] | None
    _buf: Any  # the message's bytes (or None when built); Any: read at offsets on hot paths
    _start: int
    _end: int
    _scan: int
    _dict: Dictionary
    _dirty: bool
    _grammar: Grammar | None

    if TYPE_CHECKING:
        # The AVP attributes (`msg.origin_host`) are properties installed from the
        # dictionary at run time (attributes.py); commands.pyi types the known ones.
        def __getattr__(self, name: str) -> Any: ...

    def _index(self) -> list[int]:
        keys = self._keys
        if keys is None or self._scan < self._end:
            keys = self._advance(-1)
        return keys

    def _advance(self, stop: int) -> list[int]:
        """Scan on (to the AVP keyed `stop`, or the end); keep `_vals` as long as the index."""
        keys = self._keys
        if keys is None:
            keys = self._keys = []
            self._offs = []
        offs: list[int] = self._offs  # type: ignore[assignment]
        n = len(keys)
        try:
            self._scan = scan_into(
                self._buf, self._scan, self._end, keys, offs, stop, self._dict.avps
            )
        except AvpError:
            del keys[n:], offs[n:]
            raise
        vals = self._vals
        if vals is not None and len(vals) < len(keys):
            vals.extend([_UNSET] * (len(keys) - len(vals)))
        return keys

    def _items(self) -> list[Avp]:
        avps = self._avps
        if avps is None:
            self._index()
            avps = _materialize(self._buf, self._offs, self._vals, self._dict.avps)  # type: ignore[arg-type]
            self._avps = avps
            self._keys = self._offs = None
            self._vals = None
        return avps

    def _changed(self) -> bool:
        if self._dirty:
            return True
        avps = self._avps
        if avps is None:
            vals = self._vals
            if vals:
                for v in vals:
                    if type(v) is Group and v._changed():
                        return True
            return False
        for a in avps:
            buf = a._buf
            if buf is None or buf[a._off + 4] != a.flags:
                return True
            v = a._value
            if type(v) is Group and v._changed():
                return True
        return False

    # -- reading ----------------------------------------------------------------------

    def _def(self, name: str | AvpDef) -> AvpDef:
        if not isinstance(name, str):
            return name
        d = self._dict.find_avp(name)
        if d is None:
            raise KeyError(f"no AVP named {name!r} in the dictionary")
        return d

    def _lookup(self, d: AvpDef, many: bool) -> Any:
        avps = self._avps
        if avps is None:
            keys = self._index()
            key = d.ikey
            if key not in keys:
                return [] if many else None
            vals = self._vals
            if vals is None:
                vals = self._vals = [_UNSET] * len(keys)
            out = []
            for i, k in enumerate(keys):
                if k == key:
                    v = vals[i]
                    if v is _UNSET:
                        v = vals[i] = _value_at(d, self._buf, self._offs[i])  # type: ignore[index]
                    if not many:
                        return v
                    out.append(v)
            return out
        code = d.code
        vendor = d.vendor
        if many:
            return [a.value for a in avps if a.code == code and a.vendor == vendor]
        for a in avps:
            if a.code == code and a.vendor == vendor:
                return a.value
        return None

    def get(self, name: str | AvpDef, default: Any = None) -> Any:
        """The first occurrence's value (or default), whatever the grammar says."""
        v = self._lookup(self._def(name), False)
        return default if v is None else v

    def get_all(self, name: str | AvpDef) -> list[Any]:
        out: list[Any] = self._lookup(self._def(name), True)
        return out

    def raw_value(self, name: str | AvpDef) -> bytes | None:
        """The data octets (no header, no padding) of the first occurrence, or None.

        No type decoding and no Avp object: the cheap read for routing and affinity keys
        (Session-Id, Origin-Host, Destination-Realm...), which need octets to compare or
        hash, not validated strings. Decoded containers read it from their index."""
        d: AvpDef | None = self._dict.by_name.get(name) if type(name) is str else name  # type: ignore[assignment]
        if d is None:
            d = self._def(name)
        keys = self._keys
        if keys is None or self._scan < self._end:
            if self._avps is not None:
                code = d.code
                vendor = d.vendor
                for a in self._avps:
                    if a.code == code and a.vendor == vendor:
                        return a.data
                return None
            keys = self._index()
        try:
            off = self._offs[keys.index(d.ikey)]  # type: ignore[index]
        except ValueError:
            return None
        buf = self._buf
        fl = _U32.unpack_from(buf, off + 4)[0]
        return bytes(buf[off + (12 if fl & 0x80000000 else 8) : off + (fl & 0xFFFFFF)])

    def raw_values(self, name: str | AvpDef) -> list[bytes]:
        """The data octets of every occurrence, in wire order (e.g. the Route-Records)."""
        d = self._def(name)
        if self._avps is None:
            keys = self._index()
            key = d.ikey
            if key not in keys:
                return []
            buf = self._buf
            offs = self._offs
            unpack = _U32.unpack_from
            out = []
            for i, k in enumerate(keys):
                if k == key:
                    off = offs[i]  # type: ignore[index]
                    fl = unpack(buf, off + 4)[0]
                    out.append(
                        bytes(buf[off + (12 if fl & 0x80000000 else 8) : off + (fl & 0xFFFFFF)])
                    )
            return out
        return [a.data for a in self._avps if a.code == d.code and a.vendor == d.vendor]

    def find(self, name: str | AvpDef) -> Avp | None:
        """The first Avp object of that name, to copy or inspect flags."""
        d = self._def(name)
        for a in self._items():
            if a.code == d.code and a.vendor == d.vendor:
                return a
        return None

    def _copies(self, code: int, vendor: int = 0) -> list[Avp]:
        """Independent copies of every (code, vendor) AVP, without materialising the rest."""
        if self._avps is not None:
            return [a.copy() for a in self._avps if a.code == code and a.vendor == vendor]
        keys = self._index()
        key = code | vendor << 32
        if key not in keys:
            return []
        offs: list[int] = self._offs  # type: ignore[assignment]
        if keys.count(key) == 1:  # the usual case (Session-Id): no scan in Python
            return _materialize(self._buf, [offs[keys.index(key)]], None, self._dict.avps)
        return _materialize(
            self._buf, [offs[i] for i, k in enumerate(keys) if k == key], None, self._dict.avps
        )

    def find_code(self, code: int, vendor: int = 0) -> list[Avp]:
        """This container's own Avp objects of (code, vendor): changing one changes it."""
        return [a for a in self._items() if a.code == code and a.vendor == vendor]

    def copy_avps(self, code: int, vendor: int = 0) -> list[Avp]:
        """Independent copies of the (code, vendor) AVPs, e.g. to echo into an answer;
        unlike find_code, a decoded message builds objects only for the matches."""
        return self._copies(code, vendor)

    def __contains__(self, name: str) -> bool:
        d = self._dict.find_avp(name)
        if d is None:
            return False
        if self._avps is None:
            return d.ikey in self._index()
        return any(a.code == d.code and a.vendor == d.vendor for a in self._avps)

    @property
    def avps(self) -> list[Avp]:
        return self._items()

    def __iter__(self) -> Iterator[Avp]:
        return iter(self._items())

    # -- writing ----------------------------------------------------------------------

    def set(self, name: str | AvpDef, value: Any) -> None:
        """Replace every occurrence; a list sets several; None removes."""
        d = self._def(name)
        if value is None:
            self.remove(d)
            return
        values = value if isinstance(value, list) and _is_occurrences(d, value) else [value]
        new = [v if isinstance(v, Avp) else _make(d, v) for v in values]
        items = self._items()
        code, vendor = d.code, d.vendor
        pos = next((i for i, a in enumerate(items) if a.code == code and a.vendor == vendor), None)
        self._dirty = True
        if pos is None:
            for a in new:
                self._insert(a)
            return
        items[:] = [a for a in items if not (a.code == code and a.vendor == vendor)]
        items[pos:pos] = new

    def add(self, name: str | AvpDef | Avp, value: Any = _UNSET) -> Avp:
        """Append one occurrence (an Avp object as is, or a name and value)."""
        if isinstance(name, Avp):
            a = name
        else:
            d = self._def(name)
            a = (
                _make(d, value)
                if value is not _UNSET
                else Avp(d.code, vendor=d.vendor, definition=d)
            )
        self._insert(a)
        return a

    def remove(self, name: str | AvpDef) -> int:
        d = self._def(name)
        items = self._items()
        before = len(items)
        items[:] = [a for a in items if not (a.code == d.code and a.vendor == d.vendor)]
        self._dirty = True
        return before - len(items)

    def _insert(self, a: Avp) -> None:
        """Place an AVP where the grammar orders it (after its kind, before later ones)."""
        items = self._items()
        self._dirty = True
        g = self._grammar
        rank = g.rank.get(a.code | a.vendor << 32) if g is not None else None
        if rank is None:
            items.append(a)
            return
        big = 1 << 30
        for i in range(len(items) - 1, -1, -1):
            b = items[i]
            r = g.rank.get(b.code | b.vendor << 32, big)  # type: ignore[union-attr]
            if r <= rank:
                items.insert(i + 1, a)
                return
        items.insert(0, a)

    def _fill(self, kwargs: Mapping[str, Any]) -> None:
        """Keyword building: every AVP in grammar order (stable for equal ranks).

        The hot path of building answers, so the common values (ints in range, enum
        members, ASCII strings and identities, octets, Avp objects, dicts for groups) are
        checked and wrapped here without a call; the rest go through _make. The AVPs are
        gathered with their ranks and sorted once, and only when they came out of order."""
        g = self._grammar
        rank = g.rank if g is not None else _NO_RANK
        by_attr = self._dict.by_attr
        new: list[Avp] = []
        add = new.append
        ranks: list[int] = []
        radd = ranks.append
        last = -1
        ordered = True
        for k, v in kwargs.items():
            if v is None:
                continue
            d = by_attr.get(k)
            if d is None:
                d = self._dict.find_avp(k)
                if d is None:
                    raise KeyError(f"no AVP named {k!r} in the dictionary")
            r = rank.get(d.ikey, _LAST)
            if r < last:
                ordered = False
            last = r
            for x in v if type(v) is list and _is_occurrences(d, v) else (v,):
                t = type(x)
                if t is int:
                    lo = d.lo
                    if lo is None or not lo <= x <= d.hi:
                        add(_make(d, x))
                        radd(r)
                        continue
                    if d.kind:  # an enumerated value: its member (d.member, written out)
                        em = d._em
                        m = em.get(x) if em is not None else d.member(x)
                        if m is not None:
                            x = m
                elif t is str:
                    if not (
                        (d.plain and x.isascii() and "\x00" not in x)
                        or (
                            d.ident
                            and x.isascii()
                            and x.isprintable()
                            and " " not in x
                            and len(x) <= 255
                        )
                    ):
                        add(_make(d, x))
                        radd(r)
                        continue
                elif t is Avp:
                    add(x)
                    radd(r)
                    continue
                elif t is dict and d.kind == 2:
                    grp = _new_group(Group)
                    grp._defn = d
                    grp._grammar = d.grammar
                    grp._dict = d.owner or self._dict
                    grp._avps = []
                    grp._keys = grp._offs = grp._vals = grp._buf = None
                    grp._start = grp._end = grp._scan = 0
                    grp._dirty = True
                    if x:
                        grp._fill(x)
                    x = grp
                elif t is not d._ec and (t is not bytes or d.type != "OctetString"):
                    add(x if isinstance(x, Avp) else _make(d, x))
                    radd(r)
                    continue
                a = _new_avp(Avp)
                a.code = d.code
                a.flags = d.flags
                a.vendor = d.vendor
                a._defn = d
                a._buf = None
                a._off = a._len = a._hdr = 0
                a._value = x
                add(a)
                radd(r)
        if not new:
            return
        items = self._items()
        self._dirty = True
        if items:
            for a in new:
                self._insert(a)
            return
        if not ordered:
            new = [new[i] for i in sorted(range(len(new)), key=ranks.__getitem__)]
        items.extend(new)

    # -- presentation ----------------------------------------------------------------

    def to_list(self) -> list[dict[str, Any]]:
        return [_avp_dict(a) for a in self._items()]

    def _dump_lines(self, lines: list[str], indent: int) -> None:
        pad = "  " * indent
        for a in self._items():
            fl = (
                ("V" if a.flags & 0x80 else "")
                + ("M" if a.flags & 0x40 else "")
                + ("P" if a.flags & 0x20 else "")
            )
            vend = f", vendor {a.vendor}" if a.vendor else ""
            head = f"{pad}{a.name} ({a.code}{vend}{', ' + fl if fl else ''})"
            try:
                v = a.value
            except CodecError as exc:
                lines.append(f"{head}: <invalid: {exc.error_message}> 0x{a.data.hex()}")
                continue
            if isinstance(v, Group):
                try:
                    empty = not v._items()
                except CodecError as exc:
                    lines.append(f"{head}: <invalid: {exc.error_message}> 0x{a.data.hex()}")
                    continue
                lines.append(head + ":" + (" (empty)" if empty else ""))
                v._dump_lines(lines, indent + 1)
            else:
                lines.append(f"{head}: {_show(a, v)}")


class Group(AvpContainer):
    """The value of a Grouped AVP: nested AVPs, read and written as attributes."""

    __slots__ = ("_defn", "_grammar")

    def __init__(
        self, definition: AvpDef | None = None, _dictionary: Dictionary | None = None, **avps: Any
    ) -> None:
        self._defn = definition
        self._grammar = definition.grammar if definition is not None else None
        self._dict = (
            _dictionary or (definition.owner if definition else None) or get_dictionary()
        )
        self._avps = []
        self._keys = self._offs = None
        self._vals = None
        self._buf = None
        self._start = self._end = self._scan = 0
        self._dirty = True
        if avps:
            self._fill(avps)

    @classmethod
    def _from_wire(cls, buf: Any, start: int, end: int, d: AvpDef) -> Group:
        g = cls.__new__(cls)
        g._defn = d
        g._grammar = d.grammar
        g._dict = d.owner
        g._avps = g._keys = g._offs = g._vals = None
        g._buf = buf
        g._start = g._scan = start
        g._end = end
        g._dirty = False
        return g

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Group):
            return NotImplemented
        return [a.encode() for a in self._items()] == [a.encode() for a in other._items()]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        name = self._defn.name if self._defn is not None else "Group"
        try:
            inner = ", ".join(f"{a.name}={a.value!r}" for a in self._items())
        except CodecError as exc:
            inner = f"<invalid: {exc.error_message}>"
        return f"{name}({inner})"



def _make(d: AvpDef, value: Any) -> Avp:
    """Avp(d.code, value, vendor=d.vendor, definition=d), without the keyword machinery."""
    a = _new_avp(Avp)
    a.code = d.code
    a.flags = d.flags
    a.vendor = d.vendor
    a._defn = d
    a._buf = None
    a._off = a._len = a._hdr = 0
    t = type(value)
    if t is str or t is int:  # the common case, checked here without another call
        if d.kind == 0:
            try:
                a._value = d.codec.check(value)
            except TypeFault as exc:
                raise EncodeError(f"{d.name}: {exc}") from None
            return a
    elif isinstance(value, _BYTES) and d.type != "OctetString":
        a._set_raw(bytes(value))
        return a
    a._value = _coerce(d, value)
    return a


def _is_occurrences(d: AvpDef, value: Any) -> bool:
    """Does a list given for `d` hold several occurrences (not one group's content)?"""
    if d.kind != 2 or not value or not isinstance(value[0], Avp):
        return True
    return not all(isinstance(a, Avp) and (a.code, a.vendor) != (d.code, d.vendor) for a in value)


def _value_at(d: AvpDef | None, buf: Any, off: int) -> Any:
    """Decode one indexed AVP's value (the read path that creates no Avp object)."""
    if d is not None:
        st = d.fixed_struct
        if st is not None:
            # a short value last in the buffer: the struct would read past it (Avp path: 5014)
            t = st.unpack_from(buf, off) if len(buf) - off >= d.fixed_len else (0, 0)
            if t[1] & 0xFFFFFF == d.fixed_len:
                v = t[-1]
                if d.enum:
                    return d.member(v)
                if d.codec.converts:
                    return d.codec.decode(buf, off + d.fixed_len - d.codec.size, off + d.fixed_len)
                return v
        elif d.kind == 0:  # variable-size (strings, octets, addresses): decoded in place
            fl = _U32.unpack_from(buf, off + 4)[0]
            try:
                return d.codec.decode(
                    buf, off + (12 if fl & 0x80000000 else 8), off + (fl & 0xFFFFFF)
                )
            except TypeFault:
                pass  # through an Avp below, which shapes the AvpError and its Failed-AVP
        elif d.type == "Grouped":
            fl = _HDR.unpack_from(buf, off)[1]
            return Group._from_wire(
                buf, off + (12 if fl & 0x80000000 else 8), off + (fl & 0xFFFFFF), d
            )
    return _materialize(buf, [off], None, {} if d is None else {(d.code, d.vendor): d})[0].value


bind_group(Group)
