"""RFC 6733 basic and derived AVP data types: bytes in, Python values out, and back.

Each type is a small object with `decode(buf, start, end)` and `encode(value) -> bytes`.
Decoding works on offsets into the message buffer so that fixed-size values are read with
one `unpack_from` and no slicing. Faults raise `TypeFault` with the Result-Code the answer
needs (5004 for a bad value, 5014 for a wrong length); the AVP layer turns it into AvpError.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
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


class FixedType:
    """A type whose data is one struct field (integers, floats, enumerations, time)."""

    __slots__ = ("name", "struct", "size", "lo", "hi")
    fixed = True

    def __init__(self, name: str, fmt: str, lo: float | None = None, hi: float | None = None) -> None:
        self.name = name
        self.struct = Struct(">" + fmt)
        self.size = self.struct.size
        self.lo = lo
        self.hi = hi

    def decode(self, buf: Any, start: int, end: int) -> Any:
        if end - start != self.size:
            raise TypeFault(f"{self.name} needs {self.size} octets, got {end - start}", 5014)
        return self.struct.unpack_from(buf, start)[0]

    def check(self, value: Any) -> Any:
        if self.lo is not None:
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeFault(f"{self.name} needs an int, got {type(value).__name__}")
            if not self.lo <= value <= self.hi:  # type: ignore[operator]
                raise TypeFault(f"{value} is out of range for {self.name}")
        elif not isinstance(value, (int, float)) or isinstance(value, bool):
            raise TypeFault(f"{self.name} needs a number, got {type(value).__name__}")
        return value

    def encode(self, value: Any) -> bytes:
        return self.struct.pack(self.check(value))


class TimeType(FixedType):
    """NTP seconds, always UTC; values with the top bit clear belong to the era after 2036."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("Time", "I")

    def decode(self, buf: Any, start: int, end: int) -> datetime:
        ntp = FixedType.decode(self, buf, start, end)
        if not ntp & 0x80000000:
            ntp += ERA
        return datetime.fromtimestamp(ntp - NTP_UNIX_OFFSET, UTC)

    def check(self, value: Any) -> int:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            unix = int(value.timestamp())
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            unix = int(value)
        else:
            raise TypeFault(f"Time needs a datetime or Unix seconds, got {type(value).__name__}")
        ntp = unix + NTP_UNIX_OFFSET
        if ntp >= ERA:
            ntp -= ERA
            if ntp & 0x80000000:
                raise TypeFault("Time is past 2104, beyond what the NTP format can carry")
        elif not ntp & 0x80000000:
            raise TypeFault("Time before 1968 cannot be told apart from the era after 2036")
        return ntp

    def encode(self, value: Any) -> bytes:
        return self.struct.pack(self.check(value))


class OctetStringType:
    __slots__ = ("name",)
    fixed = False

    def __init__(self, name: str = "OctetString") -> None:
        self.name = name

    def decode(self, buf: Any, start: int, end: int) -> Any:
        return bytes(buf[start:end])

    def encode(self, value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        if isinstance(value, str):
            return value.encode("utf-8")
        raise TypeFault(f"{self.name} needs bytes, got {type(value).__name__}")


class UTF8StringType(OctetStringType):
    __slots__ = ()

    def __init__(self, name: str = "UTF8String") -> None:
        super().__init__(name)

    def decode(self, buf: Any, start: int, end: int) -> str:
        try:
            return str(buf[start:end], "utf-8")
        except UnicodeDecodeError as exc:
            raise TypeFault(f"{self.name} is not valid UTF-8: {exc.reason}") from None

    def validate_str(self, value: str) -> str:
        return value

    def encode(self, value: Any) -> bytes:
        if isinstance(value, str):
            return self.validate_str(value).encode("utf-8")
        if isinstance(value, (bytes, bytearray, memoryview)):
            try:
                self.validate_str(str(value, "utf-8"))
            except UnicodeDecodeError as exc:
                raise TypeFault(f"{self.name} is not valid UTF-8: {exc.reason}") from None
            return bytes(value)
        raise TypeFault(f"{self.name} needs a str, got {type(value).__name__}")


class IdentityType(UTF8StringType):
    """DiameterIdentity: an FQDN or realm, ASCII in practice; compared case-insensitively."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("DiameterIdentity")

    def decode(self, buf: Any, start: int, end: int) -> str:
        return self.validate_str(UTF8StringType.decode(self, buf, start, end))

    def validate_str(self, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise TypeFault(f"invalid DiameterIdentity {value!r}")
        return value


_URI = re.compile(
    r"^aaas?://[^\s:;/]+(:\d{1,5})?"
    r"(;transport=(tcp|sctp|udp|tls))?(;protocol=(diameter|radius|tacacs\+))?"
    r"(;transport=(tcp|sctp|udp|tls))?$",
    re.IGNORECASE,
)


class URIType(UTF8StringType):
    """DiameterURI: aaa[s]://FQDN[:port][;transport=..][;protocol=..] (RFC 6733 4.3.1)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("DiameterURI")

    def decode(self, buf: Any, start: int, end: int) -> str:
        return self.validate_str(UTF8StringType.decode(self, buf, start, end))

    def validate_str(self, value: str) -> str:
        if not _URI.match(value):
            raise TypeFault(f"invalid DiameterURI {value!r}")
        return value


class IPFilterRuleType(UTF8StringType):
    """IPFilterRule: 'permit|deny in|out proto from SRC to DST [options]' (RFC 6733 4.3.1)."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("IPFilterRule")

    def decode(self, buf: Any, start: int, end: int) -> str:
        return self.validate_str(UTF8StringType.decode(self, buf, start, end))

    def validate_str(self, value: str) -> str:
        words = value.split()
        if (
            len(words) < 7
            or words[0] not in ("permit", "deny")
            or words[1] not in ("in", "out")
            or "from" not in words
            or "to" not in words
        ):
            raise TypeFault(f"invalid IPFilterRule {value!r}")
        return value


_FAMILY = Struct(">H")


class AddressType:
    """Address: 2-octet IANA family, then the address (IPv4 = 4 octets, IPv6 = 16)."""

    __slots__ = ()
    name = "Address"
    fixed = False

    def decode(self, buf: Any, start: int, end: int) -> Any:
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

    def encode(self, value: Any) -> bytes:
        if isinstance(value, str):
            try:
                value = ipaddress.ip_address(value)
            except ValueError:
                raise TypeFault(f"invalid IP address {value!r}") from None
        if isinstance(value, ipaddress.IPv4Address):
            return b"\x00\x01" + value.packed
        if isinstance(value, ipaddress.IPv6Address):
            return b"\x00\x02" + value.packed
        if isinstance(value, OtherAddress):
            return _FAMILY.pack(value.family) + bytes(value.data)
        if isinstance(value, tuple) and len(value) == 2:
            return _FAMILY.pack(value[0]) + bytes(value[1])
        raise TypeFault(f"Address needs an IP address, got {type(value).__name__}")


class GroupedType:
    """Marker: grouped data is handled by the AVP layer (it holds nested AVPs)."""

    __slots__ = ()
    name = "Grouped"
    fixed = False


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
