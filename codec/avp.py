"""AVPs: one AVP's value, its encoding, and the scan that indexes AVPs in a buffer.

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

from collections.abc import Mapping
from struct import Struct
from struct import error as StructError
from typing import TYPE_CHECKING, Any

from .constants import AVP_RESERVED, AVP_VENDOR
from .definitions import AvpDef, enum_member_name
from .dictionary import Dictionary, get_dictionary
from .errors import AvpError, CodecError
from .types import TypeFault

if TYPE_CHECKING:
    from .container import Group

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

    code: int
    flags: int
    vendor: int
    _buf: Any  # bytes-like the AVP lies in (a message's buffer, or its own), or None
    _off: int
    _len: int
    _hdr: int
    _value: Any
    _defn: AvpDef | None

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
        n: int = _U32.unpack_from(self.encode(), 4)[0] & 0xFFFFFF
        return n

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
            return _Group._from_wire(buf, start, end, d)
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
        return v is _UNSET or type(v) is not _Group or not v._changed()

    def _encode_into(self, parts: list[Any]) -> int:
        """Append this AVP's octets (padded) to parts; return how many were appended."""
        buf = self._buf
        if buf is not None:
            v = self._value
            if v is _UNSET or type(v) is not _Group or not v._changed():
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
        elif t is _Group or isinstance(v, _Group):
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
            and (v is _UNSET or type(v) is not _Group or not v._changed())
        ):
            c._buf = buf
            c._off = self._off
            c._len = self._len
            c._hdr = self._hdr
            c._value = _UNSET if isinstance(v, _Group) else v
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
            if (v is _UNSET or type(v) is not _Group or not v._changed()) and buf[
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
        elif t is _Group:  # built groups, written here: recursion without the method calls
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
        return b"\x00" * int(codec.size)
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
    out: list[Avp] = []
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
    return get_dictionary()


_new_avp = object.__new__
_NO_RANK: dict[int, int] = {}
_LAST = 1 << 30


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
    if isinstance(value, _Group):
        if value._defn is None:
            value._defn = d
            value._grammar = d.grammar
        return value
    if isinstance(value, Mapping):
        g = _Group(d)
        g._fill(value)
        return g
    if isinstance(value, (list, tuple)) and all(isinstance(a, Avp) for a in value):
        g = _Group(d)
        for a in value:
            g._insert(a)
        return g
    raise EncodeError(f"{d.name} is Grouped: give a dict, a Group or a list of Avp")


def _coerce_unknown(value: Any) -> Any:
    if isinstance(value, (bytes, _Group)):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (list, tuple)) and all(isinstance(a, Avp) for a in value):
        g = _Group(None)
        for a in value:
            g._avps.append(a)  # type: ignore[union-attr]
        return g
    raise EncodeError(f"an AVP with no definition needs bytes, got {type(value).__name__}")


def _enum_value(d: AvpDef, value: Any) -> Any:
    if isinstance(value, str):
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


# The class of Grouped values. An Avp's value can be a Group and a Group holds Avps: the two
# are one recursive structure, split over two modules by concern (this one: one AVP and the
# wire; container.py: lists of AVPs). container.py imports this module and hands Group over
# with bind_group at its import, so that no import runs the other way.
_Group: type[Group] = None  # type: ignore[assignment]


def bind_group(cls: type[Group]) -> None:
    global _Group
    _Group = cls
