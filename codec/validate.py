"""Message validation against the dictionary: the faults an answer must report.

Each fault is an AvpError carrying the Result-Code and Failed-AVP of RFC 6733 7.1.5 and 7.5:
3008 header bits, 3009 AVP bits, 5001 unknown mandatory AVP, 5004 bad value, 5005 missing
AVP (Failed-AVP holds a zero-filled example), 5008 AVP not allowed, 5009 too many,
5014 bad AVP length.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .avp import Avp, AvpContainer, Group
from .constants import AVP_RESERVED, AVP_VENDOR, FLAG_ERROR, FLAG_REQUEST, FLAG_RESERVED
from .errors import AvpError, CodecError

if TYPE_CHECKING:
    from .dictionary import AvpDef, Grammar
    from .message import Message


class _Stop(Exception):
    pass


def find_errors(msg: Message, *, limit: int | None = None) -> list[AvpError]:
    errors: list[AvpError] = []

    def report(e: AvpError) -> None:
        errors.append(e)
        if limit is not None and len(errors) >= limit:
            raise _Stop

    try:
        f = msg.flags
        if f & FLAG_RESERVED:
            report(AvpError(3008, f"reserved header flag bits set (0x{f:02x})"))
        if f & FLAG_REQUEST and f & FLAG_ERROR:
            report(AvpError(3008, "a request with the E bit set"))
        _check(msg, msg._grammar, report, top=True)
    except _Stop:
        pass
    return errors


def example_avp(d: AvpDef) -> Avp:
    """A zero-filled AVP of the right minimum length, for a 5005 Failed-AVP."""
    codec = d.codec
    data = b"\x00" * codec.size if getattr(codec, "fixed", False) else b""
    if d.type == "Address":
        data = b"\x00\x01\x00\x00\x00\x00"
    return Avp(d.code, data, vendor=d.vendor, flags=d.flags)


def _check(c: AvpContainer, g: Grammar | None, report, top: bool = False) -> None:  # noqa: ANN001
    counts: dict[tuple[int, int], int] = {}
    try:
        items = c._items()
    except AvpError as exc:
        report(exc)
        return
    for i, a in enumerate(items):
        key = (a.code, a.vendor)
        if a.flags & AVP_RESERVED:
            report(AvpError(3009, f"{a.name}: reserved AVP flag bits set (0x{a.flags:02x})", a))
            continue
        if a.flags & AVP_VENDOR and a.vendor == 0:
            report(AvpError(3009, f"{a.name}: V bit set with Vendor-Id 0", a))
            continue
        d = a._defn
        if d is None:
            if a.is_mandatory:
                report(AvpError(5001, f"unknown AVP {a.code} (vendor {a.vendor}) with the M bit", a))
            continue
        if g is not None:
            rule = g.by_key.get(key)
            if rule is None:
                if not g.any_allowed and a.is_mandatory:
                    report(AvpError(5008, f"{d.name} is not allowed here", a))
                    continue
            else:
                n = counts.get(key, 0) + 1
                counts[key] = n
                if rule.max is not None and n > rule.max:
                    report(AvpError(5009, f"{d.name} occurs more than {rule.max} time(s)", a))
                    continue
                if rule.kind == "fixed" and g.fixed and rule in g.fixed and g.fixed.index(rule) != i:
                    report(AvpError(5008, f"{d.name} must stand at position {g.fixed.index(rule) + 1}", a))
                    continue
        try:
            v = a.value
        except CodecError as exc:
            report(exc if isinstance(exc, AvpError) else AvpError(5004, str(exc), a))
            continue
        if d.enum_cls is not None and a.is_mandatory and type(v) is int:
            report(AvpError(5004, f"{d.name}: {v} is not a defined value", a))
            continue
        if isinstance(v, Group):
            _check(v, d.grammar, report)
    if g is None:
        return
    for rule in g.rules:
        if rule.avp is None or rule.min == 0:
            continue
        if counts.get(rule.avp.key, 0) < rule.min:
            report(AvpError(5005, f"missing AVP {rule.avp.name}", example_avp(rule.avp)))
