"""The peer layer's errors, and its calls into the codec's one error-answer builder.

Every error answer the Node or the gateway sends is built by `chargegw.codec.error_answer`
(RFC 6733 7.2: E bit and the generic answer-message grammar for 3xxx; the command's own
answer class with its required AVPs copied for 4xxx/5xxx, so strict peers such as OTP decode
it). It works from a decoded message or from raw bytes that would not decode, and never raises
for a request with a whole header.
"""

from __future__ import annotations

from chargegw.codec import (
    Avp,
    CodecError,
    DiameterError,
    FramingError,
    Message,
)
from chargegw.codec import error_answer as codec_error_answer
from chargegw.codec.constants import ResultCode


class ProtocolError(DiameterError):
    """Raised by a handler (or the Node) to answer with this Result-Code and no more.
    `extra`: encoded (padded) AVPs appended to that answer, e.g. a DOIC overload report
    (RFC 7683) on a 3004 the handler sheds."""

    def __init__(
        self,
        result_code: int,
        message: str | None = None,
        failed_avp: Avp | list[Avp] | None = None,
        *,
        extra: bytes = b"",
    ) -> None:
        failed = [failed_avp] if isinstance(failed_avp, Avp) else failed_avp
        super().__init__(result_code, message or "", failed)
        self.error_message = message  # type: ignore[assignment]  # None: no Error-Message
        self.extra = extra


class RequestError(DiameterError):
    """A request got no answer: no route (3002/3003), the peer went away, or a timeout."""

    def __init__(self, result_code: int, message: str) -> None:
        super().__init__(result_code, message)


class RequestTimeout(RequestError, TimeoutError):
    """No answer within the request's timeout (result_code 3002, as for an undeliverable one).

    Also a TimeoutError, so code ported from python-diameter (which raises TimeoutError
    from `send_request`) catches it unchanged; DiameterError stays the first base."""

    def __init__(self, message: str) -> None:
        super().__init__(ResultCode.DIAMETER_UNABLE_TO_DELIVER, message)


def build_error_answer(
    request: Message | bytes,
    result_code: int,
    origin_host: str,
    origin_realm: str,
    error_message: str | None = None,
    failed_avp: Avp | list[Avp] | None = None,
) -> bytes | None:
    """The peer layer's one call for an error answer's bytes (None: not even a header)."""
    return error_answer_bytes(
        request,
        result_code,
        origin_host=origin_host,
        origin_realm=origin_realm,
        error_message=error_message,
        failed_avp=failed_avp,
    )


def is_protocol_error(result_code: int) -> bool:
    return 3000 <= result_code < 4000


def error_answer_bytes(
    request: Message | bytes,
    result_code: int,
    *,
    origin_host: str,
    origin_realm: str,
    error_message: str | None = None,
    failed_avp: Avp | list[Avp] | None = None,
    error_reporting_host: str | None = None,
    origin_state_id: int | None = None,
) -> bytes | None:
    """The error answer to `request` (a decoded Message or its raw bytes), encoded by the
    codec's one builder (`chargegw.codec.error_answer`); None only without a whole header."""
    failed = [failed_avp] if isinstance(failed_avp, Avp) else failed_avp
    err = DiameterError(result_code, error_message or "", failed)
    return encode_error(request, err, origin_host, origin_realm,
                        error_reporting_host=error_reporting_host,
                        origin_state_id=origin_state_id)  # fmt: skip


def encode_error(
    request: Message | bytes,
    err: DiameterError,
    origin_host: str,
    origin_realm: str,
    *,
    error_reporting_host: str | None = None,
    origin_state_id: int | None = None,
) -> bytes | None:
    """The error answer for an error object already made (a handler's ProtocolError): what
    `error_answer_bytes` does once it has made one; None only without a whole header."""
    try:
        return codec_error_answer(request, err, origin_host, origin_realm,
                                  error_reporting_host=error_reporting_host,
                                  origin_state_id=origin_state_id)  # fmt: skip
    except FramingError:
        return None


def error_answer(
    request: Message | bytes,
    result_code: int,
    *,
    origin_host: str,
    origin_realm: str,
    error_message: str | None = None,
    failed_avp: Avp | list[Avp] | None = None,
    error_reporting_host: str | None = None,
    origin_state_id: int | None = None,
) -> Message:
    """The same answer as a Message, for handlers that want to add to it before sending."""
    raw = error_answer_bytes(
        request,
        result_code,
        origin_host=origin_host,
        origin_realm=origin_realm,
        error_message=error_message,
        failed_avp=failed_avp,
        error_reporting_host=error_reporting_host,
        origin_state_id=origin_state_id,
    )
    if raw is None:
        raise ValueError("no header to answer")
    return Message.decode(raw)


def answer_for_codec_error(
    request: Message | bytes, exc: CodecError, *, origin_host: str, origin_realm: str
) -> bytes | None:
    """The answer for a decode/validation fault: its Result-Code, Failed-AVP and text."""
    try:
        return codec_error_answer(request, exc, origin_host, origin_realm)
    except FramingError:
        return None
