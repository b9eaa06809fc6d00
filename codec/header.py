"""Message header and stream framing, shared by every transport (TCP, TLS, SCTP)."""

from __future__ import annotations

from struct import Struct
from typing import NamedTuple

from .errors import FramingError

DEFAULT_MAX_LENGTH = 1 << 20
HEADER_LENGTH = 20

# version(1) length(3) | flags(1) code(3) | app | hop-by-hop | end-to-end: the codec's one
# header layout. FrameReader reads only the first word (a frame may not have 20 octets yet).
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
    exc = header_fault(vl, max_length)
    if exc is not None:
        raise exc
    return Header(vl >> 24, vl & 0xFFFFFF, fc >> 24, fc & 0xFFFFFF, app, hbh, e2e)


def header_fault(vl: int, max_length: int) -> FramingError | None:
    """The fault in a header's first word (version, length), or None: the one check that
    FrameReader, parse_header, peek and Message.decode all make."""
    if vl >> 24 != 1:
        return FramingError(f"unsupported version {vl >> 24}", 5011)
    length = vl & 0xFFFFFF
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

    Linear in the bytes fed: a partial frame is kept as a list of chunks and joined once,
    when the frame is complete (joining on every read made a 1 MiB frame arriving in small
    reads cost O(n^2) copying).
    """

    __slots__ = ("_chunks", "_have", "_need", "max_length")

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self._chunks: list[bytes] = []
        self._have = 0  # octets in _chunks
        self._need = 0  # length of the frame at the front of _chunks, once its header is known
        self.max_length = max_length

    @property
    def buffered(self) -> int:
        return self._have

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """The complete messages now available. On a framing fault raises FramingError whose
        `.frames` holds the complete messages that preceded the fault in the stream (they are
        good: serve them before closing) and `.rest` the octets from the bad header on."""
        if not data:
            return []
        chunks = self._chunks
        if chunks:
            chunks.append(bytes(data))
            self._have += len(data)
            if self._have < (self._need or 4):
                return []  # the frame at the front is still incomplete: nothing to copy yet
            buf = b"".join(chunks)
            chunks.clear()
        else:
            buf = bytes(data)
        self._have = 0
        self._need = 0
        out: list[bytes] = []
        pos = 0
        end = len(buf)
        unpack = _U32.unpack_from
        max_length = self.max_length
        while end - pos >= 4:
            vl = unpack(buf, pos)[0]
            length = vl & 0xFFFFFF
            if vl >> 24 != 1 or length < HEADER_LENGTH or length & 3 or length > max_length:
                exc = header_fault(vl, max_length)
                assert exc is not None
                exc.frames = out
                exc.rest = buf[pos:]
                raise exc
            if end - pos < length:
                self._need = length
                break
            out.append(buf[pos : pos + length] if (pos or length != end) else buf)
            pos += length
        if pos < end:
            chunks.append(buf[pos:] if pos else buf)
            self._have = end - pos
        return out

    def eof(self) -> None:
        """The peer closed: anything left is a truncated frame."""
        if self._have:
            n = self._have
            self._chunks.clear()
            self._have = self._need = 0
            raise FramingError(f"connection closed inside a frame ({n} octets left)", 5015)


def append_avps(message: bytes, avps: bytes) -> bytes:
    """`message` with already encoded (padded) AVPs appended and its length field set."""
    n = len(message) + len(avps)
    return message[:1] + n.to_bytes(3, "big") + message[4:] + avps
