"""Byte-level helpers of the load generator: patchable request templates and a lazy answer scan.

A generator written in Python must not be the bottleneck of what it measures, so each request
kind is encoded once through the codec (so it is exactly what the codec would send) and per
request only fixed-width fields are patched in place: hop-by-hop, end-to-end, the Session-Id
counter digits, the subscriber digits, the request number and the Test-AVP value. An answer is
read only as far as the checks need: its top-level AVP headers are walked and four values are
picked out, without building a Message.
"""

from __future__ import annotations

import struct
from typing import Any

from chargegw.codec import Message

_U32 = struct.Struct(">I")

SID_DIGITS = 12  # per-process prefix (2) + session counter (10)
SID_MARKER = b"S" * SID_DIGITS
SUB_MARK_CHAR = b"Z"

def avp_code(name: str) -> int:
    """An AVP's code from the dictionary (one source of truth), resolved once at import: the
    scans below compare plain ints, so the lookup costs nothing per answer."""
    from chargegw.codec import get_dictionary

    return int(get_dictionary().avp(name).code)


# AVP codes read in answers (all IETF, vendor 0)
AVP_SESSION_ID = avp_code("Session-Id")
AVP_RESULT_CODE = avp_code("Result-Code")
AVP_EXPERIMENTAL_RESULT = avp_code("Experimental-Result")
AVP_EXPERIMENTAL_RESULT_CODE = avp_code("Experimental-Result-Code")
AVP_CC_REQUEST_NUMBER = avp_code("CC-Request-Number")
AVP_ACCOUNTING_RECORD_NUMBER = avp_code("Accounting-Record-Number")

# DOIC (RFC 7683), read only in answers to a generator run with --doic
AVP_OC_OLR = avp_code("OC-OLR")
AVP_OC_SEQUENCE_NUMBER = avp_code("OC-Sequence-Number")
AVP_OC_REDUCTION_PERCENTAGE = avp_code("OC-Reduction-Percentage")
AVP_OC_VALIDITY_DURATION = avp_code("OC-Validity-Duration")

# freeDiameter's test_app (application, command, Test-AVP and its vendor): not in the
# dictionary, which describes standard applications; workers/testapp.py uses the same values.
TEST_APP = 16777215
TEST_CMD = 16777214
TEST_AVP = 16777215
TEST_VENDOR = 999999


def top_level_avps(buf: bytes | bytearray, start: int = 20) -> dict[tuple[int, int], int]:
    """(code, vendor) -> offset of the data of its first top-level occurrence."""
    out: dict[tuple[int, int], int] = {}
    pos, end = start, len(buf)
    while pos + 8 <= end:
        code, fl = struct.unpack_from(">II", buf, pos)
        length = fl & 0xFFFFFF
        vendor, hdr = 0, 8
        if fl & 0x80000000:
            vendor = _U32.unpack_from(buf, pos + 8)[0]
            hdr = 12
        if length < hdr:
            break
        out.setdefault((code, vendor), pos + hdr)
        pos += (length + 3) & ~3
    return out


class Template:
    """A pre-encoded request and the offsets of the fields patched per use."""

    __slots__ = (
        "step",
        "raw",
        "code",
        "app_id",
        "sid_off",
        "sub_offs",
        "sub_width",
        "num_off",
        "num_code",
        "echo_off",
        "final",
        "usage",
    )

    def __init__(self, step: str, msg: Message, *, sub_width: int, num_code: int | None,
                 echo: bool = False, final: bool = False, usage: bool = False) -> None:
        raw = msg.encode()
        self.step = step
        self.raw = raw
        self.code = msg.code
        self.app_id = msg.app_id
        self.final = final
        self.usage = usage  # carries Used-Service-Unit: the OCS debits it (money check)
        if raw.count(SID_MARKER) != 1:
            raise ValueError(f"{step}: the Session-Id marker must occur exactly once")
        self.sid_off = raw.index(SID_MARKER)
        marker = SUB_MARK_CHAR * sub_width
        self.sub_width = sub_width
        self.sub_offs: list[int] = []
        i = raw.find(marker)
        while i >= 0:
            self.sub_offs.append(i)
            i = raw.find(marker, i + sub_width)
        avps = top_level_avps(raw)
        self.num_code = num_code
        self.num_off = avps[(num_code, 0)] if num_code is not None else -1
        self.echo_off = avps[(TEST_AVP, TEST_VENDOR)] if echo else -1

    def render(self, hbh: int, e2e: int, sid: bytes, sub: bytes, number: int,
               echo: int) -> bytearray:
        """The request for one use: a copy of the template with its fixed-width fields set."""
        b = bytearray(self.raw)
        struct.pack_into(">II", b, 12, hbh, e2e)
        o = self.sid_off
        b[o : o + SID_DIGITS] = sid
        for o in self.sub_offs:
            b[o : o + self.sub_width] = sub
        if self.num_off >= 0:
            _U32.pack_into(b, self.num_off, number)
        if self.echo_off >= 0:
            _U32.pack_into(b, self.echo_off, echo)
        return b


class AnswerView:
    """What the checks read from an answer: a single pass over its top-level AVP headers."""

    __slots__ = ("session_id", "result_code", "number", "echo", "malformed", "olr")

    def __init__(self, frame: bytes, num_code: int) -> None:
        self.olr: tuple[int, int, int] | None = None  # DOIC: (sequence, reduction %, validity s)
        self.session_id: bytes | None = None
        self.result_code = 0
        self.number = -1
        self.echo = -1
        self.malformed = False
        pos, end = 20, len(frame)
        unpack = struct.unpack_from
        try:
            while pos < end:
                code, fl = unpack(">II", frame, pos)
                length = fl & 0xFFFFFF
                hdr = 12 if fl & 0x80000000 else 8
                nxt = pos + ((length + 3) & ~3)
                if length < hdr or pos + length > end:
                    self.malformed = True
                    return
                d = pos + hdr
                if hdr == 8:
                    if code == AVP_SESSION_ID:
                        self.session_id = frame[d : pos + length]
                    elif code == AVP_RESULT_CODE and length == 12:
                        self.result_code = _U32.unpack_from(frame, d)[0]
                    elif code == num_code and length == 12:
                        self.number = _U32.unpack_from(frame, d)[0]
                    elif code == AVP_EXPERIMENTAL_RESULT and not self.result_code:
                        self._experimental(frame, d, pos + length)
                    elif code == AVP_OC_OLR:
                        self._olr(frame, d, pos + length)
                elif code == TEST_AVP and length == 16 and _U32.unpack_from(frame, pos + 8)[
                    0
                ] == TEST_VENDOR:
                    self.echo = _U32.unpack_from(frame, d)[0]
                pos = nxt
        except struct.error:
            self.malformed = True

    def _olr(self, frame: bytes, pos: int, end: int) -> None:
        seq, reduction, validity = -1, 0, 30  # RFC 7683: validity defaults to 30 s
        while pos + 8 <= end:
            code, fl = struct.unpack_from(">II", frame, pos)
            length = fl & 0xFFFFFF
            hdr = 12 if fl & 0x80000000 else 8
            if length < hdr or pos + length > end:
                self.malformed = True
                return
            d = pos + hdr
            if hdr == 8 and code == AVP_OC_SEQUENCE_NUMBER and length == 16:
                seq = struct.unpack_from(">Q", frame, d)[0]
            elif hdr == 8 and code == AVP_OC_REDUCTION_PERCENTAGE and length == 12:
                reduction = min(100, _U32.unpack_from(frame, d)[0])
            elif hdr == 8 and code == AVP_OC_VALIDITY_DURATION and length == 12:
                validity = min(86400, _U32.unpack_from(frame, d)[0])
            pos += (length + 3) & ~3
        if seq >= 0:
            self.olr = (seq, reduction, validity)

    def _experimental(self, frame: bytes, pos: int, end: int) -> None:
        while pos + 8 <= end:
            code, fl = struct.unpack_from(">II", frame, pos)
            length = fl & 0xFFFFFF
            hdr = 12 if fl & 0x80000000 else 8
            if length < hdr:
                self.malformed = True
                return
            if code == AVP_EXPERIMENTAL_RESULT_CODE and length == hdr + 4:
                self.result_code = _U32.unpack_from(frame, pos + hdr)[0]
            pos += (length + 3) & ~3


def with_oc_supported(raw: bytes) -> bytes:
    """A request template with OC-Supported-Features (loss algorithm) appended: the
    generator then acts as a DOIC reacting node (RFC 7683)."""
    from chargegw.codec import Avp, append_avps

    return append_avps(raw, Avp.new("OC-Supported-Features", {"oc_feature_vector": 1}).encode())


def server_request_answer(frame: bytes, origin_host: str, origin_realm: str,
                          result_code: int, **avps: Any) -> tuple[Message, bytes]:
    """Decode a request the server sent us and build the answer RFC 6733 6.2 describes."""
    req = Message.decode(frame)
    ans = req.answer(result_code, origin_host=origin_host, origin_realm=origin_realm, **avps)
    return req, ans.encode()
