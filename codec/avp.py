"""AVPs and AVP containers (a message body or a Grouped value).

Decoding is lazy: a container scans its AVP headers once (code, flags, vendor and offsets
into the shared message buffer) and builds a value only when it is read. An AVP that was
never changed is re-emitted from the original bytes, which makes relaying byte-exact and
keeps unknown AVPs at any depth intact.

Building checks each value once, when it is assigned (a bad value raises EncodeError there
and then), so that encoding only packs. A `bytes` value given to an AVP whose type is not
OctetString is taken as its raw data octets, unchecked: that is how a Failed-AVP carries a
zero-filled example, and how a relay rebuilds an AVP it could not decode.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import partial
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
_BYTES = (bytes, bytearray, memoryview)


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
        if value is _UNSET:
            self._value = b""
        else:
            self._assign(value)

    @classmethod
    def new(cls, name: str, value: Any = _UNSET, dictionary: Dictionary | None = None) -> Avp:
        """An AVP by dictionary name (or snake_case name), flags from the dictionary."""
        d = (dictionary or _default_dictionary()).avp(name)
        return cls(d.code, value, vendor=d.vendor, definition=d)

    @classmethod
    def example(cls, name: str | AvpDef, dictionary: Dictionary | None = None) -> Avp:
        """A zero-filled AVP of its type's minimum length: the example a 5005 Failed-AVP holds."""
        d = name if not isinstance(name, str) else (dictionary or _default_dictionary()).avp(name)
        return cls(d.code, example_data(d), vendor=d.vendor, definition=d)

    @classmethod
    def decode(cls, data: bytes, dictionary: Dictionary | None = None) -> Avp:
        """One whole AVP (header included), e.g. the content of a Failed-AVP."""
        d = dictionary or _default_dictionary()
        buf = bytes(data)
        avps = _materialize(buf, scan_index(buf, 0, len(buf), d.avps)[1], None, d.avps)
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
        if self._buf is not None:
            return self._len
        return _U32.unpack_from(self.encode(), 4)[0] & 0xFFFFFF

    # -- value -----------------------------------------------------------------------

    @property
    def value(self) -> Any:
        v = self._value
        if v is _UNSET:
            v = self._value = self._decode_value()
        return v

    @value.setter
    def value(self, value: Any) -> None:
        self._assign(value)

    def _assign(self, value: Any) -> None:
        d = self._defn
        if d is not None and isinstance(value, _BYTES) and d.type != "OctetString":
            self._set_raw(bytes(value))
            return
        self._value = _coerce(d, value)
        self._buf = None

    def _set_raw(self, data: bytes) -> None:
        """Hold data octets as if they came from the wire: read, they decode by type."""
        n = len(data)
        flags = self.flags
        if flags & AVP_VENDOR:
            head = _HDR_V.pack(self.code, (flags << 24) | (12 + n), self.vendor)
        else:
            head = _HDR.pack(self.code, (flags << 24) | (8 + n))
        self._buf = head + data + _PAD[n & 3]
        self._off = 0
        self._hdr = len(head)
        self._len = self._hdr + n
        self._value = _UNSET

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
        if d.enum:
            return d.member(v)
        return v

    # -- encoding --------------------------------------------------------------------

    def _pristine(self) -> bool:
        """From the wire and unchanged: its original octets can be emitted as they are."""
        buf = self._buf
        if buf is None or buf[self._off + 4] != self.flags:
            return False
        v = self._value
        return v is _UNSET or type(v) is not Group or not v._changed()

    def _encode_into(self, parts: list[Any]) -> int:
        """Append this AVP's octets (padded) to parts; return how many were appended."""
        buf = self._buf
        if buf is not None:
            v = self._value
            if v is _UNSET or type(v) is not Group or not v._changed():
                off = self._off
                n = (self._len + 3) & ~3
                if buf[off + 4] == self.flags:
                    raw = buf[off : off + n]
                    if len(raw) < n:  # a last AVP whose padding the sender left out
                        raw = bytes(raw) + b"\x00" * (n - len(raw))
                    parts.append(raw)
                    return n
                return self._emit(parts, bytes(buf[off + self._hdr : off + self._len]))
        else:
            v = self._value
        d = self._defn
        flags = self.flags
        if d is not None:
            st = d.fixed_struct
            if st is not None and (flags & 0x80) == (d.flags & 0x80) and type(v) is not bytes:
                codec = d.codec
                if codec.converts:
                    v = codec.wire(v)
                try:
                    if flags & 0x80:
                        b = st.pack(self.code, (flags << 24) | d.fixed_len, self.vendor, v)
                    else:
                        b = st.pack(self.code, (flags << 24) | d.fixed_len, v)
                except StructError as exc:
                    raise EncodeError(f"{d.name}: {exc}") from None
                parts.append(b)
                return d.fixed_len
        t = type(v)
        if t is str:
            data = v.encode()
        elif t is bytes:
            data = v
        elif t is Group or isinstance(v, Group):
            return self._emit_group(parts, v)
        elif isinstance(v, _BYTES):
            data = bytes(v)
        elif d is None:
            raise EncodeError(
                f"AVP {self.code}/{self.vendor} has no definition: its value must be bytes"
            )
        else:
            try:
                data = d.codec.encode(v)
            except (TypeFault, StructError) as exc:
                raise EncodeError(f"{d.name}: {exc}") from None
        return self._emit(parts, data)

    def _emit(self, parts: list[Any], data: bytes) -> int:
        n = len(data)
        flags = self.flags
        if flags & AVP_VENDOR:
            parts.append(_HDR_V.pack(self.code, (flags << 24) | (12 + n), self.vendor))
            total = 12 + n
        else:
            parts.append(_HDR.pack(self.code, (flags << 24) | (8 + n)))
            total = 8 + n
        parts.append(data)
        pad = _PAD[n & 3]
        if pad:
            parts.append(pad)
        return (total + 3) & ~3

    def _emit_group(self, parts: list[Any], g: Group) -> int:
        flags = self.flags
        i = len(parts)
        parts.append(b"")  # the header, once the length is known
        n = encode_avps(g._items(), parts)
        if flags & AVP_VENDOR:
            parts[i] = _HDR_V.pack(self.code, (flags << 24) | (12 + n), self.vendor)
            return 12 + n
        parts[i] = _HDR.pack(self.code, (flags << 24) | (8 + n))
        return 8 + n

    def encode(self) -> bytes:
        parts: list[Any] = []
        self._encode_into(parts)
        return b"".join(parts)

    def copy(self) -> Avp:
        """An independent copy: wire AVPs share the (immutable) buffer, not decoded state."""
        c = _new_avp(Avp)
        c.code = self.code
        c.flags = flags = self.flags
        c.vendor = self.vendor
        c._defn = self._defn
        buf = self._buf
        v = self._value
        # self._pristine(), written out: copying an answer's Session-Id is on the hot path
        if (
            buf is not None
            and buf[self._off + 4] == flags
            and (v is _UNSET or type(v) is not Group or not v._changed())
        ):
            c._buf = buf
            c._off = self._off
            c._len = self._len
            c._hdr = self._hdr
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


def encode_avps(items: list[Avp], parts: list[Any]) -> int:
    """Append the octets of these AVPs to parts; return how many. The hot path of encoding:
    the common cases (unchanged wire AVPs, fixed-size values, strings and octets) are written
    out here rather than in a method called per AVP; the rest go to Avp._encode_into."""
    total = 0
    append = parts.append
    for a in items:
        buf = a._buf
        v = a._value
        if buf is not None:
            off = a._off
            if (v is _UNSET or type(v) is not Group or not v._changed()) and buf[
                off + 4
            ] == a.flags:
                n = (a._len + 3) & ~3
                raw = buf[off : off + n]
                if len(raw) < n:  # a last AVP whose padding the sender left out
                    raw = bytes(raw) + b"\x00" * (n - len(raw))
                append(raw)
                total += n
            else:
                total += a._encode_into(parts)
            continue
        d = a._defn
        flags = a.flags
        if d is not None:
            st = d.fixed_struct
            if st is not None and type(v) is not bytes and (flags & 0x80) == (d.flags & 0x80):
                if d.converts:
                    v = d.codec.wire(v)
                try:
                    if flags & 0x80:
                        append(st.pack(a.code, (flags << 24) | d.fixed_len, a.vendor, v))
                    else:
                        append(st.pack(a.code, (flags << 24) | d.fixed_len, v))
                except StructError as exc:
                    raise EncodeError(f"{d.name}: {exc}") from None
                total += d.fixed_len
                continue
        t = type(v)
        if t is str:
            data = v.encode()
        elif t is bytes:
            data = v
        elif t is Group:  # built groups, written here: recursion without the method calls
            i = len(parts)
            append(b"")  # the header, once the length is known
            n = encode_avps(v._items(), parts)
            if flags & 0x80:
                parts[i] = _HDR_V.pack(a.code, (flags << 24) | (12 + n), a.vendor)
                total += 12 + n
            else:
                parts[i] = _HDR.pack(a.code, (flags << 24) | (8 + n))
                total += 8 + n
            continue
        else:
            total += a._encode_into(parts)
            continue
        n = len(data)
        if flags & 0x80:
            append(_HDR_V.pack(a.code, (flags << 24) | (12 + n), a.vendor))
            n += 12
        else:
            append(_HDR.pack(a.code, (flags << 24) | (8 + n)))
            n += 8
        append(data)
        if n & 3:
            append(_PAD[n & 3])
        total += (n + 3) & ~3
    return total


def example_data(d: AvpDef) -> bytes:
    """Zero-filled data of the type's minimum length (RFC 6733 7.5, 7.1.5 for 5005/5014)."""
    codec = d.codec
    if codec.fixed:
        return b"\x00" * codec.size
    if d.type == "Address":
        return b"\x00\x01\x00\x00\x00\x00"
    return b""


def scan_index(
    buf: Any, start: int, end: int, defs: Mapping[tuple[int, int], AvpDef] | None = None
) -> tuple[list[int], list[int]]:
    """Index the AVPs in buf[start:end]: (keys, offsets), no objects (the hot path of decode).

    A key is `code | vendor << 32`, so that finding an AVP is a list search done in C.
    `defs` is only read on a fault, to shape the Failed-AVP the 5014 answer carries.
    """
    keys: list[int] = []
    offs: list[int] = []
    scan_into(buf, start, end, keys, offs, -1, defs)
    return keys, offs


def scan_into(
    buf: Any,
    pos: int,
    end: int,
    keys: list[int],
    offs: list[int],
    stop: int,
    defs: Mapping[tuple[int, int], AvpDef] | None,
) -> int:
    """Append the index of buf[pos:end] to keys/offs, stopping after an AVP whose key is
    `stop` (-1: to the end); returns where the scan stopped. Raises AvpError 5014."""
    kadd = keys.append
    oadd = offs.append
    unpack = _HDR.unpack_from
    u32 = _U32.unpack_from
    try:
        while pos < end:
            code, fl = unpack(buf, pos)
            length = fl & 0xFFFFFF
            nxt = pos + length
            if fl & 0x80000000:
                if length < 12 or nxt > end:
                    raise _malformed(buf, pos, end, defs)
                code |= u32(buf, pos + 8)[0] << 32
            elif length < 8 or nxt > end:
                raise _malformed(buf, pos, end, defs)
            kadd(code)
            oadd(pos)
            pos = (nxt + 3) & ~3
            if code == stop:
                break
    except StructError:
        raise _malformed(buf, pos, end, defs) from None
    return pos if pos < end else end


def _malformed(
    buf: Any, pos: int, end: int, defs: Mapping[tuple[int, int], AvpDef] | None
) -> AvpError:
    failed = _broken(buf, pos, end, defs)
    if end - pos < 8:
        why = f"{end - pos} stray octets where an AVP header should be"
    else:
        length = _HDR.unpack_from(buf, pos)[1] & 0xFFFFFF
        if pos + length > end:
            why = f"length {length} runs past its container ({end - pos} octets left)"
        else:
            why = f"length {length} is under its header's size"
    return AvpError(5014, f"AVP {failed.code}: {why}", failed)


def scan(buf: Any, start: int, end: int, defs: Mapping[tuple[int, int], AvpDef]) -> list[Avp]:
    """Index the AVPs in buf[start:end] as Avp objects pointing into buf (values not read)."""
    return _materialize(buf, scan_index(buf, start, end, defs)[1], None, defs)


def _materialize(
    buf: Any, offs: list[int], vals: list[Any] | None, defs: Mapping[tuple[int, int], AvpDef]
) -> list[Avp]:
    out = []
    append = out.append
    new = Avp.__new__
    get = defs.get
    unpack = _HDR_V.unpack_from
    u = _HDR.unpack_from
    i = 0
    for off in offs:
        a = new(Avp)
        if buf[off + 4] & 0x80:
            code, fl, vendor = unpack(buf, off)
            a._hdr = 12
        else:
            code, fl = u(buf, off)
            vendor = 0
            a._hdr = 8
        a.code = code
        a.flags = fl >> 24
        a.vendor = vendor
        a._buf = buf
        a._off = off
        a._len = fl & 0xFFFFFF
        a._value = vals[i] if vals else _UNSET
        a._defn = get((code, vendor))
        append(a)
        i += 1
    return out


def _value_at(d: AvpDef | None, buf: Any, off: int) -> Any:
    """Decode one indexed AVP's value (the read path that creates no Avp object)."""
    if d is not None:
        st = d.fixed_struct
        if st is not None:
            t = st.unpack_from(buf, off)
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


def _broken(buf: Any, pos: int, end: int, defs: Mapping[tuple[int, int], AvpDef] | None) -> Avp:
    """The Failed-AVP for a malformed AVP (RFC 6733 7.1.5, 5014): its header, padded with
    zeros where it was cut short, and a zero-filled payload of its type's minimum length."""
    head = bytes(buf[pos : min(end, pos + 12)]).ljust(12, b"\x00")
    code, fl, vendor = _HDR_V.unpack(head)
    flags = (fl >> 24) & ~AVP_RESERVED
    if not flags & AVP_VENDOR:
        vendor = 0
    d = defs.get((code, vendor)) if defs is not None else None
    data = example_data(d) if d is not None else b""
    a = Avp(code, vendor=vendor, flags=flags, definition=d)
    a._set_raw(data)
    return a


_new_group = object.__new__


def _default_dictionary() -> Dictionary:
    from .dictionary import get_dictionary

    return get_dictionary()


_new_avp = object.__new__
_NO_RANK: dict[int, int] = {}
_LAST = 1 << 30


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


def _coerce(d: AvpDef | None, value: Any) -> Any:
    """Check a value for its AVP and turn convenient inputs into the stored value:
    enum names and ints into members, dicts into groups, Unix seconds into datetimes."""
    if d is None:
        return _coerce_unknown(value)
    kind = d.kind
    if kind == 0:
        try:
            return d.codec.check(value)
        except TypeFault as exc:
            raise EncodeError(f"{d.name}: {exc}") from None
    if kind == 1:
        return _enum_value(d, value)
    if isinstance(value, Group):
        if value._defn is None:
            value._defn = d
            value._grammar = d.grammar
        return value
    if isinstance(value, Mapping):
        g = Group(d)
        g._fill(value)
        return g
    if isinstance(value, (list, tuple)) and all(isinstance(a, Avp) for a in value):
        g = Group(d)
        for a in value:
            g._insert(a)
        return g
    raise EncodeError(f"{d.name} is Grouped: give a dict, a Group or a list of Avp")


def _coerce_unknown(value: Any) -> Any:
    if isinstance(value, (bytes, Group)):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (list, tuple)) and all(isinstance(a, Avp) for a in value):
        g = Group(None)
        for a in value:
            g._avps.append(a)  # type: ignore[union-attr]
        return g
    raise EncodeError(f"an AVP with no definition needs bytes, got {type(value).__name__}")


def _enum_value(d: AvpDef, value: Any) -> Any:
    if isinstance(value, str):
        from .dictionary import enum_member_name

        ec = d.enum_cls
        for key in (value, enum_member_name(value)):
            try:
                return ec[key]  # type: ignore[index]
            except KeyError:
                pass
        raise EncodeError(f"{d.name}: no enum value named {value!r}")
    try:
        v = d.codec.check(value)
    except TypeFault as exc:
        raise EncodeError(f"{d.name}: {exc}") from None
    return d.member(v if type(v) is int else int(v))


def _is_occurrences(d: AvpDef, value: Any) -> bool:
    """Does a list given for `d` hold several occurrences (not one group's content)?"""
    if d.kind != 2 or not value or not isinstance(value[0], Avp):
        return True
    return not all(isinstance(a, Avp) and (a.code, a.vendor) != (d.code, d.vendor) for a in value)


def _read_value(d: AvpDef, self: AvpContainer) -> Any:
    """Attribute access: a list where the grammar allows several, else the value or None.

    `d` may come from another dictionary than the container's (a property is bound to the
    definition of the dictionary that first had the name): then the name is looked up again.

    The hot path of reading. On a container fresh from the wire it scans (a group only as
    far as it must), finds the AVP in the index (a C-level list search) and decodes that
    one value, caching it. Function calls cost more than anything else here, so the scan
    bookkeeping and the common value decodes (_advance, _value_at) are written out inline.
    """
    if d.owner is not self._dict:
        d = _rebind(d, self)
    g = self._grammar
    key = d.ikey
    many = g is not None and key in g.many
    if self._avps is not None:
        return self._lookup(d, many)
    keys = self._keys
    if keys is None or self._scan < self._end and (many or key not in keys):
        if keys is None:
            keys = self._keys = []
            self._offs = []
        n = len(keys)
        try:
            self._scan = scan_into(
                self._buf,
                self._scan,
                self._end,
                keys,
                self._offs,
                -1 if many else key,
                self._dict.avps,
            )  # type: ignore[arg-type]
        except AvpError:
            del keys[n:], self._offs[n:]  # type: ignore[index]
            raise
        vals = self._vals
        if vals is not None and len(vals) < len(keys):
            vals.extend([_UNSET] * (len(keys) - len(vals)))
    if key not in keys:
        return [] if many else None
    vals = self._vals
    if vals is None:
        vals = self._vals = [_UNSET] * len(keys)
    i = keys.index(key)
    left = keys.count(key) if many else 1
    out = []
    while True:
        v = vals[i]
        if v is _UNSET:
            buf = self._buf
            off = self._offs[i]  # type: ignore[index]
            st = d.fixed_struct
            if st is not None:
                t = st.unpack_from(buf, off)
                if t[1] & 0xFFFFFF == d.fixed_len and not d.codec.converts:
                    v = t[-1]
                    if d.enum:
                        v = d.member(v)
                else:
                    v = _value_at(d, buf, off)
            elif d.kind == 2:
                fl = _U32.unpack_from(buf, off + 4)[0]
                v = Group._from_wire(
                    buf, off + (12 if fl & 0x80000000 else 8), off + (fl & 0xFFFFFF), d
                )
            else:
                v = _value_at(d, buf, off)
            vals[i] = v
        if not many:
            return v
        out.append(v)
        left -= 1
        if not left:
            return out
        i = keys.index(key, i + 1)


def _rebind(d: AvpDef, obj: AvpContainer) -> AvpDef:
    other = obj._dict.by_attr.get(d.attr)
    if other is None:
        raise AttributeError(f"no AVP {d.attr!r} in this message's dictionary")
    return other


def _write_value(d: AvpDef, obj: AvpContainer, value: Any) -> None:
    obj.set(_rebind(d, obj) if d.owner is not obj._dict else d, value)


def _delete_value(d: AvpDef, obj: AvpContainer) -> None:
    obj.remove(_rebind(d, obj) if d.owner is not obj._dict else d)


def avp_property(d: AvpDef) -> property:
    """The attribute for an AVP name: `ccr.cc_total_octets` reads, assigns (None removes) and
    deletes. A property over functools.partial: CPython calls both in C, so reading costs one
    Python frame (_read_value), which matters on the hot path."""
    return property(
        partial(_read_value, d),
        partial(_write_value, d),
        partial(_delete_value, d),
        f"the {d.name} AVP",
    )


def install_attributes(defs: Mapping[str, AvpDef]) -> None:
    """Give AvpContainer a property for each AVP attribute name not already taken."""
    reserved = None
    for name, d in defs.items():
        if name not in _taken:
            _taken.add(name)
            if reserved is None:
                reserved = set()
                for k in (AvpContainer, Group, *_message_classes()):
                    for c in k.__mro__:
                        reserved.update(vars(c))
            if name in reserved:
                _shadowed.add(name)
                continue
            setattr(AvpContainer, name, avp_property(d))


_taken: set[str] = set()
_shadowed: set[str] = set()  # AVP attribute names hidden by a method (read them with .get)


def _message_classes() -> tuple[type, ...]:
    from .message import Message

    return (Message,)


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

    _grammar: Grammar | None

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
        offs = self._offs
        n = len(keys)
        try:
            self._scan = scan_into(
                self._buf, self._scan, self._end, keys, offs, stop, self._dict.avps
            )  # type: ignore[arg-type]
        except AvpError:
            del keys[n:], offs[n:]  # type: ignore[index]
            raise
        vals = self._vals
        if vals is not None and len(vals) < len(keys):
            vals.extend([_UNSET] * (len(keys) - len(vals)))
        return keys

    def _items(self) -> list[Avp]:
        avps = self._avps
        if avps is None:
            self._index()
            avps = _materialize(self._buf, self._offs, self._vals, self._dict.avps)
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

    def _read(self, d: AvpDef) -> Any:
        """Attribute access: a list where the grammar allows several, else the value or None."""
        return _read_value(d, self)

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
        return self._lookup(self._def(name), True)

    def raw_value(self, name: str | AvpDef) -> bytes | None:
        """The data octets (no header, no padding) of the first occurrence, or None.

        No type decoding and no Avp object: the cheap read for routing and affinity keys
        (Session-Id, Origin-Host, Destination-Realm...), which need octets to compare or
        hash, not validated strings. Decoded containers read it from their index."""
        d = self._dict.by_name.get(name) if type(name) is str else name
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
            off = self._offs[keys.index(d.ikey)]  # type: ignore[index, union-attr]
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
        offs = self._offs
        if keys.count(key) == 1:  # the usual case (Session-Id): no scan in Python
            return _materialize(self._buf, [offs[keys.index(key)]], None, self._dict.avps)  # type: ignore[index]
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
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, tuple) and hasattr(v, "family"):
        return f"family {v.family}: 0x{bytes(v.data).hex()}"
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
        d["value"] = json_value(v)
    except CodecError as exc:
        d["error"] = exc.error_message
        d["result_code"] = exc.result_code
        d["data"] = a.data.hex()
        return d
    if hasattr(v, "name") and isinstance(v, int) and not isinstance(v, bool):
        d["enum"] = v.name
    return d


class Group(AvpContainer):
    """The value of a Grouped AVP: nested AVPs, read and written as attributes."""

    __slots__ = ("_defn", "_grammar")

    def __init__(
        self, definition: AvpDef | None = None, _dictionary: Dictionary | None = None, **avps: Any
    ) -> None:
        self._defn = definition
        self._grammar = definition.grammar if definition is not None else None
        self._dict = (
            _dictionary or (definition.owner if definition else None) or _default_dictionary()
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
