"""AVP attributes: `ccr.cc_total_octets` reads, assigns and deletes, on every container.

Each AVP name the dictionary defines becomes a property of AvpContainer once the dictionary
resolves (dictionary.on_resolve). Reading is the hot path of the codec, so `_read_value`
writes the scan bookkeeping and the common value decodes out inline.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from .avp import _U32, _UNSET, scan_into
from .container import AvpContainer, Group, _value_at
from .dictionary import Dictionary, on_resolve
from .errors import AvpError

if TYPE_CHECKING:
    from .definitions import AvpDef


def _read_value(d: AvpDef, self: AvpContainer) -> Any:
    """Attribute access: a list where the grammar allows several, else the value or None.

    `d` may come from another dictionary than the container's (a property is bound to the
    definition of the dictionary that first had the name): then the name is looked up again.

    The hot path of reading. On a container fresh from the wire it scans (a group only as
    far as it must), finds the AVP in the index (a C-level list search) and decodes that
    one value, caching it. Function calls cost more than anything else here, so the scan
    bookkeeping and the common value decodes (_advance, _value_at) are written out inline.
    """
    if d.owner is not self._dict:
        d = _rebind(d, self)
    g = self._grammar
    key = d.ikey
    many = g is not None and key in g.many
    if self._avps is not None:
        return self._lookup(d, many)
    keys = self._keys
    if keys is None or self._scan < self._end and (many or key not in keys):
        if keys is None:
            keys = self._keys = []
            self._offs = []
        n = len(keys)
        try:
            self._scan = scan_into(
                self._buf,
                self._scan,
                self._end,
                keys,
                self._offs,  # type: ignore[arg-type]
                -1 if many else key,
                self._dict.avps,
            )
        except AvpError:
            del keys[n:], self._offs[n:]  # type: ignore[index]
            raise
        vals = self._vals
        if vals is not None and len(vals) < len(keys):
            vals.extend([_UNSET] * (len(keys) - len(vals)))
    if key not in keys:
        return [] if many else None
    vals = self._vals
    if vals is None:
        vals = self._vals = [_UNSET] * len(keys)
    i = keys.index(key)
    left = keys.count(key) if many else 1
    out = []
    while True:
        v = vals[i]
        if v is _UNSET:
            buf = self._buf
            off = self._offs[i]  # type: ignore[index]
            st = d.fixed_struct
            if st is not None:
                t = st.unpack_from(buf, off)
                if t[1] & 0xFFFFFF == d.fixed_len and not d.codec.converts:
                    v = t[-1]
                    if d.enum:
                        v = d.member(v)
                else:
                    v = _value_at(d, buf, off)
            elif d.kind == 2:
                fl = _U32.unpack_from(buf, off + 4)[0]
                v = Group._from_wire(
                    buf, off + (12 if fl & 0x80000000 else 8), off + (fl & 0xFFFFFF), d
                )
            else:
                v = _value_at(d, buf, off)
            vals[i] = v
        if not many:
            return v
        out.append(v)
        left -= 1
        if not left:
            return out
        i = keys.index(key, i + 1)


def _rebind(d: AvpDef, obj: AvpContainer) -> AvpDef:
    other = obj._dict.by_attr.get(d.attr)
    if other is None:
        raise AttributeError(f"no AVP {d.attr!r} in this message's dictionary")
    return other


def _write_value(d: AvpDef, obj: AvpContainer, value: Any) -> None:
    obj.set(_rebind(d, obj) if d.owner is not obj._dict else d, value)


def _delete_value(d: AvpDef, obj: AvpContainer) -> None:
    obj.remove(_rebind(d, obj) if d.owner is not obj._dict else d)


def avp_property(d: AvpDef) -> property:
    """The attribute for an AVP name: `ccr.cc_total_octets` reads, assigns (None removes) and
    deletes. A property over functools.partial: CPython calls both in C, so reading costs one
    Python frame (_read_value), which matters on the hot path."""
    return property(
        partial(_read_value, d),
        partial(_write_value, d),
        partial(_delete_value, d),
        f"the {d.name} AVP",
    )


def install_attributes(defs: Mapping[str, AvpDef]) -> None:
    """Give AvpContainer a property for each AVP attribute name not already taken."""
    reserved: set[str] | None = None
    for name, d in defs.items():
        if name not in _taken:
            _taken.add(name)
            if reserved is None:
                reserved = set()
                for k in (AvpContainer, *_subclasses(AvpContainer)):
                    for c in k.__mro__:
                        reserved.update(vars(c))
            if name in reserved:
                _shadowed.add(name)
                continue
            setattr(AvpContainer, name, avp_property(d))


_taken: set[str] = set()
_shadowed: set[str] = set()  # AVP attribute names hidden by a method (read them with .get)


def _subclasses(cls: type) -> list[type]:
    """Group, Message and the generated command classes: their methods are not AVP names
    (the codec's own classes only: an application's subclass does not hide a name)."""
    out: list[type] = []
    sub: type
    for sub in cls.__subclasses__():
        if sub.__module__.startswith("chargegw.codec"):
            out.append(sub)
            out.extend(_subclasses(sub))
    return out


def _install(d: Dictionary) -> None:
    install_attributes(d.by_attr)


on_resolve(_install)
