"""The codec's typed errors: decoding raises these and nothing else."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .avp import Avp


class CodecError(Exception):
    """Base of every error the codec raises on bad input."""

    result_code: int = 5012

    def __init__(self, message: str, result_code: int | None = None) -> None:
        super().__init__(message)
        if result_code is not None:
            self.result_code = result_code
        self.error_message = message


class FramingError(CodecError):
    """The byte stream cannot be split into messages: the transport must close.

    Raised by `FrameReader.feed`, it carries what the stream held up to the fault: `frames`,
    the complete messages before it (not returned otherwise, and good to serve), and `rest`,
    the octets from the bad header on (a 5011 answer can be built from its first 20).
    Raised elsewhere both are empty.
    """

    result_code = 5015

    def __init__(self, message: str, result_code: int | None = None) -> None:
        super().__init__(message, result_code)
        self.frames: list[bytes] = []
        self.rest: bytes = b""


class AvpError(CodecError):
    """A message-level fault, with the Result-Code and Failed-AVP the answer must carry."""

    def __init__(
        self,
        result_code: int,
        message: str,
        failed_avp: Avp | None = None,
        header: Any = None,
    ) -> None:
        super().__init__(message, result_code)
        self.failed_avp = failed_avp
        self.header = header  # set by Message.decode when the fault is found during decode

    def __repr__(self) -> str:
        return f"AvpError({self.result_code}, {self.error_message!r})"


class DiameterError(Exception):
    """A fault answered with a Result-Code (RFC 6733 7.1), the AVPs for Failed-AVP and an
    Error-Message; `e_bit` defaults to set for protocol errors (3xxx)."""

    def __init__(
        self,
        result_code: int,
        message: str = "",
        failed_avps: list[Avp] | None = None,
        *,
        e_bit: bool | None = None,
    ) -> None:
        super().__init__(message or str(result_code))
        self.result_code = int(result_code)
        self.message = message
        self.failed_avps = list(failed_avps or [])
        self.e_bit = 3000 <= self.result_code < 4000 if e_bit is None else e_bit


def error_answer(request: Any, error: DiameterError, origin_host: str, origin_realm: str) -> bytes:
    """The error answer for `request` (bytes or Message): its ids, command and application,
    Session-Id (and Proxy-Info) copied, Result-Code, Origin-*, Failed-AVP, Error-Message and
    the E bit for 3xxx (RFC 6733 7.2). Raises CodecError when `request` has no header."""
    import struct

    from .message import Message

    if isinstance(request, Message):
        base = request
    else:
        raw = bytes(request)
        if len(raw) < 20:
            raise CodecError("no Diameter header to answer")
        flags_code, app, hbh, e2e = struct.unpack_from(">IIII", raw, 4)
        base = Message(code=flags_code & 0xFFFFFF, app_id=app, flags=flags_code >> 24,
                       hop_by_hop=hbh, end_to_end=e2e)  # fmt: skip
        sid = base._dict.avp("Session-Id")
        pos, end = 20, min(len(raw), int.from_bytes(raw[1:4], "big"))
        while pos + 8 <= end:  # the top-level Session-Id, if the AVPs frame up to it
            code, fl = struct.unpack_from(">II", raw, pos)
            n = fl & 0xFFFFFF
            if n < 8 or pos + n > end:
                break
            if code == sid.code and not fl & 0x80000000:
                try:
                    base.set("Session-Id", raw[pos + 8 : pos + n].decode())
                except (UnicodeDecodeError, ValueError):
                    pass
                break
            pos += (n + 3) & ~3
    ans = base.answer(
        error.result_code,
        origin_host=origin_host,
        origin_realm=origin_realm,
        error_message=error.message or None,
        failed_avp=error.failed_avps or None,
    )
    ans.is_error = error.e_bit
    return ans.encode()
