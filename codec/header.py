"""Message header and stream framing, shared by every transport (TCP, TLS, SCTP)."""

from __future__ import annotations

from struct import Struct
from typing import NamedTuple

from .errors import FramingError

DEFAULT_MAX_LENGTH = 1 << 20
HEADER_LENGTH = 20

# version(1) length(3) | flags(1) code(3) | app | hop-by-hop | end-to-end
HEADER = Struct(">IIIII")
_U32 = Struct(">I")


class Header(NamedTuple):
    version: int
    length: int
    flags: int
    code: int
    app_id: int
    hop_by_hop: int
    end_to_end: int


def parse_header(
    buf: bytes | bytearray | memoryview, max_length: int = DEFAULT_MAX_LENGTH
) -> Header:
    """Read and check the 20-octet header; the AVPs are not looked at."""
    if len(buf) < HEADER_LENGTH:
        raise FramingError(f"message shorter than a header ({len(buf)} octets)", 5015)
    vl, fc, app, hbh, e2e = HEADER.unpack_from(buf, 0)
    version = vl >> 24
    length = vl & 0xFFFFFF
    if version != 1:
        raise FramingError(f"unsupported version {version}", 5011)
    _check_length(length, max_length)
    return Header(version, length, fc >> 24, fc & 0xFFFFFF, app, hbh, e2e)


def _check_length(length: int, max_length: int) -> None:
    exc = _length_error(length, max_length)
    if exc is not None:
        raise exc


def _length_error(length: int, max_length: int) -> FramingError | None:
    if length < HEADER_LENGTH:
        return FramingError(f"message length {length} is under 20", 5015)
    if length & 3:
        return FramingError(f"message length {length} is not a multiple of 4", 5015)
    if length > max_length:
        return FramingError(f"message length {length} exceeds the maximum {max_length}", 5015)
    return None


class FrameReader:
    """Splits a byte stream into whole messages.

    Sans-IO: the transport feeds what it read and sends what comes out. A framing fault is
    unrecoverable on a stream (there is no way to find the next header), so it raises and the
    transport closes the connection.
    """

    __slots__ = ("_buf", "max_length")

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self._buf = b""
        self.max_length = max_length

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """The complete messages now available. On a framing fault raises FramingError whose
        `.frames` holds the complete messages that preceded the fault in the stream (they are
        good: serve them before closing) and `.rest` the octets from the bad header on."""
        buf = self._buf + data if self._buf else bytes(data)
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        unpack = _U32.unpack_from
        max_length = self.max_length
        while end - pos >= 4:
            vl = unpack(buf, pos)[0]
            length = vl & 0xFFFFFF
            if vl >> 24 != 1 or length < HEADER_LENGTH or length & 3 or length > max_length:
                self._buf = b""
                if vl >> 24 != 1:
                    exc = FramingError(f"unsupported version {vl >> 24}", 5011)
                else:
                    exc = _length_error(length, max_length)  # type: ignore[assignment]
                exc.frames = out
                exc.rest = buf[pos:]
                raise exc
            if end - pos < length:
                break
            out.append(buf[pos : pos + length] if (pos or length != end) else buf)
            pos += length
        self._buf = buf[pos:] if pos < end else b""
        return out

    def eof(self) -> None:
        """The peer closed: anything left is a truncated frame."""
        if self._buf:
            n = len(self._buf)
            self._buf = b""
            raise FramingError(f"connection closed inside a frame ({n} octets left)", 5015)
