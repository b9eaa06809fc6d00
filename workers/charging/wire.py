"""A narrow fast path for Credit-Control: read the CCR fields the OCS needs straight from the
wire and write the CCA bytes, for the runtime's `handle_raw` hook.

Everything here is checked against the codec (tests/test_charging_wire.py: the bytes this
module writes equal what the codec's `answer()` builds from the same content). Anything
outside the common shapes (Proxy-Info, CC-Money, a malformed or truncated AVP) returns None
from `parse_ccr`, and the request takes the full codec path instead. So does a request with
an AVP the dictionary does not know and the M bit set, at any depth (RFC 6733 4.1): the codec
path answers it 5001 with that AVP in Failed-AVP. AVP codes, flags, types and the placement
order all come from the codec (public API only).
"""

from __future__ import annotations

import struct
from typing import Any

from chargegw.codec import Avp, commands, get_dictionary

_II = struct.Struct("!II")
_III = struct.Struct("!III")
_I = struct.Struct("!I")
_Q = struct.Struct("!Q")
_q = struct.Struct("!q")
_i = struct.Struct("!i")
_HDR = struct.Struct("!IIIII")

CMD_CCR = 272
APP_CC = 4
FLAG_R, FLAG_P, FLAG_E = 0x80, 0x40, 0x20
AVP_V, AVP_M = 0x80000000, 0x40000000  # in the AVP's flags-and-length word
MAX_DEPTH = 16  # grouped AVPs nested deeper than this take the codec path


class _Known:
    """The codec dictionary's AVPs as `code | vendor << 32` -> is it Grouped, rebuilt when the
    dictionary grows (extra dictionary files load at start-up)."""

    __slots__ = ("size", "grouped")

    def __init__(self) -> None:
        self.size = -1
        self.grouped: dict[int, bool] = {}

    def get(self) -> dict[int, bool]:
        avps = get_dictionary().avps
        if len(avps) != self.size:
            self.grouped = {d.ikey: d.type == "Grouped" for d in avps.values()}
            self.size = len(avps)
        return self.grouped


_known = _Known()


class Units:
    """The unit AVPs of one RSU or USU (None = absent)."""

    __slots__ = (
        "cc_time",
        "cc_total_octets",
        "cc_input_octets",
        "cc_output_octets",
        "cc_service_specific_units",
        "money",
    )

    def __init__(self) -> None:
        self.cc_time: int | None = None
        self.cc_total_octets: int | None = None
        self.cc_input_octets: int | None = None
        self.cc_output_octets: int | None = None
        self.cc_service_specific_units: int | None = None
        self.money: int | None = None  # CC-Money Value-Digits, only to reject negatives

    @classmethod
    def of(cls, group: Any) -> Units | None:
        """From a codec Group (the codec path)."""
        if group is None:
            return None
        u = cls()
        u.cc_time = group.cc_time
        u.cc_total_octets = group.cc_total_octets
        u.cc_input_octets = group.cc_input_octets
        u.cc_output_octets = group.cc_output_octets
        u.cc_service_specific_units = group.cc_service_specific_units
        money = group.cc_money
        if money is not None and money.unit_value is not None:
            u.money = money.unit_value.value_digits
        return u


class Svc:
    """One MSCC, or the single top-level service."""

    __slots__ = ("rating_group", "service_identifier", "rsu", "usus")

    def __init__(
        self, rg: int | None, sid: int | None, rsu: Units | None, usus: list[Units]
    ) -> None:
        self.rating_group = rg
        self.service_identifier = sid
        self.rsu = rsu
        self.usus = usus


class Parsed:
    """A CCR reduced to what the OCS reads; built from the wire or from a codec Message."""

    __slots__ = (
        "session_id", "session_avp", "origin_host", "origin_realm", "destination_realm",
        "auth_application_id", "service_context_id", "cc_request_type", "cc_request_number",
        "requested_action", "subscriptions", "mscc", "services", "hbh", "e2e", "flags", "ref",
    )  # fmt: skip

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.session_avp = b""
        self.origin_host: str | None = None
        self.origin_realm: str | None = None
        self.destination_realm: str | None = None
        self.auth_application_id: int | None = None
        self.service_context_id: str | None = None
        self.cc_request_type: int | None = None
        self.cc_request_number: int | None = None
        self.requested_action: int | None = None
        self.subscriptions: list[tuple[int, str]] = []
        self.mscc = False
        self.services: list[Svc] = []
        self.hbh = self.e2e = self.flags = 0
        self.ref: str | None = None  # CC-Correlation-Id: the debit event a refund names


class _Skip(Exception):
    pass


def _unknown_m(buf: bytes, off: int, fl: int, known: dict[int, bool]) -> bool:
    """Whether the AVP at `off` (its flags-and-length word `fl`) is one the dictionary does
    not know with the M bit set, or a known Grouped AVP that holds one at any depth."""
    code = _I.unpack_from(buf, off)[0]
    if fl & AVP_V:
        grouped = known.get(code | _I.unpack_from(buf, off + 8)[0] << 32)
        start = off + 12
    else:
        grouped = known.get(code)
        start = off + 8
    if grouped is None:
        return bool(fl & AVP_M)
    return grouped and _unknown_in(buf, start, off + (fl & 0xFFFFFF), known, 1)


def _unknown_in(buf: bytes, pos: int, end: int, known: dict[int, bool], depth: int) -> bool:
    """`_unknown_m` over the members of a group (buf[pos:end]); _Skip on a malformed one."""
    if depth > MAX_DEPTH:
        raise _Skip
    unpack = _II.unpack_from
    while pos < end:
        if end - pos < 8:
            raise _Skip
        code, fl = unpack(buf, pos)
        n = fl & 0xFFFFFF
        if fl & AVP_V:
            if n < 12 or pos + n > end:
                raise _Skip
            grouped = known.get(code | _I.unpack_from(buf, pos + 8)[0] << 32)
            head = 12
        else:
            if n < 8 or pos + n > end:
                raise _Skip
            grouped = known.get(code)
            head = 8
        if grouped is None:
            if fl & AVP_M:
                return True
        elif grouped and _unknown_in(buf, pos + head, pos + n, known, depth + 1):
            return True
        pos += (n + 3) & ~3
    return False


def _scan(
    buf: bytes, pos: int, end: int, known: dict[int, bool]
) -> list[tuple[int, int, int, int]]:
    """(code, vendor, value start, value end) of each AVP in buf[pos:end]; _Skip (the codec
    path) when one of them is an unknown AVP with the M bit."""
    out = []
    unpack = _II.unpack_from
    while pos < end:
        if end - pos < 8:
            raise _Skip
        code, fl = unpack(buf, pos)
        length = fl & 0xFFFFFF
        if fl & 0x80000000:
            if length < 12 or pos + length > end:
                raise _Skip
            out.append((code, _I.unpack_from(buf, pos + 8)[0], pos + 12, pos + length))
        else:
            if length < 8 or pos + length > end:
                raise _Skip
            out.append((code, 0, pos + 8, pos + length))
        if (code != 450 and code != 444 or fl & 0x80000000) and _unknown_m(buf, pos, fl, known):
            raise _Skip  # an unknown M-bit AVP beside Subscription-Id-Type/-Data
        pos += (length + 3) & ~3
    if pos != end:
        raise _Skip
    return out


def _u32(buf: bytes, s: int, e: int) -> int:
    if e - s != 4:
        raise _Skip
    return _I.unpack_from(buf, s)[0]


_UNIT_CODES = {420: "cc_time", 421: "cc_total_octets", 412: "cc_input_octets",
               414: "cc_output_octets", 417: "cc_service_specific_units"}  # fmt: skip


def _units(buf: bytes, pos: int, end: int, known: dict[int, bool]) -> Units:
    """An RSU/USU, scanned in place (what `_scan` checks, without building its list)."""
    u = Units()
    unpack = _II.unpack_from
    while pos < end:
        if end - pos < 8:
            raise _Skip
        code, fl = unpack(buf, pos)
        length = fl & 0xFFFFFF
        ve = pos + length
        if fl & 0x80000000:  # vendor-specific: not ours
            if length < 12 or ve > end:
                raise _Skip
            if _unknown_m(buf, pos, fl, known):
                raise _Skip
        else:
            if length < 8 or ve > end:
                raise _Skip
            if code == 420:
                if length != 12:
                    raise _Skip
                u.cc_time = _I.unpack_from(buf, pos + 8)[0]
            elif code in _UNIT_CODES:
                if length != 16:
                    raise _Skip
                setattr(u, _UNIT_CODES[code], _Q.unpack_from(buf, pos + 8)[0])
            elif code == 413:
                raise _Skip  # CC-Money: the codec path judges it
            elif _unknown_m(buf, pos, fl, known):
                raise _Skip
        pos += (length + 3) & ~3
    if pos != end:
        raise _Skip
    return u


def parse_ccr(raw: bytes) -> Parsed | None:
    """The CCR's fields, or None when the request should take the codec path."""
    try:
        if len(raw) < 20:
            return None
        vl, fc, app, hbh, e2e = _HDR.unpack_from(raw, 0)
        flags, code = fc >> 24, fc & 0xFFFFFF
        if (
            vl >> 24 != 1
            or (vl & 0xFFFFFF) != len(raw)
            or code != CMD_CCR
            or app != APP_CC
            or not flags & FLAG_R
        ):
            return None
        p = Parsed()
        p.hbh, p.e2e, p.flags = hbh, e2e, flags
        top_svc: int | None = None
        rsu: Units | None = None
        usus: list[Units] = []
        end = len(raw)
        pos = 20
        unpack = _II.unpack_from
        unpack_I = _I.unpack_from
        known = _known.get()
        while pos < end:
            if end - pos < 8:
                return None
            code, fl = unpack(raw, pos)
            length = fl & 0xFFFFFF
            ve = pos + length
            if length < 8 or ve > end:
                return None
            at = pos
            vs = pos + 8
            pos += (length + 3) & ~3
            if fl & 0x80000000:  # vendor-specific: nothing the OCS reads
                if length < 12 or _unknown_m(raw, at, fl, known):
                    return None
                continue
            if code == 263:
                if p.session_id is None:
                    # Re-encoded as the codec copies it: its own flags, zero padding.
                    p.session_id = raw[vs:ve].decode()
                    n = ve - vs
                    p.session_avp = (
                        _II.pack(263, (raw[vs - 4] << 24) | (n + 8)) + raw[vs:ve] + b"\0" * (-n & 3)
                    )
            elif code == 264:
                p.origin_host = p.origin_host or raw[vs:ve].decode()
            elif code == 296:
                p.origin_realm = p.origin_realm or raw[vs:ve].decode()
            elif code == 283:
                p.destination_realm = raw[vs:ve].decode()
            elif code == 258:
                p.auth_application_id = _u32(raw, vs, ve)
            elif code == 461:
                p.service_context_id = raw[vs:ve].decode()
            elif code == 416:
                if p.cc_request_type is None:
                    p.cc_request_type = _u32(raw, vs, ve)
            elif code == 415:
                if p.cc_request_number is None:
                    p.cc_request_number = _u32(raw, vs, ve)
            elif code == 436:
                p.requested_action = _u32(raw, vs, ve)
            elif code == 411:  # OctetString: decoded as from_message does
                p.ref = raw[vs:ve].decode(errors="replace")
            elif code == 443:
                st = sd = None
                for c2, v2, s2, e2 in _scan(raw, vs, ve, known):
                    if v2 == 0 and c2 == 450:
                        st = _u32(raw, s2, e2)
                    elif v2 == 0 and c2 == 444:
                        sd = raw[s2:e2].decode()
                if st is None or sd is None:
                    return None
                p.subscriptions.append((st, sd))
            elif code == 437:
                rsu = _units(raw, vs, ve, known)
            elif code == 446:
                usus.append(_units(raw, vs, ve, known))
            elif code == 439:
                top_svc = _u32(raw, vs, ve)
            elif code == 456:
                p.mscc = True
                rg = sid = None
                m_rsu: Units | None = None
                m_usus: list[Units] = []
                q = vs
                while q < ve:  # the MSCC's members, scanned in place as `_scan` would
                    if ve - q < 8:
                        return None
                    c2, f2 = unpack(raw, q)
                    n2 = f2 & 0xFFFFFF
                    e2 = q + n2
                    if f2 & 0x80000000:
                        if n2 < 12 or e2 > ve or _unknown_m(raw, q, f2, known):
                            return None
                    elif n2 < 8 or e2 > ve:
                        return None
                    elif c2 == 437:
                        m_rsu = _units(raw, q + 8, e2, known)
                    elif c2 == 446:
                        m_usus.append(_units(raw, q + 8, e2, known))
                    elif c2 == 432:
                        if n2 != 12:
                            return None
                        rg = unpack_I(raw, q + 8)[0]
                    elif c2 == 439:
                        if sid is None:
                            if n2 != 12:
                                return None
                            sid = unpack_I(raw, q + 8)[0]
                    elif _unknown_m(raw, q, f2, known):
                        return None
                    q += (n2 + 3) & ~3
                if q != ve:
                    return None
                p.services.append(Svc(rg, sid, m_rsu, m_usus))
            elif code == 284:
                return None  # Proxy-Info must be copied into the answer: the codec does that
            elif _unknown_m(raw, at, fl, known):
                return None  # the codec path answers 5001
        if pos != end:
            return None
        if p.session_id is None or not p.session_avp:
            return None
        if not p.mscc:
            p.services = [Svc(None, top_svc, rsu, usus)] if (rsu is not None or usus) else []
        return p
    except (_Skip, UnicodeDecodeError, struct.error):
        return None


# -- writing ----------------------------------------------------------------------------


def _attr(name: str) -> str:
    return name.lower().replace("-", "_")


# Every AVP the OCS puts in a CCA, once, so that the codec shows where it places each one.
_SAMPLE: dict[str, Any] = {
    "granted_service_unit": {"cc_time": 1, "cc_total_octets": 1, "cc_service_specific_units": 1},
    "multiple_services_credit_control": [
        {
            "granted_service_unit": {"cc_time": 1},
            "service_identifier": [1],
            "rating_group": 1,
            "validity_time": 1,
            "result_code": 2001,
            "final_unit_indication": {
                "final_unit_action": 1,
                "redirect_server": {"redirect_address_type": 2, "redirect_server_address": "x"},
            },
            "time_quota_threshold": 1,
            "volume_quota_threshold": 1,
            "unit_quota_threshold": 1,
            "quota_holding_time": 1,
        }
    ],
    "cost_information": {"unit_value": {"value_digits": 1, "exponent": 1}, "currency_code": 1},
    "final_unit_indication": {"final_unit_action": 0},
    "check_balance_result": 0,
    "validity_time": 1,
}


_HEAD_KEYS = (
    "result_code",
    "origin_host",
    "origin_realm",
    "auth_application_id",
    "cc_request_type",
)


class Frozen(dict):  # type: ignore[type-arg]
    """A grouped AVP's content that is never changed after it is built (the OCS caches the
    MSCC blocks it answers with): the Writer encodes it once and keeps the bytes on it."""

    __slots__ = ("blob",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.blob: tuple[str, bytes] | None = None


class Writer:
    """Encodes answer content exactly as the codec would, for the AVPs the OCS sends.

    Uses only the codec's public API: leaf AVPs are `Avp.new(...).encode()` (memoised, as most
    of a CCA repeats from answer to answer), grouped headers come from encoding an empty group,
    and the placement order is read off a sample answer the codec builds at start-up."""

    def __init__(self) -> None:
        sample = commands.CreditControlRequest(session_id="x").answer(
            2001, origin_host="h", origin_realm="r", auth_application_id=APP_CC,
            cc_request_type=1, cc_request_number=0, **_SAMPLE,
        )  # fmt: skip
        self.order: dict[str, dict[str, int]] = {}
        self.cca_rank = self._learn("", sample.avps)
        self._heads: dict[str, bytes] = {}
        self._leaves: dict[tuple[str, Any], bytes] = {}
        self._shapes: dict[tuple[str, ...], list[str]] = {}  # key set -> keys in placement order
        self._tails: dict[tuple[str, ...], list[str] | None] = {}
        self._cca_heads: dict[tuple[int, str, str, int], bytes] = {}
        ranks = [self.cca_rank.get(k) for k in (*_HEAD_KEYS, "cc_request_number")]
        # -1: the codec does not place them as one leading run, so the head is never reused
        self._head_last = max(ranks) if ranks == sorted(ranks) and None not in ranks else -1  # type: ignore[type-var]

    def _learn(self, parent: str, avps: list[Any]) -> dict[str, int]:
        rank: dict[str, int] = {}
        for i, a in enumerate(avps):
            name = _attr(a.name)
            rank.setdefault(name, i)
            inner = getattr(a.value, "avps", None)
            if inner is not None:
                self.order[name] = self._learn(name, inner)
        return rank

    def avp(self, attr: str, value: Any) -> bytes:
        t = type(value)
        if t is Frozen:
            blob = value.blob
            if blob is None or blob[0] != attr:
                blob = value.blob = (attr, self._group(attr, value))
            return blob[1]
        if t is dict:
            return self._group(attr, value)
        key = (attr, value)
        b = self._leaves.get(key)
        if b is None:
            b = self._leaf(key)
        return b

    def _leaf(self, key: tuple[str, Any]) -> bytes:
        b = Avp.new(*key).encode()
        if len(self._leaves) < 20_000:
            self._leaves[key] = b
        return b

    def _group(self, attr: str, value: dict[str, Any]) -> bytes:
        """A grouped AVP: its members in placement order, leaves inlined (the hot loop)."""
        rank = self.order.get(attr)
        if rank is None:
            return Avp.new(attr, value).encode()
        parts: list[bytes] = []
        add = parts.append
        leaves = self._leaves
        for k in self._order(attr, rank, value):
            v = value[k]
            t = type(v)
            if t is list:
                for x in v:
                    add(self.avp(k, x))
            elif t is dict or t is Frozen:
                add(self.avp(k, v))
            else:
                b = leaves.get((k, v))
                add(b if b is not None else self._leaf((k, v)))
        data = b"".join(parts)
        head = self._heads.get(attr)
        if head is None:
            head = self._heads[attr] = Avp.new(attr, {}).encode()
        n = len(head) + len(data)
        return head[:5] + n.to_bytes(3, "big") + head[8:] + data

    def _order(self, parent: str, rank: dict[str, int], fields: dict[str, Any]) -> list[str]:
        """`fields`' keys in placement order, memoised per key sequence (answers repeat a
        few shapes; sorting is stable, so equal sequences always sort the same)."""
        shape = (parent, *fields)
        keys = self._shapes.get(shape)
        if keys is None:
            big = 1 << 30
            keys = sorted(fields, key=lambda k: rank.get(k, big))
            if len(self._shapes) < 4096:
                self._shapes[shape] = keys
        return keys

    def _tail(self, extra: dict[str, Any]) -> list[str] | None:
        """`extra`'s keys in placement order when all of them go after CC-Request-Number
        (so the fixed head can be reused), else None; memoised per key sequence."""
        shape = tuple(extra)
        keys = self._tails.get(shape, False)
        if keys is False:
            keys = self._order("", self.cca_rank, extra)
            last = self._head_last
            if last < 0 or any(self.cca_rank.get(k, last + 1) <= last for k in keys):
                keys = None
            if len(self._tails) < 4096:
                self._tails[shape] = keys
        return keys  # type: ignore[return-value]

    def avps(self, attr: str, value: Any) -> bytes:
        if type(value) is list:
            return b"".join([self.avp(attr, v) for v in value])
        return self.avp(attr, value)

    def cca(
        self, p: Parsed, result: int, origin_host: str, origin_realm: str, extra: dict[str, Any]
    ) -> bytes:
        """The CCA for `p`: what `req.answer(result, origin_host=..., origin_realm=...,
        auth_application_id=4, cc_request_type=..., cc_request_number=..., **extra)` encodes."""
        rtype, number = p.cc_request_type, p.cc_request_number
        tail = self._tail(extra) if rtype is not None and number is not None else None
        if tail is not None:
            # The common case: the six command-level AVPs lead, in a fixed order, and only
            # the number changes from answer to answer; the rest follows in placement order.
            hk = (result, origin_host, origin_realm, rtype)
            head = self._cca_heads.get(hk)
            if head is None:
                head = b"".join(
                    [
                        self.avp(k, v)
                        for k, v in zip(_HEAD_KEYS, (*hk[:3], APP_CC, rtype), strict=True)
                    ]
                )
                if len(self._cca_heads) < 1024:
                    self._cca_heads[hk] = head
            nb = self._leaves.get(("cc_request_number", number))
            if nb is None:
                nb = self._leaf(("cc_request_number", number))
            avps = self.avps
            body = b"".join([p.session_avp, head, nb, *[avps(k, extra[k]) for k in tail]])
        else:
            fields: dict[str, Any] = {
                "result_code": result,
                "origin_host": origin_host,
                "origin_realm": origin_realm,
                "auth_application_id": APP_CC,
            }
            if rtype is not None:
                fields["cc_request_type"] = rtype
            if number is not None:
                fields["cc_request_number"] = number
            fields.update(extra)
            avps = self.avps
            body = p.session_avp + b"".join(
                [avps(k, fields[k]) for k in self._order("", self.cca_rank, fields)]
            )
        flags = (p.flags & FLAG_P) | (FLAG_E if 3000 <= result < 4000 else 0)
        return (
            _HDR.pack((1 << 24) | (20 + len(body)), (flags << 24) | CMD_CCR, APP_CC, p.hbh, p.e2e)
            + body
        )
