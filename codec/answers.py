"""The one builder of error answers (RFC 6733 7.2), for every layer that answers one.

`error_answer(request, error, origin_host, origin_realm)` takes the request as a Message or
as raw bytes, decodable or not (a 5014 for a broken AVP, a 5011 for a bad version, a 3xxx
the front end decides from the header alone), and a DiameterError, and returns the answer's
octets. Its shape:

* header: the request's code, application, hop-by-hop and end-to-end; P copied, R and T
  clear, E set when `error.e_bit` (protocol errors, 3xxx, by default);
* E bit set: the generic answer-message grammar, in its order: [Session-Id] {Origin-Host}
  {Origin-Realm} {Result-Code} [Origin-State-Id] [Error-Message] [Error-Reporting-Host]
  [Failed-AVP] *[Proxy-Info];
* E bit clear (4xxx, 5xxx): the command's own answer class, so that the AVPs its grammar
  requires are copied from the request where the request has them (for a CCA:
  Auth-Application-Id, CC-Request-Type, CC-Request-Number) and strict peers decode it.

Raw requests are read with a lenient scan of their top-level AVPs: everything before the
first malformed AVP is usable (Session-Id comes first). Building never raises, except
FramingError for fewer octets than a header: then there is nothing to answer to.
"""

from __future__ import annotations

from struct import Struct
from typing import Any

from .avp import Avp, _materialize, scan_into
from .constants import FLAG_ERROR, FLAG_PROXIABLE
from .dictionary import Dictionary, get_dictionary
from .errors import AvpError, DiameterError, FramingError
from .header import HEADER, append_avps
from .message import Message, class_for
from .peek import keys_for

# Never copied from the request by grammar: the answer sets them itself (or must not have them).
_NOT_COPIED = (
    "Session-Id",
    "Origin-Host",
    "Origin-Realm",
    "Result-Code",
    "Destination-Realm",
    "Destination-Host",
    "Error-Message",
    "Failed-AVP",
    "Error-Reporting-Host",
    "Experimental-Result",
    "Proxy-Info",
)
MAX_ERROR_MESSAGE = 200  # octets of Error-Message kept: a reason, not a reflection of input


class _Source:
    """The request's header and top-level AVPs, from a Message or from raw bytes."""

    __slots__ = ("code", "app_id", "flags", "hop_by_hop", "end_to_end", "_msg", "_buf", "_index")

    def __init__(self, request: bytes | bytearray | memoryview | Message) -> None:
        self._msg: Message | None = None
        self._buf = b""
        self._index: tuple[list[int], list[int]] = ([], [])
        if isinstance(request, Message):
            self._msg = request
            self.code = request.code
            self.app_id = request.app_id
            self.flags = request.flags
            self.hop_by_hop = request.hop_by_hop
            self.end_to_end = request.end_to_end
            return
        buf = bytes(request)
        if len(buf) < 20:
            raise FramingError(f"no header to answer ({len(buf)} octets)", 5015)
        vl, fc, self.app_id, self.hop_by_hop, self.end_to_end = HEADER.unpack_from(buf, 0)
        self.code = fc & 0xFFFFFF
        self.flags = fc >> 24
        length = vl & 0xFFFFFF
        end = length if 20 <= length <= len(buf) else len(buf)
        keys: list[int] = []
        offs: list[int] = []
        try:
            scan_into(buf, 20, end, keys, offs, -1, None)
        except AvpError:
            pass  # keep what came before the fault
        self._buf = buf
        self._index = (keys, offs)

    def copies(self, code: int, vendor: int, d: Dictionary) -> list[Avp]:
        """Independent copies of the request's top-level (code, vendor) AVPs."""
        msg = self._msg
        if msg is not None:
            try:
                return msg.copy_avps(code, vendor)
            except AvpError:  # a lazily indexed message broken further on
                return []
        key = code | vendor << 32
        keys, offs = self._index
        return _materialize(
            self._buf, [o for k, o in zip(keys, offs, strict=True) if k == key], None, d.avps
        )


def error_answer(
    request: bytes | bytearray | memoryview | Message,
    error: DiameterError,
    origin_host: str,
    origin_realm: str,
    *,
    error_reporting_host: str | None = None,
    origin_state_id: int | None = None,
    dictionary: Dictionary | None = None,
    extra: bytes = b"",
) -> bytes:
    """The error answer to `request` for `error` (see the module's docstring for its shape).
    `extra`: encoded (padded) AVPs put at its end as they are, e.g. a DOIC overload report
    (RFC 7683) on a 3004, in the same join as the rest (no second copy of the answer)."""
    d = dictionary or get_dictionary()
    failed = error.failed_avps
    if (
        not failed
        and error_reporting_host is None
        and origin_state_id is None
        and error.e_bit
        and not isinstance(request, Message)
        and len(request) >= 20
    ):
        # The common protocol error (3004 under overload, 3002, 3007): the generic grammar
        # assembled from octets, equal to what _build makes (tests/test_codec_answers_fast.py)
        # at a fraction of its cost, so that shedding load stays cheap.
        try:
            return _generic(request if type(request) is bytes else bytes(request),
                            int(error.result_code), error.error_message,
                            origin_host, origin_realm, d, extra)  # fmt: skip
        except Exception:  # noqa: BLE001 - a value that will not encode: the general path copes
            pass
    src = _Source(request)
    for attempt in range(3):
        try:
            ans = _build(
                src,
                error,
                origin_host,
                origin_realm,
                error_reporting_host,
                origin_state_id,
                d,
                failed=failed if attempt == 0 else [],
                by_grammar=attempt < 2,
            )
        except Exception:  # noqa: BLE001 - a value that will not encode: drop it and retry
            continue
        return append_avps(ans, extra) if extra else ans
    ans = _minimal(src, int(error.result_code), error.e_bit, origin_host, origin_realm)
    return append_avps(ans, extra) if extra else ans


# (id(dictionary), Origin-Host, Origin-Realm, Result-Code, text) -> _generic_parts(...)
_generic_cache: dict[tuple[int, str, str, int, str], tuple[int, bytes, int, bytes, bytes]] = {}
_AVP_HEAD = Struct(">II")
_HEAD_AVP = Struct(">II12xII")  # version|length, flags|code; the first AVP's code, flags|length
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")  # by length & 3: the zeros to a 4-octet boundary


def _generic(
    buf: bytes,
    code: int,
    text: str,
    origin_host: str,
    origin_realm: str,
    d: Dictionary,
    extra: bytes = b"",
) -> bytes:
    """An E-bit answer in the generic grammar's order: [Session-Id] {Origin-Host}
    {Origin-Realm} {Result-Code} [Error-Message] *[Proxy-Info]; the request's Session-Id and
    Proxy-Info AVPs copied as received (padding zeroed), read by a lenient walk of its
    top-level AVP headers that keeps what comes before a malformed one, as _Source does.

    The walk is skipped where it cannot find more (this is the shed path under overload):
    a Session-Id that is the first AVP, as RFC 6733 8.8 places it, is taken from there, and
    when the four octets of an AVP code still looked for (Proxy-Info's; Session-Id's when it
    was not first) occur nowhere after that, no AVP header can hold them: nothing to copy."""
    key = (id(d), origin_host, origin_realm, code, text)
    parts = _generic_cache.get(key)
    if parts is None:
        if len(_generic_cache) > 256:
            _generic_cache.clear()
        parts = _generic_cache[key] = _generic_parts(code, text, origin_host, origin_realm, d)
    sid_code, sid_octets, proxy_code, proxy_octets, middle = parts
    n = len(buf)
    if n >= 28:  # the header's first two words and the first AVP's header, in one read
        vl, fc, c, fl = _HEAD_AVP.unpack_from(buf, 0)
    else:
        vl, fc = _AVP_HEAD.unpack_from(buf, 0)
        c = fl = 0
    length = vl & 0xFFFFFF
    end = length if 20 <= length <= n else n
    size = fl & 0xFFFFFF
    if c == sid_code and not fl & 0x80000000 and size >= 8 and 20 + size <= end:
        head, pad = buf[20 : 20 + size], _PAD[size & 3]
        pos = 20 + ((size + 3) & ~3)
    else:
        head = pad = b""
        pos = 20
    flags = (((fc >> 24) & FLAG_PROXIABLE) | FLAG_ERROR) << 24 | (fc & 0xFFFFFF)
    find = buf.find
    if find(proxy_octets, pos, end) < 0 and (head or find(sid_octets, 20, end) < 0):
        # Nothing more to copy (the shed path): one join, no walk.
        total = 20 + len(head) + len(pad) + len(middle) + len(extra)
        return b"".join(
            (_AVP_HEAD.pack(0x01000000 | total, flags), buf[8:20], head, pad, middle, extra)
        )
    parts_out = [b"", buf[8:20], head, pad, middle]
    unpack = _AVP_HEAD.unpack_from
    while pos + 8 <= end:
        c, fl = unpack(buf, pos)
        size = fl & 0xFFFFFF
        if size < (12 if fl & 0x80000000 else 8) or pos + size > end:
            break
        if not fl & 0x80000000:  # both are base-protocol AVPs: no vendor
            if c == sid_code and not head:
                head = parts_out[2] = buf[pos : pos + size]
                parts_out[3] = _PAD[size & 3]
            elif c == proxy_code:
                parts_out += (buf[pos : pos + size], _PAD[size & 3])
        pos += (size + 3) & ~3
    parts_out.append(extra)
    parts_out[0] = _AVP_HEAD.pack(0x01000000 | (8 + sum(map(len, parts_out))), flags)
    return b"".join(parts_out)


def _generic_parts(
    code: int, text: str, origin_host: str, origin_realm: str, d: Dictionary
) -> tuple[int, bytes, int, bytes, bytes]:
    """Session-Id's and Proxy-Info's codes (as ints and as octets), and the encoded AVPs
    between them ({Origin-Host} {Origin-Realm} {Result-Code} [Error-Message]): the same for
    every shed request, so made once."""
    middle = (
        Avp.new("Origin-Host", origin_host, d).encode()
        + Avp.new("Origin-Realm", origin_realm, d).encode()
        + Avp.new("Result-Code", code, d).encode()
    )
    if text:
        # A reason may quote what a request held (read with surrogateescape): escaped, so
        # that it encodes as UTF-8 and the answer keeps its Session-Id.
        text = text[:MAX_ERROR_MESSAGE].encode("utf-8", "backslashreplace").decode("utf-8")
        middle += Avp.new("Error-Message", text, d).encode()
    sid, proxy = d.avp("Session-Id").code, d.avp("Proxy-Info").code
    return sid, sid.to_bytes(4, "big"), proxy, proxy.to_bytes(4, "big"), middle


def _build(
    src: _Source,
    error: DiameterError,
    origin_host: str,
    origin_realm: str,
    error_reporting_host: str | None,
    origin_state_id: int | None,
    d: Dictionary,
    *,
    failed: list[Avp],
    by_grammar: bool,
) -> bytes:
    e_bit = error.e_bit
    flags = (src.flags & FLAG_PROXIABLE) | (FLAG_ERROR if e_bit else 0)
    klass = Message if e_bit or not by_grammar else class_for(d, src.app_id, src.code, False)
    ans = klass(
        code=src.code,
        app_id=src.app_id,
        flags=flags,
        hop_by_hop=src.hop_by_hop,
        end_to_end=src.end_to_end,
        dictionary=d,
    )
    fields: dict[str, Any] = {}  # by attribute name, in answer-message order
    session, proxy_info = d.avp("Session-Id"), d.avp("Proxy-Info")
    sid = src.copies(session.code, session.vendor, d)
    if sid:
        fields["session_id"] = sid[0]
    fields["origin_host"] = origin_host
    fields["origin_realm"] = origin_realm
    fields["result_code"] = int(error.result_code)
    if origin_state_id is not None:
        fields["origin_state_id"] = origin_state_id
    text = error.error_message
    if text:
        fields["error_message"] = text[:MAX_ERROR_MESSAGE]
    if error_reporting_host is not None:
        fields["error_reporting_host"] = error_reporting_host
    if failed:
        fields["failed_avp"] = [a.copy() for a in failed]
    proxy = src.copies(proxy_info.code, proxy_info.vendor, d)
    if proxy:
        fields["proxy_info"] = proxy
    ans._fill(fields)  # a plain Message keeps this order; a command class its grammar's
    grammar = ans._grammar
    if grammar is not None:
        skip = keys_for(_NOT_COPIED, d)
        for rule in grammar.rules:
            r = rule.avp
            if rule.kind == "optional" or r is None or r.ikey in skip:
                continue
            for a in src.copies(r.code, r.vendor, d):
                ans.add(a)
                if rule.max == 1:
                    break
    return ans.encode()


def _minimal(src: _Source, code: int, e_bit: bool, origin_host: str, origin_realm: str) -> bytes:
    """Last resort: header, Result-Code, Origin-Host, Origin-Realm (the base protocol's
    AVPs, their codes from the base dictionary), packed by hand, for when even the
    dictionary's encoders failed."""

    def avp(name: str, data: bytes) -> bytes:
        n = 8 + len(data)
        c = base.by_name[name].code
        return HEADER.pack(c, 0x40000000 | n, 0, 0, 0)[:8] + data + b"\0" * (-n % 4)

    base = get_dictionary()
    body = (
        avp("Result-Code", code.to_bytes(4, "big"))
        + avp("Origin-Host", origin_host.encode()[:255])
        + avp("Origin-Realm", origin_realm.encode()[:255])
    )
    flags = (src.flags & FLAG_PROXIABLE) | (FLAG_ERROR if e_bit else 0)
    return (
        HEADER.pack(
            (1 << 24) | (20 + len(body)),
            (flags << 24) | src.code,
            src.app_id,
            src.hop_by_hop,
            src.end_to_end,
        )
        + body
    )
