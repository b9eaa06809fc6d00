"""The stack's one error base, and the codec's typed errors (decoding raises these only).

`DiameterError` is what every layer raises when the answer must be an error answer: it
carries the Result-Code, the Error-Message text, the Failed-AVP content and whether the
answer gets the E bit (RFC 6733 7.2: protocol errors, 3xxx). `error_answer` (codec/answers.py)
turns one into the answer's bytes, so raising is all a layer has to do.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .avp import Avp


class DiameterError(Exception):
    """An error that is answered on the wire: Result-Code, Error-Message, Failed-AVP, E bit.

    `failed_avps` are the AVPs one Failed-AVP carries (RFC 6733 7.5: one Failed-AVP, one or
    more AVPs inside). `e_bit` defaults to "the code is a protocol error" (3xxx, 7.1.3).
    """

    result_code: int = 5012

    def __init__(
        self,
        result_code: int,
        message: str = "",
        failed_avps: Iterable[Avp] | None = None,
        *,
        e_bit: bool | None = None,
    ) -> None:
        super().__init__(message or f"Result-Code {int(result_code)}")
        self.result_code = result_code
        self.error_message = message
        self.failed_avps: list[Avp] = list(failed_avps) if failed_avps else []
        self._e_bit = e_bit

    @property
    def e_bit(self) -> bool:
        """True when the answer must carry the E bit (3xxx unless set otherwise)."""
        e = self._e_bit
        return 3000 <= self.result_code < 4000 if e is None else e

    @e_bit.setter
    def e_bit(self, on: bool | None) -> None:
        self._e_bit = on

    @property
    def failed_avp(self) -> Avp | None:
        """The first Failed-AVP entry (the codec's faults name exactly one)."""
        return self.failed_avps[0] if self.failed_avps else None

    @failed_avp.setter
    def failed_avp(self, avp: Avp | None) -> None:
        self.failed_avps = [] if avp is None else [avp]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({int(self.result_code)}, {self.error_message!r})"


class CodecError(DiameterError):
    """Base of every error the codec raises on bad input (5012 unless a subclass says)."""

    def __init__(self, message: str, result_code: int | None = None) -> None:
        super().__init__(type(self).result_code if result_code is None else result_code, message)


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
        if failed_avp is not None:
            self.failed_avps = [failed_avp]
        self.header = header  # set by Message.decode when the fault is found during decode
