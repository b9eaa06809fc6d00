"""AVPs and AVP containers (a message body or a Grouped value).

Decoding is lazy: a container scans its AVP headers once (code, flags, vendor and offsets
into the shared message buffer) and builds a value only when it is read. An AVP that was
never changed is re-emitted from the original bytes, which makes relaying byte-exact and
keeps unknown AVPs at any depth intact.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from struct import Struct
from struct import error as StructError
from typing import TYPE_CHECKING, Any

from .constants import AVP_RESERVED, AVP_VENDOR
from .errors import AvpError, CodecError
from .types import TypeFault

if TYPE_CHECKING:
    from .dictionary import AvpDef, Dictionary, Grammar

_UNSET: Any = object()
_HDR = Struct(">II")
_HDR_V = Struct(">III")
_U32 = Struct(">I")
_PAD = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")


class EncodeError(CodecError, ValueError):
    """A value cannot be encoded as its AVP's type (a caller's bug, not a peer's)."""


class Avp:
    """One AVP. From the wire it points into the message buffer; built, it holds a value."""

    __slots__ = ("code", "flags", "vendor", "_buf", "_off", "_len", "_hdr", "_value", "_defn")

    def __init__(
        self,
        code: int,
        value: Any = _UNSET,
        *,
        vendor: int = 0,
        flags: int | None = None,
        definition: AvpDef | None = None,
    ) -> None:
        self.code = code
        self.vendor = vendor
        self._defn = definition
        if flags is None:
            flags = definition.flags if definition is not None else (AVP_VENDOR if vendor else 0)
        self.flags = flags | (AVP_VENDOR if vendor else 0)
        self._buf = None
        self._off = self._len = self._hdr = 0
        self._value = _coerce(definition, value) if value is not _UNSET else b""

    @classmethod
    def new(cls, name: str, value: Any, dictionary: Dictionary | None = None) -> Avp:
        """An AVP by dictionary name (or snake_case name), flags from the dictionary."""
        d = (dictionary or _default_dictionary()).avp(name)
        return cls(d.code, value, vendor=d.vendor, definition=d)

    @classmethod
    def decode(cls, data: bytes, dictionary: Dictionary | None = None) -> Avp:
        """One whole AVP (header included), e.g. the content of a Failed-AVP."""
        avps = scan(bytes(data), 0, len(data), (dictionary or _default_dictionary()).avps)
        if len(avps) != 1:
            raise AvpError(5014, f"expected one AVP, found {len(avps)}")
        return avps[0]

    # -- identity --------------------------------------------------------------------

    @property
    def definition(self) -> AvpDef | None:
        return self._defn

    @property
    def name(self) -> str:
        d = self._defn
        if d is not None:
            return d.name
        return f"AVP-{self.code}" + (f"-{self.vendor}" if self.vendor else "")

    @property
    def is_mandatory(self) -> bool:
        return bool(self.flags & 0x40)

    @property
    def length(self) -> int:
        """AVP Length as on the wire (header plus data, no padding)."""
        return self._len if self._buf is not None else _U32.unpack_from(self.encode(), 4)[0] & 0xFFFFFF

    # -- value -----------------------------------------------------------------------

    @property
    def value(self) -> Any:
        v = self._value
        if v is _UNSET:
            v = self._value = self._decode_value()
        return v

    @value.setter
    def value(self, value: Any) -> None:
        self._value = _coerce(self._defn, value)
        self._buf = None

    @property
    def data(self) -> bytes:
        """The raw data octets (no header, no padding)."""
        if self._buf is not None:
            return bytes(self._buf[self._off + self._hdr : self._off + self._len])
        enc = self.encode()
        hdr = 12 if self.flags & AVP_VENDOR else 8
        length = _U32.unpack_from(enc, 4)[0] & 0xFFFFFF
        return enc[hdr:length]

    def _decode_value(self) -> Any:
        d = self._defn
        buf = self._buf
        start = self._off + self._hdr
        end = self._off + self._len
        if d is None:
            return bytes(buf[start:end])
        codec = d.codec
        if not codec.fixed and d.type == "Grouped":
            return Group._from_wire(buf, start, end, d)
        try:
            v = codec.decode(buf, start, end)
        except TypeFault as exc:
            raise AvpError(exc.result_code, f"{d.name}: {exc}", self) from None
        ec = d.enum_cls
        if ec is not None:
            try:
                return ec(v)
            except ValueError:
                return v
        return v

    # -- encoding --------------------------------------------------------------------

    def _pristine(self) -> bool:
        if self._buf is None:
            return False
        v = self._value
        return v is _UNSET or not isinstance(v, Group) or not v._changed()

    def _encode_into(self, parts: list[bytes]) -> int:
        """Append this AVP's octets (padded) to parts; return how many were appended."""
        if self._buf is not None and self._pristine():
            n = (self._len + 3) & ~3
            raw = self._buf[self._off : self._off + n]
            if len(raw) < n:  # a last AVP whose padding the sender left out
                raw = bytes(raw) + b"\x00" * (n - len(raw))
            parts.append(raw)
            return n
        d = self._defn
        v = self._value
        code = self.code
        flags = self.flags
        if d is not None and d.fixed_struct is not None and not isinstance(v, (bytes, bytearray)):
            try:
                v = d.codec.check(v)
                if flags & AVP_VENDOR:
                    b = d.fixed_struct.pack(code, (flags << 24) | (12 + d.codec.size), self.vendor, v)
                else:
                    b = d.fixed_struct.pack(code, (flags << 24) | (8 + d.codec.size), v)
            except (TypeFault, StructError) as exc:
                raise EncodeError(f"{d.name}: {exc}") from None
            parts.append(b)
            return len(b)
        if isinstance(v, Group):
            sub: list[bytes] = []
            n = 0
            for a in v._items():
                n += a._encode_into(sub)
            data = b"".join(sub)
        elif isinstance(v, (bytes, bytearray, memoryview)):
            data = bytes(v)
        elif d is None:
            raise EncodeError(f"AVP {code}/{self.vendor} has no definition: its value must be bytes")
        else:
            try:
                data = d.codec.encode(v)
            except TypeFault as exc:
                raise EncodeError(f"{d.name}: {exc}") from None
        n = len(data)
        if flags & AVP_VENDOR:
            parts.append(_HDR_V.pack(code, (flags << 24) | (12 + n), self.vendor))
            total = 12 + n
        else:
            parts.append(_HDR.pack(code, (flags << 24) | (8 + n)))
            total = 8 + n
        parts.append(data)
        pad = _PAD[n & 3]
        if pad:
            parts.append(pad)
        return (total + 3) & ~3

    def encode(self) -> bytes:
        parts: list[bytes] = []
        self._encode_into(parts)
        return b"".join(parts)

    def copy(self) -> Avp:
        """An independent copy: wire AVPs share the (immutable) buffer, not decoded state."""
        c = Avp.__new__(Avp)
        c.code, c.flags, c.vendor, c._defn = self.code, self.flags, self.vendor, self._defn
        if self._pristine():
            c._buf, c._off, c._len, c._hdr = self._buf, self._off, self._len, self._hdr
            v = self._value
            c._value = _UNSET if isinstance(v, Group) else v
        else:
            raw = self.encode()
            c._buf, c._off, c._hdr = raw, 0, 12 if self.flags & AVP_VENDOR else 8
            c._len = _U32.unpack_from(raw, 4)[0] & 0xFFFFFF
            c._value = _UNSET
        return c

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Avp):
            return NotImplemented
        return self.encode() == other.encode()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        try:
            v = self.value
        except CodecError as exc:
            v = f"<invalid: {exc}>"
        return f"<Avp {self.name} code={self.code} vendor={self.vendor} flags=0x{self.flags:02x} value={v!r}>"


def scan(buf: Any, start: int, end: int, defs: Mapping[tuple[int, int], AvpDef]) -> list[Avp]:
    """Index the AVPs in buf[start:end]: headers only, no values (the hot path of decode)."""
    out: list[Avp] = []
    append = out.append
    unpack = _HDR.unpack_from
    new = Avp.__new__
    get = defs.get
    pos = start
    while pos < end:
        if end - pos < 8:
            raise AvpError(5014, f"{end - pos} stray octets where an AVP header should be")
        code, fl = unpack(buf, pos)
        flags = fl >> 24
        length = fl & 0xFFFFFF
        if flags & 0x80:
            if length < 12 or end - pos < 12:
                raise AvpError(5014, f"AVP {code}: length {length} too short", _broken(buf, pos, end))
            vendor = _U32.unpack_from(buf, pos + 8)[0]
            hdr = 12
        else:
            if length < 8:
                raise AvpError(5014, f"AVP {code}: length {length} too short", _broken(buf, pos, end))
            vendor = 0
            hdr = 8
        if pos + length > end:
            raise AvpError(5014, f"AVP {code}: length {length} runs past its container", _broken(buf, pos, end))
        a = new(Avp)
        a.code = code
        a.flags = flags
        a.vendor = vendor
        a._buf = buf
        a._off = pos
        a._len = length
        a._hdr = hdr
        a._value = _UNSET
        a._defn = get((code, vendor))
        append(a)
        pos += (length + 3) & ~3
    return out


def _broken(buf: Any, pos: int, end: int) -> Avp:
    """A Failed-AVP for a malformed AVP: its header fields and whatever data there is."""
    code, fl = _HDR.unpack_from(buf, pos)
    flags = fl >> 24
    vendor = _U32.unpack_from(buf, pos + 8)[0] if flags & 0x80 and end - pos >= 12 else 0
    hdr = 12 if flags & 0x80 else 8
    a = Avp(code, bytes(buf[pos + hdr : min(end, pos + max(hdr, fl & 0xFFFFFF))]), vendor=vendor, flags=flags & ~AVP_RESERVED)
    return a


def _default_dictionary() -> Dictionary:
    from .dictionary import get_dictionary

    return get_dictionary()


def _coerce(d: AvpDef | None, value: Any) -> Any:
    """Turn convenient inputs into the stored value: enum names, dicts for groups."""
    if d is None:
        return value
    if d.type == "Grouped":
        if isinstance(value, Group):
            if value._defn is None:
                value._defn = d
            return value
        if isinstance(value, Mapping):
            return Group(d, **value)
        if isinstance(value, (list, tuple)) and all(isinstance(a, Avp) for a in value):
            g = Group(d)
            for a in value:
                g._insert(a)
            return g
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        raise EncodeError(f"{d.name} is Grouped: give a dict, a Group or a list of Avp")
    if isinstance(value, str) and d.enum_cls is not None:
        try:
            return d.enum_cls[value]
        except KeyError:
            raise EncodeError(f"{d.name}: no enum value named {value!r}") from None
    return value


_INTERNAL = frozenset(
    {
        "_avps",
        "_buf",
        "_start",
        "_end",
        "_dict",
        "_dirty",
        "_defn",
        "code",
        "app_id",
        "flags",
        "hop_by_hop",
        "end_to_end",
    }
)


class AvpContainer:
    """What a message body and a Grouped value share: AVP lists with attribute access."""

    __slots__ = ("_avps", "_buf", "_start", "_end", "_dict", "_dirty")

    _grammar: Grammar | None

    def _items(self) -> list[Avp]:
        avps = self._avps
        if avps is None:
            avps = scan(self._buf, self._start, self._end, self._dict.avps)
            object.__setattr__(self, "_avps", avps)
        return avps

    def _changed(self) -> bool:
        if self._dirty:
            return True
        if self._avps is None:
            return False
        for a in self._avps:
            v = a._value
            if isinstance(v, Group) and v._changed():
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

    def __getattr__(self, name: str) -> Any:
        if name[:1] == "_":
            raise AttributeError(name)
        d = self._dict.by_attr.get(name)
        if d is None:
            raise AttributeError(f"{type(self).__name__} has no attribute or AVP named {name!r}")
        return self._read(d)

    def _read(self, d: AvpDef) -> Any:
        code = d.code
        vendor = d.vendor
        g = self._grammar
        if g is not None and g.multiple((code, vendor)):
            return [a.value for a in self._items() if a.code == code and a.vendor == vendor]
        for a in self._items():
            if a.code == code and a.vendor == vendor:
                return a.value
        return None

    def get(self, name: str | AvpDef, default: Any = None) -> Any:
        """The first occurrence's value (or default), whatever the grammar says."""
        d = self._def(name)
        for a in self._items():
            if a.code == d.code and a.vendor == d.vendor:
                return a.value
        return default

    def get_all(self, name: str | AvpDef) -> list[Any]:
        d = self._def(name)
        return [a.value for a in self._items() if a.code == d.code and a.vendor == d.vendor]

    def find(self, name: str | AvpDef) -> Avp | None:
        """The first Avp object of that name, to copy or inspect flags."""
        d = self._def(name)
        for a in self._items():
            if a.code == d.code and a.vendor == d.vendor:
                return a
        return None

    def find_code(self, code: int, vendor: int = 0) -> list[Avp]:
        return [a for a in self._items() if a.code == code and a.vendor == vendor]

    def __contains__(self, name: str) -> bool:
        return self.find(name) is not None

    @property
    def avps(self) -> list[Avp]:
        return self._items()

    def __iter__(self) -> Iterator[Avp]:
        return iter(self._items())

    # -- writing ----------------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _INTERNAL:
            object.__setattr__(self, name, value)
            return
        d = self._dict.by_attr.get(name)
        if d is None:
            raise AttributeError(f"{type(self).__name__} has no attribute or AVP named {name!r}")
        self.set(d, value)

    def __delattr__(self, name: str) -> None:
        d = self._dict.by_attr.get(name)
        if d is None:
            raise AttributeError(name)
        self.remove(d)

    def set(self, name: str | AvpDef, value: Any) -> None:
        """Replace every occurrence; a list sets several; None removes."""
        d = self._def(name)
        items = self._items()
        pos = next((i for i, a in enumerate(items) if a.code == d.code and a.vendor == d.vendor), None)
        if pos is not None:
            items[:] = [a for a in items if not (a.code == d.code and a.vendor == d.vendor)]
        object.__setattr__(self, "_dirty", True)
        if value is None:
            return
        values = value if isinstance(value, list) else [value]
        for v in values:
            a = v if isinstance(v, Avp) else Avp(d.code, v, vendor=d.vendor, definition=d)
            if pos is None:
                self._insert(a)
            else:
                items.insert(pos, a)
                pos += 1

    def add(self, name: str | AvpDef | Avp, value: Any = _UNSET) -> Avp:
        """Append one occurrence (an Avp object as is, or a name and value)."""
        if isinstance(name, Avp):
            a = name
        else:
            d = self._def(name)
            a = Avp(d.code, value, vendor=d.vendor, definition=d)
        self._insert(a)
        return a

    def remove(self, name: str | AvpDef) -> int:
        d = self._def(name)
        items = self._items()
        before = len(items)
        items[:] = [a for a in items if not (a.code == d.code and a.vendor == d.vendor)]
        object.__setattr__(self, "_dirty", True)
        return before - len(items)

    def _insert(self, a: Avp) -> None:
        """Place an AVP where the grammar orders it (after its kind, before later ones)."""
        items = self._items()
        object.__setattr__(self, "_dirty", True)
        g = self._grammar
        rank = g.rank.get((a.code, a.vendor)) if g is not None else None
        if rank is None:
            items.append(a)
            return
        big = 1 << 30
        for i in range(len(items) - 1, -1, -1):
            b = items[i]
            r = g.rank.get((b.code, b.vendor), big)  # type: ignore[union-attr]
            if r <= rank:
                items.insert(i + 1, a)
                return
        items.insert(0, a)

    def _fill(self, kwargs: Mapping[str, Any]) -> None:
        for k, v in kwargs.items():
            if v is None:
                continue
            d = self._def(k)
            values = v if isinstance(v, list) else [v]
            for x in values:
                self._insert(x if isinstance(x, Avp) else Avp(d.code, x, vendor=d.vendor, definition=d))

    # -- presentation ----------------------------------------------------------------

    def to_list(self) -> list[dict[str, Any]]:
        return [_avp_dict(a) for a in self._items()]

    def _dump_lines(self, lines: list[str], indent: int) -> None:
        pad = "  " * indent
        for a in self._items():
            fl = ("V" if a.flags & 0x80 else "") + ("M" if a.flags & 0x40 else "") + ("P" if a.flags & 0x20 else "")
            vend = f", vendor {a.vendor}" if a.vendor else ""
            head = f"{pad}{a.name} ({a.code}{vend}{', ' + fl if fl else ''})"
            try:
                v = a.value
            except CodecError as exc:
                lines.append(f"{head}: <invalid: {exc}>")
                continue
            if isinstance(v, Group):
                lines.append(head + ":" + ("" if v._items() else " (empty)"))
                v._dump_lines(lines, indent + 1)
            else:
                lines.append(f"{head}: {_show(a, v)}")


def _show(a: Avp, v: Any) -> str:
    if isinstance(v, bytes):
        if a._defn is None:
            return "0x" + v.hex()
        try:
            s = v.decode("ascii")
            if s.isprintable():
                return f"{v!r}"
        except UnicodeDecodeError:
            pass
        return "0x" + v.hex()
    if hasattr(v, "name") and isinstance(v, int):
        return f"{v.name} ({int(v)})"
    if isinstance(v, str):
        return repr(v)
    return str(v)


def json_value(v: Any) -> Any:
    if isinstance(v, Group):
        return v.to_list()
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return int(v)
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, (str, float)) or v is None:
        return v
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, tuple) and hasattr(v, "family"):
        return {"family": v.family, "data": bytes(v.data).hex()}
    return str(v)


def _avp_dict(a: Avp) -> dict[str, Any]:
    d: dict[str, Any] = {"name": a.name, "code": a.code}
    if a.vendor:
        d["vendor"] = a.vendor
    d["flags"] = a.flags
    try:
        v = a.value
    except CodecError as exc:
        d["error"] = str(exc)
        d["data"] = a.data.hex()
        return d
    d["value"] = json_value(v)
    if hasattr(v, "name") and isinstance(v, int) and not isinstance(v, bool):
        d["enum"] = v.name
    return d


class Group(AvpContainer):
    """The value of a Grouped AVP: nested AVPs, read and written as attributes."""

    __slots__ = ("_defn",)

    def __init__(self, definition: AvpDef | None = None, _dictionary: Dictionary | None = None, **avps: Any) -> None:
        osa = object.__setattr__
        osa(self, "_defn", definition)
        osa(self, "_dict", _dictionary or (definition.owner if definition else None) or _default_dictionary())
        osa(self, "_avps", [])
        osa(self, "_buf", None)
        osa(self, "_start", 0)
        osa(self, "_end", 0)
        osa(self, "_dirty", True)
        if avps:
            self._fill(avps)

    @classmethod
    def _from_wire(cls, buf: Any, start: int, end: int, d: AvpDef) -> Group:
        g = cls.__new__(cls)
        osa = object.__setattr__
        osa(g, "_defn", d)
        osa(g, "_dict", d.owner or _default_dictionary())
        osa(g, "_avps", None)
        osa(g, "_buf", buf)
        osa(g, "_start", start)
        osa(g, "_end", end)
        osa(g, "_dirty", False)
        return g

    @property
    def _grammar(self) -> Grammar | None:  # type: ignore[override]
        d = self._defn
        return d.grammar if d is not None else None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Group):
            return NotImplemented
        return [a.encode() for a in self._items()] == [a.encode() for a in other._items()]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        name = self._defn.name if self._defn is not None else "Group"
        inner = ", ".join(f"{a.name}={a.value!r}" for a in self._items())
        return f"{name}({inner})"
