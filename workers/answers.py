"""Answers the worker runtime makes itself: an application failed, a request decodes badly
deeper down than the gateway looked, an application is not served here, or an answer is
unusable. They work from the raw request, so that even an undecodable one gets an answer
with its ids and Session-Id (RFC 6733 7.2)."""

from __future__ import annotations

import logging
import struct

from chargegw.codec import AvpError, Message, ResultCode
from chargegw.codec.errors import DiameterError

log = logging.getLogger("chargegw.worker")

_AVP_HDR = struct.Struct("!I I")
_HDR = struct.Struct("!IIIII")


def session_id(raw: bytes) -> str:
    """The Session-Id from raw bytes, for logs ('?' when there is none)."""
    try:
        pos, end = 20, min(len(raw), int.from_bytes(raw[1:4], "big"))
        while pos + 8 <= end:
            code, fl = _AVP_HDR.unpack_from(raw, pos)
            length = fl & 0xFFFFFF
            if length < 8:
                break
            if code == 263 and not fl & 0x80000000:
                return raw[pos + 8 : pos + length].decode("utf-8", "replace")
            pos += (length + 3) & ~3
    except Exception:
        pass
    return "?"


def _header_message(raw: bytes) -> Message:
    """A request with the same header and no AVPs but its Session-Id (to answer from)."""
    flags_code, app, hbh, e2e = struct.unpack_from("!IIII", raw, 4)
    m = Message(
        code=flags_code & 0xFFFFFF,
        app_id=app,
        flags=flags_code >> 24,
        hop_by_hop=hbh,
        end_to_end=e2e,
    )
    sid = session_id(raw)
    if sid != "?":
        m.set("Session-Id", sid)
    return m


def error_answer(
    raw: bytes,
    error: DiameterError | AvpError,
    origin_host: str,
    origin_realm: str,
    *,
    request: Message | None = None,
) -> bytes:
    """The answer to `raw` carrying `error`'s Result-Code, Error-Message and Failed-AVP.
    `request`, when the application had it decoded, lets the answer copy what the command
    needs (Message.answer); otherwise it is built from the header and Session-Id. A last
    resort built by hand covers a request whose header is all there is."""
    code = error.result_code or ResultCode.DIAMETER_UNABLE_TO_COMPLY
    text = error.error_message or None
    failed = getattr(error, "failed_avps", None) or getattr(error, "failed_avp", None)
    try:
        base = request if request is not None else _header_message(raw)
        return base.answer(
            code,
            origin_host=origin_host,
            origin_realm=origin_realm,
            error_message=text,
            failed_avp=failed,
        ).encode()
    except Exception:
        if failed:  # a Failed-AVP that will not encode must not cost the answer
            return error_answer(
                raw, DiameterError(code, text or ""), origin_host, origin_realm, request=request
            )
        log.exception("cannot build a %d answer", code)
        return minimal_answer(raw, code, origin_host, origin_realm)


def minimal_answer(raw: bytes, code: int, origin_host: str, origin_realm: str) -> bytes:
    """Last resort, built by hand: header, Result-Code, Origin-Host, Origin-Realm."""

    def avp(c: int, data: bytes) -> bytes:
        n = 8 + len(data)
        return struct.pack("!II", c, 0x40000000 | n) + data + b"\0" * (-n % 4)

    body = (
        avp(268, code.to_bytes(4, "big"))
        + avp(264, origin_host.encode())
        + avp(296, origin_realm.encode())
    )
    _vl, fc, app, hbh, e2e = _HDR.unpack_from(raw.ljust(20, b"\0"))
    flags = 0x40 | (0x20 if 3000 <= code < 4000 else 0)
    return _HDR.pack(1 << 24 | (20 + len(body)), flags << 24 | fc & 0xFFFFFF, app, hbh, e2e) + body
