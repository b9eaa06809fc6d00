"""RFC 6733 8.8 Session-Ids: `<DiameterIdentity>;<high 32 bits>;<low 32 bits>[;<optional>]`.

The two decimal halves are one monotonically increasing 64-bit value. It is seeded from the
clock when the process first asks for an id: the high half is the boot time in seconds (the
RFC's suggestion) and the low half the fraction of that second (in 2**-32 s), so a restart
within the same second still starts above anything the previous run can have issued unless
it issued more than 2**32 ids a second. Every generator in a process draws from one shared
counter, so two generators (a Node and a script, two identities) never repeat each other
either. What this cannot cover: two processes that share one DiameterIdentity, and a clock
stepped back across a restart; give such processes distinct identities or an `optional` part.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["SessionIdCounter", "SessionIdGenerator", "split_session_id"]

_MASK64 = (1 << 64) - 1


class SessionIdCounter:
    """The 64-bit value behind the high/low halves; `next()` is safe from any thread."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        now = clock()
        self.boot_time = int(now) & 0xFFFFFFFF
        fraction = int((now - int(now)) * (1 << 32)) & 0xFFFFFFFF
        self._value = (self.boot_time << 32) | fraction
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._value = (self._value + 1) & _MASK64
            return self._value


_shared: SessionIdCounter | None = None
_shared_lock = threading.Lock()


def _shared_counter() -> SessionIdCounter:
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SessionIdCounter()
        return _shared


class SessionIdGenerator:
    """Session-Ids for one DiameterIdentity (usually the node's Origin-Host).

    gen = SessionIdGenerator("client.example.com")
    gen.next()            # 'client.example.com;1718000000;123457'
    gen.next("imsi-001")  # '...;123458;imsi-001'  (the RFC's optional part)
    """

    def __init__(self, identity: str, counter: SessionIdCounter | None = None) -> None:
        if not identity or ";" in identity or any(c.isspace() for c in identity):
            raise ValueError(f"{identity!r} is not a DiameterIdentity (empty, ';' or space)")
        self.identity = identity
        self.counter = counter if counter is not None else _shared_counter()

    def next(self, optional: str | None = None) -> str:
        value = self.counter.next()
        sid = f"{self.identity};{value >> 32};{value & 0xFFFFFFFF}"
        return sid if optional is None else f"{sid};{optional}"

    __call__ = next


def split_session_id(session_id: str) -> tuple[str, int, int, str | None]:
    """(identity, high, low, optional) of an id this module's format; ValueError otherwise."""
    parts = session_id.split(";", 3)
    if len(parts) < 3 or not parts[0]:
        raise ValueError(f"{session_id!r} is not <identity>;<high>;<low>[;<optional>]")
    if not all(x.isascii() and x.isdigit() for x in parts[1:3]):
        raise ValueError(f"{session_id!r}: the high and low parts must be decimal")
    high, low = int(parts[1]), int(parts[2])
    if not (0 <= high <= 0xFFFFFFFF and 0 <= low <= 0xFFFFFFFF):
        raise ValueError(f"{session_id!r}: high and low must be unsigned 32-bit values")
    return parts[0], high, low, parts[3] if len(parts) == 4 else None
