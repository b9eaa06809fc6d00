"""Hop-by-hop ids and the table of requests waiting for an answer. Pure: time is passed in.

Expiry without a heap: entries are grouped by their timeout value, and inside a group dict
insertion order is deadline order (time only moves forward), so the oldest entry of each group
is the next to expire. Answered requests are simply deleted, so no stale timer entries pile up
at tens of thousands of requests per second.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

MASK32 = 0xFFFFFFFF


class HopByHopAllocator:
    """Unique among outstanding requests on one connection; monotonic from a random start."""

    __slots__ = ("_next",)

    def __init__(self, start: int | None = None) -> None:
        self._next = random.getrandbits(32) if start is None else start & MASK32

    def next(self, in_use: dict[int, Any] | None = None) -> int:
        value = self._next
        if in_use:
            # Wrapping onto a still-outstanding id takes 2**32 requests in flight; skip it.
            while value in in_use:
                value = (value + 1) & MASK32
        self._next = (value + 1) & MASK32
        return value


class EndToEndAllocator:
    """RFC 6733 3: high 12 bits from the clock, low 20 bits random start, then incremented."""

    __slots__ = ("_next",)

    def __init__(self, now_s: float) -> None:
        self._next = ((int(now_s) & 0xFFF) << 20) | random.getrandbits(20)

    def next(self) -> int:
        value = self._next
        self._next = (value + 1) & MASK32
        return value


class PendingEntry:
    """One outstanding request. `waiter` is whatever the driver resolves (a Future)."""

    __slots__ = ("hbh", "deadline", "timeout", "waiter", "data", "meta", "group")

    def __init__(
        self, hbh: int, deadline: float, timeout: float, waiter: Any, data: bytes, meta: Any
    ) -> None:
        self.hbh = hbh
        self.deadline = deadline
        self.timeout = timeout
        self.waiter = waiter
        self.data = data  # encoded request, kept for failover
        self.meta = meta  # driver's routing facts (app id, destination, pinned peer, ...)
        self.group: dict[int, PendingEntry] | None = None


class PendingTable:
    __slots__ = ("_by_hbh", "_groups", "_loose", "hbh")

    def __init__(self, hbh_start: int | None = None) -> None:
        self._by_hbh: dict[int, PendingEntry] = {}
        # timeout -> entries in deadline order
        self._groups: dict[float, dict[int, PendingEntry]] = {}
        # entries whose carried-over deadline would break a group's order (failover; rare)
        self._loose: dict[int, PendingEntry] = {}
        self.hbh = HopByHopAllocator(hbh_start)

    def __len__(self) -> int:
        return len(self._by_hbh)

    def __contains__(self, hbh: int) -> bool:
        return hbh in self._by_hbh

    def __iter__(self) -> Iterator[PendingEntry]:
        return iter(list(self._by_hbh.values()))

    def new_hbh(self) -> int:
        return self.hbh.next(self._by_hbh)

    def add(
        self,
        hbh: int,
        now: float,
        timeout: float,
        waiter: Any,
        data: bytes = b"",
        meta: Any = None,
        deadline: float | None = None,
    ) -> PendingEntry:
        """Track a request; `deadline` overrides now+timeout (kept across failover)."""
        if hbh in self._by_hbh:
            raise KeyError(f"hop-by-hop id {hbh:#x} already outstanding")
        dl = now + timeout if deadline is None else deadline
        entry = PendingEntry(hbh, dl, timeout, waiter, data, meta)
        self._by_hbh[hbh] = entry
        group = self._groups.get(timeout)
        if group is None:
            group = self._groups[timeout] = {}
        elif group and group[next(reversed(group))].deadline > dl:
            group = self._loose
        group[hbh] = entry
        entry.group = group
        return entry

    def pop(self, hbh: int) -> PendingEntry | None:
        entry = self._by_hbh.pop(hbh, None)
        if entry is not None:
            del entry.group[hbh]  # type: ignore[union-attr]  # always set by add()
        return entry

    def next_deadline(self) -> float | None:
        best: float | None = None
        for group in self._groups.values():
            for entry in group.values():
                if best is None or entry.deadline < best:
                    best = entry.deadline
                break
        for entry in self._loose.values():
            if best is None or entry.deadline < best:
                best = entry.deadline
        return best

    def expire(self, now: float) -> list[PendingEntry]:
        """Remove and return every entry whose deadline has passed."""
        out: list[PendingEntry] = []
        for key in list(self._groups):
            group = self._groups[key]
            while group:
                hbh = next(iter(group))
                entry = group[hbh]
                if entry.deadline > now:
                    break
                del group[hbh]
                del self._by_hbh[hbh]
                out.append(entry)
            if not group:
                del self._groups[key]
        if self._loose:
            for hbh, entry in list(self._loose.items()):
                if entry.deadline <= now:
                    del self._loose[hbh]
                    del self._by_hbh[hbh]
                    out.append(entry)
        out.sort(key=lambda e: e.deadline)
        return out

    def drain(self) -> list[PendingEntry]:
        """Remove and return everything (the connection is gone)."""
        out = list(self._by_hbh.values())
        self._by_hbh.clear()
        self._groups.clear()
        self._loose.clear()
        return out
