"""RFC 6733 basic and derived AVP data types: bytes in, Python values out, and back.

Each type is a small object with `decode(buf, start, end)`, `strict(buf, start, end)`,
`check(value)` and `encode(value) -> bytes`. Decoding works on offsets into the message
buffer so that fixed-size values are read with one `unpack_from` and no slicing.

Reading never judges: `decode` returns a faithful value for any octets a peer can send (a
string type's octets that are not valid text keep every octet, see `text_octets`; an Address that
is not one is kept as `OtherAddress` or, under 2 octets, as bytes). The one exception is a
fixed-size type (integers, floats, Time) whose data has the wrong length: there is no number
to return, so it raises `TypeFault` with 5014, a length fault like the AVP framing faults.
`strict` is what validation and the compiled readers use: the value, or `TypeFault` with the
Result-Code the answer needs (5004 for a bad value, 5014 for a wrong length).

`check` runs once, when a value is assigned, and returns the value to store (an enum name
becomes its member, a Unix time a UTC datetime); `encode` then trusts it. The AVP layer turns
a `TypeFault` into AvpError (validating, or reading a fixed-size value) or EncodeError
(building): a value that reading returned but that its type does not allow cannot be
assigned again; forward the `Avp` itself (its octets go out unchanged) or its `data`.
"""

from __future__ import annotations

import ipaddress
import math
import re
from datetime import UTC, datetime, timedelta
from struct import Struct
from typing import Any, NamedTuple


class TypeFault(ValueError):
    def __init__(self, message: str, result_code: int = 5004) -> None:
        super().__init__(message)
        self.result_code = result_code


class OtherAddress(NamedTuple):
    """An Address of a family other than IPv4/IPv6 (E.164 and the rest), kept opaque."""

    family: int
    data: bytes


NTP_UNIX_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
ERA = 1 << 32
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# RFC 2030 3: with the top bit set the value counts from 1900 (1968-01-20 .. 2036-02-07),
# with it clear from 2036-02-07 06:28:16 UTC (up to 2104-02-26).
TIME_MIN = _EPOCH + timedelta(seconds=(1 << 31) - NTP_UNIX_OFFSET)
TIME_MAX = _EPOCH + timedelta(seconds=ERA + (1 << 31) - 1 - NTP_UNIX_OFFSET)


class FixedType:
    """A type whose data is one struct field (integers, floats, enumerations, time)."""

    __slots__ = ("name", "struct", "size", "lo", "hi", "is_float")
    fixed = True
    converts = False  # True when the stored value is not what the struct packs (Time)

    def __init__(self, name: str, fmt: str, lo: int | None = None, hi: int | None = None) -> None:
        self.name = name
        self.struct = Struct(">" + fmt)
        self.size = self.struct.size
        self.lo = lo
        self.hi = hi
        self.is_float = lo is None

    def decode(self, buf: Any, start: int, end: int) -> Any:
        if end - start != self.size:
            raise TypeFault(f"{self.name} needs {self.size} octets, got {end - start}", 5014)
        return self.struct.unpack_from(buf, start)[0]

    def strict(self, buf: Any, start: int, end: int) -> Any:
        """The value, or TypeFault: for a fixed size only the length can be wrong."""
        return self.decode(buf, start, end)

    def check(self, value: Any) -> Any:
        if type(value) is int and not self.is_float and self.lo <= value <= self.hi:  # type: ignore[operator]
            return value
        if type(value) is bool:
            raise TypeFault(f"{self.name} needs a number, got bool")
        if not self.is_float:
            if not isinstance(value, int):
                raise TypeFault(f"{self.name} needs an int, got {type(value).__name__}")
            if not self.lo <= value <= self.hi:  # type: ignore[operator]
                raise TypeFault(f"{value} is out of range for {self.name}")
            return value
        if not isinstance(value, (int, float)):
            raise TypeFault(f"{self.name} needs a number, got {type(value).__name__}")
        value = float(value)
        if self.size == 4 and math.isfinite(value):
            try:
                self.struct.pack(value)
            except OverflowError:
                raise TypeFault(f"{value} is out of range for {self.name}") from None
        return value

    def wire(self, value: Any) -> Any:
        """The struct field for a checked value (the identity, except for Time)."""
        return value

    def encode(self, value: Any) -> bytes:
        return self.struct.pack(self.wire(self.check(value)))


class TimeType(FixedType):
    """NTP seconds, always UTC; values with the top bit clear belong to the era after 2036."""

    __slots__ = ()
    converts = True

    def __init__(self) -> None:
        super().__init__("Time", "I", 0, ERA - 1)

    def decode(self, buf: Any, start: int, end: int) -> datetime:
        ntp = FixedType.decode(self, buf, start, end)
        if not ntp & 0x80000000:
            ntp += ERA
        return _EPOCH + timedelta(seconds=ntp - NTP_UNIX_OFFSET)

    def check(self, value: Any) -> datetime:
        """A datetime (naive means UTC) or Unix seconds -> an aware UTC datetime, whole seconds."""
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            elif value.utcoffset():
                value = value.astimezone(UTC)
            elif value.tzinfo is not UTC:
                value = value.replace(tzinfo=UTC)
            if value.microsecond:
                value = value.replace(microsecond=0)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise TypeFault(f"Time needs a finite number, got {value}")
            try:
                value = _EPOCH + timedelta(seconds=math.floor(value))
            except OverflowError:
                raise TypeFault(f"Time {value} is out of range") from None
        else:
            raise TypeFault(f"Time needs a datetime or Unix seconds, got {type(value).__name__}")
        if not TIME_MIN <= value <= TIME_MAX:
            raise TypeFault(
                f"Time {value.isoformat()} is outside what NTP seconds can carry "
                f"({TIME_MIN.isoformat()} .. {TIME_MAX.isoformat()})"
            )
        return value  # type: ignore[no-any-return]

    def wire(self, value: datetime) -> int:
        ntp = (value - _EPOCH) // _SECOND + NTP_UNIX_OFFSET
        return ntp - ERA if ntp >= ERA else ntp


_SECOND = timedelta(seconds=1)


class OctetStringType:
    __slots__ = ("name",)
    fixed = False
    converts = False

    def __init__(self, name: str = "OctetString") -> None:
        self.name = name

    def decode(self, buf: Any, start: int, end: int) -> Any:
        return bytes(buf[start:end])

    def strict(self, buf: Any, start: int, end: int) -> Any:
        """Any octets are an OctetString."""
        return bytes(buf[start:end])

    def check(self, value: Any) -> bytes:
        if type(value) is bytes:
            return value
        if isinstance(value, (bytearray, memoryview)):
            return bytes(value)
        if isinstance(value, str):
            return value.encode("utf-8")
        raise TypeFault(f"{self.name} needs bytes, got {type(value).__name__}")

    def encode(self, value: Any) -> bytes:
        return self.check(value)


class UTF8StringType(OctetStringType):
    """UTF-8 text. RFC 6733 allows code points 1..0x7fffffff, so a NUL octet is invalid."""

    __slots__ = ()

    def __init__(self, name: str = "UTF8String") -> None:
        super().__init__(name)

    def decode(self, buf: Any, start: int, end: int) -> str:
        """The text as sent, never raising: octets that are not UTF-8 are kept (see `text_octets`)."""
        b = buf[start:end]
        try:
            return str(b, "utf-8")
        except UnicodeDecodeError:
            return str(b, "utf-8", "surrogateescape")

    def strict(self, buf: Any, start: int, end: int) -> str:
        """The text, or TypeFault 5004: not UTF-8, a NUL, or what the derived type refuses."""
        try:
            s = str(buf[start:end], "utf-8")
        except UnicodeDecodeError as exc:
            raise TypeFault(f"{self.name} is not valid UTF-8: {exc.reason}") from None
        if "\x00" in s:
            raise TypeFault(f"{self.name} contains a NUL octet")
        return self.validate_str(s)

    def validate_str(self, value: str) -> str:
        return value

    def check(self, value: Any) -> str:  # type: ignore[override]  # text, not octets: one wire code
        if type(value) is str and value.isascii() and "\x00" not in value:
            return self.validate_str(value) if value else value
        if type(value) is not str:
            if isinstance(value, str):
                value = str(value)
            else:
                raise TypeFault(f"{self.name} needs a str, got {type(value).__name__}")
        if not value:
            return value  # type: ignore[no-any-return]  # the empty example of a 5005 Failed-AVP
        if "\x00" in value:
            raise TypeFault(f"{self.name} contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TypeFault(f"{self.name} cannot be encoded as UTF-8: {exc.reason}") from None
        return self.validate_str(value)

    def encode(self, value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        return self.check(value).encode("utf-8")


def text_octets(value: str) -> bytes:
    """The octets a string read from the wire came from (its `data`, byte for byte).

    Reading a UTF8String, DiameterIdentity, DiameterURI or IPFilterRule decodes UTF-8 with
    Python's "surrogateescape" handler: valid text reads as itself (a NUL included), and each
    octet that is not part of valid UTF-8 reads as the lone surrogate U+DC00+octet, so no
    octet is lost or changed. Validation reports such values (5004); this undoes the mapping.
    """
    return value.encode("utf-8", "surrogateescape")


# DiameterIdentity is an FQDN or realm; IDNA makes it ASCII. Printable ASCII without
# spaces is accepted (underscores and other oddities occur in the field).
_IDENTITY = re.compile(r"[!-~]{1,255}").fullmatch


def _identity_ok(s: str) -> bool:
    """The same test as _IDENTITY, without the regex engine (it runs for every Origin-Host)."""
    return 0 < len(s) <= 255 and s.isascii() and s.isprintable() and " " not in s


class IdentityType(UTF8StringType):
    """DiameterIdentity: an FQDN or realm, ASCII in practice; compared case-insensitively."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("DiameterIdentity")

    def strict(self, buf: Any, start: int, end: int) -> str:
        try:
            s = str(buf[start:end], "ascii")
        except UnicodeDecodeError:
            raise TypeFault("DiameterIdentity is not ASCII") from None
        if not _identity_ok(s):
            raise TypeFault(f"invalid DiameterIdentity {s!r}")
        return s

    def validate_str(self, value: str) -> str:
        if not _identity_ok(value):
            raise TypeFault(f"invalid DiameterIdentity {value!r}")
        return value


# RFC 6733 4.3.1:  "aaa://" | "aaas://"  FQDN [ ":" port ] [ ";transport=" tcp|sctp|udp ]
# [ ";protocol=" diameter|radius|tacacs+ ]. An IPv6 literal in brackets and "tls" (RFC 3588
# era peers) are accepted as well; the two parameters may come in either order.
_URI = re.compile(
    r"aaas?://(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_])?)"
    r"(?::(\d{1,5}))?"
    r"(?:;transport=(?:tcp|sctp|udp|tls)(?:;protocol=(?:diameter|radius|tacacs\+))?"
    r"|;protocol=(?:diameter|radius|tacacs\+)(?:;transport=(?:tcp|sctp|udp|tls))?)?",
    re.IGNORECASE,
).fullmatch


class URIType(UTF8StringType):
    """DiameterURI: aaa[s]://FQDN[:port][;transport=..][;protocol=..] (RFC 6733 4.3.1)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("DiameterURI")

    def validate_str(self, value: str) -> str:
        m = _URI(value)
        if m is None or (m.group(1) is not None and int(m.group(1)) > 65535):
            raise TypeFault(f"invalid DiameterURI {value!r}")
        return value


_PORTS = re.compile(r"\d{1,5}(?:-\d{1,5})?(?:,\d{1,5}(?:-\d{1,5})?)*").fullmatch
_OPTIONS = {"frag", "ipoptions", "tcpoptions", "established", "setup", "tcpflags", "icmptypes"}
_OPTION_ARG = {"ipoptions", "tcpoptions", "tcpflags", "icmptypes"}


def _filter_address(words: list[str], i: int) -> int:
    """Parse `[!] (any|assigned|addr[/mask]) [ports]` from words[i]; return the next index."""
    if i < len(words) and words[i] == "!":
        i += 1
    if i >= len(words):
        raise ValueError("address missing")
    w = words[i]
    if w.startswith("!"):
        w = w[1:]
    if w not in ("any", "assigned"):
        ipaddress.ip_network(w, strict=False)
    i += 1
    if i < len(words) and words[i] != "to" and _PORTS(words[i]):
        for part in words[i].split(","):
            for p in part.split("-"):
                if int(p) > 65535:
                    raise ValueError(f"port {p} out of range")
        i += 1
    return i


def parse_ipfilter(value: str) -> None:
    """Check the RFC 6733 4.3.1 syntax: action dir proto from src [ports] to dst [ports] [options]."""
    w = value.split()
    if len(w) < 7 or w[0] not in ("permit", "deny") or w[1] not in ("in", "out"):
        raise ValueError("expected 'permit|deny in|out PROTO from SRC to DST'")
    if w[2] != "ip" and not (w[2].isdigit() and int(w[2]) <= 255):
        raise ValueError(f"protocol {w[2]!r} is neither 'ip' nor a number 0-255")
    if w[3] != "from":
        raise ValueError("'from' missing")
    i = _filter_address(w, 4)
    if i >= len(w) or w[i] != "to":
        raise ValueError("'to' missing")
    i = _filter_address(w, i + 1)
    while i < len(w):
        opt = w[i]
        if opt not in _OPTIONS:
            raise ValueError(f"unknown option {opt!r}")
        i += 2 if opt in _OPTION_ARG else 1
        if i > len(w):
            raise ValueError(f"option {opt!r} needs an argument")


class IPFilterRuleType(UTF8StringType):
    """IPFilterRule: 'permit|deny in|out proto from SRC to DST [options]' (RFC 6733 4.3.1)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("IPFilterRule")

    def validate_str(self, value: str) -> str:
        try:
            parse_ipfilter(value)
        except ValueError as exc:
            raise TypeFault(f"invalid IPFilterRule {value!r}: {exc}") from None
        return value


_FAMILY = Struct(">H")
_V4 = b"\x00\x01"
_V6 = b"\x00\x02"


class AddressType:
    """Address: 2-octet IANA family, then the address (IPv4 = 4 octets, IPv6 = 16)."""

    __slots__ = ()
    name = "Address"
    fixed = False
    converts = False

    def decode(self, buf: Any, start: int, end: int) -> Any:
        """The address, never raising: an IPv4/IPv6 family with the wrong length is kept as
        OtherAddress(family, data), data too short to hold a family as its bytes."""
        if end - start < 2:
            return bytes(buf[start:end])
        family = _FAMILY.unpack_from(buf, start)[0]
        data = bytes(buf[start + 2 : end])
        if family == 1 and len(data) == 4:
            return ipaddress.IPv4Address(data)
        if family == 2 and len(data) == 16:
            return ipaddress.IPv6Address(data)
        return OtherAddress(family, data)

    def strict(self, buf: Any, start: int, end: int) -> Any:
        """The address, or TypeFault 5014 for a length that its family does not allow."""
        if end - start < 2:
            raise TypeFault("Address shorter than its family field", 5014)
        family = _FAMILY.unpack_from(buf, start)[0]
        data = bytes(buf[start + 2 : end])
        if family == 1:
            if len(data) != 4:
                raise TypeFault(f"IPv4 Address needs 4 octets, got {len(data)}", 5014)
            return ipaddress.IPv4Address(data)
        if family == 2:
            if len(data) != 16:
                raise TypeFault(f"IPv6 Address needs 16 octets, got {len(data)}", 5014)
            return ipaddress.IPv6Address(data)
        return OtherAddress(family, data)

    def check(self, value: Any) -> Any:
        if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address, OtherAddress)):
            if isinstance(value, OtherAddress):
                return self._other(value.family, value.data)
            return value
        if isinstance(value, str):
            try:
                return ipaddress.ip_address(value)
            except ValueError:
                raise TypeFault(f"invalid IP address {value!r}") from None
        if isinstance(value, tuple) and len(value) == 2:
            return self._other(value[0], value[1])
        raise TypeFault(f"Address needs an IP address, got {type(value).__name__}")

    @staticmethod
    def _other(family: Any, data: Any) -> Any:
        if not isinstance(family, int) or not 0 <= family <= 0xFFFF:
            raise TypeFault(f"Address family {family!r} is not 0-65535")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeFault("Address data must be bytes")
        data = bytes(data)
        if family == 1 and len(data) == 4:
            return ipaddress.IPv4Address(data)
        if family == 2 and len(data) == 16:
            return ipaddress.IPv6Address(data)
        if family in (1, 2):
            raise TypeFault(f"family {family} needs {4 if family == 1 else 16} octets")
        return OtherAddress(family, data)

    def encode(self, value: Any) -> bytes:
        t = type(value)
        packed: bytes
        if t is ipaddress.IPv4Address:
            packed = value.packed
            return _V4 + packed
        if t is ipaddress.IPv6Address:
            packed = value.packed
            return _V6 + packed
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        value = self.check(value)
        if isinstance(value, OtherAddress):
            return _FAMILY.pack(value.family) + value.data
        packed = value.packed
        return (_V4 if value.version == 4 else _V6) + packed


class GroupedType:
    """Marker: grouped data is handled by the AVP layer (it holds nested AVPs)."""

    __slots__ = ()
    name = "Grouped"
    fixed = False
    converts = False


TYPES: dict[str, Any] = {
    "OctetString": OctetStringType(),
    "UTF8String": UTF8StringType(),
    "DiameterIdentity": IdentityType(),
    "DiameterURI": URIType(),
    "IPFilterRule": IPFilterRuleType(),
    "Integer32": FixedType("Integer32", "i", -(1 << 31), (1 << 31) - 1),
    "Integer64": FixedType("Integer64", "q", -(1 << 63), (1 << 63) - 1),
    "Unsigned32": FixedType("Unsigned32", "I", 0, (1 << 32) - 1),
    "Unsigned64": FixedType("Unsigned64", "Q", 0, (1 << 64) - 1),
    "Float32": FixedType("Float32", "f"),
    "Float64": FixedType("Float64", "d"),
    "Enumerated": FixedType("Enumerated", "i", -(1 << 31), (1 << 31) - 1),
    "Time": TimeType(),
    "Address": AddressType(),
    "Grouped": GroupedType(),
}
