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
from typing import TYPE_CHECKING

from .avp import Avp, AvpContainer, Group
from .constants import AVP_RESERVED, AVP_VENDOR, FLAG_ERROR, FLAG_REQUEST, FLAG_RESERVED
from .errors import AvpError, CodecError

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
        g = msg._grammar
        if f & FLAG_ERROR and not f & FLAG_REQUEST:
            g = answer_message_grammar(msg._dict)
        _check(msg, g, report)
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


def _within(parent: Avp, report: Report) -> Report:
    """Report faults found inside a group with the Failed-AVP wrapped in that group."""

    def wrapped(e: AvpError) -> None:
        inner = e.failed_avp
        if inner is not None:
            outer = Avp(
                parent.code, vendor=parent.vendor, flags=parent.flags, definition=parent._defn
            )
            g = Group(parent._defn)
            g._avps.append(inner)  # type: ignore[union-attr]
            outer._value = g
            e.failed_avp = outer
        report(e)

    return wrapped


def _check(c: AvpContainer, g: Grammar | None, report: Report) -> None:
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
        try:
            v = a.value
        except CodecError as exc:
            report(exc if isinstance(exc, AvpError) else AvpError(5004, str(exc), a))
            continue
        if d.type == "Enumerated" and d.enum and a.is_mandatory and type(v) is int:
            report(AvpError(5004, f"{d.name}: {v} is not a defined value", a))
            continue
        if isinstance(v, Group):
            _check(v, d.grammar, _within(a, report))
    if g is None:
        return
    for rule in g.rules:
        if rule.avp is None or rule.min == 0:
            continue
        if counts.get(rule.avp.key, 0) < rule.min:
            report(AvpError(5005, f"missing AVP {rule.avp.name}", Avp.example(rule.avp)))
