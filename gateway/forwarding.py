"""The "decoded" forwarding mode, kept to measure it against raw forwarding.

In this mode the front end decodes every AVP (grouped ones too, values typed) and ships
the tree through msgspec; the worker rebuilds a Message from it. The default, "raw", ships
the request bytes and lets the worker decode. `chargegw bench gateway` measures both in
the same run; raw wins by a wide margin (see the benchmark report), so it is the default.

Tree format: `{"h": [code, app_id, flags, hop_by_hop, end_to_end], "a": [avp, ...]}` where
an avp is `[code, vendor, flags, value]` and a Grouped value is a list of avps. Values are
int, float, str, bytes or datetime; addresses travel as strings.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from chargegw.codec import Avp, Group, Message, get_dictionary


def tree(msg: Message) -> dict[str, Any]:
    """Decode all of `msg` (raises the codec's AvpError on a fault)."""
    return {
        "h": [msg.code, msg.app_id, msg.flags, msg.hop_by_hop, msg.end_to_end],
        "a": _avps(msg.avps),
    }


def _avps(avps: list[Avp]) -> list[list[Any]]:
    out: list[list[Any]] = []
    for a in avps:
        v = a.value
        if isinstance(v, Group):
            v = _avps(v.avps)
        elif isinstance(v, bool):
            v = int(v)
        elif isinstance(v, int):
            v = int(v)  # IntEnum -> int
        elif isinstance(v, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            v = str(v)
        elif not isinstance(v, (bytes, str, float)) and hasattr(v, "data"):
            v = a.data  # another address family: keep the octets
        out.append([a.code, a.vendor, a.flags, v])
    return out


def rebuild(doc: dict[str, Any]) -> Message:
    """The Message a worker hands to its application in decoded mode."""
    code, app_id, flags, hbh, e2e = doc["h"]
    m = Message(code=code, app_id=app_id, flags=flags, hop_by_hop=hbh, end_to_end=e2e)
    d = get_dictionary()
    for a in _rebuild_avps(doc["a"], d):
        m.add(a)
    # Re-read from bytes so the application sees a wire message (lazy values, `raw`).
    return Message.decode(m.encode())


def _rebuild_avps(items: list[list[Any]], d: Any) -> list[Avp]:
    out: list[Avp] = []
    for code, vendor, flags, v in items:
        defn = d.avps.get((code, vendor))
        if defn is not None and defn.type == "Grouped" and isinstance(v, list):
            g = Group(defn, d)
            for child in _rebuild_avps(v, d):
                g.add(child)
            v = g
        elif defn is not None and defn.type == "Address" and isinstance(v, str):
            v = ipaddress.ip_address(v)
        elif defn is None and not isinstance(v, bytes):
            v = bytes(v) if isinstance(v, (bytearray, memoryview)) else v
        out.append(Avp(code, v, vendor=vendor, flags=flags, definition=defn))
    return out
