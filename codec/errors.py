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
    """Base of every error that becomes a Diameter answer (contract 2 of issue 9).

    Placeholder in the peer branch only: the codec helper's class (same signature) wins at
    merge.
    """

    def __init__(
        self,
        result_code: int,
        message: str = "",
        failed_avps: list[Avp] | None = None,
        *,
        e_bit: bool | None = None,
    ) -> None:
        super().__init__(message or f"Result-Code {result_code}")
        self.result_code = result_code
        self.error_message = message
        self.failed_avps = failed_avps
        self.e_bit = 3000 <= result_code < 4000 if e_bit is None else e_bit
