"""The one protocol peek: header fields and raw top-level values, in one pass, no objects.

What a router, a front end or an error path needs from a message (where it came from, where
it goes, which session it belongs to) without decoding it: `peek(buf)` unpacks the header
once, walks the top-level AVP headers once, and keeps the data octets of the AVPs asked for.
The framing checks are the codec's own (header_fault, and the AVP length checks of the
decoder, with the same 5014 Failed-AVP), so a message peek accepts is one Message.decode
accepts, and a fault is a FramingError or AvpError, never an IndexError or struct.error.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable
from typing import NamedTuple

from .avp import _malformed as malformed
from .constants import FLAG_ERROR, FLAG_PROXIABLE, FLAG_REQUEST, FLAG_RETRANSMIT
from .dictionary import Dictionary, get_dictionary
from .errors import FramingError
from .header import DEFAULT_MAX_LENGTH, Header, header_fault, parse_header

# What a router needs (RFC 6733 6.1, 6.7.1; RFC 8506 for Subscription-Id), by dictionary name.
ROUTING: tuple[str, ...] = (
    "Session-Id",
    "Origin-Host",
    "Origin-Realm",
    "Destination-Host",
    "Destination-Realm",
    "Route-Record",
    "Subscription-Id",
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
    AVPs asked for, by key (`code | vendor << 32`), every occurrence in wire order."""

    version: int
    length: int
    flags: int
    code: int
    app_id: int
    hop_by_hop: int
    end_to_end: int
    values: dict[int, list[bytes]]

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
        v = self.values.get(name if type(name) is int else avp_key(name))
        return v[0] if v else None

    def all(self, name: str | int) -> list[bytes]:
        """Every occurrence's data octets, in wire order."""
        return list(self.values.get(name if type(name) is int else avp_key(name), ()))

    @property
    def session_id(self) -> bytes | None:
        return self.first("Session-Id")

    @property
    def origin_host(self) -> bytes | None:
        return self.first("Origin-Host")

    @property
    def origin_realm(self) -> bytes | None:
        return self.first("Origin-Realm")

    @property
    def destination_host(self) -> bytes | None:
        return self.first("Destination-Host")

    @property
    def destination_realm(self) -> bytes | None:
        return self.first("Destination-Realm")

    @property
    def route_records(self) -> list[bytes]:
        return self.all("Route-Record")

    @property
    def subscription_ids(self) -> list[bytes]:
        """The Grouped Subscription-Id values, raw (their inner AVPs, padded)."""
        return self.all("Subscription-Id")


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
        want = _routing or _routing_keys()
    else:
        want = keys_for(codes, dictionary)
    n = len(buf)
    if n < 20 or n & 3:
        parse_header(buf, max_length)  # the header's own fault, if it has one
        raise FramingError(f"a buffer of {n} octets is not one whole message", 5015)
    # The message as big-endian 32-bit words, header included: AVPs start on word
    # boundaries, and indexing an array costs less than a struct call per AVP. Two zero
    # words past the end read as a zero length, so a header cut short is a fault.
    if type(buf) is bytes:
        w = array(_WORD, buf)
    else:
        w = array(_WORD)
        w.frombytes(buf)
    if _SWAP:
        w.byteswap()
    w.extend(_TAIL)
    vl = w[0]
    length = vl & 0xFFFFFF
    if vl >> 24 != 1 or length < 20 or length & 3 or length > max_length:
        raise header_fault(vl, max_length)  # type: ignore[misc]
    if length != n:
        raise FramingError(f"length field says {length} octets, the buffer holds {n}", 5015)
    vals: dict[int, list[bytes]] = {}
    get = vals.get
    i = 5
    end = length >> 2
    while i < end:
        key = w[i]
        fl = w[i + 1]
        alen = fl & 0xFFFFFF
        pos = i << 2
        if fl & 0x80000000:
            if alen < 12 or pos + alen > length:
                break
            key |= w[i + 2] << 32
            if key in want:
                have = get(key)
                if have is None:
                    vals[key] = [buf[pos + 12 : pos + alen]]  # type: ignore[list-item]
                else:
                    have.append(buf[pos + 12 : pos + alen])  # type: ignore[arg-type]
        else:
            if alen < 8 or pos + alen > length:
                break
            if key in want:
                have = get(key)
                if have is None:
                    vals[key] = [buf[pos + 8 : pos + alen]]  # type: ignore[list-item]
                else:
                    have.append(buf[pos + 8 : pos + alen])  # type: ignore[arg-type]
        i += (alen + 3) >> 2
    else:
        if type(buf) is not bytes:
            vals = {k: [bytes(x) for x in v] for k, v in vals.items()}
        fc = w[1]
        return _new(Peek, (1, length, fc >> 24, fc & 0xFFFFFF, w[2], w[3], w[4], vals))
    raise malformed(buf, i << 2, length, (dictionary or get_dictionary()).avps)


_WORD = next(t for t in "IL" if array(t).itemsize == 4)
_SWAP = sys.byteorder == "little"
_TAIL = array(_WORD, (0, 0))
_new = tuple.__new__


_routing: frozenset[int] | None = None


def _routing_keys() -> frozenset[int]:
    global _routing
    _routing = keys_for(ROUTING)
    return _routing
