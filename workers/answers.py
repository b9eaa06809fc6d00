"""What the worker runtime needs to answer a request itself: the Session-Id for its logs
(through the codec's one peek) and the error answer (through the codec's one builder,
`chargegw.codec.error_answer`), for an application that failed, a request that decodes
badly deeper down than the gateway looked, or an application not served here."""

from __future__ import annotations

import logging
import struct

from chargegw.codec import DiameterError, Message, error_answer, peek
from chargegw.ipc import protocol as pp

log = logging.getLogger("chargegw.worker")

_HDR = struct.Struct("!IIIII")


def session_id(raw: bytes) -> str:
    """The Session-Id from raw bytes, for logs ('?' when there is none or no framing)."""
    try:
        sid = peek(raw).session_id
    except Exception:
        return "?"
    return "?" if sid is None else sid.decode("utf-8", "replace")


def answer_error(
    req: pp.Request,
    error: DiameterError,
    origin_host: str,
    origin_realm: str,
    request: Message | None = None,
) -> bytes:
    """The error answer to `req`: from the decoded request when the application had it
    (the command's own answer AVPs are then copied), else from its raw bytes. A request
    without a whole header (the gateway never sends one) is answered from the envelope."""
    try:
        return error_answer(
            request if request is not None else req.raw, error, origin_host, origin_realm
        )
    except Exception:
        log.exception("cannot build a %d answer from the request", error.result_code)
        header = _HDR.pack(0x01000014, 0x80000000 | req.cmd, req.app, req.hbh, 0)
        return error_answer(header, error, origin_host, origin_realm)
