"""The one place where protocol-error (3xxx) and application-error (5xxx) answers are built.

The Node uses it for the errors it detects itself and the gateway reuses it, so every error
answer on the wire has the same shape (RFC 6733 7.2):

* 3xxx: E bit set, the generic answer-message grammar: [Session-Id] {Origin-Host}
  {Origin-Realm} {Result-Code} [Error-Message] [Error-Reporting-Host] [Failed-AVP] *[Proxy-Info].
* 5xxx (and 4xxx): E bit clear, the command's own answer class, with the AVPs its grammar
  requires copied from the request where the request has them (for a CCA: Auth-Application-Id,
  CC-Request-Type, CC-Request-Number), so strict peers such as OTP can decode it.

It works even when the request could not be decoded: the answer is then built from the 20-octet
header alone. Building an error answer never raises.
"""

from __future__ import annotations

import logging
import struct

from chargegw.codec import Avp, AvpError, CodecError, Message, get_dictionary
from chargegw.codec.constants import FLAG_ERROR, FLAG_PROXIABLE, FLAG_REQUEST, ResultCode
from chargegw.codec.errors import DiameterError

log = logging.getLogger("chargegw.peer")

_HDR = struct.Struct(">IIIII")
_SESSION_ID = 263
_SKIP_COPY = frozenset(
    {
        (263, 0),  # Session-Id (msg.answer copies it)
        (264, 0),  # Origin-Host
        (296, 0),  # Origin-Realm
        (268, 0),  # Result-Code
        (283, 0),  # Destination-Realm
        (293, 0),  # Destination-Host
        (281, 0),  # Error-Message
        (279, 0),  # Failed-AVP
        (294, 0),  # Error-Reporting-Host
        (297, 0),  # Experimental-Result
        (284, 0),  # Proxy-Info (msg.answer copies it)
    }
)


class ProtocolError(DiameterError):
    """Raised by a handler (or the Node) to answer with this Result-Code and no more."""

    def __init__(
        self,
        result_code: int,
        message: str | None = None,
        failed_avp: Avp | list[Avp] | None = None,
    ) -> None:
        failed = [failed_avp] if isinstance(failed_avp, Avp) else failed_avp
        super().__init__(result_code, message or "", failed)
        self.error_message = message  # type: ignore[assignment]  # None: no Error-Message
        self.failed_avp = failed_avp


class RequestError(DiameterError):
    """A request got no answer: no route (3002/3003), the peer went away, or a timeout."""

    def __init__(self, result_code: int, message: str) -> None:
        super().__init__(result_code, message)


class RequestTimeout(RequestError):
    """No answer within the request's timeout (result_code 3002, as for an undeliverable one)."""

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
    """The peer layer's one call for an error answer's bytes (None: not even a header).

    Contract 3 of issue 9: once the codec's `error_answer(request, DiameterError(...),
    origin_host, origin_realm)` lands, this body becomes that one call.
    """
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
    """The error answer to `request` (a decoded Message, or the raw bytes of one)."""
    msg: Message | None = request if isinstance(request, Message) else None
    if msg is None and isinstance(request, (bytes, bytearray, memoryview)):
        try:
            msg = Message.decode(bytes(request))
        except CodecError:
            msg = None
    if msg is not None:
        try:
            return _from_message(
                msg,
                result_code,
                origin_host,
                origin_realm,
                error_message,
                failed_avp,
                error_reporting_host,
                origin_state_id,
            )
        except Exception as exc:  # a request whose AVPs will not decode: fall back
            log.debug("error answer from header only (%s)", exc)
    raw = request.encode() if isinstance(request, Message) else bytes(request)
    return _from_header(
        raw,
        result_code,
        origin_host,
        origin_realm,
        error_message,
        failed_avp,
        error_reporting_host,
        origin_state_id,
    )


def error_answer_bytes(request: Message | bytes, result_code: int, **kw: object) -> bytes | None:
    """Like error_answer, encoded; None only if not even a header can be read."""
    try:
        return error_answer(request, result_code, **kw).encode()  # type: ignore[arg-type]
    except Exception as exc:
        log.warning("cannot build a %d answer: %s", result_code, exc)
        if kw.get("failed_avp") is not None:
            kw = dict(kw, failed_avp=None)
            try:
                return error_answer(request, result_code, **kw).encode()  # type: ignore[arg-type]
            except Exception:
                return None
        return None


def answer_for_codec_error(
    request: Message | bytes, exc: CodecError, *, origin_host: str, origin_realm: str
) -> bytes | None:
    """The answer for a decode/validation fault: its Result-Code, Failed-AVP and text."""
    failed = exc.failed_avp if isinstance(exc, AvpError) else None
    return build_error_answer(
        request, exc.result_code, origin_host, origin_realm, str(exc)[:200], failed
    )


def _from_message(
    req: Message,
    result_code: int,
    origin_host: str,
    origin_realm: str,
    error_message: str | None,
    failed_avp: Avp | list[Avp] | None,
    error_reporting_host: str | None,
    origin_state_id: int | None,
) -> Message:
    if is_protocol_error(result_code):
        return _generic(
            req.code,
            req.app_id,
            req.flags,
            req.hop_by_hop,
            req.end_to_end,
            result_code,
            origin_host,
            origin_realm,
            error_message,
            failed_avp,
            error_reporting_host,
            origin_state_id,
            session=req.find_code(_SESSION_ID),
            proxy_info=req.find_code(284),
        )
    ans = req.answer(
        result_code,
        origin_host=origin_host,
        origin_realm=origin_realm,
        error_message=error_message,
        failed_avp=failed_avp,
    )
    grammar = ans._grammar
    if grammar is not None:
        for rule in grammar.rules:
            if rule.kind == "optional" or rule.avp is None or rule.avp.key in _SKIP_COPY:
                continue
            for a in req.copy_avps(rule.avp.code, rule.avp.vendor):
                ans.add(a)
                if rule.max == 1:
                    break
    if error_reporting_host is not None:
        ans.set("Error-Reporting-Host", error_reporting_host)
    if origin_state_id is not None:
        ans.set("Origin-State-Id", origin_state_id)
    return ans


def _from_header(
    raw: bytes,
    result_code: int,
    origin_host: str,
    origin_realm: str,
    error_message: str | None,
    failed_avp: Avp | list[Avp] | None,
    error_reporting_host: str | None,
    origin_state_id: int | None,
) -> Message:
    if len(raw) < 20:
        raise ValueError("no header to answer")
    _, fc, app, hbh, e2e = _HDR.unpack_from(raw, 0)
    return _generic(
        fc & 0xFFFFFF,
        app,
        fc >> 24,
        hbh,
        e2e,
        result_code,
        origin_host,
        origin_realm,
        error_message,
        failed_avp,
        error_reporting_host,
        origin_state_id,
        session=_scrape_session_id(raw),
        proxy_info=[],
    )


def _generic(
    code: int,
    app_id: int,
    req_flags: int,
    hbh: int,
    e2e: int,
    result_code: int,
    origin_host: str,
    origin_realm: str,
    error_message: str | None,
    failed_avp: Avp | list[Avp] | None,
    error_reporting_host: str | None,
    origin_state_id: int | None,
    *,
    session: list[Avp],
    proxy_info: list[Avp],
) -> Message:
    """answer-message: a plain Message so AVPs stay in the order written here."""
    flags = req_flags & FLAG_PROXIABLE & ~FLAG_REQUEST
    if is_protocol_error(result_code):
        flags |= FLAG_ERROR
    d = get_dictionary()
    ans = Message(
        code=code, app_id=app_id, flags=flags, hop_by_hop=hbh, end_to_end=e2e, dictionary=d
    )
    if session:
        ans.add(session[0].copy())
    ans.add("Origin-Host", origin_host)
    ans.add("Origin-Realm", origin_realm)
    ans.add("Result-Code", result_code)
    if origin_state_id is not None:
        ans.add("Origin-State-Id", origin_state_id)
    if error_message:
        ans.add("Error-Message", error_message)
    if error_reporting_host is not None:
        ans.add("Error-Reporting-Host", error_reporting_host)
    if failed_avp is not None:
        inner = failed_avp if isinstance(failed_avp, list) else [failed_avp]
        ans.add("Failed-AVP", [a.copy() for a in inner])
    for a in proxy_info:
        ans.add(a.copy())
    return ans


def _scrape_session_id(raw: bytes) -> list[Avp]:
    """Session-Id from an otherwise undecodable message, if it is the first AVP (as it should be)."""
    if len(raw) < 28:
        return []
    code, fl = struct.unpack_from(">II", raw, 20)
    length = fl & 0xFFFFFF
    if code != _SESSION_ID or fl >> 24 & 0x80 or length < 8 or 20 + length > len(raw):
        return []
    value = raw[28 : 20 + length]
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return []
    return [Avp.new("Session-Id", text)]
