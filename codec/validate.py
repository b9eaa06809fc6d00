"""Message validation against the dictionary: the faults an answer must report.

Each fault is an AvpError carrying the Result-Code and Failed-AVP of RFC 6733 7.1.5 and 7.5:
3008 header bits, 3009 AVP bits, 5001 unknown mandatory AVP, 5004 bad value, 5005 missing
AVP (Failed-AVP holds a zero-filled example with its Vendor-Id), 5008 AVP not allowed,
5009 too many (the first occurrence past the maximum), 5014 bad AVP length. A fault inside a
Grouped AVP is reported with the Failed-AVP wrapped in its enclosing groups (RFC 6733 7.5
allows it), so the receiver can tell where it was.

An answer with the E bit follows the generic answer-message grammar of RFC 6733 7.2, not its
command's: a 3xxx answer carries no application AVPs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from .avp import _U32, _UNSET, Avp, _materialize
from .constants import AVP_RESERVED, AVP_VENDOR, FLAG_ERROR, FLAG_REQUEST, FLAG_RESERVED
from .container import AvpContainer, Group, _value_at
from .errors import AvpError, CodecError
from .types import TypeFault

if TYPE_CHECKING:
    from .dictionary import AvpDef, Dictionary, Grammar
    from .message import Message

ANSWER_MESSAGE = (
    "0*1 < Session-Id >",
    "{ Origin-Host }",
    "{ Origin-Realm }",
    "{ Result-Code }",
    "[ Origin-State-Id ]",
    "[ Error-Message ]",
    "[ Error-Reporting-Host ]",
    "[ Failed-AVP ]",
    "[ Experimental-Result ]",
    "* [ Proxy-Info ]",
    "* [ AVP ]",
)


class _Stop(Exception):
    pass


Report = Callable[[AvpError], None]


VALUE_FAULTS = frozenset({5004, 5014})


def find_errors(
    msg: Message, *, limit: int | None = None, codes: frozenset[int] | None = None
) -> list[AvpError]:
    """The faults an answer must report, in wire order; `codes` keeps only those Result-Codes
    (VALUE_FAULTS: the values that reading returned but their types do not allow)."""
    errors: list[AvpError] = []

    def report(e: AvpError) -> None:
        if codes is not None and e.result_code not in codes:
            return
        errors.append(e)
        if limit is not None and len(errors) >= limit:
            raise _Stop

    try:
        f = msg.flags
        if f & FLAG_RESERVED:
            report(AvpError(3008, f"reserved header flag bits set (0x{f:02x})"))
        if f & FLAG_REQUEST and f & FLAG_ERROR:
            report(AvpError(3008, "a request with the E bit set"))
        g = msg._grammar
        if f & FLAG_ERROR and not f & FLAG_REQUEST:
            g = answer_message_grammar(msg._dict)
        _check(msg, g, report)
    except _Stop:
        pass
    return errors


def avp_errors(a: Avp, *, limit: int | None = None) -> list[AvpError]:
    """The faults validation reports for one AVP on its own: its flags, its value (5004, 5014)
    and, for a Grouped AVP, its members against the group's grammar. Reading `a.value` does
    not judge; this does, with the Failed-AVP an answer would carry."""
    errors: list[AvpError] = []

    def report(e: AvpError) -> None:
        errors.append(e)
        if limit is not None and len(errors) >= limit:
            raise _Stop

    try:
        _check_items(None, [a], None, report)  # type: ignore[arg-type]
    except _Stop:
        pass
    return errors


def answer_message_grammar(d: Dictionary) -> Grammar:
    """RFC 6733 7.2 <answer-message>, for answers with the E bit (built once per dictionary)."""
    g = getattr(d, "_answer_message_grammar", None)
    if g is None:
        from .dictionary import parse_rule

        names = [(t, parse_rule(t).name) for t in ANSWER_MESSAGE]
        texts = [t for t, name in names if name == "AVP" or name in d.by_name]
        g = d._grammar(texts, "answer-message (RFC 6733 7.2)")
        d._answer_message_grammar = g  # type: ignore[attr-defined]
    return g


def example_avp(d: AvpDef) -> Avp:
    """A zero-filled AVP of the right minimum length, for a 5005 Failed-AVP."""
    return Avp.example(d)


def _within(parent: Avp | Callable[[], Avp], report: Report) -> Report:
    """Report faults found inside a group with the Failed-AVP wrapped in that group.
    `parent` may be a function making the group's Avp: it is only needed on a fault."""

    def wrapped(e: AvpError) -> None:
        inner = e.failed_avp
        if inner is not None:
            p = parent if isinstance(parent, Avp) else parent()
            outer = Avp(p.code, vendor=p.vendor, flags=p.flags, definition=p._defn)
            g = Group(p._defn)
            g._avps.append(inner)  # type: ignore[union-attr]
            outer._value = g
            e.failed_avp = outer
        report(e)

    return wrapped


def _check(c: AvpContainer, g: Grammar | None, report: Report) -> None:
    """Check a container against its grammar. From the wire (the usual case) it walks the
    index and reads each AVP's octets in place: values are decoded only where decoding can
    fail (a fixed-size value only by its length, an enum only when the M bit asks for a
    defined value), and an Avp object is made only for an AVP that is reported."""
    if c._avps is not None:
        _check_items(c, c._avps, g, report)
        return
    try:
        keys = c._index()
    except AvpError as exc:
        report(exc)
        return
    buf = c._buf
    offs: list[int] = c._offs  # type: ignore[assignment]
    vals = c._vals
    defs = c._dict.avps
    checks = g.checks if g is not None else None
    counts: dict[int, int] = {}
    u32 = _U32.unpack_from

    def at(i: int) -> Avp:
        return _materialize(buf, [offs[i]], [vals[i]] if vals else None, defs)[0]

    for i, key in enumerate(keys):
        off = offs[i]
        fl = u32(buf, off + 4)[0]
        flags = fl >> 24
        if flags & AVP_RESERVED or (flags & AVP_VENDOR and key < 1 << 32):
            _check_items(c, [at(i)], None, report, counts=None)
            continue
        d = defs.get((key & 0xFFFFFFFF, key >> 32))
        if d is None:
            if flags & 0x40:
                report(
                    AvpError(
                        5001,
                        f"unknown AVP {key & 0xFFFFFFFF} (vendor {key >> 32}) with the M bit",
                        at(i),
                    )
                )
            continue
        if checks is not None:
            entry = checks.get(key)
            if entry is None:
                if not g.any_allowed and flags & 0x40:  # type: ignore[union-attr]
                    report(AvpError(5008, f"{d.name} is not allowed here", at(i)))
                    continue
            else:
                n = counts.get(key, 0) + 1
                counts[key] = n
                rule, mx, pos = entry
                if mx == 0:
                    report(AvpError(5008, f"{d.name} must not occur here", at(i)))
                    continue
                if mx is not None and n > mx:
                    report(AvpError(5009, f"{d.name} occurs more than {mx} time(s)", at(i)))
                    continue
                if pos >= 0 and pos != i:
                    report(AvpError(5008, f"{d.name} must stand at position {pos + 1}", at(i)))
                    continue
        v = vals[i] if vals else _UNSET
        if v is _UNSET:
            vc = d.vcheck
            if d.fixed_struct is not None and fl & 0xFFFFFF != d.fixed_len:
                pass  # a wrong length: decoded below, for the 5014 it raises
            elif vc == 0:
                continue  # a fixed-size value of the right length, or octets: always valid
            elif vc == 1:
                if flags & 0x40:
                    n = d.fixed_struct.unpack_from(buf, off)[-1]  # type: ignore[union-attr]
                    if type(d.member(n)) is int:
                        report(AvpError(5004, f"{d.name}: {n} is not a defined value", at(i)))
                continue
            elif vc == 2:
                v = _value_at(d, buf, off)
                if vals is not None:
                    vals[i] = v
                _check(v, d.grammar, _within(partial(at, i), report))
                continue
            else:
                start = off + (12 if fl & 0x80000000 else 8)
                try:
                    d.codec.strict(buf, start, off + (fl & 0xFFFFFF))
                    continue
                except TypeFault:
                    pass
            _check_value(at(i), d, report)
            continue
        if type(v) is Group:
            _check(v, d.grammar, _within(partial(at, i), report))
        elif d.vcheck == 3:  # read already, but reading does not judge: the octets do
            try:
                d.codec.strict(buf, off + (12 if fl & 0x80000000 else 8), off + (fl & 0xFFFFFF))
            except TypeFault:
                _check_value(at(i), d, report)
        elif d.type == "Enumerated" and d.enum and flags & 0x40 and type(v) is int:
            report(AvpError(5004, f"{d.name}: {v} is not a defined value", at(i)))
    if g is not None:
        for key, rule in g.required:
            if counts.get(key, 0) < rule.min:
                report(AvpError(5005, f"missing AVP {rule.name}", Avp.example(rule.avp)))  # type: ignore[arg-type]


def _check_value(a: Avp, d: AvpDef, report: Report) -> None:
    """Decode one AVP's value and report why it fails (or recurse into a group). Reading
    does not judge, so octets from the wire (or given raw) are checked by the type's
    `strict`; a value that was assigned was checked then."""
    try:
        v = a.value
    except CodecError as exc:
        report(exc if isinstance(exc, AvpError) else AvpError(5004, str(exc), a))
        return
    buf = a._buf
    if buf is not None and d.vcheck == 3:
        try:
            d.codec.strict(buf, a._off + a._hdr, a._off + a._len)
        except TypeFault as exc:
            report(AvpError(exc.result_code, f"{d.name}: {exc}", a))
            return
    if d.type == "Enumerated" and d.enum and a.is_mandatory and type(v) is int:
        report(AvpError(5004, f"{d.name}: {v} is not a defined value", a))
        return
    if isinstance(v, Group):
        _check(v, d.grammar, _within(a, report))


def _check_items(
    c: AvpContainer,
    items: list[Avp],
    g: Grammar | None,
    report: Report,
    counts: dict[tuple[int, int], int] | None = None,
) -> None:
    """The same checks over Avp objects (a built or modified container)."""
    if counts is None:
        counts = {}
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
                report(
                    AvpError(5001, f"unknown AVP {a.code} (vendor {a.vendor}) with the M bit", a)
                )
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
                if rule.max == 0:
                    report(AvpError(5008, f"{d.name} must not occur here", a))
                    continue
                if rule.max is not None and n > rule.max:
                    report(AvpError(5009, f"{d.name} occurs more than {rule.max} time(s)", a))
                    continue
                if rule.kind == "fixed":
                    at = next((j for j, r in enumerate(g.fixed) if r is rule), None)
                    if at is not None and at != i:
                        report(AvpError(5008, f"{d.name} must stand at position {at + 1}", a))
                        continue
        _check_value(a, d, report)
    if g is None:
        return
    for rule in g.rules:
        if rule.avp is None or rule.min == 0:
            continue
        if counts.get(rule.avp.key, 0) < rule.min:
            report(AvpError(5005, f"missing AVP {rule.avp.name}", Avp.example(rule.avp)))
