"""The one protocol peek: header fields and raw top-level values, in one pass, no objects.

What a router, a front end or an error path needs from a message (where it came from, where
it goes, which session it belongs to) without decoding it: `peek(buf)` unpacks the header
once, walks the top-level AVP headers once, and keeps the data octets of the AVPs asked for.
The framing checks are the codec's own (header_fault, and the AVP length checks of the
decoder, with the same 5014 Failed-AVP), so a message peek accepts is one Message.decode
accepts, and a fault is a FramingError or AvpError, never an IndexError or struct.error.
"""

from __future__ import annotations

from collections.abc import Iterable
from struct import Struct
from struct import error as StructError
from typing import NamedTuple

from .avp import _malformed as malformed
from .constants import FLAG_ERROR, FLAG_PROXIABLE, FLAG_REQUEST, FLAG_RETRANSMIT
from .dictionary import Dictionary, get_dictionary
from .errors import FramingError
from .header import DEFAULT_MAX_LENGTH, HEADER, Header, header_fault, parse_header

# What a router needs (RFC 6733 6.1, 6.7.1; RFC 8506 for Subscription-Id), by dictionary name.
ROUTING: tuple[str, ...] = (
    "Session-Id",
    "Origin-Host",
    "Origin-Realm",
    "Destination-Host",
    "Destination-Realm",
    "Route-Record",
    "Subscription-Id",
    "OC-Supported-Features",  # RFC 7683: the sender is a reacting node
    "CC-Request-Type",  # RFC 4006 8.3 and RFC 6733 9.8.1: whether the request ends its
    "Accounting-Record-Type",  # session (Peek.ends_session), so a router can forget it
)

_keysets: dict[tuple[int, Iterable[str | int]], frozenset[int]] = {}


def avp_key(name: str | int, dictionary: Dictionary | None = None) -> int:
    """An AVP's index key (`code | vendor << 32`) by dictionary name; an int is a key already."""
    if type(name) is int:
        return name
    d = dictionary or get_dictionary()
    defn = d.find_avp(name)  # type: ignore[arg-type]
    if defn is None:
        raise KeyError(f"no AVP named {name!r} in the dictionary")
    return defn.ikey


def keys_for(codes: Iterable[str | int], dictionary: Dictionary | None = None) -> frozenset[int]:
    """The index keys for names (or keys), cached per dictionary and codes object."""
    d = dictionary or get_dictionary()
    ck = (id(d), codes)
    ks = _keysets.get(ck)
    if ks is None:
        ks = frozenset(avp_key(c, d) for c in codes)
        if len(_keysets) < 256:
            _keysets[ck] = ks
    return ks


class Peek(NamedTuple):
    """A message's header and the raw data octets (no header, no padding) of the top-level
    AVPs asked for, by key (`code | vendor << 32`): `values` holds each one's first
    occurrence, `more` the later ones in wire order (None when no AVP asked for repeats).

    Two objects per peek, whatever was found: a request waiting in a batch keeps no list
    per value alive (the garbage collector's young generation counts every one)."""

    version: int
    length: int
    flags: int
    code: int
    app_id: int
    hop_by_hop: int
    end_to_end: int
    values: dict[int, bytes]
    more: dict[int, list[bytes]] | None

    @property
    def is_request(self) -> bool:
        return bool(self.flags & FLAG_REQUEST)

    @property
    def is_proxiable(self) -> bool:
        return bool(self.flags & FLAG_PROXIABLE)

    @property
    def is_error(self) -> bool:
        return bool(self.flags & FLAG_ERROR)

    @property
    def is_retransmit(self) -> bool:
        return bool(self.flags & FLAG_RETRANSMIT)

    @property
    def header(self) -> Header:
        return Header(*self[:7])

    def first(self, name: str | int) -> bytes | None:
        """The first occurrence's data octets, or None (also when it was not asked for)."""
        return self.values.get(name if isinstance(name, int) else _key(name))

    def all(self, name: str | int) -> list[bytes]:
        """Every occurrence's data octets, in wire order."""
        key = name if isinstance(name, int) else _key(name)
        v = self.values.get(key)
        if v is None:
            return []
        more = self.more
        return [v, *more[key]] if more is not None and key in more else [v]

    # The routing reads, by the default dictionary's keys (resolved once, then a dict hit).

    @property
    def session_id(self) -> bytes | None:
        return self.values.get(_KEYS.get("Session-Id") or _key("Session-Id"))

    @property
    def origin_host(self) -> bytes | None:
        return self.values.get(_KEYS.get("Origin-Host") or _key("Origin-Host"))

    @property
    def origin_realm(self) -> bytes | None:
        return self.values.get(_KEYS.get("Origin-Realm") or _key("Origin-Realm"))

    @property
    def destination_host(self) -> bytes | None:
        return self.values.get(_KEYS.get("Destination-Host") or _key("Destination-Host"))

    @property
    def destination_realm(self) -> bytes | None:
        return self.values.get(_KEYS.get("Destination-Realm") or _key("Destination-Realm"))

    @property
    def route_records(self) -> list[bytes]:
        return self.all("Route-Record")

    @property
    def subscription_ids(self) -> list[bytes]:
        """The Grouped Subscription-Id values, raw (their inner AVPs, padded)."""
        return self.all("Subscription-Id")

    @property
    def oc_supported(self) -> bool:
        """Whether the message carries OC-Supported-Features (RFC 7683 DOIC)."""
        key = _KEYS.get("OC-Supported-Features") or _key("OC-Supported-Features")
        return key in self.values

    @property
    def subscription_data(self) -> bytes | None:
        """The first Subscription-Id's Subscription-Id-Data octets (the charging shard's
        routing key), or None."""
        grouped = self.values.get(_KEYS.get("Subscription-Id") or _key("Subscription-Id"))
        if grouped is None:
            return None
        return inner_value(
            grouped, _KEYS.get("Subscription-Id-Data") or _key("Subscription-Id-Data")
        )

    @property
    def ends_session(self) -> bool:
        """Whether this request is the last of its session, so that a router may forget the
        session once it is answered: a CCR whose CC-Request-Type is TERMINATION_REQUEST or
        EVENT_REQUEST, an ACR whose Accounting-Record-Type is STOP_RECORD or EVENT_RECORD,
        or a Session-Termination-Request. Codes and values come from the dictionary."""
        e = _ends or _end_values()
        if self.code == e.str_code:
            return bool(self.flags & FLAG_REQUEST)
        vals = self.values
        v = vals.get(e.cc_key)
        if v is not None and v in e.cc_values:
            return True
        v = vals.get(e.acct_key)
        return v is not None and v in e.acct_values


class _Ends(NamedTuple):
    cc_key: int
    cc_values: frozenset[bytes]  # the Enumerated values' data octets
    acct_key: int
    acct_values: frozenset[bytes]
    str_code: int


_ends: _Ends | None = None


def _end_values() -> _Ends:
    """The session-ending keys, enum values and command code, from the default dictionary
    (resolved on first use, then kept: the base and RFC 4006 codes do not change)."""
    global _ends
    d = get_dictionary()

    def octets(avp: str, *names: str) -> tuple[int, frozenset[bytes]]:
        defn = d.find_avp(avp)
        if defn is None or not defn.enum:
            raise KeyError(f"no Enumerated AVP named {avp!r} in the dictionary")
        return defn.ikey, frozenset(int(defn.enum[n]).to_bytes(4, "big") for n in names)

    cc_key, cc_values = octets("CC-Request-Type", "TERMINATION_REQUEST", "EVENT_REQUEST")
    acct_key, acct_values = octets("Accounting-Record-Type", "STOP_RECORD", "EVENT_RECORD")
    cmds = d.find_commands("Session-Termination")
    if not cmds:
        raise KeyError("no Session-Termination command in the dictionary")
    _ends = _Ends(cc_key, cc_values, acct_key, acct_values, cmds[0].code)
    return _ends


_AVP_HEAD = Struct(">II")


def inner_value(grouped: bytes, key: int) -> bytes | None:
    """The data octets of the first AVP `key` (`code | vendor << 32`) inside a Grouped
    value's raw octets; None when it is absent or the inner framing is bad (the worker's
    full decode reports that fault)."""
    code, vendor = key & 0xFFFFFFFF, key >> 32
    i, n = 0, len(grouped)
    unpack = _AVP_HEAD.unpack_from
    while i + 8 <= n:
        c, fl = unpack(grouped, i)
        length = fl & 0xFFFFFF
        head = 12 if fl & 0x80000000 else 8
        if length < head or i + length > n:
            return None
        if c == code:
            v = int.from_bytes(grouped[i + 8 : i + 12], "big") if head == 12 else 0
            if v == vendor:
                return grouped[i + head : i + length]
        i += (length + 3) & ~3
    return None


# Name -> key in the default dictionary, for Peek's reads (a dictionary does not change
# the base protocol's codes; a key asked for by int is used as it is).
_KEYS: dict[str, int] = {}


def _key(name: str) -> int:
    k = _KEYS.get(name)
    if k is None:
        k = _KEYS[name] = avp_key(name)
    return k


def peek(
    buf: bytes | bytearray | memoryview,
    codes: frozenset[int] | frozenset[str] | tuple[str | int, ...] = ROUTING,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    dictionary: Dictionary | None = None,
) -> Peek:
    """Header fields and the raw values of the top-level AVPs in `codes` (names from the
    dictionary, or keys `code | vendor << 32`), in one pass over one whole message.

    Raises FramingError (header, or a buffer that is not exactly one message) or AvpError
    5014 with its Failed-AVP (an AVP whose length is short or runs past the message)."""
    if codes is ROUTING and dictionary is None:
        want, codes32 = _routing or _routing_keys()
    else:
        want = keys_for(codes, dictionary)
        codes32 = _codes32(want)
    if type(buf) is not bytes:
        buf = bytes(buf)
    n = len(buf)
    if n < 20:
        parse_header(buf, max_length)  # the header's own fault
    vl, fc, app, hbh, e2e = _unpack_header(buf, 0)
    length = vl & 0xFFFFFF
    if vl >> 24 != 1 or length < 20 or length & 3 or length > max_length:
        raise header_fault(vl, max_length)  # type: ignore[misc]
    if length != n:
        raise FramingError(f"length field says {length} octets, the buffer holds {n}", 5015)
    # One struct call per AVP header. The vendor word is read only for a V-flagged AVP
    # whose code is one asked for; the rest only has its length checked, and only against
    # its header's size: an AVP that runs past the message takes the walk past `length`,
    # which the end checks once (`at`: the AVP being read, the one a fault names).
    vals: dict[int, bytes] = {}
    more: dict[int, list[bytes]] | None = None
    unpack = _unpack_avp
    pos = at = 20
    try:
        while pos < length:
            at = pos
            key, fl = unpack(buf, pos)  # StructError: 4 stray octets at the end
            size = fl & 0xFFFFFF
            if fl & 0x80000000:
                if size < 12:
                    break
                if key in codes32:
                    key |= _unpack_u32(buf, pos + 8)[0] << 32
                    if key in want:
                        if key not in vals:
                            vals[key] = buf[pos + 12 : pos + size]
                        else:
                            more = _again(more, key, buf[pos + 12 : pos + size])
            elif size < 8:
                break
            elif key in want:
                if key not in vals:
                    vals[key] = buf[pos + 8 : pos + size]
                else:
                    more = _again(more, key, buf[pos + 8 : pos + size])
            pos = (pos + size + 3) & ~3
        else:
            if pos == length:  # else the AVP at `at` ran past the message
                return _new(Peek, (1, length, fc >> 24, fc & 0xFFFFFF, app, hbh, e2e, vals, more))
    except StructError:
        pass
    raise malformed(buf, at, length, (dictionary or get_dictionary()).avps)


_unpack_header = HEADER.unpack_from
_unpack_avp = Struct(">II").unpack_from
_unpack_u32 = Struct(">I").unpack_from
_new = tuple.__new__


def _again(more: dict[int, list[bytes]] | None, key: int, value: bytes) -> dict[int, list[bytes]]:
    """A later occurrence of an AVP asked for (Route-Record, Subscription-Id): kept in order."""
    if more is None:
        return {key: [value]}
    have = more.get(key)
    if have is None:
        more[key] = [value]
    else:
        have.append(value)
    return more


def _codes32(keys: frozenset[int]) -> frozenset[int]:
    """The AVP codes (vendor dropped) of `keys`: the cheap first test of a vendor AVP."""
    return frozenset(k & 0xFFFFFFFF for k in keys)


_routing: tuple[frozenset[int], frozenset[int]] | None = None


def _routing_keys() -> tuple[frozenset[int], frozenset[int]]:
    global _routing
    keys = keys_for(ROUTING)
    _routing = (keys, _codes32(keys))
    return _routing
